"""The one place typed claims become English: a ``Composition`` and its renderer.

    comp = compose(question, intents, observations, evidence)    # agent.compose
    comp.claims                 # the typed claims (agent.claims.Claim), checked by agent.validate
    render(comp)                # the answer text, in the units the question asked for
    render(comp, checks)        # ... with unverifiable / contradicted claims flagged

A ``Composition`` is data (JSON in the graph's state): sentences, each a template whose slots
``{i}`` / ``{i:form}`` print the value of its i-th claim, the ``Units`` the question asked for
(read from its wording by ``units_from_question``), and optionally one piece of free text
written by a language model (the VLM's explanation, the openai brain's answer), whose claims
``agent.claims.extract_claims`` reads. Values are stored in canonical units (cm, MeV) and
converted here, so "how long is the muon in metres" is answered in metres.
"""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, Field

from larsight.events.vocabulary import CLASS_TEXT, MIP_DEDX

from .claims import Claim, extract_claims, split_sentences, unique

__all__ = ["Units", "Sentence", "FreeText", "Composition", "render", "render_value", "units_from_question",
           "count_phrase", "NOUNS"]

LengthUnit = Literal["cm", "m", "mm"]
EnergyUnit = Literal["MeV", "GeV", "keV"]


class Units(BaseModel):
    """The units an answer is written in (values stay canonical inside)."""

    length: LengthUnit = "cm"
    energy: EnergyUnit = "MeV"


_LENGTH_WORDS = ((r"\b(?:in|into|as)\s+(?:metres|meters|m)\b|\bhow many (?:metres|meters)\b", "m"),
                 (r"\b(?:in|into|as)\s+(?:millimetres|millimeters|mm)\b|\bhow many (?:millimetres|millimeters)\b"
                  r"|\bin mm\b", "mm"))
_ENERGY_WORDS = ((r"\b(?:in|into|as)\s+GeV\b|\bhow many GeV\b", "GeV"), (r"\b(?:in|into|as)\s+keV\b|\bhow many keV\b", "keV"))


def units_from_question(question: str) -> Units:
    """The length and energy units a question asks for ("... in metres", "in GeV"), else cm and MeV."""
    length = next((u for pat, u in _LENGTH_WORDS if re.search(pat, question, re.I)), "cm")
    energy = next((u for pat, u in _ENERGY_WORDS if re.search(pat, question)), "MeV")
    return Units(length=length, energy=energy)


NOUNS = {"muon": ("muon", "muons"), "electron": ("electron", "electrons"), "photon": ("photon", "photons"),
         "proton": ("proton", "protons"), "pion": ("charged pion", "charged pions"), "kaon": ("kaon", "kaons"),
         "pi0": ("pi0", "pi0s"), "track": ("track", "tracks"), "shower": ("shower", "showers"),
         "michel": ("Michel electron", "Michel electrons")}
"""Singular and plural of each subject a count can have."""


def count_phrase(subject: str, n: int, plural_none: bool = False) -> str:
    """'2 protons', '1 muon', 'no muon' (or 'no muons' with ``plural_none``)."""
    one, many = NOUNS.get(subject, (subject, subject + "s"))
    return f"no {many if plural_none else one}" if n == 0 else f"{n} {one if n == 1 else many}"


def _length(cm: float, units: Units) -> str:
    if units.length == "m":
        return f"{cm / 100.0:.2f} m"
    if units.length == "mm":
        return f"{cm * 10.0:.0f} mm"
    return f"{cm:.1f} cm"


def _energy(mev: float, units: Units) -> str:
    if units.energy == "GeV":
        return f"{mev / 1000.0:.3f} GeV"
    if units.energy == "keV":
        return f"{mev * 1000.0:.0f} keV"
    return f"{mev:.0f} MeV"


def render_value(claim: Claim, units: Units, form: str = "") -> str:
    """The words for a claim's value: ``form`` '' (the value with its unit), 'pl' (a count of
    zero in the plural), 'mip' (a dE/dx in MIP), 'n' (the bare number)."""
    k, v = claim.kind, claim.value
    if k == "event_class":
        return CLASS_TEXT.get(str(v), str(v))
    if k == "vertex":
        if units.length == "cm":
            return "(" + ", ".join(f"{x:.1f}" for x in v) + ") cm"
        return "(" + ", ".join(_length(x, units).split()[0] for x in v) + f") {units.length}"
    x = claim.number
    if x is None:
        return ""
    if form == "n":
        return f"{x:g}"
    if k in ("count", "present", "absent", "michel"):
        return count_phrase(claim.subject, int(x), plural_none=form == "pl")
    if k in ("track_length", "shower_gap"):
        return _length(x, units)
    if k == "energy":
        return _energy(x, units)
    if k == "shower_dedx":
        return f"{x / MIP_DEDX:.1f} MIP" if form == "mip" else f"{x:.1f} MeV/cm"
    return f"{x:g}"


class Sentence(BaseModel):
    """One sentence of an answer: a template whose ``{i}`` / ``{i:form}`` slots print its claims'
    values (a claim without a slot is stated by the template's words)."""

    template: str
    claims: list[Claim] = Field(default_factory=list)

    def text(self, units: Units) -> str:
        if not self.claims:
            return self.template
        return re.sub(r"\{(\d+)(?::([a-z]+))?\}",
                      lambda m: render_value(self.claims[int(m[1])], units, m[2] or ""), self.template)


class FreeText(BaseModel):
    """Text a language model wrote (its claims are read from its words)."""

    text: str
    label: Optional[str] = Field(None, description="words before it in the answer, e.g. 'The VLM explains:'")
    author: str = Field("model", description="vlm, openai, ...")
    prompt: Optional[str] = Field(None, description="the prompt the model wrote the text from, when it was "
                                  "given the observations (qformer.corpus.explain_schema.explain_prompt)")

    def claims(self) -> list[Claim]:
        return extract_claims(self.text)


class Composition(BaseModel):
    """An answer as data: typed sentences in the requested units, then free text if any."""

    sentences: list[Sentence] = Field(default_factory=list)
    units: Units = Field(default_factory=Units)
    free: Optional[FreeText] = None

    @property
    def typed_claims(self) -> list[Claim]:
        return unique([c for s in self.sentences for c in s.claims])

    @property
    def claims(self) -> list[Claim]:
        """The typed claims, then those read from the free text (repeats once)."""
        return unique(self.typed_claims + (self.free.claims() if self.free else []))

    def text(self) -> str:
        return render(self)

    def explained(self, text: str, label: str = "The VLM explains:", author: str = "vlm") -> "Composition":
        """This composition followed by a language model's free text (empty text: unchanged)."""
        return self.model_copy(update={"free": FreeText(text=text, label=label, author=author)}) if text else self


def render(comp: Composition, checks: Optional[list] = None) -> str:
    """The answer text; with ``checks`` (agent.validate.Check), every sentence holding an
    unverifiable or contradicted claim is flagged in square brackets after it."""
    flags = _flags(checks or [])
    out: list[str] = []
    for s in comp.sentences:
        t = s.text(comp.units)
        fl = list(dict.fromkeys(f for c in s.claims for f in flags.get(("tools", c.key()), [])))
        out.append(t + (" [" + "; ".join(fl) + "]" if fl else ""))
    if comp.free is not None and comp.free.text.strip():
        out.append(((comp.free.label + " ") if comp.free.label else "") + _flag_free(comp.free.text, checks or []))
    return " ".join(o for o in out if o).strip()


def _flag_text(c) -> str:
    from .validate import fmt_evidence   # validate imports this module

    if c.verdict == "unverifiable":
        return f"unverified: {c.claim.describe()}"
    return f"contradicted by {c.tool or 'the tools'}: {c.claim.describe()}; measured {fmt_evidence(c.evidence)}"


def _flags(checks: list) -> dict[tuple, list[str]]:
    out: dict[tuple, list[str]] = {}
    for c in checks:
        if c.verdict != "supported" and c.claim.source == "tools":
            out.setdefault(("tools", c.claim.key()), []).append(_flag_text(c))
    return out


def _flag_free(text: str, checks: list) -> str:
    """Free text with each sentence that holds a flagged claim read from it flagged."""
    flags: dict[int, list[str]] = {}
    for c in checks:
        if c.verdict != "supported" and c.claim.source == "text":
            f = _flag_text(c)
            lst = flags.setdefault(c.claim.sentence, [])
            if f not in lst:
                lst.append(f)
    if not flags:
        return text.strip()
    out = []
    for i, (a, b) in enumerate(split_sentences(text)):
        s = text[a:b].strip()
        out.append(s + (" [" + "; ".join(flags[i]) + "]" if i in flags else ""))
    return " ".join(out)
