"""The encoder benchmark's inputs: simulated events merged into events of exactly N distinct
0.3 cm voxels (see ``evals.encoder_bench``), and their npz round trip for the worker processes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

BATCH_SIZES = (1, 8)
SLOTS = max(BATCH_SIZES)          # distinct input events per size
SLOT_STRIDE = 1000                # slot j draws mpr events j*SLOT_STRIDE, j*SLOT_STRIDE + 1, ...


def _voxels(points: np.ndarray, voxel_size_cm: float) -> np.ndarray:
    return np.floor(points / voxel_size_cm + 1e-3).astype(np.int64)


def merged_event(stream: Sequence[tuple[np.ndarray, np.ndarray]] | Any, n_points: int,
                 voxel_size_cm: float = 0.3) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge events from ``stream`` (an iterable of (points, energy)) into exactly ``n_points``
    distinct voxels of ``voxel_size_cm``.

    Points are taken in stream order; a point whose voxel is already present adds its energy
    there. Returns (points (n, 3) float32, energy (n,) float32, events used).
    """
    pts, ens, keys_seen = [], [], {}
    total, used = 0, 0
    for points, energy in stream:
        used += 1
        vox = _voxels(points, voxel_size_cm)
        for p, e, v in zip(points, energy, map(tuple, vox)):
            row = keys_seen.get(v)
            if row is not None:
                ens[row] += float(e)
                continue
            if total == n_points:
                continue          # the event is full: later points only add energy to its voxels
            keys_seen[v] = total
            pts.append(p)
            ens.append(float(e))
            total += 1
        if total == n_points:
            break
    if total < n_points:
        raise ValueError(f"merged_event: the stream ran out at {total} < {n_points} voxels")
    return np.asarray(pts, np.float32), np.asarray(ens, np.float32), used


def build_inputs(sizes: Sequence[int], seed: int, mode: str = "mpr",
                 slots: int = SLOTS) -> tuple[dict[int, list[tuple[np.ndarray, np.ndarray]]], dict]:
    """``slots`` merged events per size (see the module doc) and a description of them."""
    # not at the top: the benchmark's worker processes import this module, and their absolute
    # peak memory must not include the simulator (scipy), which only the parent runs
    from larsight.events import sim

    gen = sim.MODES[mode]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def stream(slot: int):
        k = 0
        while True:
            i = slot * SLOT_STRIDE + k
            if i not in cache:
                ev = gen(seed=seed, index=i)
                cache[i] = (ev.points, ev.energy)
            yield cache[i]
            k += 1
            if k >= SLOT_STRIDE:
                raise ValueError("build_inputs: too many events per slot")

    out, used = {}, {}
    for n in sorted(sizes):
        out[n], used[n] = [], []
        for j in range(slots):
            p, e, u = merged_event(stream(j), n)
            out[n].append((p, e))
            used[n].append(u)
    # the 0.6 cm grid of the tiny preset merges voxels: how many remain
    coarse = {n: float(np.mean([len(np.unique(_voxels(p, 0.6), axis=0)) / n for p, _ in out[n]]))
              for n in out}
    info = dict(mode=mode, seed=seed, simulated_events=len(cache),
                events_per_input={n: float(np.mean(u)) for n, u in used.items()},
                voxel_fraction_at_0p6cm=coarse)
    return out, info


def save_inputs(inputs: dict[int, list[tuple[np.ndarray, np.ndarray]]], path: Path) -> None:
    arrays = {}
    for n, evs in inputs.items():
        for j, (p, e) in enumerate(evs):
            arrays[f"p_{n}_{j}"], arrays[f"e_{n}_{j}"] = p, e
    np.savez(path, **arrays)


def load_inputs(path: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    with np.load(path) as d:
        out, j = [], 0
        while f"p_{n}_{j}" in d:
            out.append((d[f"p_{n}_{j}"], d[f"e_{n}_{j}"]))
            j += 1
    if not out:
        raise ValueError(f"load_inputs: no {n}-point events in {path}")
    return out
