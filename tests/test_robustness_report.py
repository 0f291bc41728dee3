"""The robustness report (evals/robustness_report.py) at tiny sizes on the shipped checkpoint."""
import json
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from larsight.encoder.inference import DEFAULT_CHECKPOINT  # noqa: E402
from larsight.evals import dashboard, robustness_md  # noqa: E402
from larsight.evals import robustness_report as R  # noqa: E402
from larsight.events.sim.knobs import SPEC_BY_NAME  # noqa: E402

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="shipped encoder checkpoint missing")


def test_knob_settings_take_both_ends_and_skip_the_default():
    names = {s.name: s for s in R.knob_settings(["energy_scale", "dead_fraction", "recombination_model"])}
    spec = SPEC_BY_NAME["energy_scale"]
    assert names[f"energy_scale={spec.lo:g}"].knobs == {"energy_scale": spec.lo}
    assert names[f"energy_scale={spec.hi:g}"].end == "high"
    # dead_fraction's low end is its default (= in-domain): only the high end is a setting
    assert [n for n in names if n.startswith("dead_fraction")] == [f"dead_fraction={SPEC_BY_NAME['dead_fraction'].hi:g}"]
    assert "recombination_model=birks" in names and "recombination_model=box" not in names


def test_unknown_knob_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        R.main(["--n", "1", "--knobs", "energy_scale,no_such_knob", "--out", str(tmp_path), "--work", str(tmp_path)])
    msg = str(e.value)
    assert "no_such_knob" in msg and "energy_scale" in msg and "\n" not in msg
    assert not (tmp_path / "robustness.md").exists()


def test_bad_n_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        R.parse(["--n", "0"])
    assert "--n must be >= 1" in capsys.readouterr().err


def test_report_sections_drops_and_cache(tmp_path, monkeypatch):
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["--n", "3", "--knobs", "energy_scale,dead_fraction", "--out", str(out), "--work", str(work),
            "--no-progress"]
    calls = []
    real = R.evaluate_setting
    monkeypatch.setattr(R, "evaluate_setting", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    R.main(argv)
    md = (out / "robustness.md").read_text()
    for section in ("**command**", "checkpoint", "wall time", "machine", "## Robustness target", "## Targets",
                    "## Every setting", "## Plots", "in-domain", "energy_scale=0.9", "energy_scale=1.1",
                    "dead_fraction=0.05", "coarse grid 0.6 cm", "| semantic macro-F1 |", ">= 0.92"):
        assert section in md, section
    for png in ("macro_f1_drop.png", "event_accuracy_drop.png"):
        assert (out / "robustness" / png).stat().st_size > 1000
    doc = json.loads((out / "robustness.json").read_text())
    res = doc["results"]
    # the drop is setting minus in-domain, recomputed from the per-setting metrics
    for name in ("energy_scale=0.9", "coarse grid 0.6 cm"):
        for key in ("macro_f1", "event_accuracy", "accuracy"):
            assert doc["drops"][name][key] == pytest.approx(res[name][key] - res["in-domain"][key])
    assert doc["drops"]["in-domain"]["macro_f1"] == 0
    failing = {n for n, d in doc["drops"].items()
               if n not in ("in-domain", "real PILArNet-M event") and min(d["macro_f1"], d["event_accuracy"]) < -0.03 - 1e-9}
    assert set(doc["failing"]) == failing
    assert res["in-domain"]["events"] == 3 and 0 <= res["in-domain"]["macro_f1"] <= 1
    assert len(calls) == len(doc["setting_list"]) >= 5
    # a cached rerun computes nothing and the cache files are untouched
    stamps = {p: p.stat().st_mtime_ns for p in work.iterdir()}
    calls.clear()
    R.main(argv)
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    assert json.loads((out / "robustness.json").read_text())["results"] == res
    # another n is another cache key: computed again
    R.main(argv[:1] + ["2"] + argv[2:] + ["--no-coarse", "--no-real"])
    assert calls and set(calls) <= {"in-domain", "energy_scale=0.9", "energy_scale=1.1", "dead_fraction=0.05"}


def test_targets_table_reports_shortfalls():
    rows = robustness_md.target_rows({"in-domain": {"macro_f1": 0.90, "vertex_median_cm": 1.5,
                                                    "f1": {"track": 0.99}}})
    by = {r["label"]: r for r in rows}
    assert by["semantic macro-F1"]["met"] is False and by["semantic macro-F1"]["shortfall"] == pytest.approx(0.02)
    assert by["vertex median (cm)"]["shortfall"] == pytest.approx(0.5)
    assert by["track F1"]["met"] is True and by["track F1"]["shortfall"] == 0
    assert by["particle ARI"]["value"] is None


def test_exactly_three_points_passes_and_more_fails():
    assert not robustness_md.fails({"macro_f1": 0.84 - 0.87, "event_accuracy": 0.0})
    assert robustness_md.fails({"macro_f1": 0.0, "event_accuracy": -0.031})
    assert not robustness_md.fails({"macro_f1": None, "event_accuracy": 0.02})


def test_registered_in_eval_all():
    r = next(r for r in dashboard.REPORTS if r.name == "robustness")
    assert r.module == "larsight.evals.robustness_report" and r.md == "robustness.md"
    assert "--quick" in r.quick(dashboard.QUICK_DIR)
