"""Why an interaction has its class: the classification target (``CLASS_TEXT`` + ':' + the
reasons) and the openings and class paraphrases that captions share."""
from __future__ import annotations

import numpy as np

from larsight.events.vocabulary import (CLASS_TEXT, CONVERSION_LENGTH_CM, MIP_DEDX, MUON_MIP_MIN_CM, EventFacts,
                                        InteractionFacts)

from .phrases import dedx_expected, mip_ratio
from .text import (capitalise, fmt_dedx, fmt_energy, fmt_length, fmt_vertex, join_words, noun,
                   pick, plural, with_article)

CLASS_LONG = {
    "nue_cc": ("electron-neutrino charged-current", "charged-current nu_e", "nu_e charged-current"),
    "numu_cc": ("muon-neutrino charged-current", "charged-current nu_mu", "nu_mu charged-current"),
    "nc": ("neutral-current", "neutral-current neutrino"),
}
"""Paraphrases of each class for captions and answers (never at the start of a classification
answer, which is always ``CLASS_TEXT``)."""

CLASSIFY_PROMPT = "Classify this neutrino interaction as nu_e CC, nu_mu CC or NC, and explain why."
"""The fixed classification prompt (the VLM scores each CLASS_TEXT as its continuation)."""


CHANNEL_NAMES = {
    "QE": ("quasi-elastic", "QE"), "MEC": ("meson-exchange-current (2p2h)", "MEC"),
    "RES": ("resonant", "resonance (RES)"), "DIS": ("deep-inelastic", "DIS"),
    "COH": ("coherent", "COH"),
}


def class_name(c: str, rng, canonical_p: float = 0.5) -> str:
    return CLASS_TEXT[c] if rng.random() < canonical_p else pick(rng, CLASS_LONG[c])


def opening(it: InteractionFacts, facts: EventFacts, rng) -> str:
    if it.source == "neutrino" and it.event_class:
        name = class_name(it.event_class, rng)
        bits = []
        if it.nu_energy_mev and rng.random() < 0.8:
            bits.append(fmt_energy(it.nu_energy_mev, rng))
        if it.channel in CHANNEL_NAMES and rng.random() < 0.35:
            bits.append(pick(rng, CHANNEL_NAMES[it.channel]))
        noun = pick(rng, ("interaction", "event", "neutrino interaction"))
        if name.endswith("neutrino") and noun == "neutrino interaction":
            noun = "interaction"
        return with_article(" ".join(bits + [name, noun]))
    n = len(it.visible_particles())
    if it.source == "labels":
        return with_article(pick(rng, (f"event with {plural(n, 'visible particle')}",
                                       f"labelled event with {plural(n, 'particle')} above threshold")))
    if facts.is_rain:
        return with_article(pick(rng, ("independent particle", "rain particle", "single particle")))
    return with_article(pick(rng, (f"multi-particle vertex with {plural(n, 'visible particle')}",
                                   f"particle-gun vertex emitting {plural(n, 'particle')}",
                                   f"{n}-particle vertex")))


def leading_muon(it):
    m = it.of_type("muon")
    return max(m, key=lambda p: p.length_cm or 0) if m else None


def leading_electron(it):
    e = it.of_type("electron")
    return max(e, key=lambda p: p.energy_mev) if e else None


def explain_class(it: InteractionFacts, rng: np.random.Generator) -> str:
    """Why ``it`` has its class, from the visible facts (no class name at the start)."""
    c = it.event_class
    if c is None:
        raise ValueError("explain_class: the interaction has no event class (not a neutrino interaction)")
    why = {"nue_cc": _why_nue_cc, "numu_cc": _why_numu_cc}.get(c, _why_nc)
    return "; ".join(why(it, rng))


def _why_nue_cc(it: InteractionFacts, rng) -> list[str]:
    """nu_e CC: an electron shower at the vertex and no muon."""
    s: list[str] = []
    e = leading_electron(it)
    if e is None:
        el = [p for p in it.particles if p.type == "electron"]
        if el:
            s.append(f"the electron ({fmt_energy(el[0].energy_mev, rng)}) leaves only "
                     f"{fmt_energy(el[0].deposited_energy_mev, rng)} in the volume, but no muon track and "
                     "no gap before the energy deposits point to a charged-current electron neutrino")
        else:
            s.append("no muon track leaves the vertex and the energy starts at the vertex")
    else:
        first = pick(rng, (
            f"{with_article(fmt_energy(e.energy_mev, rng) + ' electromagnetic shower')} starts at the vertex",
            f"an electron shower of {fmt_energy(e.energy_mev, rng)} starts right at the vertex with no gap",
            f"the leading object is {with_article(fmt_energy(e.energy_mev, rng) + ' shower')} attached to the vertex"
            if it.leading is e else
            f"{with_article(fmt_energy(e.energy_mev, rng) + ' shower')} is attached to the vertex"))
        if e.start_dedx_mev_cm is not None and not dedx_expected(e):
            first += f" (start dE/dx {fmt_dedx(e.start_dedx_mev_cm)}, {mip_ratio(e.start_dedx_mev_cm)})"
        elif e.start_dedx_mev_cm is not None:
            first += pick(rng, (
                f" with {fmt_dedx(e.start_dedx_mev_cm)} in its first centimetres (1 MIP, a single electron)",
                f"; its start dE/dx of {fmt_dedx(e.start_dedx_mev_cm)} is one MIP, "
                "not the two MIPs of a photon's e+e- pair"))
        else:
            first += f", the signature of an electron (a photon would convert after a gap of about {CONVERSION_LENGTH_CM:.0f} cm)"
        s.append(first)
    if not it.of_type("muon"):
        s.append(pick(rng, ("no muon track leaves the vertex", "there is no long MIP-like muon track",
                            "no muon is seen")))
    return s


def _why_numu_cc(it: InteractionFacts, rng) -> list[str]:
    """nu_mu CC: a muon track from the vertex and no electron shower."""
    s: list[str] = []
    photons = it.of_type("photon")
    m = leading_muon(it)
    if m is not None and m.length_cm is not None:
        L = fmt_length(m.length_cm, rng)
        first = pick(rng, (f"{with_article(L)} MIP-like track leaves the vertex",
                           f"a long minimum-ionising track ({L}) starts at the vertex",
                           f"the longest track, {L}, is a muon (about {fmt_dedx(MIP_DEDX)})"))
        if m.length_cm < MUON_MIP_MIN_CM:
            first = f"a short muon track ({L}) leaves the vertex"
        elif m.length_cm < 30:
            first = f"{with_article(L)} MIP-like muon track leaves the vertex"
        if m.end_state == "stops":
            first += (pick(rng, (" and stops with a Michel electron at its end",
                                 " and ends in a Michel electron from the muon decay"))
                      if m.michel else " and stops without a Michel electron")
        elif m.end_state == "exits":
            first += pick(rng, (" and exits the volume", " and is not contained"))
        s.append(first)
    else:
        s.append("a muon leaves the vertex, though it is barely visible")
    if not it.of_type("electron"):
        if photons:
            g = [p.conversion_gap_cm for p in photons if p.conversion_gap_cm is not None]
            s.append("no electromagnetic shower starts at the vertex" +
                     (f" (the photon showers start {fmt_length(min(g), rng)} or more away)" if g else ""))
        else:
            s.append(pick(rng, ("no electromagnetic shower starts at the vertex",
                                "there is no electron shower")))
    return s


def _why_nc(it: InteractionFacts, rng) -> list[str]:
    """NC: no charged lepton; what the hadrons and photons are."""
    s: list[str] = []
    photons = it.of_type("photon")
    s.append(pick(rng, ("there is no charged lepton", "no charged lepton leaves the vertex",
                        "the final state has no charged lepton")))
    s.append(pick(rng, ("no long MIP-like muon track and no shower starting at the vertex",
                        "neither a muon track nor an electron shower attached to the vertex")))
    had = []
    for t in ("proton", "pion", "kaon"):
        n = len(it.of_type(t))
        if n:
            had.append(plural(n, noun(t), noun(t, 2)))
    if had:
        s.append("only hadrons: " + join_words(had))
    pis = [p for p in it.of_type("pion") if (p.length_cm or 0) >= 30]
    if pis:
        pi = max(pis, key=lambda p: p.length_cm)
        end = {"interacts": ", which ends in a hadronic interaction",
               "decays": ", which decays in flight"}.get(pi.end_state or "", "")
        s.append(f"the {fmt_length(pi.length_cm, rng)} MIP-like track is a charged pion{end}, not a muon")
    if photons:
        g = [p.conversion_gap_cm for p in photons if p.conversion_gap_cm is not None]
        ph = f"{plural(len(photons), 'photon shower')}"
        if g:
            ph += f" starting {fmt_length(min(g), rng)} or more from the vertex"
        if it.counts.get("pi0"):
            ph += " (from a pi0 decay)" if it.counts["pi0"] == 1 else " (from pi0 decays)"
        s.append(ph)
    if not had and not photons:
        s.append(f"only {fmt_energy(it.visible_energy_mev, rng)} of scattered deposits are visible")

    return s


def classification_target(facts: EventFacts, rng: np.random.Generator) -> tuple[str, str]:
    """(``CLASSIFY_PROMPT``, answer): the answer starts with exactly ``CLASS_TEXT[class] + ':'``
    and explains the class from the facts. Raises ValueError for events without a class."""
    it = facts.main
    if it is None or it.event_class is None:
        raise ValueError("classification_target: the event has no neutrino interaction class "
                         "(particle-gun or rain events cannot be classified as nu_e CC / nu_mu CC / NC)")
    why = explain_class(it, rng)
    extra = ""
    if rng.random() < 0.4:
        extra = pick(rng, (f" Topology {it.topology}.",
                           f" Visible energy {fmt_energy(it.visible_energy_mev, rng)}.",
                           f" Vertex at {fmt_vertex(it.vertex_cm)}." if it.vertex_cm else ""))
    return CLASSIFY_PROMPT, f"{CLASS_TEXT[it.event_class]}: {capitalise(why)}.{extra}"
