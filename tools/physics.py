"""Measurements on clusters of voxels: track geometry, dE/dx, energy by range and by charge.

Numbers come from shared/PHYSICS.md through ``events.sim.medium`` (the simulator's own tables),
so that what the tools measure and what the simulator did agree by construction:

- kinetic energy by range: the CSDA range tables of ``medium.range_table`` (muon, pion, kaon,
  proton; Bethe-Bloch with the density effect, reproducing the PDG / PSTAR values of
  PHYSICS.md), inverted at the measured path length;
- recombination: the modified box model (ArgoNeuT, alpha 0.93, beta 0.212 at 0.5 kV/cm),
  inverted to turn collected charge (``Event.n_electrons``) back into deposited energy;
- MIP dE/dx 2.105 MeV/cm; electron showers start at about 1 MIP, photon showers at about 2.

Coordinates: a point of an ``Event`` is its voxel's corner; measurements use voxel centres
(``points + voxel/2``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from larsight.events.sim import medium as M

__all__ = ["TrackGeometry", "track_geometry", "pca_axis", "range_energy_mev", "dedx_profile",
           "bragg_ratio", "charge_energy_mev", "inverse_box", "shower_start_dedx", "RANGE_SPECIES",
           "MIP_DEDX", "TRUNK_LENGTH_CM", "TRUNK_RADIUS_CM", "TRUNK_SLICE_CM"]

MIP_DEDX = M.MIP_DEDX                    # 2.105 MeV/cm
RANGE_SPECIES = ("muon", "pion", "kaon", "proton")
TRUNK_LENGTH_CM = 4.0                    # shower trunk: first 4 cm
TRUNK_RADIUS_CM = 1.0                    # around the shower axis
TRUNK_SLICE_CM = 1.0                     # median of 1 cm slices
BRAGG_TAIL_CM = 3.0                      # residual range that holds the Bragg peak
PROFILE_BIN_CM = 1.0
SMOOTH_CM = 2.0                          # slice length of the smoothed track path


def pca_axis(points: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Unit principal axis of a point set (weighted; +z for fewer than two points)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(p) < 2:
        return np.array([0.0, 0.0, 1.0])
    w = np.ones(len(p)) if weights is None else np.maximum(np.asarray(weights, np.float64), 0) + 1e-12
    c = p - np.average(p, axis=0, weights=w)
    cov = (c * w[:, None]).T @ c / w.sum()
    vals, vecs = np.linalg.eigh(cov)
    axis = vecs[:, -1]
    return axis / np.linalg.norm(axis)


@dataclass
class TrackGeometry:
    """Geometry of one cluster seen as a (possibly curved) track.

    ``a`` / ``b``: indices of its two end points (the ends of the longest shortest path through
    the cluster); ``s``: distance of every point along the track from ``a`` (cm, through the
    cluster's neighbourhood graph); ``path_length_cm``: ``s`` at ``b`` plus one voxel."""

    a: int
    b: int
    s: np.ndarray
    path_length_cm: float

    def flipped(self) -> "TrackGeometry":
        s = self.s[self.b] - self.s
        return TrackGeometry(self.b, self.a, np.maximum(s, 0.0), self.path_length_cm)


def _graph_components(points: np.ndarray, radius: float):
    tree = cKDTree(points)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    n = len(points)
    if len(pairs) == 0:
        g = coo_matrix((n, n))
    else:
        d = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
        g = coo_matrix((np.r_[d, d], (np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]])),
                       shape=(n, n))
    ncomp, labels = connected_components(g, directed=False)
    return g.tocsr(), ncomp, labels


def track_geometry(points: np.ndarray, voxel_cm: float) -> TrackGeometry:
    """End points and along-track distance of a cluster (``points``: voxel centres, cm).

    The points are joined to their neighbours within 3 voxels (edge weight = distance); the
    ends are the two points farthest apart along shortest paths (two Dijkstra sweeps), so a
    track bent by multiple scattering keeps its true ends and its path length. Gaps wider
    than the radius are bridged by widening it; a cluster that stays broken falls back to its
    principal axis."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = len(p)
    if n == 1:
        return TrackGeometry(0, 0, np.zeros(1), float(voxel_cm))
    radius = 3.0 * voxel_cm
    for _ in range(4):
        g, ncomp, labels = _graph_components(p, radius)
        if ncomp == 1:
            break
        radius *= 2.0
    if ncomp != 1 or n > 60000:
        axis = pca_axis(p)
        t = (p - p.mean(0)) @ axis
        a, b = int(np.argmin(t)), int(np.argmax(t))
        s = t - t[a]
        return TrackGeometry(a, b, s, float(s[b] + voxel_cm))
    d0 = dijkstra(g, directed=False, indices=0)
    a = int(np.argmax(d0))
    da = dijkstra(g, directed=False, indices=a)
    b = int(np.argmax(da))
    # graph paths zig-zag from voxel to voxel (a few % too long): measure the length on the
    # polyline through the centroids of SMOOTH_CM slices instead, and rescale s to it
    raw = float(da[b])
    if raw <= 0:
        return TrackGeometry(a, b, da, float(voxel_cm))
    nb = max(1, int(round(raw / SMOOTH_CM)))
    k = np.clip((da / raw * nb).astype(np.int64), 0, nb - 1)
    cnt = np.bincount(k, minlength=nb)
    cen = np.stack([np.bincount(k, weights=p[:, j], minlength=nb) for j in range(3)], 1)
    cen = cen[cnt > 0] / cnt[cnt > 0, None]
    poly = np.vstack([p[a], cen, p[b]])
    smooth = float(np.linalg.norm(np.diff(poly, axis=0), axis=1).sum())
    smooth = min(max(smooth, float(np.linalg.norm(p[b] - p[a]))), raw)
    s = da * (smooth / raw)
    return TrackGeometry(a, b, s, float(s[b] + voxel_cm))


def range_energy_mev(species: str, range_cm: float) -> Optional[float]:
    """Kinetic energy (MeV) of a ``species`` ('muon', 'pion', 'kaon', 'proton') that stops
    after ``range_cm`` (CSDA tables of events.sim.medium, PHYSICS.md)."""
    if species not in RANGE_SPECIES or not np.isfinite(range_cm) or range_cm <= 0:
        return None
    return float(M.range_table(species).energy_mev(range_cm))


def dedx_profile(s: np.ndarray, energy: np.ndarray, length_cm: float,
                 bin_cm: float = PROFILE_BIN_CM) -> tuple[np.ndarray, np.ndarray]:
    """(residual range at bin centres cm, dE/dx MeV/cm) along a track of ``length_cm`` whose
    points lie at ``s`` cm from its start. The last (partial) bin is divided by its width."""
    s = np.asarray(s, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if length_cm <= 0 or len(s) == 0:
        return np.zeros(0), np.zeros(0)
    nbin = max(1, int(np.ceil(length_cm / bin_cm - 1e-9)))
    edges = np.minimum(np.arange(nbin + 1) * bin_cm, length_cm)
    k = np.clip((s / bin_cm).astype(np.int64), 0, nbin - 1)
    esum = np.bincount(k, weights=e, minlength=nbin)
    width = np.maximum(np.diff(edges), 1e-6)
    centre = 0.5 * (edges[1:] + edges[:-1])
    keep = width >= 0.3 * bin_cm
    return (length_cm - centre)[keep], (esum / width)[keep]


def bragg_ratio(residual_cm: np.ndarray, dedx: np.ndarray, tail_cm: float = BRAGG_TAIL_CM
                ) -> Optional[float]:
    """Mean dE/dx within ``tail_cm`` of the end over the median dE/dx of the rest of the track
    (None for a track too short to compare)."""
    tail = residual_cm <= tail_cm
    body = ~tail
    if tail.sum() < 1 or body.sum() < 2:
        return None
    med = float(np.median(dedx[body]))
    if med <= 0:
        return None
    return float(np.mean(dedx[tail]) / med)


def inverse_box(dqdx_mev_cm) -> np.ndarray:
    """Deposited dE/dx (MeV/cm) from the visible dE/dx = dQ/dx * W_ion (MeV/cm): the modified
    box model inverted, dE/dx = (exp(beta' dQ/dx W) - alpha) / beta', beta' = beta / (rho E)."""
    b = M.BOX_BETA / (M.E_FIELD_KV_CM * M.DENSITY)
    x = np.asarray(dqdx_mev_cm, dtype=np.float64)
    return (np.exp(b * np.clip(x, 0, 60.0)) - M.BOX_ALPHA) / b


def charge_energy_mev(n_electrons: np.ndarray, s: Optional[np.ndarray] = None,
                      length_cm: Optional[float] = None) -> float:
    """Energy (MeV) from collected charge, corrected for recombination with the modified box
    model. Along a track (``s`` and ``length_cm`` given) the correction follows the local
    dQ/dx in 1 cm bins; elsewhere (showers) every deposit is taken at the MIP survival
    fraction R(2.105 MeV/cm) = 0.70."""
    q = np.asarray(n_electrons, dtype=np.float64) * M.W_ION_MEV   # visible energy, MeV
    if s is None or not length_cm or length_cm < 2 * PROFILE_BIN_CM:
        return float(q.sum() / M.recombination(MIP_DEDX))
    nbin = max(1, int(np.ceil(length_cm / PROFILE_BIN_CM - 1e-9)))
    k = np.clip((np.asarray(s) / PROFILE_BIN_CM).astype(np.int64), 0, nbin - 1)
    qbin = np.bincount(k, weights=q, minlength=nbin)
    width = np.full(nbin, PROFILE_BIN_CM)
    width[-1] = max(length_cm - (nbin - 1) * PROFILE_BIN_CM, 0.3 * PROFILE_BIN_CM)
    return float((inverse_box(qbin / width) * width).sum())


def shower_start_dedx(points: np.ndarray, energy: np.ndarray, start: np.ndarray,
                      direction: np.ndarray, length_cm: float = TRUNK_LENGTH_CM,
                      radius_cm: float = TRUNK_RADIUS_CM, slice_cm: float = TRUNK_SLICE_CM
                      ) -> tuple[Optional[float], int]:
    """dE/dx (MeV/cm) of a shower's trunk: the median over the filled ``slice_cm`` slices of the
    energy within ``radius_cm`` of the axis in the first ``length_cm`` from ``start`` (the median
    keeps a slice shared with a vertex track or an early branch from pulling the value; empty
    slices, where the trunk wandered off the axis, are left out). On 30 simulated showers each
    of 100-1000 MeV it gives medians of 2.1 MeV/cm for electrons and 4.0 for photons (1 and 2
    MIPs), and 3.0 MeV/cm separates them 97% of the time. Returns (value or None when fewer
    than 3 voxels or 2 slices are filled, number of voxels used)."""
    rel = np.asarray(points, np.float64) - np.asarray(start, np.float64)
    d = np.asarray(direction, np.float64)
    t = rel @ d
    r = np.linalg.norm(rel - np.outer(t, d), axis=1)
    sel = (t >= 0) & (t < length_cm) & (r < radius_cm)
    nsel = int(sel.sum())
    if nsel < 3:
        return None, nsel
    nslice = int(round(length_cm / slice_cm))
    k = np.clip((t[sel] / slice_cm).astype(np.int64), 0, nslice - 1)
    per = np.bincount(k, weights=np.asarray(energy, np.float64)[sel], minlength=nslice) / slice_cm
    filled = np.bincount(k, minlength=nslice) > 0
    if filled.sum() < 2:
        return None, nsel
    return float(np.median(per[filled])), nsel
