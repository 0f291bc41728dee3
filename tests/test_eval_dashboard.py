"""evals.dashboard (the index page, report selection) and evals.compare (what changed between
two agent runs or two report JSONs), and their `larsight eval` verbs."""
import json


from larsight.agent import RulesBrain
from larsight.evals import dashboard
from larsight.evals.agent_eval.report import write_side_by_side
from larsight.evals.agent_eval.runner import rescored_runs
from larsight.evals.compare import compare
from larsight.ui.cli import main as larsight

from helpers.agent_eval import ErringBrain, FlakyBrain, run, small_suite, write_suite


def test_index_page_lists_headlines_commands_and_seeds(tmp_path):
    (tmp_path / "simulator").mkdir()
    (tmp_path / "simulator" / "ranges_bragg.png").write_bytes(b"png")
    (tmp_path / "simulator.md").write_text(
        "# Simulator\n\nProduced by `python -m larsight.evals.simulator_report --seed 2026 --n 200`.\n\n"
        "| mode | events/s (1 core) | ms/event (1 core) | events/s (2 cores) |\n| --- | --- | --- | --- |\n"
        "| nu | 79.0 | 12.7 | 101.4 |\n")
    (tmp_path / "classification.md").write_text("# Classification\n\nRegenerate: `python -m larsight.evals.classification_report`\n")
    (tmp_path / "classification.json").write_text(json.dumps(
        {"meta": {"command": "python -m larsight.evals.classification_report", "seed": 0},
         "table1": {"vlm": {"accuracy": 0.8355, "auc": 0.922}, "cnn": {"accuracy": 0.856, "auc": 0.947}}}))
    (tmp_path / "agent.md").write_text("# Agent\n")
    (tmp_path / "agent.json").write_text(json.dumps(
        {"commands": ["larsight eval agent --brain vlm,rules --k 3"],
         "runs": {"vlm": {"k": 3, "overall": {"answer_accuracy": 0.7, "pass^3": 0.65, "tool_selection": 0.97,
                                              "answers_with_contradiction": 0.0}}}}))
    path = dashboard.build_index(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "README.md"
    assert "nu events/s: 79.0 (1 core), 101.4 (2 cores)" in text and "| 2026 |" in text
    assert "vlm acc 0.836 / AUC 0.922; cnn acc 0.856" in text
    assert "`larsight eval agent --brain vlm,rules --k 3`" in text and "pass^3 0.650" in text
    assert "![Simulator: speed and physics validation](simulator/ranges_bragg.png)" in text
    # reports not generated yet are listed with the command that makes them
    assert "not generated yet (`larsight eval all --only encoder`)" in text


def test_eval_all_selects_reports_and_dry_runs(capsys):
    assert larsight(["eval", "all", "--only", "simulator,agent", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "python -m larsight.evals.simulator_report --seed 2026 --n 200"
    assert out[1].startswith("python -m larsight.evals.agent_eval --brain vlm,rules --k 3")
    others = ",".join(n for n in dashboard.NAMES if n != "simulator")   # every report but one
    assert larsight(["eval", "all", "--skip", others, "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["python -m larsight.evals.simulator_report --seed 2026 --n 200"]
    assert larsight(["eval", "all", "--only", "nonsense", "--dry-run"]) == 2
    assert "unknown report(s) ['nonsense']" in capsys.readouterr().err


def test_compare_two_agent_runs_names_the_changed_cases(tmp_path, ref, capsys):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    run(tmp_path, suite, RulesBrain(), k=3, name="a")
    run(tmp_path, suite, FlakyBrain(), k=3, name="b")
    text = compare(str(tmp_path / "a"), str(tmp_path / "b"))
    assert "| answer_accuracy | 0.833 | 0.556 | -0.278 worse |" in text
    assert "5 got worse, 0 got better" in text
    assert "| c1 | classification | 1.00 | 0.67 | - | brain_error |" in text
    assert "| brain_error | 0 | 6 |" in text and "| measurement:reconstruct | 3 | 2 |" in text
    # the same through the command line, also written to a file
    out = tmp_path / "cmp.md"
    assert larsight(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert "5 got worse" in capsys.readouterr().out and "5 got worse" in out.read_text()


def test_compare_generic_reports_and_errors(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"meta": {"n": 10}, "acc": {"x": 0.5, "y": 0.25}, "list": [1, 2], "same": 3}))
    b.write_text(json.dumps({"meta": {"n": 10}, "acc": {"x": 0.75, "y": 0.25}, "list": [1, 4], "new": 1, "same": 3}))
    text = compare(str(a), str(b))
    assert "2 numeric values differ; 0 only in A, 1 only in B." in text
    assert "| list[1] | 2 | 4 | +2 (100.0%) |" in text and "| acc.x | 0.5 | 0.75 | +0.25 (50.0%) |" in text
    assert text.index("list[1]") < text.index("acc.x")   # largest relative change first
    assert larsight(["eval", "compare", str(a), str(tmp_path / "missing.json")]) == 3   # an unreadable input
    assert "missing.json" in capsys.readouterr().err


def test_larsight_eval_agent_reports_a_bad_suite_line(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "tags": ["counting"], "turns": [{"question": "How many?"}]}\nnot json\n')
    assert larsight(["eval", "agent", "--suite", str(p), "--brain", "rules", "--out", str(tmp_path / "o"),
                     "--no-report", "--no-progress"]) == 2
    assert f"{p}:2: not valid JSON" in capsys.readouterr().err


def test_side_by_side_report(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    run(tmp_path, suite, RulesBrain(), k=2, name="r")
    run(tmp_path, suite, ErringBrain(), k=2, name="e")
    dirs = [tmp_path / "r", tmp_path / "e"]
    md = write_side_by_side(rescored_runs(dirs), dirs, tmp_path / "rep" / "agent", commands=["cmd"])
    text = md.read_text()
    assert "| metric | rules | erring |" in text
    assert "| answer accuracy, all cases | 0.833 | 0.000 |" in text
    assert "| erring | irrelevant questions answered without tools | >= 0.9 | 1.000 | met |" in text
    assert "| rules | answer accuracy, counting | >= 0.9 | 0.000 | missed (short by 0.900) - failed trials by cause: measurement:reconstruct 2/2 |" in text
    assert (tmp_path / "rep" / "agent" / "accuracy_by_tag.png").exists()
    js = json.loads((tmp_path / "rep" / "agent.json").read_text())
    assert set(js["runs"]) == {"rules", "erring"} and js["commands"] == ["cmd"]
