"""Glue from ``events`` to encoder batches: event streams, view augmentations, per-point labels.

    spec = DataSpec(modes=("nu",), seed=0, voxel_size_cm=0.6)
    for ev in event_stream(spec, "pretrain"): ...        # endless, simulated, lazily
    batch = make_batch(evs, encoder.config)               # encoder inputs + truth labels

Seeds and splits: a simulated event is drawn from ``default_rng([data_seed, index])``, and the
data seed of a split is ``split_seed(seed, split) = 1000 * seed + {pretrain: 0, finetune: 1,
eval: 2, align: 3}[split]``, an injective map, so held-out evaluation events never coincide with any
pretraining or fine-tuning event for any base seed.

Batches are built from arrays (not ``Event`` objects, whose validation would reject augmented
points that leave the volume) with exactly the feature layout of
``encoder.backbone.collate_events``: x, y, z scaled to [-1, 1] over the detector volume, then
``energy_feature(E)``; ``grid`` is the voxel index on the model's grid.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from larsight.events.dataset import EventDataset
from larsight.events.model import EVENT_CLASSES, PILARNET_VOLUME, Event, Volume
from larsight.events.sim import MODES

from .backbone import energy_feature
from .config import EncoderConfig

SPLITS = {"pretrain": 0, "finetune": 1, "eval": 2, "align": 3}
MASK_ENERGY_FEATURE = -1.0
"""Energy feature of a masked point / mask token (real points have log1p(E/0.1) >= 0)."""


def split_seed(seed: int, split: str) -> int:
    """Simulator seed of a data split; distinct (seed, split) pairs never share a seed."""
    if split not in SPLITS:
        raise ValueError(f"split_seed: split must be one of {sorted(SPLITS)}, got {split!r}")
    if seed < 0:
        raise ValueError(f"split_seed: seed must be >= 0, got {seed}")
    return 1000 * int(seed) + SPLITS[split]


def volume_for(voxel_size_cm: Optional[float]) -> Volume:
    """The PILArNet-M volume (230.4 cm cube) on a grid of ``voxel_size_cm``."""
    if voxel_size_cm is None:
        return PILARNET_VOLUME
    extent = float(PILARNET_VOLUME.size_cm[0])
    n = int(round(extent / voxel_size_cm))
    if n < 1 or abs(n * voxel_size_cm - extent) > 1e-6 * extent:
        raise ValueError(f"voxel size {voxel_size_cm} cm does not divide the {extent:.1f} cm volume")
    return Volume(voxel_size_cm=voxel_size_cm, shape=(n, n, n))


@dataclass
class DataSpec:
    """Where training / evaluation events come from; recorded in every manifest."""

    modes: tuple[str, ...] = ("nu",)
    """Simulator modes, cycled event by event ('nu', 'mpv', 'mpr')."""
    seed: int = 0
    """Base seed; each split gets its own simulator seed (``split_seed``)."""
    voxel_size_cm: float = 0.6
    """Grid the events are simulated on (and the model's grid)."""
    files: tuple[str, ...] = ()
    """Event files (PILArNet-M .h5 / .root) read instead of simulating, when given."""

    def __post_init__(self) -> None:
        if isinstance(self.modes, str):
            self.modes = tuple(m for m in self.modes.split(",") if m)
        self.modes, self.files = tuple(self.modes), tuple(str(f) for f in self.files)
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"DataSpec.modes: each must be one of {sorted(MODES)}, got {self.modes}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def volume(self) -> Volume:
        return volume_for(self.voxel_size_cm)


def simulated_events(modes: Sequence[str], seed: int, volume: Volume, start: int = 0,
                     stop: Optional[int] = None, step: int = 1) -> Iterator[Event]:
    """Events ``start, start+step, ...`` (< stop) of a simulated stream; event i uses
    ``modes[i % len(modes)]`` and ``default_rng([seed, i])``."""
    for i in itertools.count(start, step):
        if stop is not None and i >= stop:
            return
        yield MODES[modes[i % len(modes)]](seed=seed, index=i, volume=volume)


def file_events(paths: Sequence[str], loop: bool = False, rank: int = 0, world: int = 1,
                shuffle_files: bool = False, seed: int = 0) -> Iterator[Event]:
    """Events of ``paths`` (files or globs), lazily, through ``events.dataset.EventDataset``
    (process ``rank`` of ``world`` reads only its share); ``loop`` repeats epochs forever."""
    ds = EventDataset(list(paths), shuffle_files=shuffle_files, seed=seed, min_points=0,
                      rank=rank, world_size=world)
    if not ds.files:
        raise FileNotFoundError(f"no event files match {list(paths)}")
    for epoch in itertools.count():
        ds.set_epoch(epoch)
        n = 0
        for ev in ds:
            n += 1
            yield ev
        if not loop or n == 0:
            return


def event_stream(spec: DataSpec, split: str, *, start: int = 0, stop: Optional[int] = None,
                 rank: int = 0, world: int = 1, loop: bool = True,
                 min_points: int = 1) -> Iterator[Event]:
    """Events of a split for process ``rank`` of ``world``: simulated (endless unless ``stop``)
    or from files (files are not split by seed: use separate files for held-out events).
    ``start`` / ``stop`` count stream positions; events with fewer than ``min_points``
    points (a neutrino can leave nothing above threshold) are skipped."""
    if spec.files:  # start / stop count this process's events
        it = itertools.islice(file_events(spec.files, loop=loop, rank=rank, world=world,
                                          shuffle_files=split == "pretrain", seed=spec.seed),
                              start, stop)
    else:
        it = simulated_events(spec.modes, split_seed(spec.seed, split), spec.volume,
                              start=start * world + rank, stop=stop, step=world)
    return (ev for ev in it if len(ev) >= min_points)


def take(spec: DataSpec, split: str, n: int, min_points: int = 1) -> list[Event]:
    """The first ``n`` non-empty events of a split (fine-tuning sets, held-out evaluation)."""
    return list(itertools.islice(event_stream(spec, split, min_points=min_points), n))


# ============================================================================ batches
def batch_from_arrays(points: Sequence[np.ndarray | Tensor], energy: Sequence[np.ndarray | Tensor],
                      volume: Volume, voxel_size_cm: float,
                      energy_feat: Optional[Sequence[Optional[Tensor]]] = None) -> dict[str, Tensor]:
    """A ragged encoder batch (coords, grid, feat, offset) from per-event arrays.

    ``energy_feat`` optionally overrides the energy feature of an event (e.g. masked points).
    """
    lower = torch.as_tensor(volume.lower_cm, dtype=torch.float32)
    half = torch.as_tensor(volume.size_cm, dtype=torch.float32) / 2
    coords, grids, feats, counts = [], [], [], []
    for i, (p, e) in enumerate(zip(points, energy)):
        p = torch.as_tensor(p, dtype=torch.float32)
        e = torch.as_tensor(e, dtype=torch.float32)
        if p.ndim != 2 or p.shape[1] != 3 or e.shape != (p.shape[0],) or p.shape[0] == 0:
            raise ValueError(f"batch_from_arrays: event {i} has points {tuple(p.shape)} and "
                             f"energy {tuple(e.shape)} (need (N>0, 3) and (N,))")
        ef = energy_feature(e) if energy_feat is None or energy_feat[i] is None else energy_feat[i]
        coords.append(p)
        grids.append(torch.floor((p - lower) / voxel_size_cm + 1e-3).long())
        feats.append(torch.cat([(p - lower - half) / half, ef[:, None].float()], dim=1))
        counts.append(p.shape[0])
    return {"coords": torch.cat(coords), "grid": torch.cat(grids), "feat": torch.cat(feats),
            "offset": torch.cumsum(torch.tensor(counts, dtype=torch.long), 0)}


def event_labels(evs: Sequence[Event]) -> dict[str, Tensor]:
    """Per-point and per-event truth of a batch (missing truth becomes -1 / NaN).

    Per point (N,): ``semantic``, ``particle``, ``interaction``, ``pid`` (int64, -1 unknown);
    per event: ``vertex`` (B, 3) cm of the first interaction (NaN if none), ``event_class``
    (B,) index into ``EVENT_CLASSES`` (-1 if none).
    """
    out: dict[str, list] = {k: [] for k in ("semantic", "particle", "interaction", "pid")}
    vertex, klass = [], []
    for ev in evs:
        n = len(ev)
        for k in out:
            v = getattr(ev, k)
            out[k].append(torch.full((n,), -1, dtype=torch.long) if v is None
                          else torch.as_tensor(v.astype(np.int64)))
        vertex.append(ev.interactions[0].vertex_cm if ev.interactions else (math.nan,) * 3)
        klass.append(EVENT_CLASSES.index(ev.event_class) if ev.event_class else -1)
    labels = {k: torch.cat(v) for k, v in out.items()}
    labels["vertex"] = torch.tensor(vertex, dtype=torch.float32)
    labels["event_class"] = torch.tensor(klass, dtype=torch.long)
    return labels


def make_batch(evs: Sequence[Event], config: EncoderConfig, labels: bool = True,
               device=None) -> dict[str, Tensor]:
    """Encoder inputs (on the config's grid, the events' own volume) plus truth labels."""
    volume = evs[0].meta.volume
    batch = batch_from_arrays([e.points for e in evs], [e.energy for e in evs], volume,
                              config.voxel_size_cm)
    if labels:
        batch.update(event_labels(evs))
    batch["batch"] = torch.repeat_interleave(torch.arange(len(evs)),
                                             torch.diff(batch["offset"], prepend=torch.zeros(1, dtype=torch.long)))
    return to_device(batch, device)


def to_device(batch: dict[str, Tensor], device) -> dict[str, Tensor]:
    if device is None:
        return batch
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


ENCODER_KEYS = ("coords", "grid", "feat", "offset")


def encoder_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: batch[k] for k in ENCODER_KEYS}


# ============================================================================ augmentations
@dataclass
class Augment:
    """Label-free augmentations of one event (positions in cm, energies in MeV)."""

    rotate: bool = True
    """Random rotation about the drift axis (x) through the event's centre."""
    jitter_voxels: float = 0.25
    """Gaussian position jitter, in voxels."""
    energy_scale: float = 0.10
    """Log-normal sigma of a per-event energy scale."""
    energy_noise: float = 0.05
    """Log-normal sigma of per-point energy noise."""
    keep: tuple[float, float] = (0.85, 1.0)
    """Fraction of points kept (uniform range) in a global view."""

    def __call__(self, points: np.ndarray, energy: np.ndarray, rng: np.random.Generator,
                 voxel_size_cm: float) -> tuple[np.ndarray, np.ndarray]:
        p = points.astype(np.float32, copy=True)
        if self.rotate:
            a = rng.uniform(0, 2 * math.pi)
            c, s = math.cos(a), math.sin(a)
            centre = p.mean(0)
            y, z = p[:, 1] - centre[1], p[:, 2] - centre[2]
            p[:, 1], p[:, 2] = centre[1] + c * y - s * z, centre[2] + s * y + c * z
        if self.jitter_voxels:
            p += rng.normal(0, self.jitter_voxels * voxel_size_cm, p.shape).astype(np.float32)
        e = energy * np.exp(rng.normal(0, self.energy_scale)
                            + rng.normal(0, self.energy_noise, energy.shape))
        return p, e.astype(np.float32)


def crop_indices(points: np.ndarray, rng: np.random.Generator, frac: tuple[float, float],
                 min_points: int = 16) -> np.ndarray:
    """Sorted indices of a local crop: the ``frac`` share of points nearest a random point."""
    n = len(points)
    k = min(n, max(min_points, int(round(rng.uniform(*frac) * n))))
    centre = points[rng.integers(n)]
    d = ((points - centre) ** 2).sum(1)
    return np.sort(np.argpartition(d, k - 1)[:k]) if k < n else np.arange(n)


def subsample_indices(n: int, rng: np.random.Generator, keep: tuple[float, float]) -> np.ndarray:
    k = max(1, int(round(rng.uniform(*keep) * n)))
    return np.sort(rng.choice(n, size=k, replace=False)) if k < n else np.arange(n)
