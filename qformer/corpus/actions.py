"""The instruction corpus of the agent's action (``larsight align --stage actions``).

    from larsight.qformer.corpus.actions import action_examples, template_split
    train = action_examples(40000, seed=0, split="train")       # list of dicts
    held = action_examples(500, seed=1, split="heldout")        # templates training never sees

Each example is a question (with earlier turns, file metadata, typos, wrappers...) and the
action the brain should emit (``action_schema.action_text``): tool calls with arguments, an
answer without tools, or a refusal. The wording comes from ``action_phrases``: question
templates per intent with slots (particles and their jargon, units, classes, numbers, views,
text queries), follow-ups that refer back, multi-part questions, textbook questions, chat,
off-topic requests, and prompt injections in the question and in the file metadata whose
target is a refusal or the action of the real question only.

The split is by TEMPLATE, not by example: ``template_split`` sends about a fifth of every
template list (question templates, follow-ups, textbook and off-topic forms, injection texts
and wrappers, connectors) to ``heldout`` by a hash of its text, so held-out accuracy measures
phrasings the model never trained on. Deterministic: example ``i`` of a seed is drawn from
``numpy.random.default_rng([seed, i, split])``.
"""
from __future__ import annotations

import functools
import hashlib
import re
from typing import Optional, Sequence

import numpy as np

from . import action_phrases as P
from .action_schema import MAX_CALLS, action_prompt, action_text, call

__all__ = ["action_examples", "template_split", "split_templates", "INTENTS", "KIND_WEIGHTS", "typos",
           "normalize_action", "SPLITS"]

SPLITS = ("train", "heldout")
HELDOUT_SHARE = 0.2
INTENTS = tuple(P.TEMPLATES)
KIND_WEIGHTS = {"single": 0.48, "multi": 0.10, "followup": 0.12, "textbook": 0.07, "chat": 0.03,
                "off_topic": 0.05, "injection": 0.04, "injected": 0.06, "metadata": 0.05}
DEFAULT_ARGS = {"find_similar": {"k": 5}, "render": {"view": "3d"}}
"""Argument values equal to the tool's default (``agent.toolset``): the same action with or without them."""


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def template_split(kind: str, texts: Sequence[str]) -> dict[str, str]:
    """Which split each template of a list belongs to (about ``HELDOUT_SHARE`` held out, at
    least one of each split when the list has two or more)."""
    return dict(_template_split(kind, tuple(texts)))


@functools.lru_cache(maxsize=256)
def _template_split(kind: str, texts: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    scores = {t: (_h(f"{kind}|{t}") % 10_000) / 10_000 for t in texts}
    out = {t: "heldout" if s < HELDOUT_SHARE else "train" for t, s in scores.items()}
    if len(texts) >= 2:
        order = sorted(texts, key=lambda t: scores[t])
        if "heldout" not in out.values():
            out[order[0]] = "heldout"
        if "train" not in out.values():
            out[order[-1]] = "train"
    return tuple(out.items())


def split_templates(kind: str, texts: Sequence, split: str, key=lambda t: t) -> list:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    which = template_split(kind, [key(t) for t in texts])
    return [t for t in texts if which[key(t)] == split]


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


# ============================================================================ noise
_KEYS = "qwertyuiopasdfghjklzxcvbnm"


def typos(text: str, rng: np.random.Generator, rate: float = 0.08) -> str:
    """Keyboard noise on words of four letters or more: a swapped, dropped, doubled or
    mistyped letter, each word with probability ``rate``."""
    def fix(m: re.Match) -> str:
        w = m.group(0)
        if rng.random() >= rate:
            return w
        i = int(rng.integers(1, len(w) - 1))
        op = int(rng.integers(4))
        if op == 0:
            return w[:i] + w[i + 1] + w[i] + w[i + 2:]
        if op == 1:
            return w[:i] + w[i + 1:]
        if op == 2:
            return w[:i] + w[i] + w[i:]
        return w[:i] + _KEYS[int(rng.integers(len(_KEYS)))] + w[i + 1:]
    return re.sub(r"[A-Za-z]{4,}", fix, text)


def _surface(text: str, rng: np.random.Generator, split: str) -> str:
    """Wrappers, casing, punctuation and typos around a question."""
    if rng.random() < 0.25:
        text = _pick(rng, split_templates("prefix", P.PREFIXES, split)) + text[:1].lower() + text[1:]
    if rng.random() < 0.1:
        text += _pick(rng, split_templates("suffix", P.SUFFIXES, split))
    if rng.random() < 0.3:
        text = typos(text, rng)
    r = rng.random()
    if r < 0.15:
        text = text.lower()
    elif r < 0.3:
        text = text.rstrip("?.!")
    return text


# ============================================================================ questions
def _fill(template: str, intent: str, rng: np.random.Generator, particle: Optional[str] = None) -> tuple[str, dict]:
    """A template with its slots filled, and the values chosen (what the action depends on)."""
    allowed = P.TEMPLATES.get(intent, ((),))[0] or tuple(P.PARTICLE_WORDS)
    slots: dict = {}
    if "{p}" in template or "{ps}" in template:
        slots["particle"] = particle or _pick(rng, allowed)
    p = slots.get("particle")
    fills = {
        "p": lambda: _pick(rng, P.PARTICLE_WORDS[p]),
        "ps": lambda: _pick(rng, P.PARTICLE_PLURALS[p]),
        "lu": lambda: _unit(rng, P.LENGTH_UNIT_WORDS, slots),
        "eu": lambda: _unit(rng, P.ENERGY_UNIT_WORDS, slots),
        "cls": lambda: _pick(rng, P.CLASS_WORDS[_pick(rng, tuple(P.CLASS_WORDS))]),
        "clsn": lambda: _set(slots, "event_class", _pick(rng, tuple(P.CLASS_ADJ)), P.CLASS_ADJ, rng),
        "k": lambda: _set(slots, "k", _pick(rng, tuple(P.K_WORDS)), P.K_WORDS, rng),
        "desc": lambda: slots.setdefault("query", _pick(rng, P.QUERY_DESCRIPTIONS)),
        "v": lambda: _set(slots, "view", _pick(rng, tuple(P.VIEW_WORDS)), P.VIEW_WORDS, rng),
    }
    text = re.sub(r"\{(\w+)\}", lambda m: fills[m.group(1)](), template)
    return text, slots


def _unit(rng, table: dict, slots: dict) -> str:
    if rng.random() < 0.55:
        return ""
    unit = _pick(rng, tuple(table))
    slots["unit"] = unit
    return _pick(rng, table[unit])


def _set(slots: dict, name: str, value, table: dict, rng) -> str:
    slots[name] = value
    return _pick(rng, table[value])


def _calls(intent: str, slots: dict, template: str) -> list[dict]:
    """The tool calls that answer one intent with the slot values of its question."""
    p, unit = slots.get("particle"), slots.get("unit")
    if intent == "classify":
        return [call("classify_event")]
    if intent == "classify_why":
        return [call("classify_event"), call("reconstruct", quantity="reasons")]
    if intent == "vertex":
        return [call("find_vertex", unit=unit)]
    if intent in ("counts", "length", "energy", "dedx"):
        if intent == "length" and p is None and "longest track" in template:
            p = "track"
        return [call("reconstruct", quantity=intent, particle=p, unit=unit)]
    if intent == "michel":
        return [call("reconstruct", quantity="michel")]
    if intent == "gap":
        return [call("reconstruct", quantity="gap"), call("find_vertex")]
    if intent in ("visible_energy", "segment"):
        return [call("segment", quantity="labels" if intent == "segment" else "visible_energy")]
    if intent == "similar":
        return [call("find_similar", k=slots.get("k"), event_class=slots.get("event_class"),
                     query=slots.get("query"))]
    if intent == "describe":
        return [call("describe")]
    if intent == "render":
        return [call("render", view=slots.get("view"))]
    raise ValueError(f"unknown intent {intent!r}")


def _question(intent: str, rng: np.random.Generator, split: str) -> tuple[str, list[dict], str, dict]:
    """(question, calls, template, slots) for one intent."""
    template = _pick(rng, split_templates(intent, P.TEMPLATES[intent][1], split))
    text, slots = _fill(template, intent, rng)
    return text, _calls(intent, slots, template), f"{intent}|{template}", slots


def _calls_action(calls: list[dict]) -> dict:
    seen, out = set(), []
    for c in calls:
        key = action_text({"action": "call", "calls": [c]})
        if key not in seen:
            seen.add(key)
            out.append(c)
    return {"action": "call", "calls": out[:MAX_CALLS]}


# ============================================================================ example kinds
def _single(rng, split):
    q, calls, tpl, _ = _question(_pick(rng, INTENTS), rng, split)
    return {"question": _surface(q, rng, split), "action": _calls_action(calls), "template": tpl}


def _multi(rng, split):
    a, b = rng.choice(len(INTENTS), size=2, replace=False)
    qa, ca, ta, _ = _question(INTENTS[int(a)], rng, split)
    qb, cb, tb, _ = _question(INTENTS[int(b)], rng, split)
    conn = _pick(rng, split_templates("connector", P.CONNECTORS, split))
    text = conn.format(a=qa, b=qb[:1].lower() + qb[1:] if not qb.startswith(("I ", "I'")) else qb)
    return {"question": _surface(text, rng, split), "action": _calls_action(ca + cb),
            "template": f"{ta} + {tb} via {conn}"}


def _followup(rng, split):
    prev_intent, text, asks = _pick(rng, split_templates("followup", P.FOLLOW_UPS, split, key=lambda f: f[1]))
    template = _pick(rng, split_templates(prev_intent, P.TEMPLATES[prev_intent][1], split))
    prev_q, slots = _fill(template, prev_intent, rng)
    prev_calls = _calls(prev_intent, slots, template)
    what, _, how = asks.partition(":")
    follow, fslots = _fill(text, "counts", rng, particle=None) if "{p" in text else (text, {})
    if what in ("classify", "classify_why", "render"):
        calls = _calls(what, {}, "")
    elif what == "vertex":
        calls = _calls("vertex", {"unit": how}, "")
    else:
        p = slots.get("particle") if how in ("same", "m", "mm", "GeV") else \
            fslots.get("particle") if how == "p" else how
        if how == "same" and p is None and what == "length":
            p = "track"
        unit = how if how in ("m", "mm", "GeV") else None
        calls = [call("reconstruct", quantity=what, particle=p, unit=unit)]
    history = [(prev_q, [c["tool"] for c in prev_calls])]
    return {"question": _surface(follow, rng, split), "history": history, "action": _calls_action(calls),
            "template": f"followup|{text}"}


def _textbook(rng, split):
    tpl = _pick(rng, split_templates("textbook", P.TEXTBOOK_TEMPLATES, split))
    return {"question": _surface(tpl.format(t=_pick(rng, P.TEXTBOOK_TERMS)), rng, split),
            "action": {"action": "answer"}, "template": f"textbook|{tpl}"}


def _chat(rng, split):
    text = _pick(rng, split_templates("chat", P.CHAT, split))
    return {"question": text, "action": {"action": "answer"}, "template": f"chat|{text}"}


def _off_topic(rng, split):
    tpl = _pick(rng, split_templates("off_topic", P.OFF_TOPIC_TEMPLATES, split))
    task = _pick(rng, P.OFF_TOPIC_TASKS)
    text = tpl.replace("{X}", task[:1].upper() + task[1:]).replace("{x}", task)
    return {"question": _surface(text, rng, split), "action": {"action": "refuse", "reason": "off_topic"},
            "template": f"off_topic|{tpl}"}


def _injection(rng, split):
    inj = _pick(rng, split_templates("injection", P.INJECTIONS, split))
    return {"question": inj, "action": {"action": "refuse", "reason": "injection"}, "template": f"injection|{inj}"}


def _injected(rng, split):
    ex = _single(rng, split)
    inj = _pick(rng, split_templates("injection", P.INJECTIONS, split))
    wrap = _pick(rng, split_templates("inj_wrap", P.INJECTION_WRAPS, split))
    ex["question"] = wrap.format(real=ex["question"], inj=inj)
    ex["template"] += f" + injection|{inj}"
    return ex


def _metadata(rng, split):
    ex = _single(rng, split)
    bad = rng.random() < 0.6
    pool = split_templates("meta_injection", P.METADATA_INJECTIONS, split) if bad else P.METADATA_BENIGN
    ex["metadata"] = _pick(rng, pool)
    ex["template"] += f" + metadata|{ex['metadata'] if bad else 'benign'}"
    return ex


_KINDS = {"single": _single, "multi": _multi, "followup": _followup, "textbook": _textbook, "chat": _chat,
          "off_topic": _off_topic, "injection": _injection, "injected": _injected, "metadata": _metadata}


def action_examples(n: int, seed: int = 0, split: str = "train", start: int = 0) -> list[dict]:
    """``n`` examples (indices ``start`` .. ``start + n - 1``) of a split: ``kind``, ``question``,
    ``history`` [(question, tools)], ``metadata``, ``prompt`` (``action_prompt``), ``action``
    (dict), ``target`` (its canonical text) and ``template`` (which templates made it)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0 or start < 0:
        raise ValueError("action_examples: n and start must be >= 0")
    kinds = list(KIND_WEIGHTS)
    weights = np.array([KIND_WEIGHTS[k] for k in kinds])
    weights = weights / weights.sum()
    out = []
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i, SPLITS.index(split)])
        kind = kinds[int(rng.choice(len(kinds), p=weights))]
        ex = _KINDS[kind](rng, split)
        ex.setdefault("history", [])
        ex.setdefault("metadata", None)
        ex.update(kind=kind, split=split, index=i,
                  prompt=action_prompt(ex["question"], ex["history"], ex["metadata"]),
                  target=action_text(ex["action"]))
        out.append(ex)
    return out


def normalize_action(action: dict) -> tuple:
    """A comparable form of an action: its kind, reason, and the set of calls with the
    arguments that differ from the tools' defaults (``DEFAULT_ARGS``)."""
    kind = action.get("action")
    calls = []
    for c in action.get("calls") or []:
        defaults = DEFAULT_ARGS.get(c.get("tool"), {})
        args = {k: v for k, v in (c.get("arguments") or {}).items()
                if v is not None and defaults.get(k, object()) != v and k != "event"}
        calls.append(action_text({"action": "call", "calls": [{"tool": c.get("tool"), "arguments": args}]}))
    return kind, action.get("reason") if kind == "refuse" else None, tuple(sorted(set(calls)))
