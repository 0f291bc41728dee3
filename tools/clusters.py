"""From the encoder's per-point output to particle candidates (internal to the tools).

``build_clusters(event, prediction)`` turns predicted particle instances into clusters that are
one particle each, as far as the labels allow:

1. an instance is split by predicted semantic class: its track points, shower points and
   Michel points become separate clusters (the instance head sometimes joins a muon and the
   electron of its decay, or a track and a shower that touch at the vertex); delta-ray points
   stay with the track of their instance (their energy is the track's), low-energy points are
   left out of particles;
2. track clusters are split into their spatially connected pieces (two tracks of one instance
   that do not touch are two particles); shower clusters are not (a photon shower is
   naturally in pieces).

``stitch(clusters)`` joins track pieces that continue each other (an instance split along a
track, a gap left by points classified as something else); ``split_kinks`` splits a track
cluster at a sharp turn (two tracks from one vertex that the instance head joined form a V);
``split_at_vertex(clusters, vertex)`` splits a track cluster that runs through the vertex
(e.g. a muon and a proton back to back or at an angle) into its branches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from larsight.events.model import PID_CLASSES, Event

from .physics import TrackGeometry, bragg_ratio, dedx_profile, pca_axis, track_geometry

__all__ = ["Cluster", "build_clusters", "split_at_vertex", "stitch", "significant", "endpoints",
           "end_direction", "bragg_end", "shower_start_end",
           "SEM_SHOWER", "SEM_TRACK", "SEM_MICHEL", "SEM_DELTA", "SEM_LE"]

SEM_SHOWER, SEM_TRACK, SEM_MICHEL, SEM_DELTA, SEM_LE = 0, 1, 2, 3, 4
KIND_OF = {SEM_SHOWER: "shower", SEM_TRACK: "track", SEM_MICHEL: "michel"}
CONNECT_CM = 2.5          # track points closer than this belong to one piece
MIN_PIECE_POINTS = 3      # smaller disconnected bits rejoin the nearest piece
VERTEX_BALL_CM = 2.0      # split_at_vertex: points within this of the vertex are the junction
MIN_BRANCH_CM = 2.0       # a branch shorter than this is not split off
STITCH_CM = 4.0           # stitch: track pieces whose ends are this close ...
STITCH_DEG = 25.0         # ... and whose directions there agree this well are one track
STITCH_SAME_DEG = 40.0    # (pieces of one predicted instance: a scattered track may bend more)
KINK_DEG = 40.0           # split_at_vertex(require_kink): branches must meet at least this far from straight
END_WINDOW_CM = 5.0       # the direction at a track end: principal axis of the last 5 cm
SIGNIFICANT_TRACK_CM = 1.5
SIGNIFICANT_TRACK_POINTS = 4
SIGNIFICANT_SHOWER_MEV = 10.0
SIGNIFICANT_SHOWER_POINTS = 5


@dataclass
class Cluster:
    """Points of one particle candidate (indices into the event) and what is cheap to know."""

    idx: np.ndarray
    kind: str                       # 'track', 'shower' or 'michel'
    instance: int
    interaction: int
    centres: np.ndarray             # (n, 3) voxel centres, cm
    energy: np.ndarray              # (n,) MeV
    pid_vote: np.ndarray            # (6,) energy-weighted mean PID probabilities
    extra_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # delta points
    extra_centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    extra_energy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _geom: Optional[TrackGeometry] = None
    _axis: Optional[np.ndarray] = None
    _bragg: Optional[tuple] = None

    @property
    def n(self) -> int:
        return int(len(self.idx))

    @property
    def energy_mev(self) -> float:
        return float(self.energy.sum(dtype=np.float64))

    def geometry(self, voxel_cm: float) -> TrackGeometry:
        if self._geom is None:
            self._geom = track_geometry(self.centres, voxel_cm)
        return self._geom

    def bragg_ends(self, voxel_cm: float) -> tuple[Optional[float], Optional[float]]:
        """Bragg ratios (``physics.bragg_ratio``) at end ``a`` and at end ``b`` of a track."""
        if self._bragg is None:
            g = self.geometry(voxel_cm)
            at_b = bragg_ratio(*dedx_profile(g.s, self.energy, g.path_length_cm))
            gf = g.flipped()
            at_a = bragg_ratio(*dedx_profile(gf.s, self.energy, gf.path_length_cm))
            if (at_a is None or at_b is None) and g.path_length_cm >= 1.0 and self.n >= 4:
                # too short for a profile: compare the energy of the last cm at each end
                length = float(g.s[g.b])
                e_a = float(self.energy[g.s <= 1.0].sum())
                e_b = float(self.energy[g.s >= length - 1.0].sum())
                if e_a > 0 and e_b > 0:
                    at_a, at_b = e_a / e_b, e_b / e_a
            self._bragg = (at_a, at_b)
        return self._bragg

    def axis(self) -> np.ndarray:
        if self._axis is None:
            self._axis = pca_axis(self.centres, self.energy)
        return self._axis


def _vote(probs: Optional[np.ndarray], energy: np.ndarray) -> np.ndarray:
    if probs is None or len(energy) == 0:
        return np.full(len(PID_CLASSES), 1.0 / len(PID_CLASSES))
    w = energy.astype(np.float64) + 1e-6
    v = (probs[: len(w)] * w[:, None]).sum(0) / w.sum()
    return v / max(v.sum(), 1e-12)


def _components(points: np.ndarray, radius: float) -> np.ndarray:
    n = len(points)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) \
        else coo_matrix((n, n))
    return connected_components(g, directed=False)[1].astype(np.int64)


def _pieces(points: np.ndarray, radius: float, min_points: int) -> list[np.ndarray]:
    """Connected pieces (local index arrays); pieces under ``min_points`` join the nearest big one."""
    lab = _components(points, radius)
    ids, cnt = np.unique(lab, return_counts=True)
    big = ids[cnt >= min_points]
    if len(big) <= 1:
        return [np.arange(len(points))]
    in_big = np.isin(lab, big)
    small = np.flatnonzero(~in_big)
    if len(small):
        tree = cKDTree(points[in_big])
        _, j = tree.query(points[small])
        lab = lab.copy()
        lab[small] = lab[np.flatnonzero(in_big)[j]]
    return [np.flatnonzero(lab == b) for b in big]


def build_clusters(event: Event, semantic: np.ndarray, particle: np.ndarray,
                   interaction: np.ndarray, pid_probs: Optional[np.ndarray]) -> list[Cluster]:
    """Particle candidates from predicted labels (see the module docstring)."""
    vs = event.meta.volume.voxel_size_cm
    centres = event.points.astype(np.float64) + 0.5 * vs
    energy = event.energy.astype(np.float64)
    out: list[Cluster] = []
    order = np.argsort(particle, kind="stable")
    ids, starts = np.unique(particle[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    for inst, a, b in zip(ids, starts, bounds):
        members = order[a:b]
        sem = semantic[members]
        track_clusters: list[Cluster] = []
        for sem_class, kind in KIND_OF.items():
            sub = members[sem == sem_class]
            if len(sub) == 0:
                continue
            if kind == "track":
                pieces = _pieces(centres[sub], CONNECT_CM, MIN_PIECE_POINTS)
            else:
                pieces = [np.arange(len(sub))]
            for piece in pieces:
                idx = sub[piece]
                inter = np.bincount(np.maximum(interaction[idx], 0)).argmax() if len(idx) else -1
                c = Cluster(idx=idx, kind=kind, instance=int(inst), interaction=int(inter),
                            centres=centres[idx], energy=energy[idx],
                            pid_vote=_vote(None if pid_probs is None else pid_probs[idx], energy[idx]))
                out.append(c)
                if kind == "track":
                    track_clusters.append(c)
        delta = members[sem == SEM_DELTA]
        if len(delta) and track_clusters:
            # delta rays belong to the nearest track piece of their instance
            owner = np.concatenate([np.full(c.n, k) for k, c in enumerate(track_clusters)])
            tree = cKDTree(np.vstack([c.centres for c in track_clusters]))
            _, j = tree.query(centres[delta])
            for k, c in enumerate(track_clusters):
                mine = delta[owner[j] == k]
                c.extra_idx, c.extra_centres, c.extra_energy = mine, centres[mine], energy[mine]
    return out


def significant(c: Cluster, voxel_cm: float) -> bool:
    """Big enough to be a particle that could start at a vertex."""
    if c.kind == "track":
        return c.n >= SIGNIFICANT_TRACK_POINTS and c.geometry(voxel_cm).path_length_cm >= SIGNIFICANT_TRACK_CM
    if c.kind == "shower":
        return c.n >= SIGNIFICANT_SHOWER_POINTS and c.energy_mev >= SIGNIFICANT_SHOWER_MEV
    return False


def endpoints(c: Cluster, voxel_cm: float) -> np.ndarray:
    """(2, 3) candidate start points: a track's two ends, a shower's extremes along its axis."""
    if c.kind == "track":
        g = c.geometry(voxel_cm)
        return c.centres[[g.a, g.b]]
    ax = c.axis()
    t = (c.centres - c.centres.mean(0)) @ ax
    return c.centres[[int(np.argmin(t)), int(np.argmax(t))]]


BRAGG_CLEAR = 1.5


def bragg_end(c: Cluster, voxel_cm: float) -> Optional[int]:
    """0 or 1 when a track has a clear Bragg peak at end ``a`` or ``b`` (ratio >= BRAGG_CLEAR
    and at least twice the other end's), else None. Tracks too short for a dE/dx profile
    compare the energy in the last centimetre at each end."""
    if c.kind != "track":
        return None
    ra, rb = c.bragg_ends(voxel_cm)
    ra, rb = ra or 0.0, rb or 0.0
    if max(ra, rb) < BRAGG_CLEAR or max(ra, rb) < 2.0 * max(min(ra, rb), 0.5):
        return None
    return 0 if ra > rb else 1


def shower_start_end(c: Cluster) -> int:
    """Which extreme along the axis (0: low, 1: high; ``endpoints`` order) is a shower's start
    when nothing else tells: the one nearer the median of its points. An EM shower is dense
    within a few radiation lengths of its start and thins out in a long tail (on simulated
    single showers this picks the right end about 4 times in 5)."""
    t = (c.centres - c.centres.mean(0)) @ c.axis()
    lo, hi, med = float(t.min()), float(t.max()), float(np.median(t))
    return 0 if med - lo <= hi - med else 1


def _branch_direction(pts: np.ndarray, v: np.ndarray, window_cm: float = 10.0) -> np.ndarray:
    near = np.linalg.norm(pts - v, axis=1) <= window_cm
    sel = pts[near] if near.sum() >= 2 else pts
    axis = pca_axis(sel)
    return axis if np.dot(sel.mean(0) - v, axis) >= 0 else -axis


def split_at_vertex(clusters: list[Cluster], vertex: np.ndarray, voxel_cm: float,
                    pid_probs: Optional[np.ndarray] = None, require_kink: bool = False) -> list[Cluster]:
    """Split track clusters that pass through ``vertex`` into their branches.

    ``require_kink``: split two branches only where they meet at an angle (more than
    ``KINK_DEG`` from a straight line): used when the vertex is a guess that may lie in the
    middle of a single track."""
    out: list[Cluster] = []
    v = np.asarray(vertex, dtype=np.float64)
    for c in clusters:
        if c.kind != "track" or c.n < 2 * SIGNIFICANT_TRACK_POINTS:
            out.append(c)
            continue
        d = np.linalg.norm(c.centres - v, axis=1)
        if d.min() > VERTEX_BALL_CM:
            out.append(c)
            continue
        rest = np.flatnonzero(d > VERTEX_BALL_CM)
        if len(rest) < 2 * SIGNIFICANT_TRACK_POINTS:
            out.append(c)
            continue
        lab = _components(c.centres[rest], CONNECT_CM)
        branches = []
        for i in np.unique(lab):
            loc = rest[lab == i]
            dist = np.linalg.norm(c.centres[loc] - v, axis=1)
            # a branch leaves the junction (a piece beyond a gap further along is not one)
            if (len(loc) >= SIGNIFICANT_TRACK_POINTS and dist.max() >= VERTEX_BALL_CM + MIN_BRANCH_CM
                    and dist.min() <= VERTEX_BALL_CM + CONNECT_CM):
                branches.append(loc)
        if len(branches) < 2:
            out.append(c)
            continue
        if require_kink and len(branches) == 2:
            d0 = _branch_direction(c.centres[branches[0]], v)
            d1 = _branch_direction(c.centres[branches[1]], v)
            if np.dot(d0, -d1) >= np.cos(np.radians(KINK_DEG)):
                out.append(c)          # a straight track through the point, not two tracks
                continue
        # every other point (the junction, small bits) joins the branch it is nearest to
        assigned = np.full(c.n, -1)
        for k, loc in enumerate(branches):
            assigned[loc] = k
        todo = np.flatnonzero(assigned < 0)
        if len(todo):
            done = np.flatnonzero(assigned >= 0)
            _, j = cKDTree(c.centres[done]).query(c.centres[todo])
            assigned[todo] = assigned[done[j]]
        extra_branch = np.zeros(len(c.extra_idx), dtype=np.int64)
        if len(c.extra_idx):
            _, j = cKDTree(c.centres).query(c.extra_centres)
            extra_branch = assigned[j]
        for k in range(len(branches)):
            loc = np.flatnonzero(assigned == k)
            idx = c.idx[loc]
            pv = c.pid_vote if pid_probs is None else _vote(pid_probs[idx], c.energy[loc])
            ek = extra_branch == k
            out.append(Cluster(idx=idx, kind="track", instance=c.instance, interaction=c.interaction,
                               centres=c.centres[loc], energy=c.energy[loc], pid_vote=pv,
                               extra_idx=c.extra_idx[ek], extra_centres=c.extra_centres[ek],
                               extra_energy=c.extra_energy[ek]))
    return out


def end_direction(c: Cluster, end: int, voxel_cm: float, window_cm: float = END_WINDOW_CM) -> np.ndarray:
    """Unit vector at a track's end ``end`` (0: end ``a``, 1: end ``b``) pointing out of the track."""
    g = c.geometry(voxel_cm)
    d = g.s if end == 0 else (g.s[g.b] - g.s)     # distance from this end along the track
    tip = c.centres[g.a if end == 0 else g.b]
    pts = c.centres[d <= window_cm]
    if len(pts) < 2:
        pts = c.centres
    axis = pca_axis(pts)
    if np.dot(tip - pts.mean(0), axis) < 0:
        axis = -axis
    return axis


def _merge(a: Cluster, b: Cluster, pid_probs: Optional[np.ndarray]) -> Cluster:
    idx = np.concatenate([a.idx, b.idx])
    energy = np.concatenate([a.energy, b.energy])
    if pid_probs is not None:
        pv = _vote(pid_probs[idx], energy)
    else:
        pv = (a.pid_vote * a.energy_mev + b.pid_vote * b.energy_mev) / max(a.energy_mev + b.energy_mev, 1e-9)
    main = a if a.energy_mev >= b.energy_mev else b
    return Cluster(idx=idx, kind="track", instance=main.instance, interaction=main.interaction,
                   centres=np.vstack([a.centres, b.centres]), energy=energy, pid_vote=pv,
                   extra_idx=np.concatenate([a.extra_idx, b.extra_idx]),
                   extra_centres=np.vstack([a.extra_centres, b.extra_centres]),
                   extra_energy=np.concatenate([a.extra_energy, b.extra_energy]))


def stitch(clusters: list[Cluster], voxel_cm: float, keep_apart: Optional[np.ndarray] = None,
           pid_probs: Optional[np.ndarray] = None) -> list[Cluster]:
    """Join track pieces that continue each other: ends within ``STITCH_CM`` whose outward
    directions are opposite within ``STITCH_DEG`` (``STITCH_SAME_DEG`` for two pieces of one
    predicted instance), the gap between them along that line.
    A junction within 3 cm of ``keep_apart`` (a trusted vertex) is not stitched: two tracks
    leaving a vertex back to back look the same."""
    tracks = [c for c in clusters if c.kind == "track" and c.n >= 2]
    others = [c for c in clusters if not (c.kind == "track" and c.n >= 2)]
    cos_max = np.cos(np.radians(STITCH_DEG))
    cos_same = np.cos(np.radians(STITCH_SAME_DEG))
    dirs: dict[tuple[int, int], np.ndarray] = {}

    def direction(c: Cluster, e: int) -> np.ndarray:
        key = (id(c), e)
        if key not in dirs:
            dirs[key] = end_direction(c, e, voxel_cm)
        return dirs[key]

    while len(tracks) > 1:
        best = None
        ends = [c.centres[[c.geometry(voxel_cm).a, c.geometry(voxel_cm).b]] for c in tracks]
        for i in range(len(tracks)):
            for j in range(i + 1, len(tracks)):
                for ei in (0, 1):
                    for ej in (0, 1):
                        pa, pb = ends[i][ei], ends[j][ej]
                        gap = float(np.linalg.norm(pb - pa))
                        if gap > STITCH_CM or (best is not None and gap >= best[0]):
                            continue
                        if keep_apart is not None and np.linalg.norm(0.5 * (pa + pb) - keep_apart) <= 3.0:
                            continue
                        da, db = direction(tracks[i], ei), direction(tracks[j], ej)
                        cmax = cos_same if tracks[i].instance == tracks[j].instance else cos_max
                        if np.dot(da, -db) < cmax:
                            continue
                        if gap > 1.0 and np.dot((pb - pa) / gap, da) < cmax:
                            continue
                        best = (gap, i, j)
        if best is None:
            break
        _, i, j = best
        merged = _merge(tracks[i], tracks[j], pid_probs)
        tracks = [t for k, t in enumerate(tracks) if k not in (i, j)] + [merged]
    return others + tracks


KINK_SPLIT_DEG = 60.0     # split_kinks: a track that turns this sharply is two tracks
KINK_ARM_CM = 6.0         # ... measured over this much track on each side


def find_kink(c: Cluster, voxel_cm: float) -> Optional[np.ndarray]:
    """The point where a track cluster turns most sharply, if by at least KINK_SPLIT_DEG
    (directions over KINK_ARM_CM of track on each side), else None. Two tracks from one vertex
    that the instance head joined form such a V; a single track bends gradually."""
    if c.kind != "track" or c.n < 2 * SIGNIFICANT_TRACK_POINTS:
        return None
    g = c.geometry(voxel_cm)
    length = float(g.s[g.b])
    if length < 2 * KINK_ARM_CM + 1.0:
        return None
    step = 1.0
    nb = int(length / step) + 1
    k = np.clip((g.s / step).astype(np.int64), 0, nb - 1)
    cnt = np.bincount(k, minlength=nb)
    cen = np.stack([np.bincount(k, weights=c.centres[:, j], minlength=nb) for j in range(3)], 1)
    ok = cnt > 0
    pos = np.flatnonzero(ok) * step + 0.5 * step
    cen = cen[ok] / cnt[ok, None]
    arm = KINK_ARM_CM
    best, best_angle = None, np.radians(KINK_SPLIT_DEG)
    for i in range(len(pos)):
        before = (pos < pos[i]) & (pos >= pos[i] - arm)
        after = (pos > pos[i]) & (pos <= pos[i] + arm)
        if pos[i] < arm or pos[i] > length - arm or before.sum() < 2 or after.sum() < 2:
            continue
        d0 = cen[i] - cen[before].mean(0)
        d1 = cen[after].mean(0) - cen[i]
        n0, n1 = np.linalg.norm(d0), np.linalg.norm(d1)
        if n0 < 1e-6 or n1 < 1e-6:
            continue
        ang = float(np.arccos(np.clip(np.dot(d0, d1) / (n0 * n1), -1, 1)))
        if ang > best_angle:
            best, best_angle = cen[i], ang
    if best is None:
        return None
    return c.centres[int(np.argmin(np.linalg.norm(c.centres - best, axis=1)))]


def split_kinks(clusters: list[Cluster], voxel_cm: float, pid_probs: Optional[np.ndarray] = None
                ) -> list[Cluster]:
    """Split every track cluster at its sharpest kink (``find_kink``), once."""
    out: list[Cluster] = []
    for c in clusters:
        p = find_kink(c, voxel_cm)
        if p is None:
            out.append(c)
        else:
            out.extend(split_at_vertex([c], p, voxel_cm, pid_probs, require_kink=True))
    return out
