"""The preference stage (issue 19, item 3): DPO on the VLM's LoRA adapters from expert feedback.
The loss on hand-made numbers, a feedback database -> export -> 2 DPO steps on a tiny VLM,
exact --resume, the manifest naming the feedback, and the errors on bad feedback."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from larsight.agent.feedback import FeedbackStore, export
from larsight.encoder.data import DataSpec, take
from larsight.qformer.align_prefs import (PrefsConfig, PrefsInputError, PrefsIO, align_prefs, dpo_loss, read_pairs,
                                          split_by_answer)

from helpers.vlm import make_vlm, save_micro_encoder, save_tiny_lm

torch.set_num_threads(1)

REF = "sim:nu:seed=5:voxel=0.6:index={}"


def _prompt(i: int, measured: float) -> str:
    return f"Observations:\nreconstruct: muon {measured:.1f} cm\nQuestion: How long is the muon? (event {i})"


def _answer(i: int, said: float, measured: float) -> dict:
    """An answer of the VLM brain as JSON (as agent.Answer dumps): a typed claim of the tool's
    measurement, the VLM's own text (which says ``said`` cm) with the prompt it wrote it from."""
    ref = REF.format(i)
    text = f"The muon track is {said:g} cm long."
    return {"question": "How long is the muon?", "event": ref, "brain": "vlm", "thread_id": None,
            "text": f"The longest track is a muon of {measured} cm. The VLM explains: {text}",
            "claims": [{"claim": {"kind": "track_length", "subject": "muon", "value": measured, "unit": "cm",
                                  "qualifier": "longest"}, "verdict": "supported", "tool": "reconstruct"}],
            "steps": [{"index": 1, "node": "observe", "call": {
                "tool": "reconstruct", "arguments": {"event": ref}, "ok": True, "purpose": "action", "event": ref,
                "output": {"particles": [{"type": "muon", "length_cm": measured}]}}},
                {"index": 2, "node": "compose", "text": text,
                 "free_text": {"text": text, "author": "vlm", "prompt": _prompt(i, measured)}}]}


@pytest.fixture(scope="module")
def events():
    return take(DataSpec(modes="nu", seed=5, voxel_size_cm=0.6), "eval", 3, min_points=8)


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory, smollm2_dir):
    d = tmp_path_factory.mktemp("prefs")
    lm = save_tiny_lm(d / "lm", smollm2_dir)
    enc = save_micro_encoder(d / "encoder.safetensors")
    vlm = make_vlm(lm, enc, quantization="none", lora=True)
    with torch.no_grad():      # non-trivial adapters, so a lost or unchanged adapter shows
        for n, p in vlm.lm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return vlm.save_pretrained(d / "vlm0")


@pytest.fixture(scope="module")
def feedback_db(tmp_path_factory):
    """Six answers on three events whose VLM text mis-copies the measured length (52 + i cm),
    each corrected to it (model errors); one about an event that cannot be loaded; one whose
    tool measurement was wrong (a tool error: no pair)."""
    path = tmp_path_factory.mktemp("fb") / "feedback.sqlite"
    store = FeedbackStore(path)
    for i, said in enumerate([25.3, 61.0, 12.5, 30.2, 70.7, 8.8]):
        aid = store.record_answer(_answer(i % 3, said, 52.0 + i))
        store.add({"answer_id": aid, "verdict": "down", "author": "kt",
                   "corrections": [{"claim": 0, "of": "first_draft", "value": 52 + i, "unit": "cm"}]})
    bad = _answer(0, 40.0, 10.0) | {"event": "event:deadbeef"}
    store.add({"answer_id": store.record_answer(bad), "verdict": "down",
               "corrections": [{"claim": 0, "of": "first_draft", "value": 10, "unit": "cm"}]})
    faithful = _answer(1, 30.0, 30.0)
    store.add({"answer_id": store.record_answer(faithful), "verdict": "down",
               "corrections": [{"claim": 0, "value": 44, "unit": "cm"}]})
    store.close()
    return path


def _io(events, prompts: list | None = None):
    def load(ref):
        if not ref.startswith("sim:"):
            raise KeyError(ref)
        return events[int(ref.rsplit("=", 1)[1])]

    def build(question, tools):
        prompts is not None and prompts.append((question, tools))
        return f"{question} measured: {json.dumps(tools[0]['output'])[:60]}"

    def export_db(src, out):
        store = FeedbackStore(src)
        try:
            return export(store, out, fmt="dpo").model_dump()
        finally:
            store.close()

    return PrefsIO(load_event=load, build_prompt=build, export_db=export_db, prompt_name="test prompt")


def _cfg(run, src, init, **kw):
    base = dict(run_dir=str(run), feedback=str(src), init=str(init), steps=2, batch_size=2, lr=5e-3, warmup=1,
                eval_fraction=0.2, ckpt_every=1, log_every=1)
    return PrefsConfig(**(base | kw))


def _adapters(run):
    return load_file(str(run / "vlm" / "adapter" / "adapter_model.safetensors"))


# ============================================================================ the loss
def test_dpo_loss_sign_and_value_on_a_hand_made_case():
    ref_c, ref_r = torch.tensor([-10.0]), torch.tensor([-12.0])
    # the policy raised the chosen answer and lowered the rejected one relative to the reference
    loss, margin = dpo_loss(torch.tensor([-9.0]), torch.tensor([-13.0]), ref_c, ref_r, beta=0.1)
    assert margin.item() == pytest.approx(0.1 * ((-9 + 10) - (-13 + 12)))
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.2))), rel=1e-6)
    assert loss.item() < math.log(2)
    # the policy equals the reference: log 2; the other way round: above log 2
    same, m0 = dpo_loss(ref_c, ref_r, ref_c, ref_r, beta=0.1)
    assert same.item() == pytest.approx(math.log(2)) and m0.item() == 0
    worse, _ = dpo_loss(torch.tensor([-11.0]), torch.tensor([-11.0]), ref_c, ref_r, beta=0.1)
    assert worse.item() > math.log(2)


def test_split_holds_out_whole_answers_independent_of_order():
    ids = [f"a{i}" for i in range(20)]
    held = split_by_answer(ids, 0.1, seed=0)
    assert len(held) == 2 and held == split_by_answer(list(reversed(ids)) * 2, 0.1, seed=0)
    assert split_by_answer(ids, 0.1, seed=1) != held
    assert split_by_answer(["a", "b"], 0.9, seed=0) and len(split_by_answer(["a", "b"], 0.9, seed=0)) == 1
    assert split_by_answer(["a"], 0.5, seed=0) == set() and split_by_answer(ids, 0.0, seed=0) == set()


def test_dpo_export_lines_are_the_models_own_text_with_its_prompt(feedback_db, tmp_path):
    store = FeedbackStore(feedback_db)
    try:
        rep = export(store, tmp_path / "p.jsonl", fmt="dpo")
    finally:
        store.close()
    pairs = read_pairs(tmp_path / "p.jsonl")
    assert len(pairs) == 7 and rep.tool_errors == 1 and {p["kind"] for p in pairs} == {"model_correction"}
    assert pairs[0]["event"] == REF.format(0) and pairs[0]["question"] == "How long is the muon?"
    assert pairs[0]["prompt"] == _prompt(0, 52.0) and "tools" not in pairs[0]
    assert (pairs[0]["chosen"], pairs[0]["rejected"]) == ("The muon track is 52.0 cm long.", "The muon track is 25.3 cm long.")


# ============================================================================ training
def test_two_steps_from_a_feedback_database_write_the_manifest_and_eval(vlm_dir, feedback_db, events, tmp_path):
    prompts: list = []
    run = tmp_path / "run"
    summary = align_prefs(_cfg(run, feedback_db, vlm_dir), _io(events, prompts), command="larsight align --stage prefs")
    assert summary["step"] == 2 and summary["pairs"] == 6 and summary["train_pairs"] + summary["heldout_pairs"] == 6
    assert prompts == []                       # the stored prompts, not rebuilt from the tools
    prepared = json.loads((run / "prepared" / "pairs.json").read_text())["pairs"]
    assert {p["prompt"] for p in prepared} == {_prompt(i % 3, 52.0 + i) for i in range(6)}
    man = json.loads((run / "vlm" / "vlm.json").read_text())
    fb = man["feedback"]
    assert fb["pairs_by_kind"] == {"model_correction": 6} and fb["tool_errors_left_out"] == 1
    assert summary["feedback"]["pairs_by_kind"] == {"model_correction": 6}
    assert man["kind"] == "align-prefs" and man["beta"] == 0.1 and man["steps"] == 2 and man["has_adapter"]
    assert fb["type"] == "database" and fb["source"] == str(feedback_db.resolve())
    assert fb["n_feedback"] == 6 and len(fb["feedback_ids"]) == 6 and fb["skipped"] == {"event cannot be loaded": 1}
    assert fb["prompt"] == "test prompt" and man["init"] == str(vlm_dir) and "--stage prefs" in man["command"]
    ev = json.loads((run / "eval.json").read_text())
    assert ev["before"]["heldout"]["mean_reward_margin"] == 0.0 and ev["after"]["step"] == 2
    assert man["eval"]["after"]["heldout"] == ev["after"]["heldout"]
    # the adapters moved; the starting folder did not
    before = load_file(str(vlm_dir / "adapter" / "adapter_model.safetensors"))
    after = _adapters(run)
    assert set(before) == set(after) and any(not torch.equal(before[k], after[k]) for k in before)
    # on the training pairs the DPO loss went down from log 2
    assert ev["after"]["train"]["dpo_loss"] < ev["before"]["train"]["dpo_loss"] == pytest.approx(math.log(2), abs=1e-4)


def test_resume_continues_exactly(vlm_dir, feedback_db, events, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    align_prefs(_cfg(a, feedback_db, vlm_dir), _io(events))
    align_prefs(_cfg(b, feedback_db, vlm_dir, stop_at=1), _io(events))
    assert json.loads((b / "vlm" / "vlm.json").read_text())["step"] == 1
    # the pairs are read from the run folder on resume: a changed source does not matter
    align_prefs(_cfg(b, tmp_path / "gone.jsonl", vlm_dir, resume=True), _io(events))
    wa, wb = _adapters(a), _adapters(b)
    assert json.loads((b / "vlm" / "vlm.json").read_text())["step"] == 2
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_dpo_file_is_named_by_its_sha256(vlm_dir, feedback_db, events, tmp_path):
    store = FeedbackStore(feedback_db)
    try:
        export(store, tmp_path / "p.jsonl", fmt="dpo")
    finally:
        store.close()
    run = tmp_path / "run"
    align_prefs(_cfg(run, tmp_path / "p.jsonl", vlm_dir, steps=1, limit=3, eval_fraction=0.0), _io(events))
    fb = json.loads((run / "vlm" / "vlm.json").read_text())["feedback"]
    import hashlib
    assert fb["type"] == "file" and fb["sha256"] == hashlib.sha256((tmp_path / "p.jsonl").read_bytes()).hexdigest()
    assert fb["pairs_used"] == 3 and fb["n_feedback"] == 3


def test_whole_answer_pairs_are_skipped_and_a_pair_without_prompt_gets_one_built(vlm_dir, events, tmp_path):
    tools = [{"tool": "reconstruct", "ok": True, "output": {"particles": [{"type": "muon", "length_cm": 52.0}]}}]
    lines = [{"kind": "correction", "prompt": "Event: x", "chosen": "The whole answer, 52 cm.",
              "rejected": "The whole answer, 45 cm.", "question": "q", "event": REF.format(0)},
             {"kind": "model_correction", "chosen": "The muon track is 52 cm long.",
              "rejected": "The muon track is 45 cm long.", "question": "How long?", "event": REF.format(1),
              "tools": tools}]
    f = tmp_path / "mixed.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    prompts: list = []
    run = tmp_path / "run"
    align_prefs(_cfg(run, f, vlm_dir, steps=1, eval_fraction=0.0), _io(events, prompts))
    prepared = json.loads((run / "prepared" / "pairs.json").read_text())
    assert [p["kind"] for p in prepared["pairs"]] == ["model_correction"] and len(prompts) == 1
    assert prepared["pairs"][0]["prompt"].startswith("How long? measured:")
    assert prepared["source"]["skipped"] == {"whole-answer pair of an older export (not the VLM's own text; re-export)": 1}
    assert prepared["source"]["tool_errors_left_out"] is None        # a file: the export's count is not known


# ============================================================================ bad feedback
def test_malformed_and_empty_feedback_are_clear_errors(vlm_dir, events, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "question": "q", "event": REF.format(0)})
    bad.write_text(good + "\n" + '{"chosen": "a", "rejected": \n')
    with pytest.raises(PrefsInputError, match=r"bad.jsonl line 2: not valid JSON"):
        read_pairs(bad)
    bad.write_text(good + "\n\n" + json.dumps({"chosen": "a", "question": "q"}) + "\n")
    with pytest.raises(PrefsInputError, match=r"line 3: 'rejected' must be a non-empty string"):
        read_pairs(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(PrefsInputError, match="no usable preference pairs"):
        align_prefs(_cfg(tmp_path / "r1", empty, vlm_dir), _io(events))
    unloadable = tmp_path / "unloadable.jsonl"
    unloadable.write_text(json.dumps({"chosen": "a", "rejected": "b", "question": "q", "event": "event:x"}) + "\n")
    with pytest.raises(PrefsInputError, match="1 event cannot be loaded"):
        align_prefs(_cfg(tmp_path / "r2", unloadable, vlm_dir), _io(events))
    with pytest.raises(PrefsInputError, match="no such file"):
        align_prefs(_cfg(tmp_path / "r3", tmp_path / "missing.jsonl", vlm_dir), _io(events))
    with pytest.raises(PrefsInputError, match="overwrite the --init VLM"):
        align_prefs(_cfg(vlm_dir.parent, empty, vlm_dir.parent / "vlm"), _io(events))
    with pytest.raises(PrefsInputError, match="--beta"):
        _cfg(tmp_path, empty, vlm_dir, beta=0.0)


def test_cli_stage_prefs_end_to_end_and_its_errors(vlm_dir, feedback_db, tmp_path, capsys):
    from larsight.ui.cli import main
    from larsight.ui.cli_args import EXIT_BAD_INPUT

    run = tmp_path / "cli"
    assert main(["align", "--stage", "prefs", "--feedback", str(feedback_db), "--init", str(vlm_dir), "--steps", "1",
                 "--batch-size", "1", "--run-dir", str(run), "--limit", "2"]) == 0
    man = json.loads((run / "vlm" / "vlm.json").read_text())
    assert man["kind"] == "align-prefs" and man["feedback"]["pairs_used"] == 2
    assert man["feedback"]["prompt"].startswith("the stored prompt")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    capsys.readouterr()
    assert main(["align", "--stage", "prefs", "--feedback", str(bad), "--init", str(vlm_dir),
                 "--run-dir", str(tmp_path / "cli2")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.jsonl line 1: not valid JSON" in err[0]
    assert main(["align", "--stage", "prefs", "--init", str(vlm_dir), "--run-dir", str(tmp_path / "c3")]) \
        == EXIT_BAD_INPUT
    assert "needs --feedback" in capsys.readouterr().err
