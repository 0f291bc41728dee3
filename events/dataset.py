"""PyTorch datasets streaming events from files or from the simulator, and a ragged collate.

    ds = EventDataset(["data/*.h5", "more.root"], shuffle_files=True, seed=0, transform=to_tensors)
    loader = DataLoader(ds, batch_size=8, num_workers=4, collate_fn=collate_ragged)
    for batch in loader:          # batch["coords"] (sum N, 3), batch["offset"] (B,), batch["batch"] (sum N,)
        ...

Sharding: the events of all files, in (file order, event order), get a global index ``g``; the
shard ``worker_id * world_size + rank`` of ``world_size * num_workers`` takes the events with
``g % (world_size * num_workers) == shard``, so every event is seen exactly once per epoch
across all DataLoader workers and all distributed ranks, and a rank's events are those with
``g % world_size == rank`` whatever its number of workers (ranks differ by at most one event). The rank and world size come from
``torch.distributed`` when it is initialised, else from the ``RANK`` / ``WORLD_SIZE``
environment variables (torchrun, ``accelerate launch``), else 0 / 1; they can also be passed.
File shuffling (``shuffle_files``) draws one permutation from ``(seed, epoch)``, the same on
every rank and worker; call ``set_epoch(epoch)`` between epochs as with ``DistributedSampler``.

Files are read lazily, never all into memory: with at most ``STREAM_SHARDS_MAX`` shards each
file is streamed with ``events.read(path)`` and the other shards' events skipped; with more,
each shard reads only its own events by index (``events.read(path, index=i)``), using
``events.formats.count`` to lay out the indices.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from larsight.events import formats
from larsight.events.model import EVENT_CLASSES, PILARNET_VOLUME, Event, Volume
from larsight.events.sim import MODES, simulate

ENERGY_SCALE_MEV = 0.1
"""Features are ``log1p(E / ENERGY_SCALE_MEV)`` (the encoder's ``energy_feature``)."""

LABELS = ("semantic", "particle", "interaction", "pid", "fragment")
"""Per-point labels in ``to_tensors`` (int64, -1 where the event has none)."""

STREAM_SHARDS_MAX = 2
"""Up to this many shards, a shard streams whole files and skips the others' events; beyond,
it reads only its own events by index (one file open per event)."""

PathsOrGlobs = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


# ---------------------------------------------------------------------------- sharding
def distributed_rank_world(rank: Optional[int] = None, world_size: Optional[int] = None) -> tuple[int, int]:
    """(rank, world size): explicit values, else torch.distributed, else RANK / WORLD_SIZE, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            r, w = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    rank, world_size = int(rank), int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid distributed setup: rank {rank}, world size {world_size}")
    return rank, world_size


def shard_info(rank: Optional[int] = None, world_size: Optional[int] = None) -> tuple[int, int]:
    """(this shard, number of shards) for the current DataLoader worker and distributed rank.

    Shards interleave ranks (``worker_id * world + rank``), so rank r owns the items with
    ``i % world == r`` for any number of workers."""
    rank, world = distributed_rank_world(rank, world_size)
    info = get_worker_info()
    wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
    return wid * world + rank, world * nw


def expand_paths(paths_or_globs: PathsOrGlobs) -> list[Path]:
    """Files from paths and glob patterns, in the given order (each pattern sorted), no duplicates."""
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    out: list[Path] = []
    seen = set()
    for item in paths_or_globs:
        s = os.fspath(item)
        if glob.has_magic(s):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise FileNotFoundError(f"EventDataset: no file matches {s!r}")
        else:
            if not os.path.exists(s):
                raise FileNotFoundError(f"EventDataset: no such file {s!r}")
            matches = [s]
        for m in matches:
            p = Path(m)
            if p.is_dir():
                continue
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    if not out:
        raise FileNotFoundError(f"EventDataset: no files in {paths_or_globs!r}")
    return out


class _ShardedEvents(IterableDataset):
    """Common part: transform, min_points, rank / world and epoch."""

    def __init__(self, transform: Optional[Callable[[Event], Any]] = None, min_points: int = 1,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        super().__init__()
        self.transform = transform
        self.min_points = int(min_points)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _emit(self, ev: Event):
        if len(ev) < self.min_points:
            return None
        return self.transform(ev) if self.transform is not None else ev


class EventDataset(_ShardedEvents):
    """Events streamed lazily from many files (PILArNet-M .h5, .root: anything ``events.read`` reads).

    ``shuffle_files`` permutes the file order per epoch (same permutation on every shard);
    events with fewer than ``min_points`` points are skipped; ``transform`` maps each Event
    (e.g. ``to_tensors``). Yields Events (or transformed items). See the module docstring for
    how events are split among DataLoader workers and distributed ranks.

    ``reader(path, index=None)`` and ``counter(path)`` default to ``events.read`` and
    ``events.formats.count``; pass picklable module-level functions to read other formats.
    """

    def __init__(self, paths_or_globs: PathsOrGlobs, shuffle_files: bool = False, seed: int = 0,
                 transform: Optional[Callable[[Event], Any]] = None, min_points: int = 1, *,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 reader: Optional[Callable[..., Any]] = None, counter: Optional[Callable[[Any], int]] = None):
        super().__init__(transform, min_points, rank, world_size)
        self.reader, self.counter = reader, counter
        self.stream_shards_max = STREAM_SHARDS_MAX
        self.files = expand_paths(paths_or_globs)
        self.shuffle_files = bool(shuffle_files)
        self.seed = int(seed)
        self._counts: Optional[list[int]] = None

    def __repr__(self) -> str:
        return (f"EventDataset({len(self.files)} files, shuffle_files={self.shuffle_files}, "
                f"seed={self.seed}, min_points={self.min_points})")

    def counts(self) -> list[int]:
        """Number of events per file (in ``self.files`` order), read once from the file headers."""
        if self._counts is None:
            count = self.counter if self.counter is not None else formats.count
            self._counts = [int(count(p)) for p in self.files]
        return self._counts

    def num_events(self) -> int:
        """Events in all files (before ``min_points`` filtering)."""
        return sum(self.counts())

    def __len__(self) -> int:
        """Events this rank sees per epoch (before ``min_points`` filtering)."""
        rank, world = distributed_rank_world(self.rank, self.world_size)
        n = self.num_events()
        return n // world + (1 if rank < n % world else 0)

    def file_order(self, epoch: Optional[int] = None) -> list[int]:
        """Indices into ``self.files`` in the order of this epoch."""
        order = np.arange(len(self.files))
        if self.shuffle_files:
            rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch)])
            order = rng.permutation(order)
        return [int(i) for i in order]

    def _events(self, shard: int, nshards: int) -> Iterator[Event]:
        read = self.reader if self.reader is not None else formats.read
        if nshards <= self.stream_shards_max:
            # stream each file and keep every nshards-th event: cheaper than reopening the file
            # per event while few events are skipped
            g = 0
            for k in self.file_order():
                for ev in read(self.files[k]):
                    if g % nshards == shard:
                        yield ev
                    g += 1
            return
        counts = self.counts()
        start = 0
        for k in self.file_order():
            n = counts[k]
            first = (shard - start) % nshards        # first local index j with (start + j) % nshards == shard
            for j in range(first, n, nshards):
                yield read(self.files[k], index=j)
            start += n

    def __iter__(self):
        shard, nshards = shard_info(self.rank, self.world_size)
        for ev in self._events(shard, nshards):
            item = self._emit(ev)
            if item is not None:
                yield item


class SimulatedDataset(_ShardedEvents):
    """Events ``0 .. n-1`` of ``events.sim.simulate(mode, n, seed, volume)``, generated lazily;
    shard ``s`` of ``S`` (workers x ranks, as in ``EventDataset``) generates the events with
    ``i % S == s``. Event ``i`` depends only on ``(seed, i)``, so the union over shards is the
    same stream for any number of workers or ranks. ``n=None`` streams without end."""

    def __init__(self, mode: str = "nu", n: Optional[int] = 1000, seed: int = 0,
                 volume: Volume = PILARNET_VOLUME, transform: Optional[Callable[[Event], Any]] = None,
                 min_points: int = 1, *, rank: Optional[int] = None, world_size: Optional[int] = None):
        super().__init__(transform, min_points, rank, world_size)
        if mode not in MODES:
            raise ValueError(f"SimulatedDataset: mode must be one of {sorted(MODES)}, got {mode!r}")
        if n is not None and n < 0:
            raise ValueError(f"SimulatedDataset: n must be >= 0, got {n}")
        self.mode, self.n, self.seed, self.volume = mode, n, int(seed), volume

    def __repr__(self) -> str:
        return f"SimulatedDataset(mode={self.mode!r}, n={self.n}, seed={self.seed})"

    def __len__(self) -> int:
        if self.n is None:
            raise TypeError("SimulatedDataset with n=None has no length")
        rank, world = distributed_rank_world(self.rank, self.world_size)
        return self.n // world + (1 if rank < self.n % world else 0)

    def __iter__(self):
        shard, nshards = shard_info(self.rank, self.world_size)
        i = shard
        while self.n is None or i < self.n:
            ev = next(iter(simulate(self.mode, 1, seed=self.seed, volume=self.volume, start=i)))
            item = self._emit(ev)
            if item is not None:
                yield item
            i += nshards


# ---------------------------------------------------------------------------- tensors
def energy_feature(energy_mev: np.ndarray) -> np.ndarray:
    """``log1p(E / 0.1 MeV)``: 0 at 0 MeV, ~4.6 at 10 MeV (same as the encoder's)."""
    return np.log1p(np.maximum(np.asarray(energy_mev, dtype=np.float32), 0) / ENERGY_SCALE_MEV)


def event_targets(event: Event) -> tuple[int, np.ndarray]:
    """(event class index in EVENT_CLASSES or -1, vertex (3,) cm or NaN) of an event.

    The vertex is that of the first interaction with an event class, else of the first
    interaction, else NaN."""
    cls = event.event_class
    cls_idx = EVENT_CLASSES.index(cls) if cls in EVENT_CLASSES else -1
    vertex = np.full(3, np.nan, dtype=np.float32)
    chosen = next((i for i in event.interactions if i.event_class), None) or \
        (event.interactions[0] if event.interactions else None)
    if chosen is not None:
        vertex = np.asarray(chosen.vertex_cm, dtype=np.float32)
    return cls_idx, vertex


def to_tensors(event: Event) -> dict[str, Any]:
    """One event as tensors.

    ``coords`` float32 (N,3) cm; ``voxels`` int64 (N,3) indices on the event's grid;
    ``features`` float32 (N,1) = ``log1p(E / 0.1 MeV)``; ``energy`` float32 (N,) MeV;
    labels ``semantic``, ``particle``, ``interaction``, ``pid``, ``fragment`` int64 (N,), -1
    where unknown; per-event ``event_class`` int64 () (index in EVENT_CLASSES, -1 none) and
    ``vertex`` float32 (3,) cm (NaN none); ``source`` / ``index`` from the event's meta.
    """
    n = len(event)
    out: dict[str, Any] = {
        "coords": torch.from_numpy(np.ascontiguousarray(event.points, dtype=np.float32)),
        "voxels": torch.from_numpy(event.voxel_indices().astype(np.int64)),
        "features": torch.from_numpy(energy_feature(event.energy)[:, None]),
        "energy": torch.from_numpy(np.ascontiguousarray(event.energy, dtype=np.float32)),
    }
    for name in LABELS:
        arr = getattr(event, name)
        out[name] = (torch.full((n,), -1, dtype=torch.int64) if arr is None
                     else torch.from_numpy(arr.astype(np.int64)))
    cls, vertex = event_targets(event)
    out["event_class"] = torch.tensor(cls, dtype=torch.int64)
    out["vertex"] = torch.from_numpy(vertex)
    out["source"] = event.meta.source
    out["index"] = event.meta.index
    return out


_POINT_KEYS = ("coords", "voxels", "features", "energy") + LABELS


def collate_ragged(batch: Iterable[Any]) -> dict[str, Any]:
    """Concatenate events of different sizes without padding (the PTv3 / encoder layout).

    Items are ``Event``s or ``to_tensors`` dicts. Per-point tensors are concatenated;
    ``offset`` int64 (B,) is the cumulative point count (event b is rows
    ``offset[b-1]:offset[b]``, from 0 for b = 0), ``batch`` int64 (N,) the event
    index of every point, ``counts`` int64 (B,); per-event ``event_class`` int64 (B,) and
    ``vertex`` float32 (B,3) are stacked; ``source`` / ``index`` are lists.
    """
    items = [to_tensors(b) if isinstance(b, Event) else b for b in batch]
    if not items:
        raise ValueError("collate_ragged: empty batch")
    counts = torch.tensor([int(it["coords"].shape[0]) for it in items], dtype=torch.int64)
    out: dict[str, Any] = {}
    for key in _POINT_KEYS:
        if all(key in it for it in items):
            out[key] = torch.cat([it[key] for it in items], dim=0)
    out["offset"] = torch.cumsum(counts, 0)
    out["counts"] = counts
    out["batch"] = torch.repeat_interleave(torch.arange(len(items), dtype=torch.int64), counts)
    out["event_class"] = torch.stack([torch.as_tensor(it.get("event_class", -1), dtype=torch.int64)
                                      for it in items])
    out["vertex"] = torch.stack([torch.as_tensor(it["vertex"], dtype=torch.float32) if "vertex" in it
                                 else torch.full((3,), float("nan")) for it in items])
    out["source"] = [it.get("source") for it in items]
    out["index"] = [it.get("index") for it in items]
    return out
