"""Fake tools, fake brains and a small suite for the agent-evaluation tests (no models)."""
import json

from langchain_core.messages import AIMessage, ToolMessage

from larsight.agent import RulesBrain
from larsight.evals.agent_eval import run_agent_eval

from helpers.agent import VERTEX, fake_classify, fake_reco   # the same fixed measurements


def fake_vertex(ev):
    return {"status": "ok", "vertex_cm": VERTEX, "confidence": 0.9, "n_particles_at_vertex": 2}


def fake_similar(target, k=10, **kw):
    classes = ["numu_cc", "numu_cc", "nc", "nue_cc"]
    return {"query": "q", "query_kind": "event", "k": k, "n_indexed": 40,
            "hits": [{"key": f"sim:nu:seed=9:voxel=0.6:index={i}", "event_class": classes[i % 4],
                      "topology": "1mu 1p 0pi", "similarity": 0.9 - 0.01 * i} for i in range(k)]}


FAKES = {"find_vertex": fake_vertex, "reconstruct": fake_reco, "classify_event": fake_classify,
         "find_similar": fake_similar}


def suite_turn(q, expect, tools=None, match="strict", args=None, event=None):
    t = {"question": q, "expect": expect}
    if tools is not None:
        t["trajectory"] = {"tools": tools, "match": match}
    if args:
        t["args"] = args
    if event:
        t["event"] = event
    return t


def small_suite(ref):
    return [
        {"id": "c1", "tags": ["classification"], "event": ref,
         "turns": [suite_turn("Classify this event.", {"event_class": "numu_cc"}, ["classify_event"], "superset")]},
        {"id": "c2", "tags": ["vertexing"], "event": ref,
         "turns": [suite_turn("Where is the vertex?", {"vertex_cm": [11.0, 21.0, 31.0]}, ["find_vertex"])]},
        {"id": "c3", "tags": ["counting"], "event": ref,
         "turns": [suite_turn("How many protons are there?", {"counts": {"proton": 2}}, ["reconstruct"])]},
        {"id": "c4", "tags": ["irrelevant"], "event": ref,
         "turns": [suite_turn("What is a Michel electron?", {"no_tools": True}, [])]},
        {"id": "c5", "tags": ["retrieval"], "event": ref,
         "turns": [suite_turn("Find 3 events similar to this one.", {"similar": {"k": 3, "class": "numu_cc"}},
                         ["find_similar"], args={"find_similar": {"k": 3}})]},
        {"id": "c6", "tags": ["multi-turn"], "event": ref,
         "turns": [suite_turn("Where is the vertex?", {"vertex_cm": VERTEX}, ["find_vertex"]),
                   suite_turn("And how many muons does it have?", {"counts": {"muon": 1}}, ["reconstruct"])]},
    ]


def write_suite(path, cases):
    path.write_text("# test suite\n" + "\n".join(json.dumps(c) for c in cases) + "\n")
    return path


class ErringBrain:
    name = "erring"

    def decide(self, ctx):
        raise RuntimeError("the brain is on fire")


class FlakyBrain(RulesBrain):
    """The rules brain, failing every trial 1 (seeded per trial through ``reseed``)."""

    name = "flaky"

    def __init__(self):
        self.trial = 0
        self.trials_run = 0

    def reseed(self, case_id, trial):
        self.trial = trial
        self.trials_run += 1

    def decide(self, ctx):
        if self.trial == 1:
            raise RuntimeError("flake")
        return super().decide(ctx)


def run(tmp_path, suite, brain, k=3, name="run", **kw):
    return run_agent_eval(suite, brain=brain, out=tmp_path / name, k=k, tools=dict(FAKES), progress=False,
                          index_root=tmp_path / "idx", **kw)


class ScriptedChat:
    """An OpenAI-compatible chat model stand-in: calls find_vertex, then answers from its result."""

    def invoke(self, messages):
        done = [m for m in messages if isinstance(m, ToolMessage)]
        if not done:
            return AIMessage(content="", tool_calls=[{"name": "find_vertex", "args": {}, "id": "c1"}])
        v = json.loads(done[-1].content)["vertex_cm"]
        return AIMessage(content=f"The vertex is at ({v[0]:.1f}, {v[1]:.1f}, {v[2]:.1f}) cm.")
