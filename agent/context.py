"""What a brain sees and what it returns: ``Context`` and ``Decision``, shared by every brain
(``agent.brains``, ``agent.vlm_brain``) and the graph (``agent.graph``), with the two helpers
every brain uses: the revision of a flagged draft and the tool arguments read from a question.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Protocol

from pydantic import BaseModel, Field, model_validator

from .evidence import Evidence
from .intents import render_view, similar_k, similar_query
from .render import Composition
from .validate import Check, as_composition, revise

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
    composition: Optional[Composition] = None
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
    """A brain's chosen action: run a tool, answer, or refuse (an answer without tools that
    declines). An answer is a ``composition`` of typed claims (``agent.compose``) and/or
    ``text`` a language model wrote (the graph reads its claims from the words); ``text`` holds
    the rendered composition when only the composition is given."""

    action: Literal["tool", "answer", "refuse"]
    tool: Optional[str] = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    text: Optional[str] = None
    composition: Optional[Composition] = None
    grounded: bool = True
    thought: str = ""
    call_id: Optional[str] = None
    scores: Optional[dict[str, float]] = Field(None, description="VLM: probability of each action")

    @model_validator(mode="before")
    @classmethod
    def _composition_as_text(cls, data: Any) -> Any:
        """``text=compose(...)`` (a Composition) is the composition; ``text`` becomes its rendering."""
        if isinstance(data, dict) and isinstance(data.get("text"), Composition):
            data = {**data, "composition": data.get("composition") or data["text"], "text": None}
        if isinstance(data, dict) and isinstance(data.get("composition"), Composition) and not data.get("text"):
            data = {**data, "text": data["composition"].text()}
        return data

    def as_composition(self) -> Optional[Composition]:
        """The answer as a composition: the typed one, else the free text as a model's text."""
        if self.composition is not None:
            return self.composition
        return as_composition(self.text or "") if self.text is not None else None


class Brain(Protocol):
    name: str

    def decide(self, ctx: Context) -> Decision: ...


def revision(ctx: Context) -> Decision:
    """The answer to the validator's feedback: the draft without its contradicted claims, and
    what the tools measured instead (typed claims)."""
    comp = ctx.composition or as_composition(ctx.draft or "")
    return Decision(action="answer", composition=revise(comp, ctx.feedback, ctx.evidence()), grounded=True,
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
