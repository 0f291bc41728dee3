"""ui.demo: the summary helpers, and the demo end to end on simulated events (library and CLI)."""
import io

import numpy as np

from larsight.events.formats import count, read
from larsight.events.model import Event, Particle
from larsight.ui.cli import main
from larsight.ui.demo import format_table, particle_content, run_demo


def test_particle_content_counts_visible_primaries():
    parts = [Particle(id=0, pdg=13), Particle(id=1, pdg=2212), Particle(id=2, pdg=2212),
             Particle(id=3, pdg=111), Particle(id=4, pdg=2112), Particle(id=5, pdg=14),
             Particle(id=6, pdg=22, parent=3), Particle(id=7, pdg=-211)]
    ev = Event(points=np.zeros((1, 3), np.float32), energy=np.ones(1, np.float32), particles=parts)
    assert particle_content(ev) == "1mu 2p 1pi 1pi0"


def test_format_table_aligns():
    t = format_table([{"a": "1", "bb": "xyz"}, {"a": "long", "bb": "z"}]).splitlines()
    assert t == ["a     bb", "----  ---", "1     xyz", "long  z"]


def test_demo_end_to_end(tmp_path):
    out = io.StringIO()
    rows = run_demo(tmp_path / "demo", n=2, seed=7, stream=out)
    text = out.getvalue()
    assert len(rows) == 2
    for i, row in enumerate(rows):
        assert row["class"] in ("nue_cc", "numu_cc", "nc")
        assert int(row["points"]) > 0 and float(row["E_vis [MeV]"]) > 0
        html = tmp_path / "demo" / f"event_{i}.html"
        assert html.exists() and "plotly" in html.read_text()[:100000].lower()
        assert (tmp_path / "demo" / f"event_{i}.png").read_bytes()[:4] == b"\x89PNG"
        assert row["class"] in text
    assert "wrote 2 events" in text and str((tmp_path / "demo").resolve()) in text
    h5 = tmp_path / "demo" / "events.h5"
    assert count(h5) == 2
    assert [len(ev) for ev in read(h5)] == [int(r["points"]) for r in rows]


def test_cli_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--n", "1", "--seed", "3"]) == 0
    assert "wrote 1 events" in capsys.readouterr().out
    assert (tmp_path / "d" / "event_0.html").exists()
