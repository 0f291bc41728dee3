"""The feedback benchmark (evals/feedback_bench.py) on a small database: it fills the store with
items of every kind, times review and export, and writes its report. Timings are reported, never
asserted (tests/ never assert on wall-clock time)."""
import json

from larsight.agent.feedback import FeedbackStore


def test_bench_builds_times_and_reports(tmp_path):
    from larsight.evals.feedback_bench import main, run

    db = tmp_path / "fb.sqlite"
    res = run(db, 300, repeats=1, cli=False)
    with FeedbackStore(db) as s:
        counts = s.counts()
    assert sum(counts.values()) == 300 and counts["reviewed"] > 0 and counts["new"] > 0
    kinds = res["export"]["dpo"]["pairs_by_kind"]
    assert kinds.get("model_correction", 0) > 50 and kinds.get("ranking", 0) > 0
    assert res["export"]["dpo"]["tool_errors"] > 100
    assert res["export"]["jsonl"]["lines"] == 300
    assert {"list (50 newest)", "export dpo (all items)", "export jsonl (all items)"} <= set(res["timings"])
    assert any("ix_feedback_status_id" in plan for name, plan in res["plans"] if name == "list --status")

    out = tmp_path / "bench.md"
    assert main(["--n", "300", "--db", str(db), "--repeats", "1", "--no-cli", "--out", str(out)]) == 0   # reuses the db
    text = out.read_text()
    assert "| list (50 newest) |" in text and "| export dpo (all items) |" in text and "300 feedback items" in text
    assert "build" not in json.loads(out.with_suffix(".json").read_text())     # reused, not rebuilt
