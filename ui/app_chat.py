"""The chat app's conversation: the agent's steps as collapsible thoughts, then the answer.

``chat_turn`` runs one question through ``Agent.stream`` and yields the chat history (Gradio
"messages": dicts with role, content and metadata) after every change:

- each tool the agent runs is one thought (``metadata``: title, status 'pending' while it runs
  then 'done', duration in seconds) holding the reason for the call, its inputs and its outputs;
  validator re-measurements and the claim check are thoughts too;
- the answer streams in, then carries its claim-validation table (supported / contradicted /
  unverifiable with the measured evidence) and the class probabilities when the event was
  classified.
"""
from __future__ import annotations

import html
import json
import math
import traceback
from typing import Any, Iterator, Optional

from larsight.agent import Answer
from larsight.events.vocabulary import CLASS_TEXT

__all__ = ["chat_turn", "answer_markdown", "validation_markdown", "probabilities_markdown",
           "answer_summary", "VERDICT_ICONS"]

VERDICT_ICONS = {"supported": "✔ supported", "contradicted": "✘ contradicted",
                 "unverifiable": "○ unverifiable"}
MAX_JSON_CHARS = 2500
MAX_LINE_CHARS = 160
STREAM_CHUNKS = 8


def _json_block(value: Any, limit: int = MAX_JSON_CHARS, line: int = MAX_LINE_CHARS) -> str:
    """A code block of a tool's JSON: one line per top-level field (long values cut), so that
    a reconstruction's particle list stays readable."""
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            s = json.dumps(v, default=str, ensure_ascii=False, separators=(", ", ": "))
            rows.append(f"{json.dumps(str(k))}: " + (s if len(s) <= line else s[:line] + " …"))
        text = "\n".join(rows)
    else:
        text = json.dumps(value, indent=1, default=str, ensure_ascii=False)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit} more characters)"
    return f"```json\n{text}\n```"


def _cell(value: Any) -> str:
    return html.escape(str(value)).replace("|", "\\|").replace("\n", " ")


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return "(" + ", ".join(f"{x:.1f}" for x in v) + ")"
    if isinstance(v, dict):
        return ", ".join(f"{a} {_fmt_value(b)}" for a, b in v.items())
    return str(v)


def validation_markdown(claims) -> str:
    """The claim-validation table as Markdown (one row per claim)."""
    if not claims:
        return "_No checkable physics claims in this answer._"
    rows = ["| claim | verdict | measured (tolerance) | tool |", "|---|---|---|---|"]
    for c in claims:
        evidence = "; ".join(f"{k} = {_fmt_value(v)}" for k, v in (c.evidence or {}).items()) or "-"
        if c.tolerance:
            evidence += f" ({c.tolerance})"
        rows.append("| " + " | ".join(_cell(x) for x in (
            c.claim.describe(), VERDICT_ICONS.get(c.verdict, c.verdict), evidence, c.tool or "-")) + " |")
    return "\n".join(rows)


def probabilities_markdown(probs: dict[str, float]) -> str:
    if not probs:
        return ""
    best = max(probs, key=probs.get)
    parts = [(f"**{CLASS_TEXT.get(k, k)} {v:.2f}**" if k == best else f"{CLASS_TEXT.get(k, k)} {v:.2f}")
             for k, v in sorted(probs.items(), key=lambda kv: -kv[1])]
    return "**Class probabilities:** " + " · ".join(parts)


def answer_markdown(answer, text: Optional[str] = None) -> str:
    """The final message: the answer text, the validation table, the class probabilities and
    a footer (brain, latency, tools)."""
    body = answer.text if text is None else text
    counts = (f"{answer.n_supported} supported, {answer.n_contradicted} contradicted, "
              f"{answer.n_unverifiable} unverifiable")
    parts = [body, f"**Claim validation** ({counts})", validation_markdown(answer.claims)]
    probs = probabilities_markdown(answer.class_probabilities)
    if probs:
        parts.append(probs)
    tools = ", ".join(answer.trajectory) or "none"
    foot = f"<sub>event {answer.event or 'none'} · brain {answer.brain} · {answer.latency_s:.2f} s · tools: {tools}"
    if answer.stop_reason:
        foot += f" · stopped: {answer.stop_reason}"
    parts.append(foot + "</sub>")
    return "\n\n".join(parts)


def answer_summary(answer) -> dict:
    """The answer as JSON for API clients: text, class, probabilities, claims with verdicts."""
    return {
        "question": answer.question, "event": answer.event, "thread_id": answer.thread_id,
        "text": answer.text, "event_class": answer.event_class,
        "class_probabilities": answer.class_probabilities,
        "claims": [{"claim": c.claim.describe(), "kind": c.claim.kind, "verdict": c.verdict,
                    "evidence": c.evidence, "tolerance": c.tolerance, "tool": c.tool} for c in answer.claims],
        "n_supported": answer.n_supported, "n_contradicted": answer.n_contradicted,
        "n_unverifiable": answer.n_unverifiable, "tools": answer.trajectory,
        "brain": answer.brain, "latency_s": answer.latency_s, "revisions": answer.revisions,
        "stop_reason": answer.stop_reason,
    }


def _thought(title: str, content: str, status: str = "done", duration: Optional[float] = None,
             log: Optional[str] = None, mid: Optional[str] = None) -> dict:
    meta: dict[str, Any] = {"title": title, "status": status}
    if duration is not None and math.isfinite(duration):
        meta["duration"] = round(float(duration), 2)
    if log:
        meta["log"] = log
    if mid:
        meta["id"] = mid
    return {"role": "assistant", "content": content or "…", "metadata": meta}


class _Turn:
    """The messages of one question as its steps arrive.

    A tool thought opens (status 'pending') when the brain picks the tool and closes when its
    observation arrives. The streamed observation may lack the tool's full output (the
    ``ToolCall``); the final ``Answer`` carries every step's call, so ``complete`` fills the
    inputs and outputs in at the end."""

    def __init__(self, history: list, question: str):
        self.messages = list(history or []) + [{"role": "user", "content": question}]
        self.pending: dict[str, list[int]] = {}   # tool -> indices of thoughts still running
        self.by_step: dict[int, tuple[int, str]] = {}  # observation step -> (message index, head)

    def _tool_content(self, why: str, call=None, arguments: Optional[dict] = None, text: str = "",
                      ok: bool = True) -> str:
        args = call.arguments if call is not None else (arguments or {})
        parts = [f"**Why:** {why}"] if why else []
        parts.append("**Input:**\n" + _json_block(args or {"event": (call.event if call is not None and call.event
                                                                     else "the event asked about")}))
        if call is not None and not call.ok:
            parts.append(f"**Error** ({call.error_kind or 'tool_error'}): {call.error}")
        elif not ok:
            parts.append(f"**Error:** {text}")
        else:
            parts.append(f"**Output:** {text}" if text else "**Output:**")
            if call is not None and call.output:
                parts.append(_json_block(call.output))
        return "\n\n".join(parts)

    def step(self, s) -> bool:
        node, call = s.node, s.call
        if node == "plan" and s.decision == "tool" and s.tool:
            why = s.text or "the question needs this measurement"
            self.messages.append(_thought(f"⚙ {s.tool}", self._tool_content(why, arguments=s.arguments) + " …",
                                          status="pending", log="running…", mid=f"step-{s.index}"))
            self.pending.setdefault(s.tool, []).append(len(self.messages) - 1)
            self.messages[-1]["why"] = why
            return True
        if node in ("observe", "verify"):
            tool = call.tool if call is not None else (s.tool or "tool")
            verify = node == "verify" or (call is not None and call.purpose == "verify")
            ok = call.ok if call is not None else not s.text.startswith("error:")
            title = f"⚙ validator re-measures: {tool}" if verify else f"⚙ {tool}"
            if not ok:
                title += " (failed)"
            waiting = None if verify else self.pending.get(tool)
            seconds = call.seconds if call is not None else s.seconds
            if waiting:
                i = waiting.pop(0)
                why = self.messages[i].pop("why", "")
            else:
                self.messages.append(_thought(title, ""))
                i, why = len(self.messages) - 1, ("the validator needs this measurement to check a claim"
                                                  if verify else "")
            msg = self.messages[i]
            msg["content"] = self._tool_content(why, call, text=s.text, ok=ok)
            meta = {**msg["metadata"], "title": title, "status": "done"}
            meta.pop("log", None)
            if seconds is not None:
                meta["duration"] = round(float(seconds), 2)
            msg["metadata"] = meta
            self.by_step[s.index] = (i, why)
            return True
        if node == "plan" and s.decision != "tool" and s.text:
            self.messages.append(_thought("✎ reasoning", s.text, duration=s.seconds))
            return True
        if node == "validate":
            self.messages.append(_thought("⚖ claim check", s.text, duration=s.seconds))
            return True
        if node == "intake" and ("removed" in s.text or "unknown" in s.text.lower() or "cannot" in s.text):
            self.messages.append(_thought("⚠ event", s.text))
            return True
        return False

    def complete(self, answer) -> None:
        """Fill every tool thought with its full call (inputs, outputs) from the answer."""
        for st in answer.steps:
            if st.call is not None and st.index in self.by_step:
                i, why = self.by_step[st.index]
                self.messages[i]["content"] = self._tool_content(why, st.call, text=st.text, ok=st.call.ok)

    def snapshot(self) -> list:
        """A copy without private keys (the streamed values must not change under Gradio)."""
        out = []
        for m in self.messages:
            m = {k: v for k, v in m.items() if k != "why"}
            if isinstance(m.get("metadata"), dict):
                m["metadata"] = dict(m["metadata"])
            out.append(m)
        return out

    def close_pending(self) -> None:
        for idxs in self.pending.values():
            for i in idxs:
                meta = dict(self.messages[i]["metadata"])
                meta.update(status="done", log="did not finish")
                self.messages[i]["metadata"] = meta
                self.messages[i].pop("why", None)
        self.pending.clear()


def _chunks(text: str, n: int) -> list[str]:
    words = text.split(" ")
    step = max(1, math.ceil(len(words) / n))
    return [" ".join(words[:i]) for i in range(step, len(words), step)]


def chat_turn(agent, event_ref: Optional[str], question: str, thread_id: str, history: list,
              stream_chunks: int = STREAM_CHUNKS) -> Iterator[tuple[list, Any]]:
    """Run one question; yields ``(messages, answer_or_None)`` after every change. The last
    item carries the ``agent.Answer`` (None when the agent failed: the error is a message)."""
    turn = _Turn(history, question)
    yield turn.snapshot(), None
    answer = None
    try:
        for item in agent.stream(event_ref, question, thread_id=thread_id):
            if isinstance(item, Answer):
                answer = item
            elif turn.step(item):
                yield turn.snapshot(), None
    except Exception as e:  # noqa: BLE001 - a failure is shown, the app keeps running
        turn.close_pending()
        detail = traceback.format_exception_only(type(e), e)[-1].strip()
        turn.messages.append({"role": "assistant",
                              "content": f"⚠ The agent failed on this question: `{detail}`"})
        yield turn.snapshot(), None
        return
    turn.close_pending()
    turn.complete(answer)
    if answer.revisions:
        drafts = "\n\n".join(f"{i + 1}. {d}" for i, d in enumerate(answer.drafts[:-1]))
        turn.messages.append(_thought(f"↩ validator sent the answer back {answer.revisions}×",
                                      drafts or "(no earlier draft)"))
    final = {"role": "assistant", "content": ""}
    turn.messages.append(final)
    for part in _chunks(answer.text, stream_chunks):
        final["content"] = part + " …"
        yield turn.snapshot(), None
    final["content"] = answer_markdown(answer)
    yield turn.snapshot(), answer
