"""Typed claims inside, English outside: agent.compose writes typed claims, agent.validate checks them
directly, agent.render writes them once in the units the question asks for, Answer.values reads
them; only a language model's free text is parsed (agent.claims.extract_claims). The graph's
plan node puts the chosen action in the state and the trace."""
import sys

import numpy as np
import pytest

from larsight.agent import Agent, Decision, RulesBrain
from larsight.agent.api import Answer
from larsight.agent.claims import Claim
from larsight.agent.compose import compose
from larsight.agent.context import Context, revision
from larsight.agent.evidence import Evidence, strip_truth
from larsight.agent.request import request_from_question
from larsight.agent.render import Composition, FreeText, Sentence, render, units_from_question
from larsight.agent.validate import Check, check_claims, revise
from larsight.events.model import Event

from helpers.agent import FAKES, fake_classify, fake_reco, fake_vertex


def _obs(tool, out):
    return {"tool": tool, "ok": True, "output": strip_truth(out), "event": "e"}


OBS = [_obs("reconstruct", fake_reco(None)), _obs("find_vertex", fake_vertex(None)),
       _obs("classify_event", fake_classify(None))]


@pytest.fixture
def ev():
    return Evidence.from_observations(OBS, event="e")


@pytest.fixture
def no_parsing(monkeypatch):
    """Any attempt to read English back into claims fails the test."""
    def refuse(text):
        raise AssertionError(f"parsed English: {text!r}")
    for name in ("larsight.agent.claims", "larsight.agent.render", "larsight.agent.validate"):
        monkeypatch.setattr(sys.modules[name], "extract_claims", refuse)


@pytest.fixture
def event():
    return Event(points=np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]], np.float32), energy=np.ones(3, np.float32))


def test_claim_is_typed_and_frozen():
    c = Claim(kind="track_length", subject="muon", value=40.0, unit="cm", tool="reconstruct")
    with pytest.raises(Exception):
        c.value = 1.0
    with pytest.raises(Exception):
        Claim(kind="colour", subject="muon")
    assert c.describe() == "muon length 40.0 cm" and c.source == "tools"
    assert Claim.model_validate_json(c.model_dump_json()) == c


def test_compose_makes_typed_claims_from_the_measurements(ev, no_parsing):
    comp = compose(request_from_question("Classify this event and explain why.", ["classify", "reasons"]), OBS, ev)
    got = {(c.kind, c.subject, c.value, c.unit, c.tool) for c in comp.claims}
    assert ("event_class", "event", "numu_cc", None, "classify_event") in got
    assert ("track_length", "muon", 40.0, "cm", "reconstruct") in got
    assert ("michel", "michel", None, None, "reconstruct") in got
    checks = check_claims(comp.claims, ev)
    assert checks and all(c.verdict == "supported" for c in checks)
    assert comp.text().startswith("nu_mu CC: the classifier gives p = 0.90")
    assert "The muon track is 40.0 cm long and ends with a Michel electron." in comp.text()


@pytest.mark.parametrize("question,intents,expect", [
    ("How long is the muon track in metres?", ["length"], "The muon track is 0.40 m long."),
    ("How long is the muon track?", ["length"], "The muon track is 40.0 cm long."),
    ("Where is the vertex in mm?", ["vertex"], "The vertex is at (100, 200, 300) mm"),
    ("What are the particle energies in GeV?", ["energy"], "The visible energy is 0.300 GeV."),
    ("What are the particle energies in keV?", ["energy"], "a 190000 keV muon"),
])
def test_requested_units_are_honoured_at_render_time(ev, no_parsing, question, intents, expect):
    comp = compose(request_from_question(question, intents), OBS, ev)
    assert expect in comp.text()
    # inside, the values stay canonical (cm, MeV) and check as before
    assert all(c.unit in (None, "cm", "MeV", "MeV/cm", "count") for c in comp.claims)
    assert all(c.verdict == "supported" for c in check_claims(comp.claims, ev))


def test_units_from_question():
    assert units_from_question("vertex in millimetres please").length == "mm"
    assert units_from_question("how many metres is the muon").length == "m"
    assert units_from_question("energy in GeV").energy == "GeV"
    u = units_from_question("How many muons are there?")
    assert (u.length, u.energy) == ("cm", "MeV")


def test_values_read_the_typed_claims_not_the_text(ev):
    typed = Claim(kind="count", subject="proton", value=1.0, unit="count", tool="reconstruct")
    parsed = Claim(kind="count", subject="proton", value=3.0, unit="count", source="text", text="3 protons")
    a = Answer(question="q", text="words that say nothing", claims=[
        Check(claim=parsed, verdict="contradicted"), Check(claim=typed, verdict="supported")])
    assert a.values["counts"] == {"proton": 1}
    # an answer with only a language model's free text falls back to the claims read from it
    b = Answer(question="q", text="", claims=[Check(claim=parsed, verdict="contradicted")])
    assert b.values["counts"] == {"proton": 3}


def test_typed_revision_drops_the_claim_and_states_the_measurement_in_the_asked_unit(ev, no_parsing):
    wrong = Claim(kind="track_length", subject="muon", value=140.0, unit="cm", tool="reconstruct")
    comp = Composition(sentences=[Sentence(template="A {0} muon track.", claims=[wrong]),
                                  Sentence(template="Hello.")], units=units_from_question("in metres"))
    assert comp.text() == "A 1.40 m muon track. Hello."
    checks = check_claims(comp.claims, ev)
    assert [c.verdict for c in checks] == ["contradicted"]
    assert "[contradicted by reconstruct: muon length 140.0 cm; measured length_cm=40.0" in render(comp, checks)
    fixed = revise(comp, checks, ev)
    assert fixed.text() == "Hello. The muon track is 0.40 m long."
    assert all(c.verdict == "supported" for c in check_claims(fixed.claims, ev))


def test_free_text_of_a_model_is_the_only_parsed_text(ev):
    comp = Composition(sentences=[Sentence(template="{0}.", claims=[Claim(kind="event_class", subject="event",
                                                                           value="numu_cc", tool="classify_event")])],
                       free=FreeText(text="a 40 cm muon track; there are 3 protons.", label="The VLM explains:"))
    assert [c.source for c in comp.claims] == ["tools", "text", "text", "text"]
    assert comp.text() == "nu_mu CC. The VLM explains: a 40 cm muon track; there are 3 protons."
    checks = check_claims(comp.claims, ev)
    assert [c.verdict for c in checks if c.claim.source == "text" and c.claim.kind == "count"] == ["contradicted"]


def test_decision_accepts_a_composition_as_text(ev):
    comp = compose(request_from_question("Where is the vertex?", ["vertex"]), OBS, ev)
    d = Decision(action="answer", text=comp)
    assert d.composition == comp and d.text == comp.text()
    assert Decision(action="answer", text="free words").as_composition().free.text == "free words"


# ============================================================================ the graph
def test_plan_node_stores_the_action_and_the_trace_reads_like_the_flowchart(tmp_path, event):
    bot = Agent("rules", tools=dict(FAKES), run_dir=tmp_path)
    graph = bot.graph(False)
    assert {"intake", "plan", "act", "observe", "compose", "validate", "finish"} <= set(graph.get_graph().nodes)
    a = bot.ask(event, "How long is the muon track in metres?")
    assert [s.node for s in a.steps] == ["intake", "plan", "observe", "plan", "compose", "validate", "finish"]
    plans = [s for s in a.steps if s.node == "plan"]
    assert (plans[0].action, plans[0].tool, plans[0].arguments) == ("tool", "reconstruct", {})
    assert plans[1].action == "answer"
    assert a.text == "The muon track is 0.40 m long."
    assert a.first_draft_checks == {"supported": 2, "contradicted": 0, "unverifiable": 0}
    compose_step = next(s for s in a.steps if s.node == "compose")
    assert compose_step.claims == {"typed": 2, "from_text": 0}


def test_plan_state_holds_the_chosen_action(tmp_path, event):
    bot = Agent("rules", tools=dict(FAKES), run_dir=tmp_path)
    from larsight.agent.graph import turn_input
    from larsight.agent.toolset import register

    graph = bot.graph(False)
    cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": 30}
    seen = [d["action"] for u in graph.stream(turn_input("Where is the vertex?", register(event)), cfg,
                                                      stream_mode="updates")
            for n, d in u.items() if n == "plan"]
    assert seen[0]["kind"] == "tool" and seen[0]["tool"] == "find_vertex"
    assert seen[-1]["kind"] == "answer" and seen[-1]["grounded"] is True


def test_first_draft_contradictions_are_counted_and_revised_away(tmp_path, event):
    class Wrong(RulesBrain):
        name = "wrong-first"

        def decide(self, ctx: Context) -> Decision:
            if ctx.feedback:
                return revision(ctx)
            if not ctx.observations:
                return Decision(action="tool", tool="reconstruct")
            comp = compose(request_from_question(ctx.question, ["length"]), ctx.observations, ctx.evidence())
            return Decision(action="answer", composition=comp.explained("the muon track is 1.40 m long."))

    a = Agent(Wrong(), tools=dict(FAKES), run_dir=tmp_path).ask(event, "How long is the muon in metres?")
    assert a.first_draft_checks["contradicted"] == 1 and a.revisions == 1 and a.n_contradicted == 0
    assert a.text == "The muon track is 0.40 m long."
    assert "1.40 m" in a.drafts[0] and len(a.drafts) == 2


def test_refusal_is_an_action_without_tools(tmp_path, event):
    class Refuser(RulesBrain):
        name = "refuser"

        def decide(self, ctx):
            return Decision(action="refuse", text="I only answer questions about the event.", grounded=False)

    a = Agent(Refuser(), tools=dict(FAKES), run_dir=tmp_path).ask(event, "Write me a poem.")
    assert a.trajectory == [] and a.claims == [] and a.text == "I only answer questions about the event."
    assert [s.action for s in a.steps if s.node == "plan"] == ["refuse"]


def test_describe_is_composed_from_its_structured_facts_not_its_text(no_parsing):
    out = {"text": "A summary in the tool's own words.", "event_class": "numu_cc", "class_probability": 0.8,
           "vertex_cm": [1.0, 2.0, 3.0], "vertex_status": "ok", "topology": "1mu 0p 0pi", "visible_energy_mev": 250.0,
           "particles": [{"id": 0, "kind": "track", "pid": "muon", "length_cm": 30.0, "kinetic_energy_mev": 120.0}]}
    obs = [_obs("describe", out)]
    ev = Evidence.from_observations(obs, event="e")
    comp = compose(request_from_question("Describe this event in GeV.", ["describe"]), obs, ev)
    text = comp.text()
    assert "own words" not in text and "The visible energy is 0.250 GeV." in text
    kinds = {(c.kind, c.subject) for c in comp.claims}
    assert {("event_class", "event"), ("vertex", "vertex"), ("count", "muon"), ("energy", "visible")} <= kinds
    assert all(c.verdict == "supported" for c in check_claims(comp.claims, ev))


# ---------------------------------------------------------------- requests: words vs actions
def test_request_from_question_reads_species_units_and_hypothesis():
    r = request_from_question("Is this a nu_e CC event? How many protons, in mm?", ["classify", "counts"])
    assert r.hypothesis == "nue_cc" and r.species == ["proton"] and r.units.length == "mm"
    assert not r.all_species and not r.yes_no
    r = request_from_question("Are there any photons?", ["counts"])
    assert r.yes_no and r.species == ["photon"]
    r = request_from_question("What is the final-state topology?", ["counts"])
    assert r.all_species and r.species == []


def test_request_from_action_reads_only_the_arguments(ev, no_parsing):
    from larsight.agent.actions import parse_action
    from larsight.agent.request import request_from_action

    a = parse_action('{"action":"call","calls":[{"tool":"reconstruct","arguments":'
                     '{"particle":"muon","quantity":"length","unit":"m"}}]}')
    r = request_from_action(a, ["length"])
    assert r.species == ["muon"] and r.units.length == "m" and r.hypothesis is None
    text = compose(r, OBS, ev).text()
    assert "muon track is" in text and " m long" in text
    # the same action answers the same whatever the words of the question were: compose never sees them
    a2 = parse_action('{"action":"call","calls":[{"tool":"reconstruct","arguments":{"quantity":"counts"}}]}')
    r2 = request_from_action(a2, ["counts"])
    assert r2.all_species and r2.list_particles and r2.species == []
