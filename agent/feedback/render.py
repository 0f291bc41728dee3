"""Feedback as text: the prompt an answer was given (the question with its context) and the
corrected answer written from the expert's corrected claims.

``corrected_text(text, claims, corrections)`` edits the original answer claim by claim, so that
the chosen and rejected answers of a preference pair differ only where the expert corrected
them: a corrected number replaces the old one where the answer states it (same precision, same
unit words), a corrected class or particle rewrites the sentence that made the claim from the
corrected claim, a claim marked wrong loses its sentence, and a corrected claim whose words
cannot be found is stated in a sentence of its own at the end. Claims are read from the stored
claim table in either form the agent writes (typed claims with ``subject`` / ``value``, or claims
read from free text with ``particle`` / ``vector`` / ``label``, ``text`` and ``start``).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Optional

from larsight.events.vocabulary import CLASS_TEXT, MIP_DEDX

from ..render import NOUNS

__all__ = ["prompt_text", "corrected_text", "claim_sentence", "MAX_TOOL_CHARS"]

MAX_TOOL_CHARS = 600
"""Characters of one tool's output kept in a prompt's context."""

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[`])")


def prompt_text(rec: Any) -> str:
    """The question with its context: the event, each tool the agent ran (inputs, a compact
    output), then the question."""
    lines = [f"Event: {rec.event or 'none'}"]
    for call in rec.tools:
        if call.get("purpose", "action") != "action":
            continue
        args = json.dumps(call.get("arguments") or {}, sort_keys=True, default=str)
        if call.get("ok", True) and call.get("output") is not None:
            out = json.dumps(call["output"], sort_keys=True, default=str, separators=(",", ":"))
            out = out if len(out) <= MAX_TOOL_CHARS else out[:MAX_TOOL_CHARS] + "…"
        else:
            out = f"error: {call.get('error') or 'failed'}"
        lines.append(f"Tool {call.get('tool')}({args}) -> {out}")
    lines.append(f"Question: {rec.question}")
    return "\n".join(lines)


# ============================================================================ claims
def _parts(check: dict) -> dict:
    """A stored claim in one shape: kind, subject, number, vector, label, qualifier, text, start."""
    c = check.get("claim", check)
    kind, value = c.get("kind"), c.get("value")
    vector = c.get("vector") or (value if kind == "vertex" else None)
    label = c.get("label") or (value if kind == "event_class" and isinstance(value, str) else None)
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    subject = c.get("subject") or c.get("particle")
    return {"kind": kind, "subject": subject, "number": number, "vector": vector, "label": label,
            "qualifier": c.get("qualifier"), "text": c.get("text") or "", "start": c.get("start")}


def _apply(p: dict, corr: dict) -> dict:
    """The claim as the expert says it should be."""
    q = dict(p)
    label, value = corr.get("label"), corr.get("value")
    kind = p["kind"]
    if kind == "event_class":
        q.update(label=label, qualifier=None)
    elif kind in ("present", "absent") and label in ("present", "absent"):
        q["kind"] = label
    elif kind in ("present", "absent"):
        q["subject"] = label
    elif kind == "michel":
        q["qualifier"] = "absent" if label == "absent" else None
    elif kind == "shower_gap" and label:
        q.update(qualifier=label, number=None)
    elif kind == "vertex":
        q["vector"] = list(value)
    else:
        q["number"] = value
        if kind == "shower_dedx":
            q["qualifier"] = None
    return q


def _noun(subject: Optional[str], default: str, n: int = 1) -> str:
    word = subject or default
    one, many = NOUNS.get(word, (word, word + "s"))
    return one if n == 1 else many


def claim_sentence(p: dict) -> str:
    """One plain sentence stating a claim (in the words the claim reader understands)."""
    k, s, x = p["kind"], p["subject"], p["number"]
    if k == "event_class":
        return f"This is {'not ' if p['qualifier'] == 'not' else ''}a {CLASS_TEXT.get(p['label'], p['label'])} event."
    if k == "vertex":
        return "The vertex is at (" + ", ".join(f"{v:.1f}" for v in p["vector"]) + ") cm."
    if k == "count":
        n = int(x or 0)
        return f"There {'is' if n == 1 else 'are'} {n if n else 'no'} {_noun(s, 'track', n)}."
    if k == "present":
        return f"A {_noun(s, 'particle')} is present."
    if k == "absent":
        return f"No {_noun(s, 'particle')} is seen."
    if k == "michel":
        return "No Michel electron is seen." if p["qualifier"] == "absent" else \
            "A Michel electron is seen at a track end."
    if k == "track_length":
        return f"The {(p['qualifier'] + ' ') if p['qualifier'] else ''}{_noun(s, 'track')} is {x:.1f} cm long."
    if k == "shower_dedx":
        return f"The {_noun(s, 'shower')} starts with a dE/dx of {x:.1f} MeV/cm ({x / MIP_DEDX:.1f} MIP)."
    if k == "shower_gap":
        if p["qualifier"] == "attached":
            return f"The {_noun(s, 'shower')} starts at the vertex."
        if p["qualifier"] == "not_attached" or x is None:
            return f"The {_noun(s, 'shower')} does not start at the vertex."
        return f"The {_noun(s, 'shower')} starts {x:.1f} cm from the vertex."
    if k == "energy":
        return f"The {_noun(s, 'shower') if s != 'visible' else 'visible'} energy is {x:.0f} MeV."
    return ""


def _number_forms(x: float) -> list[str]:
    return list(dict.fromkeys([f"{x:.1f}", f"{x:.0f}", f"{x:g}", f"{x:.2f}"]))


_SCALES = {"track_length": (1.0, 0.01, 10.0), "shower_gap": (1.0, 0.01, 10.0), "energy": (1.0, 0.001)}
"""The factors from a claim's stored unit (cm, MeV) to the units a text may state it in (m, mm; GeV)."""


def _stated(sentence: str, p: dict) -> tuple[Optional[str], float]:
    """(the words of a free-text claim's number in ``sentence``, the factor of the unit they are in)."""
    if p["number"] is None:
        return None, 1.0
    for factor in _SCALES.get(p["kind"], (1.0,)):
        words = next((f for f in _number_forms(p["number"] * factor) if f in p["text"] and _word_at(sentence, f) >= 0),
                     None)
        if words is not None:
            return words, factor
    return next((f for f in _number_forms(p["number"]) if _word_at(sentence, f) >= 0), None), 1.0


def _find(sentences: list[str], p: dict, text: str,
          spans: list[tuple[int, int]]) -> tuple[Optional[int], Optional[str], float]:
    """(sentence index, the words of the value in it, the factor of their unit) of where the answer
    states claim ``p``."""
    if p["text"] and isinstance(p["start"], int) and text[p["start"]:p["start"] + len(p["text"])] == p["text"]:
        i = next((i for i, (a, b) in enumerate(spans) if a <= p["start"] < b), None)
        if i is not None:
            return (i, *_stated(sentences[i], p))
    if p["kind"] == "event_class" and p["label"]:
        forms = [CLASS_TEXT.get(p["label"], p["label"]), p["label"]]
    elif p["kind"] == "vertex" and p["vector"]:
        forms = ["(" + ", ".join(f"{v:.1f}" for v in p["vector"]) + ")"]
    elif p["number"] is not None:
        forms = _number_forms(float(p["number"]))
    else:
        forms = [w for w in (p["text"], _noun(p["subject"], "")) if w]
    for f in forms:
        for i, s in enumerate(sentences):
            if _word_at(s, f) >= 0:
                return i, f if p["number"] is not None else None, 1.0
    return None, None, 1.0


def _word_at(s: str, w: str, start: int = 0) -> int:
    """Where ``w`` stands on its own in ``s`` (not inside a longer word or number), else -1.
    Plain string search: the values differ in every answer, so regular expressions would be
    compiled anew for each (the export of 100k items would spend most of its time there)."""
    i = s.find(w, start)
    while i >= 0:
        before = s[i - 1] if i > 0 else " "
        after = s[i + len(w):i + len(w) + 2]
        if not (before.isalnum() or before in "._") and not (after[:1].isalnum() or after[:1] == "_" or
                                                              (after[:1] == "." and after[1:2].isdigit())):
            return i
        i = s.find(w, i + 1)
    return -1


def _split(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    spans, pos = [], 0
    for m in _SENT.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    spans = [(a, b) for a, b in spans if text[a:b].strip()]
    return [text[a:b].strip() for a, b in spans], spans


def corrected_text(text: str, claims: list[dict], corrections: list[dict]) -> str:
    """The answer as the expert corrected it (see the module docstring); equal to ``text`` when
    no correction changes anything."""
    sentences, spans = _split(text)
    out: list[Optional[str]] = list(sentences)
    extra: list[str] = []
    for corr in sorted(corrections, key=lambda c: c["claim"]):
        if corr.get("mark") == "right" or corr["claim"] >= len(claims):
            continue
        p = _parts(claims[corr["claim"]])
        i, words, factor = _find(sentences, p, text, spans)
        if corr.get("mark") == "wrong":
            if i is not None:
                out[i] = None
            continue
        q = _apply(p, corr)
        if i is None or out[i] is None:
            extra.append(claim_sentence(q))
        elif q["kind"] == "count" and words is not None and _count_edit(out[i], words, p, q):
            out[i] = _count_edit(out[i], words, p, q)
        elif words is not None and q["number"] is not None and q["kind"] == p["kind"]:
            places = max(_decimals(words), round(-math.log10(factor)) if factor < 1 else 0)   # 1.4 m -> 1.82 m
            new, at = f"{q['number'] * factor:.{places}f}", _word_at(out[i], words)
            out[i] = out[i][:at] + new + out[i][at + len(words):] if at >= 0 else out[i]
        else:
            out[i] = claim_sentence(q)
    return " ".join(s for s in out + extra if s)


def _decimals(words: str) -> int:
    return len(words.split(".")[1]) if "." in words else 0


def _count_edit(sentence: str, words: str, p: dict, q: dict) -> Optional[str]:
    """'There is 1 proton' -> 'There are 3 protons' (None when the count's noun is not there)."""
    one = _noun(p["subject"], "track")
    m = re.search(r"(?<![\w.])" + re.escape(words) + r"\s+(" + re.escape(one) + r"s?)\b", sentence)
    if m is None:
        return None
    n = int(q["number"])
    phrase = f"{n if n else 'no'} {one if n == 1 else one + 's'}"
    out = sentence[:m.start()] + phrase + sentence[m.end():]
    if n != 1:
        out = re.sub(r"\b(There|there) is\b", r"\1 are", out, count=1)
    elif n == 1:
        out = re.sub(r"\b(There|there) are\b", r"\1 is", out, count=1)
    return out
