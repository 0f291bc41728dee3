"""``find_vertex``: the interaction vertex from the encoder's vertex head, cross-checked against
where the reconstructed particles start.

    from larsight.tools import find_vertex
    v = find_vertex("run.h5:3")
    v.vertex_cm, v.confidence, v.status        # (x, y, z) cm, 0..1, 'ok' / 'disagree' / ...
    v.head_vertex_cm, v.particle_vertex_cm     # the two estimates, and their distance
    v.interactions                             # one vertex per predicted interaction group

Two estimates:

- the head: every point votes for the vertex; the vote-weighted mean, its confidence (share of
  the vote weight within 3 cm of it) and the spread of the votes (``encoder.inference``);
- the particles: the point where most reconstructed particles begin. Each particle offers its
  ends as candidates (a track's two ends, a shower's extremes along its axis); a candidate's
  support is the number of particles that could start there: a track with an end within
  ``MEET_CM`` (not the end with a clear Bragg peak: a track stops there), a shower with a
  point within ``MEET_CM`` near either end of its axis. The best candidate is refined to the
  mean of those start points.

Before that, the particles are prepared (``tools.clusters``): track pieces that continue each
other are stitched, and a track cluster is split where it turns sharply (a V of two tracks) or
where a confident head vertex sits on a kink.

``status`` says how the head and the particle starts agree, and names the estimate the rules
below prefer (``method``):

- ``ok``: two or more particles meet within ``AGREE_CM`` of the head vertex (``particles+head``:
  their meeting point); or no two particles meet and the head is confident or has a particle
  start next to it (``head``, moved onto the particle starts near it); or the only particle
  passes through a confident head vertex away from its ends (``head on particle``);
- ``disagree``: particles meet more than ``AGREE_CM`` from the head vertex. The head is
  preferred when it is fairly confident (``HEAD_ALONE_TRUST``, or ``HEAD_TRUST`` with a
  particle start next to it), otherwise the particles. ``note`` gives both;
- ``single_particle``: one particle only: its start (a track: its inside end when the other
  leaves the volume, else the end away from a clear Bragg peak, else the end the head points
  at; a shower: its dense end), with a low confidence;
- ``weak``: no two particles meet and the head is unsure: the head vertex, low confidence;
- ``no_vertex``: several separate groups of activity with no common start (a cosmic-like
  "rain" event; on a beam event only when no two particles meet anywhere) or no particle at
  all: ``vertex_cm`` is None, the groups' own vertices are in ``interactions``.

The place itself (``vertex_cm``, whenever there is one) is then the best-scoring candidate of
``score_candidates`` when that lies more than 0.5 cm from the preferred estimate (``method``
``scored particle starts``; ``note`` says so): every place a particle could start is scored by
the particles starting there, the particles pointing back at it from a gap (photon showers,
tracks whose first centimetres were lost), its distance to the head vertex weighted by the
head's confidence and, on neutrino-beam events (``beam_event``), how much of the event lies
upstream of it along the beam: the products of a neutrino interaction go forward, which orients
a lone track and picks the right end of two that touch end to end. The head alone is within
3 cm of the truth for only about a quarter of the events; its vote is one term of the score.

On 300 simulated neutrino events (``DataSpec(modes="nu", seed=7)``, eval split, used to tune
the score) the vertex is within 3 cm of the truth for 82% of events (50.7% with the rules
alone); on 40 isotropic multi-particle events ('mpv', no beam term) 50% (35%). The held-out
figures are in ``evals/reports/tools.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from larsight.events.model import Event

from . import engine
from .clusters import (Cluster, bragg_end, build_clusters, endpoints, shower_start_end,
                       significant, split_at_vertex, split_kinks, stitch)
from .inputs import EventLike, describe_ref, load_event
from .results import ToolResult, Vec3, fmt_vec, vec
from .vertex_candidates import (BOUNDARY_CM, MEET_CM, at_boundary, beam_event, nearest_start,
                                particle_vertex, score_candidates, support)

__all__ = ["find_vertex", "VertexResult", "GroupVertex", "MEET_CM", "AGREE_CM"]

AGREE_CM = 5.0             # head and particle vertices further apart than this disagree
HEAD_ALONE_CONFIDENCE = 0.3
HEAD_TRUST = 0.1           # a head this confident, with a particle start near it, beats a far meeting point
HEAD_INTERIOR_CONFIDENCE = 0.2
ON_TRACK_CM = 4.0          # a head vertex this close to a cluster lies on it
HEAD_SPLIT_CONFIDENCE = 0.03  # a head this confident may split a track cluster at a kink
HEAD_ALONE_TRUST = 0.25    # ... and this confident even with no particle start near it
GROUP_MIN_FRACTION = 0.1   # an interaction group with this share of the energy counts
GROUP_MIN_MEV = 20.0
SEPARATE_CM = 20.0         # groups whose vertices are this far apart are separate interactions
NEAR_END_CM = 10.0         # a head vertex this close to one end of a lone particle picks that end

Status = Literal["ok", "disagree", "single_particle", "weak", "no_vertex"]


class GroupVertex(ToolResult):
    """The vertex of one predicted interaction group."""

    interaction: int = Field(description="predicted interaction group id")
    vertex_cm: Optional[Vec3] = Field(None, description="(x, y, z) cm; None for a group without particles")
    n_particles: int = Field(description="particles of the group that start within MEET_CM of it")
    energy_mev: float = Field(description="deposited energy of the group, MeV")


class VertexResult(ToolResult):
    """The interaction vertex with its evidence."""

    source: Optional[str] = Field(None, description="'file:index' the event came from, if any")
    status: Status = Field(description="ok | disagree | single_particle | weak | no_vertex (module docstring)")
    vertex_cm: Optional[Vec3] = Field(description="best vertex (x, y, z) in cm; None if there is none")
    confidence: float = Field(description="0..1: head confidence, raised when particles meet at the vertex")
    method: str = Field(description="how vertex_cm was chosen: particles+head, particles, head, "
                                    "single particle or none")
    head_vertex_cm: Optional[Vec3] = Field(None, description="vertex head's vote, cm")
    head_confidence: float = Field(0.0, description="share of the head's vote weight within 3 cm of its vertex")
    head_spread_cm: Optional[float] = Field(None, description="weighted RMS distance of the head's votes, cm")
    particle_vertex_cm: Optional[Vec3] = Field(None, description="where most particles start, cm")
    n_particles_at_vertex: int = Field(0, description="particles starting within MEET_CM (3 cm) of vertex_cm")
    n_particles: int = Field(0, description="significant particles in the event (tracks >= 1.5 cm, showers >= 10 MeV)")
    head_to_particles_cm: Optional[float] = Field(None, description="distance between the head and particle vertices, cm")
    nearest_start_cm: Optional[float] = Field(None, description="distance from the head vertex to the nearest particle start, cm")
    disagreement: bool = Field(False, description="head and particle vertices more than AGREE_CM (5 cm) apart")
    interactions: list[GroupVertex] = Field(default_factory=list, description="per interaction group")
    truth_vertex_cm: Optional[Vec3] = Field(None, description="simulator truth vertex, when the event has one")
    truth_distance_cm: Optional[float] = Field(None, description="distance of vertex_cm from the truth vertex, cm")
    note: str = Field("", description="what the evidence says, in words")

    def _headline(self) -> str:
        where = fmt_vec(self.vertex_cm) + " cm" if self.vertex_cm is not None else "none"
        return f"Vertex {where} [{self.status}, confidence {self.confidence:.2f}] {self.note}"

    def _sections(self):
        rows = [("vertex (best)", self.vertex_cm, self.method),
                ("vertex head", self.head_vertex_cm, f"confidence {self.head_confidence:.2f}, spread "
                 f"{self.head_spread_cm if self.head_spread_cm is None else round(self.head_spread_cm, 1)} cm"),
                ("particle starts", self.particle_vertex_cm,
                 f"{self.n_particles_at_vertex} of {self.n_particles} particles meet")]
        if self.truth_vertex_cm is not None:
            rows.append(("truth", self.truth_vertex_cm, f"{self.truth_distance_cm:.1f} cm from best"
                         if self.truth_distance_cm is not None else ""))
        out = [("Vertex estimates", ["estimate", "(x, y, z) cm", "evidence"], rows),
               ("Cross-check", ["quantity", "value"],
                [("head to particle vertex [cm]", self.head_to_particles_cm),
                 ("head to nearest particle start [cm]", self.nearest_start_cm),
                 ("disagreement", self.disagreement)])]
        if len(self.interactions) > 1:
            out.append(("Interaction groups", ["group", "vertex (x, y, z) cm", "particles", "energy [MeV]"],
                        [(g.interaction, g.vertex_cm, g.n_particles, g.energy_mev) for g in self.interactions]))
        return out


# ============================================================================ internals
@dataclass
class Analysis:
    """Everything the tools derive from one event (cached per event by ``analyse``)."""

    event: Event
    model: object
    pred: object
    clusters: list[Cluster]
    vertex: VertexResult
    voxel_cm: float
    notes: list[str] = field(default_factory=list)


def orient_single(c: Cluster, ev: Event, hint: Optional[np.ndarray], hint_conf: float, vs: float
                  ) -> np.ndarray:
    """The start of a lone particle. A track leaving the volume starts at its inside end; a
    track with a clear Bragg peak starts at the other end. Otherwise the end
    the head vertex points at (within NEAR_END_CM, the other end more than twice as far),
    else a track's end nearer the head vertex, a shower's dense end
    (``clusters.shower_start_end``)."""
    ends = endpoints(c, vs)
    near_hint = None
    if hint is not None:
        d = np.linalg.norm(ends - hint, axis=1)
        k = int(np.argmin(d))
        if d[k] <= NEAR_END_CM and d[1 - k] > 2.0 * d[k]:
            near_hint = k
    if c.kind == "track":
        out = [at_boundary(e, ev, BOUNDARY_CM) for e in ends]
        if out[0] != out[1]:
            return ends[1] if out[0] else ends[0]
        stop = bragg_end(c, vs)
        if stop is not None:
            return ends[1 - stop]
    if near_hint is not None:
        return ends[near_hint]
    if c.kind == "track":
        return ends[0] if hint is None else ends[int(np.argmin(np.linalg.norm(ends - hint, axis=1)))]
    return ends[shower_start_end(c)]


def _groups(clusters: list[Cluster], ev: Event, interaction: np.ndarray, vs: float,
            hint: Optional[np.ndarray], hint_conf: float) -> list[GroupVertex]:
    out = []
    ids = np.unique(interaction)
    energy = np.bincount(np.searchsorted(ids, interaction), weights=ev.energy.astype(np.float64),
                         minlength=len(ids))
    for i, e in zip(ids, energy):
        mine = [c for c in clusters if c.interaction == int(i)]
        sig = [c for c in mine if significant(c, vs)]
        v, n = particle_vertex(mine, vs, hint)
        if v is None and len(sig) >= 1:
            lone = max(sig, key=lambda c: c.energy_mev)
            v, n = orient_single(lone, ev, hint, hint_conf, vs), 1
        out.append(GroupVertex(interaction=int(i), vertex_cm=vec(v) if v is not None else None,
                               n_particles=int(n), energy_mev=round(float(e), 1)))
    out.sort(key=lambda g: -g.energy_mev)
    return out


def _interior(c: Cluster, head: Optional[np.ndarray], hconf: float, vs: float) -> Optional[np.ndarray]:
    """The point of ``c`` nearest a confident head vertex when the head lies on ``c`` (within
    ON_TRACK_CM) but far from both its ends (NEAR_END_CM): a vertex inside a merged cluster."""
    if head is None or hconf < HEAD_INTERIOR_CONFIDENCE:
        return None
    d = np.linalg.norm(c.centres - head, axis=1)
    k = int(np.argmin(d))
    if d[k] > ON_TRACK_CM:
        return None
    if np.linalg.norm(endpoints(c, vs) - c.centres[k], axis=1).min() <= NEAR_END_CM:
        return None
    return c.centres[k]


def _refine(head: np.ndarray, near: list) -> np.ndarray:
    """The head vertex moved to the mean of the particle starts found near it (sharper)."""
    return np.mean([q for _, q in near], axis=0) if near else head


def locate(ev: Event, pred, clusters: list[Cluster]) -> VertexResult:
    """The vertex decision (see the module docstring) on already built clusters."""
    vs = ev.meta.volume.voxel_size_cm
    head = None
    if pred.vertex is not None and np.all(np.isfinite(pred.vertex)):
        head = np.asarray(pred.vertex, dtype=np.float64)
    hconf = float(pred.vertex_confidence or 0.0) if head is not None else 0.0
    sig = [c for c in clusters if significant(c, vs)]
    pv, n_meet = particle_vertex(clusters, vs, head)
    head_near = support(sig, head, vs) if head is not None else []
    nearest = None
    if head is not None and sig:
        nearest = min(nearest_start(c, head, vs)[0] for c in sig)
        nearest = None if not np.isfinite(nearest) else nearest
    d_hp = float(np.linalg.norm(pv - head)) if (pv is not None and head is not None) else None
    inter = pred.interaction if pred.interaction is not None else np.zeros(len(ev), np.int64)
    groups = _groups(clusters, ev, inter, vs, head, hconf)
    x = _Found(ev=ev, vs=vs, head=head, hconf=hconf, sig=sig, pv=pv, n_meet=n_meet,
               head_near=head_near, nearest=nearest, d_hp=d_hp, groups=groups,
               scored=score_candidates(ev, clusters, sig, head, hconf, vs))
    status, method, vertex, conf, note = _decide(x)
    if vertex is not None and x.scored is not None:
        vertex, method, note = _prefer_scored(x, vertex, method, note)
    n_at = len(support(sig, vertex, vs)) if vertex is not None else 0
    spread = pred.vertex_spread_cm
    return VertexResult(
        status=status, vertex_cm=vec(vertex) if vertex is not None else None,
        confidence=round(float(np.clip(conf, 0, 1)), 3), method=method,
        head_vertex_cm=vec(head) if head is not None else None, head_confidence=round(hconf, 3),
        head_spread_cm=None if spread is None or not np.isfinite(spread) else round(float(spread), 2),
        particle_vertex_cm=vec(pv) if pv is not None else None, n_particles_at_vertex=int(n_at),
        n_particles=len(sig), head_to_particles_cm=None if d_hp is None else round(d_hp, 2),
        nearest_start_cm=None if nearest is None else round(float(nearest), 2),
        disagreement=bool(d_hp is not None and d_hp > AGREE_CM), interactions=groups, note=note)


@dataclass
class _Found:
    """What ``locate`` measured before deciding: the vertex head's point and confidence, the
    significant clusters, where particles meet, the activity groups, the best-scored start."""

    ev: Event
    vs: float
    head: Optional[np.ndarray]
    hconf: float
    sig: list
    pv: Optional[np.ndarray]
    n_meet: int
    head_near: list
    nearest: Optional[float]
    d_hp: Optional[float]
    groups: list
    scored: Any


def _separate_groups(x: _Found) -> list:
    """The big activity groups, when there are two or more far apart and the head is not
    confident (cosmic-like or particle rain); else an empty list."""
    total = max(x.ev.total_energy_mev, 1e-9)
    big = [g for g in x.groups if g.vertex_cm is not None and g.energy_mev >= GROUP_MIN_MEV
           and g.energy_mev >= GROUP_MIN_FRACTION * total]
    separate = len(big) >= 2 and x.hconf < HEAD_ALONE_CONFIDENCE and max(
        float(np.linalg.norm(np.subtract(a.vertex_cm, b.vertex_cm))) for a in big for b in big) > SEPARATE_CM
    return big if separate else []


def _decide(x: _Found) -> tuple[str, str, Optional[np.ndarray], float, str]:
    """(status, method, vertex, confidence, note): how the head and the particles agree."""
    ev, vs, head, hconf, sig, pv = x.ev, x.vs, x.head, x.hconf, x.sig, x.pv
    n_meet, head_near, nearest, d_hp, scored = x.n_meet, x.head_near, x.nearest, x.d_hp, x.scored
    big = _separate_groups(x)
    separate = bool(big)
    vertex, method, conf, note = None, "none", 0.0, ""
    if not sig:
        status = "no_vertex"
        note = "no particle is big enough to define a vertex (only small deposits)"
    elif separate and n_meet < 3 and not (beam_event(ev) and scored is not None and scored[1] >= 2):
        # (a beam event whose particles do meet somewhere has a vertex: its photons and
        # neutron deposits are the far groups)
        status = "no_vertex"
        note = (f"no common interaction vertex: {len(big)} separate groups of activity more than "
                f"{SEPARATE_CM:g} cm apart (cosmic-like or particle rain); see the per-group vertices")
    elif pv is not None and head is not None and d_hp <= AGREE_CM:
        status, method, vertex = "ok", "particles+head", pv
        conf = max(hconf, 1.0 - 0.5 ** n_meet)
        note = (f"{n_meet} particles start within {MEET_CM:g} cm of it and the vertex head agrees "
                f"({d_hp:.1f} cm away)")
    elif pv is not None and (head is None or hconf < HEAD_TRUST
                             or (not head_near and hconf < HEAD_ALONE_TRUST)):
        status, method, vertex = ("disagree" if head is not None else "ok"), "particles", pv
        conf = (1.0 - 0.5 ** n_meet) * (0.6 if head is not None else 1.0)
        note = (f"{n_meet} particles start here; the vertex head (confidence {hconf:.2f}) points "
                f"{d_hp:.1f} cm away" if head is not None else f"{n_meet} particles start here")
    elif pv is not None:
        status, method = "disagree", "head"
        vertex = _refine(head, head_near)
        conf = hconf
        note = (f"the vertex head (confidence {hconf:.2f}) and {len(head_near)} particle start(s) near "
                f"it are preferred over a point {d_hp:.1f} cm away where {n_meet} particles meet")
    elif len(sig) == 1 and _interior(sig[0], head, hconf, vs) is not None:
        status, method = ("ok" if hconf >= HEAD_ALONE_CONFIDENCE else "weak"), "head on particle"
        vertex = _interior(sig[0], head, hconf, vs)
        conf = hconf
        note = (f"one {sig[0].kind} only, and the vertex head (confidence {hconf:.2f}) points inside "
                f"it, away from its ends: particles the segmentation joined leave from there")
    elif len(sig) == 1:
        status, method = "single_particle", "single particle"
        vertex = orient_single(sig[0], ev, head, hconf, vs)
        conf = min(max(hconf, 0.1), 0.3)
        note = f"one {sig[0].kind} only: its start is the vertex"
    elif head is not None:
        vertex = _refine(head, head_near)
        method = "head" + (" + particle starts" if head_near else "")
        if hconf >= HEAD_ALONE_CONFIDENCE or head_near:
            status, conf = "ok", max(hconf, 0.3 if head_near else 0.0)
        else:
            status, conf = "weak", hconf
        where = (f"{len(head_near)} particle start(s) within {MEET_CM:g} cm" if head_near else
                 f"nearest particle start {nearest:.1f} cm away" if nearest is not None else
                 "no particle start near it")
        note = f"no two particles meet; vertex head (confidence {hconf:.2f}), {where}"
    else:
        status, note = "no_vertex", "no vertex head and no two particles meet"
    return status, method, vertex, conf, note


def _prefer_scored(x: _Found, vertex: np.ndarray, method: str, note: str) -> tuple[np.ndarray, str, str]:
    """The place is the best-scoring particle start (``score_candidates``); the status
    still says how the head and the particles agree."""
    moved = float(np.linalg.norm(x.scored[0] - vertex))
    if moved > 0.5:
        beam = " (upstream along the beam)" if beam_event(x.ev) else ""
        note += (f"; chosen instead: the best-scoring place where {x.scored[1]} particle(s) start"
                 f"{beam}, {moved:.1f} cm from the {method} estimate")
        vertex, method = x.scored[0], "scored particle starts"
    return vertex, method, note


def in_context(vtx: VertexResult, ev: Event) -> VertexResult:
    """A copy of a (cached) vertex result for this event: its source and, when the event has a
    truth vertex, that vertex and the distance to it."""
    truth = truth_d = None
    if ev.interactions:
        main = next((i for i in ev.interactions if i.event_class), None) or ev.interactions[0]
        if len(ev.interactions) == 1 or main.event_class:
            truth = vec(main.vertex_cm)
            if vtx.vertex_cm is not None:
                truth_d = round(float(np.linalg.norm(np.subtract(vtx.vertex_cm, main.vertex_cm))), 2)
    return vtx.model_copy(update={"source": describe_ref(ev), "truth_vertex_cm": truth,
                                  "truth_distance_cm": truth_d}, deep=True)


def analyse(ev: Event, model: engine.ModelLike = None) -> Analysis:
    """Prediction, clusters and vertex of one event (cached per event content and model)."""
    m, pred = engine.predict(ev, model)

    def compute() -> Analysis:
        if pred.semantic is None or pred.particle is None:
            raise ValueError(f"the encoder checkpoint {engine.model_name(m)} lacks the semantic or "
                             f"particle head the reconstruction needs")
        vs = ev.meta.volume.voxel_size_cm
        inter = pred.interaction if pred.interaction is not None else np.zeros(len(ev), np.int64)
        clusters = build_clusters(ev, pred.semantic, pred.particle, inter, pred.pid_probs)
        conf = float(pred.vertex_confidence or 0.0)
        head = None
        if pred.vertex is not None and np.all(np.isfinite(pred.vertex)):
            head = np.asarray(pred.vertex, dtype=np.float64)
        clusters = stitch(clusters, vs, keep_apart=head if conf >= 0.2 else None, pid_probs=pred.pid_probs)
        if head is not None and conf >= HEAD_SPLIT_CONFIDENCE:
            # tracks the instance head joined through the vertex: split them where the head
            # points (moved onto the nearest track point), if they meet there at an angle
            tracks = [c for c in clusters if c.kind == "track"]
            if tracks:
                pts = np.vstack([c.centres for c in tracks])
                d = np.linalg.norm(pts - head, axis=1)
                if d.min() <= ON_TRACK_CM:
                    clusters = split_at_vertex(clusters, pts[int(np.argmin(d))], vs, pred.pid_probs,
                                               require_kink=True)
        clusters = split_kinks(clusters, vs, pred.pid_probs)
        vtx = locate(ev, pred, clusters)
        if vtx.vertex_cm is not None and vtx.status in ("ok", "disagree", "weak"):
            split = split_at_vertex(clusters, np.asarray(vtx.vertex_cm), vs, pred.pid_probs)
            if len(split) != len(clusters):
                clusters = split
                vtx = locate(ev, pred, clusters)
        return Analysis(ev, m, pred, clusters, vtx, vs)

    return engine.memo("analysis", ev, m, compute)


def find_vertex(event: EventLike, model: engine.ModelLike = None) -> VertexResult:
    """The interaction vertex of one event with its confidence and cross-checks.

    ``event``: an ``events.Event``, a path to a one-event file, or ``"path:index"``;
    ``model``: None (shipped encoder), a checkpoint path or a loaded ``EncoderModel``.
    Never raises for an event without a vertex: ``status`` is then ``no_vertex`` and ``note``
    says why (raises ``tools.ToolInputError`` for unusable input)."""
    ev = load_event(event, tool="find_vertex")
    return in_context(analyse(ev, model).vertex, ev)
