"""events.display: plotly 3D figure, projections, atomic HTML, matplotlib PNGs."""
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from larsight.events.display import MAX_INSTANCE_TRACES, _atomic_write, plot_event, plot_projections, render_png, save_html
from larsight.events.model import PID_CLASSES, SEMANTIC_CLASSES, Event, Interaction, Particle


def labelled_event(n=300, seed=0, n_particles=3, with_vertex=True) -> Event:
    rng = np.random.default_rng(seed)
    pts = (rng.integers(100, 300, size=(n, 3)) * 0.3).astype(np.float32)
    particle = rng.integers(0, n_particles, n)
    pid_of = rng.integers(0, 5, n_particles)
    inter = [Interaction(id=0, vertex_cm=(60.0, 60.0, 60.0), nu_pdg=14, current="CC", channel="QE",
                         nu_energy_mev=1000.0, event_class="numu_cc")] if with_vertex else []
    return Event(points=pts, energy=rng.gamma(2.0, 0.5, n).astype(np.float32),
                 semantic=np.where(np.arange(n) < 5, -1, rng.integers(0, 3, n)),  # shower/track/michel + some -1
                 particle=particle, pid=pid_of[particle], interaction=np.zeros(n, int),
                 particles=[Particle(id=i, pid=int(pid_of[i]), pdg=13) for i in range(n_particles)],
                 interactions=inter)


def n_points(trace) -> int:
    return 0 if trace.x is None else len(trace.x)


def test_energy_figure_has_height_points_and_vertex():
    ev = labelled_event()
    fig = plot_event(ev, color_by="energy", height=640)
    assert fig.layout.height == 640
    names = [t.name for t in fig.data]
    assert names == ["energy", "truth vertex"]
    assert n_points(fig.data[0]) == len(ev)
    assert tuple(fig.data[1].x) == (60.0,)
    assert fig.data[0].marker.colorbar.title.text == "E [MeV]"
    # log colour scale: the colour is log10(E)
    np.testing.assert_allclose(sorted(fig.data[0].marker.color), sorted(np.log10(ev.energy)), rtol=1e-5)


def test_default_height_is_nonzero_and_scene_is_cubic():
    ev = labelled_event()
    fig = plot_event(ev)
    assert fig.layout.height and fig.layout.height > 0
    s = fig.layout.scene
    assert s.aspectmode == "cube"
    spans = [r[1] - r[0] for r in (s.xaxis.range, s.yaxis.range, s.zaxis.range)]
    assert spans[0] == pytest.approx(spans[1]) == pytest.approx(spans[2])
    lo, hi = ev.points.min(0), ev.points.max(0)
    for r, a, b in zip((s.xaxis.range, s.yaxis.range, s.zaxis.range), lo, hi):
        assert r[0] <= a and r[1] >= b


def test_semantic_legend_names_and_counts():
    ev = labelled_event()
    fig = plot_event(ev, color_by="semantic")
    traces = {t.name: t for t in fig.data if t.name != "truth vertex"}
    assert set(traces) == {"shower", "track", "michel", "unlabelled"}
    for k in (0, 1, 2):
        assert n_points(traces[SEMANTIC_CLASSES[k]]) == int((ev.semantic == k).sum())
    assert n_points(traces["unlabelled"]) == 5
    assert sum(n_points(t) for t in traces.values()) == len(ev)
    assert "semantic" in fig.data[0].hovertemplate and "MeV" in fig.data[0].hovertemplate


def test_pid_legend_uses_pid_class_names():
    ev = labelled_event(n_particles=5, seed=3)
    fig = plot_event(ev, color_by="pid")
    names = {t.name for t in fig.data} - {"truth vertex"}
    assert names == {PID_CLASSES[k] for k in np.unique(ev.pid)}


def test_particle_traces_are_capped():
    ev = labelled_event(n=2000, n_particles=MAX_INSTANCE_TRACES + 10, seed=4)
    fig = plot_event(ev, color_by="particle", max_points=1500)
    traces = [t for t in fig.data if t.name != "truth vertex"]
    assert len(traces) == MAX_INSTANCE_TRACES + 1
    assert traces[-1].name == "10 other particles"
    assert sum(n_points(t) for t in traces) == 1500
    assert traces[0].name.startswith("particle ")


def test_interaction_and_no_labels():
    ev = labelled_event(with_vertex=False)
    fig = plot_event(ev, color_by="interaction")
    assert [t.name for t in fig.data] == ["interaction 0"]
    bare = Event(points=ev.points, energy=ev.energy)
    fig = plot_event(bare, color_by="semantic")
    assert [t.name for t in fig.data] == ["unlabelled"]
    with pytest.raises(ValueError, match="color_by"):
        plot_event(ev, color_by="colour")


class Direction(BaseModel):
    kind: str = "segments"
    start: tuple[float, float, float]
    direction: tuple[float, float, float]
    length_cm: float = 10.0
    name: str = "reco direction"


def test_overlays_points_and_segments():
    ev = labelled_event()
    overlays = [
        {"points": [[50, 50, 50], [70, 70, 70]], "name": "reco vertices", "text": ["v0", "v1"]},
        {"kind": "segments", "segments": [[[50, 50, 50], [60, 50, 50]], [[50, 50, 50], [50, 60, 50]]],
         "name": "tracks", "color": "red"},
        Direction(start=(50, 50, 50), direction=(0, 0, 2)),
    ]
    fig = plot_event(ev, color_by="semantic", overlays=overlays)
    by_name = {t.name: t for t in fig.data}
    assert n_points(by_name["reco vertices"]) == 2
    assert by_name["tracks"].mode == "lines"
    assert list(by_name["tracks"].x) == [50, 60, None, 50, 50, None]
    assert list(by_name["reco direction"].z) == [50, 60, None]
    with pytest.raises(ValueError, match="kind"):
        plot_event(ev, overlays=[{"kind": "blob"}])


def test_plot_projections_two_heatmaps():
    ev = labelled_event()
    fig = plot_projections(ev, size=64)
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    assert np.asarray(fig.data[0].z).shape == (64, 64)
    assert fig.layout.height > 0
    assert np.nansum(np.asarray(fig.data[0].customdata, dtype=float)) == pytest.approx(ev.total_energy_mev, rel=1e-5)


def test_save_html_atomic(tmp_path):
    ev = labelled_event()
    path = tmp_path / "sub" / "ev.html"
    save_html(plot_event(ev, color_by="semantic"), path, include_plotlyjs="cdn")
    text = path.read_text()
    assert "plotly" in text.lower() and "shower" in text
    assert os.listdir(path.parent) == ["ev.html"]
    # a failing write leaves the old file and no temp file
    def boom(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        _atomic_write(path, boom)
    assert path.read_text() == text
    assert os.listdir(path.parent) == ["ev.html"]


@pytest.mark.parametrize("color_by", ["semantic", "energy", "pid", "particle", "interaction"])
def test_render_png(tmp_path, color_by):
    ev = labelled_event()
    out = render_png(ev, tmp_path / f"ev_{color_by}.png", color_by=color_by)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert sorted(os.listdir(tmp_path)) == [f"ev_{color_by}.png"]


def test_real_event_displays(tmp_path, real_event):
    ev = real_event
    fig = plot_event(ev, color_by="semantic")
    counts = {t.name: n_points(t) for t in fig.data}
    assert counts == {"shower": 571, "track": 706, "low_energy": 113}
    fig = plot_event(ev, color_by="particle")
    assert len(fig.data) == 11                              # 10 particles + unassigned voxels
    out = render_png(ev, tmp_path / "real.png", color_by="semantic")
    assert out.read_bytes()[:4] == b"\x89PNG"
    from larsight.events.projections import pixel_maps

    maps = pixel_maps(ev, size=512)
    assert maps[0].sum() == pytest.approx(ev.total_energy_mev, rel=1e-5)
