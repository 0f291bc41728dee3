"""The agent's public API: ``ask`` and ``stream``, the ``Answer`` they return, and ``Agent``.

    from larsight import agent
    a = agent.ask("run.h5:3", "Classify this event and explain why.")       # default brain
    a = agent.ask(event, "Where is the vertex?", brain="rules")
    print(a)                       # text, then the validation table
    a.event_class, a.class_probabilities, a.claims, a.steps, a.latency_s
    for step in agent.stream(event, "How many protons?"):  # Step objects as they happen,
        print(step)                                        # then the Answer

    bot = agent.Agent(brain="rules", db="threads.sqlite")  # persistent conversations
    bot.ask(event, "Where is the vertex?", thread_id="alice")
    bot.ask(None, "And how many protons are there?", thread_id="alice")   # same event, memory

``event``: an ``events.Event`` (kept in this process's registry; the state holds its
reference), ``"file.h5:INDEX"``, a one-event file, ``(path, index)``, a ``sim:`` key of the event
index, or None to keep the thread's event. A thread id keys the SQLite checkpointer (a
conversation survives the process); without one each question is its own in-memory thread.
"""
from __future__ import annotations

import html
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.errors import GraphRecursionError
from pydantic import BaseModel, Field

from .brains import default_brain_name, make_brain
from .claims import Claim
from .compose import compose
from .request import request_from_question
from .evidence import Evidence
from .graph import (MAX_ACTIONS, MAX_REVISIONS, build_graph, recursion_limit_for, turn_input)
from .intents import intents
from .render import FreeText, render
from .toolset import ToolSet, register
from .validate import Check, check_claims, checks_table

__all__ = ["Agent", "Answer", "Step", "ToolCall", "ask", "stream", "default_db_path", "get_agent"]


class ToolCall(BaseModel):
    """One tool run: what went in, what came out, how long it took."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    event: Optional[str] = None
    ok: bool = False
    output: Optional[dict[str, Any]] = Field(None, description="the result as JSON (truth fields removed)")
    error: Optional[str] = None
    error_kind: Optional[str] = Field(None, description="invalid_action, unknown_event or tool_error")
    seconds: float = 0.0
    purpose: str = Field("action", description="'action' (chosen by the brain) or 'verify' (run by the validator)")
    id: Optional[str] = Field(None, description="key of the raw result in agent.graph.RESULTS")


class Step(BaseModel):
    """One node of the loop as it ran."""

    index: int
    node: str = Field(description="intake, plan, observe, verify, compose, validate or finish")
    text: str = ""
    t: float = Field(0.0, description="seconds since the question arrived")
    seconds: Optional[float] = None
    decision: Optional[str] = None
    tool: Optional[str] = None
    arguments: Optional[dict[str, Any]] = None
    call: Optional[ToolCall] = None
    scores: Optional[dict[str, float]] = None
    action: Optional[str] = Field(None, description="plan: tool, answer, answer without tools or refuse")
    claims: Optional[dict[str, int]] = Field(None, description="validate: verdict counts; compose: typed / "
                                             "from_text claim counts")
    free_text: Optional[FreeText] = Field(None, description="compose: the language model's own text in the draft "
                                          "(with its author and the prompt it wrote it from); None when code "
                                          "rendered the whole draft")

    def __str__(self) -> str:
        head = f"[{self.t:6.2f}s] {self.node:8s}"
        if self.node == "plan" and self.decision == "tool":
            return f"{head} -> {self.tool}({self.arguments or {}})  {self.text}"
        if self.call is not None:
            status = "ok" if self.call.ok else f"ERROR {self.call.error}"
            return f"{head} {self.call.tool} [{self.call.seconds:.2f}s] {status if not self.call.ok else self.text[:160]}"
        return f"{head} {self.text[:200]}"


class Answer(BaseModel):
    """The agent's answer with everything that backs it."""

    question: str
    event: Optional[str] = None
    text: str
    event_class: Optional[str] = Field(None, description="nue_cc / numu_cc / nc when the event was classified")
    class_probabilities: dict[str, float] = Field(default_factory=dict)
    claims: list[Check] = Field(default_factory=list, description="every claim of the text with its check")
    steps: list[Step] = Field(default_factory=list)
    latency_s: float = 0.0
    brain: str = ""
    thread_id: Optional[str] = None
    revisions: int = Field(0, description="times the validator sent the answer back")
    stop_reason: Optional[str] = Field(None, description="step limit, recursion limit, brain error, or None")
    injection_removed: Optional[str] = Field(None, description="instruction text cut from the question")

    # ---------------------------------------------------------------- views
    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tools the brain chose, in order (validator runs excluded)."""
        return [s.call for s in self.steps if s.call is not None and s.call.purpose == "action"]

    @property
    def trajectory(self) -> list[str]:
        return [c.tool for c in self.tool_calls]

    @property
    def drafts(self) -> list[str]:
        """Every answer the brain drafted this turn, the last being ``text`` before flags."""
        return [s.text for s in self.steps if s.node == "compose"]

    @property
    def model_texts(self) -> list[FreeText]:
        """The language model's own text of each draft this turn, in order (first draft first, the
        final answer's last); empty when code rendered every draft (rules brain, typed answers)."""
        return [s.free_text for s in self.steps if s.node == "compose" and s.free_text is not None]

    @property
    def first_draft_checks(self) -> dict[str, int]:
        """Verdict counts of the first draft's claims, before any revision (empty: not validated)."""
        first = next((s for s in self.steps if s.node == "validate" and s.claims is not None), None)
        return dict(first.claims) if first else {}

    @property
    def n_supported(self) -> int:
        return sum(c.verdict == "supported" for c in self.claims)

    @property
    def n_contradicted(self) -> int:
        return sum(c.verdict == "contradicted" for c in self.claims)

    @property
    def n_unverifiable(self) -> int:
        return sum(c.verdict == "unverifiable" for c in self.claims)

    @property
    def values(self) -> dict[str, Any]:
        """What the answer states, by kind, from its typed claims (those read from a language
        model's text only when the answer has no typed claim): ``event_class``, ``vertex_cm``,
        ``counts`` {particle: n}, ``present`` / ``absent`` particle lists, ``michel`` (bool),
        ``track_length_cm``, ``shower_gap_cm``, ``shower_dedx_mev_cm``, ``energy_mev`` {subject: MeV}."""
        claims = [c.claim for c in self.claims if c.claim.source == "tools"] or [c.claim for c in self.claims]
        out: dict[str, Any] = {}
        for cl in claims:
            _add_value(out, cl)
        return out

    def table(self) -> str:
        return checks_table(self.claims)

    def trace_text(self) -> str:
        return "\n".join(str(s) for s in self.steps)

    def __str__(self) -> str:
        tools = ", ".join(f"{c.tool} {c.seconds:.2f}s" + ("" if c.ok else " (failed)") for c in self.tool_calls) or "none"
        head = f"Q: {self.question}\nA: {self.text}"
        meta = (f"[brain {self.brain}; tools: {tools}; {self.latency_s:.2f}s; claims: {self.n_supported} supported, "
                f"{self.n_contradicted} contradicted, {self.n_unverifiable} unverifiable]")
        if self.revisions:
            first = self.drafts[0] if self.drafts else ""
            meta += (f"\n[the validator sent the answer back {self.revisions} time(s); first draft: "
                     f"{first[:400] + (' ...' if len(first) > 400 else '')}]")
        return f"{head}\n{meta}\n{self.table()}" if self.claims else f"{head}\n{meta}"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c.claim.describe())}</td><td>{c.verdict}</td>"
            f"<td>{html.escape(', '.join(f'{k}={v}' for k, v in c.evidence.items()))}</td>"
            f"<td>{html.escape(c.tolerance or '-')}</td><td>{html.escape(c.tool or '-')}</td></tr>"
            for c in self.claims)
        table = (f"<table><tr><th>claim</th><th>verdict</th><th>measured</th><th>tolerance</th><th>tool</th></tr>"
                 f"{rows}</table>") if self.claims else ""
        return (f"<div><p><b>Q:</b> {html.escape(self.question)}</p><p><b>A:</b> {html.escape(self.text)}</p>"
                f"<p style='color:#666'>brain {html.escape(self.brain)}, {self.latency_s:.2f}s, tools: "
                f"{html.escape(', '.join(self.trajectory) or 'none')}</p>{table}</div>")


def _add_value(out: dict, cl: Claim) -> None:
    """One claim into ``Answer.values`` (the first claim of a kind wins)."""
    k = cl.kind
    if k == "event_class" and cl.qualifier != "not":
        out.setdefault("event_class", cl.label)
    elif k == "vertex":
        out.setdefault("vertex_cm", list(cl.value))
    elif k in ("count", "absent"):
        out.setdefault("counts", {}).setdefault(cl.subject, int(cl.number or 0))
        if not cl.number:
            out.setdefault("absent", []).append(cl.subject)
    elif k == "present":
        out.setdefault("present", []).append(cl.subject)
    elif k == "michel":
        out.setdefault("michel", cl.qualifier != "absent")
    elif k == "track_length":
        out.setdefault("track_length_cm", cl.number)
    elif k == "shower_gap" and cl.number is not None:
        out.setdefault("shower_gap_cm", cl.number)
    elif k == "shower_dedx" and cl.number is not None:
        out.setdefault("shower_dedx_mev_cm", cl.number)
    elif k == "energy" and cl.number is not None:
        out.setdefault("energy_mev", {}).setdefault(cl.subject, cl.number)


def default_db_path() -> Path:
    """``$LARSIGHT_AGENT_DB``, else ``~/.cache/larsight/agent_threads.sqlite``."""
    env = os.environ.get("LARSIGHT_AGENT_DB")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "larsight" / "agent_threads.sqlite"


EventArg = Union[None, str, os.PathLike, tuple, Any]


def _event_ref(event: EventArg) -> Optional[str]:
    if event is None:
        return None
    if isinstance(event, (str, os.PathLike)):
        return os.fspath(event)
    if isinstance(event, tuple) and len(event) == 2:
        return f"{os.fspath(event[0])}:{int(event[1])}"
    if hasattr(event, "points") and hasattr(event, "meta"):
        return register(event)
    raise TypeError(f"agent: expected an events.Event, 'file:index', (path, index) or None, got {type(event).__name__}")


class Agent:
    """A brain, the tools and the loop, with conversations (see the module docstring).

    ``brain``: 'rules', 'vlm', 'openai', a brain object, or None (``default_brain_name``).
    ``tools``: replacement tool functions by name (tests). ``run_dir``: the only folder tools
    write into. ``db``: SQLite file of persistent threads. ``max_actions``: tool calls per
    question; ``max_revisions``: validator round trips; ``verify``: let the validator run the
    tools a claim needs; ``recursion_limit``: LangGraph's step limit (default: enough for the
    two limits above)."""

    def __init__(self, brain: Any = None, *, tools: Optional[dict] = None, run_dir: Optional[str | os.PathLike] = None,
                 db: Optional[str | os.PathLike] = None, max_actions: int = MAX_ACTIONS,
                 max_revisions: int = MAX_REVISIONS, verify: bool = True, recursion_limit: Optional[int] = None,
                 index: Optional[str] = None, **brain_kw):
        self.brain = make_brain(brain, **brain_kw)
        self.toolset = ToolSet(tools, run_dir=run_dir, index=index)
        if getattr(self.brain, "name", None) == "vlm" and hasattr(self.brain, "vlm"):
            # the classifier tools use the brain's VLM (one copy in memory)
            shared = {"vlm": lambda: self.brain.vlm}
            self.toolset.tool_kwargs.setdefault("classify_event", shared)
            self.toolset.tool_kwargs.setdefault("describe", shared)
        self.db_path = Path(db) if db is not None else None
        self.max_actions, self.max_revisions, self.verify = max_actions, max_revisions, verify
        self.recursion_limit = recursion_limit or recursion_limit_for(max_actions, max_revisions)
        self._graphs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = None

    @property
    def brain_name(self) -> str:
        return getattr(self.brain, "name", type(self.brain).__name__)

    # ---------------------------------------------------------------- graphs
    def graph(self, persistent: bool):
        key = "sqlite" if persistent else "memory"
        with self._lock:
            if key not in self._graphs:
                if persistent:
                    path = self.db_path or default_db_path()
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self._conn = sqlite3.connect(str(path), check_same_thread=False)
                    saver = SqliteSaver(self._conn)
                else:
                    saver = InMemorySaver()
                self._graphs[key] = build_graph(self.brain, self.toolset, max_actions=self.max_actions,
                                                max_revisions=self.max_revisions, verify=self.verify,
                                                checkpointer=saver)
            return self._graphs[key]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._graphs.pop("sqlite", None)

    def _config(self, thread_id: str) -> dict:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": self.recursion_limit}

    # ---------------------------------------------------------------- asking
    def stream(self, event: EventArg, question: str, thread_id: Optional[str] = None) -> Iterator[Union[Step, Answer]]:
        """The steps of the loop as they happen, then the ``Answer``."""
        if not isinstance(question, str):
            raise TypeError(f"agent: the question must be a string, got {type(question).__name__}")
        persistent = thread_id is not None
        tid = str(thread_id) if persistent else f"tmp-{uuid.uuid4().hex}"
        graph = self.graph(persistent)
        cfg = self._config(tid)
        t0 = time.perf_counter()
        ref = _event_ref(event)
        seen = 0
        obs: dict = {}
        stop = None
        try:
            for update in graph.stream(turn_input(question, ref), cfg, stream_mode="updates"):
                for _node, delta in update.items():
                    if not isinstance(delta, dict):
                        continue
                    # the nodes return whole lists; the update itself carries the observations
                    # (reading them back with get_state races the SQLite checkpoint write)
                    if delta.get("observations") is not None:
                        obs = {o.get("id"): o for o in delta["observations"]}
                    trace = delta.get("trace")
                    if not trace:
                        continue
                    for s in trace[seen:]:
                        yield _to_step(s, obs)
                    seen = len(trace)
        except GraphRecursionError:
            stop = f"recursion limit ({self.recursion_limit} graph steps)"
        state = graph.get_state(cfg).values
        answer = self._answer(state, question, tid if persistent else None, time.perf_counter() - t0, stop)
        if not persistent:
            graph.checkpointer.delete_thread(tid)   # a one-question thread: nothing to keep
        yield answer

    def ask(self, event: EventArg, question: str, thread_id: Optional[str] = None) -> Answer:
        """Ask one question about an event (see the module docstring)."""
        out = None
        for item in self.stream(event, question, thread_id):
            out = item
        assert isinstance(out, Answer)
        return out

    def forget(self, thread_id: str) -> None:
        """Delete a persistent thread (its history and memory)."""
        self.graph(True).checkpointer.delete_thread(str(thread_id))

    def feedback(self, answer: Answer, verdict: Optional[str] = None, corrections: Any = None, comment: str = "",
                 *, author: str = "", better_than: Optional[Answer] = None, db: Optional[str | os.PathLike] = None) -> int:
        """Store an expert's feedback on ``answer`` with its full context (event, question, tools,
        claim table, model versions) in the feedback database (``agent.feedback``; ``db``: a SQLite
        file or SQLAlchemy URL, default ``feedback.sqlite`` beside this agent's conversations).
        ``verdict``: 'up' / 'down'; ``corrections`` by claim row, e.g. ``{1: "52 cm", 0: "photon",
        2: "wrong"}`` or a list of ``{"claim", "mark", "value", "unit", "label"}``; ``better_than``:
        another answer to the same question that this one beats. Returns the feedback id."""
        from .feedback import FeedbackStore, corrections_from, model_versions, record_from_answer

        target = db if db is not None else (self.db_path.parent / "feedback.sqlite" if self.db_path else None)
        store = FeedbackStore(target)
        try:
            models = model_versions(self)
            worse = store.record_answer(better_than, models) if better_than is not None else None
            record = record_from_answer(answer, models).model_dump(mode="json")   # stored with the feedback
            return store.add({"answer": record, "verdict": verdict, "corrections": corrections_from(corrections),
                              "comment": comment or "", "author": author or "", "better_than": worse}, source="api")
        finally:
            store.close()

    def history(self, thread_id: str) -> list[dict]:
        """The turns of a persistent thread: question, event, answer, tools."""
        return list(self.graph(True).get_state(self._config(thread_id)).values.get("history") or [])

    def _answer(self, state: dict, question: str, thread_id: Optional[str], latency: float,
                stop: Optional[str]) -> Answer:
        obs = state.get("observations") or []
        by_id = {o.get("id"): o for o in obs}
        steps = [_to_step(s, by_id) for s in state.get("trace") or []]
        mem = [m for m in state.get("memory") or [] if m.get("event") == state.get("event")]
        ev = Evidence.from_observations(mem + obs)
        text = state.get("final")
        if text is None or stop:
            # the loop did not finish: answer from what was measured
            found = intents(state.get("clean_question") or question)
            if found and obs:
                comp = compose(request_from_question(question, found), obs + mem, ev)
                claims = check_claims(comp.claims, ev)
                body = render(comp, claims)
            else:
                body, claims = "I could not finish answering.", []
            text = body + f" (Stopped early: {stop or 'the loop did not finish'}.)"
        else:
            claims = [Check.model_validate(c) for c in state.get("checks") or []]
        return Answer(question=question, event=state.get("event"), text=text, event_class=ev.event_class,
                      class_probabilities=ev.class_probabilities, claims=claims, steps=steps,
                      latency_s=round(latency, 4), brain=self.brain_name, thread_id=thread_id,
                      revisions=int(state.get("revisions") or 0), stop_reason=stop or state.get("stop"),
                      injection_removed=state.get("injection"))


def _to_step(s: dict, obs_by_id: dict) -> Step:
    call = None
    oid = s.get("observation")
    if oid and oid in obs_by_id:
        o = obs_by_id[oid]
        call = ToolCall(tool=str(o.get("tool")), arguments=o.get("arguments") or {}, event=o.get("event"),
                        ok=bool(o.get("ok")), output=o.get("output"), error=o.get("error"),
                        error_kind=o.get("error_kind"), seconds=float(o.get("seconds") or 0.0),
                        purpose=o.get("purpose", "action"), id=o.get("id"))
    return Step(index=int(s.get("index", 0)), node=s.get("node", "?"), text=s.get("text", ""),
                t=float(s.get("t", 0.0)), seconds=s.get("seconds"), decision=s.get("decision"),
                tool=s.get("tool"), arguments=s.get("arguments"), call=call, scores=s.get("scores"),
                action=s.get("action"), claims=s.get("claims"), free_text=s.get("free_text"))


# ============================================================================ module level
_AGENTS: dict[str, Agent] = {}
_AGENTS_LOCK = threading.Lock()


def get_agent(brain: Any = None) -> Agent:
    """One shared ``Agent`` per brain name in this process."""
    if brain is not None and not isinstance(brain, str):
        return Agent(brain)
    name = brain or default_brain_name()
    with _AGENTS_LOCK:
        if name not in _AGENTS:
            _AGENTS[name] = Agent(name)
        return _AGENTS[name]


def ask(event: EventArg, question: str, thread_id: Optional[str] = None, brain: Any = None) -> Answer:
    """Ask the agent one question about an event; see ``Agent.ask``."""
    return get_agent(brain).ask(event, question, thread_id)


def stream(event: EventArg, question: str, thread_id: Optional[str] = None, brain: Any = None
           ) -> Iterator[Union[Step, Answer]]:
    """The steps as they happen, then the ``Answer``; see ``Agent.stream``."""
    return get_agent(brain).stream(event, question, thread_id)
