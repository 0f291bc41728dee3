"""Files written by others (issue 18): the bounded reader, declared-size checks, checksums,
non-finite and out-of-range truth, and temporary files left by a killed writer."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from larsight import events
from larsight.events import Event, EventError, EventFileError, Interaction, Particle
from larsight.events.formats import count, count_untrusted, read, read_untrusted, write
from larsight.events.formats.untrusted import ReaderPool

_REF = np.dtype([("len", "<u4"), ("addr", "<u8"), ("idx", "<u4")])


@pytest.fixture(scope="module")
def sim5(tmp_path_factory):
    """`larsight simulate --mode nu --n 5 --seed 3`, as HDF5 and ROOT."""
    d = tmp_path_factory.mktemp("sim5")
    evs = list(events.sim.simulate("nu", 5, seed=3))
    write(d / "nu5.h5", evs)
    write(d / "nu5.root", evs)
    return d, evs


def _heap_address(path, dataset: str) -> int:
    """File offset of the HDF5 global heap collection that holds ``dataset``'s first row (read
    from the raw vlen reference in the dataset's first chunk)."""
    with h5py.File(path, "r") as f:
        _, raw = f[dataset].id.read_direct_chunk((0,))
    return int(np.frombuffer(raw[:_REF.itemsize], dtype=_REF)["addr"][0])


def _zero(path, offset: int, n: int = 4096) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\0" * n)


def test_zeroed_heap_block_ends_in_a_bounded_error_not_a_hang(sim5, tmp_path):
    # 4 KB zeroed 8 KB into the heap of 'larsight_order' makes libhdf5 spin forever inside
    # Dataset.__getitem__ (the hang); the bounded reader kills it and says so
    src, _ = sim5
    bad = tmp_path / "corrupt.h5"
    shutil.copy(src / "nu5.h5", bad)
    _zero(bad, _heap_address(bad, "larsight_order") + 8192)
    assert count_untrusted(bad) == 5  # the structure is intact, as in the issue
    t0 = time.monotonic()
    with pytest.raises(EventFileError) as err:
        read_untrusted(bad, 0, timeout_s=3)
    assert time.monotonic() - t0 < 60
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert err.value.kind in ("timeout", "invalid")
    # the pool restarts its worker after a kill: the next file reads normally
    assert len(read_untrusted(src / "nu5.h5", 4)) == 1


def test_timeout_kills_the_worker_and_names_the_file(sim5):
    src, _ = sim5
    pool = ReaderPool(max_memory_mb=512)
    try:
        with pytest.raises(EventFileError, match=r"nu5\.h5: did not finish reading within 0\.001 s") as err:
            pool.call("read", src / "nu5.h5", None, timeout_s=0.001)
        assert err.value.kind == "timeout"
        assert len(pool.call("read", src / "nu5.h5", 0, timeout_s=30)) == 1
        assert pool.started == 2
    finally:
        pool.close()


def test_memory_cap_turns_a_huge_allocation_into_a_clear_error(sim5, tmp_path):
    # a forged vlen length: the first 'point' row claims 2**30 floats (4 GB) in a small file
    src, _ = sim5
    bad = tmp_path / "huge_row.h5"
    shutil.copy(src / "nu5.h5", bad)
    with h5py.File(bad, "r") as f:
        chunk = f["point"].id.get_chunk_info(0).byte_offset
    with open(bad, "r+b") as fh:
        fh.seek(chunk)
        fh.write(np.uint32(2 ** 30).tobytes())
    with pytest.raises(EventFileError) as err:
        read_untrusted(bad, 0, max_memory_mb=256, timeout_s=30)
    assert str(bad) in str(err.value)
    assert err.value.kind in ("memory", "invalid", "crash")


def test_untrusted_reader_gives_the_same_events(sim5):
    src, evs = sim5
    for name in ("nu5.h5", "nu5.root"):
        got = read_untrusted(src / name)
        assert len(got) == 5 and all(a.equals(b) for a, b in zip(got, evs))
        assert read_untrusted(src / name, -1)[0].equals(evs[-1])
        assert list(events.formats.iter_untrusted(src / name, block=2))[3].equals(evs[3])
    with pytest.raises(FileNotFoundError):
        read_untrusted(src / "missing.h5")
    with pytest.raises(TypeError):
        read_untrusted(src / "nu5.h5", "0")
    with pytest.raises(EventFileError, match="index 7 is out of range"):
        read_untrusted(src / "nu5.h5", 7)


def test_billion_rows_in_a_small_file_are_refused_fast(sim5, tmp_path):
    src, _ = sim5
    bad = tmp_path / "billion.h5"
    shutil.copy(src / "nu5.h5", bad)
    with h5py.File(bad, "r+") as f:
        for name in list(f):
            ds = f[name]
            ds.resize((10 ** 9,) + ds.shape[1:])
    msg = r"billion\.h5: dataset '\w+' declares 1000000000 rows but the file holds \d+ KB"
    with pytest.raises(EventError, match=msg):
        count(bad)
    with pytest.raises(EventFileError, match=msg):
        count_untrusted(bad)


def test_root_entries_beyond_the_baskets_are_refused(sim5, tmp_path):
    # fEntries of the TTree is stored uncompressed: forge it from 5 to 10**9
    src, _ = sim5
    data = (src / "nu5.root").read_bytes()
    bad = tmp_path / "entries.root"
    needle = np.array([5], ">i8").tobytes()
    forged = np.array([10 ** 9], ">i8").tobytes()
    hits = [i for i in range(len(data) - 8) if data[i:i + 8] == needle]
    for i in hits:
        candidate = data[:i] + forged + data[i + 8:]
        bad.write_bytes(candidate)
        try:
            n = count(bad)
        except EventError as exc:
            if "declares 1000000000 entries" in str(exc):
                break
            continue
        assert n != 10 ** 9, "a TTree claiming 10**9 entries in a small file was accepted"
    else:
        pytest.skip("no uncompressed fEntries found in this uproot version's output")
    with pytest.raises(EventFileError, match=r"entries\.root: TTree 'events' declares 1000000000 entries"):
        count_untrusted(bad)


def test_checksums_catch_changed_data(sim5, tmp_path):
    src, evs = sim5
    bad = tmp_path / "flipped.h5"
    shutil.copy(src / "nu5.h5", bad)
    offset = _heap_address(bad, "point") + 5000  # inside event 0's point values
    with open(bad, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0x10]))
    with pytest.raises(EventFileError, match=r"flipped\.h5: event 0: dataset 'point' fails its checksum"):
        read(bad, 0)
    assert read(bad, 1).equals(evs[1])
    with h5py.File(src / "nu5.h5", "r") as f:
        assert f["larsight_crc32"].fletcher32
        chunk = f["larsight_crc32"].id.get_chunk_info(0).byte_offset
    bad2 = tmp_path / "crc.h5"
    shutil.copy(src / "nu5.h5", bad2)
    with open(bad2, "r+b") as fh:
        fh.seek(chunk + 3)
        byte = fh.read(1)[0]
        fh.seek(chunk + 3)
        fh.write(bytes([byte ^ 0x01]))
    with pytest.raises(EventFileError, match=r"crc\.h5: dataset 'larsight_crc32' fails its HDF5 checksum"):
        read(bad2, 0)


# ------------------------------------------------------------------ the model
def _event(**changes):
    kw = dict(points=np.ones((2, 3), np.float32), energy=np.ones(2, np.float32))
    kw.update(changes)
    return Event(**kw)


@pytest.mark.parametrize("changes, field", [
    (dict(particles=[dict(id=0, start_cm=(float("nan"), 0, 0))]), r"particles\[0\]: start_cm\.0"),
    (dict(particles=[dict(id=0, kinetic_energy_mev=float("inf"))]), "kinetic_energy_mev"),
    (dict(particles=[dict(id=0, deposited_energy_mev=float("nan"))]), "deposited_energy_mev"),
    (dict(particles=[dict(id=0, momentum_mev=(0, float("-inf"), 0))]), r"momentum_mev\.1"),
    (dict(particles=[dict(id=0, kinetic_energy_mev=3e38)]), "kinetic_energy_mev"),
    (dict(interactions=[dict(id=0, vertex_cm=(0, 0, float("nan")))]), r"interactions\[0\]: vertex_cm\.2"),
    (dict(interactions=[dict(id=0, nu_energy_mev=float("inf"))]), "nu_energy_mev"),
    (dict(semantic=[257, 1]), r"Event\.semantic: labels must be in -1\.\.4, found 257"),
    (dict(semantic=np.array([257, 1], np.int64)), r"Event\.semantic"),
    (dict(particle=[2 ** 40, 0]), r"Event\.particle: .*found 1099511627776"),
    (dict(pid=[-3, 0]), r"Event\.pid"),
    (dict(fragment=[0, -2 ** 33]), r"Event\.fragment"),
    (dict(dx_cm=[-0.1, 0.3]), r"Event\.dx_cm: negative"),
    (dict(n_electrons=[5.0, -1.0]), r"Event\.n_electrons: negative"),
    (dict(energy=[3e38, 1.0]), r"Event\.energy: .* beyond"),
    (dict(energy=[1e39, 1.0]), r"Event\.energy: non-finite"),
    (dict(meta=dict(volume=dict(voxel_size_cm=1e30))), r"Event\.meta: volume\.voxel_size_cm"),
    (dict(meta=dict(volume=dict(shape=(10 ** 4, 10 ** 4, 10 ** 4)))), r"Event\.meta: volume\.shape: .*1e\+12 voxels"),
    (dict(meta=dict(volume=dict(origin_cm=(0, float("inf"), 0)))), r"Event\.meta: volume\.origin_cm\.1"),
])
def test_model_refuses_non_finite_and_out_of_range_values(changes, field):
    with pytest.raises(EventError, match=field) as err:
        _event(**changes)
    assert "\n" not in str(err.value)


def test_non_finite_truth_in_a_file_is_refused_and_inspect_does_not_crash(tmp_path):
    ev = _event(interactions=[Interaction(id=0, vertex_cm=(1.0, 1.0, 1.0))],
                particles=[Particle(id=0)])
    path = tmp_path / "nan.h5"
    write(path, [ev])
    with h5py.File(path, "r+") as f:  # what a foreign tool could write
        f["larsight_interactions"][0] = '[{"id": 0, "vertex_cm": [NaN, 0, 0]}]'
        del f["larsight_crc32"]
    with pytest.raises(EventError, match=r"nan\.h5: event 0: bad interaction table: vertex_cm\.0"):
        read(path, 0)
    with pytest.raises(EventError, match=r"nan\.h5: event 0"):
        events.inspect.inspect(path, progress=False, plots=True)
    # the display keeps finite axis limits whatever overlay it is given
    from larsight.events.display import _cube_ranges

    ranges = _cube_ranges(ev.points, [np.array([[np.nan, 0, 0], [np.inf, 1, 1]])])
    assert np.all(np.isfinite(ranges))


# ------------------------------------------------------------------ killed writers
def test_sigkilled_writer_leaves_a_temporary_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "out.h5"
    write(target, [_event()])
    before = target.read_bytes()
    child = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from larsight.events import Event
        from larsight.events.formats import write

        def slow():
            for i in range(10 ** 6):
                if i == 70:  # past the first flush: the temporary file holds data
                    print("writing", flush=True)
                    time.sleep(600)
                yield Event(points=np.ones((500, 3), np.float32), energy=np.ones(500, np.float32))

        write({str(target)!r}, slow())
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.h5.tmp-")]
        assert len(leftovers) == 1 and f"tmp-{proc.pid}-" in leftovers[0].name
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert leftovers[0].exists() and leftovers[0].stat().st_size > 0
    assert target.read_bytes() == before  # the killed write left the old file intact
    # a temporary file of a live writer (this process) is left alone
    mine = tmp_path / f".out.h5.tmp-{os.getpid()}-live.larsight-tmp"
    mine.write_bytes(b"busy")
    write(target, [_event(energy=np.full(2, 2.0, np.float32))])
    assert not leftovers[0].exists()
    assert mine.exists()
    assert read(target, 0).energy.tolist() == [2.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, mine.name])


def test_display_writes_through_the_atomic_writer(tmp_path):
    from larsight.events.display import _atomic_write

    stale = tmp_path / ".e.png.tmp-999999999-x.larsight-tmp"  # pid beyond any pid_max
    stale.write_bytes(b"old")
    _atomic_write(tmp_path / "e.png", lambda tmp: open(tmp, "wb").write(b"png"))
    assert (tmp_path / "e.png").read_bytes() == b"png"
    assert not stale.exists()


def test_relative_paths_follow_the_callers_working_directory(sim5, tmp_path, monkeypatch):
    src, evs = sim5
    assert len(read_untrusted(src / "nu5.h5", 0)) == 1  # a warm worker, started elsewhere
    shutil.copy(src / "nu5.h5", tmp_path / "here.h5")
    monkeypatch.chdir(tmp_path)
    [ev] = read_untrusted("here.h5", 2)
    assert ev.equals(evs[2]) and ev.meta.source == "here.h5" and ev.meta.index == 2
    with pytest.raises(EventFileError, match=r"^here\.h5: index 9 is out of range"):
        read_untrusted("here.h5", 9)


def test_an_empty_row_added_to_a_larsight_file_is_refused(sim5, tmp_path):
    # one more (empty) row in every dataset: its checksums are all CRC-32 of nothing, so the
    # larsight_meta row every larsight event has is what gives it away
    src, _ = sim5
    bad = tmp_path / "plus_one.h5"
    shutil.copy(src / "nu5.h5", bad)
    with h5py.File(bad, "r+") as f:
        for name in list(f):
            f[name].resize((6,) + f[name].shape[1:])
    with pytest.raises(EventError, match=r"plus_one\.h5: event 5: larsight_meta is empty"):
        read(bad, 5)
