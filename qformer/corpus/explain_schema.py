"""The words the VLM's grounded explanation is written from: the observations as text.

    from larsight.qformer.corpus.explain_schema import evidence_text, explain_prompt
    ev = Evidence.from_observations(observations)      # agent.evidence: the tools' measurements
    evidence_text(ev)       # one short line per fact, numbers as the answer writes them
    explain_prompt("Why is this nu_e?", ev)             # the user turn after the event tokens

``evidence_text`` is the one serialisation of an ``agent.evidence.Evidence`` that the
explanation corpus (``corpus.explanations``) trains on and the VLM brain prompts with
(``agent.vlm_actions``): the class and its probabilities, the vertex, the counts, each
particle (type, track or shower, length, energy, shower start dE/dx in MeV/cm and in MIP,
shower start distance from the vertex, Michel electron at a track end) and the visible energy.
Numbers carry the precision an answer writes (``agent.render``): lengths, gaps and the vertex to
0.1 cm, dE/dx to 0.1 MeV/cm, energies to 1 MeV, probabilities to 0.01, so a grounded text copies
them digit for digit (``ungrounded_numbers`` finds the ones it did not). Deterministic and short:
the language model is small and its context is 2k tokens.

The Evidence is duck-typed (any object with its attributes): ``qformer`` sits below ``agent``.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from larsight.events.vocabulary import CLASS_TEXT, MIP_DEDX

__all__ = ["evidence_text", "explain_prompt", "numbers_in", "ungrounded_numbers", "mip_level", "whole_sentences",
           "fmt_length", "fmt_energy", "fmt_dedx", "fmt_prob", "EXPLAIN_INSTRUCTION", "MAX_PARTICLES",
           "COUNT_ORDER"]

EXPLAIN_INSTRUCTION = "Explain from these measurements."
MAX_PARTICLES = 6
"""Particle lines in the observations (the most energetic first; the counts line has them all)."""
COUNT_ORDER = ("muon", "electron", "proton", "pion", "photon", "pi0", "kaon", "michel")
_ALWAYS = ("muon", "electron", "proton", "pion", "photon", "michel")
"""Counts written even when zero (what a classification is argued from)."""
_COUNT_WORD = {"pion": "charged pion", "michel": "Michel"}


def fmt_length(cm: float) -> str:
    return f"{cm:.1f}"


def fmt_energy(mev: float) -> str:
    return f"{mev:.0f}"


def fmt_dedx(mev_cm: float) -> str:
    return f"{mev_cm:.1f}"


def fmt_prob(p: float) -> str:
    return f"{p:.2f}"


def mip_level(dedx_mev_cm: float) -> int:
    """A shower start dE/dx in whole MIPs: 1 below 1.5 MIP (the validator's electron / photon
    split), 2 below 2.5 MIP, else rounded."""
    x = dedx_mev_cm / MIP_DEDX
    return 1 if x < 1.5 else 2 if x < 2.5 else int(round(x))


def _class_line(ev: Any) -> Optional[str]:
    if not getattr(ev, "event_class", None):
        return None
    c = ev.event_class
    probs = dict(getattr(ev, "class_probabilities", None) or {})
    line = f"class: {CLASS_TEXT.get(c, c)}"
    if c in probs:
        line += f" p {fmt_prob(probs[c])}"
    others = sorted(((k, v) for k, v in probs.items() if k != c), key=lambda kv: -kv[1])
    if others:
        line += " (" + ", ".join(f"{CLASS_TEXT.get(k, k)} {fmt_prob(v)}" for k, v in others) + ")"
    return line


def _counts_line(ev: Any) -> Optional[str]:
    counts = getattr(ev, "counts", None)
    if counts is None:
        return None
    bits = [f"{int(counts.get(k, 0))} {_COUNT_WORD.get(k, k)}" for k in COUNT_ORDER
            if k in _ALWAYS or int(counts.get(k, 0) or 0)]
    return "counts: " + ", ".join(bits)


def _particle_line(p: Any) -> str:
    kind = p.kind if p.kind in ("track", "shower") else "particle"
    line = f"{p.type} {kind}" if p.type not in ("unknown", None) else kind
    bits = []
    if kind == "track" and p.length_cm is not None:
        bits.append(f"{fmt_length(p.length_cm)} cm")
    if p.energy_mev is not None:
        bits.append(("at least " if p.energy_is_lower_bound else "") + f"{fmt_energy(p.energy_mev)} MeV")
    if kind == "shower":
        if p.gap_cm is not None:
            bits.append(f"starts {fmt_length(p.gap_cm)} cm from vertex")
        if p.start_dedx_mev_cm is not None:
            bits.append(f"start dE/dx {fmt_dedx(p.start_dedx_mev_cm)} MeV/cm ({mip_level(p.start_dedx_mev_cm)} MIP)")
    if kind == "track" and p.michel:
        bits.append("Michel at end")
    return line + (": " + ", ".join(bits) if bits else "")


def evidence_text(ev: Any) -> str:
    """The observations of ``ev`` (an ``agent.evidence.Evidence``) as short lines (see the module
    docstring); 'nothing measured' when it holds nothing."""
    lines = []
    cl = _class_line(ev)
    if cl:
        lines.append(cl)
    if getattr(ev, "vertex_cm", None) is not None:
        lines.append("vertex: (" + ", ".join(fmt_length(x) for x in ev.vertex_cm) + ") cm")
    parts = getattr(ev, "particles", None)
    if parts is None:
        if cl or lines:
            lines.append("particles: not reconstructed")
    else:
        cnt = _counts_line(ev)
        if cnt:
            lines.append(cnt)
        ordered = sorted(parts, key=lambda p: -(p.energy_mev or 0.0))
        lines += [_particle_line(p) for p in ordered[:MAX_PARTICLES]]
        if len(ordered) > MAX_PARTICLES:
            lines.append(f"and {len(ordered) - MAX_PARTICLES} smaller")
    if getattr(ev, "visible_energy_mev", None) is not None:
        lines.append(f"visible energy: {fmt_energy(ev.visible_energy_mev)} MeV")
    return "\n".join(lines) if lines else "nothing measured"


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def explain_prompt(question: str, ev: Any) -> str:
    """The user turn that asks for a grounded explanation: the observations, the question and
    ``EXPLAIN_INSTRUCTION``."""
    if not isinstance(question, str):
        raise TypeError(f"explain_prompt: the question must be text, got {type(question).__name__}")
    return f"Observations:\n{evidence_text(ev)}\nQuestion: {_clip(question, 300)}\n{EXPLAIN_INSTRUCTION}"


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")


def numbers_in(text: str) -> list[str]:
    """The numbers written in ``text`` (digits inside words such as 'pi0' or '1mu' are not numbers)."""
    return _NUMBER.findall(text or "")


def ungrounded_numbers(text: str, observations: str | Iterable[str]) -> list[str]:
    """The numbers of ``text`` whose value appears nowhere in ``observations`` (``evidence_text``)."""
    obs = observations if isinstance(observations, str) else "\n".join(observations)
    have = {float(x) for x in numbers_in(obs)}
    return [x for x in numbers_in(text) if float(x) not in have]


def whole_sentences(text: str) -> str:
    """Generated text cut after its last full sentence (decoding that ran out of tokens leaves a
    half sentence, often a half number); text without a full sentence is kept as it is."""
    t = " ".join(str(text or "").split())
    if not t or t.endswith((".", "!", "?")):
        return t
    cut = max(t.rfind(". "), t.rfind("! "), t.rfind("? "))
    return t[:cut + 1] if cut > 0 else t
