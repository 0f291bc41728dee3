"""The fuzz harness (evals/fuzz.py) on 300 mutated files: every damaged or forged file ends in a
clear one-line error naming it, a bounded hang, or a read that holds only valid data."""
import json

import pytest

from larsight.evals import fuzz


@pytest.fixture(scope="module")
def fuzz300(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    result = fuzz.run(300, seed=11, workers=1, timeout_s=3.0, work=work, progress=False)
    return result, work


def test_300_mutated_files_end_cleanly(fuzz300):
    result, _ = fuzz300
    summary = fuzz.summarise(result)
    total = summary["total"]
    assert sum(total.values()) == 300
    bad = [r for r in result["results"] if r["outcome"] in ("raw exception", "crash", "silently accepted")]
    assert not bad, bad[:5]
    assert total["clear error"] > 150  # the mutations do break most files
    assert summary["failures_without_file_name"] == 0
    assert summary["multi_line_messages"] == 0
    # every kind of mutation was exercised
    assert set(summary["by_kind"]) == set(fuzz.MUTATIONS)


def test_changed_but_valid_reads_come_only_from_files_without_checksums(fuzz300):
    result, _ = fuzz300
    for r in result["results"]:
        if r["outcome"] == "benign, changed" and r["kind"] not in ("bad_values", "h5_declared_length"):
            assert r["base"] in ("base_foreign.h5", "base.root") or "checksums removed" in r["mutation"] \
                or "larsight_crc32" in r["mutation"], r


def test_report_files(fuzz300, tmp_path):
    result, _ = fuzz300
    out = tmp_path / "fuzz.md"
    fuzz.write_report(result, out, "python -m larsight.evals.fuzz --n 300 --seed 11")
    text = out.read_text()
    assert "## Outcomes per mutation kind" in text and "--seed 11" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["summary"]["total"]["raw exception"] == 0
    assert "300 files: 0 raw exceptions" in data["headline"]


def test_independent_checks_flag_bad_values():
    import numpy as np

    from larsight.events import Event

    ev = Event(points=np.ones((2, 3), np.float32), energy=np.ones(2, np.float32))
    assert fuzz.violations(ev) == []
    object.__setattr__(ev, "energy", np.array([np.nan, 1.0], np.float32))
    assert "energy non-finite" in fuzz.violations(ev)
