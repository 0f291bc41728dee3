"""evals.agent_eval: suites, scoring, metrics and the resumable runner, on fake tools and fake
brains (no models): exact metrics for a small suite, a brain that always errs, a flaky brain
(pass^k), resume after an interrupted run, malformed suite lines, the openai brain through a
scripted chat model."""
import json
import math
import sys

import numpy as np
import pytest

from larsight.agent import OpenAIBrain, RulesBrain
from larsight.evals.agent_eval import SuiteError, load_suite, pass_hat_k, run_agent_eval
from larsight.evals.agent_eval.cli import main as cli_main
from larsight.evals.agent_eval.runner import load_records
from larsight.evals.agent_eval.scoring import score_turn, trajectory_match
from larsight.evals.agent_eval.suite import Trajectory, Turn

from helpers.agent_eval import ErringBrain, FlakyBrain, ScriptedChat, run, small_suite, suite_turn, write_suite

# ============================================================================ exact metrics
def test_rules_brain_on_the_small_suite_gives_the_exact_metrics(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    s = run(tmp_path, suite, RulesBrain())
    o = s["overall"]
    assert o["cases"] == 6 and o["trials"] == 18 and o["turns"] == 21
    assert o["answer_accuracy"] == pytest.approx(5 / 6, abs=1e-4)
    assert o["pass^1"] == pytest.approx(5 / 6, abs=1e-4) and o["pass^3"] == pytest.approx(5 / 6, abs=1e-4)
    assert o["tool_selection"] == 1.0 and o["trajectory_match"] == 1.0
    assert o["argument_correctness"] == 1.0 and o["args_turns"] == 3
    assert o["contradiction_rate"] == 0.0 and o["answers_with_contradiction"] == 0.0
    assert o["claim_support_rate"] == 1.0 and o["claims"]["contradicted"] == 0
    assert o["irrelevant_without_tools"] == 1.0 and o["irrelevant_turns"] == 3
    assert o["tool_calls_mean"] == pytest.approx(18 / 21, abs=0.01)   # one tool per turn but c4
    assert s["per_tag"]["counting"]["answer_accuracy"] == 0.0
    assert s["per_tag"]["classification"]["answer_accuracy"] == 1.0
    assert s["per_tag"]["multi-turn"]["answer_accuracy"] == 1.0
    # the reconstruction said 1 proton and the answer reported it faithfully: the tool's error
    assert s["failures"] == {"measurement:reconstruct": {"n": 3, "examples": ["c3#0", "c3#1", "c3#2"]}}
    assert s["cases"]["c3"] == {"tags": ["counting"], "passes": [0, 0, 0], "cause": "measurement:reconstruct"}
    assert (tmp_path / "run" / "report.md").read_text().count("measurement:reconstruct") >= 2
    recs = load_records(tmp_path / "run" / "records.jsonl")
    assert len(recs) == 18
    c5 = recs[("c5", 0)]["turns"][0]
    assert c5["calls"][0]["arguments"] == {"k": 3} and len(c5["similar_hits"]) == 3


def test_a_brain_that_always_errs(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    s = run(tmp_path, suite, ErringBrain())
    o = s["overall"]
    assert o["answer_accuracy"] == 0.0 and o["pass^1"] == 0.0 and o["pass^3"] == 0.0
    assert o["tool_selection"] == pytest.approx(3 / 21, abs=1e-4)   # only "no tool" for c4 was right
    assert o["trajectory_match"] == pytest.approx(3 / 21, abs=1e-4)
    assert o["argument_correctness"] == 0.0
    assert o["n_claims"] == 0 and o["claim_support_rate"] is None
    assert o["errors"] == 0   # the loop turns a failing brain into an answer, never a crash
    assert s["failures"]["brain_error"]["n"] == 18 and list(s["failures"]) == ["brain_error"]


def test_pass_hat_k_over_repeated_trials(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    brain = FlakyBrain()
    s = run(tmp_path, suite, brain)
    o = s["overall"]
    assert brain.trials_run == 18
    # 5 of 6 cases pass trials 0 and 2 (c = 2 of n = 3); c3 never passes
    assert o["pass^1"] == pytest.approx(5 / 6 * 2 / 3, abs=1e-4)
    assert o["pass^2"] == pytest.approx(5 / 6 * 1 / 3, abs=1e-4)
    assert o["pass^3"] == 0.0
    assert s["cases"]["c1"]["passes"] == [1, 0, 1]
    assert pass_hat_k(3, 2, 2) == pytest.approx(1 / 3) and pass_hat_k(3, 3, 3) == 1.0 and pass_hat_k(2, 2, 3) is None


# ============================================================================ resume
def test_resume_after_an_interrupted_run_loses_and_repeats_nothing(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    full = run(tmp_path, suite, RulesBrain(), k=2, name="full")
    first = FlakyBrain.__new__(FlakyBrain)
    first.trial, first.trials_run = 0, 0
    first.decide = RulesBrain().decide   # never flakes
    run(tmp_path, suite, first, k=2, name="part", stop_after=5)
    assert first.trials_run == 5
    path = tmp_path / "part" / "records.jsonl"
    kept = path.read_text().splitlines()
    assert len(kept) == 5
    with open(path, "a") as f:
        f.write('{"case": "c9", "trial": 0, "turns": [{"quest')   # killed in the middle of a line
    again = FlakyBrain.__new__(FlakyBrain)
    again.trial, again.trials_run = 0, 0
    again.decide = RulesBrain().decide
    s = run(tmp_path, suite, again, k=2, name="part")
    assert again.trials_run == 12 - 5            # only the missing trials ran
    lines = path.read_text().splitlines()
    assert len(lines) == 12 and lines[:5] == kept   # the finished ones are untouched, the torn line gone
    assert len({(json.loads(x)["case"], json.loads(x)["trial"]) for x in lines}) == 12
    for key in ("answer_accuracy", "pass^1", "pass^2", "tool_selection", "trajectory_match", "claims"):
        assert s["overall"][key] == full["overall"][key]
    # a larger k runs only the new trials; a changed case runs again
    more = FlakyBrain.__new__(FlakyBrain)
    more.trial, more.trials_run = 0, 0
    more.decide = RulesBrain().decide
    run(tmp_path, suite, more, k=3, name="part")
    assert more.trials_run == 6
    cases = small_suite(ref)
    cases[0]["turns"][0]["question"] = "What is the event class?"
    write_suite(tmp_path / "s.jsonl", cases)
    once = FlakyBrain.__new__(FlakyBrain)
    once.trial, once.trials_run = 0, 0
    once.decide = RulesBrain().decide
    run(tmp_path, suite, once, k=3, name="part")
    assert once.trials_run == 3


def test_a_run_folder_of_another_brain_is_refused(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref)[:1])
    run(tmp_path, suite, RulesBrain(), k=1)
    with pytest.raises(ValueError, match="holds a run of brain"):
        run(tmp_path, suite, ErringBrain(), k=1)


# ============================================================================ suites
def test_a_malformed_suite_line_is_named(tmp_path, ref, capsys):
    good = small_suite(ref)[0]
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + '{"id": "x", "tags": ["counting"], "turns": [}\n')
    with pytest.raises(SuiteError, match=r"bad\.jsonl:3: not valid JSON"):
        load_suite(p)
    p.write_text(json.dumps(good) + "\n" + json.dumps({"id": "c2", "tags": ["counting"], "event": ref}) + "\n")
    with pytest.raises(SuiteError, match=r"bad\.jsonl:2 \(case 'c2'\): turns: Field required"):
        load_suite(p)
    bad_tool = dict(good, id="c3", turns=[suite_turn("Where?", {}, ["find_vertexx"])])
    p.write_text(json.dumps(bad_tool) + "\n")
    with pytest.raises(SuiteError, match=r"bad\.jsonl:1 .*unknown tool"):
        load_suite(p)
    p.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(SuiteError, match=r"bad\.jsonl:2: duplicate case id 'c1' \(first at .*bad\.jsonl:1\)"):
        load_suite(p)
    two = dict(good, id="c4", turns=good["turns"] * 2)
    p.write_text(json.dumps(two) + "\n")
    with pytest.raises(SuiteError, match="multi-turn"):
        load_suite(p)
    p.write_text(json.dumps(good) + "\n" + '{"id": "c5", "tags": ["counting"], "turns": [{"question": "?", '
                 '"expect": {"counts": {"muon": -1}}}]}\n')
    assert cli_main(["--suite", str(p), "--brain", "rules", "--out", str(tmp_path / "o"), "--no-report",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2 (case 'c5')" in err and "counts" in err


def test_event_forms_and_shipped_suites_load(tmp_path):
    from larsight.evals.agent_eval.suite import event_ref

    assert event_ref({"mode": "nu", "seed": 2, "index": 7}) == "sim:nu:seed=2:voxel=0.6:index=7"
    assert event_ref({"file": "a.h5", "index": 3}) == "a.h5:3"
    with pytest.raises(ValueError):
        event_ref({"mode": "nu"})
    cases = load_suite("evals/suites")
    tags = {t for c in cases for t in c.tags}
    assert len(cases) >= 300
    assert {"classification", "vertexing", "counting", "retrieval", "multi-turn", "irrelevant", "adversarial"} <= tags


# ============================================================================ scoring rules
def test_trajectory_match_modes():
    t = lambda tools, m: Trajectory(tools=tools, match=m)  # noqa: E731
    assert trajectory_match(["a_", "b_"][:0], t([], "strict"))
    assert trajectory_match(["classify_event", "reconstruct"], t(["classify_event", "reconstruct"], "strict"))
    assert not trajectory_match(["reconstruct", "classify_event"], t(["classify_event", "reconstruct"], "strict"))
    assert trajectory_match(["reconstruct", "classify_event"], t(["classify_event", "reconstruct"], "unordered"))
    assert not trajectory_match(["classify_event"], t(["classify_event", "reconstruct"], "unordered"))
    assert trajectory_match(["classify_event"], t(["classify_event", "reconstruct"], "subset"))
    assert not trajectory_match(["segment"], t(["classify_event", "reconstruct"], "subset"))
    assert trajectory_match(["classify_event", "reconstruct"], t(["classify_event"], "superset"))
    assert not trajectory_match(["reconstruct"], t(["classify_event"], "superset"))
    from larsight.evals.agent_eval.suite import Case

    plain = {"id": "x", "tags": ["counting"], "turns": [suite_turn("How many muons?", {}, ["reconstruct"])]}
    explicit = json.loads(json.dumps(plain))
    explicit["turns"][0]["trajectory"]["alternatives"] = []
    explicit["source"] = "hand"
    assert Case.model_validate(plain).fingerprint() == Case.model_validate(explicit).fingerprint()
    alt = Trajectory(tools=["reconstruct"], match="strict", alternatives=[["segment"]])
    assert trajectory_match(["segment"], alt) and not trajectory_match(["segment", "reconstruct"], alt)
    turn = Turn(question="Is there a Michel electron?", expect={"michel": True}, trajectory=alt)
    rec = {"trajectory": ["segment"], "calls": [{"tool": "segment", "arguments": {}, "ok": True}],
           "values": {"michel": False}, "claims": [{"kind": "michel", "verdict": "supported", "tool": "segment"}]}
    s = score_turn(turn, rec)
    assert s["tool_ok"] and s["traj_ok"] and s["cause"] == "measurement:segment"


def test_score_turn_counts_args_and_causes():
    turn = Turn.model_validate(suite_turn("What is the topology?", {"counts": {"muon": 1, "photon": 0}}, ["reconstruct"],
                                     args={"find_similar": {"query": "*"}}))
    rec = {"trajectory": ["reconstruct"], "calls": [{"tool": "reconstruct", "arguments": {}, "ok": True}],
           "values": {"counts": {"muon": 1, "proton": 2}}, "claims": [], "n_contradicted": 0}
    s = score_turn(turn, rec)
    assert s["answer_ok"] is True and s["tool_ok"] is True and s["args_ok"] is False   # photons left out = 0
    assert s["cause"] == "arguments"
    rec["values"] = {}
    s = score_turn(turn, rec)
    assert s["checks"] == {"counts": None} and s["cause"] == "no_measurement:reconstruct"   # the tool saw nothing
    quiet = dict(rec, trajectory=[], calls=[])
    assert score_turn(turn, quiet, earlier_tools={"reconstruct"})["cause"] == "no_value"   # measured, not said
    rec.update(values={"counts": {"muon": 2}}, n_contradicted=1)
    assert score_turn(turn, rec)["cause"] == "contradicted_claim"
    rec.update(n_contradicted=0, claims=[{"kind": "count", "verdict": "supported"}])
    assert score_turn(turn, rec)["cause"] == "measurement:reconstruct"
    rec.update(trajectory=[], calls=[])
    assert score_turn(turn, rec)["cause"] == "wrong_tool"
    assert score_turn(turn, rec, earlier_tools={"reconstruct"})["tool_ok"] is True   # answered from memory


# ============================================================================ brains by name
def test_openai_brain_by_import_path_with_a_scripted_model(tmp_path, ref, monkeypatch):
    mod = tmp_path / "fake_llm_brains.py"
    mod.write_text("from larsight.agent import OpenAIBrain\nfrom helpers.agent_eval import ScriptedChat\n"
                   "def make():\n    return OpenAIBrain(model=ScriptedChat())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    suite = write_suite(tmp_path / "s.jsonl", [small_suite(ref)[1]])
    s = run(tmp_path, suite, "fake_llm_brains:make", k=2)
    assert s["overall"]["answer_accuracy"] == 1.0 and s["overall"]["tool_selection"] == 1.0
    assert s["meta"]["brain"] == "fake_llm_brains:make"
    assert isinstance(OpenAIBrain(model=ScriptedChat()), OpenAIBrain)
    assert "fake_llm_brains" in sys.modules


# ============================================================================ worker processes
@pytest.mark.slow
def test_two_worker_processes_give_the_same_metrics(tmp_path):
    import os

    cases = [{"id": f"w{i}", "tags": ["irrelevant"], "event": f"sim:nu:seed=2:voxel=0.6:index={i}",
              "turns": [suite_turn(q, {"no_tools": True}, [])]}
             for i, q in enumerate(["What is a Michel electron?", "What's the capital of France?",
                                    "What is dE/dx?", "Tell me a joke."])]
    cases.append({"id": "bad", "tags": ["adversarial"], "event": "does/not/exist.h5:0",
                  "turns": [suite_turn("Where is the vertex?", {"no_claims": True})]})
    suite = write_suite(tmp_path / "s.jsonl", cases)
    one = run_agent_eval(suite, brain="rules", out=tmp_path / "one", k=2, progress=False)
    two = run_agent_eval(suite, brain="rules", out=tmp_path / "two", k=2, workers=2, progress=False)
    for key in ("answer_accuracy", "pass^2", "tool_selection", "irrelevant_without_tools"):
        assert one["overall"][key] == two["overall"][key]
    assert two["overall"]["answer_accuracy"] == pytest.approx(1.0)   # the rules brain gets all five right
    pids = {r["pid"] for r in load_records(tmp_path / "two" / "records.jsonl").values()}
    assert os.getpid() not in pids and len(load_records(tmp_path / "two" / "records.jsonl")) == 10


def test_generated_cases_recreate_their_event_and_its_truth():
    from larsight.evals.agent_eval.suite import Case
    from larsight.evals.suites.generate import generate
    from larsight.qformer.corpus import event_facts
    from larsight.tools.retrieval import parse_event_ref

    cases = [Case.model_validate(c) for c in generate(n_events=5, progress=False)]
    tags = {t for c in cases for t in c.tags}
    assert {"classification", "counting", "vertexing", "retrieval", "multi-turn", "irrelevant"} <= tags
    for c in cases:
        if c.id.startswith(("gen-cls", "gen-vtx", "gen-cnt")):
            main = event_facts(parse_event_ref(c.event).load()).main   # the event from the line alone
            e = c.turns[0].expect
            if e.event_class:
                assert e.event_class == main.event_class
            if e.vertex_cm:
                assert np.allclose(e.vertex_cm, main.vertex_cm, atol=0.01)
            for p, n in (e.counts or {}).items():
                assert main.counts.get(p, 0) == n


def test_sampled_vlm_brain_draws_tools_reproducibly(monkeypatch):
    """--temperature: the vlm brain's tool drawn from its probabilities, seeded per case and trial
    (the VLM's scores stubbed: no model)."""
    from larsight.agent.brains import VLMBrain
    from larsight.evals.agent_eval.brains import make_eval_brain

    def fake_scores(self, event, question, candidates):   # p(find_vertex) 0.6, p(segment) 0.4
        return {t: {"find_vertex": math.log(0.6), "segment": math.log(0.4)}.get(t, -60.0) for t in candidates}, 0.9

    monkeypatch.setattr(VLMBrain, "action_scores", fake_scores)
    with pytest.raises(ValueError, match="vlm brain only"):
        make_eval_brain("rules", temperature=1.0)
    assert type(make_eval_brain("vlm", vlm="unused")) is VLMBrain   # temperature 0: the shipped brain

    def draws(brain, key):
        out = []
        for trial in range(40):
            brain.reseed(key, trial)
            out.append(brain.choose(None, "What do you make of this?").tool)   # no intent: every tool
        return out

    hot = make_eval_brain("vlm", temperature=1.0, vlm="unused")
    a, b = draws(hot, "case-1"), draws(hot, "case-1")
    assert a == b and set(a) == {"find_vertex", "segment"}          # reproducible, and it samples
    assert 0.35 < a.count("find_vertex") / len(a) < 0.85
    cold = make_eval_brain("vlm", temperature=0.05, vlm="unused")
    assert set(draws(cold, "case-1")) == {"find_vertex"}              # T -> 0: the greedy choice


def test_a_run_on_a_selection_keeps_the_other_records(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    run(tmp_path, suite, RulesBrain(), k=1)
    s = run(tmp_path, suite, RulesBrain(), k=1, tags=["counting"])
    assert s["overall"]["cases"] == 1
    assert len(load_records(tmp_path / "run" / "records.jsonl")) == 6


# ============================================================================ first drafts
class _WrongFirstDraft(RulesBrain):
    """The rules brain whose first answers add a language model's sentence claiming 7 protons."""

    name = "wrong-first"

    def decide(self, ctx):
        d = super().decide(ctx)
        if d.action == "answer" and d.grounded and d.composition is not None and not ctx.feedback:
            d = d.model_copy(update={"composition": d.composition.explained("there are 7 protons.")})
        return d


def test_first_draft_contradictions_are_measured(tmp_path, ref):
    suite = write_suite(tmp_path / "s.jsonl", small_suite(ref))
    o = run(tmp_path, suite, RulesBrain(), k=1)["overall"]
    # no revision: the first drafts are the final answers
    assert o["first_draft_contradiction_rate"] == 0.0 and o["first_draft_claims"] == o["n_claims"] > 0
    w = run(tmp_path, suite, _WrongFirstDraft(), k=1, name="wrong")["overall"]
    grounded = w["revised_answers"]
    assert grounded > 0 and w["answers_with_contradiction"] == 0.0     # revised away every time
    # one rejected claim per grounded first draft, over the first drafts' claims
    assert w["first_draft_contradiction_rate"] == pytest.approx(grounded / w["first_draft_claims"], abs=1e-4)
    assert w["first_draft_claims"] > o["first_draft_claims"]
