"""Phrases about one particle (a track or a shower), with optional physics reasoning."""
from __future__ import annotations

from typing import Optional

from larsight.events.vocabulary import (CONVERSION_LENGTH_CM, MIP_DEDX, MUON_MIP_MIN_CM, InteractionFacts,
                                        ParticleFacts)

from .text import fmt_dedx, fmt_energy, fmt_length, pick, with_article


def _len(p: ParticleFacts, rng) -> str:
    return fmt_length(p.length_cm, rng) if p.length_cm is not None else "short"


def _track_phrase(p: ParticleFacts, it: InteractionFacts, rng, physics: bool) -> str:
    L = p.length_cm
    E = p.kinetic_energy_mev
    pion = p.type == "pion" and rng.random() < 0.5
    noun = {"muon": "muon", "pion": "charged-pion" if pion else "pion", "proton": "proton",
            "kaon": "kaon"}.get(p.type, "")
    core = f"{_len(p, rng)} {noun} track" if L is not None else f"{noun} track"
    if E is not None and rng.random() < 0.75:
        who = "charged pion" if pion else noun
        core = pick(rng, (f"{core} ({fmt_energy(E, rng)})",
                          f"{core} of {fmt_energy(E, rng)} kinetic energy",
                          f"{fmt_energy(E, rng)} {who} leaving {with_article(_len(p, rng))} track"
                          if L is not None else f"{core} ({fmt_energy(E, rng)})"))
    phrase = with_article(core)
    tail = []
    if p.end_state == "exits":
        tail.append(pick(rng, ("that leaves the active volume", "exiting the detector",
                               "that is not contained")))
    elif p.end_state == "decays":
        tail.append(pick(rng, ("that decays into a visible muon (a kink)" if p.type == "pion" else
                               "that decays into a visible charged particle",
                               "ending in a decay with a charged daughter track")))
    elif p.end_state == "interacts":
        tail.append(pick(rng, ("that ends in a hadronic interaction",
                               "that interacts inelastically before stopping",
                               "ending in a hadronic scatter")))
    elif p.end_state == "stops":
        if p.michel:
            if p.type == "muon":
                tail.append(pick(rng, ("that stops and decays into a Michel electron",
                                       "ending in a Michel electron",
                                       "that stops, with a Michel electron at its end")))
            else:
                tail.append(pick(rng, ("that stops; its decay muon gives a Michel electron",
                                       "with a Michel electron at its end (pi+ -> mu+ -> e+)")))
        elif p.type == "proton":
            tail.append(pick(rng, ("that stops", "ending in a Bragg peak", "stopping in the volume")))
        elif p.type == "muon":
            tail.append(pick(rng, ("that stops without a Michel electron",
                                   "stopping with no Michel electron")))
        else:
            tail.append("that stops")
    if physics:
        if p.type == "muon" and (L or 0) >= MUON_MIP_MIN_CM:
            tail.append(pick(rng, (f"minimum-ionising at about {fmt_dedx(MIP_DEDX)}",
                                   "a long MIP-like track" if (L or 0) > 30 else "MIP-like",
                                   f"depositing about {fmt_dedx(MIP_DEDX)} like a MIP")))
        if p.type == "muon":
            if p.end_state == "stops" and not p.michel and p.charge == -1:
                tail.append("a mu- is captured by an argon nucleus about 75% of the time instead of decaying")
        elif p.type == "proton" and p.end_state == "stops":
            tail.append(pick(rng, (("short and " if (L or 0) < 30 else "") + "highly ionising with a Bragg peak at its end",
                                   "heavily ionising, its dE/dx rising to a Bragg peak where it stops")))
        elif p.type == "proton" and (p.mean_dedx_mev_cm or 0) >= 1.5 * MIP_DEDX:
            tail.append("highly ionising")
        elif p.type == "pion" and p.end_state == "interacts":
            tail.append("a hadronic interaction typical of a pion rather than a muon")
    if p.mean_dedx_mev_cm is not None and rng.random() < (0.5 if physics else 0.2):
        tail.append(f"mean dE/dx {fmt_dedx(p.mean_dedx_mev_cm)}")
    return _attach(phrase, tail, rng)


def _attach(phrase: str, tail: list[str], rng) -> str:
    if not tail:
        return phrase
    first, rest = tail[0], tail[1:]
    out = f"{phrase} {first}" if first.startswith(("that", "ending", "exiting", "stopping", "with")) \
        else f"{phrase}, {first}"
    for t in rest:
        out += f" ({t})" if ("(" not in t and not out.endswith(")") and rng.random() < 0.5) else f", {t}"
    return out


def mip_ratio(x: float) -> str:
    r = x / MIP_DEDX
    return f"{r:.1f} MIP"


def dedx_expected(p: ParticleFacts) -> bool:
    """Whether the measured start dE/dx looks like the textbook value of its type (electron
    about 1 MIP, photon about 2 MIP), so that the text may say so."""
    if p.start_dedx_mev_cm is None:
        return False
    r = p.start_dedx_mev_cm / MIP_DEDX
    return r < 1.5 if p.type == "electron" else (1.5 <= r < 2.7) if p.type == "photon" else False


def _shower_phrase(p: ParticleFacts, it: InteractionFacts, rng, physics: bool,
                   ref: Optional[str] = "the vertex") -> str:
    E = p.energy_mev
    noun = "electron" if p.type == "electron" else "photon" if p.type == "photon" else "EM"
    core = with_article(f"{fmt_energy(E, rng)} {noun} shower")
    tail = []
    if p.type == "electron":
        if ref == "the vertex":
            tail.append(pick(rng, ("starting at the vertex", "that starts right at the vertex",
                                   "attached to the vertex", "with no gap from the vertex")))
        if p.start_dedx_mev_cm is not None and (physics or rng.random() < 0.5):
            x = p.start_dedx_mev_cm
            if dedx_expected(p):
                tail.append(pick(rng, (
                    f"its first centimetres at {fmt_dedx(x)}, about one MIP as for a single electron",
                    f"start dE/dx {fmt_dedx(x)}, close to 1 MIP ({fmt_dedx(MIP_DEDX)})",
                    f"{fmt_dedx(x)} at its start: a single-electron (1 MIP) trunk")))
            else:
                tail.append(f"start dE/dx {fmt_dedx(x)} ({mip_ratio(x)})")
        elif physics and ref == "the vertex":
            tail.append(f"an electron shower starts at the vertex with about 1 MIP ({fmt_dedx(MIP_DEDX)})")
    elif p.type == "photon":
        if p.conversion_gap_cm is not None:
            g = fmt_length(p.conversion_gap_cm, rng)
            ref = ref or "its starting point"
            tail.append(pick(rng, (f"that converts {g} from {ref}",
                                   f"starting after {with_article(g)} gap",
                                   f"with {with_article(g)} conversion gap",
                                   f"that begins {g} away from {ref}")))
        if p.from_pi0 and rng.random() < 0.7:
            tail.append(pick(rng, ("one of the two photons of a pi0 decay", "from a pi0 -> gamma gamma decay")))
        if p.start_dedx_mev_cm is not None and (physics or rng.random() < 0.5):
            x = p.start_dedx_mev_cm
            if dedx_expected(p):
                tail.append(pick(rng, (
                    f"its trunk at {fmt_dedx(x)}, about two MIPs from the e+e- pair",
                    f"start dE/dx {fmt_dedx(x)}, close to 2 MIP ({fmt_dedx(2 * MIP_DEDX)})")))
            else:
                tail.append(f"start dE/dx {fmt_dedx(x)} ({mip_ratio(x)})")
        if physics and p.conversion_gap_cm is not None:
            tail.append(pick(rng, (f"photons travel on average {CONVERSION_LENGTH_CM:.0f} cm (9/7 X0) before converting",
                                   f"a gap is expected for photons: conversion length about {CONVERSION_LENGTH_CM:.0f} cm")))
    if p.length_cm is not None and rng.random() < 0.3:
        tail.append(f"about {fmt_length(p.length_cm, rng)} long")
    return _attach(core, tail, rng)


def particle_phrase(p: ParticleFacts, it: InteractionFacts, rng, physics: bool = False,
                    ref: Optional[str] = "the vertex") -> str:
    if ref == "the vertex" and it.vertex_cm is None:
        ref = None
    if p.kind == "track":
        if p.type == "unknown":
            return with_article(f"{_len(p, rng)} track")
        return _track_phrase(p, it, rng, physics)
    if p.type == "unknown":
        return with_article(f"{fmt_energy(p.deposited_energy_mev, rng)} shower")
    return _shower_phrase(p, it, rng, physics, ref)
