"""The simulated expert (issue 19, item 4): it marks the agent's answers against the simulator
truth and stores the feedback; corrections carry the true values where the answer was wrong."""
from __future__ import annotations

import math

import pytest

import json

from larsight.agent import Agent, Decision, RulesBrain
from larsight.agent.context import Context, revision
from larsight.agent.render import FreeText
from larsight.agent.claims import Claim
from larsight.agent.feedback import FeedbackStore, export
from larsight.agent.validate import Check
from larsight.evals.simulated_expert import (HELDOUT_SEEDS, LENGTH_TOL_CM, TRAIN_SEED, judge, main,
                                             run_simulated_expert, sim_events)
from larsight.events.vocabulary import event_facts
from larsight.tools.event_keys import parse_event_ref

from helpers.agent import FAKES, VERTEX, fake_reco

SPEC = f"sim:nu:seed={TRAIN_SEED}:voxel=0.6"


@pytest.fixture(scope="module")
def first_event():
    ref, ev, truth = next(sim_events(SPEC, 1))
    return ref, truth


def _check(kind, subject, value=None, unit=None, qualifier=None):
    return Check(claim=Claim(kind=kind, subject=subject, value=value, unit=unit, qualifier=qualifier),
                 verdict="supported")


def _wrong_class(truth):
    return next(c for c in ("nue_cc", "numu_cc", "nc") if c != truth.event_class)


def test_judge_corrects_wrong_claims_to_the_truth(first_event):
    ref, truth = first_event
    longest = truth.longest_track.length_cm
    n_proton = truth.counts.get("proton", 0)
    far = tuple(float(x) + 20.0 for x in truth.vertex_cm)
    checks = [_check("event_class", "event", _wrong_class(truth)),                    # wrong
              _check("event_class", "event", truth.event_class),                      # right
              _check("count", "proton", float(n_proton + 2), "count"),               # wrong
              _check("count", "proton", float(n_proton), "count"),                   # right
              _check("track_length", "track", longest + 4 * LENGTH_TOL_CM + 0.2 * longest, "cm", "longest"),  # wrong
              _check("track_length", "track", longest + 1.0, "cm", "longest"),       # right (tolerance)
              _check("vertex", "vertex", far, "cm"),                                 # wrong
              _check("energy", "visible", 500.0, "MeV"),                             # not judged
              _check("michel", "michel", None, None, None if truth.counts.get("michel") else "absent")]  # right
    judged, corrections, wrong = judge(checks, truth)
    assert judged == 8
    by_row = {c["claim"]: c for c in corrections}
    assert sorted(by_row) == [0, 2, 4, 6]
    assert by_row[0]["label"] == truth.event_class and by_row[0]["mark"] == "should_be"
    assert by_row[2]["value"] == float(n_proton)
    assert by_row[4]["value"] == pytest.approx(longest, abs=0.05) and by_row[4]["unit"] == "cm"
    assert by_row[6]["value"] == pytest.approx(list(truth.vertex_cm), abs=0.05)
    assert dict(wrong) == {"event_class": 1, "count": 1, "track_length": 1, "vertex": 1}
    # a species the event does not have: a length of it is wrong, its absence right
    missing = next(s for s in ("electron", "muon", "photon", "kaon") if not truth.counts.get(s))
    _, fixes, _ = judge([_check("track_length", missing, 30.0, "cm"), _check("absent", missing, 0.0, "count"),
                         _check("present", missing, 1.0, "count")], truth)
    assert fixes == [{"claim": 0, "mark": "wrong"}, {"claim": 2, "mark": "should_be", "label": "absent"}]


def _truth_of(ref):
    return event_facts(parse_event_ref(ref).load()).main


def _assert_corrections_are_the_truth(item):
    truth = _truth_of(item.answer.event)
    for corr in item.corrections:
        claim = item.answer.claims[corr.claim]["claim"]
        kind = claim["kind"]
        if kind == "event_class":
            assert corr.label == truth.event_class
        elif kind == "vertex":
            assert math.dist(corr.value, truth.vertex_cm) < 0.1
        elif kind == "count":
            assert corr.value == truth.counts.get(claim["subject"], 0)
        elif kind in ("present", "absent"):
            assert corr.label == ("present" if truth.counts.get(claim["subject"], 0) else "absent")
        elif kind == "track_length" and corr.mark == "should_be":
            assert corr.value == pytest.approx(truth.longest_track.length_cm if claim.get("qualifier") == "longest"
                                               else max(p.length_cm for p in truth.of_type(claim["subject"])), abs=0.05)


def test_two_events_with_the_rules_brain_store_feedback_that_equals_the_truth(tmp_path):
    """Fixed tool measurements (a 1mu 1p numu CC event, vertex at (10, 20, 30)) on real simulated
    events: wherever they differ from the truth, the answer is wrong and corrected to the truth."""
    db = tmp_path / "fb.sqlite"
    agent = Agent("rules", tools=FAKES, run_dir=tmp_path / "agent")
    rep = run_simulated_expert(SPEC, 2, 4, db=db, agent=agent, progress=False)
    assert rep.events == 2 and rep.asked == 8 and len(rep.feedback_ids) == 8
    assert rep.up + rep.down + rep.no_judged_claim == 8 and rep.down >= 1
    assert rep.claims_wrong.get("vertex") == 1          # the fake vertex is far from any true one
    assert rep.wrong_from_text == 0 == rep.model_errors  # the rules brain states only measurements
    assert rep.tool_errors == sum(len(c) for c in [store_corrections(db, rep.feedback_ids)]) >= 1
    store = FeedbackStore(db)
    try:
        items = [store.get(i) for i in rep.feedback_ids]
        for it in items:
            assert it.author == "sim-expert" and it.source == "sim-expert"
            assert it.answer.event.startswith(f"sim:nu:seed={TRAIN_SEED}:voxel=0.6:index=")
            assert (it.verdict == "down") == bool(it.corrections)
            _assert_corrections_are_the_truth(it)
        vertex = [it for it in items if it.answer.question == "Where is the interaction vertex?"][0]
        assert vertex.verdict == "down" and "10" in vertex.answer.text
        assert list(VERTEX) != list(vertex.corrections[0].value)
        # resumable: nothing is asked twice
        again = run_simulated_expert(SPEC, 2, 4, db=db, agent=agent, progress=False)
        assert again.asked == 0 and again.already_marked == 8
        assert len(store.list(author="sim-expert", limit=None)) == 8
        # the tools' errors are no VLM training data: no DPO pair, counted
        rep_x = export(store, tmp_path / "p.jsonl", fmt="dpo")
        assert rep_x.lines == 0 and rep_x.tool_errors == rep.tool_errors
    finally:
        store.close()


def store_corrections(db, ids):
    with FeedbackStore(db) as store:
        return [c for i in ids for c in store.get(i).corrections]


class MisCopyingVLM(RulesBrain):
    """The rules brain's answers plus a model's own text that says the muon is 1.40 m long (the
    fake tool measured 40 cm), revised when the validator sends it back."""

    name = "vlm-miscopy"

    def decide(self, ctx: Context) -> Decision:
        if ctx.feedback:
            return revision(ctx)
        d = super().decide(ctx)
        if d.action != "answer" or not d.grounded or d.composition is None:
            return d
        free = FreeText(text="The muon track is 1.40 m long.", label="The VLM explains:", author="vlm",
                        prompt=f"Observations: muon 40.0 cm\nQuestion: {ctx.question}")
        return d.model_copy(update={"composition": d.composition.model_copy(update={"free": free})})


def _miscopying_run(tmp_path, tools):
    db = tmp_path / "fb.sqlite"
    agent = Agent(MisCopyingVLM(), tools=tools, run_dir=tmp_path / "agent")
    rep = run_simulated_expert(SPEC, 1, 2, db=db, agent=agent, progress=False)
    corrections = store_corrections(db, rep.feedback_ids)
    first = [c for c in corrections if c.of == "first_draft"]
    assert first and all(c.blame == "model" for c in first if c.mark != "right")
    assert rep.model_errors == sum(c.blame == "model" for c in corrections) >= 1
    assert rep.tool_errors == sum(c.blame == "tool" for c in corrections)
    assert "model error(s)" in "\n".join(rep.lines())
    with FeedbackStore(db) as store:
        rx = export(store, tmp_path / "p.jsonl", fmt="dpo")
    pairs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    return rep, first, rx, pairs


def test_the_first_draft_is_judged_and_its_errors_blamed_on_the_model(tmp_path):
    """The tool measured the muon right (the truth's length); the model's text said 1.40 m: a
    model error, and a pair whose chosen text states the truth in the unit the model wrote."""
    truth = _truth_of(next(sim_events(SPEC, 1))[0])
    muon = max(p.length_cm for p in truth.of_type("muon"))

    def reco(ev):
        out = fake_reco(ev)
        out["particles"][0]["length_cm"] = muon
        return out
    rep, first, rx, pairs = _miscopying_run(tmp_path, dict(FAKES, reconstruct=reco))
    assert {c.observed for c in first if c.value is not None} == {"supported"}
    assert rx.pairs_by_kind.get("model_correction", 0) == len(pairs) >= 1
    for p in pairs:
        assert p["rejected"] == "The muon track is 1.40 m long." and p["prompt"].startswith("Observations: muon 40.0")
        assert p["chosen"] == f"The muon track is {muon / 100:.2f} m long."


def test_a_model_error_on_a_wrong_measurement_makes_no_pair(tmp_path):
    """The tool's 40 cm is off the truth AND the model mis-copied it: the expert's true value is
    not in the observations, so a pair would teach the VLM to contradict its evidence."""
    rep, first, rx, pairs = _miscopying_run(tmp_path, FAKES)
    assert {c.observed for c in first if c.value is not None} == {"contradicted"}
    assert pairs == [] and rx.tool_errors == rep.tool_errors >= 1
    assert any("the observations contradict the expert's value" in k for k in rx.skipped)


def test_held_out_seeds_and_bad_specs_are_refused(capsys, tmp_path):
    with pytest.raises(ValueError, match="held out"):
        next(sim_events(f"sim:nu:seed={HELDOUT_SEEDS[0]}:voxel=0.6", 1))
    with pytest.raises(ValueError, match="sim:nu:seed=S"):
        next(sim_events("sim:mpv:seed=1", 1))
    db = tmp_path / "fb.sqlite"
    assert main(["--events", f"sim:nu:seed={HELDOUT_SEEDS[0]}", "--n-events", "1", "--brain", "rules",
                 "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "held out" in err[0] and not db.exists()
