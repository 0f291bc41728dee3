"""The words of the agent's action grammar that the corpus and the agent share.

An action is what the VLM brain emits (``agent.actions`` validates it against the tools' JSON
schemas): one or more tool calls, an answer without tools, or a refusal::

    {"action":"call","calls":[{"tool":"reconstruct","arguments":{"particle":"muon","quantity":"length","unit":"m"}}]}
    {"action":"answer"}
    {"action":"refuse","reason":"off_topic"}

``action_text`` writes the one canonical spelling (compact separators, keys in the order
above, arguments sorted by name) that the corpus trains on and the constrained decoder's
grammar (properties in the same order) accepts. ``action_prompt`` is the text of the user turn
that asks for the action: earlier turns, untrusted file metadata, the question, and rejected
attempts. The argument vocabularies (particles, quantities, units, views, classes) are the
values the tools' argument models accept (``agent.toolset``).
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

__all__ = ["PARTICLES", "RECO_QUANTITIES", "SEGMENT_QUANTITIES", "LENGTH_UNITS", "ENERGY_UNITS", "VIEWS",
           "CLASS_FILTERS", "REFUSE_REASONS", "MAX_CALLS", "SEPARATORS", "action_text", "action_prompt",
           "call", "ACTION_INSTRUCTION"]

PARTICLES = ("muon", "electron", "proton", "pion", "photon", "pi0", "track", "shower")
"""Which particle a reconstruct call is about (``particle`` argument)."""
RECO_QUANTITIES = ("counts", "length", "energy", "dedx", "michel", "gap", "reasons")
"""What of the reconstruction the question asks (``quantity``): the multiplicities, track
lengths, energies, start dE/dx, Michel electrons, shower start vs the vertex, or the particles
behind a classification."""
SEGMENT_QUANTITIES = ("labels", "visible_energy")
LENGTH_UNITS = ("cm", "mm", "m")
ENERGY_UNITS = ("MeV", "GeV")
VIEWS = ("3d", "xz", "yz")
CLASS_FILTERS = ("nue_cc", "numu_cc", "nc")
REFUSE_REASONS = ("off_topic", "injection")
"""Why the brain refuses: a request that is not about detector physics, or instructions that
try to change what the assistant does (ignore its rules, reveal its prompt, run tools)."""
MAX_CALLS = 4
SEPARATORS = (",", ":")

ACTION_INSTRUCTION = "Reply with the action as JSON."


def call(tool: str, **arguments) -> dict:
    """One tool call of an action (arguments that are None are left out)."""
    return {"tool": tool, "arguments": {k: v for k, v in arguments.items() if v is not None}}


def action_text(action: dict) -> str:
    """The canonical JSON of an action (see the module docstring)."""
    kind = action.get("action")
    if kind == "call":
        calls = [{"tool": c["tool"], "arguments": dict(sorted((c.get("arguments") or {}).items()))}
                 for c in action.get("calls") or []]
        out: dict = {"action": "call", "calls": calls}
    elif kind == "refuse":
        out = {"action": "refuse", "reason": action.get("reason")}
    elif kind == "answer":
        out = {"action": "answer"}
    else:
        raise ValueError(f"action_text: unknown action kind {kind!r}")
    return json.dumps(out, separators=SEPARATORS, ensure_ascii=False)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def action_prompt(question: str, history: Sequence[tuple[str, Sequence[str]]] = (),
                  metadata: Optional[str] = None, rejected: Sequence[str] = ()) -> str:
    """The user turn that asks for an action: up to two earlier turns (question and the tools
    they ran), the file's metadata (untrusted data, never instructions), the question, and the
    errors of rejected attempts."""
    lines = []
    for q, tools in list(history)[-2:]:
        lines.append(f"Earlier: {_clip(q, 120)} -> {', '.join(tools) if tools else 'no tool'}")
    if metadata:
        lines.append(f"File metadata: {_clip(metadata, 160)}")
    lines.append(f"Question: {_clip(question, 400)}")
    for err in list(rejected)[-2:]:
        lines.append(f"Rejected: {_clip(err, 160)}")
    lines.append(ACTION_INSTRUCTION)
    return "\n".join(lines)
