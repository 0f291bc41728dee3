"""PILArNet-M HDF5 files written by hand with raw h5py (no larsight extras) read correctly, and
files written by larsight follow the schema that PILArNet loaders expect."""
import math

import h5py
import numpy as np
import pytest

from larsight.events import PILARNET_VOLUME, Event, EventError, EventMeta, Particle
from larsight.events.formats import read, write

MUON_MASS = 105.6583755

# One event in the real layout: clusters in order, the low-energy-deposit cluster first
# (group -1, PID -1), then a muon track, a shower in two fragments and a Michel electron.
#             npoints frag group inter sem pid
CLUSTERS = [[3, -1, -1, -1, 4, -1],
            [5, 0, 0, 0, 1, 2],
            [4, 1, 1, 0, 0, 1],
            [2, 2, 1, 0, 0, 1],
            [2, 3, 2, 0, 2, 1]]
#              col0 momentum  vertex (voxel indices)
EXTRA = [[0, 0.0, 0, 0, 0],
         [7, 250.0, 100, 200, 300],
         [7, 50.0, 110, 210, 310],
         [7, 9.0, 500, 500, 500],
         [7, 30.0, 120, 220, 320]]


def _points(n_points, seed=0):
    rng = np.random.default_rng(seed)
    pts = np.zeros((n_points, 8), np.float32)
    pts[:, :3] = rng.integers(0, 768, size=(n_points, 3))
    pts[:, 3] = rng.uniform(0.2, 9.0, n_points)          # voxel value = energy (MeV)
    pts[:, 4] = pts[:, 3] * 0.9                           # energy deposit (not the energy)
    pts[:, 5] = rng.uniform(0, 2000, n_points)           # absolute time
    pts[:, 6] = rng.uniform(1e3, 1e5, n_points)          # electrons
    pts[:, 7] = rng.uniform(0.05, 0.6, n_points)         # dx
    return pts


def write_raw(path, events, layout="v2", cluster_dtype=np.int32, extra_width=5):
    """A PILArNet-M file as the dataset ships it: only point / cluster (/ cluster_extra)."""
    with h5py.File(path, "w") as f:
        dp = f.create_dataset("point", (len(events),), dtype=h5py.vlen_dtype(np.float32))
        dc = f.create_dataset("cluster", (len(events),), dtype=h5py.vlen_dtype(cluster_dtype))
        de = None
        if layout != "v1":
            de = f.create_dataset("cluster_extra", (len(events),), dtype=h5py.vlen_dtype(np.float32))
        for i, (pts, clusters, extra) in enumerate(events):
            dp[i] = np.asarray(pts, np.float32).ravel()
            cl = np.asarray(clusters, np.int64).reshape(-1, 6)
            dc[i] = (cl if layout != "v1" else cl[:, :5]).astype(cluster_dtype).ravel()
            if de is not None:
                ex = np.asarray(extra, np.float32).reshape(-1, 5)
                if extra_width == 6:
                    ex = np.column_stack([ex, np.arange(len(ex)) % 2]).astype(np.float32)
                de[i] = ex.ravel()


def sample_file(path, layout="v2", **kw):
    pts = _points(16)
    events = [(pts, CLUSTERS, EXTRA),
              (_points(4, seed=1), [[4, -1, -1, -1, 4, -1]], [[0, 0, 0, 0, 0]]),
              (np.zeros((0, 8)), np.zeros((0, 6)), np.zeros((0, 5)))]
    write_raw(path, events, layout=layout, **kw)
    return pts


def _expected_labels(column):
    cl = np.array(CLUSTERS)
    return np.repeat(cl[:, column], cl[:, 0])


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_hand_written_file_reads(tmp_path, layout):
    path = tmp_path / f"pilarnet_{layout}.h5"
    pts = sample_file(path, layout)
    evs = list(read(path))
    assert len(evs) == 3
    ev = evs[0]
    assert len(ev) == 16
    # coordinates: voxel index * 0.3 cm (the default PILArNet volume, origin 0)
    assert np.array_equal(ev.points, (pts[:, :3].astype(np.float64) * 0.3).astype(np.float32))
    assert np.array_equal(ev.voxel_indices(), pts[:, :3].astype(np.int64))
    assert ev.meta.volume == PILARNET_VOLUME and ev.meta.generator == "PILArNet-M"
    assert ev.meta.source == str(path) and ev.meta.index == 0
    # energy is column 3 (the voxel value), not column 4
    assert np.array_equal(ev.energy, pts[:, 3])
    assert np.array_equal(ev.time_us, pts[:, 5])
    assert np.array_equal(ev.n_electrons, pts[:, 6])
    assert np.array_equal(ev.dx_cm, pts[:, 7])
    # labels: each cluster row repeated npoints times
    assert ev.semantic.tolist() == [4, 4, 4, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 2, 2]
    assert ev.particle.tolist() == [-1] * 3 + [0] * 5 + [1] * 6 + [2] * 2
    assert np.array_equal(ev.fragment, _expected_labels(1))
    assert np.array_equal(ev.interaction, _expected_labels(3))
    if layout == "v2":
        assert ev.pid.tolist() == [-1] * 3 + [2] * 5 + [1] * 8
    else:
        assert ev.pid is None
    # particle table derived from the clusters: one row per group id >= 0
    assert [p.id for p in ev.particles] == [0, 1, 2]
    mu, shower, michel = ev.particles
    assert (mu.semantic, shower.semantic, michel.semantic) == (1, 0, 2)
    assert (mu.n_voxels, shower.n_voxels, michel.n_voxels) == (5, 6, 2)
    assert mu.interaction == 0
    assert mu.deposited_energy_mev == pytest.approx(float(pts[3:8, 3].astype(np.float64).sum()))
    assert shower.deposited_energy_mev == pytest.approx(float(pts[8:14, 3].astype(np.float64).sum()))
    if layout == "v2":
        assert (mu.pid, shower.pid, michel.pid) == (2, 1, 1)
        assert mu.pid_name == "muon"
        assert mu.start_cm == pytest.approx((30.0, 60.0, 90.0))
        assert shower.start_cm == pytest.approx((33.0, 63.0, 93.0))  # its largest fragment's vertex
        assert mu.kinetic_energy_mev == pytest.approx(math.hypot(250.0, MUON_MASS) - MUON_MASS)
        assert michel.kinetic_energy_mev == pytest.approx(math.hypot(30.0, 0.51099895) - 0.51099895)
    else:
        assert {p.pid for p in ev.particles} == {-1}
        assert mu.kinetic_energy_mev == 0.0
    assert ev.interactions == []
    # the second event is only low-energy deposits, the third is empty
    assert evs[1].semantic.tolist() == [4] * 4 and evs[1].particles == []
    assert len(evs[2]) == 0 and evs[2].particles == []
    assert evs[2].semantic is not None and evs[2].semantic.size == 0


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.float32, np.float64])
def test_cluster_dtype_does_not_matter(tmp_path, dtype):
    sample_file(tmp_path / "ref.h5")
    sample_file(tmp_path / "other.h5", cluster_dtype=dtype)
    for a, b in zip(read(tmp_path / "ref.h5"), read(tmp_path / "other.h5")):
        assert a.equals(b)


def test_non_integer_cluster_values_rejected(tmp_path):
    pts = _points(3)
    write_raw(tmp_path / "f.h5", [(pts, [[3, 0, 0, 0, 1, 2]], [[0] * 5])], cluster_dtype=np.float32)
    with h5py.File(tmp_path / "f.h5", "r+") as f:
        f["cluster"][0] = np.array([3, 0, 0.5, 0, 1, 2], np.float32)
    with pytest.raises(EventError, match="non-integer"):
        read(tmp_path / "f.h5", index=0)


def test_v3_cluster_extra_reads_like_v2(tmp_path):
    sample_file(tmp_path / "v2.h5")
    sample_file(tmp_path / "v3.h5", extra_width=6)
    for a, b in zip(read(tmp_path / "v2.h5"), read(tmp_path / "v3.h5")):
        assert a.equals(b)


# ---------------------------------------------------------------- files larsight writes
def loader_view(f, i, layout):
    """Read event i the way PILArNet loaders do: reshape, repeat the cluster columns."""
    pts = f["point"][i].reshape(-1, 8)
    width = 6 if layout == "v2" else 5
    cl = f["cluster"][i].reshape(-1, width)
    assert cl[:, 0].sum() == len(pts)  # np.repeat below must cover every point
    labels = {name: np.repeat(cl[:, c], cl[:, 0])
              for name, c in (("fragment", 1), ("group", 2), ("interaction", 3), ("semantic", 4))}
    if layout == "v2":
        labels["pid"] = np.repeat(cl[:, 5], cl[:, 0])
        extra = f["cluster_extra"][i].reshape(-1, 5)
        assert len(extra) == len(cl)
        labels["momentum"] = np.repeat(extra[:, 1], cl[:, 0])
        labels["vertex"] = np.repeat(extra[:, 2:5], cl[:, 0], axis=0)
    return pts, cl, labels


def _labelled_event(seed=0, n=60):
    rng = np.random.default_rng(seed)
    particle = rng.integers(-1, 3, n)
    return Event(
        points=(rng.integers(0, 768, size=(n, 3)) * 0.3).astype(np.float32),
        energy=rng.uniform(0.1, 4, n).astype(np.float32),
        semantic=np.where(particle >= 0, rng.integers(0, 4, n), 4),
        particle=particle, fragment=np.where(particle >= 0, particle, -1),
        interaction=np.where(particle >= 0, 0, -1), pid=np.where(particle >= 0, particle + 2, -1),
        time_us=rng.uniform(0, 5, n).astype(np.float32),
        particles=[Particle(id=k, pid=k + 2, momentum_mev=(3.0 * (k + 1), 4.0 * (k + 1), 0.0),
                            start_cm=(30.0 + k, 60.0, 90.0)) for k in range(3)],
        meta=EventMeta(generator="test"))


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_larsight_file_reads_like_pilarnet(tmp_path, layout):
    ev = _labelled_event()
    path = tmp_path / "out.h5"
    write(path, [ev, _labelled_event(1, n=5)], layout=layout)
    with h5py.File(path, "r") as f:
        assert h5py.check_vlen_dtype(f["point"].dtype) == np.float32
        assert h5py.check_vlen_dtype(f["cluster"].dtype) == np.int32
        assert ("cluster_extra" in f) == (layout == "v2")
        pts, cl, lab = loader_view(f, 0, layout)
    # on-grid points are stored as exact integer voxel indices, as in the real files
    assert np.array_equal(pts[:, :3], np.round(pts[:, :3]))
    # the no-particle cluster(s) come first, then the particles in group order
    assert cl[0, 2] == -1 and np.all(np.diff(cl[:, 2]) >= 0)
    # same points and labels as the event, in cluster order
    mine = np.column_stack([ev.voxel_indices(), ev.energy, ev.time_us, ev.particle, ev.fragment,
                            ev.interaction, ev.semantic] + ([ev.pid] if layout == "v2" else []))
    theirs = np.column_stack([pts[:, :3], pts[:, 3], pts[:, 5], lab["group"], lab["fragment"],
                              lab["interaction"], lab["semantic"]] + ([lab["pid"]] if layout == "v2" else []))
    assert np.array_equal(np.unique(mine, axis=0), np.unique(theirs.astype(np.float64), axis=0))
    assert len(mine) == len(theirs)
    if layout == "v2":
        k = lab["group"] >= 0
        # per-particle momentum magnitude and vertex (voxel units) in cluster_extra
        assert np.allclose(lab["momentum"][k], 5.0 * (lab["group"][k] + 1))
        assert np.allclose(lab["vertex"][k][:, 0], (30.0 + lab["group"][k]) / 0.3, atol=1e-3)
        assert np.all(lab["momentum"][~k] == 0)


def test_foreign_event_roundtrips_through_larsight_files(tmp_path):
    sample_file(tmp_path / "foreign.h5")
    evs = list(read(tmp_path / "foreign.h5"))
    for ext in (".h5", ".root"):
        write(tmp_path / f"mine{ext}", evs)
        for a, b in zip(evs, read(tmp_path / f"mine{ext}")):
            assert a.equals(b) and b.meta.generator == "PILArNet-M"
    # a larsight-written copy still carries the clusters' momentum and vertex for PILArNet readers
    with h5py.File(tmp_path / "mine.h5") as f:
        _, cl, lab = loader_view(f, 0, "v2")
    mu = lab["group"] == 0
    assert np.allclose(lab["momentum"][mu], 250.0, rtol=1e-5)
    assert np.allclose(lab["vertex"][mu], [100, 200, 300], atol=1e-3)
