"""Grounded explanations (issue 16, item 3): the observations as text (qformer.corpus.explain_schema),
the explanation corpus (qformer.corpus.explanations: deterministic, split by template, every
number copied from the observations, no claim the validator contradicts), the multi-task action
stage (qformer.align_actions with explain_fraction) and the action brain that writes the
explanation from the observations (agent.vlm_actions)."""
import json
import re

import numpy as np
import pytest

from larsight.agent import Agent
from larsight.agent.evidence import Evidence, ParticleEvidence
from larsight.agent.validate import validate
from larsight.agent.vlm_actions import ActionVLMBrain, explanation_verdicts, trained_with_explanations
from larsight.events.model import Event
from larsight.qformer.corpus.explain_schema import (evidence_text, explain_prompt, numbers_in, ungrounded_numbers,
                                                    whole_sentences)
from larsight.qformer.corpus.explanations import explanation_examples

from helpers.agent import FAKES


def _observations(*tools):
    return [{"tool": t, "ok": True, "output": FAKES[t](None), "event": None} for t in tools]


# ============================================================================ the observations as text
def test_evidence_text_of_tool_outputs():
    ev = Evidence.from_observations(_observations("classify_event", "find_vertex", "reconstruct"))
    text = evidence_text(ev)
    assert text.splitlines() == [
        "class: nu_mu CC p 0.90 (nu_e CC 0.05, NC 0.05)",
        "vertex: (10.0, 20.0, 30.0) cm",
        "counts: 1 muon, 0 electron, 1 proton, 0 charged pion, 0 photon, 1 Michel",
        "muon track: 40.0 cm, 190 MeV, Michel at end",
        "proton track: 4.0 cm, 55 MeV",
        "visible energy: 300 MeV"]
    assert evidence_text(ev) == text                         # deterministic
    prompt = explain_prompt("Why is this numu?", ev)
    assert prompt.startswith("Observations:\n" + text + "\nQuestion: Why is this numu?")
    assert prompt.endswith("Explain from these measurements.")


def test_evidence_text_of_showers_and_missing_measurements():
    ev = Evidence(event_class="nue_cc", class_probabilities={"nue_cc": 0.7, "nc": 0.2, "numu_cc": 0.1},
                  particles=[ParticleEvidence(type="photon", kind="shower", energy_mev=80.4, gap_cm=12.34,
                                              start_dedx_mev_cm=4.3),
                             ParticleEvidence(type="electron", kind="shower", energy_mev=300.0, gap_cm=0.4,
                                              start_dedx_mev_cm=2.14, energy_is_lower_bound=True)],
                  counts={"electron": 1, "photon": 2, "pi0": 1})
    lines = evidence_text(ev).splitlines()
    assert lines[0] == "class: nu_e CC p 0.70 (NC 0.20, nu_mu CC 0.10)"
    assert "2 photon, 1 pi0" in lines[1]
    # the most energetic first; 1 MIP below 1.5 MIP, 2 MIP above (the validator's split)
    assert lines[2] == "electron shower: at least 300 MeV, starts 0.4 cm from vertex, start dE/dx 2.1 MeV/cm (1 MIP)"
    assert lines[3] == "photon shower: 80 MeV, starts 12.3 cm from vertex, start dE/dx 4.3 MeV/cm (2 MIP)"
    assert not any(ln.startswith("vertex") for ln in lines)   # not measured: not written
    assert evidence_text(Evidence()) == "nothing measured"
    assert "particles: not reconstructed" in evidence_text(Evidence(event_class="nc"))
    with pytest.raises(TypeError, match="question must be text"):
        explain_prompt(None, ev)


def test_numbers_and_sentences():
    assert numbers_in("a pi0 and 1mu 2p; 2 photons at 12.3 cm, p = 0.71.") == ["2", "12.3", "0.71"]
    assert ungrounded_numbers("The muon track is 40.0 cm, not 41 cm.", "muon track: 40.0 cm") == ["41"]
    assert whole_sentences("It is NC. The muon is 18") == "It is NC."


# ============================================================================ the corpus
def test_corpus_is_deterministic_and_resumable():
    a = explanation_examples(30, seed=3)
    assert a == explanation_examples(30, seed=3)
    assert explanation_examples(10, seed=3, start=20) == a[20:]
    assert a != explanation_examples(30, seed=4)
    with pytest.raises(ValueError, match="split must be one of"):
        explanation_examples(1, split="test")


def test_corpus_split_by_template():
    train = explanation_examples(2000, seed=0, split="train")
    held = explanation_examples(600, seed=0, split="heldout")
    t_train = {t for e in train for t in e["template"]}
    t_held = {t for e in held for t in e["template"]}
    assert not t_train & t_held
    q_train = {e["template"][0] for e in train}
    q_held = {e["template"][0] for e in held}
    assert len(q_train) >= 30 and len(q_held) >= 5 and not q_train & q_held
    # every question kind and every event class occurs, with varied targets
    assert {e["kind"] for e in held} == {"why", "why_not", "pi0", "particles", "confidence"}
    assert {e["evidence"]["event_class"] for e in train} == {"nue_cc", "numu_cc", "nc"}
    assert len({e["target"] for e in train}) > 0.95 * len(train)


@pytest.mark.parametrize("split,n", [("train", 2000), ("heldout", 800)])
def test_targets_are_grounded_and_readable(split, n):
    """Every number of every target is in its observations, the observations are the agent's own
    serialisation of the example's measurements, and the validator reads claims from every target
    and contradicts none."""
    claims = 0
    for e in explanation_examples(n, seed=7, split=split):
        assert ungrounded_numbers(e["target"], e["observations"]) == [], e["target"]
        ev = Evidence.model_validate(e["evidence"])
        assert evidence_text(ev) == e["observations"]
        assert e["prompt"] == explain_prompt(e["question"], ev)
        checks = validate(e["target"], ev).checks
        bad = [c.claim.describe() for c in checks if c.verdict != "supported"]
        assert not bad, (bad, e["target"])
        claims += len(checks)
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", e["target"])) <= 5
    assert claims / n >= 3.0


def test_corpus_covers_the_physics():
    exs = explanation_examples(1500, seed=1)
    text = " ".join(e["target"] for e in exs)
    for words in ("Michel electron", "1 MIP", "2 MIP", "from the vertex", "pi0", "uncertain", "not NC",
                  "not nu_mu CC", "not nu_e CC", "photon-like"):
        assert words in text, words
    parts = [p for e in exs for p in e["evidence"]["particles"]]
    mu = [p["length_cm"] for p in parts if p["type"] == "muon"]
    e_gap = [p["gap_cm"] for p in parts if p["type"] == "photon"]
    assert 20 <= min(mu) and max(mu) <= 400 and 2 <= min(e_gap) and max(e_gap) <= 40
    disagree = [e for e in exs if e["evidence"]["event_class"] == "nue_cc" and e["evidence"]["counts"]["electron"] == 0]
    assert disagree and all("nu_e CC" in e["target"] or "electron" in e["target"] for e in disagree)


# ============================================================================ the brain
class _StubDecoder:
    def __init__(self, reply, vlm):
        self.reply, self.vlm, self.prompts = reply, vlm, []

    def generate(self, event, prompt):
        self.prompts.append(prompt)
        return self.reply


class _StubExplainer:
    def __init__(self, text):
        self.text, self.prompts = text, []

    def generate(self, event, prompt):
        self.prompts.append(prompt)
        return self.text


class _Model:
    def __init__(self, manifest):
        self.manifest = manifest


WHY = '{"action":"call","calls":[{"tool":"classify_event","arguments":{}},' \
      '{"tool":"reconstruct","arguments":{"quantity":"reasons"}}]}'


@pytest.fixture
def event():
    return Event(points=np.array([[1, 1, 1], [2, 2, 2]], np.float32), energy=np.ones(2, np.float32))


def test_trained_with_explanations_reads_the_manifest():
    assert trained_with_explanations(_Model({"explain_fraction": 0.3}))
    assert trained_with_explanations(_Model({"actions_config": {"explain_fraction": 0.5}}))
    assert not trained_with_explanations(_Model({"explain_fraction": 0.0}))
    assert not trained_with_explanations(_Model({"kind": "align-actions"}))
    assert not trained_with_explanations(None)


def test_brain_explains_from_the_observations(event, tmp_path):
    """The action model's text (here: a stub that misstates the muon length) is written from a
    prompt holding the observations, reaches the validator, and the revision removes the
    contradicted claim while the supported one stays."""
    brain = ActionVLMBrain(vlm=None, explain=True)
    brain._decoder = _StubDecoder(WHY, _Model({"explain_fraction": 0.5}))
    brain._explainer = _StubExplainer("The muon track is 90.0 cm long. A Michel electron sits at its end.")
    a = Agent(brain, tools=dict(FAKES), run_dir=tmp_path).ask(event, "Why would you call this numu?")
    assert a.trajectory == ["classify_event", "reconstruct"]
    prompt = brain._explainer.prompts[0]
    assert prompt.startswith("Observations:\nclass: nu_mu CC p 0.90")
    assert "muon track: 40.0 cm, 190 MeV, Michel at end" in prompt and "Question: Why would you call this numu?" in prompt
    assert a.first_draft_checks.get("contradicted") == 1 and a.revisions == 1
    assert "90.0 cm" not in a.text and "A Michel electron sits at its end." in a.text
    plan = " ".join(s.text for s in a.steps if s.node == "plan")
    assert "explanation written by the action model from 6 lines of observations" in plan


def test_brain_without_the_flag_keeps_the_classifier_explanation(event, tmp_path):
    class _VLM:
        calls = 0

        def explain(self, event, question, max_new_tokens=64):
            _VLM.calls += 1
            return "nu_mu CC: a long track."

    brain = ActionVLMBrain(vlm=_VLM(), explain=True)
    brain._decoder = _StubDecoder(WHY, _Model({"kind": "align-actions"}))
    brain._explainer = _StubExplainer("never used")
    a = Agent(brain, tools=dict(FAKES), run_dir=tmp_path).ask(event, "Why would you call this numu?")
    assert _VLM.calls == 1 and brain._explainer.prompts == []
    assert "The VLM explains: A long track." in a.text


def test_explanation_verdicts():
    ev = Evidence.from_observations(_observations("classify_event", "reconstruct")).model_dump(mode="json")
    assert explanation_verdicts("This is nu_mu CC. The muon track is 40.0 cm long.", ev) == ["supported"] * 3
    assert "contradicted" in explanation_verdicts("This is NC.", ev)


# ============================================================================ training (tiny LM)
def test_batch_mix_follows_the_fraction():
    from larsight.qformer.align_actions import ActionsConfig, _batch, explain_count
    from larsight.qformer.corpus.actions import action_examples

    exs, pos, epos = _batch(ActionsConfig(run_dir="x", batch_size=8), 5, 40, 0)   # 0: the action stage as before
    assert exs == action_examples(8, seed=0, split="train", start=40) and (pos, epos) == (48, 0)
    counts = [explain_count(s, 8, 0.3) for s in range(100)]
    assert sum(counts) == 240 and set(counts) == {2, 3}
    exs, pos, epos = _batch(ActionsConfig(run_dir="x", batch_size=8, explain_fraction=0.3), 0, 16, 4)
    k = counts[0]
    assert sum("observations" in e for e in exs) == k and (pos, epos) == (16 + 8 - k, 4 + k)
    assert exs[-k:] == explanation_examples(k, seed=0, split="train", start=4)
    with pytest.raises(ValueError, match="explain-fraction"):
        ActionsConfig(run_dir="x", explain_fraction=1.5)


def _tiny_vlm_folder(tmp_path, smollm2_dir):
    from helpers.vlm import make_vlm, save_micro_encoder, save_tiny_lm

    vlm = make_vlm(save_tiny_lm(tmp_path / "lm", smollm2_dir), save_micro_encoder(tmp_path / "enc.safetensors"),
                   lora=True)
    return vlm, vlm.save_pretrained(tmp_path / "vlm0")


@pytest.mark.slow   # converts the bundled SmolLM2 GGUF for its tokenizer (minutes on a busy CPU)
def test_multitask_steps_resume_and_evaluate(smollm2_dir, tmp_path):
    pytest.importorskip("torch")
    from larsight.qformer.align_actions import ActionsConfig, align_actions

    _, init = _tiny_vlm_folder(tmp_path, smollm2_dir)
    run = tmp_path / "run"
    kw = dict(run_dir=str(run), init=str(init), batch_size=2, pool=2, eval_n=2, warmup=1, log_every=1,
              explain_fraction=0.5)
    align_actions(ActionsConfig(steps=2, **kw), None, check=explanation_verdicts)
    state = json.loads((run / "state" / "state.json").read_text())["extra"]
    assert (state["example_pos"], state["explain_pos"]) == (2, 2)
    assert json.loads((run / "vlm" / "vlm.json").read_text())["explain_fraction"] == 0.5
    ex = json.loads((run / "eval.json").read_text())["after"]["explain"]
    assert ex["n"] == 1 and ex["checked"] and {"contradiction_rate", "texts_with_contradiction", "unverifiable",
                                                 "ungrounded_numbers", "claims_per_text"} <= set(ex)
    summary = align_actions(ActionsConfig(steps=3, resume=True, **kw), None, check=explanation_verdicts)
    state = json.loads((run / "state" / "state.json").read_text())["extra"]
    assert summary["step"] == 3 and (state["example_pos"], state["explain_pos"]) == (3, 3)
    # a run folder written before the explanation corpus (no explain_pos, no explain_fraction) resumes
    path = run / "state" / "state.json"
    saved = json.loads(path.read_text())
    saved["extra"].pop("explain_pos")
    saved["extra"]["config"].pop("explain_fraction")
    path.write_text(json.dumps(saved))
    kw.update(explain_fraction=0.0, eval_n=0)
    assert align_actions(ActionsConfig(steps=4, resume=True, **kw), None)["step"] == 4


@pytest.mark.slow   # the SmolLM2 tokenizer (see above)
def test_brain_generates_with_the_action_model(smollm2_dir, tmp_path, event):
    """A tiny random action model marked as trained with explanations writes the explanation
    itself (nonsense, but from the observations prompt) and the text reaches the validator."""
    vlm, _ = _tiny_vlm_folder(tmp_path, smollm2_dir)
    vlm.manifest["explain_fraction"] = 0.5
    brain = ActionVLMBrain(vlm=None, explain=True, explain_tokens=12)
    brain._decoder = _StubDecoder(WHY, vlm)
    seen = []
    orig = brain._explain_observed

    def spy(ctx, ev):
        out = orig(ctx, ev)
        seen.append(out)
        return out

    brain._explain_observed = spy
    a = Agent(brain, tools=dict(FAKES), run_dir=tmp_path).ask(event, "Why would you call this numu?")
    assert len(seen) == 1
    text, prompt = seen[0]
    assert "muon track: 40.0 cm" in prompt and not text.startswith("(the VLM could not answer")
    compose = next(s for s in a.steps if s.node == "compose")
    assert compose.claims is not None and "from_text" in compose.claims
    if text:
        assert text[:20] in a.drafts[0]


@pytest.mark.slow   # the bundled SmolLM2's tokenizer (see above)
def test_split_batch_loss_equals_the_joint_batch_loss(smollm2_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from larsight.qformer.align_actions import _loss
    from larsight.qformer.corpus.actions import action_examples
    from larsight.qformer.corpus.explanations import explanation_examples

    vlm, _ = _tiny_vlm_folder(tmp_path, smollm2_dir)
    vlm.lm.eval()
    exs = action_examples(3, seed=1) + explanation_examples(2, seed=1)
    pool = torch.randn(4, vlm.projector.config.n_queries, vlm.lm.config.hidden_size)
    with torch.no_grad():
        split = _loss(vlm, pool, exs, np.random.default_rng(5))
        idx = torch.as_tensor(np.random.default_rng(5).integers(len(pool), size=len(exs)))
        joint = vlm.lm(**vlm.assemble(pool[idx], [e["prompt"] for e in exs], [e["target"] for e in exs])).loss
    assert torch.allclose(split, joint, rtol=1e-4, atol=1e-5), (split, joint)
