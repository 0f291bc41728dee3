"""Captions (stage 1): varied natural-language descriptions of an event in ``CAPTION_STYLES``."""
from __future__ import annotations

import numpy as np

from larsight.events.vocabulary import (CLASS_TEXT, CONVERSION_LENGTH_CM, MIP_DEDX, EventFacts, InteractionFacts,
                                        ParticleFacts)

from .classification import class_name, explain_class, opening
from .phrases import particle_phrase
from .text import (capitalise, fmt_dedx, fmt_energy, fmt_length, fmt_vertex, join_words, noun,
                   pick, plural, type_list, with_article)

CAPTION_PROMPT = "Describe this event."
CAPTION_PROMPTS = (
    CAPTION_PROMPT, "What do you see in this event?", "Describe the interaction.",
    "Give a short physics description of this event.", "Summarise this LArTPC event.",
    "What happened in this event?", "Write a caption for this event.",
    "Describe the particles in this event.",
)


def _ordered(parts: list[ParticleFacts], rng) -> list[ParticleFacts]:
    how = int(rng.integers(4))
    if how == 0:
        return sorted(parts, key=lambda p: -p.energy_mev)
    if how == 1:
        return sorted(parts, key=lambda p: -(p.length_cm or 0.0))
    if how == 2:
        rank = {"muon": 0, "electron": 1, "photon": 2, "pion": 3, "kaon": 4, "proton": 5}
        return sorted(parts, key=lambda p: (rank.get(p.type, 9), -p.energy_mev))
    idx = rng.permutation(len(parts))
    return [parts[i] for i in idx]


MAX_DESCRIBED = 5
"""Captions describe at most this many particles one by one (the most energetic); the rest are
summarised by type, so that a caption stays within the language model's text budget."""


def _clauses(it: InteractionFacts, rng, physics_p: float) -> list[str]:
    vis = it.visible_particles()
    rest: list[ParticleFacts] = []
    if len(vis) > MAX_DESCRIBED:
        by_e = sorted(vis, key=lambda p: -p.energy_mev)
        vis, rest = by_e[:MAX_DESCRIBED], by_e[MAX_DESCRIBED:]
    parts = _ordered(vis, rng)
    out = [particle_phrase(p, it, rng, physics=rng.random() < physics_p) for p in parts]
    if rest:
        out.append(pick(rng, ("{n} more: {what}", "{what} of lower energy", "smaller ones: {what}"))
                   .format(n=len(rest), what=type_list(rest)))
    return out


def _count_sentence(it: InteractionFacts, rng) -> str:
    nt, ns = len(it.tracks), len(it.showers)
    form = int(rng.integers(3))
    if form == 0:
        return f"{plural(nt, 'track')} and {plural(ns, 'shower')}"
    if form == 1:
        return f"topology {it.topology}"
    bits = [plural(n, noun(t), noun(t, 2)) for t in ("muon", "electron", "photon", "proton", "pion", "kaon")
            if (n := len(it.of_type(t)))]
    return join_words(bits) if bits else "no particle above threshold"


def _vertex_phrase(it, rng) -> str:
    if it.vertex_cm is None:
        return ""
    return pick(rng, (f" at {fmt_vertex(it.vertex_cm)}", f" with its vertex at {fmt_vertex(it.vertex_cm)}",
                      f" at vertex {fmt_vertex(it.vertex_cm)}"))


def _reasoning_sentence(it: InteractionFacts, rng) -> str:
    if it.event_class:
        return capitalise(explain_class(it, rng)) + "."
    bits = []
    for p in it.visible_particles():
        if p.type == "electron" and it.vertex_cm is not None:
            bits.append(f"the electron shower starts at the vertex (about 1 MIP, {fmt_dedx(MIP_DEDX)})")
        elif p.type == "photon" and p.conversion_gap_cm is not None:
            bits.append(f"the photon shower starts {fmt_length(p.conversion_gap_cm, rng)} away, as photons convert "
                        f"after about {CONVERSION_LENGTH_CM:.0f} cm on average")
        elif p.type == "muon" and (p.length_cm or 0) >= 30:
            bits.append("the muon is a long minimum-ionising track")
        elif p.type == "proton" and p.end_state == "stops":
            bits.append("the proton is short and highly ionising with a Bragg peak")
    if not bits:
        return ""
    return capitalise(join_words(bits[:2], rng)) + "."


def _caption_interaction(it: InteractionFacts, facts: EventFacts, rng, style: str) -> str:
    if style == "narrative":
        cl = _clauses(it, rng, 0.5)
        head = capitalise(opening(it, facts, rng)) + (_vertex_phrase(it, rng) if rng.random() < 0.6 else "")
        body = f"{head}: {join_words(cl, rng)}." if cl else f"{head} with no particle above threshold."
        if rng.random() < 0.5:
            body += f" Visible energy {fmt_energy(it.visible_energy_mev, rng)}."
        return body
    if style == "inventory":
        lines = [capitalise(opening(it, facts, rng)) + "."]
        if it.vertex_cm is not None:
            lines.append(f"Vertex: {fmt_vertex(it.vertex_cm)}.")
        cl = _clauses(it, rng, 0.2)
        lines.append("Particles: " + ("; ".join(cl) if cl else "none above threshold") + ".")
        lines.append(f"Topology: {it.topology}.")
        lines.append(f"Visible energy: {fmt_energy(it.visible_energy_mev, rng)}.")
        if rng.random() < 0.5:
            lines = [lines[0]] + list(np.array(lines[1:], dtype=object)[rng.permutation(len(lines) - 1)])
        return " ".join(lines)
    if style == "terse":
        bits = [CLASS_TEXT[it.event_class] if it.event_class else ("rain particle" if facts.is_rain else "gun vertex"),
                it.topology]
        if it.nu_energy_mev:
            bits.append(f"E_nu {fmt_energy(it.nu_energy_mev, rng)}")
        bits.append(f"visible {fmt_energy(it.visible_energy_mev, rng)}")
        lead = it.leading
        if lead is not None:
            bits.append("leading " + particle_phrase(lead, it, rng, physics=False))
        return capitalise(", ".join(bits)) + "."
    if style == "reasoning":
        why = _reasoning_sentence(it, rng)
        cl = _clauses(it, rng, 0.3)
        if it.event_class:
            lead = pick(rng, ("so this is", "which makes it", "hence"))
            head = f"{why[:-1]}, {lead} {with_article(class_name(it.event_class, rng, 0.6) + ' interaction')}."
        else:
            head = why or (capitalise(opening(it, facts, rng)) + ".")
        return (head + (" " + capitalise(join_words(cl, rng)) + "." if cl else "")).strip()
    if style == "observational":
        cl = _clauses(it, rng, 0.4)
        where = fmt_vertex(it.vertex_cm) if it.vertex_cm is not None else None
        lead = pick(rng, ("From the vertex at {v}", "Leaving the point {v}", "Out of a vertex at {v}")) \
            .format(v=where) if where else "In this event"
        if not cl:
            return f"{lead}: no particle above threshold."
        return f"{lead}: {join_words(cl, rng)} ({_count_sentence(it, rng)})."
    # "counts"
    cl = _clauses(it, rng, 0.3)
    nt, ns = len(it.tracks), len(it.showers)
    head = pick(rng, (f"{plural(nt, 'track')} and {plural(ns, 'shower')}",
                      f"{capitalise(_count_sentence(it, rng))}"))
    s = capitalise(head)
    if it.vertex_cm is not None and rng.random() < 0.7:
        s += pick(rng, (f" from a vertex at {fmt_vertex(it.vertex_cm)}",
                        f" (vertex {fmt_vertex(it.vertex_cm)})"))
    if it.event_class and rng.random() < 0.8:
        s += f" in {with_article(class_name(it.event_class, rng) + ' interaction')}"
    if not cl:
        return s + f", only {fmt_energy(it.visible_energy_mev, rng)} of small deposits."
    return s + f": {join_words(cl, rng)}."


def _caption_rain(facts: EventFacts, rng, style: str) -> str:
    """A rain event: independent particles, each from its own starting point."""
    vis = [i for i in facts.interactions if i.visible_particles()]
    n = len(vis)
    head = pick(rng, (f"A rain event: {plural(n, 'independent particle')} scattered through the volume",
                      f"{plural(n, 'unrelated particle')} crossing the detector (cosmic-like rain)",
                      f"Particle rain with {plural(n, 'separate track or shower', 'separate tracks and showers')}",
                      f"{plural(n, 'independent particle')}, each with its own starting point"))
    order = rng.permutation(n) if rng.random() < 0.5 else \
        np.argsort([-i.visible_energy_mev for i in vis], kind="stable")
    physics_p = 0.7 if style == "reasoning" else 0.25

    def one(it):
        p = it.leading
        ph = particle_phrase(p, it, rng, physics=rng.random() < physics_p, ref="its starting point")
        if it.vertex_cm is not None and rng.random() < 0.4:
            ph = f"at {fmt_vertex(it.vertex_cm)}, {ph}"
        return ph

    if style == "terse":
        kinds = type_list([i.leading for i in vis])
        lead = max(vis, key=lambda i: i.leading.energy_mev)
        best = particle_phrase(lead.leading, lead, rng, ref="its starting point")
        return (f"{head}: {kinds}. The most energetic is {best}. "
                f"Visible energy {fmt_energy(facts.visible_energy_mev, rng)}.")
    if n > MAX_DESCRIBED:
        top = set(np.argsort([-i.leading.energy_mev for i in vis], kind="stable")[:MAX_DESCRIBED].tolist())
        cl = [one(vis[int(k)]) for k in order if int(k) in top]
        rest = [vis[k].leading for k in range(n) if k not in top]
        cl.append(pick(rng, ("{what} of lower energy", "{n} more: {what}"))
                  .format(n=len(rest), what=type_list(rest)))
    else:
        cl = [one(vis[int(k)]) for k in order]
    if style == "inventory":
        return (f"{head}. Particles: " + "; ".join(cl) + f". Counts: {type_list([i.leading for i in vis])}. "
                f"Visible energy: {fmt_energy(facts.visible_energy_mev, rng)}.")
    text = f"{head}: {join_words(cl, rng)}."
    if rng.random() < 0.5:
        text += f" Visible energy {fmt_energy(facts.visible_energy_mev, rng)}."
    return text


CAPTION_STYLES = ("narrative", "inventory", "terse", "reasoning", "observational", "counts")


def caption_items(facts: EventFacts, rng: np.random.Generator, n: int = 1) -> list[dict]:
    """``n`` captions as ``{"template": style, "text": caption}``."""
    out = []
    for _ in range(n):
        style = pick(rng, CAPTION_STYLES)
        if not facts.interactions:
            out.append({"template": "empty", "text": "An event with no labelled particles."})
            continue
        if len(facts.interactions) == 1 or not facts.is_rain:
            main = facts.main
            text = _caption_interaction(main, facts, rng, style)
            others = [i for i in facts.interactions if i is not main and i.visible_particles()]
            if others:
                text += f" Plus {plural(len(others), 'other interaction')}."
        else:
            text = _caption_rain(facts, rng, style)
            style = "rain-" + style
        out.append({"template": style, "text": " ".join(text.split())})
    return out


def captions(facts: EventFacts, rng: np.random.Generator, n: int = 1) -> list[str]:
    """``n`` varied natural-language descriptions of the event (templates x paraphrases x
    ordering x number formats), with physics reasoning phrases."""
    return [c["text"] for c in caption_items(facts, rng, n)]
