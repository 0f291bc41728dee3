"""The `larsight` verbs of the events layer, driven as a user would (through ui.cli.main)."""
import numpy as np
import pytest

from larsight import events
from larsight.ui.cli import main


def test_simulate_convert_inspect_round_trip(tmp_path, capsys):
    h5, root, back = tmp_path / "nu.h5", tmp_path / "nu.root", tmp_path / "back.h5"
    assert main(["simulate", "--mode", "nu", "--n", "6", "--seed", "11", "--out", str(h5),
                 "--workers", "1"]) == 0
    assert events.formats.count(h5) == 6
    assert main(["convert", str(h5), str(root)]) == 0
    assert main(["convert", str(root), str(back)]) == 0
    for a, b, c in zip(events.read(h5), events.read(root), events.read(back)):
        assert a.equals(b) and a.equals(c)
    # the file holds exactly what the simulator makes for that seed
    assert events.read(h5, index=4).equals(events.sim.neutrino(seed=11, index=4))
    assert main(["inspect", str(root), "--plots", str(tmp_path / "plots")]) == 0
    assert "6 events" in capsys.readouterr().out
    assert (tmp_path / "plots" / "points_per_event.png").stat().st_size > 0


def test_simulate_on_a_coarser_grid(tmp_path):
    out = tmp_path / "mpv.root"
    assert main(["simulate", "--mode", "mpv", "--n", "3", "--seed", "2", "--out", str(out),
                 "--voxel-size", "0.6", "--workers", "1"]) == 0
    ev = events.read(out, index=0)
    assert ev.meta.volume.voxel_size_cm == pytest.approx(0.6)
    assert ev.meta.volume.shape == (384, 384, 384)
    idx = ev.voxel_indices()
    np.testing.assert_allclose(idx * 0.6, ev.points, atol=1e-4)


def test_bad_voxel_size_and_bad_input_are_clear_errors(tmp_path, capsys):
    assert main(["simulate", "--n", "1", "--out", str(tmp_path / "x.h5"), "--voxel-size", "0.7"]) == 2
    assert "does not divide" in capsys.readouterr().err
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    assert main(["convert", str(junk), str(tmp_path / "out.root")]) == 3
    err = capsys.readouterr().err
    assert "junk.h5" in err and "error" in err
    assert not (tmp_path / "out.root").exists()
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 3
