"""qformer.corpus.actions: the action corpus is deterministic, varied, split by template, and
every target is a valid action of the agent's grammar that xgrammar's schema grammar accepts."""
import collections
import json

import pytest

from larsight.agent.actions import action_json_schema, parse_action
from larsight.qformer.corpus import action_phrases as P
from larsight.qformer.corpus.action_schema import action_prompt, action_text
from larsight.qformer.corpus.actions import (INTENTS, KIND_WEIGHTS, action_examples, normalize_action,
                                             template_split, typos)

N = 3000


@pytest.fixture(scope="module")
def train():
    return action_examples(N, seed=0, split="train")


@pytest.fixture(scope="module")
def heldout():
    return action_examples(600, seed=0, split="heldout")


def test_deterministic_and_seeded(train):
    again = action_examples(50, seed=0, split="train")
    assert [e["prompt"] for e in again] == [e["prompt"] for e in train[:50]]
    other = action_examples(50, seed=1, split="train")
    assert sum(a["prompt"] != b["prompt"] for a, b in zip(other, again)) > 40
    # an index window is the same examples as the full draw (resume continues the sequence)
    assert [e["prompt"] for e in action_examples(10, seed=0, start=20)] == [e["prompt"] for e in train[20:30]]


def test_every_target_is_a_valid_canonical_action(train, heldout):
    for e in train + heldout:
        a = parse_action(e["target"])
        assert normalize_action(a.model_dump()) == normalize_action(e["action"]), e["target"]
        assert action_text(e["action"]) == e["target"]
        assert e["prompt"] == action_prompt(e["question"], e["history"], e["metadata"])


def test_variety(train):
    kinds = collections.Counter(e["kind"] for e in train)
    assert set(kinds) == set(KIND_WEIGHTS)
    assert len({e["question"] for e in train}) > 0.6 * N
    tools = collections.Counter(c["tool"] for e in train for c in e["action"].get("calls", []))
    assert len(tools) == 7 and min(tools.values()) > 30
    assert {e["template"].split("|")[0] for e in train if e["kind"] == "single"} == set(INTENTS)
    multi = [e for e in train if e["kind"] == "multi"]
    assert multi and sum(len(e["action"]["calls"]) >= 2 for e in multi) > 0.8 * len(multi)
    assert any(e["history"] for e in train)
    # jargon and units appear in questions and set arguments
    units = [e for e in train if e["kind"] == "single" and " in mm" in e["question"].lower()]
    assert units and all('"unit":"mm"' in e["target"] for e in units)
    assert any("μ" in e["question"] or "1mu1p" in e["question"] for e in train)


def test_held_out_templates_are_never_trained_on(train, heldout):
    def base(e):
        return e["template"].split(" + ")[0].split(" via ")[0]
    tr = {base(e) for e in train}
    he = {base(e) for e in heldout}
    assert he and not tr & he
    # every intent keeps templates in both splits
    for intent in INTENTS:
        which = template_split(intent, P.TEMPLATES[intent][1])
        assert set(which.values()) == {"train", "heldout"}, intent
    assert all(e["split"] == "heldout" for e in heldout)


def test_injections_are_refused_or_ignored(train):
    for e in train:
        if e["kind"] == "injection":
            assert e["action"] == {"action": "refuse", "reason": "injection"}
        elif e["kind"] in ("injected", "metadata"):
            assert e["action"]["action"] == "call"     # the real question is answered, nothing more
            calls = e["action"]["calls"]
            assert not any(c["tool"] == "find_similar" and c["arguments"].get("k") == 50 for c in calls)
        elif e["kind"] in ("textbook", "chat"):
            assert e["action"] == {"action": "answer"}
        elif e["kind"] == "off_topic":
            assert e["action"]["reason"] == "off_topic"
    assert any(e["metadata"] and "IGNORE" in e["metadata"] for e in train)


def test_typos_are_deterministic_noise():
    import numpy as np

    text = "Where does the interaction vertex originate in millimetres?"
    a = typos(text, np.random.default_rng(3), rate=1.0)
    assert a != text and a == typos(text, np.random.default_rng(3), rate=1.0)
    assert typos(text, np.random.default_rng(3), rate=0.0) == text


def test_xgrammar_accepts_exactly_the_grammar(train):
    """The schema the constrained decoder compiles accepts every canonical target and rejects
    invalid actions (a character-level vocabulary stands in for the LM's tokenizer)."""
    xgr = pytest.importorskip("xgrammar")
    vocab = [chr(i) for i in range(32, 127)] + ["μ", "ν", "π", "±", "⁰", "γ", "</s>"]
    info = xgr.TokenizerInfo(vocab, stop_token_ids=[len(vocab) - 1])
    compiled = xgr.GrammarCompiler(info).compile_json_schema(
        json.dumps(action_json_schema()), any_whitespace=False, separators=(",", ":"), strict_mode=True)

    def accepts(text):
        m = xgr.GrammarMatcher(compiled)
        return m.accept_string(text) and m.is_completed()

    for target in sorted({e["target"] for e in train})[:400]:
        assert accepts(target), target
    for bad in ('{"action":"call","calls":[{"tool":"fly","arguments":{}}]}',
                '{"action":"call","calls":[]}',
                '{"action":"call","calls":[{"tool":"render","arguments":{"view":"top"}}]}',
                '{"action":"refuse","reason":"bored"}',
                '{"action":"answer","text":"hi"}',
                '{"action":"call","calls":[{"tool":"reconstruct","arguments":{"event":"x.h5:0"}}]}',
                '{"action": "answer"}'):
        assert not accepts(bad), bad
