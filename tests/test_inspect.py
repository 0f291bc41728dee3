"""events.inspect on a small hand-written file: counts, fractions, PNGs, the CLI verb."""
import numpy as np
import pytest

from larsight.events.formats import count, read, write
from larsight.events.inspect import inspect
from larsight.events.model import Event, EventMeta, Interaction
from larsight.ui.cli import main


def hand_events():
    """3 events: 4, 6 and 10 points; known semantic / PID labels and classes."""
    out = []
    specs = [(4, 0, 1, "nue_cc"), (6, 1, 2, "numu_cc"), (10, 1, 2, "numu_cc")]
    for i, (n, sem, pid, cls) in enumerate(specs):
        pts = (np.arange(n * 3).reshape(n, 3) % 700 * 0.3 + 30).astype(np.float32)
        semantic = np.full(n, sem)
        semantic[0] = 4                       # one low-energy voxel per event
        out.append(Event(points=pts, energy=np.full(n, 2.0, np.float32), semantic=semantic,
                         particle=np.zeros(n, int), interaction=np.zeros(n, int), pid=np.full(n, pid),
                         interactions=[Interaction(id=0, vertex_cm=(30.0, 30.0, 30.0), event_class=cls,
                                                   current="NC" if cls == "nc" else "CC", channel="QE",
                                                   nu_pdg=12 if cls == "nue_cc" else 14, nu_energy_mev=900.0)],
                         meta=EventMeta(event_id=i)))
    return out


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.h5"
    assert write(path, hand_events()) == 3
    assert count(path) == 3
    back = read(path, index=0)
    assert len(back) == 4 and back.event_class == "nue_cc"
    return path


def test_inspect_counts_fractions_and_plots(small_file, tmp_path):
    out = tmp_path / "plots"
    rep = inspect(small_file, out_dir=out, progress=False)
    assert rep.n_events == 3 and rep.n_events_in_file == 3
    assert rep.n_points_total == 20
    assert rep.points_per_event.min == 4 and rep.points_per_event.max == 10
    assert rep.points_per_event.median == 6
    assert rep.energy_per_event_mev.mean == pytest.approx(2.0 * 20 / 3)
    # semantic: 3 low-energy voxels, 3 shower (event 0), 14 track
    assert rep.semantic_fraction_voxels == pytest.approx({"shower": 3 / 20, "track": 14 / 20, "low_energy": 3 / 20})
    assert rep.semantic_fraction_energy == pytest.approx(rep.semantic_fraction_voxels)
    assert rep.pid_fraction_voxels == pytest.approx({"electron": 4 / 20, "muon": 16 / 20})
    assert rep.event_class_counts == {"nue_cc": 1, "numu_cc": 2}
    names = sorted(p.name for p in out.iterdir())
    for expected in ("points_per_event.png", "energy_spectra.png", "class_fractions.png", "event_0.png"):
        assert expected in names
        assert (out / expected).read_bytes()[:4] == b"\x89PNG"
    assert sorted(str(p) for p in out.iterdir() if p.suffix == ".png") == sorted(rep.plots)
    text = str(rep)
    assert "3 events" in text and "track" in text and "numu_cc 2" in text


def test_inspect_default_dir_and_max_events(small_file):
    rep = inspect(small_file, max_events=2, progress=False)
    assert rep.n_events == 2 and rep.n_points_total == 10
    assert "of 3 in the file" in str(rep)
    default = small_file.with_name("small.h5.inspect")
    assert rep.out_dir == str(default) and (default / "event_0.png").exists()


def test_cli_inspect(small_file, tmp_path, capsys):
    assert main(["inspect", str(small_file), "--plots", str(tmp_path / "cli")]) == 0
    assert "3 events" in capsys.readouterr().out
    assert (tmp_path / "cli" / "class_fractions.png").exists()


def test_inspect_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect(tmp_path / "nope.h5")
