"""Property-based tests (Hypothesis) of the Event model and the writers: write -> read is the
identity for every valid event, in HDF5 (v1 and v2 layouts) and ROOT, and every invalid event
is refused with an error naming the field."""
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larsight.events import Event, EventError, EventMeta, Interaction, Particle, Volume
from larsight.events.formats import read, write
from larsight.events.model import PID_CLASSES, PROCESSES, SEMANTIC_CLASSES

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0, max_value=1e5, allow_nan=False, allow_infinity=False)
vec3 = st.tuples(finite, finite, finite)


@st.composite
def volumes(draw):
    size = draw(st.sampled_from([0.3, 0.5, 0.6, 1.0, 0.25]))
    shape = tuple(draw(st.integers(1, 800)) for _ in range(3))
    origin = tuple(draw(st.floats(-500, 500, allow_nan=False)) for _ in range(3))
    return Volume(voxel_size_cm=size, shape=shape, origin_cm=origin)


particles = st.builds(
    Particle, id=st.integers(-1, 2 ** 31 - 1), pdg=st.integers(-(2 ** 31), 2 ** 31 - 1),
    pid=st.integers(-1, len(PID_CLASSES) - 1), parent=st.integers(-1, 1000),
    process=st.sampled_from(PROCESSES + ("muMinusCaptureAtRest", "a process with spaces")),
    interaction=st.integers(-1, 10), semantic=st.integers(-1, 4), start_cm=vec3, end_cm=vec3,
    momentum_mev=vec3, kinetic_energy_mev=positive, deposited_energy_mev=positive,
    n_voxels=st.integers(0, 10 ** 6))

interactions = st.builds(
    Interaction, id=st.integers(-1, 100), vertex_cm=vec3,
    nu_pdg=st.sampled_from([0, 12, -12, 14, -14]),
    current=st.sampled_from([None, "CC", "NC"]),
    channel=st.sampled_from([None, "QE", "MEC", "RES", "DIS", "COH", "GUN"]),
    nu_energy_mev=positive, event_class=st.sampled_from([None, "nue_cc", "numu_cc", "nc"]))


@st.composite
def valid_events(draw):
    vol = draw(volumes())
    n = draw(st.integers(0, 25))
    shape = np.asarray(vol.shape)
    idx = np.array([[draw(st.integers(0, int(s) - 1)) for s in shape] for _ in range(n)]).reshape(n, 3)
    pts = (idx * vol.voxel_size_cm + vol.lower_cm).astype(np.float32)
    if draw(st.booleans()):  # off-grid positions inside their voxel
        frac = np.array(draw(st.lists(st.floats(0.05, 0.9), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
        pts = (idx + frac) * vol.voxel_size_cm + vol.lower_cm
        pts = pts.astype(np.float32)
    inside = vol.contains(pts)
    pts, n = pts[inside], int(inside.sum())

    def floats(lo, hi):
        return np.array(draw(st.lists(st.floats(lo, hi, allow_nan=False, width=32),
                                      min_size=n, max_size=n)), np.float32)

    def ints(lo, hi):
        return np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), np.int64)

    arrays = {"points": pts, "energy": floats(0, 1e6)}
    optional = {
        "semantic": lambda: ints(-1, len(SEMANTIC_CLASSES) - 1),
        "particle": lambda: ints(-1, 2 ** 31 - 1),
        "fragment": lambda: ints(-1, 50),
        "interaction": lambda: ints(-1, 3),
        "pid": lambda: ints(-1, len(PID_CLASSES) - 1),
        "n_electrons": lambda: floats(0, 1e7),
        "time_us": lambda: floats(-1e4, 1e4),
        "dx_cm": lambda: floats(0, 1e3),
    }
    for name, make in optional.items():
        if draw(st.booleans()):
            arrays[name] = make()
    meta = EventMeta(volume=vol, event_id=draw(st.none() | st.integers(0, 2 ** 62)),
                     generator=draw(st.none() | st.text(max_size=20)),
                     seed=draw(st.none() | st.integers(0, 2 ** 62)))
    return Event(**arrays, particles=draw(st.lists(particles, max_size=4)),
                 interactions=draw(st.lists(interactions, max_size=2)), meta=meta)


def _round_trip(ev: Event, suffix: str, **options) -> Event:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"ev{suffix}"
        write(path, [ev], **options)
        return read(path, 0)


@pytest.mark.parametrize("suffix, options", [(".h5", {}), (".h5", {"layout": "v1"}), (".root", {})],
                         ids=["hdf5-v2", "hdf5-v1", "root"])
@SETTINGS
@given(ev=valid_events())
def test_write_read_is_the_identity(suffix, options, ev):
    back = _round_trip(ev, suffix, **options)
    assert back.equals(ev)
    m, b = ev.meta, back.meta
    assert (b.volume, b.event_id, b.generator, b.seed) == (m.volume, m.event_id, m.generator, m.seed)


BAD_ARRAYS = st.sampled_from([
    ("energy", np.nan), ("energy", np.inf), ("energy", -1.0), ("energy", 3e38),
    ("n_electrons", -1.0), ("n_electrons", np.nan), ("dx_cm", -0.5), ("dx_cm", 1e30),
    ("time_us", np.inf), ("semantic", 257), ("semantic", -2), ("pid", 6), ("pid", -9),
    ("particle", 2 ** 40), ("particle", -3), ("fragment", 2 ** 33), ("interaction", -2 ** 40),
])
BAD_TABLES = st.sampled_from([
    ("particles", "start_cm", (np.nan, 0.0, 0.0)), ("particles", "end_cm", (0.0, np.inf, 0.0)),
    ("particles", "momentum_mev", (0.0, 0.0, -np.inf)), ("particles", "kinetic_energy_mev", np.nan),
    ("particles", "kinetic_energy_mev", -1.0), ("particles", "deposited_energy_mev", np.inf),
    ("particles", "id", 2 ** 40), ("particles", "pid", 9), ("particles", "n_voxels", -1),
    ("interactions", "vertex_cm", (np.nan, 0.0, 0.0)), ("interactions", "nu_energy_mev", np.inf),
    ("interactions", "nu_energy_mev", -5.0), ("interactions", "id", 2 ** 40),
])


@SETTINGS
@given(ev=valid_events(), bad=BAD_ARRAYS, data=st.data())
def test_invalid_point_values_are_refused_naming_the_field(ev, bad, data):
    name, value = bad
    if len(ev) == 0:
        return
    base = getattr(ev, name)
    arr = (np.zeros(len(ev)) if base is None else base).astype(np.float64 if isinstance(value, float) else np.int64)
    arr[data.draw(st.integers(0, len(ev) - 1))] = value
    arrays = {**ev.point_arrays(), name: arr}
    with pytest.raises(EventError, match=rf"Event\.{name}\b") as err:
        Event(**arrays, particles=ev.particles, interactions=ev.interactions, meta=ev.meta)
    assert "\n" not in str(err.value)


@SETTINGS
@given(ev=valid_events(), bad=BAD_TABLES)
def test_invalid_table_values_are_refused_naming_the_field(ev, bad):
    table, field, value = bad
    row = (Particle(id=0) if table == "particles" else Interaction(id=0)).model_dump()
    row[field] = value
    rows = [r.model_dump() for r in getattr(ev, table)] + [row]
    k = len(rows) - 1
    with pytest.raises(EventError, match=rf"Event\.{table}\[{k}\]: {field}") as err:
        ev.copy(**{table: rows})
    assert "\n" not in str(err.value)


@SETTINGS
@given(field=st.sampled_from(["voxel_size_cm", "shape", "origin_cm"]),
       value=st.sampled_from([np.nan, np.inf, 1e30, -1.0, 0.0]))
def test_invalid_volumes_are_refused_naming_the_field(field, value):
    good = Volume().model_dump()
    good[field] = (value, 1.0, 1.0) if field == "origin_cm" else \
        ((int(1e6), int(1e6), int(1e6)) if field == "shape" and value == 1e30 else
         ((0, 5, 5) if field == "shape" else value))
    if field == "origin_cm" and np.isfinite(value) and abs(value) < 1e5:
        return  # a finite, modest origin is valid
    with pytest.raises(EventError, match=rf"Event\.meta: volume\.{field}") as err:
        Event(points=np.zeros((0, 3), np.float32), energy=np.zeros(0, np.float32),
              meta={"volume": good})
    assert "\n" not in str(err.value)
