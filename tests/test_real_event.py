"""The real PILArNet-M event (test split, event 7675) packed into a v2-schema file by hand reads
back with its 1390 voxels, ~919 MeV and its labels. The event is read from ../shared/data and
never copied into the repository."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from larsight.events import PILARNET_VOLUME, EventError
from larsight.events.formats import convert, read, write

from conftest import REAL_EVENT_NPZ as DATA

pytestmark = pytest.mark.skipif(DATA is None, reason="real event not found (set LARSIGHT_SHARED)")


@pytest.fixture(scope="module")
def real():
    with np.load(DATA) as z:
        return {k: z[k] for k in z.files}


def pack_v2(real, path):
    """Write the event as a PILArNet-M v2 file, the way the dataset stores it: points grouped
    by cluster (one cluster per particle instance and label, no-particle deposits first), PID 5
    of the npz ('none' after the loaders' remapping) stored as the file's -1."""
    inst = real["instance"].astype(np.int64)
    sem = real["semantic"].astype(np.int64)
    pid = np.where(real["pid"] == 5, -1, real["pid"]).astype(np.int64)
    order = np.lexsort((pid, sem, inst))
    keys = np.stack([inst, sem, pid], 1)[order]
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    counts = np.diff(np.r_[starts, len(order)])
    g, s, p = keys[starts].T
    clusters = np.column_stack([counts, g, g, np.where(g >= 0, 0, -1), s, p]).astype(np.int32)
    point = np.zeros((len(order), 8), np.float32)
    point[:, :3] = real["voxels"][order]
    point[:, 3] = point[:, 4] = real["energy_mev"][order]
    extra = np.zeros((len(clusters), 5), np.float32)
    with h5py.File(path, "w") as f:
        for name, row, dt in (("point", point, np.float32), ("cluster", clusters, np.int32),
                              ("cluster_extra", extra, np.float32)):
            ds = f.create_dataset(name, (1,), dtype=h5py.vlen_dtype(dt))
            ds[0] = row.ravel()
    return order


def test_real_event_reads(tmp_path, real):
    path = tmp_path / "pilarnet_m_7675.h5"
    order = pack_v2(real, path)
    ev = read(path, index=0)
    assert len(ev) == 1390
    assert ev.total_energy_mev == pytest.approx(919.08, abs=0.05)
    assert np.bincount(ev.semantic, minlength=5).tolist() == [571, 706, 0, 0, 113]
    assert ev.meta.volume == PILARNET_VOLUME and ev.meta.generator == "PILArNet-M"
    # voxel indices come back exactly; coordinates are 3 mm voxels
    assert np.array_equal(ev.voxel_indices(), real["voxels"][order])
    assert np.allclose(ev.points, real["voxels"][order] * 0.3, atol=1e-4)
    assert np.array_equal(ev.energy, real["energy_mev"][order])
    # per-point labels: PID 'none' is -1 here, never 5 (kaon)
    assert np.array_equal(ev.semantic, real["semantic"][order])
    assert np.array_equal(ev.particle, real["instance"][order])
    assert np.array_equal(ev.pid, np.where(real["pid"] == 5, -1, real["pid"])[order])
    assert int((ev.pid == -1).sum()) == 113 and not np.any(ev.pid == 5)
    assert np.all(ev.semantic[ev.particle == -1] == 4)
    # ten particles: an electron shower, a muon, pions and protons
    assert len(ev.particles) == 10
    names = sorted(p.pid_name for p in ev.particles)
    assert names.count("electron") == 1 and names.count("muon") == 1
    assert {"pion", "proton", "photon"} <= set(names)
    assert sum(p.n_voxels for p in ev.particles) == 1390 - 113
    electron = next(p for p in ev.particles if p.pid_name == "electron")
    assert electron.semantic == 0 and electron.n_voxels == 555
    assert sum(p.deposited_energy_mev for p in ev.particles) == pytest.approx(
        ev.total_energy_mev - float(ev.energy[ev.particle == -1].sum()), rel=1e-6)


def test_real_event_through_larsight_files(tmp_path, real):
    src = tmp_path / "real.h5"
    pack_v2(real, src)
    ev = read(src, index=0)
    assert convert(src, tmp_path / "real.root") == 1
    assert convert(tmp_path / "real.root", tmp_path / "again.h5") == 1
    for path in (tmp_path / "real.root", tmp_path / "again.h5"):
        back = read(path, index=-1)
        assert back.equals(ev) and back.meta.generator == "PILArNet-M"
    write(tmp_path / "v1.h5", [ev], layout="v1")
    assert read(tmp_path / "v1.h5", index=0).equals(ev)


def test_real_event_with_a_cluster_too_few(tmp_path, real):
    path = tmp_path / "broken.h5"
    pack_v2(real, path)
    with h5py.File(path, "r+") as f:
        cl = f["cluster"][0].reshape(-1, 6)
        f["cluster"][0] = cl[1:].ravel()  # drop the first (low-energy) cluster's row
    with pytest.raises(EventError, match=r"broken\.h5: event 0: mismatched point/cluster counts"):
        read(path, index=0)
