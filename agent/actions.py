"""The action grammar: what the VLM brain emits, typed, validated and as a JSON schema.

    from larsight.agent.actions import parse_action, action_json_schema, ActionError
    a = parse_action('{"action":"call","calls":[{"tool":"find_vertex","arguments":{"unit":"mm"}}]}')
    a.calls[0].tool, a.calls[0].arguments          # 'find_vertex', {'unit': 'mm'}
    parse_action('{"action":"call","calls":[{"tool":"fly"}]}')   # ActionError: unknown tool 'fly' ...

Three kinds (``qformer.corpus.action_schema`` writes the canonical text the corpus trains on):

- ``{"action":"call","calls":[{"tool":NAME,"arguments":{...}}, ...]}``: one to ``MAX_CALLS``
  tool calls, each validated against the tool's argument model (``agent.toolset.TOOLS``);
- ``{"action":"answer"}``: answer without tools (a textbook question, chat);
- ``{"action":"refuse","reason":"off_topic"|"injection"}``.

``parse_action`` turns text into an ``Action`` or raises ``ActionError`` with one line saying
what is wrong (not JSON, unknown kind, unknown tool, a bad argument): the brain shows that line
to the model as a rejected attempt and asks again (bounded). ``action_json_schema`` is the same
grammar as a JSON schema whose tool calls are the tools' own argument schemas (without the
``event`` argument: the action is about the event of the conversation), properties in the
canonical order: a constrained decoder (``qformer.action_decoder``) can then produce only
valid actions.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from larsight.qformer.corpus.action_schema import MAX_CALLS, REFUSE_REASONS, action_text

from .toolset import TOOL_NAMES, TOOLS, ToolCallError, check_call

__all__ = ["Action", "CallAction", "AnswerAction", "RefuseAction", "ToolCall", "ActionError", "parse_action",
           "validate_action", "action_json_schema", "action_text", "canonical", "MAX_ACTION_CHARS"]

MAX_ACTION_CHARS = 4000
"""Longest action text parsed (a model that rambles is cut off, not read forever)."""


class ActionError(ValueError):
    """An action that does not parse or names an unknown tool or a bad argument (one line)."""


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class CallAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["call"] = "call"
    calls: list[ToolCall] = Field(min_length=1, max_length=MAX_CALLS)


class AnswerAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["answer"] = "answer"


class RefuseAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["refuse"] = "refuse"
    reason: Literal[REFUSE_REASONS]


Action = Union[CallAction, AnswerAction, RefuseAction]
_KINDS = {"call": CallAction, "answer": AnswerAction, "refuse": RefuseAction}


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'action'}: {err['msg']}" for err in e.errors())


def validate_action(data: Any) -> Action:
    """An ``Action`` from decoded JSON, with every call's arguments checked by the tool's model
    (their values normalised: defaults left out). ``ActionError`` on anything wrong."""
    if not isinstance(data, dict):
        raise ActionError(f"invalid action: expected a JSON object, got {type(data).__name__}")
    kind = data.get("action")
    if kind not in _KINDS:
        raise ActionError(f"invalid action: 'action' must be one of {', '.join(_KINDS)}, got {kind!r}")
    try:
        action = _KINDS[kind].model_validate(data)
    except ValidationError as e:
        raise ActionError(f"invalid {kind} action: {_errors(e)}") from None
    if isinstance(action, CallAction):
        calls = []
        for c in action.calls:
            if "event" in c.arguments:
                raise ActionError(f"invalid action: {c.tool} names an event; actions are about the "
                                  f"conversation's event")
            try:
                args = check_call(c.tool, c.arguments)
            except ToolCallError as e:
                raise ActionError(str(e)) from None
            calls.append(ToolCall(tool=c.tool, arguments=args.model_dump(exclude={"event"}, exclude_none=True,
                                                                          exclude_defaults=True)))
        action = CallAction(calls=calls)
    return action


def parse_action(text: str) -> Action:
    """The action a model wrote (the first JSON object in ``text``); ``ActionError`` when it
    does not parse or does not validate."""
    if not isinstance(text, str):
        raise ActionError(f"invalid action: expected text, got {type(text).__name__}")
    body = text.strip()[:MAX_ACTION_CHARS]
    start = body.find("{")
    if start < 0:
        raise ActionError(f"invalid action: no JSON object in {body[:80]!r}")
    try:
        data, _ = json.JSONDecoder().raw_decode(body, start)
    except json.JSONDecodeError as e:
        raise ActionError(f"invalid action: not JSON ({e.msg} at character {e.pos}): {body[:80]!r}") from None
    return validate_action(data)


def canonical(action: Action) -> str:
    """The canonical text of a validated action (``action_schema.action_text``)."""
    return action_text(action.model_dump())


def _tool_arguments_schema(name: str) -> dict:
    js = copy.deepcopy(TOOLS[name].args.model_json_schema())
    props = {k: v for k, v in sorted(js.get("properties", {}).items()) if k != "event"}
    for p in props.values():
        for key in ("title", "description", "default"):
            p.pop(key, None)
        if "anyOf" in p:   # Optional[X]: the action leaves a value out instead of writing null
            non_null = [a for a in p.pop("anyOf") if a.get("type") != "null"]
            p.update(non_null[0])
        if p.get("type") == "string" and "enum" not in p:
            p.setdefault("maxLength", 120)
    return {"type": "object", "properties": props, "additionalProperties": False}


def action_json_schema(tools: Optional[tuple[str, ...]] = None) -> dict:
    """The grammar as a JSON schema (see the module docstring); ``tools`` narrows the tools a
    call may name (default: all)."""
    names = tuple(tools or TOOL_NAMES)
    unknown = [t for t in names if t not in TOOLS]
    if unknown:
        raise ValueError(f"action_json_schema: unknown tools {unknown}")
    calls = [{"type": "object", "properties": {"tool": {"const": t}, "arguments": _tool_arguments_schema(t)},
              "required": ["tool", "arguments"], "additionalProperties": False} for t in names]
    return {"anyOf": [
        {"type": "object", "properties": {"action": {"const": "call"},
                                          "calls": {"type": "array", "items": {"anyOf": calls},
                                                    "minItems": 1, "maxItems": MAX_CALLS}},
         "required": ["action", "calls"], "additionalProperties": False},
        {"type": "object", "properties": {"action": {"const": "answer"}},
         "required": ["action"], "additionalProperties": False},
        {"type": "object", "properties": {"action": {"const": "refuse"}, "reason": {"enum": list(REFUSE_REASONS)}},
         "required": ["action", "reason"], "additionalProperties": False},
    ]}

