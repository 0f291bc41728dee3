"""events.dataset: sharded streaming over workers and ranks, tensors, ragged collate."""
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from larsight.events.dataset import (EventDataset, SimulatedDataset, collate_ragged, distributed_rank_world,
                            expand_paths, to_tensors)
from larsight.events.formats import count, write
from larsight.events.model import EVENT_CLASSES, Event, EventMeta, Interaction
from larsight.events.sim import simulate


# ---------------------------------------------------------------------------- a tiny file format
# Each .npz holds events of `n` points with energy tagging (file, index), so tests need nothing
# from events.formats. Module-level functions: DataLoader workers must be able to use them.
def _make_event(file_id: int, i: int, n_points: int, source: str) -> Event:
    rng = np.random.default_rng([file_id, i])
    pts = (rng.integers(0, 700, size=(n_points, 3)) * 0.3).astype(np.float32)
    return Event(points=pts, energy=np.full(n_points, 1.0, np.float32),
                 semantic=rng.integers(0, 5, n_points),
                 meta=EventMeta(source=source, index=i, event_id=1000 * file_id + i))


def npz_count(path) -> int:
    return int(np.load(path)["sizes"].shape[0])


def npz_read(path, index=None):
    with np.load(path) as f:
        sizes, file_id = f["sizes"], int(f["file_id"])
    if index is not None:
        return _make_event(file_id, index, int(sizes[index]), str(path))
    return (_make_event(file_id, i, int(s), str(path)) for i, s in enumerate(sizes))


def make_files(tmp_path: Path, sizes_per_file) -> list[Path]:
    paths = []
    for k, sizes in enumerate(sizes_per_file):
        p = tmp_path / f"part_{k:02d}.npz"
        np.savez(p, sizes=np.asarray(sizes), file_id=k)
        paths.append(p)
    return paths


SIZES = [[5, 6, 7], [3, 4, 5, 6, 7, 8], [2], [9, 9, 9, 9]]   # 14 events, uneven files


def keys(items) -> list[tuple[str, int]]:
    return [(Path(ev.meta.source).name, ev.meta.index) for ev in items]


def all_keys():
    return [(f"part_{k:02d}.npz", i) for k, s in enumerate(SIZES) for i in range(len(s))]


def ident(ev):
    return ev


def loader_keys(ds, num_workers):
    dl = DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=ident)
    return keys(dl)


# ---------------------------------------------------------------------------- sharding
def test_single_process_reads_every_event_in_order(tmp_path):
    make_files(tmp_path, SIZES)
    ds = EventDataset(str(tmp_path / "*.npz"), reader=npz_read, counter=npz_count)
    assert keys(ds) == all_keys()
    assert len(ds) == ds.num_events() == 14


def test_two_workers_see_every_event_exactly_once(tmp_path):
    make_files(tmp_path, SIZES)
    ds = EventDataset(str(tmp_path / "*.npz"), reader=npz_read, counter=npz_count)
    got = loader_keys(ds, num_workers=2)
    assert Counter(got) == Counter(all_keys())


def test_world_of_two_ranks_times_two_workers(tmp_path, monkeypatch):
    make_files(tmp_path, SIZES)
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ds = EventDataset(str(tmp_path / "*.npz"), reader=npz_read, counter=npz_count)
        assert distributed_rank_world() == (rank, 2)
        assert len(ds) == 7
        per_rank.append(loader_keys(ds, num_workers=2))
    assert not set(per_rank[0]) & set(per_rank[1])
    assert Counter(per_rank[0] + per_rank[1]) == Counter(all_keys())
    assert len(per_rank[0]) == len(per_rank[1]) == 7           # round-robin: balanced
    for rank in (0, 1):                                        # rank r owns global index g % 2 == r
        assert set(per_rank[rank]) == {k for g, k in enumerate(all_keys()) if g % 2 == rank}


def test_explicit_rank_uneven_world(tmp_path):
    make_files(tmp_path, SIZES)
    got = []
    for rank in range(3):
        ds = EventDataset(sorted(tmp_path.glob("*.npz")), reader=npz_read, counter=npz_count,
                          rank=rank, world_size=3)
        mine = keys(ds)
        assert len(mine) == len(ds)
        got += mine
    assert Counter(got) == Counter(all_keys())


def test_shuffle_files_per_epoch_same_events(tmp_path):
    make_files(tmp_path, [[3]] * 8)
    ds = EventDataset(str(tmp_path / "*.npz"), shuffle_files=True, seed=5, reader=npz_read, counter=npz_count)
    orders = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        orders.append([k[0] for k in keys(ds)])
    assert all(sorted(o) == sorted(orders[0]) for o in orders)
    assert len({tuple(o) for o in orders}) > 1
    ds.set_epoch(1)
    assert [k[0] for k in keys(ds)] == orders[1]                 # reproducible
    # every shard of a shuffled epoch still covers everything once
    got = []
    for rank in (0, 1):
        d = EventDataset(str(tmp_path / "*.npz"), shuffle_files=True, seed=5, reader=npz_read,
                         counter=npz_count, rank=rank, world_size=2)
        d.set_epoch(2)
        got += keys(d)
    assert Counter(got) == Counter((f"part_{k:02d}.npz", 0) for k in range(8))


def test_min_points_and_transform(tmp_path):
    make_files(tmp_path, SIZES)
    ds = EventDataset(str(tmp_path / "*.npz"), min_points=6, transform=lambda ev: len(ev),
                      reader=npz_read, counter=npz_count)
    assert sorted(ds) == sorted(s for f in SIZES for s in f if s >= 6)


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file matches"):
        EventDataset(str(tmp_path / "*.h5"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_paths([tmp_path / "nope.h5"])


def test_real_h5_files_with_two_workers(tmp_path):
    sizes = [[4, 5, 6], [7], [3, 8]]
    written = []
    for k, s in enumerate(sizes):
        p = tmp_path / f"f{k}.h5"
        write(p, [_make_event(k, i, n, "x") for i, n in enumerate(s)])
        assert count(p) == len(s)
        written.append(p)
    expected = Counter((f"f{k}.h5", i) for k, s in enumerate(sizes) for i in range(len(s)))
    ds = EventDataset(str(tmp_path / "*.h5"))
    assert Counter(loader_keys(ds, num_workers=2)) == expected
    assert Counter(keys(ds)) == expected


# ---------------------------------------------------------------------------- simulator
def test_simulated_dataset_shards_by_index(monkeypatch):
    n, seed = 5, 3
    reference = [ev.total_energy_mev for ev in simulate("mpr", n, seed=seed)]
    got = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ds = SimulatedDataset("mpr", n=n, seed=seed)
        assert len(ds) == (3 if rank == 0 else 2)
        for ev in ds:
            i = ev.meta.event_id
            assert i % 2 == rank and i not in got
            got[i] = ev.total_energy_mev
    assert sorted(got) == list(range(n))
    assert [got[i] for i in range(n)] == pytest.approx(reference)


def test_simulated_dataset_two_workers():
    ds = SimulatedDataset("mpr", n=4, seed=1, transform=to_tensors)
    dl = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_ragged)
    batches = list(dl)
    assert sum(len(b["counts"]) for b in batches) == 4
    with pytest.raises(ValueError, match="mode"):
        SimulatedDataset("beam", n=1)


# ---------------------------------------------------------------------------- tensors and collate
def test_to_tensors_types_and_missing_labels():
    ev = _make_event(0, 0, 10, "s")
    ev = ev.copy(energy=np.linspace(0, 10, 10, dtype=np.float32))
    t = to_tensors(ev)
    assert t["coords"].dtype == torch.float32 and t["coords"].shape == (10, 3)
    assert t["voxels"].dtype == torch.int64
    torch.testing.assert_close(t["voxels"].float() * 0.3, t["coords"], atol=1e-4, rtol=0)
    assert t["features"].shape == (10, 1)
    torch.testing.assert_close(t["features"][:, 0], torch.log1p(torch.linspace(0, 10, 10) / 0.1))
    assert t["semantic"].dtype == torch.int64 and (t["semantic"] >= 0).all()
    for name in ("particle", "interaction", "pid", "fragment"):
        assert t[name].dtype == torch.int64 and (t[name] == -1).all()
    assert t["event_class"].item() == -1
    assert torch.isnan(t["vertex"]).all()


def test_collate_ragged_offsets_and_batch_index():
    evs = [_make_event(0, i, n, "s") for i, n in enumerate([3, 7, 1, 5])]
    evs[1] = evs[1].copy(interactions=[Interaction(id=0, vertex_cm=(1.0, 2.0, 3.0), event_class="nc")])
    b = collate_ragged([to_tensors(evs[0]), evs[1], evs[2], to_tensors(evs[3])])
    assert b["offset"].tolist() == [3, 10, 11, 16]
    assert b["counts"].tolist() == [3, 7, 1, 5]
    assert b["coords"].shape == (16, 3) and b["semantic"].shape == (16,)
    assert b["batch"].tolist() == [0] * 3 + [1] * 7 + [2] + [3] * 5
    starts = torch.cat([torch.zeros(1, dtype=torch.long), b["offset"][:-1]])
    for k, ev in enumerate(evs):
        rows = b["batch"] == k
        np.testing.assert_array_equal(b["coords"][rows].numpy(), ev.points)
        np.testing.assert_array_equal(b["coords"][starts[k]:b["offset"][k]].numpy(), ev.points)
    assert b["event_class"].tolist() == [-1, EVENT_CLASSES.index("nc"), -1, -1]
    assert b["vertex"].shape == (4, 3)
    assert b["vertex"][1].tolist() == [1.0, 2.0, 3.0]
    assert all(math.isnan(v) for v in b["vertex"][0].tolist())
    assert b["index"] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        collate_ragged([])


def test_dataloader_with_collate_two_workers(tmp_path):
    make_files(tmp_path, SIZES)
    ds = EventDataset(str(tmp_path / "*.npz"), transform=to_tensors, reader=npz_read, counter=npz_count)
    dl = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_ragged)
    total_points, total_events = 0, 0
    for b in dl:
        assert b["offset"][-1].item() == b["coords"].shape[0] == b["batch"].shape[0]
        assert b["batch"].max().item() == len(b["counts"]) - 1
        total_points += b["coords"].shape[0]
        total_events += len(b["counts"])
    assert total_events == 14
    assert total_points == sum(sum(s) for s in SIZES)
