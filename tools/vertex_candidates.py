"""Where particles could start, and the best-scored place for the vertex: the geometry that
``tools.vertexing`` decides with (``locate``) and ``tools.reconstruction`` measures with.

- ``nearest_start`` / ``support``: where a cluster could start near a point (a track's ends,
  not its Bragg-peak end; a shower's points near either end of its axis), and the particles
  that could start within ``MEET_CM`` of it;
- ``particle_vertex``: the point where the most significant particles meet;
- ``score_candidates``: every place a particle could start, scored (particles starting there,
  particles pointing back at it from a gap, distance to the vertex head, the walls, and the
  beam direction on neutrino-beam events).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from larsight.events.model import Event

from .clusters import Cluster, bragg_end, end_direction, endpoints, significant

__all__ = ["nearest_start", "support", "particle_vertex", "at_boundary", "beam_event",
           "pointing_back", "crossings", "score_candidates", "MEET_CM", "BOUNDARY_CM"]

MEET_CM = 3.0              # particles whose starts lie this close meet at a vertex
BOUNDARY_CM = 1.0          # a point this close to a wall of the volume is at the boundary
BEAM_DIR = np.array([0.0, 0.0, 1.0])  # neutrino beam direction (the simulator's +z)
BEAM_GENERATORS = ("(nu)",)  # provenance of simulated events from the neutrino beam
# the score of a vertex candidate (``score_candidates``): the particles that start there, ...
W_POINTING = 1.0           # ... plus this per particle pointing straight back at it from a gap
W_UPSTREAM = 12.0          # ... minus this times the share of the energy upstream of it (beam events)
W_Z = 1.0                  # ... minus this times its position along the beam in the event (beam events)
W_HEAD = 3.0               # ... minus this times its distance to the head vertex / HEAD_SCALE_CM,
HEAD_SCALE_CM = 30.0       #     scaled by the head's confidence (full weight at 1/3)
W_BOUNDARY = 1.0           # ... minus this at a wall of the volume (particles leave there)
POINT_COS = 0.9            # a particle points back at a candidate when this aligned with the gap,
POINT_MAX_CM = 60.0        # a photon shower starting at most this far from it (conversion gap),
TRACK_GAP_CM = 12.0        # a track at most this far (its first centimetres lost or mislabelled)


def nearest_start(c: Cluster, p: np.ndarray, vs: float) -> tuple[float, Optional[np.ndarray]]:
    """Distance from ``p`` to where cluster ``c`` could start: a track's ends (not the end with
    a clear Bragg peak: a track ends there), a shower's points near either end of its axis."""
    if c.kind == "track":
        ends = endpoints(c, vs)
        stop = bragg_end(c, vs)
        d = np.linalg.norm(ends - p, axis=1)
        if stop is not None:
            d[stop] = np.inf
        k = int(np.argmin(d))
        return float(d[k]), ends[k]
    d = np.linalg.norm(c.centres - p, axis=1)
    k = int(np.argmin(d))
    ax = c.axis()
    t = (c.centres - c.centres.mean(0)) @ ax
    lo, hi = float(t.min()), float(t.max())
    margin = max(3.0, 0.2 * (hi - lo))
    if not (t[k] <= lo + margin or t[k] >= hi - margin):
        return float("inf"), None
    return float(d[k]), c.centres[k]


def support(clusters: list[Cluster], p: np.ndarray, vs: float, radius: float = MEET_CM):
    near = []
    for c in clusters:
        d, q = nearest_start(c, p, vs)
        if d <= radius:
            near.append((c, q))
    return near


def particle_vertex(clusters: list[Cluster], vs: float, hint: Optional[np.ndarray] = None):
    """(vertex or None, number of particles meeting there) from significant clusters."""
    sig = [c for c in clusters if significant(c, vs)]
    if len(sig) < 2:
        return None, len(sig)
    best, best_key = None, None
    for c in sig:
        for p in endpoints(c, vs):
            near = support(sig, p, vs)
            e = sum(cc.energy_mev for cc, _ in near)
            dh = float(np.linalg.norm(p - hint)) if hint is not None else 0.0
            key = (len(near), -dh, e)
            if best_key is None or key > best_key:
                best, best_key = (p, near), key
    p, near = best
    if len(near) < 2:
        return None, 1
    for _ in range(2):  # refine: the mean of the meeting points, then re-collect support
        v = np.mean([q for _, q in near], axis=0)
        again = support(sig, v, vs)
        if len(again) < len(near):
            break
        near = again
    v = np.mean([q for _, q in near], axis=0)
    return v, len(near)


def at_boundary(p: np.ndarray, ev: Event, margin: float) -> bool:
    v = ev.meta.volume
    return bool(np.any(p < v.lower_cm + margin) or np.any(p > v.upper_cm - margin))


def beam_event(ev: Event) -> bool:
    """Whether the event is known to come from a neutrino beam along ``BEAM_DIR`` (its products
    go forward): events whose provenance names the simulator's neutrino mode ('(nu)'). Events of
    other or unknown provenance get no beam term: PILArNet-M itself is isotropic (multi-particle
    vertices and rain), so a forward prior would bias its vertices."""
    gen = (ev.meta.generator or "").lower()
    return any(k in gen for k in BEAM_GENERATORS)


def pointing_back(sig: list[Cluster], p: np.ndarray, vs: float) -> int:
    """Particles that start a gap away from ``p`` and point straight away from it: photon
    showers converting MEET_CM .. POINT_MAX_CM away (axis from the near end to the far end), and
    tracks whose first few cm were lost MEET_CM .. TRACK_GAP_CM away (direction at the near end)."""
    n = 0
    for c in sig:
        ends = endpoints(c, vs)
        d = np.linalg.norm(ends - p, axis=1)
        k = int(np.argmin(d))
        far = POINT_MAX_CM if c.kind == "shower" else TRACK_GAP_CM
        if d[k] < MEET_CM or d[k] > far:
            continue
        if c.kind == "shower":
            ax = ends[1 - k] - ends[k]
            ax = ax / (np.linalg.norm(ax) + 1e-9)
        else:
            ax = -end_direction(c, k, vs)
        if float(np.dot((ends[k] - p) / d[k], ax)) > POINT_COS:
            n += 1
    return n


def crossings(sig: list[Cluster], vs: float) -> list[np.ndarray]:
    """Points where two particles, extended backwards out of one of their ends, cross (closest
    approach within MEET_CM, at most TRACK_GAP_CM back from both ends): a vertex whose own
    deposits are hidden (neutral particles, lost track starts)."""
    rays = []
    for i, c in enumerate(sig):
        ends = endpoints(c, vs)
        for k in (0, 1):
            if c.kind == "track":
                d = end_direction(c, k, vs)
            else:
                d = ends[k] - ends[1 - k]
                d = d / (np.linalg.norm(d) + 1e-9)
            rays.append((i, ends[k], d))
    out = []
    for a in range(len(rays)):
        for b in range(a + 1, len(rays)):
            ia, pa, da = rays[a]
            ib, pb, db = rays[b]
            if ia == ib:
                continue
            w0 = pa - pb
            bb = float(da @ db)
            den = 1.0 - bb * bb
            if den < 1e-3:
                continue
            ta = (bb * float(db @ w0) - float(da @ w0)) / den
            tb = (float(db @ w0) - bb * float(da @ w0)) / den
            if not (0.0 < ta <= TRACK_GAP_CM and 0.0 < tb <= TRACK_GAP_CM):
                continue
            qa, qb = pa + ta * da, pb + tb * db
            if np.linalg.norm(qa - qb) <= MEET_CM:
                out.append(0.5 * (qa + qb))
    return out


def score_candidates(ev: Event, clusters: list[Cluster], sig: list[Cluster], head: Optional[np.ndarray],
                     hconf: float, vs: float):
    """The best vertex among the places a particle could start, as (vertex, particles starting
    there, score), or None without significant particles.

    Candidates: both ends of every significant particle (a track's ends, a shower's extremes
    along its axis) and of small track pieces, each particle's point nearest the head vertex
    and, on beam events, its most upstream point (an electron shower starts at its upstream
    end), and the points where two particles extended backwards cross (``crossings``).
    Score: the number of particles that could start there (``support``; not at a track's
    clear Bragg-peak end), plus ``W_POINTING`` per particle pointing back at it from a gap
    (``pointing_back``), minus ``W_HEAD`` times its distance to the head vertex (scaled by the
    head's confidence), minus ``W_BOUNDARY`` at a wall; on beam events (``beam_event``) also
    minus ``W_UPSTREAM`` times the share of the event's energy more than 1 cm upstream of it
    and ``W_Z`` times its position along the beam: a neutrino's products go forward, so the
    vertex is the upstream end of the activity, which orients a lone muon or a proton and
    electron pair. The winner is moved to the mean of the particle starts near it."""
    if not sig:
        return None
    cen = ev.points.astype(np.float64) + 0.5 * vs
    w = ev.energy.astype(np.float64)
    wsum = max(float(w.sum()), 1e-9)
    along = cen @ BEAM_DIR
    lo, hi = float(along.min()), float(along.max())
    beam = 1.0 if beam_event(ev) else 0.0
    cands = [p for c in sig for p in endpoints(c, vs)]
    if head is not None:
        cands += [c.centres[int(np.argmin(np.linalg.norm(c.centres - head, axis=1)))] for c in sig]
    if beam:
        cands += [c.centres[int(np.argmin(c.centres @ BEAM_DIR))] for c in sig]
    cands += [p for c in clusters if c.kind == "track" and c.n >= 2 and not significant(c, vs)
              for p in endpoints(c, vs)]
    cands += crossings(sig, vs)
    hweight = min(3.0 * hconf, 1.0)
    best = None
    for p in cands:
        near = support(sig, p, vs)
        a = float(p @ BEAM_DIR)
        score = (len(near) + W_POINTING * pointing_back(sig, p, vs)
                 - beam * W_UPSTREAM * float(w[along < a - 1.0].sum()) / wsum
                 - beam * W_Z * (a - lo) / max(hi - lo, 1.0)
                 - (W_BOUNDARY if at_boundary(p, ev, BOUNDARY_CM) else 0.0))
        if head is not None:
            score -= W_HEAD * min(float(np.linalg.norm(p - head)), HEAD_SCALE_CM) / HEAD_SCALE_CM * hweight
        if best is None or score > best[2]:
            best = (p, near, score)
    p, near, score = best
    v = np.mean([q for _, q in near], axis=0) if near else p
    return v, len(near), score
