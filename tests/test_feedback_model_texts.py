"""Preference pairs of what the VLM itself wrote (issue 19 / 16 item 3): the answer keeps the
language model's own text of each draft with its prompt; the feedback store keeps them; an
expert's correction of the model's words becomes a pair of the model's text, a correction of a
measurement the model copied faithfully does not."""
from __future__ import annotations

import json

import numpy as np
import pytest

from larsight.agent import Agent, Decision, RulesBrain
from larsight.agent.compose import compose
from larsight.agent.context import Context, revision
from larsight.agent.feedback import FeedbackStore, export, record_from_answer
from larsight.agent.render import FreeText
from larsight.agent.request import request_from_question
from larsight.events.model import Event

from helpers.agent import FAKES

PROMPT = "Observations:\nreconstruct: muon 40.0 cm, proton 4.0 cm\nQuestion: How long is the muon?"


class MisCopy(RulesBrain):
    """Measures the muon (40 cm), then writes that it is 1.40 m long; revised when sent back."""

    name = "miscopy"

    def decide(self, ctx: Context) -> Decision:
        if ctx.feedback:
            return revision(ctx)
        if not ctx.observations:
            return Decision(action="tool", tool="reconstruct")
        comp = compose(request_from_question(ctx.question, ["length"]), ctx.observations, ctx.evidence())
        free = FreeText(text="The muon track is 1.40 m long.", label="The VLM explains:", author="vlm", prompt=PROMPT)
        return Decision(action="answer", composition=comp.model_copy(update={"free": free}))


@pytest.fixture
def event():
    return Event(points=np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]], np.float32), energy=np.ones(3, np.float32))


@pytest.fixture
def answer(tmp_path, event):
    return Agent(MisCopy(), tools=dict(FAKES), run_dir=tmp_path / "agent").ask(event, "How long is the muon in metres?")


def test_the_answer_keeps_the_models_own_text_of_each_draft(answer, tmp_path, event):
    assert answer.first_draft_checks["contradicted"] == 1 and answer.revisions == 1
    first = answer.model_texts[0]
    assert (first.text, first.author, first.prompt) == ("The muon track is 1.40 m long.", "vlm", PROMPT)
    compose_steps = [s for s in answer.steps if s.node == "compose"]
    assert len(compose_steps) == 2 and compose_steps[0].free_text == first
    again = type(answer).model_validate(json.loads(answer.model_dump_json()))     # JSON round trip
    assert again.model_texts == answer.model_texts
    # code-rendered answers carry no model text
    plain = Agent("rules", tools=dict(FAKES), run_dir=tmp_path / "rules").ask(event, "How long is the muon?")
    assert plain.model_texts == [] and all(s.free_text is None for s in plain.steps)


def test_a_correction_of_the_first_draft_becomes_a_pair_of_the_models_text(answer, tmp_path):
    rec = record_from_answer(answer)
    assert rec.first_draft.prompt == PROMPT
    row = next(i for i, c in enumerate(rec.first_draft.claims) if c["claim"]["kind"] == "track_length")
    assert rec.first_draft.claims[row]["verdict"] == "contradicted"
    with FeedbackStore(tmp_path / "fb.sqlite") as store:
        aid = store.record_answer(answer)
        fid = store.add({"answer_id": aid, "verdict": "down", "corrections": [
            {"claim": row, "of": "first_draft", "value": 40, "unit": "cm"}]})
        assert store.get(fid).corrections[0].blame == "model"
        assert store.answer(aid).model_texts == rec.model_texts
        rep = export(store, tmp_path / "p.jsonl", fmt="dpo")
    pair = json.loads((tmp_path / "p.jsonl").read_text())
    assert rep.pairs_by_kind == {"model_correction": 1}
    assert (pair["prompt"], pair["rejected"], pair["chosen"]) == \
        (PROMPT, "The muon track is 1.40 m long.", "The muon track is 0.40 m long.")   # in the unit it wrote
