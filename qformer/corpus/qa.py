"""Question answering about an event: items ``{topic, question, answer}`` from the truth."""
from __future__ import annotations

from typing import Optional

import numpy as np

from larsight.events.vocabulary import (CLASS_TEXT, CONVERSION_LENGTH_CM, PROTON_MIN_KE_MEV, PROTON_MIN_LENGTH_CM,
                                        SHOWER_TYPES, EventFacts, InteractionFacts, finish_counts)

from .classification import CHANNEL_NAMES, CLASS_LONG, explain_class, leading_electron, leading_muon
from .phrases import mip_ratio
from .text import (capitalise, fmt_dedx, fmt_energy, fmt_length, fmt_vertex, join_words, noun,
                   one_of, pick, plural, type_list, with_article)


def question_view(facts: EventFacts) -> Optional[InteractionFacts]:
    """What questions are about: the main interaction, or for a rain event all its particles
    together (no common vertex)."""
    if not (facts.is_rain and len(facts.interactions) > 1):
        return facts.main
    parts = [p for i in facts.interactions for p in i.particles]
    merged = InteractionFacts(id=-1, source="gun", visible_energy_mev=facts.visible_energy_mev,
                              n_voxels=facts.n_points, particles=parts)
    finish_counts(merged, sum(i.counts.get("pi0", 0) for i in facts.interactions))
    return merged


_NO_VERTEX = (("Does a muon leave the vertex?", "Is there a muon track?"),
              ("How many track-like particles leave the vertex?", "How many track-like particles are there?"),
              ("What particles leave the vertex (topology)?", "What particles are there (topology)?"),
              ("Does an electron shower start at the vertex?", "Is there an electron shower?"),
              ("No: no long MIP-like track from the vertex.", "No: no long MIP-like track."),
              ("How far from the vertex does the photon shower start?",
               "How far from its starting point does the photon convert?"),
              ("from the vertex", "from its origin"))


def qa_items(facts: EventFacts, rng: np.random.Generator) -> list[dict]:
    """Question-answer items ``{"topic", "question", "answer"}`` that apply to the event (for a
    rain event, about all its particles together)."""
    items: list[dict] = []
    it = question_view(facts)
    if it is None:
        return items

    def add(topic, question, answer):
        if it.vertex_cm is None:
            for a, b in _NO_VERTEX:
                question, answer = question.replace(a, b), answer.replace(a, b)
        items.append({"topic": topic, "question": question, "answer": " ".join(answer.split())})

    # the groups draw from ``rng`` in this order; changing it changes every corpus
    if it.event_class:
        _class_items(add, it, rng)
    _summary_items(add, it, facts, rng)
    _count_items(add, it, rng)
    _presence_items(add, it, rng)
    _particle_items(add, it, rng)
    _shower_items(add, it, rng)
    _other_items(add, it, facts, rng)
    return items


def _class_items(add, it: InteractionFacts, rng) -> None:
    """The class, the current, why this class and not another, energy, channel."""
    ec = it.event_class
    add("class", one_of(rng, "What kind of interaction is this?", "Is this nu_e CC, nu_mu CC or NC?",
                        "What is the event class?", "Classify this event.",
                        "Which neutrino interaction produced this event?", "What type of event is this?"),
        f"{CLASS_TEXT[ec]}: {with_article(pick(rng, CLASS_LONG[ec]) + ' interaction')}.")
    add("current", one_of(rng, "Is this a charged-current or a neutral-current interaction?",
                          "CC or NC?", "Was a charged lepton produced?"),
        ("Charged current: " + ("an electron" if ec == "nue_cc" else "a muon") + " leaves the vertex."
         if ec != "nc" else "Neutral current: no charged lepton leaves the vertex."))
    alt = pick(rng, [k for k in CLASS_TEXT if k != ec])
    add("why_class", one_of(rng, f"Why is this {CLASS_TEXT[ec]} and not {CLASS_TEXT[alt]}?",
                            f"Why {CLASS_TEXT[ec]} rather than {CLASS_TEXT[alt]}?",
                            f"What makes this {CLASS_TEXT[ec]} instead of {CLASS_TEXT[alt]}?"),
        capitalise(explain_class(it, rng)) + ".")
    if it.nu_energy_mev:
        add("nu_energy", one_of(rng, "What is the neutrino energy?", "How energetic was the neutrino?",
                                "What was the incoming neutrino's energy?"),
            f"{fmt_energy(it.nu_energy_mev, rng)}; {fmt_energy(it.visible_energy_mev, rng)} of it is visible.")
    if it.channel in CHANNEL_NAMES:
        add("channel", one_of(rng, "Which interaction channel is this?", "Is it QE, RES or DIS?",
                              "What was the interaction mode?"),
            f"{it.channel} ({CHANNEL_NAMES[it.channel][0]}).")


def _summary_items(add, it: InteractionFacts, facts: EventFacts, rng) -> None:
    """Visible energy, vertex, topology, numbers of tracks and showers."""
    add("visible_energy", one_of(rng, "How much energy is deposited?", "What is the visible energy?",
                                 "How much energy was deposited in the detector?"),
        f"{fmt_energy(facts.visible_energy_mev, rng)} in {facts.n_points} voxels.")
    if it.vertex_cm is not None:
        add("vertex", one_of(rng, "Where is the interaction vertex?", "Where does the interaction happen?",
                             "Give the vertex position.", "What are the vertex coordinates?"),
            f"At {fmt_vertex(it.vertex_cm)}.")
    add("topology", one_of(rng, "What is the topology?", "Summarise the final state as a topology string.",
                           "What particles leave the vertex (topology)?"),
        it.topology + ".")
    nt, ns = len(it.tracks), len(it.showers)
    add("n_tracks", one_of(rng, "How many tracks are there?", "How many track-like particles leave the vertex?",
                           "Count the tracks."),
        f"{nt}" + (": " + type_list(it.tracks) if nt else "") + ".")
    add("n_showers", one_of(rng, "How many showers are there?", "How many electromagnetic showers?",
                            "Count the showers."),
        f"{ns}" + (": " + type_list(it.showers) if ns else "") + ".")


def _count_items(add, it: InteractionFacts, rng) -> None:
    """How many of each particle type, with their lengths or energies."""
    c = it.counts
    known_ke = all(p.kinetic_energy_mev is not None for p in it.of_type("proton"))
    for t, thr in (("proton", f" above {PROTON_MIN_KE_MEV:.0f} MeV" if known_ke else
                    f" longer than {PROTON_MIN_LENGTH_CM:.1f} cm"), ("muon", ""), ("pion", ""),
                   ("photon", ""), ("electron", "")):
        n = c.get(t, 0)
        lst = sorted(it.of_type(t), key=lambda p: -(p.length_cm or 0) if t in ("proton", "muon", "pion")
                     else -p.energy_mev)
        det = ""
        if lst and t in ("proton", "muon", "pion"):
            det = ": " + join_words([fmt_length(p.length_cm, rng) if p.length_cm is not None else "short" for p in lst])
        elif lst:
            det = ": " + join_words([fmt_energy(p.energy_mev, rng) for p in lst])
        add(f"n_{t}", one_of(rng, f"How many {noun(t, 2)} are there?", f"Count the {noun(t, 2)}.",
                             f"Number of {noun(t, 2)}?"),
            f"{n}{thr}{det}.")


def _presence_items(add, it: InteractionFacts, rng) -> None:
    """Is there a muon, an electron, a photon, a Michel electron, a pi0?"""
    vis = it.visible_particles()
    c = it.counts
    m = leading_muon(it)
    add("has_muon", one_of(rng, "Is there a muon?", "Does a muon leave the vertex?", "Any muon track?"),
        (f"Yes: {with_article(fmt_length(m.length_cm, rng))} MIP-like track." if m and m.length_cm is not None
         else "Yes." if m else "No: no long MIP-like track from the vertex."))
    e = leading_electron(it)
    add("has_electron", one_of(rng, "Is there an electron?", "Does an electron shower start at the vertex?",
                               "Any electron in the final state?"),
        (f"Yes: {with_article(fmt_energy(e.energy_mev, rng) + ' shower')}"
         + (" starting at the vertex." if it.vertex_cm is not None else ".") if e
         else "No: no shower starts at the vertex." if it.vertex_cm is not None else "No."))
    ph = it.of_type("photon")
    ph_gaps = [p.conversion_gap_cm for p in ph if p.conversion_gap_cm is not None]
    add("has_photon", one_of(rng, "Are there photons?", "Is there a photon shower?", "Any gamma showers?"),
        (f"Yes: {plural(len(ph), 'photon shower')}"
         + (f", the first starting {fmt_length(min(ph_gaps), rng)} from the vertex" if ph_gaps else "")
         + "." if ph else "No."))
    mich = [p for p in vis if p.michel]
    add("has_michel", one_of(rng, "Is there a Michel electron?", "Does any track end in a Michel electron?",
                             "Any Michel electrons?"),
        (f"Yes: at the end of the {noun(mich[0].type)}" +
         (f" ({fmt_energy(mich[0].michel_energy_mev, rng)})" if mich[0].michel_energy_mev else "") + "."
         if mich else "No."))
    if c.get("pi0"):
        add("has_pi0", one_of(rng, "Is there a neutral pion?", "Is there a pi0?"),
            f"Yes: {plural(c['pi0'], 'pi0')}, seen as {plural(len([p for p in ph if p.from_pi0]), 'photon shower')}.")


def _particle_items(add, it: InteractionFacts, rng) -> None:
    """The leading particle, the longest track, the muon."""
    m = leading_muon(it)
    lead = it.leading
    if lead is not None:
        add("leading", one_of(rng, "What is the most energetic particle?", "Which particle carries the most energy?",
                              "What is the energy of the leading particle?"),
            f"The {noun(lead.type)}: {fmt_energy(lead.energy_mev, rng)}.")
    lt = it.longest_track
    if lt is not None:
        add("longest_track", one_of(rng, "How long is the longest track?", "What is the length of the longest track?",
                                    "Which is the longest track?"),
            f"{fmt_length(lt.length_cm, rng)}, the {noun(lt.type)}.")
    if m is not None and m.length_cm is not None:
        st = {"stops": "it stops inside the volume" + (" and decays (Michel electron)" if m.michel else ""),
              "exits": "it leaves the active volume", "interacts": "it interacts",
              "decays": "it decays"}.get(m.end_state or "", "")
        add("muon", one_of(rng, "How long is the muon track?", "Describe the muon.", "Is the muon contained?"),
            f"{fmt_length(m.length_cm, rng)}" + (f"; {st}" if st else "") + ".")


def _shower_items(add, it: InteractionFacts, rng) -> None:
    """The leading shower's start dE/dx and identity, the photon conversion gap."""
    ph = it.of_type("photon")
    showers = [p for p in it.showers if p.type in SHOWER_TYPES]
    if showers:
        s = max(showers, key=lambda p: p.energy_mev)
        if s.start_dedx_mev_cm is not None:
            add("shower_dedx", one_of(rng, "What is the dE/dx at the start of the shower?",
                                      "How much does the shower deposit per cm at its start?"),
                f"{fmt_dedx(s.start_dedx_mev_cm)} ({mip_ratio(s.start_dedx_mev_cm)}) for the "
                f"{fmt_energy(s.energy_mev, rng)} {noun(s.type)} shower.")
        why = []
        if s.type == "electron" and it.vertex_cm is not None:
            why.append("it starts at the vertex")
        elif s.type == "photon" and s.conversion_gap_cm is not None:
            why.append(f"it converts {fmt_length(s.conversion_gap_cm, rng)} from the vertex")
        if s.start_dedx_mev_cm is not None:
            why.append(f"its start dE/dx is {fmt_dedx(s.start_dedx_mev_cm)} "
                       f"({mip_ratio(s.start_dedx_mev_cm)})")
        if why:
            add("shower_identity", one_of(rng, "Is the leading shower from an electron or a photon?",
                                          "Electron or photon shower?", "What made the main shower?"),
                f"{'An electron' if s.type == 'electron' else 'A photon'}: {' and '.join(why)}.")
    gaps = [p for p in ph if p.conversion_gap_cm is not None]
    if gaps:
        p = max(gaps, key=lambda q: q.energy_mev)
        pre = f"The {fmt_energy(p.energy_mev, rng)} photon: " if len(ph) > 1 else ""
        add("photon_gap", one_of(rng, "How far from the vertex does the photon shower start?",
                                 "What is the conversion gap of the photon?"),
            f"{pre}{fmt_length(p.conversion_gap_cm, rng)} (mean conversion length about {CONVERSION_LENGTH_CM:.0f} cm).")


def _other_items(add, it: InteractionFacts, facts: EventFacts, rng) -> None:
    """A stopping proton; separate interactions."""
    prot = [p for p in it.of_type("proton") if p.end_state == "stops"]
    if prot:
        p = max(prot, key=lambda q: q.length_cm or 0)
        add("proton", one_of(rng, "Does the proton stop?", "Is there a Bragg peak?", "Describe the proton."),
            f"Yes: {with_article(fmt_length(p.length_cm, rng))} highly ionising track ending in a Bragg peak"
            + (f", {fmt_energy(p.kinetic_energy_mev, rng)}" if p.kinetic_energy_mev else "") + ".")
    if len(facts.interactions) > 1:
        nvis = len([i for i in facts.interactions if i.visible_particles()])
        add("n_interactions", one_of(rng, "How many separate interactions are there?",
                                     "Are all particles from one vertex?"),
            f"{nvis} separate {'vertex' if nvis == 1 else 'vertices'}" + (" (particle rain)." if facts.is_rain else "."))


def qa_pairs(facts: EventFacts, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``[(question, answer), ...]`` for the event, phrasings drawn from ``rng``."""
    return [(d["question"], d["answer"]) for d in qa_items(facts, rng)]
