"""`larsight promote`: a trained VLM folder reaches checkpoints/ only when two agent-eval runs
of the same suite, that measured the old and the new folder, show no metric got worse."""
import json
from pathlib import Path

import pytest

from larsight.evals.promote import PromotionError, folder_digest, promote


def _vlm_folder(path: Path, payload: bytes) -> Path:
    (path / "adapter").mkdir(parents=True)
    (path / "adapter" / "adapter_model.safetensors").write_bytes(payload)
    (path / "vlm.json").write_text(json.dumps({"kind": "align-actions", "step": 1}))
    return path


def _run(path: Path, folder: Path, acc: float, tools: float = 1.0, cases: int = 400, suite: str = "s1") -> str:
    path.mkdir(parents=True)
    report = {"overall": {"cases": cases, "answer_accuracy": acc, "tool_selection": tools, "contradiction_rate": 0.0},
              "per_tag": {}, "cases": {},
              "meta": {"brain": "vlm", "suite_hash": suite,
                       "models": {"action_vlm": f"{folder}@{folder_digest(folder)}"}}}
    (path / "report.json").write_text(json.dumps(report))
    return str(path)


@pytest.fixture
def folders(tmp_path):
    old = _vlm_folder(tmp_path / "checkpoints" / "vlm_actions", b"old weights")
    new = _vlm_folder(tmp_path / "run" / "vlm", b"new weights")
    return old, new


def test_no_worse_candidate_is_promoted_with_a_record(folders, tmp_path):
    old, new = folders
    base = _run(tmp_path / "eval_old", old, 0.80)
    cand = _run(tmp_path / "eval_new", new, 0.83)
    rec = promote(str(new), str(old), base, cand)
    assert rec["decision"] == "promoted"
    assert (old / "adapter" / "adapter_model.safetensors").read_bytes() == b"new weights"
    manifest = json.loads((old / "vlm.json").read_text())
    assert manifest["promoted"]["candidate_run"] == cand and (old / "promotion.md").is_file()
    assert not list(old.parent.glob(".vlm_actions.*"))     # no temporary folders left behind


def test_worse_candidate_is_refused_and_nothing_changes(folders, tmp_path):
    old, new = folders
    base = _run(tmp_path / "eval_old", old, 0.80)
    cand = _run(tmp_path / "eval_new", new, 0.74)          # 6 points: beyond 2 SE of 400 cases (0.04)
    rec = promote(str(new), str(old), base, cand)
    assert rec["decision"] == "refused"
    assert (old / "adapter" / "adapter_model.safetensors").read_bytes() == b"old weights"
    assert [r["metric"] for r in rec["gate"] if r["worse"]] == ["answer_accuracy"]
    # within the noise: allowed
    cand2 = _run(tmp_path / "eval_new2", new, 0.78)
    assert promote(str(new), str(old), base, cand2, dry_run=True)["decision"] == "dry run: would be promoted"
    rec = promote(str(new), str(old), base, cand, force=True)
    assert rec["decision"] == "promoted with --force"
    assert json.loads((old / "vlm.json").read_text())["promoted"]["decision"] == "promoted with --force"


def test_runs_must_have_measured_the_folders_on_one_suite(folders, tmp_path):
    old, new = folders
    base = _run(tmp_path / "eval_old", old, 0.80)
    wrong = _run(tmp_path / "eval_wrong", old, 0.90)       # measured the old folder, not the candidate
    with pytest.raises(PromotionError, match="did not measure"):
        promote(str(new), str(old), base, wrong)
    other = _run(tmp_path / "eval_other", new, 0.90, suite="s2")
    with pytest.raises(PromotionError, match="different suites"):
        promote(str(new), str(old), base, other)
    with pytest.raises(PromotionError, match="not a VLM folder"):
        promote(str(tmp_path), str(old), base, wrong)


def test_agent_eval_runs_record_the_action_model_they_measured(folders, monkeypatch):
    from larsight.evals.agent_eval.runner import models_of

    old, new = folders
    monkeypatch.delenv("LARSIGHT_VLM_POLICY", raising=False)
    got = models_of("vlm", {"policy": "actions", "action_vlm": str(new)})
    assert got["action_vlm"] == f"{new}@{folder_digest(new)}" and "vlm" in got and "encoder" in got
    assert "action_vlm" not in models_of("vlm", {}) and set(models_of("rules", None)) == {"encoder"}
