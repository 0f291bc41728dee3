"""2D projections of events (the VLM paper's 512x512 XZ / YZ energy maps) and re-voxelisation.

    maps = pixel_maps(ev)                        # (2, 512, 512) float32, MeV per pixel, full volume
    maps = pixel_maps(ev, crop_to_event=True)    # a tight square box around the event per view
    coarse = coarsen(ev, 2)                      # the same event on 2x coarser voxels

Orientation: ``maps[k, row, col]`` for view ``views[k] = "ab"``: the column (horizontal index)
bins the view's first coordinate ``a`` and the row bins its second coordinate ``b``, row 0 at
the lower edge. So ``plt.imshow(maps[k], origin="lower")`` draws the "xz" view with x to the
right and z (the beam axis) upwards. A point at coordinate ``(a, b)`` lands in pixel
``row = floor((b - b_lo) / (b_hi - b_lo) * size)``, ``col = floor((a - a_lo) / (a_hi - a_lo) * size)``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from larsight.events.model import Event, EventError

AXES = {"x": 0, "y": 1, "z": 2}

SEMANTIC_PRECEDENCE = (1, 2, 0, 3, 4)
"""Semantic labels from strongest to weakest when voxels merge: track > Michel > shower > delta >
low energy (SPINE's precedence); -1 (unlabelled) loses to everything."""

Extent = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def _view_axes(view: str) -> tuple[int, int]:
    view = view.lower()
    if len(view) != 2 or view[0] not in AXES or view[1] not in AXES or view[0] == view[1]:
        raise ValueError(f"pixel_maps: a view is two different axes among x, y, z (e.g. 'xz'), got {view!r}")
    return AXES[view[0]], AXES[view[1]]


def _as_extent(event: Event, extent) -> np.ndarray:
    """(3, 2) array of [lo, hi) per axis: the given extent or the event's volume."""
    if extent is None:
        v = event.meta.volume
        return np.stack([v.lower_cm, v.upper_cm], axis=1)
    ext = np.asarray(extent, dtype=np.float64)
    if ext.shape != (3, 2):
        raise ValueError(f"pixel_maps: extent must be ((xlo, xhi), (ylo, yhi), (zlo, zhi)), got shape {ext.shape}")
    if np.any(ext[:, 1] <= ext[:, 0]):
        raise ValueError(f"pixel_maps: extent needs lo < hi on every axis, got {ext.tolist()}")
    return ext


def view_extents(event: Event, views: Sequence[str] = ("xz", "yz"), extent=None,
                 crop_to_event: bool = False, margin_cm: Optional[float] = None
                 ) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The box each view is binned over: ``[((a_lo, a_hi), (b_lo, b_hi)), ...]`` in cm.

    Default: the full volume (or ``extent``). With ``crop_to_event`` a square box centred on the
    event's points in that view, its side the larger of the two spans plus ``margin_cm`` on each
    side (default: one voxel), so pixels stay square in cm.
    """
    ext = _as_extent(event, extent)
    out = []
    for view in views:
        a, b = _view_axes(view)
        if not crop_to_event:
            out.append(((float(ext[a, 0]), float(ext[a, 1])), (float(ext[b, 0]), float(ext[b, 1]))))
            continue
        margin = event.meta.volume.voxel_size_cm if margin_cm is None else float(margin_cm)
        if len(event) == 0:
            lo = np.array([ext[a, 0], ext[b, 0]])
            hi = lo + 2 * max(margin, 1e-3)
        else:
            p = event.points[:, [a, b]].astype(np.float64)
            lo, hi = p.min(axis=0), p.max(axis=0)
            # the point is the lower corner of its voxel: include the whole voxel
            hi = hi + event.meta.volume.voxel_size_cm
        centre = (lo + hi) / 2
        half = max(float(np.max(hi - lo)) / 2 + margin, 1e-3)
        out.append(((float(centre[0] - half), float(centre[0] + half)),
                    (float(centre[1] - half), float(centre[1] + half))))
    return out


def pixel_maps(event: Event, size: int = 512, views: Sequence[str] = ("xz", "yz"), extent=None,
               log: bool = False, crop_to_event: bool = False) -> np.ndarray:
    """Energy (MeV) summed per pixel in each view: float32 ``(len(views), size, size)``.

    ``extent`` ((xlo, xhi), (ylo, yhi), (zlo, zhi)) cm, default the event's volume; points
    outside the binned box are dropped, so the maps sum to the energy of the points inside it
    (all of them by default). ``crop_to_event``: a tight square box per view (``view_extents``).
    ``log``: ``log1p`` of the MeV per pixel. Orientation: see the module docstring.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"pixel_maps: size must be >= 1, got {size}")
    boxes = view_extents(event, views, extent, crop_to_event)
    maps = np.zeros((len(boxes), size, size), dtype=np.float32)
    energy = event.energy.astype(np.float64)
    for k, (view, ((alo, ahi), (blo, bhi))) in enumerate(zip(views, boxes)):
        a, b = _view_axes(view)
        pa = event.points[:, a].astype(np.float64)
        pb = event.points[:, b].astype(np.float64)
        inside = (pa >= alo) & (pa < ahi) & (pb >= blo) & (pb < bhi)
        col = np.floor((pa[inside] - alo) / (ahi - alo) * size).astype(np.int64)
        row = np.floor((pb[inside] - blo) / (bhi - blo) * size).astype(np.int64)
        # float rounding right at the upper edge
        np.clip(col, 0, size - 1, out=col)
        np.clip(row, 0, size - 1, out=row)
        flat = np.bincount(row * size + col, weights=energy[inside], minlength=size * size)
        maps[k] = flat.reshape(size, size)
    if log:
        np.log1p(maps, out=maps)
    return maps


# ---------------------------------------------------------------------------- coarsening
def _weighted_mode(group: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the label with the largest summed weight (ties: more points, then smaller label)."""
    if group.size == 0:
        return np.empty(0, dtype=labels.dtype)
    order = np.lexsort((labels, group))
    g, lab, w = group[order], labels[order], weights[order]
    new = np.ones(g.size, dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (lab[1:] != lab[:-1])
    starts = np.flatnonzero(new)
    pg, pl = g[starts], lab[starts]
    psum = np.add.reduceat(w, starts)
    pcount = np.diff(np.append(starts, g.size))
    best = np.lexsort((pl, -pcount, -psum, pg))
    first = np.ones(best.size, dtype=bool)
    first[1:] = pg[best][1:] != pg[best][:-1]
    chosen = best[first]
    out = np.empty(n_groups, dtype=labels.dtype)
    out[pg[chosen]] = pl[chosen]
    return out


def coarsen(event: Event, factor: int) -> Event:
    """The event re-voxelised on a grid ``factor`` times coarser (``Volume.coarsened``).

    Points in one coarse voxel merge into one point at that voxel's lower corner (the PILArNet
    convention: index * voxel size + origin). Energy and ``n_electrons`` are summed (so the
    total is conserved), ``dx_cm`` summed (path length inside the voxel), ``time_us`` the
    earliest. Labels: ``semantic`` by precedence track > Michel > shower > delta > low energy;
    ``particle`` and ``interaction`` by energy-weighted majority; ``fragment`` and ``pid`` from
    the chosen particle's points (energy-weighted majority among them). The particle table is
    kept, with ``n_voxels`` and ``deposited_energy_mev`` recounted from the new labels.
    """
    factor = int(factor)
    if factor == 1:
        return event.copy()
    volume = event.meta.volume.coarsened(factor)
    idx = event.voxel_indices() // factor
    shape = np.asarray(volume.shape, dtype=np.int64)
    idx = np.clip(idx, 0, shape - 1)
    key = (idx[:, 0] * shape[1] + idx[:, 1]) * shape[2] + idx[:, 2]
    ukey, group = np.unique(key, return_inverse=True)
    group = group.reshape(-1)
    n = ukey.size
    energy = event.energy.astype(np.float64)

    cidx = np.stack(np.unravel_index(ukey, tuple(shape)), axis=1)
    out: dict = {
        "points": (cidx * volume.voxel_size_cm + volume.lower_cm).astype(np.float32),
        "energy": np.bincount(group, weights=energy, minlength=n).astype(np.float32),
    }
    if event.n_electrons is not None:
        out["n_electrons"] = np.bincount(group, weights=event.n_electrons, minlength=n).astype(np.float32)
    if event.dx_cm is not None:
        out["dx_cm"] = np.bincount(group, weights=event.dx_cm, minlength=n).astype(np.float32)
    if event.time_us is not None:
        t = np.full(n, np.inf)
        np.minimum.at(t, group, event.time_us.astype(np.float64))
        out["time_us"] = t.astype(np.float32)
    if event.semantic is not None:
        rank = np.full(len(SEMANTIC_PRECEDENCE) + 1, len(SEMANTIC_PRECEDENCE), dtype=np.int64)
        for r, label in enumerate(SEMANTIC_PRECEDENCE):
            rank[label] = r
        # index -1 (unlabelled) -> last slot, the weakest rank
        r = rank[event.semantic.astype(np.int64)]
        best = np.full(n, len(SEMANTIC_PRECEDENCE), dtype=np.int64)
        np.minimum.at(best, group, r)
        inverse = np.array(list(SEMANTIC_PRECEDENCE) + [-1], dtype=np.int64)
        out["semantic"] = inverse[best]
    if event.interaction is not None:
        out["interaction"] = _weighted_mode(group, event.interaction, energy, n)
    if event.particle is not None:
        chosen = _weighted_mode(group, event.particle, energy, n)
        out["particle"] = chosen
        mine = event.particle == chosen[group]          # points of the chosen particle
        for name in ("fragment", "pid"):
            arr = getattr(event, name)
            if arr is not None:
                out[name] = _weighted_mode(group[mine], arr[mine], energy[mine], n)
    else:
        for name in ("fragment", "pid"):
            arr = getattr(event, name)
            if arr is not None:
                out[name] = _weighted_mode(group, arr, energy, n)

    particles = list(event.particles)
    if particles and "particle" in out:
        lab = out["particle"].astype(np.int64)
        ids = np.array([p.id for p in particles], dtype=np.int64)
        particles = []
        for p, pid_ in zip(event.particles, ids):
            sel = lab == pid_
            particles.append(p.model_copy(update={
                "n_voxels": int(sel.sum()),
                "deposited_energy_mev": float(out["energy"][sel].sum(dtype=np.float64))}))
    meta = event.meta.model_copy(update={"volume": volume})
    try:
        return Event(particles=particles, interactions=list(event.interactions), meta=meta, **out)
    except EventError as err:  # pragma: no cover - would be a bug here
        raise EventError(f"coarsen(factor={factor}): {err}") from err
