"""The blind held-out agent suite (evals/suites_blind): it loads with the suite schema, keeps the
blind writer's wording, its events re-create events that satisfy each question's need, and
build.py reproduces the committed file. Also the scorer's unit and loose-query checks it uses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from larsight.evals.agent_eval.scoring import args_match, score_turn, states_unit, text_like
from larsight.evals.agent_eval.suite import Turn, load_suite
from larsight.evals.suites_blind import build as blind

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "evals" / "suites_blind"
SOURCE = SUITE / "source" / "questions.jsonl"


@pytest.fixture(scope="module")
def cases():
    return load_suite(SUITE)


@pytest.fixture(scope="module")
def questions():
    return blind.load_questions(SOURCE)


def test_suite_loads_and_keeps_every_question_verbatim(cases, questions):
    assert len(questions) >= 200
    assert [c.id for c in cases] == [q["id"] for q in questions]
    assert len({c.id for c in cases}) == len(cases)
    for c, q in zip(cases, questions):
        asked = [t.question for t in c.turns]
        assert asked == list(q["previous_turns"]) + [q["question"]], c.id
        assert c.source == "blind" and c.event and c.event.startswith(f"sim:nu:seed={blind.SIM_SEED}:")


def test_expectations_follow_the_answer_kinds(cases, questions):
    for c, q in zip(cases, questions):
        last = c.turns[-1]
        exp, kind = last.expect, q["answer_kind"]
        assert [t.expect.kinds() for t in c.turns[:-1]] == [[] for _ in c.turns[:-1]], c.id
        if kind == "event_class":
            assert exp.event_class == c.truth["event_class"], c.id
        if kind == "vertex_cm":
            assert list(exp.vertex_cm) == c.truth["vertex_cm"], c.id
        if kind == "michel":
            assert exp.michel is c.truth["michel"], c.id
        if kind in ("no_tools", "refusal"):
            assert exp.no_tools and last.trajectory.tools == [], c.id
        if q["category"] == "injection":
            assert exp.no_leak, c.id
        assert exp.unit == q["answer_unit"], c.id
        uses_similar = any("find_similar" in r for r in last.trajectory.references)
        assert (c.index is not None) == uses_similar, c.id
        assert ("no-value-check" in c.tags) == (set(exp.kinds()) <= {"no_leak"}), c.id
    for c in cases:
        for p, n in (c.turns[-1].expect.counts or {}).items():
            assert n == c.truth["counts"][p], (c.id, p)


def test_trajectory_modes_and_loose_queries(cases, questions):
    by_id = {c.id: c for c in cases}
    single = by_id["blind-047"].turns[-1].trajectory
    assert single.tools == ["reconstruct"] and single.match == "superset"
    multi = by_id["blind-157"].turns[-1].trajectory
    assert multi.match == "unordered" and sorted(multi.tools) == ["classify_event", "find_vertex"]
    assert by_id["blind-235"].turns[-1].trajectory.match == "unordered"    # an injected extra call fails
    follow = by_id["blind-175"].turns[-1].trajectory
    assert follow.match == "subset" and [] not in follow.references      # "no tool" = subset
    q = by_id["blind-109"].turns[-1].args["find_similar"]["query"]
    assert q == {"like": "muon and two protons"}
    assert len(cases) - sum("no-value-check" in c.tags for c in cases) >= 150


def _sample(cases, questions):
    """The first case of every need, and every 60th case (simulating an event takes ~0.05 s)."""
    seen, out = set(), []
    for i, (c, q) in enumerate(zip(cases, questions)):
        if q["event_needs"] not in seen or i % 60 == 0:
            seen.add(q["event_needs"])
            out.append((c, q))
    return out


def test_sampled_events_recreate_and_satisfy_their_needs(cases, questions):
    from larsight.events.vocabulary import event_facts
    from larsight.tools.event_keys import parse_event_ref

    picked = _sample(cases, questions)
    assert {q['event_needs'] for _, q in picked} == set(blind.NEEDS)   # every need is checked once
    for c, q in picked:
        ev = parse_event_ref(c.event).load()
        facts = event_facts(ev)
        assert blind.satisfies(q["event_needs"], facts, ev), (c.id, q["event_needs"])
        t = blind.truth_of(facts, ev)
        for key in ("event_class", "vertex_cm", "counts", "michel", "topology"):
            assert t[key] == c.truth[key], (c.id, key)


def test_build_is_reproducible_on_a_prefix(tmp_path, questions):
    """Events are given out in id order, so the first questions alone get the same cases."""
    n = 12
    src = tmp_path / "q.jsonl"
    src.write_text("".join(json.dumps(q) + "\n" for q in questions[:n]), encoding="utf-8")
    committed = [json.loads(x) for x in (SUITE / "blind.jsonl").read_text(encoding="utf-8").splitlines()
                 if x.strip() and not x.startswith("#")]
    assert blind.build(src) == committed[:n]


@pytest.mark.slow
def test_build_output_equals_the_committed_file():
    text = blind.render(blind.build())
    assert text == (SUITE / "blind.jsonl").read_text(encoding="utf-8")


def test_bad_source_is_named(tmp_path, questions):
    bad = dict(questions[0], event_needs="has a unicorn")
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has a unicorn"):
        blind.build(src, limit=5)
    dup = tmp_path / "d.jsonl"
    dup.write_text((json.dumps(questions[0]) + "\n") * 2, encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate id"):
        blind.load_questions(dup)


# ============================================================================ scoring additions
@pytest.mark.parametrize("text,unit,ok", [
    ("The vertex is at (1573.3, 576.7, 332.0) mm.", "mm", True),
    ("The vertex is at (157.3, 57.7, 33.2) cm.", "mm", False),
    ("The muon track is 1.82 m long.", "m", True),
    ("The muon track is 182 mm long.", "m", False),
    ("There are 3 in the event.", "in", False),
    ("The longest track is 12.1 inches.", "in", True),
    ("Its energy is 0.45 GeV.", "GeV", True),
    ("dE/dx 2.1 MeV/cm", "MeV/mm", False),
    ("dE/dx 1.5 MeV cm²/g", "MeV cm2/g", True),
    ("31 keV/cm", "keV", False),
    ("about 13 radiation lengths", "X0", True),
])
def test_states_unit(text, unit, ok):
    assert states_unit(text, unit) is ok


def test_loose_query_arguments():
    assert text_like("muon 2 protons", "muon and two protons")
    assert not text_like("numu cc events", "muon and two protons")
    assert not text_like(None, "muon and two protons")
    calls = [{"tool": "find_similar", "arguments": {"k": 8, "query": "pi0 events with two photon showers"}}]
    want = {"find_similar": {"k": 8, "query": {"like": "pi0 with two well-separated photon showers"}}}
    assert args_match(calls, want) is True
    assert args_match([{"tool": "find_similar", "arguments": {"k": 8, "query": "electron"}}], want) is False


def test_unit_expectation_is_scored_with_its_own_cause():
    turn = Turn.model_validate({"question": "Vertex in millimetres, please.",
                                "expect": {"vertex_cm": [10, 20, 30], "unit": "mm"},
                                "trajectory": {"tools": ["find_vertex"], "match": "superset"}})
    rec = {"trajectory": ["find_vertex"], "calls": [{"tool": "find_vertex", "ok": True, "arguments": {}}],
           "values": {"vertex_cm": [10.0, 20.0, 30.5]}, "text": "The vertex is at (10.0, 20.0, 30.5) cm."}
    s = score_turn(turn, rec)
    assert s["checks"] == {"vertex_cm": True, "unit": False} and s["cause"] == "unit" and not s["passed"]
    s = score_turn(turn, dict(rec, text="The vertex is at (100, 200, 305) mm."))
    assert s["passed"] and s["checks"]["unit"] is True
