"""The LangGraph Reason -> Action -> Observation loop with expert validation.

::

    START -> intake -> plan -+-> act -> observe -> plan ...
                             |
                             +-> compose -> validate -+-> finish -> END
                                    ^                 |
                                    +---- plan <------+  (a contradicted claim, at most
                                                           ``max_revisions`` times)

- ``intake``: cuts embedded instructions out of the question (``agent.safety``), checks that
  the event reference resolves (an unknown event becomes an observation, not a crash).
- ``plan`` (route/plan): the brain chooses the next action: a tool call with its arguments, an
  answer, or a refusal; the choice is stored in the state (``action``) and the trace. After
  ``max_actions`` tool calls the answer is forced from what was measured.
- ``act``: validates the action against the fixed tool set (an unknown tool, bad arguments
  or an event the agent may not touch become an *invalid action* observation), runs the tool,
  times it; any exception becomes an observation the brain sees.
- ``observe``: appends the observation to the state and the trace.
- ``compose``: the answer as typed claims (``agent.render.Composition``: the brain's composition
  from the measurements, plus any free text a language model wrote, whose claims are read from
  its words); the trace shows the draft rendered in the requested units.
- ``validate``: the claims are checked against the measurements; tools missing for a claim run
  now (purpose ``verify``); contradicted claims go back to ``plan`` as feedback until
  ``max_revisions``. The trace step holds the verdict counts (the first one is the first draft's).
- ``finish``: renders the answer once (``agent.render.render``), flagging what stays
  unverifiable or contradicted, withholds any echo of the system prompt, and appends the turn to
  the thread's history and memory.

Each node is a function of this module with the same name, taking the state (and, where it
needs the brain, the tools or the limits, the ``Loop`` of the graph) and returning the state
update; ``after_plan`` / ``after_validate`` choose the conditional edges.

State holds ids, paths and JSON only (``AgentState``); events live in ``agent.toolset``'s
registry. Raw tool results (with arrays, figures) stay in this process in ``RESULTS``, keyed by
the observation id. A conversation is a LangGraph thread: with a checkpointer (SQLite for
persistent threads) the next ``invoke`` on the same ``thread_id`` sees ``history`` and
``memory`` of the earlier turns.
"""
from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, TypedDict

from langgraph.graph import END, START, StateGraph

from .compose import compose
from .request import request_from_question
from .context import Context, Decision
from .evidence import Evidence
from .intents import intents
from .render import Composition, render
from .safety import guard_leak, sanitize_question
from .toolset import ToolCallError, ToolSet, UnknownEventError, headline, observation, resolve
from .validate import Check, check_claims, tools_needed

__all__ = ["AgentState", "Loop", "build_graph", "recursion_limit_for", "RESULTS", "turn_input", "NODES",
           "MAX_ACTIONS", "MAX_REVISIONS", "MEMORY_SIZE"]

MAX_ACTIONS = 6       # tool calls per turn before the answer is forced
MAX_REVISIONS = 2     # answers sent back by the validator per turn
MEMORY_SIZE = 60      # observations kept across the turns of a thread
HISTORY_SIZE = 20

NODES = ("intake", "plan", "act", "observe", "compose", "validate", "finish")
"""The graph's nodes, in flowchart order (``verify`` steps in the trace are the validator's tool runs)."""

RESULTS: "OrderedDict[str, Any]" = OrderedDict()
"""Raw tool results of this process by observation id (bounded), for displays."""


class AgentState(TypedDict, total=False):
    question: str
    clean_question: str
    injection: Optional[str]
    event: Optional[str]
    turn: int
    history: list[dict]
    memory: list[dict]
    observations: list[dict]
    trace: list[dict]
    pending: Optional[dict]
    action: Optional[dict]
    latest: Optional[dict]
    draft: Optional[dict]
    checks: list[dict]
    feedback: list[dict]
    revisions: int
    n_actions: int
    stop: Optional[str]
    final: Optional[str]
    started: float


def recursion_limit_for(max_actions: int, max_revisions: int) -> int:
    """Graph steps one turn can take: intake, 3 per tool call (plan, act, observe), 3 per
    answer (plan, compose, validate) and its revisions, finish; plus verification slack."""
    return 2 + 3 * max_actions + 3 * (max_revisions + 1) + 4


def turn_input(question: str, event: Optional[str]) -> dict:
    """The state update that starts a new turn (per-turn fields reset; history and memory
    of the thread kept; the event kept from the thread when None)."""
    inp = {"question": question, "observations": [], "trace": [], "pending": None, "action": None, "latest": None,
           "draft": None, "checks": [], "feedback": [], "revisions": 0, "n_actions": 0, "stop": None,
           "final": None, "started": time.time(), "injection": None, "clean_question": ""}
    if event is not None:
        inp["event"] = event
    return inp


def _step(state: dict, node: str, text: str = "", **kw) -> dict:
    trace = state.get("trace") or []
    return {"index": len(trace), "node": node, "text": text,
            "t": round(time.time() - float(state.get("started") or time.time()), 4), **kw}


_RESULTS_LOCK = threading.Lock()


def _remember(result: Any) -> str:
    oid = uuid.uuid4().hex[:12]
    with _RESULTS_LOCK:
        RESULTS[oid] = result
        while len(RESULTS) > 256:
            RESULTS.popitem(last=False)
    return oid


def _json_safe(x: Any) -> Any:
    try:
        return json.loads(json.dumps(x, default=str))
    except (TypeError, ValueError):
        return str(x)


@dataclass(frozen=True)
class Loop:
    """What the nodes need besides the state: the brain, the tools and the limits of a turn."""

    brain: Any
    toolset: ToolSet
    secrets: tuple[str, ...] = ()
    max_actions: int = MAX_ACTIONS
    max_revisions: int = MAX_REVISIONS
    verify: bool = True


def build_graph(brain, toolset: Optional[ToolSet] = None, *, max_actions: int = MAX_ACTIONS,
                max_revisions: int = MAX_REVISIONS, verify: bool = True, checkpointer=None):
    """The compiled agent graph for ``brain`` (see the module docstring)."""
    loop = Loop(brain=brain, toolset=toolset or ToolSet(),
                secrets=tuple(brain.secrets() if hasattr(brain, "secrets") else ()),
                max_actions=max_actions, max_revisions=max_revisions, verify=verify)
    g = StateGraph(AgentState)
    g.add_node("intake", intake)
    g.add_node("plan", functools.partial(plan, loop=loop))
    g.add_node("act", functools.partial(act, loop=loop))
    g.add_node("observe", observe)
    g.add_node("compose", compose_node)
    g.add_node("validate", functools.partial(validate, loop=loop))
    g.add_node("finish", functools.partial(finish, loop=loop))
    g.add_edge(START, "intake")
    g.add_edge("intake", "plan")
    g.add_conditional_edges("plan", after_plan, {"act": "act", "compose": "compose"})
    g.add_edge("act", "observe")
    g.add_edge("observe", "plan")
    g.add_edge("compose", "validate")
    g.add_conditional_edges("validate", after_validate, {"plan": "plan", "finish": "finish"})
    g.add_edge("finish", END)
    return g.compile(checkpointer=checkpointer)


# ============================================================================ nodes
def intake(state: AgentState) -> dict:
    clean, removed = sanitize_question(state.get("question", ""))
    obs = []
    ev = state.get("event")
    if ev:
        try:
            resolve(ev)
        except UnknownEventError as e:
            obs.append({"id": uuid.uuid4().hex[:12], "tool": None, "ok": False, "error": str(e),
                        "error_kind": "unknown_event", "event": ev, "purpose": "intake", "seconds": 0.0})
    text = f"event {ev or 'none'}"
    if removed:
        text += f"; removed embedded instructions: {removed[:120]!r}"
    if obs:
        text += f"; {obs[0]['error']}"
    trace = [_step(state, "intake", text)]
    return {"clean_question": clean, "injection": removed, "observations": obs, "trace": trace,
            "turn": int(state.get("turn") or 0) + 1}


def plan(state: AgentState, loop: Loop) -> dict:
    """Route/plan: the brain's chosen action (a tool call with its arguments, an answer, a
    refusal), stored in the state as ``action`` and shown in the trace."""
    t0 = time.perf_counter()
    d, stop = _decide(context(state, loop.max_actions), loop, state.get("stop"))
    kind = d.action if d.action != "answer" else ("answer" if d.grounded else "answer without tools")
    action = {"kind": d.action, "tool": d.tool if d.action == "tool" else None,
              "arguments": _json_safe(d.arguments) if d.action == "tool" else None, "grounded": bool(d.grounded),
              "thought": d.thought, "scores": d.scores}
    step = _step(state, "plan", d.thought, seconds=round(time.perf_counter() - t0, 4),
                 decision=d.action, tool=action["tool"], arguments=action["arguments"], scores=d.scores,
                 action=kind)
    out: dict[str, Any] = {"trace": (state.get("trace") or []) + [step], "stop": stop, "action": action}
    if d.action == "tool":
        out["pending"] = {"tool": d.tool, "arguments": _json_safe(d.arguments), "call_id": d.call_id}
        out["draft"] = state.get("draft")
    else:
        comp = d.as_composition() or Composition()
        grounded = bool(d.grounded) and d.action == "answer"
        out["pending"] = None
        out["draft"] = {"composition": comp.model_dump(mode="json"), "grounded": grounded,
                        "text": comp.text() if grounded else (d.text or comp.text())}
    return out


def act(state: AgentState, loop: Loop) -> dict:
    p = state.get("pending") or {}
    ob = run_tool(loop.toolset, state, p.get("tool"), p.get("arguments"), state.get("event"),
                  "action", p.get("call_id"))
    return {"pending": None, "latest": ob, "n_actions": int(state.get("n_actions") or 0) + 1}


def observe(state: AgentState) -> dict:
    ob = state.get("latest") or {}
    step = _step(state, "observe", _observation_text(ob), tool=ob.get("tool"),
                 observation=ob.get("id"), seconds=ob.get("seconds"), ok=ob.get("ok"))
    return {"observations": (state.get("observations") or []) + [ob], "latest": None,
            "trace": (state.get("trace") or []) + [step]}


def compose_node(state: AgentState) -> dict:
    """The draft answer as typed claims; the trace shows it rendered and where its claims come from."""
    d = state.get("draft") or {}
    text = d.get("text", "")
    if d.get("grounded"):
        comp = _composition(d)
        n_typed, n_free = len(comp.typed_claims), len(comp.claims) - len(comp.typed_claims)
        claims = {"typed": n_typed, "from_text": n_free}
        free = comp.free.model_dump(mode="json") if comp.free is not None and comp.free.text.strip() else None
    else:
        claims, free = None, None
    return {"trace": (state.get("trace") or []) + [_step(state, "compose", text, claims=claims, free_text=free)]}


def _composition(draft: dict) -> Composition:
    return Composition.model_validate(draft.get("composition") or {})


def validate(state: AgentState, loop: Loop) -> dict:
    t0 = time.perf_counter()
    d = state.get("draft") or {}
    obs = list(state.get("observations") or [])
    trace = list(state.get("trace") or [])
    if not d.get("grounded"):
        trace.append(_step(state, "validate", "general answer: no claims about the event",
                           seconds=round(time.perf_counter() - t0, 4)))
        return {"checks": [], "feedback": [], "trace": trace}
    claims = _composition(d).claims
    ev_ref = state.get("event")
    mem = [m for m in (state.get("memory") or []) if m.get("event") == ev_ref]
    evidence = Evidence.from_observations(mem + obs)
    loadable = ev_ref is not None and not any(o.get("error_kind") == "unknown_event" and o.get("tool") is None
                                              for o in obs)
    if loop.verify and loadable:
        _verify(loop, state, tools_needed(claims, evidence), obs, trace)
        evidence = Evidence.from_observations(mem + obs)
    checks = check_claims(claims, evidence)
    counts = {v: sum(c.verdict == v for c in checks) for v in ("supported", "contradicted", "unverifiable")}
    bad = [c for c in checks if c.verdict == "contradicted"]
    n = int(state.get("revisions") or 0)
    retry = bool(bad) and n < loop.max_revisions
    summary = (f"{len(checks)} claims: {counts['supported']} supported, {counts['contradicted']} contradicted, "
               f"{counts['unverifiable']} unverifiable" + ("; sent back for revision" if retry else ""))
    trace.append(_step({**state, "trace": trace}, "validate", summary, seconds=round(time.perf_counter() - t0, 4),
                       claims=counts))
    out = {"checks": [c.model_dump(mode="json") for c in checks], "observations": obs, "trace": trace,
           "feedback": [c.model_dump(mode="json") for c in bad] if retry else []}
    if retry:
        out["revisions"] = n + 1
    return out


def finish(state: AgentState, loop: Loop) -> dict:
    d = state.get("draft") or {}
    checks = [Check.model_validate(c) for c in state.get("checks") or []]
    text = render(_composition(d), checks) if d.get("grounded") else d.get("text", "")
    if state.get("injection") and state.get("clean_question"):
        text += " (Instructions embedded in the question were ignored.)"
    if state.get("stop"):
        text += f" (Stopped early: {state['stop']}.)"
    text = guard_leak(text, list(loop.secrets))
    obs = state.get("observations") or []
    turn = {"turn": state.get("turn"), "question": state.get("clean_question", ""), "event": state.get("event"),
            "answer": text, "tools": [o.get("tool") for o in obs if o.get("purpose") == "action"]}
    memory = (state.get("memory") or []) + [{k: v for k, v in o.items() if k != "summary"}
                                            for o in obs if o.get("ok") and o.get("tool")]
    return {"final": text, "history": ((state.get("history") or []) + [turn])[-HISTORY_SIZE:],
            "memory": memory[-MEMORY_SIZE:],
            "trace": (state.get("trace") or []) + [_step(state, "finish", text)]}


# ============================================================================ edges
def after_plan(state: AgentState) -> str:
    return "act" if state.get("pending") else "compose"


def after_validate(state: AgentState) -> str:
    return "plan" if state.get("feedback") else "finish"


# ============================================================================ node parts
def context(state: dict, max_actions: int) -> Context:
    """What the brain sees of the state (``agent.brains.Context``)."""
    return Context(
        question=state.get("clean_question", ""), event=state.get("event"),
        observations=list(state.get("observations") or []),
        memory=[m for m in (state.get("memory") or []) if m.get("event") == state.get("event")],
        history=list(state.get("history") or []),
        feedback=[Check.model_validate(c) for c in state.get("feedback") or []],
        draft=(state.get("draft") or {}).get("text"),
        composition=_composition(state["draft"]) if (state.get("draft") or {}).get("grounded") else None,
        n_actions=int(state.get("n_actions") or 0),
        max_actions=max_actions, injection=state.get("injection"), raw_question=state.get("question", ""))


def _decide(ctx: Context, loop: Loop, stop: Optional[str]) -> tuple[Decision, Optional[str]]:
    """The brain's decision (or the one the limits force) and the turn's stop reason."""
    if not ctx.question.strip():
        d = Decision(action="answer", grounded=False, thought="nothing to answer once instructions were removed",
                     text=("I only answer questions about the event and its physics; the request held "
                           "instructions that I do not follow, so no tool was run."
                           if ctx.injection else "Please ask a question about the event."))
    elif ctx.n_actions >= loop.max_actions and not ctx.feedback:
        found = intents(ctx.question) or _intents_of(ctx.observations)
        comp = compose(request_from_question(ctx.question, found), ctx.observations + ctx.memory,
                       ctx.evidence())
        d = Decision(action="answer", composition=comp, grounded=True,
                     thought=f"step limit: {loop.max_actions} tool calls; answering from what was measured")
        stop = stop or f"step limit ({loop.max_actions} tool calls)"
    else:
        try:
            d = loop.brain.decide(ctx)
            if not isinstance(d, Decision):
                d = Decision.model_validate(d)
        except Exception as e:  # noqa: BLE001 - a failing back-end must still answer
            d = Decision(action="answer", grounded=False, thought=f"brain error: {type(e).__name__}",
                         text=f"The reasoning back-end failed: `{type(e).__name__}: {e}`.")
            stop = stop or "brain error"
    if d.action == "tool" and ctx.feedback:
        # a revision must be an answer: the brain asked for a tool instead
        d = Decision(action="answer", composition=ctx.composition, text=ctx.draft or "", grounded=True,
                     thought="revision requested a tool; keeping the flagged draft")
    return d, stop


def _verify(loop: Loop, state: dict, tools: list[str], obs: list[dict], trace: list[dict]) -> None:
    """Run the tools that would decide unverifiable claims (purpose ``verify``), appending
    their observations to ``obs`` and their steps to ``trace``."""
    ev_ref = state.get("event")
    for tool in tools:
        if any(o.get("tool") == tool and o.get("event") == ev_ref for o in obs):
            continue  # it ran (and failed): running it again gives the same
        ob = run_tool(loop.toolset, {**state, "observations": obs}, tool, {}, ev_ref, "verify")
        obs.append(ob)
        trace.append(_step({**state, "trace": trace}, "verify", _observation_text(ob), tool=tool,
                           observation=ob.get("id"), seconds=ob.get("seconds"), ok=ob.get("ok")))


def _observation_text(ob: dict) -> str:
    return (ob.get("summary") or "")[:300] if ob.get("ok") else f"error: {ob.get('error')}"


def run_tool(toolset: ToolSet, state: dict, tool: Any, arguments: Any, event: Optional[str],
             purpose: str, call_id: Optional[str] = None) -> dict:
    """One tool call as an observation: any failure (invalid action, an event the
    conversation may not use, an exception in the tool) is recorded in it, never raised."""
    t0 = time.perf_counter()
    ob: dict[str, Any] = {"tool": tool if isinstance(tool, str) else repr(tool),
                          "arguments": _json_safe(arguments if isinstance(arguments, dict) else {"raw": arguments}),
                          "event": event, "purpose": purpose, "call_id": call_id}
    try:
        args = toolset.check(tool, arguments)
        ref = args.event or event
        if args.event is not None and args.event not in allowed_refs(state):
            raise UnknownEventError(
                f"unknown event id {args.event!r}: this conversation may use "
                + ", ".join(repr(r) for r in sorted(allowed_refs(state))))
        ob["event"] = ref
        result = toolset.call(tool, args, ref)
        ob.update(ok=True, output=observation(result), summary=headline(result), id=_remember(result))
    except ToolCallError as e:
        ob.update(ok=False, error=str(e), error_kind="invalid_action")
    except UnknownEventError as e:
        ob.update(ok=False, error=str(e), error_kind="unknown_event")
    except Exception as e:  # noqa: BLE001 - a tool failure is an observation, never a crash
        ob.update(ok=False, error=f"{type(e).__name__}: {e}", error_kind="tool_error")
    ob["seconds"] = round(time.perf_counter() - t0, 4)
    ob.setdefault("id", uuid.uuid4().hex[:12])
    return ob


def allowed_refs(state: dict) -> set:
    """The events this conversation may name: its event, the events of earlier observations
    and turns, and the hits of successful searches."""
    refs = {state.get("event")}
    for o in (state.get("observations") or []) + (state.get("memory") or []):
        refs.add(o.get("event"))
        if o.get("tool") == "find_similar" and o.get("ok"):
            refs.update(h.get("key") for h in (o.get("output") or {}).get("hits", []) if isinstance(h, dict))
    for h in state.get("history") or []:
        refs.add(h.get("event"))
    refs.discard(None)
    return refs


def _intents_of(observations: list[dict]) -> list[str]:
    by_tool = {"classify_event": "classify", "find_vertex": "vertex", "reconstruct": "counts",
               "segment": "segment", "find_similar": "similar", "describe": "describe", "render": "render"}
    out = []
    for o in observations:
        i = by_tool.get(o.get("tool"))
        if i and i not in out:
            out.append(i)
    return out
