"""What an answer is asked to say, decided before it is composed.

    req = request_from_question(question, ["counts"])   # the rules brain: the question's words
    req = request_from_action(action)                    # the VLM brain: its action's arguments
    compose(req, observations, evidence)                 # agent.compose reads only the request

``agent.compose`` writes answers from the measurements; which particles a count or a length is
about, whether the question is a yes/no one, which class a yes/no question names and the units
are the request's, not the composer's reading of the question. The keyword reader that fills a
request from the words (``request_from_question``) belongs to the ``rules`` brain (and to the
older constrained-VLM brain, whose intents come from ``agent.intents`` too); the action brain
fills it from the tool arguments it chose (``request_from_action``), so no keyword rule decides
what its answers say.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import BaseModel, Field

from .render import Units, units_from_question

__all__ = ["Request", "request_from_question", "request_from_action", "SPECIES_ORDER", "TRACK_SPECIES"]

SPECIES_ORDER = ("muon", "electron", "proton", "pion", "photon", "kaon")
"""The particle species an answer counts, in the order it lists them."""
TRACK_SPECIES = ("muon", "proton", "pion", "kaon")


class Request(BaseModel):
    """What to answer: the intents in order and how to present them."""

    intents: list[str] = Field(default_factory=list, description="classify, vertex, counts, length, ...")
    species: list[str] = Field(default_factory=list, description="particle species asked about")
    tracks_and_showers: bool = Field(False, description="count tracks and showers (no species named)")
    all_species: bool = Field(False, description="state every species' count (topology, final state)")
    list_particles: bool = Field(False, description="list the particles one by one")
    yes_no: bool = Field(False, description="a yes/no question about presence")
    hypothesis: Optional[str] = Field(None, description="the class a yes/no question names")
    units: Units = Field(default_factory=Units)


# ============================================================================ from the words (rules)
_YESNO = re.compile(r"\s*(is there|are there|does (it|the event|this event) (have|contain)|do you see|any\b|has it)")
_HYPOTHESIS = re.compile(r"\s*(is|was)\s+(this|it|the event)\s+(an?\s+)?(?P<c>nu_?e\s*cc|nu_?mu\s*cc|numu\s*cc|"
                         r"nue\s*cc|nc|neutral[- ]current)\b", re.I)


def _species_in(q: str) -> list[str]:
    asked = [p for p in SPECIES_ORDER if re.search(rf"\b{p}s?\b", q)]
    if re.search(r"\bgammas?\b", q) and "photon" not in asked:
        asked.append("photon")
    if re.search(r"\bleptons?\b", q):
        asked += [p for p in ("muon", "electron") if p not in asked]
    return asked


def _hypothesis_in(question: str) -> Optional[str]:
    """The class a yes/no question names ("Is this a nu_e CC event?"), else None."""
    m = _HYPOTHESIS.match(question)
    if not m or re.search(r"\bor\b", question, re.I):
        return None
    c = m["c"].lower().replace(" ", "")
    return "nc" if c == "nc" or c.startswith("neutral") else "nue_cc" if c in ("nu_ecc", "nuecc") else "numu_cc"


def request_from_question(question: str, intents: list[str]) -> Request:
    """The request the question's words make (the keyword reader of the rules brain)."""
    q = question.lower()
    species = _species_in(q)
    return Request(
        intents=list(intents), species=species,
        tracks_and_showers=bool(re.search(r"\btracks?\b|\bshowers?\b", q)) and not species,
        all_species=not species or bool(re.search(r"\btopology\b|\bparticles\b|\blist\b|\bfinal[- ]state\b|"
                                                  r"\bcontent\b", q)),
        list_particles=bool(re.search(r"\blist\b|\bparticles\b", q)) and not re.search(r"\benerg", q),
        yes_no=bool(_YESNO.match(q)) and not re.search(r"\bhow many\b", q),
        hypothesis=_hypothesis_in(question), units=units_from_question(question))


# ============================================================================ from the action (vlm)
_LENGTH_UNITS = ("cm", "mm", "m")
_ENERGY_UNITS = ("MeV", "GeV", "keV")


def request_from_action(action: Any, intents: list[str]) -> Request:
    """The request a tool-calling action makes: the species its ``reconstruct`` calls name
    (``particle``; "track"/"shower" ask for those counts, "pi0" for its photons), the units its
    calls ask for (``unit``), a list of every species when a count names no particle, and the
    class a ``classify_event`` call's ``hypothesis`` names."""
    species: list[str] = []
    tracks_showers = False
    units: dict[str, str] = {}
    counts_without_particle = False
    hypothesis = None
    for c in getattr(action, "calls", None) or []:
        args = dict(c.arguments or {})
        p, quantity, u = args.get("particle"), args.get("quantity"), args.get("unit")
        if c.tool == "reconstruct":
            if p in ("track", "shower"):
                tracks_showers = True
            elif p == "pi0":
                species += [] if "photon" in species else ["photon"]
            elif p and p not in species:
                species.append(p)
            elif not p and quantity in (None, "counts"):
                counts_without_particle = True
        if c.tool == "classify_event" and args.get("hypothesis"):
            hypothesis = args["hypothesis"]
        if u in _LENGTH_UNITS and "length" not in units and (c.tool == "find_vertex" or quantity != "energy"):
            units["length"] = u
        elif u in _ENERGY_UNITS and "energy" not in units:
            units["energy"] = u
    return Request(intents=list(intents), species=species, tracks_and_showers=tracks_showers and not species,
                   all_species=counts_without_particle or not species, list_particles=counts_without_particle,
                   hypothesis=hypothesis, units=Units(**units))
