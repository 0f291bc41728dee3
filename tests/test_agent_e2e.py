"""The agent end to end on a simulated event with the real tools (rules brain), the `larsight ask`
command line, and the real VLM brain (the shipped checkpoint; ~10 s)."""
import json

import pytest

from larsight.agent import Agent
from larsight.events.model import EVENT_CLASSES


@pytest.fixture(scope="module")
def sim_event():
    from larsight.encoder.data import DataSpec, event_stream

    # held-out event 2 of the eval split (a nu_mu CC event), simulated alone
    return next(iter(event_stream(DataSpec(modes="nu", seed=0), "eval", start=2, stop=3)))


@pytest.fixture(scope="module")
def rules_bot(tmp_path_factory):
    bot = Agent("rules", run_dir=tmp_path_factory.mktemp("run"))
    # the encoder's event head only: loading the VLM is a slow test's business
    bot.toolset.tool_kwargs["classify_event"] = {"vlm": False}
    bot.toolset.tool_kwargs["describe"] = {"vlm": False}
    return bot


def test_rules_agent_on_a_simulated_event(rules_bot, sim_event):
    v = rules_bot.ask(sim_event, "Where is the vertex?")
    assert v.trajectory == ["find_vertex"] and v.tool_calls[0].ok
    assert v.claims and all(c.verdict == "supported" for c in v.claims)
    assert len(v.values["vertex_cm"]) == 3

    c = rules_bot.ask(sim_event, "Classify this event and explain why.")
    assert c.trajectory == ["classify_event", "reconstruct"]
    assert c.event_class in EVENT_CLASSES and abs(sum(c.class_probabilities.values()) - 1) < 1e-3
    assert c.n_contradicted == 0 and c.values["event_class"] == c.event_class

    p = rules_bot.ask(sim_event, "How many protons are there?")
    assert p.trajectory == ["reconstruct"] and p.n_contradicted == 0
    assert "proton" in p.values["counts"]

    d = rules_bot.ask(sim_event, "Describe this event.")
    assert d.trajectory == ["describe"] and d.n_contradicted == 0 and d.n_supported >= 3


def test_cli_ask_json(tmp_path, sim_event, capsys):
    from larsight.events.formats import write
    from larsight.ui.cli import main

    h5 = tmp_path / "one.h5"
    write(h5, [sim_event])
    code = main(["ask", f"{h5}:0", "Where is the vertex?", "--brain", "rules", "--json",
                 "--run-dir", str(tmp_path / "run")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["event"] == f"{h5}:0" and out["brain"] == "rules"
    assert "The vertex is at" in out["text"] and out["claims"][0]["verdict"] == "supported"
    assert [s["node"] for s in out["steps"]][:3] == ["intake", "plan", "observe"]
    assert main(["ask", str(tmp_path / "missing.h5:0"), "Where is the vertex?", "--brain", "rules"]) == 3   # bad input file: exit 3 (ui.cli_args)


def test_vlm_brain_end_to_end(sim_event, tmp_path):
    from larsight.qformer.vlm import DEFAULT_VLM_DIR, MANIFEST

    if not (DEFAULT_VLM_DIR / MANIFEST).exists():
        pytest.skip("no shipped VLM checkpoint")
    bot = Agent("vlm", run_dir=tmp_path)
    a = bot.ask(sim_event, "Where is the vertex?")
    reason = [s for s in a.steps if s.node == "plan"][0]
    assert reason.scores is not None and abs(sum(reason.scores.values()) - 1) < 1e-6
    assert a.trajectory == ["find_vertex"]     # the wording asks for the vertex: the VLM's only choice
    assert a.text and a.n_contradicted == 0
    g = bot.ask(sim_event, "What is the capital of France?")
    assert g.trajectory == [] and g.claims == []


def test_demo_asks_the_agent(tmp_path):
    import io

    from larsight.ui.demo import run_demo

    out = io.StringIO()
    run_demo(tmp_path / "demo", n=1, seed=11, html=False, png=False, stream=out, ask=True, brain="rules",
             questions=["Where is the vertex?", "What particles are in this event?"])
    text = out.getvalue()
    assert "== agent (rules brain): 2 questions about 1 events ==" in text
    assert "truth: class" in text and "Q: Where is the vertex?" in text
    assert "verdict" in text and "supported" in text
    lines = (tmp_path / "demo" / "agent_answers.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["trajectory"] == ["find_vertex"]
    assert "# Agent answers (rules brain)" in (tmp_path / "demo" / "agent_answers.md").read_text()
