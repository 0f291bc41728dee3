"""Text from simulator truth: the corpus that aligns the point-cloud encoder to the language model.

    from larsight.qformer import corpus
    facts = corpus.event_facts(event)                   # EventFacts (pydantic) from the truth
    corpus.captions(facts, rng, n=3)                    # varied descriptions (stage 1)
    corpus.qa_pairs(facts, rng)                         # [(question, answer), ...]
    corpus.classification_target(facts, rng)            # (CLASSIFY_PROMPT, "nu_e CC: ...")
    corpus.tool_traces(facts, rng)                      # [{question, tool, arguments, ...}]
    recs = corpus.build_corpus(events, seed=0)          # records: kind, event_id, prompt, target
    corpus.write_jsonl(recs, "corpus.jsonl")            # atomic
    corpus.phrasing_diversity(recs)                     # distinct texts, templates, n-gram ratios

Facts
-----
``event_facts`` reads what an ``events.Event`` carries: the particle and interaction tables of the
simulator (or of a larsight file), and per-point ``particle`` / ``interaction`` / ``semantic`` /
``pid`` labels. Events with only per-point labels (a foreign PILArNet-M file) get facts from the
labelled voxels (no class, no energies, lengths from the voxel extent). An event with no truth at
all raises ``NoTruthError``.

One ``InteractionFacts`` per interaction (a neutrino interaction, a PILArNet multi-particle vertex,
or each independent particle of a "rain" event). Its particles are the *primary-level* particles:
the interaction's primaries plus the photons of primary pi0 decays (what the detector sees of a
pi0). Secondaries (Michel electrons, delta rays, hadronic debris) are not listed; a Michel
electron is recorded on the track whose decay chain made it (``michel``: mu -> e, and
pi+ -> mu+ -> e+ at the pion's end).

Visibility thresholds (a particle is *counted* only if it passes them; every particle with
voxels is still listed, with ``visible`` False):

- any particle: at least ``MIN_VOXELS`` (5) voxels;
- protons: kinetic energy >= ``PROTON_MIN_KE_MEV`` (40 MeV, CSDA range about 1.5 cm; when the
  kinetic energy is unknown, a length >= ``PROTON_MIN_LENGTH_CM``, 1.5 cm);
- muons, charged pions, kaons: length >= ``TRACK_MIN_LENGTH_CM`` (2 cm);
- electrons and photons: deposited energy >= ``SHOWER_MIN_MEV`` (10 MeV);
- a Michel electron: at least ``MICHEL_MIN_VOXELS`` (3) voxels, starting within
  ``MICHEL_MAX_DIST_CM`` (2 cm) of the track's end (a muon from a pion decay in flight travels
  away: its Michel electron is not at the pion's end; such a pion ``decays``).

Topology string (``topology_string``; the agent's ``reconstruct`` tool uses the same convention):
counts of visible primary-level particles, space separated, always in this order::

    <lepton> <N>p <N>pi [<N>gamma] [<N>K]

``<lepton>`` is ``<N>mu`` (muons) and/or ``<N>e`` (electrons), or ``0l`` when there is neither;
``pi`` counts charged pions; ``gamma`` (photon showers, the photons of pi0 decays included) and
``K`` (kaons) appear only when non-zero. Examples: ``1mu 2p 0pi`` (nu_mu CC QE),
``1e 1p 0pi`` (nu_e CC), ``0l 1p 0pi 2gamma`` (NC with a pi0), ``1mu 1e 0p 1pi`` (a gun event).
``parse_topology`` inverts it.

Numbers in texts: cm with one decimal (lengths of 1 m and more also as metres with two
decimals), MeV as integers (energies of 1 GeV and more also as GeV with two decimals),
dE/dx in MeV/cm with one decimal, vertices as ``(x, y, z) cm``. ``energy_forms`` and
``length_forms`` list the spellings a value can take. Physics numbers come from
shared/PHYSICS.md (through ``events.sim.medium`` where the simulator carries them).

Everything is deterministic given the ``numpy.random.Generator`` passed in; ``build_corpus``
seeds one generator per (seed, event index, kind).
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any, Iterable, Literal, Optional, Sequence

import numpy as np
from pydantic import BaseModel, Field

from larsight.events.formats.atomic import atomic_open
from larsight.events.model import PID_CLASSES, Event, EventError
from larsight.events.sim import medium as _M

__all__ = [
    "EventFacts", "InteractionFacts", "ParticleFacts", "NoTruthError", "event_facts",
    "topology_string", "parse_topology", "captions", "caption_items", "qa_pairs", "qa_items",
    "classification_target", "explain_class", "tool_traces", "tool_call_text", "build_corpus",
    "write_jsonl", "read_jsonl", "phrasing_diversity", "energy_forms", "length_forms",
    "fmt_energy", "fmt_length", "fmt_vertex", "fmt_dedx", "CLASS_TEXT", "CLASS_LONG",
    "CLASSIFY_PROMPT", "CAPTION_PROMPT", "CAPTION_PROMPTS", "TOOL_NAMES", "KINDS",
    "MIN_VOXELS", "PROTON_MIN_KE_MEV", "PROTON_MIN_LENGTH_CM", "TRACK_MIN_LENGTH_CM",
    "SHOWER_MIN_MEV", "MICHEL_MIN_VOXELS", "MICHEL_MAX_DIST_CM", "CAPTION_STYLES", "MAX_DESCRIBED",
]

# ============================================================================ constants
CLASS_TEXT = {"nue_cc": "nu_e CC", "numu_cc": "nu_mu CC", "nc": "NC"}
"""Canonical class text: every classification answer starts with exactly one of these + ':'."""

CLASS_LONG = {
    "nue_cc": ("electron-neutrino charged-current", "charged-current nu_e", "nu_e charged-current"),
    "numu_cc": ("muon-neutrino charged-current", "charged-current nu_mu", "nu_mu charged-current"),
    "nc": ("neutral-current", "neutral-current neutrino"),
}
"""Paraphrases of each class for captions and answers (never at the start of a classification
answer, which is always ``CLASS_TEXT``)."""

CLASSIFY_PROMPT = "Classify this neutrino interaction as nu_e CC, nu_mu CC or NC, and explain why."
"""The fixed classification prompt (the VLM scores each CLASS_TEXT as its continuation)."""

CAPTION_PROMPT = "Describe this event."
CAPTION_PROMPTS = (
    CAPTION_PROMPT, "What do you see in this event?", "Describe the interaction.",
    "Give a short physics description of this event.", "Summarise this LArTPC event.",
    "What happened in this event?", "Write a caption for this event.",
    "Describe the particles in this event.",
)

TOOL_NAMES = ("segment", "find_vertex", "reconstruct", "classify_event", "find_similar",
              "describe", "render")
"""The agent's tools (DESIGN.md, Tools); a trace with tool None is answered without a tool."""

KINDS = ("caption", "qa", "classify", "tool")

# visibility thresholds (see the module docstring)
MIN_VOXELS = 5
MUON_MIP_MIN_CM = 20.0    # a muon track shorter than this (T < ~70 MeV) is not called MIP-like
PROTON_MIN_KE_MEV = 40.0
PROTON_MIN_LENGTH_CM = 1.5
TRACK_MIN_LENGTH_CM = 2.0
SHOWER_MIN_MEV = 10.0
MICHEL_MIN_VOXELS = 3
MICHEL_MAX_DIST_CM = 2.0   # a Michel electron counts for a track when it starts this close to its end
DECAY_VISIBLE_MEV = 10.0   # a decay muon/pion above this leaves a visible track (decay in flight;
                           # the muon of a pi+ decay at rest has 4.1 MeV and travels ~1.5 mm)

# shower-start dE/dx from truth voxels: energy of the shower's voxels in a cylinder of radius
# DEDX_RADIUS_CM around the axis, between DEDX_FROM_CM and DEDX_FROM_CM + DEDX_WINDOW_CM from the
# shower start (the first 0.3 cm are skipped: tracks from the same vertex win shared voxels),
# divided by the window. It recovers ~2.0 MeV/cm for electrons and ~4.2 MeV/cm for photons.
DEDX_FROM_CM, DEDX_WINDOW_CM, DEDX_RADIUS_CM = 0.3, 2.0, 1.0
DEDX_MIN_VOXELS = 3
DEDX_MIN_SHOWER_MEV = 40.0   # below this the trunk (a quarter of the energy at 1-2 MIP) is
                             # shorter than the window: no start dE/dx is given

# physics numbers (shared/PHYSICS.md)
MIP = _M.MIP_DEDX                  # 2.105 MeV/cm
X0 = _M.X0_CM                      # 14.0 cm
CONV_LEN = 9.0 / 7.0 * X0          # 18 cm
MOLIERE = _M.MOLIERE_CM            # 9.04 cm
MICHEL_EMAX = _M.MICHEL_EMAX       # 52.83 MeV
EC = _M.EC_ELECTRON                # 32.84 MeV
PI0_MASS = 134.98                  # MeV (PHYSICS.md)
NUCLEAR_INT_CM = _M.NUCLEAR_INTERACTION_CM

_TRACK_TYPES = ("muon", "pion", "proton", "kaon")
_SHOWER_TYPES = ("electron", "photon")
_CHANNEL_NAMES = {
    "QE": ("quasi-elastic", "QE"), "MEC": ("meson-exchange-current (2p2h)", "MEC"),
    "RES": ("resonant", "resonance (RES)"), "DIS": ("deep-inelastic", "DIS"),
    "COH": ("coherent", "COH"),
}


class NoTruthError(EventError):
    """The event carries no truth to describe (no tables and no per-point particle labels)."""


# ============================================================================ facts model
Vec3 = tuple[float, float, float]


class ParticleFacts(BaseModel):
    """One primary-level particle, from the truth."""

    id: int = Field(description="particle (group) id in the event")
    pdg: int = Field(0, description="PDG code, 0 if unknown")
    type: str = Field(description="PID class name (photon, electron, muon, pion, proton, kaon) or 'unknown'")
    charge: Optional[int] = Field(None, description="electric charge in e, if known")
    kind: Literal["track", "shower"]
    from_pi0: bool = Field(False, description="a photon from a primary pi0 decay")
    kinetic_energy_mev: Optional[float] = Field(None, description="initial kinetic energy (truth)")
    deposited_energy_mev: float = Field(0.0, description="energy in its voxels")
    n_voxels: int = 0
    length_cm: Optional[float] = Field(None, description="track: start-end distance; shower: "
                                       "extent of 95% of its voxels along the axis from its start")
    direction: Optional[Vec3] = Field(None, description="unit vector of the initial momentum")
    angle_to_beam_deg: Optional[float] = Field(None, description="angle to the beam (+z), neutrinos")
    start_cm: Optional[Vec3] = None
    end_cm: Optional[Vec3] = None
    end_state: Optional[Literal["stops", "exits", "interacts", "decays"]] = Field(
        None, description="tracks: stops in the volume, leaves it, ends in a hadronic interaction, "
                          "or decays into a visible charged particle (pion / kaon decay in flight, "
                          "kaon decay at rest)")
    michel: bool = Field(False, description="a visible Michel electron appears at its end")
    michel_energy_mev: Optional[float] = None
    conversion_gap_cm: Optional[float] = Field(None, description="photons: vertex to shower start")
    start_dedx_mev_cm: Optional[float] = Field(None, description="showers: dE/dx of the first cm")
    mean_dedx_mev_cm: Optional[float] = Field(None, description="tracks: deposited energy / length")
    visible: bool = Field(True, description="passes the visibility thresholds (counted)")

    @property
    def energy_mev(self) -> float:
        """Kinetic energy if known, else the deposited energy."""
        return self.kinetic_energy_mev if self.kinetic_energy_mev is not None else self.deposited_energy_mev


class InteractionFacts(BaseModel):
    """One interaction (neutrino, gun vertex or rain particle) and its visible content."""

    id: int
    vertex_cm: Optional[Vec3] = None
    source: Literal["neutrino", "gun", "labels"] = "gun"
    event_class: Optional[Literal["nue_cc", "numu_cc", "nc"]] = None
    current: Optional[str] = None
    channel: Optional[str] = None
    nu_pdg: int = 0
    nu_energy_mev: Optional[float] = None
    visible_energy_mev: float = 0.0
    n_voxels: int = 0
    particles: list[ParticleFacts] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    topology: str = "0l 0p 0pi"
    n_neutrons: int = Field(0, description="primary neutrons (invisible, truth only)")

    def visible_particles(self) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible]

    def of_type(self, t: str) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible and p.type == t]

    @property
    def tracks(self) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible and p.kind == "track"]

    @property
    def showers(self) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible and p.kind == "shower"]

    @property
    def leading(self) -> Optional[ParticleFacts]:
        vis = self.visible_particles()
        return max(vis, key=lambda p: p.energy_mev) if vis else None

    @property
    def longest_track(self) -> Optional[ParticleFacts]:
        t = [p for p in self.tracks if p.length_cm is not None]
        return max(t, key=lambda p: p.length_cm) if t else None


class EventFacts(BaseModel):
    """The truth summary of one event."""

    event_id: Optional[int] = None
    mode: Optional[str] = Field(None, description="'nu', 'mpv', 'mpr', 'gun' or None (from meta)")
    event_class: Optional[Literal["nue_cc", "numu_cc", "nc"]] = None
    n_points: int = 0
    visible_energy_mev: float = 0.0
    interactions: list[InteractionFacts] = Field(default_factory=list)

    @property
    def main(self) -> Optional[InteractionFacts]:
        """The classified (neutrino) interaction if any, else the most energetic one."""
        for it in self.interactions:
            if it.event_class:
                return it
        return max(self.interactions, key=lambda i: i.visible_energy_mev) if self.interactions else None

    @property
    def is_rain(self) -> bool:
        return self.mode == "mpr" or (self.mode is None and len(self.interactions) > 1)

    def all_particles(self) -> list[ParticleFacts]:
        return [p for it in self.interactions for p in it.particles if p.visible]

    def total_counts(self) -> dict[str, int]:
        c: Counter = Counter()
        for it in self.interactions:
            c.update(it.counts)
        return {k: int(c.get(k, 0)) for k in _COUNT_KEYS}


_COUNT_KEYS = ("muon", "electron", "photon", "proton", "pion", "kaon", "pi0", "michel",
               "track", "shower")


# ============================================================================ topology
def topology_string(counts: dict[str, int]) -> str:
    """``<lepton> <N>p <N>pi [<N>gamma] [<N>K]`` from counts keyed by PID name (muon, electron,
    proton, pion = charged pions, photon, kaon); missing keys count 0. See the module docstring."""
    g = lambda k: int(counts.get(k, 0) or 0)  # noqa: E731
    mu, e = g("muon"), g("electron")
    parts = []
    if mu:
        parts.append(f"{mu}mu")
    if e:
        parts.append(f"{e}e")
    if not parts:
        parts.append("0l")
    parts += [f"{g('proton')}p", f"{g('pion')}pi"]
    if g("photon"):
        parts.append(f"{g('photon')}gamma")
    if g("kaon"):
        parts.append(f"{g('kaon')}K")
    return " ".join(parts)


_TOPO_SUFFIX = {"mu": "muon", "e": "electron", "p": "proton", "pi": "pion", "gamma": "photon",
                "K": "kaon"}


def parse_topology(text: str) -> dict[str, int]:
    """Inverse of ``topology_string``: counts keyed by PID name (all six keys present)."""
    out = {k: 0 for k in ("muon", "electron", "proton", "pion", "photon", "kaon")}
    for tok in text.split():
        if tok == "0l":
            continue
        i = 0
        while i < len(tok) and tok[i].isdigit():
            i += 1
        if i == 0 or tok[i:] not in _TOPO_SUFFIX:
            raise ValueError(f"parse_topology: cannot read {tok!r} in {text!r}")
        out[_TOPO_SUFFIX[tok[i:]]] = int(tok[:i])
    return out


# ============================================================================ facts from an event
def _r(x: float, nd: int = 2) -> float:
    return float(round(float(x), nd))


def _vec(v) -> Vec3:
    return tuple(_r(c, 3) for c in v)  # type: ignore[return-value]


def _mode_of(event: Event) -> Optional[str]:
    gen = event.meta.generator or ""
    if "(" in gen and gen.endswith(")"):
        return gen[gen.rindex("(") + 1:-1]
    return None


def event_facts(event: Event) -> EventFacts:
    """The truth summary of ``event`` (see the module docstring). Raises ``NoTruthError`` if the
    event carries no truth (no particle / interaction tables and no per-point particle labels)."""
    if not isinstance(event, Event):
        raise TypeError(f"event_facts: expected an events.Event, got {type(event).__name__}")
    if not event.particles and not event.interactions and event.particle is None:
        raise NoTruthError(
            "event_facts: the event carries no truth (no particle or interaction table and no "
            "per-point 'particle' labels), so there is nothing to describe; use simulated events "
            "or a labelled file")
    if event.particles and (event.interactions or event.particle is None):
        inters = _facts_from_tables(event)
    else:  # per-point labels only, or a foreign file's per-group table without interactions
        inters = _facts_from_labels(event)
    return EventFacts(event_id=event.meta.event_id if event.meta.event_id is not None else event.meta.index,
                      mode=_mode_of(event), event_class=event.event_class, n_points=len(event),
                      visible_energy_mev=_r(event.total_energy_mev, 1), interactions=inters)


def _finish_counts(it: InteractionFacts, n_pi0: int) -> None:
    c = {k: 0 for k in _COUNT_KEYS}
    for p in it.particles:
        if not p.visible:
            continue
        if p.type in c:
            c[p.type] += 1
        c[p.kind] += 1
        c["michel"] += int(p.michel)
    c["pi0"] = int(n_pi0)
    it.counts = c
    it.topology = topology_string(c)


def _pca(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Principal axis and the extent of the points along it."""
    if len(points) < 2:
        return np.array([0.0, 0.0, 1.0]), 0.0
    c = points - points.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    axis = vt[0]
    t = c @ axis
    return axis, float(t.max() - t.min())


def _facts_from_tables(event: Event) -> list[InteractionFacts]:
    vol = event.meta.volume
    vs = vol.voxel_size_cm
    centres = event.points.astype(np.float64) + 0.5 * vs if event.particle is not None else None
    by_id = {p.id: p for p in event.particles}
    children: dict[int, list] = {}
    for p in event.particles:
        children.setdefault(p.parent, []).append(p)
    vox_of: dict[int, np.ndarray] = {}
    if event.particle is not None:
        order = np.argsort(event.particle, kind="stable")
        ids, starts = np.unique(event.particle[order], return_index=True)
        bounds = list(starts[1:]) + [len(order)]
        for i, a, b in zip(ids, starts, bounds):
            vox_of[int(i)] = order[a:b]
    lo, hi = vol.lower_cm, vol.upper_cm

    def voxels(pid: int) -> np.ndarray:
        return vox_of.get(pid, np.zeros(0, dtype=np.int64))

    def michel_below(pid: int, end: np.ndarray, depth: int = 0) -> Optional[float]:
        """Energy of a visible Michel electron of the decay chain of ``pid`` that starts at
        ``end`` (within MICHEL_MAX_DIST_CM: mu -> e, or pi+ -> mu+ -> e+ at rest; a muon from a
        decay in flight travels away and its Michel electron is not at this end)."""
        if depth > 3:
            return None
        for ch in children.get(pid, []):
            if ch.process != "decay":
                continue
            par = by_id[pid]
            if abs(ch.pdg) == 11 and abs(par.pdg) == 13:
                nv = ch.n_voxels if event.particle is None else len(voxels(ch.id))
                near = np.linalg.norm(np.asarray(ch.start_cm) - end) <= MICHEL_MAX_DIST_CM
                if nv >= MICHEL_MIN_VOXELS and near:
                    return float(ch.kinetic_energy_mev)
            elif abs(ch.pdg) == 13:
                e = michel_below(ch.id, end, depth + 1)
                if e is not None:
                    return e
        return None

    interactions = list(event.interactions)
    known = {i.id for i in interactions}
    extra_ids = sorted({p.interaction for p in event.particles if p.parent < 0} - known - {-1})
    out: list[InteractionFacts] = []
    inter_energy: dict[int, float] = {}
    inter_nvox: dict[int, int] = {}
    if event.interaction is not None:
        ids, inv = np.unique(event.interaction, return_inverse=True)
        en = np.bincount(inv, weights=event.energy.astype(np.float64))
        nv = np.bincount(inv)
        inter_energy = {int(i): float(e) for i, e in zip(ids, en)}
        inter_nvox = {int(i): int(n) for i, n in zip(ids, nv)}
    for inter in interactions + [None] * len(extra_ids):
        if inter is None:
            iid = extra_ids[len(out) - len(interactions)]
            vtx = None
            it = InteractionFacts(id=iid, source="labels")
        else:
            iid = inter.id
            vtx = np.asarray(inter.vertex_cm, dtype=np.float64)
            neutrino = inter.nu_pdg != 0
            it = InteractionFacts(
                id=iid, vertex_cm=_vec(vtx), source="neutrino" if neutrino else "gun",
                event_class=inter.event_class, current=inter.current,
                channel=inter.channel if inter.channel != "GUN" else None, nu_pdg=inter.nu_pdg,
                nu_energy_mev=_r(inter.nu_energy_mev, 1) if inter.nu_energy_mev > 0 else None)
        if inter_energy:
            it.visible_energy_mev = _r(inter_energy.get(iid, 0.0), 1)
            it.n_voxels = inter_nvox.get(iid, 0)
        else:
            it.visible_energy_mev = _r(sum(p.deposited_energy_mev for p in event.particles
                                           if p.interaction == iid and p.parent < 0), 1)
        prims = [p for p in event.particles if p.parent < 0 and p.interaction == iid]
        if not prims and len(interactions) == 1 and iid == interactions[0].id:
            prims = [p for p in event.particles if p.parent < 0 and p.interaction == -1]
        level = []
        n_pi0 = 0
        for p in prims:
            if p.pdg == 111:
                n_pi0 += 1
                level += [(c, True) for c in children.get(p.id, []) if c.pdg == 22 and c.process == "decay"]
            elif p.pdg == 2112:
                it.n_neutrons += 1
            elif p.pid >= 0:
                level.append((p, False))
        beam = it.source == "neutrino"
        for p, from_pi0 in level:
            pf = _particle_facts(p, from_pi0, voxels(p.id), centres, event, vtx, beam, lo, hi, vs,
                                 michel_below)
            if pf is not None:
                it.particles.append(pf)
        if vtx is None and it.particles:
            starts = [p.start_cm for p in it.particles if p.start_cm is not None]
            if starts and all(np.allclose(s, starts[0]) for s in starts) and any(starts[0]):
                it.vertex_cm = starts[0]
        _finish_counts(it, n_pi0)
        out.append(it)
    return out


def _particle_facts(p, from_pi0, vox, centres, event, vtx, beam, lo, hi, vs, michel_below):
    name = PID_CLASSES[p.pid]
    if p.pdg == 111:
        return None
    kind = "track" if name in _TRACK_TYPES else "shower"
    if event.particle is not None:
        n_vox = int(len(vox))
        edep = float(event.energy[vox].sum(dtype=np.float64)) if n_vox else 0.0
    else:
        n_vox, edep = int(p.n_voxels), float(p.deposited_energy_mev)
    start = np.asarray(p.start_cm, dtype=np.float64)
    end = np.asarray(p.end_cm, dtype=np.float64)
    has_geom = not np.allclose(start, end) or p.kinetic_energy_mev > 0
    mom = np.asarray(p.momentum_mev, dtype=np.float64)
    pn = float(np.linalg.norm(mom))
    pts = centres[vox] if (centres is not None and n_vox) else None
    if pn > 0:
        d = mom / pn
    elif pts is not None and len(pts) >= 2:
        d, _ = _pca(pts)
        ref = vtx if vtx is not None else start
        if np.dot(pts.mean(0) - ref, d) < 0:
            d = -d
    else:
        d = None
    charge = None
    if p.pdg:
        try:
            charge = int(round(_M.pdg_info(p.pdg)[1]))
        except Exception:  # unknown code in a foreign file
            charge = None
    ke = float(p.kinetic_energy_mev) if p.kinetic_energy_mev > 0 else None
    pf = ParticleFacts(id=p.id, pdg=p.pdg, type=name, charge=charge, kind=kind, from_pi0=from_pi0,
                       kinetic_energy_mev=_r(ke, 1) if ke is not None else None,
                       deposited_energy_mev=_r(edep, 1), n_voxels=n_vox,
                       direction=_vec(d) if d is not None else None,
                       start_cm=_vec(start) if (has_geom or any(start)) else None,
                       end_cm=_vec(end) if has_geom and not np.allclose(start, end) else None)
    if beam and d is not None:
        pf.angle_to_beam_deg = _r(math.degrees(math.acos(max(-1.0, min(1.0, float(d[2]))))), 1)
    if kind == "track":
        if has_geom and not np.allclose(start, end):
            length = float(np.linalg.norm(end - start))
        elif pts is not None and len(pts) >= 2:
            length = _pca(pts)[1] + vs
        else:
            length = None
        pf.length_cm = _r(length, 2) if length is not None else None
        if has_geom and not np.allclose(start, end):
            margin = 0.5 * vs
            if np.any(end < lo + margin) or np.any(end > hi - margin):
                pf.end_state = "exits"
            elif any(c.process == "hadronic" for c in _children(event, p.id)):
                pf.end_state = "interacts"
            elif any(c.process == "decay" and abs(c.pdg) in (13, 211) and c.kinetic_energy_mev > DECAY_VISIBLE_MEV
                     for c in _children(event, p.id)):
                pf.end_state = "decays"
            else:
                pf.end_state = "stops"
        e_m = michel_below(p.id, end)
        if e_m is not None and pf.end_state != "exits":
            pf.michel, pf.michel_energy_mev = True, _r(e_m, 1)
        if length and length >= 1.0 and edep > 0:
            pf.mean_dedx_mev_cm = _r(edep / length, 2)
    else:
        # shower start: the conversion point for a photon (truth end of a showering photon),
        # the creation point for an electron
        s0 = None
        if has_geom:
            if name == "photon":
                if p.kinetic_energy_mev >= 20.0 and not np.allclose(start, end):
                    s0 = end
                elif pts is not None:
                    s0 = pts[np.argmin(np.linalg.norm(pts - start, axis=1))]
            else:
                s0 = start
        if name == "photon" and s0 is not None:
            ref = vtx if vtx is not None else start
            pf.conversion_gap_cm = _r(float(np.linalg.norm(s0 - ref)), 2)
        if pts is not None and d is not None and s0 is not None and len(pts) >= 3:
            rel = pts - s0
            t = rel @ d
            r = np.linalg.norm(rel - np.outer(t, d), axis=1)
            ahead = t[t >= -vs]
            if len(ahead):
                pf.length_cm = _r(float(np.quantile(ahead, 0.95)) + 0.5 * vs, 2)
            sel = (t >= DEDX_FROM_CM) & (t < DEDX_FROM_CM + DEDX_WINDOW_CM) & (r < DEDX_RADIUS_CM)
            if int(sel.sum()) >= DEDX_MIN_VOXELS and (p.kinetic_energy_mev or 0.0) >= DEDX_MIN_SHOWER_MEV:
                pf.start_dedx_mev_cm = _r(float(event.energy[vox][sel].sum(dtype=np.float64))
                                          / DEDX_WINDOW_CM, 2)
        elif pts is not None and len(pts) >= 2 and pf.length_cm is None:
            pf.length_cm = _r(_pca(pts)[1] + vs, 2)
    pf.visible = _is_visible(pf)
    return pf


def _children(event: Event, pid: int):
    return [c for c in event.particles if c.parent == pid]


def _is_visible(pf: ParticleFacts) -> bool:
    if pf.n_voxels < MIN_VOXELS:
        return False
    if pf.type == "proton":
        if pf.kinetic_energy_mev is not None:
            return pf.kinetic_energy_mev >= PROTON_MIN_KE_MEV
        return (pf.length_cm or 0.0) >= PROTON_MIN_LENGTH_CM
    if pf.kind == "track":
        return (pf.length_cm or 0.0) >= TRACK_MIN_LENGTH_CM
    return pf.deposited_energy_mev >= SHOWER_MIN_MEV


def _majority(labels: Optional[np.ndarray], n: int) -> int:
    """The most common label >= 0, or -1."""
    if labels is None or not (labels >= 0).any():
        return -1
    return int(np.bincount(labels[labels >= 0], minlength=n).argmax())


def _facts_from_labels(event: Event) -> list[InteractionFacts]:
    """Facts from per-point labels only (a foreign PILArNet-M file): one interaction per
    interaction label (or one for all), particles from the labelled voxels."""
    vs = event.meta.volume.voxel_size_cm
    centres = event.points.astype(np.float64) + 0.5 * vs
    inter = event.interaction if event.interaction is not None else np.zeros(len(event), np.int32)
    table = {p.id: p for p in event.particles}
    out = []
    for iid in sorted(int(i) for i in np.unique(inter) if i >= 0) or [0]:
        it = InteractionFacts(id=iid, source="labels")
        m_int = inter == iid
        it.visible_energy_mev = _r(event.energy[m_int].sum(dtype=np.float64), 1)
        it.n_voxels = int(m_int.sum())
        michels = []
        for g in sorted(int(g) for g in np.unique(event.particle[m_int]) if g >= 0):
            vox = np.flatnonzero(m_int & (event.particle == g))
            sem = event.semantic[vox] if event.semantic is not None else None
            sem_major = _majority(sem, 5)
            pid = event.pid[vox] if event.pid is not None else None
            pid_major = _majority(pid, 6)
            pts = centres[vox]
            axis, extent = _pca(pts)
            edep = float(event.energy[vox].sum(dtype=np.float64))
            if sem_major == 2:
                michels.append((pts.mean(0), edep, len(vox)))
                continue
            if sem_major in (3, 4):
                continue
            if pid_major >= 0:
                name = PID_CLASSES[pid_major]
                kind = "track" if name in _TRACK_TYPES else "shower"
            elif sem_major in (0, 1):
                name, kind = "unknown", ("shower" if sem_major == 0 else "track")
            else:
                continue
            pf = ParticleFacts(id=g, type=name, kind=kind, deposited_energy_mev=_r(edep, 1),
                               n_voxels=len(vox), length_cm=_r(extent + vs, 2), direction=_vec(axis))
            row = table.get(g)
            if row is not None and row.kinetic_energy_mev > 0:   # a foreign file's momentum
                pf.kinetic_energy_mev = _r(row.kinetic_energy_mev, 1)
            if kind == "track" and pf.length_cm:
                pf.mean_dedx_mev_cm = _r(edep / pf.length_cm, 2)
            pf.visible = _is_visible(pf)
            it.particles.append(pf)
        # a Michel cluster belongs to the muon (or pion) track with an end closest to it
        for centre, e_m, nv in michels:
            best, dist = None, 5.0
            for pf in it.particles:
                if pf.type not in ("muon", "pion") or pf.kind != "track":
                    continue
                vox = np.flatnonzero(m_int & (event.particle == pf.id))
                dd = float(np.min(np.linalg.norm(centres[vox] - centre, axis=1)))
                if dd < dist:
                    best, dist = pf, dd
            if best is not None and nv >= MICHEL_MIN_VOXELS:
                best.michel, best.michel_energy_mev = True, _r(e_m, 1)
        _finish_counts(it, 0)
        out.append(it)
    return out


# ============================================================================ number formats
def fmt_mev(x: float) -> str:
    return f"{int(round(x))} MeV"


def fmt_gev(x: float) -> str:
    return f"{x / 1000.0:.2f} GeV"


def fmt_energy(mev: float, rng: Optional[np.random.Generator] = None) -> str:
    """MeV as an integer; 1 GeV and above as GeV with two decimals (or, drawn, MeV)."""
    if mev >= 1000.0 and (rng is None or rng.random() < 0.7):
        return fmt_gev(mev)
    return fmt_mev(mev)


def energy_forms(mev: float) -> list[str]:
    """Every spelling ``fmt_energy`` can give for ``mev``."""
    return [fmt_mev(mev)] + ([fmt_gev(mev)] if mev >= 1000.0 else [])


def fmt_length(cm: float, rng: Optional[np.random.Generator] = None) -> str:
    """cm with one decimal; 1 m and above also (drawn) as metres with two decimals."""
    if cm >= 100.0 and rng is not None and rng.random() < 0.4:
        return f"{cm / 100.0:.2f} m"
    return f"{cm:.1f} cm"


def length_forms(cm: float) -> list[str]:
    """Every spelling ``fmt_length`` can give for ``cm``."""
    return [f"{cm:.1f} cm"] + ([f"{cm / 100.0:.2f} m"] if cm >= 100.0 else [])


def fmt_vertex(v: Sequence[float]) -> str:
    return f"({v[0]:.1f}, {v[1]:.1f}, {v[2]:.1f}) cm"


def fmt_dedx(x: float) -> str:
    return f"{x:.1f} MeV/cm"


def _article(word: str) -> str:
    """'a' or 'an' before ``word`` (numbers read aloud: 8..., 11, 18, 80..., 800...)."""
    w = word.strip()
    if not w:
        return "a"
    if w[0].isdigit():
        ip = ""
        for ch in w:
            if ch.isdigit():
                ip += ch
            else:
                break
        if ip[0] == "8" or (len(ip) in (2, 5) and ip[:2] in ("11", "18")):
            return "an"
        return "a"
    if w.startswith(("NC", "MeV", "X0", "EM ", "e+", "e-")):
        return "an"
    low = w.lower()
    if low.startswith(("uni", "use", "one")):
        return "a"
    return "an" if low[0] in "aeiou" else "a"


def _a(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _cap(s: str) -> str:
    if not s or s.startswith(("nu_", "pi0", "pi+", "pi-", "mu+", "mu-", "e+", "e-")):
        return s
    return s[:1].upper() + s[1:]


def _join(items: list[str], rng: Optional[np.random.Generator] = None) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    sep = ", " if (rng is None or rng.random() < 0.8) and not any(", " in i for i in items) else "; "
    last = " and " if sep == ", " else "; and "
    return sep.join(items[:-1]) + last + items[-1]


def _plural(n: int, word: str, plural: Optional[str] = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


_NOUN = {"muon": ("muon", "muons"), "electron": ("electron", "electrons"),
         "photon": ("photon", "photons"), "proton": ("proton", "protons"),
         "pion": ("charged pion", "charged pions"), "kaon": ("kaon", "kaons"),
         "unknown": ("particle", "particles")}


def _noun(t: str, n: int = 1) -> str:
    s, p = _NOUN.get(t, (t, t + "s"))
    return s if n == 1 else p


# ============================================================================ particle phrases
def _len(p: ParticleFacts, rng) -> str:
    return fmt_length(p.length_cm, rng) if p.length_cm is not None else "short"


def _track_phrase(p: ParticleFacts, it: InteractionFacts, rng, physics: bool) -> str:
    L = p.length_cm
    E = p.kinetic_energy_mev
    pion = p.type == "pion" and rng.random() < 0.5
    noun = {"muon": "muon", "pion": "charged-pion" if pion else "pion", "proton": "proton",
            "kaon": "kaon"}.get(p.type, "")
    core = f"{_len(p, rng)} {noun} track" if L is not None else f"{noun} track"
    if E is not None and rng.random() < 0.75:
        who = "charged pion" if pion else noun
        core = _pick(rng, (f"{core} ({fmt_energy(E, rng)})",
                           f"{core} of {fmt_energy(E, rng)} kinetic energy",
                           f"{fmt_energy(E, rng)} {who} leaving {_a(_len(p, rng))} track"
                           if L is not None else f"{core} ({fmt_energy(E, rng)})"))
    phrase = _a(core)
    tail = []
    if p.end_state == "exits":
        tail.append(_pick(rng, ("that leaves the active volume", "exiting the detector",
                                "that is not contained")))
    elif p.end_state == "decays":
        tail.append(_pick(rng, ("that decays into a visible muon (a kink)" if p.type == "pion" else
                                "that decays into a visible charged particle",
                                "ending in a decay with a charged daughter track")))
    elif p.end_state == "interacts":
        tail.append(_pick(rng, ("that ends in a hadronic interaction",
                                "that interacts inelastically before stopping",
                                "ending in a hadronic scatter")))
    elif p.end_state == "stops":
        if p.michel:
            if p.type == "muon":
                tail.append(_pick(rng, ("that stops and decays into a Michel electron",
                                        "ending in a Michel electron",
                                        "that stops, with a Michel electron at its end")))
            else:
                tail.append(_pick(rng, ("that stops; its decay muon gives a Michel electron",
                                        "with a Michel electron at its end (pi+ -> mu+ -> e+)")))
        elif p.type == "proton":
            tail.append(_pick(rng, ("that stops", "ending in a Bragg peak", "stopping in the volume")))
        elif p.type == "muon":
            tail.append(_pick(rng, ("that stops without a Michel electron",
                                    "stopping with no Michel electron")))
        else:
            tail.append("that stops")
    if physics:
        if p.type == "muon" and (L or 0) >= MUON_MIP_MIN_CM:
            tail.append(_pick(rng, (f"minimum-ionising at about {fmt_dedx(MIP)}",
                                    "a long MIP-like track" if (L or 0) > 30 else "MIP-like",
                                    f"depositing about {fmt_dedx(MIP)} like a MIP")))
        if p.type == "muon":
            if p.end_state == "stops" and not p.michel and p.charge == -1:
                tail.append("a mu- is captured by an argon nucleus about 75% of the time instead of decaying")
        elif p.type == "proton" and p.end_state == "stops":
            tail.append(_pick(rng, (("short and " if (L or 0) < 30 else "") + "highly ionising with a Bragg peak at its end",
                                    "heavily ionising, its dE/dx rising to a Bragg peak where it stops")))
        elif p.type == "proton" and (p.mean_dedx_mev_cm or 0) >= 1.5 * MIP:
            tail.append("highly ionising")
        elif p.type == "pion" and p.end_state == "interacts":
            tail.append("a hadronic interaction typical of a pion rather than a muon")
    if p.mean_dedx_mev_cm is not None and rng.random() < (0.5 if physics else 0.2):
        tail.append(f"mean dE/dx {fmt_dedx(p.mean_dedx_mev_cm)}")
    return _attach(phrase, tail, rng)


def _attach(phrase: str, tail: list[str], rng) -> str:
    if not tail:
        return phrase
    first, rest = tail[0], tail[1:]
    out = f"{phrase} {first}" if first.startswith(("that", "ending", "exiting", "stopping", "with")) \
        else f"{phrase}, {first}"
    for t in rest:
        out += f" ({t})" if ("(" not in t and not out.endswith(")") and rng.random() < 0.5) else f", {t}"
    return out


def _mip_ratio(x: float) -> str:
    r = x / MIP
    return f"{r:.1f} MIP"


def _dedx_expected(p: ParticleFacts) -> bool:
    """Whether the measured start dE/dx looks like the textbook value of its type (electron
    about 1 MIP, photon about 2 MIP), so that the text may say so."""
    if p.start_dedx_mev_cm is None:
        return False
    r = p.start_dedx_mev_cm / MIP
    return r < 1.5 if p.type == "electron" else (1.5 <= r < 2.7) if p.type == "photon" else False


def _shower_phrase(p: ParticleFacts, it: InteractionFacts, rng, physics: bool,
                   ref: Optional[str] = "the vertex") -> str:
    E = p.energy_mev
    noun = "electron" if p.type == "electron" else "photon" if p.type == "photon" else "EM"
    core = _a(f"{fmt_energy(E, rng)} {noun} shower")
    tail = []
    if p.type == "electron":
        if ref == "the vertex":
            tail.append(_pick(rng, ("starting at the vertex", "that starts right at the vertex",
                                    "attached to the vertex", "with no gap from the vertex")))
        if p.start_dedx_mev_cm is not None and (physics or rng.random() < 0.5):
            x = p.start_dedx_mev_cm
            if _dedx_expected(p):
                tail.append(_pick(rng, (
                    f"its first centimetres at {fmt_dedx(x)}, about one MIP as for a single electron",
                    f"start dE/dx {fmt_dedx(x)}, close to 1 MIP ({fmt_dedx(MIP)})",
                    f"{fmt_dedx(x)} at its start: a single-electron (1 MIP) trunk")))
            else:
                tail.append(f"start dE/dx {fmt_dedx(x)} ({_mip_ratio(x)})")
        elif physics and ref == "the vertex":
            tail.append(f"an electron shower starts at the vertex with about 1 MIP ({fmt_dedx(MIP)})")
    elif p.type == "photon":
        if p.conversion_gap_cm is not None:
            g = fmt_length(p.conversion_gap_cm, rng)
            ref = ref or "its starting point"
            tail.append(_pick(rng, (f"that converts {g} from {ref}",
                                    f"starting after {_a(g)} gap",
                                    f"with {_a(g)} conversion gap",
                                    f"that begins {g} away from {ref}")))
        if p.from_pi0 and rng.random() < 0.7:
            tail.append(_pick(rng, ("one of the two photons of a pi0 decay", "from a pi0 -> gamma gamma decay")))
        if p.start_dedx_mev_cm is not None and (physics or rng.random() < 0.5):
            x = p.start_dedx_mev_cm
            if _dedx_expected(p):
                tail.append(_pick(rng, (
                    f"its trunk at {fmt_dedx(x)}, about two MIPs from the e+e- pair",
                    f"start dE/dx {fmt_dedx(x)}, close to 2 MIP ({fmt_dedx(2 * MIP)})")))
            else:
                tail.append(f"start dE/dx {fmt_dedx(x)} ({_mip_ratio(x)})")
        if physics and p.conversion_gap_cm is not None:
            tail.append(_pick(rng, (f"photons travel on average {CONV_LEN:.0f} cm (9/7 X0) before converting",
                                    f"a gap is expected for photons: conversion length about {CONV_LEN:.0f} cm")))
    if p.length_cm is not None and rng.random() < 0.3:
        tail.append(f"about {fmt_length(p.length_cm, rng)} long")
    return _attach(core, tail, rng)


def _particle_phrase(p: ParticleFacts, it: InteractionFacts, rng, physics: bool = False,
                     ref: Optional[str] = "the vertex") -> str:
    if ref == "the vertex" and it.vertex_cm is None:
        ref = None
    if p.kind == "track":
        if p.type == "unknown":
            return _a(f"{_len(p, rng)} track")
        return _track_phrase(p, it, rng, physics)
    if p.type == "unknown":
        return _a(f"{fmt_energy(p.deposited_energy_mev, rng)} shower")
    return _shower_phrase(p, it, rng, physics, ref)


def _ordered(parts: list[ParticleFacts], rng) -> list[ParticleFacts]:
    how = int(rng.integers(4))
    if how == 0:
        return sorted(parts, key=lambda p: -p.energy_mev)
    if how == 1:
        return sorted(parts, key=lambda p: -(p.length_cm or 0.0))
    if how == 2:
        rank = {"muon": 0, "electron": 1, "photon": 2, "pion": 3, "kaon": 4, "proton": 5}
        return sorted(parts, key=lambda p: (rank.get(p.type, 9), -p.energy_mev))
    idx = rng.permutation(len(parts))
    return [parts[i] for i in idx]


# ============================================================================ class reasoning
def _class_name(c: str, rng, canonical_p: float = 0.5) -> str:
    return CLASS_TEXT[c] if rng.random() < canonical_p else _pick(rng, CLASS_LONG[c])


def _opening(it: InteractionFacts, facts: EventFacts, rng) -> str:
    if it.source == "neutrino" and it.event_class:
        name = _class_name(it.event_class, rng)
        bits = []
        if it.nu_energy_mev and rng.random() < 0.8:
            bits.append(fmt_energy(it.nu_energy_mev, rng))
        if it.channel in _CHANNEL_NAMES and rng.random() < 0.35:
            bits.append(_pick(rng, _CHANNEL_NAMES[it.channel]))
        noun = _pick(rng, ("interaction", "event", "neutrino interaction"))
        if name.endswith("neutrino") and noun == "neutrino interaction":
            noun = "interaction"
        return _a(" ".join(bits + [name, noun]))
    n = len(it.visible_particles())
    if it.source == "labels":
        return _a(_pick(rng, (f"event with {_plural(n, 'visible particle')}",
                              f"labelled event with {_plural(n, 'particle')} above threshold")))
    if facts.is_rain:
        return _a(_pick(rng, ("independent particle", "rain particle", "single particle")))
    return _a(_pick(rng, (f"multi-particle vertex with {_plural(n, 'visible particle')}",
                          f"particle-gun vertex emitting {_plural(n, 'particle')}",
                          f"{n}-particle vertex")))


def _muon(it):
    m = it.of_type("muon")
    return max(m, key=lambda p: p.length_cm or 0) if m else None


def _electron(it):
    e = it.of_type("electron")
    return max(e, key=lambda p: p.energy_mev) if e else None


def explain_class(it: InteractionFacts, rng: np.random.Generator) -> str:
    """Why ``it`` has its class, from the visible facts (no class name at the start)."""
    c = it.event_class
    if c is None:
        raise ValueError("explain_class: the interaction has no event class (not a neutrino interaction)")
    s: list[str] = []
    photons = it.of_type("photon")
    if c == "nue_cc":
        e = _electron(it)
        if e is None:
            el = [p for p in it.particles if p.type == "electron"]
            if el:
                s.append(f"the electron ({fmt_energy(el[0].energy_mev, rng)}) leaves only "
                         f"{fmt_energy(el[0].deposited_energy_mev, rng)} in the volume, but no muon track and "
                         "no gap before the energy deposits point to a charged-current electron neutrino")
            else:
                s.append("no muon track leaves the vertex and the energy starts at the vertex")
        else:
            first = _pick(rng, (
                f"{_a(fmt_energy(e.energy_mev, rng) + ' electromagnetic shower')} starts at the vertex",
                f"an electron shower of {fmt_energy(e.energy_mev, rng)} starts right at the vertex with no gap",
                f"the leading object is {_a(fmt_energy(e.energy_mev, rng) + ' shower')} attached to the vertex"
                if it.leading is e else
                f"{_a(fmt_energy(e.energy_mev, rng) + ' shower')} is attached to the vertex"))
            if e.start_dedx_mev_cm is not None and not _dedx_expected(e):
                first += f" (start dE/dx {fmt_dedx(e.start_dedx_mev_cm)}, {_mip_ratio(e.start_dedx_mev_cm)})"
            elif e.start_dedx_mev_cm is not None:
                first += _pick(rng, (
                    f" with {fmt_dedx(e.start_dedx_mev_cm)} in its first centimetres (1 MIP, a single electron)",
                    f"; its start dE/dx of {fmt_dedx(e.start_dedx_mev_cm)} is one MIP, "
                    "not the two MIPs of a photon's e+e- pair"))
            else:
                first += f", the signature of an electron (a photon would convert after a gap of about {CONV_LEN:.0f} cm)"
            s.append(first)
        if not it.of_type("muon"):
            s.append(_pick(rng, ("no muon track leaves the vertex", "there is no long MIP-like muon track",
                                 "no muon is seen")))
    elif c == "numu_cc":
        m = _muon(it)
        if m is not None and m.length_cm is not None:
            L = fmt_length(m.length_cm, rng)
            first = _pick(rng, (f"{_a(L)} MIP-like track leaves the vertex",
                                f"a long minimum-ionising track ({L}) starts at the vertex",
                                f"the longest track, {L}, is a muon (about {fmt_dedx(MIP)})"))
            if m.length_cm < MUON_MIP_MIN_CM:
                first = f"a short muon track ({L}) leaves the vertex"
            elif m.length_cm < 30:
                first = f"{_a(L)} MIP-like muon track leaves the vertex"
            if m.end_state == "stops":
                first += (_pick(rng, (" and stops with a Michel electron at its end",
                                      " and ends in a Michel electron from the muon decay"))
                          if m.michel else " and stops without a Michel electron")
            elif m.end_state == "exits":
                first += _pick(rng, (" and exits the volume", " and is not contained"))
            s.append(first)
        else:
            s.append("a muon leaves the vertex, though it is barely visible")
        if not it.of_type("electron"):
            if photons:
                g = [p.conversion_gap_cm for p in photons if p.conversion_gap_cm is not None]
                s.append("no electromagnetic shower starts at the vertex" +
                         (f" (the photon showers start {fmt_length(min(g), rng)} or more away)" if g else ""))
            else:
                s.append(_pick(rng, ("no electromagnetic shower starts at the vertex",
                                     "there is no electron shower")))
    else:
        s.append(_pick(rng, ("there is no charged lepton", "no charged lepton leaves the vertex",
                             "the final state has no charged lepton")))
        s.append(_pick(rng, ("no long MIP-like muon track and no shower starting at the vertex",
                             "neither a muon track nor an electron shower attached to the vertex")))
        had = []
        for t in ("proton", "pion", "kaon"):
            n = len(it.of_type(t))
            if n:
                had.append(_plural(n, _noun(t), _noun(t, 2)))
        if had:
            s.append("only hadrons: " + _join(had))
        pis = [p for p in it.of_type("pion") if (p.length_cm or 0) >= 30]
        if pis:
            pi = max(pis, key=lambda p: p.length_cm)
            end = {"interacts": ", which ends in a hadronic interaction",
                   "decays": ", which decays in flight"}.get(pi.end_state or "", "")
            s.append(f"the {fmt_length(pi.length_cm, rng)} MIP-like track is a charged pion{end}, not a muon")
        if photons:
            g = [p.conversion_gap_cm for p in photons if p.conversion_gap_cm is not None]
            ph = f"{_plural(len(photons), 'photon shower')}"
            if g:
                ph += f" starting {fmt_length(min(g), rng)} or more from the vertex"
            if it.counts.get("pi0"):
                ph += " (from a pi0 decay)" if it.counts["pi0"] == 1 else " (from pi0 decays)"
            s.append(ph)
        if not had and not photons:
            s.append(f"only {fmt_energy(it.visible_energy_mev, rng)} of scattered deposits are visible")
    return "; ".join(s)


def classification_target(facts: EventFacts, rng: np.random.Generator) -> tuple[str, str]:
    """(``CLASSIFY_PROMPT``, answer): the answer starts with exactly ``CLASS_TEXT[class] + ':'``
    and explains the class from the facts. Raises ValueError for events without a class."""
    it = facts.main
    if it is None or it.event_class is None:
        raise ValueError("classification_target: the event has no neutrino interaction class "
                         "(particle-gun or rain events cannot be classified as nu_e CC / nu_mu CC / NC)")
    why = explain_class(it, rng)
    extra = ""
    if rng.random() < 0.4:
        extra = _pick(rng, (f" Topology {it.topology}.",
                            f" Visible energy {fmt_energy(it.visible_energy_mev, rng)}.",
                            f" Vertex at {fmt_vertex(it.vertex_cm)}." if it.vertex_cm else ""))
    return CLASSIFY_PROMPT, f"{CLASS_TEXT[it.event_class]}: {_cap(why)}.{extra}"


# ============================================================================ captions
MAX_DESCRIBED = 5
"""Captions describe at most this many particles one by one (the most energetic); the rest are
summarised by type, so that a caption stays within the language model's text budget."""


def _clauses(it: InteractionFacts, rng, physics_p: float) -> list[str]:
    vis = it.visible_particles()
    rest: list[ParticleFacts] = []
    if len(vis) > MAX_DESCRIBED:
        by_e = sorted(vis, key=lambda p: -p.energy_mev)
        vis, rest = by_e[:MAX_DESCRIBED], by_e[MAX_DESCRIBED:]
    parts = _ordered(vis, rng)
    out = [_particle_phrase(p, it, rng, physics=rng.random() < physics_p) for p in parts]
    if rest:
        out.append(_pick(rng, ("{n} more: {what}", "{what} of lower energy", "smaller ones: {what}"))
                   .format(n=len(rest), what=_type_list(rest)))
    return out


def _count_sentence(it: InteractionFacts, rng) -> str:
    nt, ns = len(it.tracks), len(it.showers)
    form = int(rng.integers(3))
    if form == 0:
        return f"{_plural(nt, 'track')} and {_plural(ns, 'shower')}"
    if form == 1:
        return f"topology {it.topology}"
    bits = [_plural(n, _noun(t), _noun(t, 2)) for t in ("muon", "electron", "photon", "proton", "pion", "kaon")
            if (n := len(it.of_type(t)))]
    return _join(bits) if bits else "no particle above threshold"


def _vertex_phrase(it, rng) -> str:
    if it.vertex_cm is None:
        return ""
    return _pick(rng, (f" at {fmt_vertex(it.vertex_cm)}", f" with its vertex at {fmt_vertex(it.vertex_cm)}",
                       f" at vertex {fmt_vertex(it.vertex_cm)}"))


def _reasoning_sentence(it: InteractionFacts, rng) -> str:
    if it.event_class:
        return _cap(explain_class(it, rng)) + "."
    bits = []
    for p in it.visible_particles():
        if p.type == "electron" and it.vertex_cm is not None:
            bits.append(f"the electron shower starts at the vertex (about 1 MIP, {fmt_dedx(MIP)})")
        elif p.type == "photon" and p.conversion_gap_cm is not None:
            bits.append(f"the photon shower starts {fmt_length(p.conversion_gap_cm, rng)} away, as photons convert "
                        f"after about {CONV_LEN:.0f} cm on average")
        elif p.type == "muon" and (p.length_cm or 0) >= 30:
            bits.append("the muon is a long minimum-ionising track")
        elif p.type == "proton" and p.end_state == "stops":
            bits.append("the proton is short and highly ionising with a Bragg peak")
    if not bits:
        return ""
    return _cap(_join(bits[:2], rng)) + "."


def _caption_interaction(it: InteractionFacts, facts: EventFacts, rng, style: str) -> str:
    if style == "narrative":
        cl = _clauses(it, rng, 0.5)
        head = _cap(_opening(it, facts, rng)) + (_vertex_phrase(it, rng) if rng.random() < 0.6 else "")
        body = f"{head}: {_join(cl, rng)}." if cl else f"{head} with no particle above threshold."
        if rng.random() < 0.5:
            body += f" Visible energy {fmt_energy(it.visible_energy_mev, rng)}."
        return body
    if style == "inventory":
        lines = [_cap(_opening(it, facts, rng)) + "."]
        if it.vertex_cm is not None:
            lines.append(f"Vertex: {fmt_vertex(it.vertex_cm)}.")
        cl = _clauses(it, rng, 0.2)
        lines.append("Particles: " + ("; ".join(cl) if cl else "none above threshold") + ".")
        lines.append(f"Topology: {it.topology}.")
        lines.append(f"Visible energy: {fmt_energy(it.visible_energy_mev, rng)}.")
        if rng.random() < 0.5:
            lines = [lines[0]] + list(np.array(lines[1:], dtype=object)[rng.permutation(len(lines) - 1)])
        return " ".join(lines)
    if style == "terse":
        bits = [CLASS_TEXT[it.event_class] if it.event_class else ("rain particle" if facts.is_rain else "gun vertex"),
                it.topology]
        if it.nu_energy_mev:
            bits.append(f"E_nu {fmt_energy(it.nu_energy_mev, rng)}")
        bits.append(f"visible {fmt_energy(it.visible_energy_mev, rng)}")
        lead = it.leading
        if lead is not None:
            bits.append("leading " + _particle_phrase(lead, it, rng, physics=False))
        return _cap(", ".join(bits)) + "."
    if style == "reasoning":
        why = _reasoning_sentence(it, rng)
        cl = _clauses(it, rng, 0.3)
        if it.event_class:
            lead = _pick(rng, ("so this is", "which makes it", "hence"))
            head = f"{why[:-1]}, {lead} {_a(_class_name(it.event_class, rng, 0.6) + ' interaction')}."
        else:
            head = why or (_cap(_opening(it, facts, rng)) + ".")
        return (head + (" " + _cap(_join(cl, rng)) + "." if cl else "")).strip()
    if style == "observational":
        cl = _clauses(it, rng, 0.4)
        where = fmt_vertex(it.vertex_cm) if it.vertex_cm is not None else None
        lead = _pick(rng, ("From the vertex at {v}", "Leaving the point {v}", "Out of a vertex at {v}")) \
            .format(v=where) if where else "In this event"
        if not cl:
            return f"{lead}: no particle above threshold."
        return f"{lead}: {_join(cl, rng)} ({_count_sentence(it, rng)})."
    # "counts"
    cl = _clauses(it, rng, 0.3)
    nt, ns = len(it.tracks), len(it.showers)
    head = _pick(rng, (f"{_plural(nt, 'track')} and {_plural(ns, 'shower')}",
                       f"{_cap(_count_sentence(it, rng))}"))
    s = _cap(head)
    if it.vertex_cm is not None and rng.random() < 0.7:
        s += _pick(rng, (f" from a vertex at {fmt_vertex(it.vertex_cm)}",
                         f" (vertex {fmt_vertex(it.vertex_cm)})"))
    if it.event_class and rng.random() < 0.8:
        s += f" in {_a(_class_name(it.event_class, rng) + ' interaction')}"
    if not cl:
        return s + f", only {fmt_energy(it.visible_energy_mev, rng)} of small deposits."
    return s + f": {_join(cl, rng)}."


def _caption_rain(facts: EventFacts, rng, style: str) -> str:
    """A rain event: independent particles, each from its own starting point."""
    vis = [i for i in facts.interactions if i.visible_particles()]
    n = len(vis)
    head = _pick(rng, (f"A rain event: {_plural(n, 'independent particle')} scattered through the volume",
                       f"{_plural(n, 'unrelated particle')} crossing the detector (cosmic-like rain)",
                       f"Particle rain with {_plural(n, 'separate track or shower', 'separate tracks and showers')}",
                       f"{_plural(n, 'independent particle')}, each with its own starting point"))
    order = rng.permutation(n) if rng.random() < 0.5 else \
        np.argsort([-i.visible_energy_mev for i in vis], kind="stable")
    physics_p = 0.7 if style == "reasoning" else 0.25

    def one(it):
        p = it.leading
        ph = _particle_phrase(p, it, rng, physics=rng.random() < physics_p, ref="its starting point")
        if it.vertex_cm is not None and rng.random() < 0.4:
            ph = f"at {fmt_vertex(it.vertex_cm)}, {ph}"
        return ph

    if style == "terse":
        kinds = _type_list([i.leading for i in vis])
        lead = max(vis, key=lambda i: i.leading.energy_mev)
        best = _particle_phrase(lead.leading, lead, rng, ref="its starting point")
        return (f"{head}: {kinds}. The most energetic is {best}. "
                f"Visible energy {fmt_energy(facts.visible_energy_mev, rng)}.")
    if n > MAX_DESCRIBED:
        top = set(np.argsort([-i.leading.energy_mev for i in vis], kind="stable")[:MAX_DESCRIBED].tolist())
        cl = [one(vis[int(k)]) for k in order if int(k) in top]
        rest = [vis[k].leading for k in range(n) if k not in top]
        cl.append(_pick(rng, ("{what} of lower energy", "{n} more: {what}"))
                  .format(n=len(rest), what=_type_list(rest)))
    else:
        cl = [one(vis[int(k)]) for k in order]
    if style == "inventory":
        return (f"{head}. Particles: " + "; ".join(cl) + f". Counts: {_type_list([i.leading for i in vis])}. "
                f"Visible energy: {fmt_energy(facts.visible_energy_mev, rng)}.")
    text = f"{head}: {_join(cl, rng)}."
    if rng.random() < 0.5:
        text += f" Visible energy {fmt_energy(facts.visible_energy_mev, rng)}."
    return text


CAPTION_STYLES = ("narrative", "inventory", "terse", "reasoning", "observational", "counts")


def caption_items(facts: EventFacts, rng: np.random.Generator, n: int = 1) -> list[dict]:
    """``n`` captions as ``{"template": style, "text": caption}``."""
    out = []
    for _ in range(n):
        style = _pick(rng, CAPTION_STYLES)
        if not facts.interactions:
            out.append({"template": "empty", "text": "An event with no labelled particles."})
            continue
        if len(facts.interactions) == 1 or not facts.is_rain:
            main = facts.main
            text = _caption_interaction(main, facts, rng, style)
            others = [i for i in facts.interactions if i is not main and i.visible_particles()]
            if others:
                text += f" Plus {_plural(len(others), 'other interaction')}."
        else:
            text = _caption_rain(facts, rng, style)
            style = "rain-" + style
        out.append({"template": style, "text": " ".join(text.split())})
    return out


def captions(facts: EventFacts, rng: np.random.Generator, n: int = 1) -> list[str]:
    """``n`` varied natural-language descriptions of the event (templates x paraphrases x
    ordering x number formats), with physics reasoning phrases."""
    return [c["text"] for c in caption_items(facts, rng, n)]


# ============================================================================ question answering
def _q(rng, *forms: str) -> str:
    return _pick(rng, forms)


def _type_list(parts: list[ParticleFacts]) -> str:
    n = Counter(p.type for p in parts)
    order = [t for t in ("muon", "electron", "photon", "proton", "pion", "kaon", "unknown") if n.get(t)]
    return _join([_plural(n[t], _noun(t), _noun(t, 2)) for t in order])


def _view(facts: EventFacts) -> Optional[InteractionFacts]:
    """What questions are about: the main interaction, or for a rain event all its particles
    together (no common vertex)."""
    if not (facts.is_rain and len(facts.interactions) > 1):
        return facts.main
    parts = [p for i in facts.interactions for p in i.particles]
    merged = InteractionFacts(id=-1, source="gun", visible_energy_mev=facts.visible_energy_mev,
                              n_voxels=facts.n_points, particles=parts)
    _finish_counts(merged, sum(i.counts.get("pi0", 0) for i in facts.interactions))
    return merged


_NO_VERTEX = (("Does a muon leave the vertex?", "Is there a muon track?"),
              ("How many track-like particles leave the vertex?", "How many track-like particles are there?"),
              ("What particles leave the vertex (topology)?", "What particles are there (topology)?"),
              ("Does an electron shower start at the vertex?", "Is there an electron shower?"),
              ("No: no long MIP-like track from the vertex.", "No: no long MIP-like track."),
              ("How far from the vertex does the photon shower start?",
               "How far from its starting point does the photon convert?"),
              ("from the vertex", "from its origin"))


def qa_items(facts: EventFacts, rng: np.random.Generator) -> list[dict]:
    """Question-answer items ``{"topic", "question", "answer"}`` that apply to the event (for a
    rain event, about all its particles together)."""
    items: list[dict] = []
    it = _view(facts)
    if it is None:
        return items

    def add(topic, question, answer):
        if it.vertex_cm is None:
            for a, b in _NO_VERTEX:
                question, answer = question.replace(a, b), answer.replace(a, b)
        items.append({"topic": topic, "question": question, "answer": " ".join(answer.split())})

    vis = it.visible_particles()
    c = it.counts
    if it.event_class:
        ec = it.event_class
        add("class", _q(rng, "What kind of interaction is this?", "Is this nu_e CC, nu_mu CC or NC?",
                        "What is the event class?", "Classify this event.",
                        "Which neutrino interaction produced this event?", "What type of event is this?"),
            f"{CLASS_TEXT[ec]}: {_a(_pick(rng, CLASS_LONG[ec]) + ' interaction')}.")
        add("current", _q(rng, "Is this a charged-current or a neutral-current interaction?",
                          "CC or NC?", "Was a charged lepton produced?"),
            ("Charged current: " + ("an electron" if ec == "nue_cc" else "a muon") + " leaves the vertex."
             if ec != "nc" else "Neutral current: no charged lepton leaves the vertex."))
        alt = _pick(rng, [k for k in CLASS_TEXT if k != ec])
        add("why_class", _q(rng, f"Why is this {CLASS_TEXT[ec]} and not {CLASS_TEXT[alt]}?",
                            f"Why {CLASS_TEXT[ec]} rather than {CLASS_TEXT[alt]}?",
                            f"What makes this {CLASS_TEXT[ec]} instead of {CLASS_TEXT[alt]}?"),
            _cap(explain_class(it, rng)) + ".")
        if it.nu_energy_mev:
            add("nu_energy", _q(rng, "What is the neutrino energy?", "How energetic was the neutrino?",
                                "What was the incoming neutrino's energy?"),
                f"{fmt_energy(it.nu_energy_mev, rng)}; {fmt_energy(it.visible_energy_mev, rng)} of it is visible.")
        if it.channel in _CHANNEL_NAMES:
            add("channel", _q(rng, "Which interaction channel is this?", "Is it QE, RES or DIS?",
                              "What was the interaction mode?"),
                f"{it.channel} ({_CHANNEL_NAMES[it.channel][0]}).")
    add("visible_energy", _q(rng, "How much energy is deposited?", "What is the visible energy?",
                             "How much energy was deposited in the detector?"),
        f"{fmt_energy(facts.visible_energy_mev, rng)} in {facts.n_points} voxels.")
    if it.vertex_cm is not None:
        add("vertex", _q(rng, "Where is the interaction vertex?", "Where does the interaction happen?",
                         "Give the vertex position.", "What are the vertex coordinates?"),
            f"At {fmt_vertex(it.vertex_cm)}.")
    add("topology", _q(rng, "What is the topology?", "Summarise the final state as a topology string.",
                       "What particles leave the vertex (topology)?"),
        it.topology + ".")
    nt, ns = len(it.tracks), len(it.showers)
    add("n_tracks", _q(rng, "How many tracks are there?", "How many track-like particles leave the vertex?",
                       "Count the tracks."),
        f"{nt}" + (": " + _type_list(it.tracks) if nt else "") + ".")
    add("n_showers", _q(rng, "How many showers are there?", "How many electromagnetic showers?",
                         "Count the showers."),
        f"{ns}" + (": " + _type_list(it.showers) if ns else "") + ".")
    known_ke = all(p.kinetic_energy_mev is not None for p in it.of_type("proton"))
    for t, thr in (("proton", f" above {PROTON_MIN_KE_MEV:.0f} MeV" if known_ke else
                    f" longer than {PROTON_MIN_LENGTH_CM:.1f} cm"), ("muon", ""), ("pion", ""),
                   ("photon", ""), ("electron", "")):
        n = c.get(t, 0)
        lst = sorted(it.of_type(t), key=lambda p: -(p.length_cm or 0) if t in ("proton", "muon", "pion")
                     else -p.energy_mev)
        det = ""
        if lst and t in ("proton", "muon", "pion"):
            det = ": " + _join([fmt_length(p.length_cm, rng) if p.length_cm is not None else "short" for p in lst])
        elif lst:
            det = ": " + _join([fmt_energy(p.energy_mev, rng) for p in lst])
        add(f"n_{t}", _q(rng, f"How many {_noun(t, 2)} are there?", f"Count the {_noun(t, 2)}.",
                         f"Number of {_noun(t, 2)}?"),
            f"{n}{thr}{det}.")
    # presence
    m = _muon(it)
    add("has_muon", _q(rng, "Is there a muon?", "Does a muon leave the vertex?", "Any muon track?"),
        (f"Yes: {_a(fmt_length(m.length_cm, rng))} MIP-like track." if m and m.length_cm is not None
         else "Yes." if m else "No: no long MIP-like track from the vertex."))
    e = _electron(it)
    add("has_electron", _q(rng, "Is there an electron?", "Does an electron shower start at the vertex?",
                           "Any electron in the final state?"),
        (f"Yes: {_a(fmt_energy(e.energy_mev, rng) + ' shower')}"
         + (" starting at the vertex." if it.vertex_cm is not None else ".") if e
         else "No: no shower starts at the vertex." if it.vertex_cm is not None else "No."))
    ph = it.of_type("photon")
    ph_gaps = [p.conversion_gap_cm for p in ph if p.conversion_gap_cm is not None]
    add("has_photon", _q(rng, "Are there photons?", "Is there a photon shower?", "Any gamma showers?"),
        (f"Yes: {_plural(len(ph), 'photon shower')}"
         + (f", the first starting {fmt_length(min(ph_gaps), rng)} from the vertex" if ph_gaps else "")
         + "." if ph else "No."))
    mich = [p for p in vis if p.michel]
    add("has_michel", _q(rng, "Is there a Michel electron?", "Does any track end in a Michel electron?",
                         "Any Michel electrons?"),
        (f"Yes: at the end of the {_noun(mich[0].type)}" +
         (f" ({fmt_energy(mich[0].michel_energy_mev, rng)})" if mich[0].michel_energy_mev else "") + "."
         if mich else "No."))
    if c.get("pi0"):
        add("has_pi0", _q(rng, "Is there a neutral pion?", "Is there a pi0?"),
            f"Yes: {_plural(c['pi0'], 'pi0')}, seen as {_plural(len([p for p in ph if p.from_pi0]), 'photon shower')}.")
    lead = it.leading
    if lead is not None:
        add("leading", _q(rng, "What is the most energetic particle?", "Which particle carries the most energy?",
                          "What is the energy of the leading particle?"),
            f"The {_noun(lead.type)}: {fmt_energy(lead.energy_mev, rng)}.")
    lt = it.longest_track
    if lt is not None:
        add("longest_track", _q(rng, "How long is the longest track?", "What is the length of the longest track?",
                                "Which is the longest track?"),
            f"{fmt_length(lt.length_cm, rng)}, the {_noun(lt.type)}.")
    if m is not None and m.length_cm is not None:
        st = {"stops": "it stops inside the volume" + (" and decays (Michel electron)" if m.michel else ""),
              "exits": "it leaves the active volume", "interacts": "it interacts",
              "decays": "it decays"}.get(m.end_state or "", "")
        add("muon", _q(rng, "How long is the muon track?", "Describe the muon.", "Is the muon contained?"),
            f"{fmt_length(m.length_cm, rng)}" + (f"; {st}" if st else "") + ".")
    showers = [p for p in it.showers if p.type in _SHOWER_TYPES]
    if showers:
        s = max(showers, key=lambda p: p.energy_mev)
        if s.start_dedx_mev_cm is not None:
            add("shower_dedx", _q(rng, "What is the dE/dx at the start of the shower?",
                                  "How much does the shower deposit per cm at its start?"),
                f"{fmt_dedx(s.start_dedx_mev_cm)} ({_mip_ratio(s.start_dedx_mev_cm)}) for the "
                f"{fmt_energy(s.energy_mev, rng)} {_noun(s.type)} shower.")
        why = []
        if s.type == "electron" and it.vertex_cm is not None:
            why.append("it starts at the vertex")
        elif s.type == "photon" and s.conversion_gap_cm is not None:
            why.append(f"it converts {fmt_length(s.conversion_gap_cm, rng)} from the vertex")
        if s.start_dedx_mev_cm is not None:
            why.append(f"its start dE/dx is {fmt_dedx(s.start_dedx_mev_cm)} "
                       f"({_mip_ratio(s.start_dedx_mev_cm)})")
        if why:
            add("shower_identity", _q(rng, "Is the leading shower from an electron or a photon?",
                                      "Electron or photon shower?", "What made the main shower?"),
                f"{'An electron' if s.type == 'electron' else 'A photon'}: {' and '.join(why)}.")
    gaps = [p for p in ph if p.conversion_gap_cm is not None]
    if gaps:
        p = max(gaps, key=lambda q: q.energy_mev)
        pre = f"The {fmt_energy(p.energy_mev, rng)} photon: " if len(ph) > 1 else ""
        add("photon_gap", _q(rng, "How far from the vertex does the photon shower start?",
                             "What is the conversion gap of the photon?"),
            f"{pre}{fmt_length(p.conversion_gap_cm, rng)} (mean conversion length about {CONV_LEN:.0f} cm).")
    prot = [p for p in it.of_type("proton") if p.end_state == "stops"]
    if prot:
        p = max(prot, key=lambda q: q.length_cm or 0)
        add("proton", _q(rng, "Does the proton stop?", "Is there a Bragg peak?", "Describe the proton."),
            f"Yes: {_a(fmt_length(p.length_cm, rng))} highly ionising track ending in a Bragg peak"
            + (f", {fmt_energy(p.kinetic_energy_mev, rng)}" if p.kinetic_energy_mev else "") + ".")
    if len(facts.interactions) > 1:
        nvis = len([i for i in facts.interactions if i.visible_particles()])
        add("n_interactions", _q(rng, "How many separate interactions are there?",
                                 "Are all particles from one vertex?"),
            f"{nvis} separate {'vertex' if nvis == 1 else 'vertices'}" + (" (particle rain)." if facts.is_rain else "."))
    return items


def qa_pairs(facts: EventFacts, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``[(question, answer), ...]`` for the event, phrasings drawn from ``rng``."""
    return [(d["question"], d["answer"]) for d in qa_items(facts, rng)]


# ============================================================================ tool traces
_DEFINITIONS = (
    ("What is a Michel electron?",
     f"The electron (or positron) from the decay of a muon at rest, up to {MICHEL_EMAX:.1f} MeV "
     "(mean about 37 MeV): a short shower-like blip at the end of a stopping muon track."),
    ("What is a MIP?",
     f"A minimum-ionising particle: it loses about {fmt_dedx(MIP)} in liquid argon (1.508 MeV cm2/g), "
     "like an energetic muon."),
    ("How do you tell an electron shower from a photon shower?",
     f"An electron shower starts at the vertex with about 1 MIP ({fmt_dedx(MIP)}) in its first centimetres; a "
     f"photon converts after a gap (mean about {CONV_LEN:.0f} cm) and starts with about 2 MIP "
     f"({fmt_dedx(2 * MIP)}) from its e+e- pair."),
    ("Why do photon showers start with a gap?",
     f"A photon is neutral and leaves nothing until it converts; the conversion length is 9/7 of the "
     f"radiation length, about {CONV_LEN:.0f} cm in argon."),
    ("What is the radiation length of liquid argon?", f"{X0:.1f} cm (19.55 g/cm2)."),
    ("What is the Moliere radius of liquid argon?",
     f"{MOLIERE:.2f} cm: 90% of a shower's energy lies within one Moliere radius of its axis."),
    ("What is a Bragg peak?",
     "The rise of dE/dx at the end of a stopping heavy charged particle such as a proton: the "
     "deposit per cm grows steeply as it slows down."),
    ("What does NC mean?",
     "Neutral current: the neutrino scatters through Z exchange and leaves as a neutrino, so "
     "there is no charged lepton, only hadrons and photons."),
    ("What is a nu_mu CC event?",
     "A muon-neutrino charged-current interaction: a muon (a long minimum-ionising track) "
     "leaves the vertex with the hadronic system."),
    ("What is a nu_e CC event?",
     "An electron-neutrino charged-current interaction: an electron shower starts at the vertex "
     f"with about 1 MIP ({fmt_dedx(MIP)})."),
    ("How does a pi0 show up?",
     f"A pi0 ({PI0_MASS:.2f} MeV) decays to two photons (98.8%), seen as two showers that start "
     "after conversion gaps."),
    ("Why do some stopping muons have no Michel electron?",
     "A stopping mu- is captured by an argon nucleus about 75% of the time instead of decaying; "
     "a mu+ always decays."),
    ("What is a delta ray?",
     "An electron knocked out of an atom by a track's ionisation: a short branch along the track."),
    ("What is the nuclear interaction length of liquid argon?",
     f"About {NUCLEAR_INT_CM:.1f} cm: pions and protons travelling that far often end in a "
     "hadronic interaction instead of stopping."),
    ("What is the critical energy in argon?",
     f"About {EC:.2f} MeV for electrons: below it ionisation losses exceed bremsstrahlung."),
)


def _trace(question, tool, arguments=None, answer_template=None, answer=None) -> dict:
    return {"question": question, "tool": tool, "arguments": dict(arguments or {}),
            "answer_template": answer_template, "answer": answer}


def tool_traces(facts: EventFacts, rng: np.random.Generator, n_definitions: int = 2) -> list[dict]:
    """Questions mapped to the tool to call (``TOOL_NAMES``), with the arguments (the agent adds
    the current event's id), an ``answer_template`` whose ``{placeholders}`` the tool result
    fills, and the ``answer`` filled from the truth; ``n_definitions`` traces need no tool
    (``tool`` None, ``answer`` a short definition)."""
    it = _view(facts)
    out: list[dict] = []
    if it is not None:
        vtx = fmt_vertex(it.vertex_cm) if it.vertex_cm is not None else None
        n_mich = it.counts.get("michel", 0)
        out.append(_trace(_q(rng, "Segment this event into tracks and showers.",
                             "Which voxels are track-like and which shower-like?",
                             "Label every voxel: shower, track, Michel, delta or low energy.",
                             "Show me the semantic segmentation."),
                          "segment", {}, "Segmentation: {summary}.",
                          f"{len(it.tracks)} track-like and {len(it.showers)} shower-like particles"
                          + (f", {n_mich} Michel electron" + ("s" if n_mich != 1 else "") if n_mich else "") + "."))
        out.append(_trace(_q(rng, "Is there a Michel electron?", "Are there Michel electrons at the track ends?",
                             "Do any tracks end with a Michel decay?"),
                          "segment", {}, "{n_michel_voxels} voxels are labelled Michel.",
                          "Yes." if n_mich else "No."))
        if vtx:
            out.append(_trace(_q(rng, "Where is the vertex?", "Find the interaction vertex.",
                                 "Where does the interaction start?", "Locate the primary vertex."),
                              "find_vertex", {}, "The vertex is at {vertex}.", f"The vertex is at {vtx}."))
        recon_q = [("How many protons are there?", f"{_plural(it.counts.get('proton', 0), 'proton')}."),
                   ("What is the topology?", f"{it.topology}."),
                   ("List the particles with their energies.", None),
                   ("How long is the longest track?",
                    f"{fmt_length(it.longest_track.length_cm)}." if it.longest_track else "There is no track."),
                   ("What is the dE/dx at the start of the shower?", None)]
        q, a = _pick(rng, recon_q)
        if a is None:
            a = "; ".join(f"{_noun(p.type)} {fmt_energy(p.energy_mev)}" for p in it.visible_particles()) or "none"
            if q.startswith("What is the dE/dx"):
                s = [p for p in it.showers if p.start_dedx_mev_cm is not None]
                a = (f"{fmt_dedx(s[0].start_dedx_mev_cm)}." if s else "There is no shower with a measurable start.")
        out.append(_trace(q, "reconstruct", {}, "{particles}", a))
        if it.event_class:
            out.append(_trace(_q(rng, "Is this a nu_e CC event?", "Classify this event.",
                                 "What type of neutrino interaction is this?", "Is this NC or CC?",
                                 "Which class does this event belong to?"),
                              "classify_event", {}, "{event_class} (p = {probability}).",
                              f"{CLASS_TEXT[it.event_class]}."))
        if rng.random() < 0.5:
            out.append(_trace(_q(rng, "Find events like this one.", "Show me similar events.",
                                 "Which stored events look like this?"),
                              "find_similar", {"k": int(_pick(rng, (3, 5, 10)))},
                              "The most similar events are {event_ids}.", None))
        else:
            query = (f"{CLASS_TEXT[it.event_class]} event with topology {it.topology}" if it.event_class
                     else f"event with topology {it.topology}")
            out.append(_trace(_q(rng, f"Find me {_a(query)}.", f"Search for: {query}.",
                                 f"Look for events like: {query}."),
                              "find_similar", {"query": query, "k": 5},
                              "The best matches are {event_ids}.", None))
        out.append(_trace(_q(rng, "Describe this event.", "What happened here?", "Summarise this event.",
                             "Give me an overview of this event."),
                          "describe", {}, "{description}", None))
        view = _pick(rng, ("3d", "xz", "yz"))
        out.append(_trace({"3d": _q(rng, "Show me the event.", "Draw the event in 3D.", "Plot this event."),
                           "xz": _q(rng, "Draw the XZ projection.", "Show the event from above (XZ)."),
                           "yz": _q(rng, "Show the YZ projection.", "Draw the YZ view.")}[view],
                          "render", {"view": view}, "{figure}", None))
    k = int(min(n_definitions, len(_DEFINITIONS)))
    for i in rng.choice(len(_DEFINITIONS), size=k, replace=False):
        q, a = _DEFINITIONS[int(i)]
        out.append(_trace(q, None, {}, None, a))
    return out


def tool_call_text(trace: dict) -> str:
    """The brain's target text for a trace: the JSON tool call ``{"tool": ..., "arguments": ...}``
    (keys sorted), or the answer itself when no tool is needed."""
    if trace.get("tool") is None:
        return str(trace.get("answer") or "")
    return json.dumps({"tool": trace["tool"], "arguments": trace.get("arguments") or {}}, sort_keys=True)


# ============================================================================ corpus
def build_corpus(events_or_iterable: Iterable[Event] | Event, seed: int = 0,
                 kinds: Sequence[str] = KINDS, captions_per_event: int = 2,
                 qa_per_event: Optional[int] = 6, tools_per_event: Optional[int] = 3,
                 skip_untruthed: bool = False) -> list[dict]:
    """Records ``{kind, event_id, prompt, target, template}`` (tool records add ``tool`` and
    ``arguments``) for events (or their ``EventFacts``). One generator per (seed, event index,
    kind), so the records of an event do not depend on the others or on which kinds are asked.
    ``qa_per_event`` / ``tools_per_event``: how many to draw (None: all). Events without a class
    give no 'classify' record; events without truth raise ``NoTruthError`` unless
    ``skip_untruthed``."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"build_corpus: unknown kinds {bad}; choose from {KINDS}")
    if isinstance(events_or_iterable, (Event, EventFacts)):
        events_or_iterable = [events_or_iterable]
    records: list[dict] = []
    for index, ev in enumerate(events_or_iterable):
        if isinstance(ev, EventFacts):
            facts = ev
        else:
            try:
                facts = event_facts(ev)
            except NoTruthError:
                if skip_untruthed:
                    continue
                raise
        eid = facts.event_id if facts.event_id is not None else index
        for kind in kinds:
            rng = np.random.default_rng([int(seed), index, KINDS.index(kind)])
            if kind == "caption":
                for c in caption_items(facts, rng, captions_per_event):
                    records.append(dict(kind=kind, event_id=eid, prompt=_pick(rng, CAPTION_PROMPTS),
                                        target=c["text"], template=c["template"]))
            elif kind == "qa":
                items = qa_items(facts, rng)
                if qa_per_event is not None and len(items) > qa_per_event:
                    items = [items[int(i)] for i in sorted(rng.choice(len(items), qa_per_event, replace=False))]
                for d in items:
                    records.append(dict(kind=kind, event_id=eid, prompt=d["question"], target=d["answer"],
                                        template=d["topic"]))
            elif kind == "classify":
                if facts.main is None or facts.main.event_class is None:
                    continue
                p, a = classification_target(facts, rng)
                records.append(dict(kind=kind, event_id=eid, prompt=p, target=a,
                                    template=f"classify-{facts.main.event_class}"))
            else:
                tr = tool_traces(facts, rng)
                if tools_per_event is not None and len(tr) > tools_per_event:
                    tr = [tr[int(i)] for i in sorted(rng.choice(len(tr), tools_per_event, replace=False))]
                for t in tr:
                    records.append(dict(kind=kind, event_id=eid, prompt=t["question"], target=tool_call_text(t),
                                        template=f"tool-{t['tool'] or 'none'}", tool=t["tool"],
                                        arguments=t["arguments"]))
    return records


def write_jsonl(records: Iterable[dict], path: str | os.PathLike) -> int:
    """Write records as JSON lines, atomically (a reader sees the old file or the whole new
    one). Returns the number of records."""
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _ngrams(tokens: list[str], n: int):
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def phrasing_diversity(records: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Per kind (and 'all'): number of records, distinct targets and prompts, distinct templates,
    and distinct-n ratios (distinct n-grams / all n-grams of the targets, n = 1, 2, 3)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r.get("kind", "?"), []).append(r)
    groups["all"] = list(records)
    out = {}
    for kind, recs in groups.items():
        toks = [str(r.get("target", "")).lower().split() for r in recs]
        d = {"n": len(recs), "distinct_targets": len({r.get("target") for r in recs}),
             "distinct_prompts": len({r.get("prompt") for r in recs}),
             "templates": len({r.get("template") for r in recs if r.get("template") is not None})}
        for n in (1, 2, 3):
            grams = [g for t in toks for g in _ngrams(t, n)]
            d[f"distinct_{n}"] = round(len(set(grams)) / len(grams), 4) if grams else 0.0
        out[kind] = d
    return out
