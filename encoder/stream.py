"""Streaming training events from a shard folder (``encoder.shards``) with several DataLoader
workers, resumable at any event.

    reader = ShardReader(open_shards("~/data/pt0"), seed=0, rank=0, world=1, workers=2, start=0)
    for pos, ev in reader: ...      # pos: events of this rank consumed so far (the resume point)

The order is a pure function of ``(seed, rank, world, workers)``:

- epoch ``e`` permutes the shards with ``default_rng([seed, e])`` (the same on every rank);
  rank ``r`` of ``world`` takes shards ``perm[r::world]``, so ranks read disjoint shards;
- DataLoader worker ``w`` of ``W`` takes its rank's shards ``[w::W]`` and reads each whole
  shard, in an order permuted by ``default_rng([seed, e, shard])``;
- the DataLoader (``batch_size=None``, in order) hands out item ``k`` from worker ``k % W``, so
  after ``pos`` items worker ``w`` has delivered ``ceil((pos - w) / W)`` of its own: a resumed
  reader skips exactly those, by the manifest's counts, without reading the skipped shards
  (its DataLoader worker ``d`` plays logical worker ``(d + pos) % W``, whose turn comes first).

Events are yielded as they are (the caller skips events too small to train on, counting them).
"""
from __future__ import annotations

import itertools
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from larsight.events import formats

from .shards import ShardError, ShardFolder


def delivered(pos: int, worker: int, n_workers: int) -> int:
    """Items worker ``worker`` of ``n_workers`` has delivered when a round-robin reader has
    handed out ``pos`` items."""
    return max(0, -(-(pos - worker) // n_workers))


class ShardStream(IterableDataset):
    """Endless stream of ``(shard index, event index in shard, Event)`` for one rank."""

    def __init__(self, folder: ShardFolder, seed: int = 0, rank: int = 0, world: int = 1,
                 workers: int = 0, start: int = 0, shuffle: bool = True):
        super().__init__()
        self.files, self.counts = [str(f) for f in folder.files], folder.counts
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)
        self.n_workers = max(1, int(workers))
        self.start, self.shuffle = int(start), bool(shuffle)
        per_rank = len(self.files) // self.world
        if per_rank < self.n_workers:
            raise ShardError(f"--data {folder.path}: {len(self.files)} shards cannot feed {self.world} "
                             f"process(es) x {self.n_workers} worker(s); write more, smaller shards "
                             f"(--shard-size) or use fewer --workers")

    def rank_shards(self, epoch: int) -> list[int]:
        order = np.arange(len(self.files))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        return [int(k) for k in order[self.rank::self.world]]

    def worker_shards(self, epoch: int, worker: int) -> list[int]:
        return self.rank_shards(epoch)[worker::self.n_workers]

    def _event_order(self, epoch: int, shard: int) -> np.ndarray:
        n = self.counts[shard]
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch, shard]).permutation(n)

    def _skip(self, worker: int, n_skip: int) -> tuple[int, int, int]:
        """(epoch, position in the worker's shard list, event offset) after ``n_skip`` events."""
        for epoch in itertools.count():
            for j, k in enumerate(self.worker_shards(epoch, worker)):
                if n_skip < self.counts[k]:
                    return epoch, j, n_skip
                n_skip -= self.counts[k]
            if not self.worker_shards(epoch, worker) or sum(self.counts) == 0:
                raise ShardError("shard stream: a worker has no events to read")
        raise AssertionError("unreachable")

    def __iter__(self) -> Iterator[tuple[int, int, object]]:
        info = get_worker_info()
        if info is not None and info.num_workers != self.n_workers:
            raise ShardError(f"shard stream planned for {self.n_workers} workers, run with {info.num_workers}")
        # a (re)started DataLoader takes its first item from its worker 0: that is the logical
        # worker whose turn it is at ``start``
        worker = ((info.id if info is not None else 0) + self.start) % self.n_workers
        epoch, j, offset = self._skip(worker, delivered(self.start, worker, self.n_workers))
        for e in itertools.count(epoch):
            shards = self.worker_shards(e, worker)
            for k in shards[j if e == epoch else 0:]:
                events = formats.read_range(self.files[k], 0, self.counts[k])
                order = self._event_order(e, k)
                for i in order[offset:]:
                    yield k, int(i), events[i]
                offset = 0


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class ShardReader:
    """Iterates ``(position, Event)`` of one rank through a DataLoader with ``workers`` processes
    (0: in this process); ``shards_read`` collects the shard files it has handed out."""

    def __init__(self, folder: ShardFolder, *, seed: int = 0, rank: int = 0, world: int = 1,
                 workers: int = 0, start: int = 0, shuffle: bool = True):
        self.folder = folder
        self.dataset = ShardStream(folder, seed=seed, rank=rank, world=world, workers=workers,
                                   start=start, shuffle=shuffle)
        self.workers, self.start = int(workers), int(start)
        self.shards_read: set[str] = set()
        self._loader: Optional[DataLoader] = None

    def __iter__(self) -> Iterator[tuple[int, object]]:
        kw = dict(num_workers=self.workers, worker_init_fn=_worker_init, prefetch_factor=4,
                  persistent_workers=False) if self.workers > 0 else {}
        # its own generator: starting the loader must not draw from the global torch RNG, which
        # the training step uses and ``--resume`` restores
        gen = torch.Generator().manual_seed(self.dataset.seed * 1_000_003 + self.start)
        self._loader = DataLoader(self.dataset, batch_size=None, collate_fn=_identity, generator=gen, **kw)
        pos = self.start
        names = [p.split("/")[-1] for p in self.dataset.files]
        for k, _i, ev in self._loader:
            pos += 1
            self.shards_read.add(names[k])
            yield pos, ev


def _identity(x):
    return x


def positioned_shards(reader: ShardReader, min_points: int) -> Iterator[tuple[int, object]]:
    """``(position after the event, event)`` for events with at least ``min_points`` points."""
    for pos, ev in reader:
        if len(ev) >= min_points:
            yield pos, ev


def check_voxel(folder: ShardFolder, voxel_size_cm: float) -> None:
    if abs(folder.voxel_size_cm - voxel_size_cm) > 1e-9:
        raise ShardError(f"--data {folder.path}: shards are on a {folder.voxel_size_cm} cm grid, the "
                         f"encoder uses {voxel_size_cm} cm (write shards with --voxel-size {voxel_size_cm})")


def data_record(folder: ShardFolder) -> dict:
    """What a manifest says about a shard folder's data."""
    m = folder.manifest
    return {"shards": str(folder.path), "fingerprint": folder.fingerprint(), "spec": m["spec"],
            "simulator_seed": m["simulator_seed"], "simulator_version": m.get("simulator_version"),
            "n_events": m.get("n_events"), "shards_command": m.get("command")}


def describe_data(data: Optional[str], spec, split: str) -> dict:
    """The data record of a run (shard folder, or the simulated / file spec), for manifests
    and resume checks."""
    if data:
        from .shards import open_shards

        folder = open_shards(data)
        check_voxel(folder, spec.voxel_size_cm)
        return data_record(folder)
    return {**spec.to_dict(), "split": split}


def training_stream(data: Optional[str], spec, split: str, *, seed: int, rank: int, world: int,
                    workers: int, start: int, min_points: int
                    ) -> tuple[Iterator[tuple[int, object]], Optional[ShardReader], dict]:
    """``(position, event)`` pairs of this rank from a shard folder (``data``) or, without one,
    from ``spec`` (simulated in the step, or files); with the shard reader and the data record."""
    from .data import event_stream
    from .shards import open_shards
    from .training import positioned

    if data:
        folder = open_shards(data)
        check_voxel(folder, spec.voxel_size_cm)
        reader = ShardReader(folder, seed=seed, rank=rank, world=world, workers=workers, start=start)
        return positioned_shards(reader, min_points), reader, data_record(folder)
    stream = positioned(event_stream(spec, split, start=start, rank=rank, world=world, min_points=0),
                        start, min_points=min_points)
    return stream, None, {**spec.to_dict(), "split": split}
