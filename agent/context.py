"""What a brain sees and what it returns: ``Context`` and ``Decision``, shared by every brain
(``agent.brains``, ``agent.vlm_brain``) and the graph (``agent.graph``), with the two helpers
every brain uses: the revision of a flagged draft and the tool arguments read from a question.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Protocol

from pydantic import BaseModel, Field

from .evidence import Evidence
from .intents import render_view, similar_k, similar_query
from .validate import Check, revise

__all__ = ["Context", "Decision", "Brain", "revision", "tool_args"]


@dataclass
class Context:
    """What a brain sees at one reasoning step (ids and JSON only, never arrays)."""

    question: str
    event: Optional[str]
    observations: list[dict] = field(default_factory=list)
    memory: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    feedback: list[Check] = field(default_factory=list)
    draft: Optional[str] = None
    n_actions: int = 0
    max_actions: int = 6
    injection: Optional[str] = None
    raw_question: str = ""

    def evidence(self) -> Evidence:
        """Measurements of this event from this turn and from earlier turns of the thread."""
        obs = [o for o in self.memory if o.get("event") == self.event] + self.observations
        return Evidence.from_observations(obs, event=None)

    def done(self, tool: str, arguments: Optional[dict] = None) -> bool:
        """``tool`` already ran (or failed) on this event, this turn or earlier in the thread."""
        for o in self.observations + [m for m in self.memory if m.get("ok")]:
            if o.get("tool") != tool or o.get("event") not in (None, self.event):
                continue
            if arguments is None or {k: v for k, v in (o.get("arguments") or {}).items() if k != "event"} == arguments:
                return True
        return False

    @property
    def event_error(self) -> Optional[str]:
        for o in self.observations:
            if o.get("tool") is None and not o.get("ok"):
                return o.get("error")
        return None


class Decision(BaseModel):
    action: Literal["tool", "answer"]
    tool: Optional[str] = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    text: Optional[str] = None
    grounded: bool = True
    thought: str = ""
    call_id: Optional[str] = None
    scores: Optional[dict[str, float]] = Field(None, description="VLM: probability of each action")


class Brain(Protocol):
    name: str

    def decide(self, ctx: Context) -> Decision: ...


def revision(ctx: Context) -> Decision:
    """The answer to the validator's feedback: the draft without its contradicted claims, and
    what the tools measured instead."""
    ev = ctx.evidence()
    text = revise(ctx.draft or "", ctx.feedback, ev)
    return Decision(action="answer", text=text, grounded=True,
                    thought=f"removed {len(ctx.feedback)} contradicted claim(s) and stated the measurements")


def tool_args(tool: str, question: str) -> dict:
    """The arguments of ``tool`` read from the question's wording (``k`` and a text query of
    ``find_similar``, the view of ``render``); the agent fills in the event."""
    if tool == "find_similar":
        args: dict[str, Any] = {"k": similar_k(question)}
        q = similar_query(question)
        if q:
            args["query"] = q
        return args
    if tool == "render":
        return {"view": render_view(question)}
    return {}
