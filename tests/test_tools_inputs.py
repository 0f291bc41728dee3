"""Every tool (segment, find_vertex, reconstruct, classify_event, find_similar, describe, render)
on bad input and on a PILArNet-M-schema file.

Bad input: an empty event, a single point, an unknown index in a file (``file.h5:999``), a
non-integer index, a missing file, a directory, a file that holds no events, an object that is
not an event; each gives a
``ToolInputError`` whose message names the problem, the tool or the file, and how many events
the file holds. Input that is poor but valid (two points, scattered noise with no vertex) is
analysed, and the tools say that there is no vertex.

PILArNet-M: the real event of ../shared/data (PILArNet-M test split, event 7675), written with
the project's writer to an ``.h5`` in the temporary folder (and a copy stripped of larsight's
own datasets, as the dataset's files are), then each tool called on ``"file.h5:0"``.
"""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from larsight import events
from larsight.events import sim

from larsight import tools
from larsight.qformer.corpus import TOOL_NAMES   # the tools the VLM was trained to call: each must exist
from larsight.tools import (EventFileNotFoundError, ToolInputError, build_index, classify_event,
                   describe, find_similar, find_vertex, reconstruct, render, segment)

torch.set_num_threads(1)


def _event(points, energy) -> events.Event:
    return events.Event(points=np.asarray(points, np.float32).reshape(-1, 3),
                        energy=np.asarray(energy, np.float32))


@pytest.fixture(scope="module")
def embedder():
    """The event side of the shipped VLM (encoder + projector; no language model)."""
    from larsight.tools import EventEmbedder

    return EventEmbedder.load(device="cpu")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, embedder):
    out = tmp_path_factory.mktemp("inputs_index") / "index"
    evs = [sim.neutrino(seed=5, index=i) for i in range(3)]
    report = build_index(evs, out, embedder=embedder, progress=False)
    assert report.n_events == 3
    return out


@pytest.fixture(scope="module")
def run_tool(index_dir, embedder):
    """name -> a call of that tool on one event argument (encoder-only classification)."""
    calls = {
        "segment": segment,
        "find_vertex": find_vertex,
        "reconstruct": reconstruct,
        "classify_event": lambda e: classify_event(e, vlm=False),
        "find_similar": lambda e: find_similar(e, k=2, index=index_dir, embedder=embedder),
        "describe": lambda e: describe(e, vlm=False),
        "render": render,
    }
    assert set(calls) == set(TOOL_NAMES)
    return lambda name, arg: calls[name](arg)


@pytest.fixture(scope="module")
def two_event_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "two.h5"
    events.write(path, [sim.particle_gun(13, 200.0, seed=0), sim.particle_gun(2212, 150.0, seed=0)])
    return path


# ============================================================================ bad input
@pytest.mark.parametrize("name", TOOL_NAMES)
def test_empty_and_single_point_events(name, run_tool):
    empty = _event(np.zeros((0, 3)), [])
    with pytest.raises(ToolInputError, match=rf"^{name}: the event is empty \(0 points\)"):
        run_tool(name, empty)
    single = _event([[10.0, 20.0, 30.0]], [5.0])
    with pytest.raises(ToolInputError, match=rf"^{name}: the event has a single point"):
        run_tool(name, single)


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_bad_file_references(name, run_tool, two_event_file, tmp_path):
    f = two_event_file
    with pytest.raises(ToolInputError, match=rf"unknown event index 999: .*{f.name} holds 2 events "
                                             rf"\(valid indices 0\.\.1, or -2\.\.-1\)"):
        run_tool(name, f"{f}:999")
    with pytest.raises(ToolInputError, match=r"unknown event index -3: .*holds 2 events"):
        run_tool(name, f"{f}:-3")
    with pytest.raises(ToolInputError, match=rf"bad event index 'two' in .*{f.name}:two"):
        run_tool(name, f"{f}:two")
    missing = tmp_path / "missing.h5"
    with pytest.raises(EventFileNotFoundError, match=r"event file not found: .*missing\.h5") as err:
        run_tool(name, f"{missing}:0")
    assert isinstance(err.value, FileNotFoundError)       # also what callers of files expect
    if name != "find_similar":     # find_similar reads other strings as text queries
        with pytest.raises(ToolInputError, match=rf"holds 2 events; choose one with '.*{f.name}:INDEX'"):
            run_tool(name, str(f))
        with pytest.raises(ToolInputError, match="is a directory"):
            run_tool(name, str(tmp_path))
    not_events = tmp_path / "notes.txt"
    not_events.write_text("not events")
    with pytest.raises(ToolInputError, match=r"cannot read events from .*notes\.txt: .*extension"):
        run_tool(name, f"{not_events}:0")
    with pytest.raises(ToolInputError, match=r"expected an events\.Event.* got int"):
        run_tool(name, 42)


def test_index_checks_and_the_smallest_event(two_event_file):
    """Indices are checked against the file's event count (negative ones count from the end);
    ``min_points`` sets the smallest event a caller accepts, and the message says so."""
    from larsight.tools.inputs import checked_index, load_event

    assert checked_index(two_event_file, -1) == (1, 2)
    ev = load_event(f"{two_event_file}:-1")
    assert ev.meta.index == 1 and ev.particles[0].pdg == 2212
    n = len(ev)
    with pytest.raises(ToolInputError, match=rf"^probe: event .*two\.h5:1 has only {n} points; "
                                             rf"at least {n + 1} are needed"):
        load_event(ev, min_points=n + 1, tool="probe")


# ============================================================================ poor but valid input
def test_two_points_is_the_smallest_event(run_tool):
    pair = _event([[100.0, 100.0, 100.0], [100.3, 100.0, 100.0]], [5.0, 3.0])
    for name in TOOL_NAMES:
        assert run_tool(name, pair) is not None
    v = find_vertex(pair)
    assert v.status == "no_vertex" and v.vertex_cm is None


def test_event_without_a_vertex(run_tool):
    """Scattered low-energy deposits (no interaction, no truth): every tool answers, and the
    vertex finder, the reconstruction and the description all say there is no vertex."""
    rng = np.random.default_rng(0)
    noise = _event(rng.uniform(20.0, 200.0, (80, 3)), rng.uniform(0.1, 1.0, 80))
    v = find_vertex(noise)
    assert v.status == "no_vertex" and v.vertex_cm is None and v.confidence == 0.0
    assert v.note and v.truth_vertex_cm is None
    reco = reconstruct(noise)
    assert reco.vertex.status == "no_vertex" and reco.vertex.vertex_cm is None
    assert reco.visible_energy_mev == pytest.approx(noise.total_energy_mev, rel=1e-3)
    assert "No clear interaction vertex" in describe(noise, vlm=False).text
    c = classify_event(noise, vlm=False)
    assert sum(c.probabilities.values()) == pytest.approx(1.0, abs=1e-3) and c.truth_class is None
    fig = render(noise)
    assert "reco vertex" not in [t.name for t in fig.data]
    assert segment(noise).n_points == 80
    sim_hits = run_tool("find_similar", noise)
    assert len(sim_hits) == 2 and sim_hits.query_kind == "event"


# ============================================================================ PILArNet-M file
@pytest.fixture(scope="module")
def pilarnet_files(tmp_path_factory):
    """The real event written as PILArNet-M by the project's writer, and a copy without
    larsight's own datasets (as the dataset's files are)."""
    from conftest import REAL_EVENT_NPZ

    if REAL_EVENT_NPZ is None:
        pytest.skip("real PILArNet-M event not found (set LARSIGHT_SHARED to the shared folder)")
    with np.load(REAL_EVENT_NPZ) as d:
        pid = d["pid"].astype(np.int8)
        pid[pid == 5] = -1           # the npz's 'none' is the event model's -1
        ev = events.Event(points=d["voxels"].astype(np.float32) * np.float32(0.3),
                          energy=d["energy_mev"], semantic=d["semantic"],
                          particle=d["instance"].astype(np.int32), pid=pid)
    folder = tmp_path_factory.mktemp("pilarnet")
    path = folder / "pilarnet_m_7675.h5"
    assert events.write(path, [ev]) == 1
    bare = folder / "pilarnet_m_7675_bare.h5"
    shutil.copy(path, bare)
    with h5py.File(bare, "a") as f:
        for name in [n for n in f if n.startswith("larsight_")]:
            del f[name]
        for name in [a for a in f.attrs if a.startswith("larsight_")]:
            del f.attrs[name]
    with h5py.File(bare, "r") as f:
        assert {"point", "cluster"} <= set(f) and not any(n.startswith("larsight") for n in f)
    return path, bare


def test_every_tool_on_a_pilarnet_file(pilarnet_files, embedder, tmp_path):
    path, bare = pilarnet_files
    ref = f"{path}:0"
    seg = segment(ref)
    assert seg.source == ref and seg.n_points == 1390
    assert seg.total_energy_mev == pytest.approx(919.08, abs=0.1)
    assert seg.semantic_accuracy is not None and seg.semantic_accuracy > 0.6
    v = find_vertex(ref)
    assert v.source == ref and v.status in ("ok", "weak", "disagree", "no_vertex")
    if v.vertex_cm is not None:      # inside the 230.4 cm PILArNet-M cube
        assert all(0.0 <= c <= 230.4 for c in v.vertex_cm)
    reco = reconstruct(ref)
    assert reco.source == ref and reco.visible_energy_mev == pytest.approx(919.08, abs=0.1)
    assert len(reco.visible_particles()) >= 2
    c = classify_event(ref, vlm=False)
    assert c.source == ref and sum(c.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    d = describe(ref, vlm=False)
    assert ref in d.text and d.word_count <= 120 and d.topology == reco.topology
    out = tmp_path / "real.html"
    fig = render(ref, view="projections", out=out)
    assert ref in fig.layout.title.text and out.stat().st_size > 10_000
    idx = tmp_path / "index"
    build_index(str(path), idx, embedder=embedder, progress=False)
    hits = find_similar(ref, k=1, index=idx)
    assert hits.hits[0].key == f"{path.resolve()}:0" and hits.hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert hits.hits[0].n_points == 1390
    with pytest.raises(ToolInputError, match=rf"unknown event index 1: .*{path.name} holds 1 event "
                                             rf"\(valid indices 0\.\.0, or -1\.\.-1\)"):
        reconstruct(f"{path}:1")
    # the same event from a file without larsight's datasets: same points, same answers
    bare_ref = f"{bare}:0"
    bare_seg = segment(bare_ref)
    assert bare_seg.n_points == 1390 and bare_seg.source == bare_ref
    assert reconstruct(bare_ref).topology == reco.topology
    assert describe(bare, vlm=False).topology == reco.topology       # a one-event file needs no index


def test_tools_exports():
    for name in ("segment", "find_vertex", "reconstruct", "classify_event", "find_similar",
                 "describe", "render", "build_index", "EventIndex", "ToolInputError"):
        assert name in tools.__all__ and callable(getattr(tools, name))
    from larsight.tools import index_build, retrieval

    assert tools.build_index is index_build.build_index
    assert "parse_event_ref" in retrieval.__all__ and "parse_ref" not in retrieval.__all__
