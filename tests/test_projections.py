"""events.projections: XZ/YZ pixel maps (energy conservation, orientation, cropping) and coarsen."""
import numpy as np
import pytest

from larsight.events.model import PILARNET_VOLUME, Event, EventError, EventMeta, Particle, Volume
from larsight.events.projections import SEMANTIC_PRECEDENCE, coarsen, pixel_maps, view_extents
from larsight.events.sim import simulate

SIZE_CM = float(PILARNET_VOLUME.size_cm[0])  # 230.4


def random_event(n=500, seed=0, volume=PILARNET_VOLUME, labels=True) -> Event:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, volume.shape[0], size=(n, 3))
    pts = (idx * volume.voxel_size_cm + volume.lower_cm).astype(np.float32)
    kw = {}
    if labels:
        kw = dict(semantic=rng.integers(-1, 5, n), particle=rng.integers(-1, 6, n),
                  interaction=rng.integers(-1, 2, n), pid=rng.integers(-1, 5, n))
    return Event(points=pts, energy=rng.gamma(2.0, 1.0, n).astype(np.float32),
                 meta=EventMeta(volume=volume), **kw)


def one_point(x, y, z, e=3.0) -> Event:
    return Event(points=np.array([[x, y, z]], np.float32), energy=np.array([e], np.float32))


# ---------------------------------------------------------------------------- pixel maps
def test_maps_conserve_energy_over_full_volume():
    ev = random_event(2000, seed=1)
    maps = pixel_maps(ev)
    assert maps.shape == (2, 512, 512) and maps.dtype == np.float32
    for m in maps:
        assert m.sum(dtype=np.float64) == pytest.approx(ev.total_energy_mev, rel=1e-6)
    assert (maps >= 0).all()


def test_maps_with_extent_keep_only_points_inside():
    ev = random_event(3000, seed=2)
    extent = ((20.0, 120.0), (0.0, SIZE_CM), (50.0, 200.0))
    maps = pixel_maps(ev, size=128, extent=extent)
    p = ev.points
    in_xz = (p[:, 0] >= 20) & (p[:, 0] < 120) & (p[:, 2] >= 50) & (p[:, 2] < 200)
    in_yz = (p[:, 2] >= 50) & (p[:, 2] < 200)
    assert 0 < in_xz.sum() < len(ev)
    assert maps[0].sum(dtype=np.float64) == pytest.approx(ev.energy[in_xz].sum(dtype=np.float64), rel=1e-6)
    assert maps[1].sum(dtype=np.float64) == pytest.approx(ev.energy[in_yz].sum(dtype=np.float64), rel=1e-6)


def test_orientation_point_lands_in_expected_pixel():
    x, y, z = 10.2, 50.1, 200.4
    maps = pixel_maps(one_point(x, y, z, e=3.0), size=512)
    col_x = int(x / SIZE_CM * 512)   # 22
    col_y = int(y / SIZE_CM * 512)   # 111
    row_z = int(z / SIZE_CM * 512)   # 445
    assert maps[0, row_z, col_x] == pytest.approx(3.0)   # XZ: column = x, row = z
    assert maps[1, row_z, col_y] == pytest.approx(3.0)   # YZ: column = y, row = z
    assert maps[0, col_x, row_z] == 0                    # not transposed
    assert np.count_nonzero(maps) == 2


def test_other_views_and_log():
    ev = one_point(100.0, 20.0, 5.0, e=np.e - 1)
    maps = pixel_maps(ev, size=64, views=("xy", "zx"), log=True)
    assert maps.shape == (2, 64, 64)
    assert maps[0, int(20 / SIZE_CM * 64), int(100 / SIZE_CM * 64)] == pytest.approx(1.0)
    assert maps[1, int(100 / SIZE_CM * 64), int(5 / SIZE_CM * 64)] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="view"):
        pixel_maps(ev, views=("xx",))
    with pytest.raises(ValueError, match="size"):
        pixel_maps(ev, size=0)


def test_crop_to_event_is_tight_square_and_conserves():
    pts = np.array([[100.0, 30.0, 60.0], [110.0, 33.0, 90.0], [104.0, 31.5, 75.0]], np.float32)
    ev = Event(points=pts, energy=np.array([1.0, 2.0, 4.0], np.float32))
    boxes = view_extents(ev, ("xz", "yz"), crop_to_event=True)
    for (alo, ahi), (blo, bhi) in boxes:
        assert ahi - alo == pytest.approx(bhi - blo)             # square
        assert ahi - alo < 40                                   # tight (event spans 30 cm in z)
    (xlo, xhi), (zlo, zhi) = boxes[0]
    assert xlo <= 100 and xhi > 110 and zlo <= 60 and zhi > 90
    maps = pixel_maps(ev, size=64, crop_to_event=True)
    assert maps.sum(axis=(1, 2)) == pytest.approx([7.0, 7.0])
    # distinct points in z stay in distinct rows
    assert np.count_nonzero(maps[0].sum(axis=1)) == 3


# ---------------------------------------------------------------------------- coarsen
def test_coarsen_conserves_energy_and_regrids():
    ev = random_event(4000, seed=3)
    c = coarsen(ev, 2)
    assert c.meta.volume.voxel_size_cm == pytest.approx(0.6)
    assert c.meta.volume.shape == (384, 384, 384)
    assert c.total_energy_mev == pytest.approx(ev.total_energy_mev, rel=1e-6)
    idx = c.voxel_indices()
    assert len(np.unique(idx, axis=0)) == len(c)                 # one point per coarse voxel
    np.testing.assert_allclose(c.points, idx * 0.6, atol=1e-4)   # points on the coarse grid
    fine_coarse = np.unique(ev.voxel_indices() // 2, axis=0)
    assert len(c) == len(fine_coarse)


def _pair(labels_a, labels_b, e_a=1.0, e_b=1.0):
    """Two points in the same 2x2x2 block, different fine voxels."""
    pts = np.array([[3.0, 3.0, 3.0], [3.3, 3.3, 3.0]], np.float32)  # fine indices 10 and 11 -> coarse 5
    kw = {k: np.array([labels_a[k], labels_b[k]]) for k in labels_a}
    return Event(points=pts, energy=np.array([e_a, e_b], np.float32), **kw)


@pytest.mark.parametrize("strong,weak", [(1, 2), (1, 0), (2, 0), (0, 3), (3, 4), (4, -1), (1, 4)])
def test_coarsen_semantic_precedence(strong, weak):
    # the weak label carries 100x the energy and still loses
    ev = _pair({"semantic": weak}, {"semantic": strong}, e_a=100.0, e_b=1.0)
    c = coarsen(ev, 2)
    assert len(c) == 1
    assert c.semantic[0] == strong
    assert c.energy[0] == pytest.approx(101.0)


def test_precedence_order_constant():
    assert SEMANTIC_PRECEDENCE == (1, 2, 0, 3, 4)  # track > Michel > shower > delta > low energy


def test_coarsen_particle_and_interaction_by_energy_majority():
    pts = np.array([[0.0, 0, 0], [0.3, 0, 0], [0.0, 0.3, 0], [0.3, 0.3, 0.3], [3.0, 3.0, 3.0]], np.float32)
    ev = Event(points=pts, energy=np.array([5.0, 1.0, 1.0, 1.0, 2.0], np.float32),
               semantic=np.array([0, 0, 0, 0, 1]),
               particle=np.array([3, 7, 7, 7, 7]),          # 7 has more voxels, 3 more energy
               interaction=np.array([-1, 0, 0, 0, 0]),
               pid=np.array([1, 2, 2, 2, 2]), fragment=np.array([30, 70, 71, 71, 72]),
               particles=[Particle(id=3, pid=1, n_voxels=1), Particle(id=7, pid=2, n_voxels=4)])
    c = coarsen(ev, 2)
    assert len(c) == 2
    order = np.argsort(c.points[:, 0])
    first = order[0]
    assert c.particle[first] == 3
    assert c.interaction[first] == -1
    assert c.pid[first] == 1                 # follows the chosen particle
    assert c.fragment[first] == 30
    assert c.energy[first] == pytest.approx(8.0)
    by_id = {p.id: p for p in c.particles}
    assert by_id[3].n_voxels == 1 and by_id[7].n_voxels == 1
    assert by_id[3].deposited_energy_mev == pytest.approx(8.0)
    assert by_id[7].deposited_energy_mev == pytest.approx(2.0)


def test_coarsen_factor_must_divide_and_identity():
    ev = random_event(50, seed=4)
    with pytest.raises(EventError, match="factor"):
        coarsen(ev, 5)                    # 768 % 5 != 0
    same = coarsen(ev, 1)
    assert same.equals(ev)


def test_coarsen_offset_volume_and_detector_columns():
    vol = Volume(voxel_size_cm=0.5, shape=(40, 40, 40), origin_cm=(-10.0, -10.0, 0.0))
    ev = random_event(800, seed=5, volume=vol)
    ev = ev.copy(n_electrons=np.full(len(ev), 10.0, np.float32), time_us=np.arange(len(ev), dtype=np.float32),
                 dx_cm=np.full(len(ev), 0.5, np.float32))
    c = coarsen(ev, 4)
    assert c.meta.volume.shape == (10, 10, 10)
    assert c.n_electrons.sum() == pytest.approx(10.0 * len(ev))
    assert c.total_energy_mev == pytest.approx(ev.total_energy_mev, rel=1e-6)
    assert c.time_us.min() == 0


def test_coarsen_simulated_event_semantic_is_strongest_fine_label():
    ev = next(iter(simulate("nu", 1, seed=11)))
    c = coarsen(ev, 2)
    assert c.total_energy_mev == pytest.approx(ev.total_energy_mev, rel=1e-5)
    rank = {lab: r for r, lab in enumerate(SEMANTIC_PRECEDENCE)}
    rank[-1] = 99
    key_f = [tuple(k) for k in ev.voxel_indices() // 2]
    key_c = {tuple(k): i for i, k in enumerate(c.voxel_indices())}
    best = {}
    for k, s in zip(key_f, ev.semantic.tolist()):
        best[k] = min(best.get(k, 99), rank[s])
    for k, r in best.items():
        s = c.semantic[key_c[k]]
        assert rank[int(s)] == r
