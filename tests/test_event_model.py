"""The Event contract: every kind of bad input raises EventError naming the field."""
import numpy as np
import pytest

from larsight.events import Event, EventError, EventMeta, Interaction, Particle, Volume
from larsight.events.model import POINT_ARRAY_NAMES


def _arrays(n=6):
    rng = np.random.default_rng(0)
    return dict(
        points=(rng.integers(0, 768, size=(n, 3)) * 0.3).astype(np.float32),
        energy=rng.uniform(0.2, 5.0, n).astype(np.float32),
        semantic=rng.integers(0, 5, n), particle=rng.integers(-1, 3, n),
        fragment=rng.integers(-1, 5, n), interaction=rng.integers(-1, 1, n),
        pid=rng.integers(-1, 5, n), n_electrons=rng.uniform(0, 1e4, n),
        time_us=rng.uniform(0, 10, n), dx_cm=rng.uniform(0, 0.5, n),
    )


def _raises(field, **changes):
    kw = _arrays()
    kw.update(changes)
    with pytest.raises(EventError, match=rf"Event\.{field}\b") as info:
        Event(**kw)
    return str(info.value)


def test_valid_event_coerces_dtypes():
    ev = Event(**_arrays())
    assert ev.points.dtype == np.float32 and ev.energy.dtype == np.float32
    assert ev.semantic.dtype == np.int8 and ev.particle.dtype == np.int32 and ev.pid.dtype == np.int8
    assert len(ev) == 6
    assert issubclass(EventError, ValueError)


@pytest.mark.parametrize("bad", [np.zeros((6, 2)), np.zeros(6), np.zeros((6, 3, 1))])
def test_points_wrong_shape(bad):
    msg = _raises("points", points=bad)
    assert "(N, 3)" in msg


def test_energy_wrong_shape():
    assert "(N,)" in _raises("energy", energy=np.zeros((6, 1)))


def test_required_arrays():
    kw = _arrays()
    kw["points"] = None
    with pytest.raises(EventError, match=r"Event\.points is required"):
        Event(**kw)
    kw = _arrays()
    kw["energy"] = None
    with pytest.raises(EventError, match=r"Event\.energy is required"):
        Event(**kw)


def test_object_array_rejected():
    _raises("energy", energy=np.array([object()] * 6))


@pytest.mark.parametrize("field", ["points", "energy", "n_electrons", "time_us", "dx_cm"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite(field, value):
    arr = _arrays()[field].astype(np.float64).copy()
    arr.flat[4] = value
    msg = _raises(field, **{field: arr})
    assert "non-finite" in msg and "point " in msg


def test_negative_energy():
    e = _arrays()["energy"].copy()
    e[2] = -0.5
    msg = _raises("energy", energy=e)
    assert "negative" in msg and "point 2" in msg


@pytest.mark.parametrize("coord", [-0.01, 230.4, 230.42, 1e6])
def test_point_outside_volume(coord):
    p = _arrays()["points"].copy()
    p[3, 1] = coord
    msg = _raises("points", points=p)
    assert "outside the volume" in msg and "point 3" in msg


def test_point_inside_a_shifted_volume():
    vol = Volume(voxel_size_cm=0.5, shape=(10, 10, 10), origin_cm=(-2.5, -2.5, -2.5))
    pts = np.array([[-2.5, 0.0, 2.4]], np.float32)
    Event(points=pts, energy=np.ones(1, np.float32), meta=EventMeta(volume=vol))
    with pytest.raises(EventError, match=r"Event\.points"):
        Event(points=pts + 0.2, energy=np.ones(1, np.float32), meta=EventMeta(volume=vol))


@pytest.mark.parametrize("field", [n for n in POINT_ARRAY_NAMES if n != "points"])
def test_array_of_wrong_length(field):
    arr = _arrays()[field][:-1]
    msg = _raises(field, **{field: arr})
    assert "5 rows" in msg and "6 points" in msg


@pytest.mark.parametrize("label", [5, -2, 100])
def test_bad_semantic_label(label):
    s = _arrays()["semantic"].copy()
    s[1] = label
    assert "-1..4" in _raises("semantic", semantic=s)


@pytest.mark.parametrize("label", [6, -3])
def test_bad_pid_label(label):
    p = _arrays()["pid"].copy()
    p[0] = label
    _raises("pid", pid=p)


@pytest.mark.parametrize("field", ["semantic", "particle", "fragment", "interaction", "pid"])
def test_non_integer_labels(field):
    arr = _arrays()[field].astype(np.float64)
    arr[0] = 0.5
    assert "integers" in _raises(field, **{field: arr})


def test_integral_float_labels_accepted():
    kw = _arrays()
    kw["semantic"] = kw["semantic"].astype(np.float64)
    assert Event(**kw).semantic.dtype == np.int8


def test_tables_validate():
    kw = _arrays()
    with pytest.raises(ValueError, match="pid"):
        Event(**kw, particles=[{"id": 1, "pid": 9}])
    with pytest.raises(ValueError, match="current"):
        Event(**kw, interactions=[{"id": 0, "current": "XX"}])
    ev = Event(**kw, particles=[{"id": 1, "pdg": 13, "pid": 2}], interactions=[Interaction(id=0)])
    assert isinstance(ev.particles[0], Particle) and ev.particles[0].pid_name == "muon"


def test_equals_is_exact():
    a = Event(**_arrays())
    b = a.copy()
    assert a.equals(b)
    e = b.energy.copy()
    e[0] = np.nextafter(e[0], np.float32(10))
    assert not a.equals(b.copy(energy=e))
    assert not a.equals(b.copy(pid=None))
    assert not a.equals(b.copy(particles=[Particle(id=0)]))
