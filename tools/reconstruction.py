"""``reconstruct``: particles, Michel electrons and interactions from the encoder's output.

    from larsight.tools import reconstruct
    reco = reconstruct("run.h5:3")
    reco.topology                      # '1mu 2p 0pi' (the convention of events.vocabulary)
    mu = reco.particles[0]
    mu.pid, mu.pid_scores              # 'muon', {'muon': 0.83, ...}
    mu.length_cm, mu.kinetic_energy_mev, mu.energy_method   # 112.4, 281.0, 'range'
    mu.has_bragg_peak, mu.stops, mu.michel                  # True, True, True
    reco.particles[1].start_dedx_mev_cm                     # a shower's trunk, MeV/cm

How a particle is measured (numbers: shared/PHYSICS.md via ``tools.physics``):

- points: a predicted instance split by semantic class, track pieces stitched and split at the
  vertex (``tools.clusters``); ``pid_scores``: the energy-weighted mean of the encoder's
  per-point PID probabilities;
- track PID from the energy loss (``track_species``; ``pid_method`` 'dE/dx'): a proton when
  its median dE/dx is above 1.3 MIP and its PIDA (dE/dx * R^0.42, 17 for a stopping proton) is
  proton-like or its deposit matches the proton CSDA energy at its length; otherwise minimum
  ionising. Of the minimum-ionising tracks, the longest of the main interaction is the muon
  when at least ``MUON_MIN_CM`` long and no electron shower of ``ELECTRON_VETO_MEV`` is there;
  the others are charged pions (``pid_method`` 'length'). On the 0.6 cm grid the encoder's
  track PID called most muons and pions protons; this is right for 79 % of paired tracks and
  showers (``evals/reports/tools.md``);
- tracks: end points from the longest path through the cluster, ``start`` = the end nearer
  the vertex (without a vertex: the end inside the volume, or the end away from the Bragg
  peak), direction = principal axis of the first ``DIRECTION_CM``, ``length_cm`` = straight
  start-to-end distance (as the training corpus measures truth), ``path_length_cm`` along the
  track; dE/dx in 1 cm bins of residual range; a Bragg peak when the last 3 cm deposit at
  least ``BRAGG_MIN_RATIO`` times the median of the rest; the track ``stops`` when its end lies
  inside the volume (more than ``BOUNDARY_CM`` from every wall);
- kinetic energy: by range (CSDA tables, PID species) for a track that stops (and does not
  curl or branch: path at most 1.3 x its straight length + 3 cm), by calorimetry
  (deposited energy of its points and delta rays) otherwise; showers by calorimetry, the
  deposit divided by ``SHOWER_VISIBLE_FRACTION`` (0.82, measured on simulated showers).
  ``energy_is_lower_bound`` marks tracks that leave the volume and stopping tracks without a
  Bragg peak (they may have interacted). ``charge_energy_mev`` is the same deposit measured
  from the collected charge with the modified-box recombination correction (events that carry
  ``n_electrons``);
- showers: start = the shower point nearest the vertex (without a vertex: its dense end);
  direction = energy-weighted principal axis, pointing from the start into the shower;
  ``start_dedx_mev_cm`` = median dE/dx of 1 cm slices in the first 4 cm within 1 cm of the
  axis (about 2.1 MeV/cm for an electron, 4.2 for a photon); ``conversion_gap_cm`` = distance
  from the vertex to a photon's start;
- Michel electrons: clusters called Michel (at least 3 points, ``MICHEL_MIN_MEV`` to ``MICHEL_MAX_MEV``)
  attached to the muon or pion track whose end is nearest, within ``MICHEL_ATTACH_CM``; a
  Michel electron at the far end of a track that does not start at the vertex turns the track
  around (it stopped there); one next to a proton or kaon is reported in ``notes`` only;
- electron or photon: on grids of at most ``EGAMMA_PHYSICS_MAX_VOXEL_CM`` a shower starting
  ``GAP_CM`` or more from a vertex made by other particles is a photon; otherwise the trunk
  dE/dx decides (photon from ``PHOTON_DEDX_MEV_CM``, 3.0 MeV/cm, between one and two MIPs) for
  showers of 40 MeV or more; else (and always on coarser grids, where these measurements did
  worse than the encoder) the encoder's vote (``pid_method`` says which);
- interactions: the interaction head's groups (groups whose vertices lie within 20 cm of the
  main vertex are one interaction), counts and topology with the corpus's visibility rules
  (``events.vocabulary``: 5 voxels; protons 40 MeV; tracks 2 cm; showers 10 MeV) plus the
  reconstruction's fragment thresholds: a pion shorter than ``PION_COUNT_MIN_CM`` and a shower
  under ``SHOWER_COUNT_MIN_MEV`` are not counted (``visible`` False, ``not_counted`` says why).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from larsight.events.model import PID_CLASSES, Event
from larsight.events.vocabulary import (DEDX_MIN_SHOWER_MEV, MICHEL_EMAX_MEV, MICHEL_MIN_VOXELS, MIN_VOXELS,
                                        InteractionFacts, ParticleFacts, event_facts, finish_counts,
                                        is_visible)

from . import engine
from .clusters import Cluster, endpoints, shower_start_end
from .inputs import EventLike, describe_ref, load_event
from .physics import (RANGE_SPECIES, bragg_ratio, charge_energy_mev, dedx_profile, pca_axis,
                      range_energy_mev, shower_start_dedx)
from .reco_results import InteractionReco, MichelReco, ParticleReco, Reconstruction
from .results import vec
from .vertex_candidates import BOUNDARY_CM, at_boundary
from .vertexing import SEPARATE_CM, VertexResult, analyse, in_context, orient_single

__all__ = ["reconstruct", "Reconstruction", "ParticleReco", "MichelReco", "InteractionReco",
           "BRAGG_MIN_RATIO", "MICHEL_ATTACH_CM", "DIRECTION_CM"]

TRACK_PIDS = ("muon", "pion", "proton", "kaon")
SHOWER_PIDS = ("photon", "electron")
DIRECTION_CM = 10.0        # a track's direction: principal axis of its first 10 cm
BRAGG_MIN_RATIO = 1.5      # last 3 cm over the median dE/dx of the rest
MICHEL_ATTACH_CM = 5.0     # a Michel cluster this close to a track's end belongs to it
MICHEL_MIN_MEV = 10.0      # a "Michel" cluster below this is not attached: on the 0.6 cm grid such blips
                           # at track ends were mostly not Michel electrons (tuning slice seed 7)
MICHEL_MAX_MEV = 60.0      # a "Michel" cluster above this (end point + clustering slack) is something else
AT_VERTEX_CM = 3.0
GAP_CM = 3.0               # a shower starting this far from the vertex is a photon
PHOTON_DEDX_MEV_CM = 3.0   # trunk dE/dx between 1 MIP (2.1, electron) and 2 MIPs (4.2, photon)
EGAMMA_PHYSICS_MAX_VOXEL_CM = 0.35  # gap and trunk dE/dx decide e/gamma only on grids this fine
HEAVY_DEDX_MEV_CM = 2.8    # a track whose median dE/dx (1 cm bins) is above 1.3 MIP is not minimum ionising ...
PIDA_PROTON = 10.0         # ... and is a proton when its PIDA (median dE/dx * R^0.42 within 30 cm of the end)
                           # is proton-like (17 from PHYSICS.md's fit; muons and pions 5-8) ...
PROTON_RANGE_AGREE = 0.7   # ... or its deposit is at least 0.7 x the proton CSDA energy at its path length
PIDA_MAX_RANGE_CM = 30.0
MUON_MIN_CM = 40.0         # the longest minimum-ionising track of the main interaction, if at least this
                           # long, is the muon; other minimum-ionising tracks are charged pions
PION_COUNT_MIN_CM = 15.0   # a minimum-ionising track shorter than this, not the muon, is not counted as a
                           # pion: on the 0.6 cm grid such short pieces are mostly fragments of a broken
                           # muon or shower, or hadronic debris (evals.tools_report, tuning slice seed 7)
SHOWER_COUNT_MIN_MEV = 40.0  # a shower depositing less is not counted: mostly a piece of a bigger shower
                             # or of a track end (same tuning slice)
ELECTRON_VETO_MEV = 100.0  # an electron shower this big in the main interaction: its tracks are pions
CURLED_RATIO, CURLED_SLACK_CM = 1.3, 3.0  # path longer than 1.3 x straight length + 3 cm: a cluster
                                          # that curls or branches, where range is not a track's range
SHOWER_VISIBLE_FRACTION = 0.82  # reconstructed shower deposit / true kinetic energy, measured on
                                # 24 simulated single e / gamma showers of 100-1000 MeV (0.84 e, 0.78 gamma):
                                # energy under the voxel threshold, in low-energy blips and in
                                # pieces not clustered with the shower


# ============================================================================ measurement
def _pid(c: Cluster) -> tuple[str, dict[str, float]]:
    scores = {name: round(float(x), 4) for name, x in zip(PID_CLASSES, c.pid_vote)}
    allowed = TRACK_PIDS if c.kind == "track" else SHOWER_PIDS
    best = max(allowed, key=lambda k: scores[k])
    return best, scores


def pida(residual_cm: np.ndarray, dedx: np.ndarray, max_range_cm: float = PIDA_MAX_RANGE_CM) -> Optional[float]:
    """PIDA: median of dE/dx * R^0.42 over the 1 cm bins within ``max_range_cm`` of the end
    (R = residual range). A stopping proton follows dE/dx = 17 R^-0.42 (PHYSICS.md), so its PIDA
    is about 17; muons and pions give 5-8. None for fewer than two bins."""
    rr = np.asarray(residual_cm, np.float64)
    dd = np.asarray(dedx, np.float64)
    sel = (rr > 0.3) & (rr < max_range_cm)
    if sel.sum() < 2:
        return None
    return float(np.median(dd[sel] * rr[sel] ** 0.42))


def track_species(residual_cm: np.ndarray, dedx: np.ndarray, path_length_cm: float,
                  deposited_mev: float) -> tuple[str, dict]:
    """'proton' or 'mip' (a muon or a charged pion) from the energy loss along a track.

    A proton ionises more than a minimum-ionising particle over most of its length: its median
    dE/dx (1 cm bins) is above ``HEAVY_DEDX_MEV_CM`` (1.3 MIP), and either its PIDA (``pida``,
    taken at whichever end gives more, as the orientation may be wrong) is proton-like
    (``PIDA_PROTON``) or its deposit agrees with the proton CSDA energy at its path length
    (``PROTON_RANGE_AGREE``; a muon of the same length deposits about half as much). Energetic
    protons that interact or leave the volume are minimum-ionising-like and are called 'mip'.
    Returns the species and the measured numbers."""
    rr = np.asarray(residual_cm, np.float64)
    dd = np.asarray(dedx, np.float64)
    med = float(np.median(dd)) if len(dd) else 0.0
    pa = [x for x in (pida(rr, dd), pida(path_length_cm - rr, dd)) if x is not None]
    pa_max = max(pa) if pa else 0.0
    e_p = range_energy_mev("proton", path_length_cm)
    agree = deposited_mev / e_p if e_p else 0.0
    heavy = med >= HEAVY_DEDX_MEV_CM and (pa_max >= PIDA_PROTON or agree >= PROTON_RANGE_AGREE)
    return ("proton" if heavy else "mip"), {"median_dedx": med, "pida": pa_max, "proton_range_agreement": agree}


def _track(c: Cluster, ev: Event, vertex: Optional[np.ndarray], vs: float) -> dict:
    g = c.geometry(vs)
    ends = c.centres[[g.a, g.b]]
    if vertex is not None:
        d = np.linalg.norm(ends - vertex, axis=1)
        flip = d[1] < d[0]
    else:
        start = orient_single(c, ev, None, 0.0, vs)
        flip = bool(np.allclose(start, ends[1]))
    if flip:
        g = g.flipped()
    start, end = c.centres[g.a], c.centres[g.b]
    near = g.s <= min(DIRECTION_CM, 0.5 * max(g.path_length_cm, 1.0) + vs)
    pts = c.centres[near] if near.sum() >= 2 else c.centres
    axis = pca_axis(pts)
    ref = end if near.sum() < 2 or np.allclose(pts.mean(0), start) else pts.mean(0)
    if np.dot(ref - start, axis) < 0:
        axis = -axis
    rr, dd = dedx_profile(g.s, c.energy, g.path_length_cm)
    ratio = bragg_ratio(rr, dd)
    first = rr >= g.path_length_cm - 4.0
    return dict(geometry=g, start=start, end=end, direction=axis, residual=rr, dedx=dd, ratio=ratio,
                start_dedx=float(np.median(dd[first])) if first.any() and len(dd) >= 2 else None,
                end_dedx=float(np.mean(dd[rr <= 3.0])) if (rr <= 3.0).any() and len(dd) >= 2 else None)


def _shower(c: Cluster, vertex: Optional[np.ndarray], vs: float) -> dict:
    if vertex is not None:
        start = c.centres[int(np.argmin(np.linalg.norm(c.centres - vertex, axis=1)))]
    else:
        start = endpoints(c, vs)[shower_start_end(c)]
    axis = c.axis()
    if np.dot(np.average(c.centres, axis=0, weights=c.energy + 1e-9) - start, axis) < 0:
        axis = -axis
    # the trunk's own direction when it has enough points (a shower curls away from its axis)
    rel = c.centres - start
    t = rel @ axis
    early = (t >= 0) & (t <= 15.0) & (np.linalg.norm(rel - np.outer(t, axis), axis=1) < 3.0)
    if early.sum() >= 8:
        trunk = pca_axis(c.centres[early], c.energy[early])
        axis = trunk if np.dot(trunk, axis) >= 0 else -trunk
        t = rel @ axis
    ahead = t[t >= -vs]
    length = float(np.quantile(ahead, 0.95)) + 0.5 * vs if len(ahead) else vs
    sd, _ = shower_start_dedx(c.centres, c.energy, start, axis)
    return dict(start=start, end=start + axis * length, direction=axis, length=length, start_dedx=sd)


def _michels(clusters: list[Cluster], parts: list[ParticleReco], ev: Event, vertex,
             notes: list[str]) -> list[MichelReco]:
    out = []
    tracks = [p for p in parts if p.kind == "track"]
    for c in clusters:
        if c.kind != "michel" or c.n < MICHEL_MIN_VOXELS:
            continue
        best = None
        for p in tracks:
            for which, pt in (("end", p.end_cm), ("start", p.start_cm)):
                d = float(np.min(np.linalg.norm(c.centres - np.asarray(pt), axis=1)))
                if d <= MICHEL_ATTACH_CM and (best is None or d < best[0]):
                    best = (d, p, which, d)
        m = MichelReco(n_points=c.n, energy_mev=round(c.energy_mev, 2),
                       position_cm=vec(c.centres.mean(0)))
        if best is not None and m.energy_mev < MICHEL_MIN_MEV:
            best = None
        if best is not None and m.energy_mev > MICHEL_MAX_MEV:
            notes.append(f"a Michel-like cluster of {m.energy_mev:.0f} MeV at track {best[1].id} is not "
                         f"attached: a Michel electron carries at most {MICHEL_EMAX_MEV:.1f} MeV")
            best = None
        if best is not None and best[1].pid not in ("muon", "pion"):
            p = best[1]
            notes.append(f"a Michel-like cluster ({m.energy_mev:.0f} MeV) sits {best[3]:.1f} cm from the "
                         f"{best[2]} of track {p.id}, called {p.pid} (muon score {p.pid_scores['muon']:.2f}); "
                         f"not attached: Michel electrons come from muons")
            best = None
        if best is not None:
            _, p, which, d = best
            at_vertex = p.distance_to_vertex_cm is not None and p.distance_to_vertex_cm <= AT_VERTEX_CM
            if which == "start" and at_vertex:
                out.append(m)       # a Michel electron cannot sit at the start of a track from the vertex
                continue
            if which == "start":
                _flip_track(p, ev, vertex)
            near = c.centres[int(np.argmin(np.linalg.norm(c.centres - np.asarray(p.end_cm), axis=1)))]
            m.position_cm, m.attached_to, m.distance_to_track_end_cm = vec(near), p.id, round(d, 2)
            if not p.michel or (p.michel_energy_mev or 0) < m.energy_mev:
                p.michel, p.michel_energy_mev = True, m.energy_mev
        out.append(m)
    return out


def _flip_track(p: ParticleReco, ev: Event, vertex) -> None:
    """Turn a track around (a Michel electron showed where it stopped)."""
    p.start_cm, p.end_cm = p.end_cm, p.start_cm
    p.direction = vec(-np.asarray(p.direction), 4)
    p.angle_to_beam_deg = round(float(np.degrees(np.arccos(np.clip(p.direction[2], -1, 1)))), 1)
    if vertex is not None:
        p.distance_to_vertex_cm = round(float(np.linalg.norm(np.asarray(p.start_cm) - vertex)), 2)
    p.stops = not at_boundary(np.asarray(p.end_cm), ev, BOUNDARY_CM)
    if p.dedx_residual_range_cm is not None and len(p.dedx_residual_range_cm):
        total = float(p.path_length_cm or p.length_cm)
        p.dedx_residual_range_cm = (total - p.dedx_residual_range_cm)[::-1].copy()
        p.dedx_profile_mev_cm = p.dedx_profile_mev_cm[::-1].copy()
        p.bragg_ratio = bragg_ratio(p.dedx_residual_range_cm, p.dedx_profile_mev_cm)
        p.has_bragg_peak = bool(p.bragg_ratio is not None and p.bragg_ratio >= BRAGG_MIN_RATIO)


def _electron_or_photon(encoder_pid: str, start_dedx: Optional[float], gap: Optional[float],
                        vertex_from_others: bool, energy_mev: float, voxel_cm: float = 0.3) -> tuple[str, str]:
    """e/gamma from physics where it speaks, else the encoder: a shower that starts more than
    GAP_CM from a vertex made by other particles is a photon (electrons start at the vertex);
    otherwise a trunk dE/dx of at least PHOTON_DEDX_MEV_CM (two MIPs, e+e-) says photon and
    less says electron, for showers of DEDX_MIN_SHOWER_MEV or more. On grids coarser than
    ``EGAMMA_PHYSICS_MAX_VOXEL_CM`` the encoder decides: on 0.6 cm voxels the 4 cm trunk is a
    handful of voxels (electrons 3.0, photons 3.5 MeV/cm median) and a few-cm vertex error fakes
    gaps, and on 600 held-out-like events (seed 7) the encoder alone was right for 78 % of showers,
    the physics rules for 53 % (``evals.tools_report``)."""
    if voxel_cm > EGAMMA_PHYSICS_MAX_VOXEL_CM:
        return encoder_pid, "encoder"
    if gap is not None and vertex_from_others and gap >= GAP_CM:
        return "photon", "gap"
    if start_dedx is not None and energy_mev >= DEDX_MIN_SHOWER_MEV:
        return ("photon" if start_dedx >= PHOTON_DEDX_MEV_CM else "electron"), "dE/dx"
    return encoder_pid, "encoder"


def _particle(c: Cluster, ev: Event, vertex: Optional[np.ndarray], vs: float, k: int,
              vertex_from_others: bool = False) -> ParticleReco:
    pid, scores = _pid(c)
    extra_e = float(c.extra_energy.sum()) if len(c.extra_energy) else 0.0
    deposited = c.energy_mev + extra_e
    q = None
    if ev.n_electrons is not None and float(ev.n_electrons[c.idx].sum()) > 0:
        qe = ev.n_electrons[np.concatenate([c.idx, c.extra_idx]).astype(np.int64)]
        q = qe
    common = dict(id=k, interaction=c.interaction, pid=pid, pid_method="encoder", pid_scores=scores, n_points=c.n,
                  deposited_energy_mev=round(deposited, 2), point_index=c.idx)
    if c.kind == "track":
        m = _track(c, ev, vertex, vs)
        g = m["geometry"]
        species, _ = track_species(m["residual"], m["dedx"], g.path_length_cm, deposited)
        # a minimum-ionising track is a muon or a pion: decided per event (``_muon_or_pions``)
        pid = "proton" if species == "proton" else "muon"
        common["pid"], common["pid_method"] = pid, "dE/dx"
        length = float(np.linalg.norm(m["end"] - m["start"])) + vs
        stops = not at_boundary(m["end"], ev, BOUNDARY_CM)
        bragg = bool(m["ratio"] is not None and m["ratio"] >= BRAGG_MIN_RATIO)
        e_range = range_energy_mev(pid, g.path_length_cm) if pid in RANGE_SPECIES else None
        charge = None
        if q is not None:
            own = ev.n_electrons[c.idx]
            charge = charge_energy_mev(own, g.s, g.path_length_cm)
            if len(c.extra_idx):
                charge += charge_energy_mev(ev.n_electrons[c.extra_idx])
        straight = g.path_length_cm <= CURLED_RATIO * length + CURLED_SLACK_CM
        if stops and e_range is not None and straight:
            ke, method, lower = e_range, "range", not bragg
        else:
            ke, method, lower = deposited, "calorimetry", not stops or not bragg
        d = m["direction"]
        return ParticleReco(
            kind="track", start_cm=vec(m["start"]), end_cm=vec(m["end"]), direction=vec(d, 4),
            angle_to_beam_deg=round(float(np.degrees(np.arccos(np.clip(d[2], -1, 1)))), 1),
            length_cm=round(length, 2), path_length_cm=round(g.path_length_cm, 2),
            distance_to_vertex_cm=None if vertex is None else round(float(np.linalg.norm(m["start"] - vertex)), 2),
            charge_energy_mev=None if charge is None else round(charge, 2),
            range_energy_mev=None if e_range is None else round(e_range, 2),
            kinetic_energy_mev=round(float(ke), 2), energy_method=method, energy_is_lower_bound=bool(lower),
            mean_dedx_mev_cm=round(c.energy_mev / max(g.path_length_cm, vs), 3),
            start_dedx_mev_cm=None if m["start_dedx"] is None else round(m["start_dedx"], 3),
            end_dedx_mev_cm=None if m["end_dedx"] is None else round(m["end_dedx"], 3),
            bragg_ratio=None if m["ratio"] is None else round(m["ratio"], 3), has_bragg_peak=bragg,
            stops=bool(stops), dedx_residual_range_cm=m["residual"], dedx_profile_mev_cm=m["dedx"], **common)
    m = _shower(c, vertex, vs)
    d = m["direction"]
    dist = None if vertex is None else float(np.linalg.norm(m["start"] - vertex))
    pid, method = _electron_or_photon(pid, m["start_dedx"], dist, vertex_from_others, c.energy_mev, vs)
    common["pid"], common["pid_method"] = pid, method
    charge = None if q is None else charge_energy_mev(q)
    return ParticleReco(
        kind="shower", start_cm=vec(m["start"]), end_cm=vec(m["end"]), direction=vec(d, 4),
        angle_to_beam_deg=round(float(np.degrees(np.arccos(np.clip(d[2], -1, 1)))), 1),
        length_cm=round(m["length"], 2), distance_to_vertex_cm=None if dist is None else round(dist, 2),
        charge_energy_mev=None if charge is None else round(charge, 2),
        kinetic_energy_mev=round(deposited / SHOWER_VISIBLE_FRACTION, 2),
        energy_method="calorimetry", energy_is_lower_bound=bool(at_boundary(m["end"], ev, 2 * BOUNDARY_CM)),
        start_dedx_mev_cm=None if m["start_dedx"] is None else round(m["start_dedx"], 3),
        conversion_gap_cm=round(dist, 2) if (dist is not None and pid == "photon") else None, **common)


def _set_species(p: ParticleReco, pid: str, method: str) -> None:
    """Give a track another species: its range energy (and kinetic energy by range) follow."""
    p.pid, p.pid_method = pid, method
    if p.kind != "track" or p.path_length_cm is None:
        return
    e = range_energy_mev(pid, p.path_length_cm) if pid in RANGE_SPECIES else None
    p.range_energy_mev = None if e is None else round(e, 2)
    if p.energy_method == "range" and e is not None:
        p.kinetic_energy_mev = round(float(e), 2)


def _muon_or_pions(parts: list[ParticleReco], main_ids: set[int]) -> None:
    """Minimum-ionising tracks: the longest one of the main interaction is the muon when it is
    at least ``MUON_MIN_CM`` long (a charged-current muon usually leaves the longest track; pions
    interact or stop sooner); every other one is a charged pion."""
    mips = [p for p in parts if p.kind == "track" and p.pid in ("muon", "pion")]
    main = [p for p in mips if p.id in main_ids and p.visible]
    muon = max(main, key=lambda p: p.length_cm, default=None)
    if muon is not None and muon.length_cm < MUON_MIN_CM:
        muon = None
    electron = any(p.kind == "shower" and p.pid == "electron" and p.id in main_ids and p.visible
                   and p.deposited_energy_mev >= ELECTRON_VETO_MEV for p in parts)
    if electron:     # a charged-current event has one charged lepton: with an electron, no muon
        muon = None
    for p in mips:
        _set_species(p, "muon" if p is muon else "pion", "length")


def _count_or_not(p: ParticleReco) -> None:
    """``visible`` (counted) and ``not_counted`` of a particle: the corpus's visibility
    thresholds, then the reconstruction's fragment thresholds (PION_COUNT_MIN_CM,
    SHOWER_COUNT_MIN_MEV)."""
    why = None
    if not is_visible(_facts(p)):
        why = "below the visibility thresholds (events.vocabulary)"
    elif p.kind == "track" and p.pid == "pion" and p.length_cm < PION_COUNT_MIN_CM:
        why = f"a minimum-ionising piece shorter than {PION_COUNT_MIN_CM:g} cm (likely a fragment)"
    elif p.kind == "shower" and p.deposited_energy_mev < SHOWER_COUNT_MIN_MEV:
        why = f"a shower piece under {SHOWER_COUNT_MIN_MEV:g} MeV (likely a fragment)"
    p.visible, p.not_counted = why is None, why


def _recount(interactions: list[InteractionReco], parts: list[ParticleReco]) -> None:
    by_id = {p.id: p for p in parts}
    for it in interactions:
        f = InteractionFacts(id=0)
        f.particles = [_facts(by_id[i]) for i in it.particles]
        finish_counts(f, 0)
        it.counts, it.topology = f.counts, f.topology


def _facts(p: ParticleReco) -> ParticleFacts:
    return ParticleFacts(id=p.id, type=p.pid, kind=p.kind, kinetic_energy_mev=p.kinetic_energy_mev,
                         deposited_energy_mev=p.deposited_energy_mev, n_voxels=p.n_points,
                         length_cm=p.length_cm, michel=p.michel, visible=p.visible)


def _interactions(parts: list[ParticleReco], ev: Event, pred, vtx: VertexResult) -> list[InteractionReco]:
    """Interactions from the interaction head's groups: groups whose vertex lies within
    SEPARATE_CM of the main vertex, and particles that start at it, form the main one."""
    MAIN = -1
    inter = pred.interaction if pred.interaction is not None else np.zeros(len(ev), np.int64)
    inter = inter.astype(np.int64)
    group_vertex = {g.interaction: g.vertex_cm for g in vtx.interactions}
    main_v = np.asarray(vtx.vertex_cm) if vtx.vertex_cm is not None else None
    key_of: dict[int, int] = {}
    home = None          # the group of the points at the main vertex (else the most energetic)
    if main_v is not None and len(inter):
        d = np.linalg.norm(ev.points.astype(np.float64) + 0.5 * ev.meta.volume.voxel_size_cm - main_v, axis=1)
        if d.min() <= 2 * AT_VERTEX_CM:
            home = int(np.bincount(inter[d <= max(2 * AT_VERTEX_CM, d.min() + 1e-6)]).argmax())
        else:
            home = int(np.bincount(inter, weights=ev.energy.astype(np.float64)).argmax())
    for gid in np.unique(inter).tolist():
        gv = group_vertex.get(gid)
        near = main_v is not None and (gid == home or gv is None
                                       or np.linalg.norm(np.asarray(gv) - main_v) <= SEPARATE_CM)
        key_of[gid] = MAIN if near else gid
    part_key = {}
    for p in parts:
        at_vertex = p.distance_to_vertex_cm is not None and p.distance_to_vertex_cm <= AT_VERTEX_CM
        part_key[p.id] = MAIN if (main_v is not None and at_vertex) else key_of.get(p.interaction, p.interaction)
    ids = np.array(sorted(key_of), dtype=np.int64)
    point_key = np.array([key_of[i] for i in ids.tolist()], dtype=np.int64)[np.searchsorted(ids, inter)] \
        if len(inter) else inter
    energy = ev.energy.astype(np.float64)
    rows = []
    for key in sorted(set(key_of.values()) | set(part_key.values())):
        mask = point_key == key
        mine = [p for p in parts if part_key[p.id] == key]
        if not mine and not mask.any():
            continue
        it = InteractionFacts(id=0)
        it.particles = [_facts(p) for p in mine]
        finish_counts(it, 0)
        v = vtx.vertex_cm if key == MAIN else group_vertex.get(key)
        rows.append((key, InteractionReco(id=0, vertex_cm=v, particles=[p.id for p in mine],
                                          visible_energy_mev=round(float(energy[mask].sum()), 2),
                                          n_points=int(mask.sum()), counts=it.counts, topology=it.topology)))
    rows.sort(key=lambda r: (r[0] != MAIN, -r[1].visible_energy_mev))
    new_id = {}
    for k, (key, row) in enumerate(rows):
        row.id = k
        new_id[key] = k
    for p in parts:
        p.interaction = new_id.get(part_key[p.id], 0)
    return [row for _, row in rows]


def reconstruct(event: EventLike, model: engine.ModelLike = None) -> Reconstruction:
    """Particles, Michel electrons and interactions of one event (module docstring).

    ``event``: an ``events.Event``, a path to a one-event file, or ``"path:index"``;
    ``model``: None (shipped encoder), a checkpoint path or a loaded ``EncoderModel``.
    Raises ``tools.ToolInputError`` for unusable input; an event without a vertex is
    reconstructed with each particle oriented on its own (see ``vertex.status``)."""
    ev = load_event(event, tool="reconstruct")
    a = analyse(ev, model)
    vs = a.voxel_cm
    vtx = in_context(a.vertex, ev)
    vertex = np.asarray(vtx.vertex_cm, dtype=np.float64) if vtx.vertex_cm is not None else None
    notes: list[str] = []
    body = [c for c in a.clusters if c.kind in ("track", "shower") and c.n >= MIN_VOXELS]
    body.sort(key=lambda c: -(c.energy_mev + float(c.extra_energy.sum())))
    others = vtx.status in ("ok", "disagree", "weak") and vtx.n_particles >= 2
    parts = [_particle(c, ev, vertex, vs, k, vertex_from_others=others) for k, c in enumerate(body)]
    michels = _michels(a.clusters, parts, ev, vertex, notes)
    for p in parts:
        _count_or_not(p)
    interactions = _interactions(parts, ev, a.pred, vtx)
    _muon_or_pions(parts, set(interactions[0].particles) if interactions else set())
    for p in parts:
        _count_or_not(p)
    _recount(interactions, parts)
    used = np.zeros(len(ev), dtype=bool)
    for p in parts:
        used[p.point_index] = True
    for c in body:
        if len(c.extra_idx):
            used[c.extra_idx] = True
    if vtx.status == "disagree":
        notes.append(f"vertex: {vtx.note}")
    elif vtx.status in ("weak", "no_vertex", "single_particle"):
        notes.append(f"vertex {vtx.status.replace('_', ' ')}: {vtx.note}")
    truth_topo = None
    if ev.particles or ev.particle is not None:
        try:
            facts = event_facts(ev)
            truth_topo = facts.main.topology if facts.main is not None else None
        except Exception:  # no usable truth (or a foreign table): nothing to compare with
            truth_topo = None
    main = interactions[0] if interactions else None
    return Reconstruction(
        source=describe_ref(ev), model=engine.model_name(a.model), vertex=vtx, particles=parts,
        michels=michels, interactions=interactions, topology=main.topology if main else "0l 0p 0pi",
        visible_energy_mev=round(ev.total_energy_mev, 2),
        unassigned_energy_mev=round(float(ev.energy[~used].sum(dtype=np.float64)), 2),
        truth_topology=truth_topo, notes=notes, event=ev)
