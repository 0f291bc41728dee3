"""events.formats: read/write/count/convert for PILArNet-M HDF5 and ROOT, atomic and lazy."""
import gc
import os
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest

from larsight import events
from larsight.events import (
    PILARNET_VOLUME, Event, EventError, EventMeta, Interaction, Particle, Volume,
)
from larsight.events.formats import atomic_open, atomic_path, convert, count, format_of, read, write

SMALL = Volume(voxel_size_cm=0.5, shape=(64, 32, 48), origin_cm=(-10.0, 5.0, -3.25))


def make_event(seed: int, n: int = 40, volume: Volume = PILARNET_VOLUME, *, off_grid=False,
               minimal=False) -> Event:
    """A hand-built event exercising every field (or only points+energy when ``minimal``)."""
    rng = np.random.default_rng(seed)
    vox = rng.integers(0, volume.shape, size=(n, 3))
    pts = vox * volume.voxel_size_cm + volume.lower_cm
    if off_grid:  # arbitrary cm positions, not voxel corners
        pts = pts + rng.uniform(0.01, 0.9, size=(n, 3)) * volume.voxel_size_cm
    pts = pts.astype(np.float32)
    energy = rng.gamma(1.5, 2.0, n).astype(np.float32)
    meta = EventMeta(volume=volume, event_id=1000 + seed, generator="hand-made", seed=seed)
    if minimal:
        return Event(points=pts, energy=energy, meta=meta)
    particle = rng.integers(-1, 4, n)
    fragment = np.where(particle >= 0, particle * 10 + rng.integers(0, 2, n), -1)
    interaction = np.where(particle >= 0, rng.integers(0, 2, n), -1)
    semantic = np.where(particle >= 0, rng.integers(0, 4, n), 4)
    pid = np.where(particle >= 0, particle % 5, -1)
    particles = [
        Particle(id=k, pdg=[13, 11, 2212, 211][k], pid=k % 5, parent=-1 if k < 2 else 0,
                 process=["primary", "decay", "hadronic", "a-process-not-in-the-table"][k],
                 interaction=k % 2, semantic=k % 4,
                 start_cm=tuple(rng.uniform(0, 100, 3)), end_cm=tuple(rng.uniform(0, 100, 3)),
                 momentum_mev=tuple(rng.normal(0, 300, 3)), kinetic_energy_mev=float(rng.uniform(1, 900)),
                 deposited_energy_mev=float(energy[particle == k].sum()), n_voxels=int((particle == k).sum()))
        for k in range(4)]
    interactions = [
        Interaction(id=0, vertex_cm=tuple(rng.uniform(0, 100, 3)), nu_pdg=14, current="CC",
                    channel="DIS", nu_energy_mev=float(rng.uniform(500, 5000)), event_class="numu_cc"),
        Interaction(id=1, vertex_cm=(1.0, 2.0, 3.0)),
    ]
    return Event(points=pts, energy=energy, semantic=semantic, particle=particle, fragment=fragment,
                 interaction=interaction, pid=pid,
                 n_electrons=rng.uniform(0, 5e4, n).astype(np.float32),
                 time_us=rng.uniform(0, 500, n).astype(np.float32),
                 dx_cm=rng.uniform(0.05, 0.5, n).astype(np.float32),
                 particles=particles, interactions=interactions, meta=meta)


def sample_events():
    return [
        make_event(1),
        make_event(2, n=1),
        make_event(3, n=0),
        make_event(4, volume=SMALL, off_grid=True),
        make_event(5, minimal=True),
        make_event(6, n=300, volume=SMALL),
    ]


def same(a: Event, b: Event) -> bool:
    """Arrays and tables exactly equal, and meta equal apart from where it was read from."""
    return a.equals(b) and a.meta.model_dump(exclude={"source", "index"}) == \
        b.meta.model_dump(exclude={"source", "index"})


EXTS = [".h5", ".root"]


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("ext", EXTS)
def test_roundtrip_is_lossless(tmp_path, ext):
    evs = sample_events()
    path = tmp_path / f"ev{ext}"
    assert write(path, evs) == len(evs)
    back = list(read(path))
    assert len(back) == len(evs)
    for i, (a, b) in enumerate(zip(evs, back)):
        assert same(a, b), f"event {i} changed"
        assert b.meta.source == str(path) and b.meta.index == i
    # what is absent stays absent
    assert back[4].semantic is None and back[4].particles == [] and back[4].n_electrons is None
    # off-grid float32 points survive bit for bit
    assert np.array_equal(back[3].points.view(np.uint32), evs[3].points.view(np.uint32))


def test_h5_v1_layout_roundtrip(tmp_path):
    evs = sample_events()
    write(tmp_path / "v1.h5", evs, layout="v1")
    with h5py.File(tmp_path / "v1.h5") as f:
        assert "cluster_extra" not in f  # what v1 readers expect
    assert all(same(a, b) for a, b in zip(evs, read(tmp_path / "v1.h5")))


def test_h5_root_h5_roundtrip(tmp_path):
    evs = sample_events()
    write(tmp_path / "a.h5", evs)
    assert convert(tmp_path / "a.h5", tmp_path / "b.root") == len(evs)
    assert convert(tmp_path / "b.root", tmp_path / "c.h5") == len(evs)
    for a, b, c in zip(evs, read(tmp_path / "b.root"), read(tmp_path / "c.h5")):
        assert same(a, b) and same(a, c)
        for name, arr in a.point_arrays().items():
            assert np.array_equal(arr, getattr(c, name)) and arr.dtype == getattr(c, name).dtype


def test_simulated_events_roundtrip(tmp_path):
    sim = pytest.importorskip("larsight.events.sim")
    evs = [sim.neutrino(seed=3, index=i) for i in range(3)] + [sim.particle_gun(13, 300.0, seed=2)]
    for ext in EXTS:
        write(tmp_path / f"s{ext}", iter(evs))
        assert all(same(a, b) for a, b in zip(evs, read(tmp_path / f"s{ext}")))


@pytest.mark.parametrize("ext", EXTS)
def test_write_single_event_and_empty_file(tmp_path, ext):
    ev = make_event(9)
    assert write(tmp_path / f"one{ext}", ev) == 1
    assert same(read(tmp_path / f"one{ext}", index=0), ev)
    assert write(tmp_path / f"none{ext}", []) == 0
    assert count(tmp_path / f"none{ext}") == 0
    assert list(read(tmp_path / f"none{ext}")) == []
    with pytest.raises(EventError, match="holds no events"):
        read(tmp_path / f"none{ext}", index=0)


def test_events_namespace_exports():
    assert events.read is read and events.write is write


# ---------------------------------------------------------------- indexing and laziness
@pytest.mark.parametrize("ext", EXTS)
def test_index_and_count(tmp_path, ext):
    evs = [make_event(s) for s in range(3)]
    path = tmp_path / f"f{ext}"
    write(path, evs)
    assert count(path) == 3 and count(str(path)) == 3
    for i in (0, 2, -1, -3):
        ev = read(path, index=i)
        assert same(ev, evs[i]) and ev.meta.index == i % 3 and ev.meta.source == str(path)
    assert read(path, index=np.int64(1)).meta.index == 1
    for bad in (3, -4, 100):
        with pytest.raises(EventError, match=rf"{path.name}.*index {bad}.*holds 3 events"):
            read(path, index=bad)
    with pytest.raises(TypeError):
        read(path, index=1.0)


@pytest.mark.parametrize("ext", EXTS)
def test_reading_one_event_decodes_only_that_one(tmp_path, ext, monkeypatch):
    import larsight.events.formats.pilarnet as pl
    import larsight.events.formats.root as rt

    mod = pl if ext == ".h5" else rt
    path = tmp_path / f"f{ext}"
    write(path, [make_event(s) for s in range(5)])
    calls = []
    original = mod._decode
    monkeypatch.setattr(mod, "_decode", lambda *a, **k: calls.append(1) or original(*a, **k))
    read(path, index=-1)
    assert len(calls) == 1
    calls.clear()
    it = read(path)
    assert calls == []  # nothing decoded before the first next()
    next(it)
    assert len(calls) == 1
    it.close()


def test_reading_last_event_ignores_a_broken_first_event(tmp_path):
    path = tmp_path / "f.h5"
    evs = [make_event(s) for s in range(3)]
    write(path, evs)
    with h5py.File(path, "r+") as f:  # break event 0 only: its clusters no longer cover its points
        row = f["cluster"][0].copy()
        row[0] += 7
        f["cluster"][0] = row
    assert same(read(path, index=-1), evs[-1])
    with pytest.raises(EventError, match="event 0: dataset 'cluster' fails its checksum"):
        read(path, index=0)
    with h5py.File(path, "r+") as f:  # as a foreign file without larsight's checksums
        del f["larsight_crc32"]
    assert same(read(path, index=-1), evs[-1])
    with pytest.raises(EventError, match="event 0: mismatched point/cluster counts"):
        read(path, index=0)
    with pytest.raises(EventError, match="mismatched"):
        list(read(path))


def _open_fds(path: Path) -> int:
    target = os.path.realpath(path)
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")) == target
        except OSError:
            pass
    with open("/proc/self/maps") as fh:  # uproot memory-maps files instead of keeping an fd
        n += sum(line.rstrip().endswith(target) for line in fh)
    return n


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("ext", EXTS)
def test_file_open_only_while_iterating(tmp_path, ext):
    path = tmp_path / f"f{ext}"
    write(path, [make_event(s) for s in range(4)])
    it = read(path)
    assert _open_fds(path) == 0  # checked and closed again; iteration has not started
    next(it)
    assert _open_fds(path) >= 1
    rest = list(it)
    assert len(rest) == 3 and _open_fds(path) == 0
    it2 = read(path)
    next(it2)
    it2.close()  # abandoning the iterator closes the file
    assert _open_fds(path) == 0


@pytest.mark.parametrize("ext", EXTS)
def test_write_streams_a_generator(tmp_path, ext):
    """Events from a generator are written in blocks, not accumulated: by the time the generator
    is exhausted most of the early events' arrays have been released."""
    alive = []
    n = 700

    def gen():
        for i in range(n):
            ev = make_event(i, n=3, minimal=True)
            alive.append(weakref.ref(ev.points))
            yield ev
        gc.collect()
        still = sum(r() is not None for r in alive)
        assert still < n // 2, f"{still} of {n} events still in memory: not streaming"

    path = tmp_path / f"g{ext}"
    assert write(path, gen()) == n
    assert count(path) == n
    got = 0
    for i, ev in enumerate(read(path)):
        assert ev.meta.index == i and len(ev) == 3
        got += 1
    assert got == n
    assert same(read(path, index=-1), make_event(n - 1, n=3, minimal=True))


# ---------------------------------------------------------------- atomic writing
def _snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.mark.parametrize("ext", EXTS)
def test_exception_mid_write_leaves_existing_file_untouched(tmp_path, ext):
    path = tmp_path / f"keep{ext}"
    write(path, [make_event(1), make_event(2)])
    before = _snapshot(tmp_path)

    def gen():
        for s in range(150):  # beyond one write block, so data did reach the temporary file
            yield make_event(s, n=5)
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError, match="generator failed"):
        write(path, gen())
    assert _snapshot(tmp_path) == before  # byte-identical, and no temporary file left
    assert count(path) == 2


@pytest.mark.parametrize("ext", EXTS)
def test_bad_item_aborts_the_write(tmp_path, ext):
    path = tmp_path / f"keep{ext}"
    write(path, [make_event(1)])
    before = _snapshot(tmp_path)
    with pytest.raises(EventError, match=r"item 1 .*dict.*not an events\.Event"):
        write(path, [make_event(2), {"points": []}])
    assert _snapshot(tmp_path) == before
    broken = make_event(3)
    broken.energy[0] = np.nan  # mutated after validation
    with pytest.raises(EventError, match=r"event 0 to write is invalid.*Event\.energy"):
        write(path, [broken])
    assert _snapshot(tmp_path) == before
    new = tmp_path / f"new{ext}"
    with pytest.raises(EventError):
        write(new, [make_event(4), 42])
    assert not new.exists() and _snapshot(tmp_path) == before


def test_atomic_path_success_and_failure(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"first")
        assert not target.exists()
    assert target.read_bytes() == b"first"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would, not mkstemp's 0600
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"second")
            raise KeyError("boom")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_open_text_and_missing_directory(tmp_path):
    with atomic_open(tmp_path / "r.json", "w") as fh:
        fh.write('{"a": 1}')
    assert (tmp_path / "r.json").read_text() == '{"a": 1}'
    with pytest.raises(FileExistsError):
        with atomic_open(tmp_path / "r.json", "x") as fh:
            fh.write("no")
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "r.json", "r"):
            pass
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "x.h5"):
            pass
    with pytest.raises(FileNotFoundError):
        write(tmp_path / "nope" / "x.h5", [make_event(1)])


# ---------------------------------------------------------------- clear errors
@pytest.mark.parametrize("ext", EXTS)
def test_missing_file(tmp_path, ext):
    path = tmp_path / f"absent{ext}"
    for call in (lambda: read(path), lambda: read(path, index=0), lambda: count(path)):
        with pytest.raises(FileNotFoundError, match="absent"):
            call()


def test_unknown_extension(tmp_path):
    for call in (lambda: read(tmp_path / "x.txt"), lambda: write(tmp_path / "x.csv", []),
                 lambda: count(tmp_path / "x"), lambda: format_of("x.npz")):
        with pytest.raises(EventError, match=r"unknown event file extension.*\.h5.*\.root"):
            call()
    assert format_of("A.HDF5") == "pilarnet" and format_of("b.root") == "root"
    with pytest.raises(ValueError, match="layout"):
        write(tmp_path / "x.root", [], layout="v1")
    with pytest.raises(ValueError, match="layout"):
        write(tmp_path / "x.h5", [], layout="v9")


@pytest.mark.parametrize("ext", EXTS)
def test_truncated_file(tmp_path, ext):
    path = tmp_path / f"t{ext}"
    write(path, [make_event(s, n=200) for s in range(20)])
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 300, 100):
        path.write_bytes(data[:keep])
        with pytest.raises(EventError, match=path.name):
            for _ in read(path):
                pass


@pytest.mark.parametrize("ext", EXTS)
def test_random_bytes(tmp_path, ext):
    path = tmp_path / f"noise{ext}"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    for call in (lambda: read(path), lambda: read(path, index=0), lambda: count(path)):
        with pytest.raises(EventError, match=rf"{path.name}: not a readable"):
            call()
    empty = tmp_path / f"empty{ext}"
    empty.write_bytes(b"")
    with pytest.raises(EventError, match="empty"):
        count(empty)


def test_foreign_hdf5_without_point(tmp_path):
    path = tmp_path / "images.h5"
    with h5py.File(path, "w") as f:
        f["image"] = np.zeros((2, 4, 4))
        f["label"] = np.zeros(2)
    with pytest.raises(EventError, match=r"images\.h5: not a PILArNet-M file: it has no 'point' dataset.*image, label"):
        read(path)


def _raw(path, points, clusters, extra=None):
    vf, vi = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.int32)
    with h5py.File(path, "w") as f:
        f.create_dataset("point", (len(points),), dtype=vf)
        for i, p in enumerate(points):
            f["point"][i] = np.asarray(p, np.float32).ravel()
        f.create_dataset("cluster", (len(clusters),), dtype=vi)
        for i, c in enumerate(clusters):
            f["cluster"][i] = np.asarray(c, np.int32).ravel()
        if extra is not None:
            f.create_dataset("cluster_extra", (len(extra),), dtype=vf)
            for i, e in enumerate(extra):
                f["cluster_extra"][i] = np.asarray(e, np.float32).ravel()


def test_inconsistent_pilarnet_files(tmp_path):
    pts = np.zeros((3, 8))
    pts[:, 3] = 1.0
    # clusters cover 2 of 3 points
    _raw(tmp_path / "a.h5", [pts], [[[2, 0, 0, 0, 1]]])
    with pytest.raises(EventError, match=r"a\.h5: event 0: mismatched point/cluster counts: the clusters cover 2 points but the event has 3"):
        read(tmp_path / "a.h5", index=0)
    # 2 events of points but 1 row of clusters
    _raw(tmp_path / "b.h5", [pts, pts], [[[3, 0, 0, 0, 1]]])
    with pytest.raises(EventError, match=r"b\.h5: dataset 'cluster' has 1 rows but 'point' has 2"):
        read(tmp_path / "b.h5")
    # a point row that is not (N, 8)
    _raw(tmp_path / "c.h5", [np.zeros(10)], [[]])
    with pytest.raises(EventError, match="not a multiple of 8"):
        read(tmp_path / "c.h5", index=0)
    # v1 cluster row that is not (C, 5)
    _raw(tmp_path / "d.h5", [pts], [[3, 0, 0, 0, 1, 2, 9]])
    with pytest.raises(EventError, match=r"not a multiple of 5 \(v1 layout"):
        read(tmp_path / "d.h5", index=0)
    # negative counts
    _raw(tmp_path / "e.h5", [pts], [[[4, 0, 0, 0, 1], [-1, 0, 0, 0, 1]]])
    with pytest.raises(EventError, match="negative number of points"):
        read(tmp_path / "e.h5", index=0)
    # cluster_extra of the wrong width
    _raw(tmp_path / "f.h5", [pts], [[[3, 0, 0, 0, 1, 2]]], extra=[[0, 1, 2]])
    with pytest.raises(EventError, match="cluster_extra"):
        read(tmp_path / "f.h5", index=0)
    # coordinates outside the 768^3 grid
    far = pts.copy()
    far[0, 0] = 900
    _raw(tmp_path / "g.h5", [far], [[[3, 0, 0, 0, 1]]])
    with pytest.raises(EventError, match=r"g\.h5: event 0: Event\.points: point 0"):
        read(tmp_path / "g.h5", index=0)
    # 'point' that is not one variable-length row per event
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f["point"] = np.zeros((4, 8), np.float32)
    with pytest.raises(EventError, match="'point' must be one row per event"):
        count(tmp_path / "h.h5")


def test_root_file_without_the_tree(tmp_path):
    import uproot

    path = tmp_path / "other.root"
    with uproot.recreate(path) as f:
        f.mktree("hits", {"x": np.float64}).extend({"x": np.arange(3.0)})
    with pytest.raises(EventError, match=r"other\.root: no TTree 'events'.*hits"):
        read(path)
    path2 = tmp_path / "partial.root"
    with uproot.recreate(path2) as f:
        f.mktree("events", {"x_cm": np.float64}).extend({"x_cm": np.arange(3.0)})
    with pytest.raises(EventError, match="lacks the branches y_cm, z_cm, energy_mev"):
        count(path2)
    path3 = tmp_path / "rntuple.root"
    with uproot.recreate(path3) as f:
        f["events"] = {"x_cm": np.arange(3.0)}  # uproot 5.7 writes an RNTuple here
    with uproot.open(path3) as f:
        kind = f.classnames().get("events;1")
    with pytest.raises(EventError, match="not a TTree" if kind != "TTree" else "lacks the branches"):
        read(path3)


def test_convert_checks_output_extension_first(tmp_path):
    write(tmp_path / "a.h5", [make_event(1)])
    with pytest.raises(EventError, match="unknown event file extension"):
        convert(tmp_path / "a.h5", tmp_path / "a.parquet")
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "missing.h5", tmp_path / "a.root")
    assert not (tmp_path / "a.root").exists()
    assert convert(tmp_path / "a.h5", tmp_path / "a.root", progress=True) == 1


def test_damaged_larsight_extras(tmp_path):
    path = tmp_path / "x.h5"
    write(path, [make_event(1), make_event(2)])
    with h5py.File(path, "r+") as f:
        f["larsight_particles"][0] = "{not json"
        f["larsight_meta"][1] = "[1, 2]"
    with pytest.raises(EventError, match=r"x\.h5: event 0: dataset 'larsight_particles' fails its checksum"):
        read(path, index=0)
    with h5py.File(path, "r+") as f:  # the decoder's own checks, as for a foreign file
        del f["larsight_crc32"]
    with pytest.raises(EventError, match=r"x\.h5: event 0: larsight_particles is not valid JSON"):
        read(path, index=0)
    with pytest.raises(EventError, match=r"x\.h5: event 1: larsight_meta is a list, not a JSON object"):
        read(path, index=1)
    with h5py.File(path, "r+") as f:
        f["larsight_order"][0] = np.zeros(len(make_event(1)), np.int32)
    with pytest.raises(EventError, match="'larsight_order' is not a permutation"):
        read(path, index=0)
