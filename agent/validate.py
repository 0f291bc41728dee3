"""Expert validation: every physics claim of an answer, checked against the tools' measurements.

    from larsight.agent.validate import extract_claims, check_claims, validate
    claims = extract_claims("nu_mu CC: a 45.3 cm MIP-like muon track leaves the vertex ...")
    checks = check_claims(claims, evidence)          # agent.evidence.Evidence
    report = validate(text, evidence)                # Validation: checks, counts, table()

Claims are typed (``Claim.kind``):

==================  ====================================================  =======================
kind                example phrases                                       checked against
==================  ====================================================  =======================
event_class         "nu_e CC: ...", "this is an NC event", "not NC"       classify_event argmax
present / absent    "a muon track", "no muon is seen", "without a pion"   reconstruct counts
count               "2 protons", "three tracks", topology "1mu 2p 0pi"    reconstruct counts
track_length        "a 45.3 cm MIP-like track", "longest track, 45 cm"    reconstruct track lengths
shower_dedx         "start dE/dx 2.1 MeV/cm", "1 MIP", "two MIPs"         shower trunk dE/dx
shower_gap          "starts at the vertex", "after a gap of 12 cm"        shower start - vertex
vertex              "vertex at (x, y, z) cm"                              find_vertex
michel              "ends in a Michel electron", "without a Michel"       reconstruct / segment
energy              "a 350 MeV electron shower", "visible energy 1.20 GeV"  reconstruct / segment
==================  ====================================================  =======================

Verdicts: ``supported`` (the measurement agrees within the tolerance), ``contradicted`` (it
disagrees), ``unverifiable`` (nothing measured it). Each check carries the measured numbers
(``evidence``) and the tolerance it used (``TOLERANCES``; physics numbers from
shared/PHYSICS.md: MIP 2.105 MeV/cm, electron showers start at ~1 MIP, photon showers at
~2 MIP; the rest are resolution estimates stated here).

Hypothetical and definitional language ("a photon would convert after ...", "unlike a
muon", "not the two MIPs of a photon") is not a claim about the event and is skipped.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Literal, Optional

from pydantic import BaseModel, Field

from .evidence import Evidence

__all__ = ["Claim", "Check", "Validation", "extract_claims", "check_claims", "validate",
           "revise", "annotate", "split_sentences", "TOLERANCES", "CLASS_TEXT", "MIP_DEDX"]

MIP_DEDX = 2.105
"""MeV/cm, PHYSICS.md (PDG muon minimum)."""

CLASS_TEXT = {"nue_cc": "nu_e CC", "numu_cc": "nu_mu CC", "nc": "NC"}

TOLERANCES: dict[str, dict[str, float]] = {
    "vertex": {"cm": 3.0},                        # the vertex-accuracy criterion of the evals
    "track_length": {"cm": 3.0, "rel": 0.15},     # range-based lengths: voxel + end resolution
    "shower_dedx": {"mev_cm": 0.6, "rel": 0.25},  # trunk dE/dx resolution (estimate)
    "shower_dedx_mip_split": {"mip": 1.5},         # 1-MIP vs 2-MIP boundary (2.1 vs 4.2 MeV/cm)
    "shower_gap": {"cm": 2.0, "rel": 0.25},
    "shower_attached": {"cm": 3.0},                # a shower this close to the vertex starts there
    "energy": {"mev": 15.0, "rel": 0.25},          # range vs calorimetric energy (estimate)
    "visible_energy": {"rel": 0.05},
}
"""Tolerances by claim kind ('rel' is relative to the measured value; the larger bound wins)."""

Verdict = Literal["supported", "contradicted", "unverifiable"]
ClaimKind = Literal["event_class", "present", "absent", "count", "track_length", "shower_dedx",
                    "shower_gap", "vertex", "michel", "energy"]


class Claim(BaseModel):
    """One typed claim found in an answer."""

    kind: ClaimKind
    text: str = Field(description="the words of the answer that make the claim")
    sentence: int = Field(0, description="index of the sentence (split_sentences) holding it")
    start: int = Field(0, description="character offset of the claim in the answer")
    particle: Optional[str] = Field(None, description="muon, electron, photon, proton, pion, kaon, "
                                    "pi0, track, shower or michel")
    value: Optional[float] = Field(None, description="number claimed, in the unit of the kind "
                                   "(cm, MeV/cm, MeV, count)")
    vector: Optional[tuple[float, float, float]] = Field(None, description="vertex (x, y, z) cm")
    label: Optional[str] = Field(None, description="event class claimed (nue_cc, numu_cc, nc)")
    qualifier: Optional[str] = Field(None, description="longest, mip1, mip2, attached, "
                                     "not_attached, visible, not (a negated class)")

    def describe(self) -> str:
        k = self.kind
        if k == "event_class":
            return f"class {'is not' if self.qualifier == 'not' else 'is'} {self.label}"
        if k == "vertex":
            return "vertex at (" + ", ".join(f"{c:.1f}" for c in self.vector or ()) + ") cm"
        if k in ("present", "absent"):
            return f"{self.particle} {k}"
        if k == "count":
            return f"{int(self.value or 0)} {self.particle}"
        if k == "track_length":
            return f"{self.qualifier + ' ' if self.qualifier else ''}{self.particle or 'track'} length {self.value:.1f} cm"
        if k == "shower_dedx":
            return (f"{self.particle or 'shower'} start dE/dx "
                    + (f"{self.value:.1f} MeV/cm" if self.value is not None else self.qualifier or ""))
        if k == "shower_gap":
            return (f"{self.particle or 'shower'} "
                    + ({"attached": "starts at the vertex", "not_attached": "does not start at the vertex"}
                       .get(self.qualifier or "", f"gap {self.value:.1f} cm" if self.value is not None else "gap")))
        if k == "michel":
            return "Michel electron at a track end" + (" (absent)" if self.qualifier == "absent" else "")
        if k == "energy":
            return f"{self.particle or 'visible'} energy {self.value:.0f} MeV"
        return k


class Check(BaseModel):
    """A claim with its verdict."""

    claim: Claim
    verdict: Verdict
    evidence: dict[str, Any] = Field(default_factory=dict, description="the measured numbers")
    tolerance: Optional[str] = Field(None, description="the tolerance used, in words")
    tool: Optional[str] = Field(None, description="the tool whose measurement decided")
    note: str = ""


class Validation(BaseModel):
    """All checks of one answer."""

    checks: list[Check] = Field(default_factory=list)

    @property
    def n_supported(self) -> int:
        return sum(c.verdict == "supported" for c in self.checks)

    @property
    def n_contradicted(self) -> int:
        return sum(c.verdict == "contradicted" for c in self.checks)

    @property
    def n_unverifiable(self) -> int:
        return sum(c.verdict == "unverifiable" for c in self.checks)

    @property
    def contradicted(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "contradicted"]

    def table(self) -> str:
        return checks_table(self.checks)


def checks_table(checks: list[Check]) -> str:
    """The validation table as plain text."""
    if not checks:
        return "(no checkable claims)"
    rows = [("claim", "verdict", "measured", "tolerance", "tool")]
    for c in checks:
        rows.append((c.claim.describe(), c.verdict, _fmt_evidence(c.evidence), c.tolerance or "-",
                     c.tool or "-"))
    w = [min(max(len(r[i]) for r in rows), 60) for i in range(5)]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(str(x)[:60].ljust(w[i]) for i, x in enumerate(r)).rstrip())
        if k == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def _fmt_evidence(ev: dict) -> str:
    parts = []
    for k, v in ev.items():
        if isinstance(v, float):
            v = f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
            v = "(" + ", ".join(f"{x:.1f}" for x in v) + ")"
        elif isinstance(v, dict):
            v = ", ".join(f"{a} {b:.2f}" if isinstance(b, float) else f"{a} {b}" for a, b in v.items())
        parts.append(f"{k}={v}")
    return "; ".join(parts) if parts else "-"


# ============================================================================ sentences
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")


def _mask_quotes(text: str) -> str:
    return re.sub(r"`[^`]*`", lambda m: "`" + "x" * (len(m.group(0)) - 2) + "`", text)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of ``text`` (never inside `quotes`)."""
    masked = _mask_quotes(text)
    spans, pos = [], 0
    for m in _SENT.finditer(masked):
        spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _clauses(sentence: str) -> list[tuple[int, str]]:
    """(offset, clause) pieces of a sentence split at ';' and ' but '."""
    out, pos = [], 0
    for m in re.finditer(r";\s*|\s+but\s+", sentence):
        out.append((pos, sentence[pos:m.start()]))
        pos = m.end()
    out.append((pos, sentence[pos:]))
    return [(o, c) for o, c in out if c.strip()]


# ============================================================================ vocabulary
_NUM = r"\d+(?:\.\d+)?"
_WORDNUM = {"no": 0, "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
            "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_COUNT_WORD = r"(?:\d+|no|zero|one|two|three|four|five|six|seven|eight|nine|ten)"
_NOUN = (r"(?:Michel electrons?|Michels?|(?<!Michel )(?:electrons?|positrons?)|muons?|photons?|gammas?|protons?|"
         r"neutral pions?|pi0s?|π0s?|(?:charged )?pions?|kaons?|tracks?|showers?)")
_ADJ = (r"(?:(?:visible|reconstructed|primary|stopping|separate|distinct|additional|more|other|"
        r"long|short|MIP-like|minimum-ionising|minimum-ionizing|highly ionising|charged|"
        r"electromagnetic|EM|track-like|shower-like|energetic|contained|exiting|forward)\s+)*")
_HYPO = re.compile(r"\b(would|could|might|if|unlike|rather than|instead of|than|typically|usually|"
                   r"in general|expected|e\.g\.)\b", re.I)


def _norm_particle(word: str) -> str:
    w = word.lower().strip()
    if w.startswith("michel"):
        return "michel"
    if w.startswith(("neutral pion", "pi0", "π0")):
        return "pi0"
    if "pion" in w:
        return "pion"
    for stem, name in (("muon", "muon"), ("electron", "electron"), ("positron", "electron"),
                       ("photon", "photon"), ("gamma", "photon"), ("proton", "proton"),
                       ("kaon", "kaon"), ("track", "track"), ("shower", "shower")):
        if w.startswith(stem):
            return name
    return w


def _particle_in(text: str) -> Optional[str]:
    """The particle species named in a phrase (the last named one; 'track'/'shower' only if
    no species is named)."""
    found = [(_norm_particle(m.group(0)), m.start()) for m in re.finditer(_NOUN, text, re.I)]
    species = [f for f in found if f[0] not in ("track", "shower")]
    if species:
        return species[-1][0]
    return found[-1][0] if found else None


_CLASS_PAT = (r"(?P<c>nu_e CC|nue CC|νe CC|ν_e CC|nu_mu CC|numu CC|νμ CC|ν_μ CC|NC|"
              r"neutral[- ]current|charged[- ]current nu_e|charged[- ]current nu_mu|"
              r"nu_e charged[- ]current|nu_mu charged[- ]current|"
              r"electron[- ]neutrino charged[- ]current|muon[- ]neutrino charged[- ]current)")


def _norm_class(c: str) -> str:
    low = c.lower().replace("ν", "nu").replace("μ", "mu")
    if low in ("nc",) or low.startswith("neutral"):
        return "nc"
    if "nu_e" in low or "nue" in low or "electron" in low or "nu_e" in low.replace("nue", "nu_e"):
        return "nue_cc"
    return "numu_cc"


def _length_cm(value: str, unit: str) -> float:
    v = float(value)
    return v * 100.0 if unit.lower() == "m" else v


def _energy_mev(value: str, unit: str) -> float:
    v = float(value)
    return v * 1000.0 if unit.lower() == "gev" else v


# ============================================================================ extraction
def extract_claims(text: str) -> list[Claim]:
    """The typed claims of an answer, in order of appearance (see the module docstring)."""
    claims: list[Claim] = []
    # text between backticks is quoted data (file names, other events' summaries, tool
    # errors), not a claim about this event: blank it, keeping every offset
    text = _mask_quotes(text)
    for si, (a, b) in enumerate(split_sentences(text)):
        sentence = text[a:b]
        prev = ""
        for off, clause in _clauses(sentence):
            base = a + off
            claims += _claims_in_clause(clause, si, base, first=(si == 0 and off == 0), prev=prev)
            prev = clause
    # one claim per (kind, particle, value, qualifier, label, vector): repeats add nothing
    seen, out = set(), []
    for c in claims:
        key = (c.kind, c.particle, c.value, c.qualifier, c.label, c.vector)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _mk(kind, m, clause, si, base, group=0, **kw) -> Claim:
    return Claim(kind=kind, text=m.group(group).strip(), sentence=si, start=base + m.start(group), **kw)


def _hypothetical(clause: str, start: int, end: int) -> bool:
    """A mention inside hypothetical / contrastive language (checked around the match)."""
    window = clause[max(0, start - 25):min(len(clause), end + 20)]
    return bool(_HYPO.search(window))


def _track_species(before: str) -> Optional[str]:
    """The track species named last before a length in its clause (parentheses left out)."""
    t = re.sub(r"\([^)]*\)", " ", before)
    names = [_norm_particle(m.group(0)) for m in re.finditer(r"\b(?:muons?|protons?|(?:charged )?pions?|kaons?)\b", t, re.I)]
    return names[-1] if names else None


def _shower_subject(before: str, prev: str) -> Optional[str]:
    """'electron' or 'photon': the shower species named last before a claim in its clause
    (parentheses left out: they hold asides such as 'a photon would convert ...'), else the
    first one named in the previous clause of the sentence."""
    def names(t: str) -> list[str]:
        t = re.sub(r"\([^)]*\)", " ", t)
        return [_norm_particle(m.group(0)) for m in
                re.finditer(r"(?<!Michel )(?:electrons?|positrons?|photons?|gammas?)(?!'s)", t, re.I)]
    here = names(before)
    if here:
        return here[-1]
    there = names(prev)
    return there[0] if there else None


def _claims_in_clause(clause: str, si: int, base: int, first: bool, prev: str = "") -> list[Claim]:
    out: list[Claim] = []
    used: list[tuple[int, int]] = []   # spans already turned into claims (no double reading)

    def free(m, g=0) -> bool:
        s, e = m.span(g)
        return not any(s < b and a < e for a, b in used)

    def take(m, g=0):
        used.append(m.span(g))

    # ---- event class
    for m in re.finditer(rf"(?:^(?:yes|no)[.:,]?\s+|^|\b(?:this is|it is|this event is|the event is|classified as|"
                         rf"classify it as|looks like|consistent with|class(?:ification)?(?: is)?:?|"
                         rf"prediction:?|predicted class:?)\s+)(?:(?:an?|the)\s+)?"
                         rf"(?:(?:likely|probably|clearly|most likely)\s+)?{_CLASS_PAT}\b", clause, re.I):
        if m.start() == 0 and not first and not re.match(rf"\s*(?:(?:yes|no)[.:,]?\s+)?{_CLASS_PAT}\s*[:(]", clause, re.I):
            if not re.match(r"(?:this|it|the event|classified|looks|consistent|class|predict)", clause, re.I):
                continue
        c = m.group("c")
        if c == "nc" or (c.upper() == "NC" and c != "NC"):
            continue  # 'nc' in lower case is not the class name
        neg = bool(re.search(r"\bnot\s+(?:an?\s+)?$", clause[:m.start("c")]))
        out.append(_mk("event_class", m, clause, si, base, "c", label=_norm_class(c),
                       qualifier="not" if neg else None))
        take(m, "c")
    for m in re.finditer(rf"\b(?:is\s+)?not\s+(?:an?\s+)?{_CLASS_PAT}\b", clause):
        if free(m, "c"):
            out.append(_mk("event_class", m, clause, si, base, "c", label=_norm_class(m.group("c")),
                           qualifier="not"))
            take(m, "c")

    # ---- vertex
    for m in re.finditer(rf"vertex[^()\d]{{0,40}}\(\s*(?P<x>-?{_NUM})\s*,\s*(?P<y>-?{_NUM})\s*,\s*"
                         rf"(?P<z>-?{_NUM})\s*\)", clause, re.I):
        out.append(_mk("vertex", m, clause, si, base,
                       vector=(float(m["x"]), float(m["y"]), float(m["z"]))))
        take(m)

    # ---- topology string "1mu 2p 0pi [1gamma] [1K]"
    for m in re.finditer(r"\b(?P<topo>(?:\d+mu\s+)?(?:\d+e\s+)?(?:0l\s+)?\d+p\s+\d+pi(?:\s+\d+gamma)?(?:\s+\d+K)?)\b",
                         clause):
        topo = m["topo"]
        if not re.match(r"(\d+mu|\d+e|0l)\b", topo):
            continue
        counts = {"muon": 0, "electron": 0, "proton": 0, "pion": 0, "photon": 0, "kaon": 0}
        for tok in topo.split():
            mm = re.match(r"(\d+)(mu|e|p|pi|gamma|K|l)$", tok)
            if mm and mm[2] != "l":
                counts[{"mu": "muon", "e": "electron", "p": "proton", "pi": "pion",
                        "gamma": "photon", "K": "kaon"}[mm[2]]] = int(mm[1])
        for k, v in counts.items():
            out.append(Claim(kind="count", text=topo, sentence=si, start=base + m.start(),
                             particle=k, value=float(v), qualifier="topology"))
        take(m)

    # ---- Michel electron at a track end (before the generic counts: 'no Michel', 'a Michel')
    for m in re.finditer(r"\b(?:without|no|not\s+(?:followed by|ending in))\s+(?:an?\s+|any\s+)?"
                         r"(?:visible\s+)?Michel(?:\s+electrons?|\s+decays?)?", clause, re.I):
        out.append(_mk("michel", m, clause, si, base, particle="michel", qualifier="absent"))
        take(m)
    for m in re.finditer(r"\b(?:(?:ends?|ending|stops?|stopping)\s+(?:in|with)\s+an?\s+Michel|"
                         r"with\s+an?\s+Michel|an?\s+Michel\s+(?:electron|decay)|"
                         r"Michel\s+electrons?\s+(?:at|near)\s+(?:its|the|their|the track's|the muon's)\s+ends?|"
                         r"(?:\d+|one|two|three)\s+Michel\s+electrons?)", clause, re.I):
        if free(m) and not _hypothetical(clause, *m.span()):
            nm = re.match(r"(\d+|one|two|three)\s+Michel", m.group(0), re.I)
            n = None
            if nm:
                n = float(_WORDNUM.get(nm[1].lower(), nm[1]) if not nm[1].isdigit() else nm[1])
            if n == 0:
                out.append(_mk("michel", m, clause, si, base, particle="michel", qualifier="absent"))
            else:
                out.append(_mk("michel", m, clause, si, base, particle="michel", value=n))
            take(m)

    # ---- counts and absence: "2 protons", "no muon", "without a pion"
    for m in re.finditer(rf"\b(?P<n>{_COUNT_WORD})\s+{_ADJ}(?P<p>{_NOUN})\b", clause, re.I):
        if not free(m) or _hypothetical(clause, *m.span()):
            continue
        word = m["n"].lower()
        p = _norm_particle(m["p"])
        if p == "michel":
            continue
        n = int(word) if word.isdigit() else _WORDNUM[word]
        tail = clause[m.end():m.end() + 40]
        if n == 0 and p in ("shower", "electron") and re.match(r"\s*(?:shower\s+)?(?:starts?|begins?)\s+at\s+the\s+vertex", tail, re.I):
            out.append(_mk("shower_gap", m, clause, si, base, particle=p, qualifier="not_attached"))
        elif n == 0:
            out.append(_mk("absent", m, clause, si, base, particle=p, value=0.0))
        else:
            out.append(_mk("count", m, clause, si, base, particle=p, value=float(n)))
        take(m)
    for m in re.finditer(r"\bno\s+(?:visible\s+)?charged\s+leptons?\b", clause, re.I):
        if free(m):
            for p in ("muon", "electron"):
                out.append(_mk("absent", m, clause, si, base, particle=p, value=0.0))
            take(m)
    for m in re.finditer(rf"\b(?:without|there is no|there are no|no sign of)\s+(?:an?\s+|any\s+)?{_ADJ}(?P<p>{_NOUN})\b",
                         clause, re.I):
        if free(m) and not _hypothetical(clause, *m.span()):
            p = _norm_particle(m["p"])
            if p != "michel":
                out.append(_mk("absent", m, clause, si, base, particle=p, value=0.0))
                take(m)

    # ---- track lengths
    for m in re.finditer(rf"(?P<pre>\b(?:longest|leading|long)\s+)?(?P<v>{_NUM})\s*(?P<u>cm|m)\b(?:\s+long)?"
                         rf"(?P<mid>\s+(?:[\w+-]+\s+){{0,3}}?)(?P<p>(?:muon|proton|pion|kaon)\s+track|track|muon|proton|pion|kaon)s?\b",
                         clause, re.I):
        if not free(m, "v") or _hypothetical(clause, *m.span()):
            continue
        if re.search(r"\b(gap|from|away|radius|length of the shower|shower)\b", m["mid"], re.I):
            continue
        part = _particle_in(m["mid"] + " " + m["p"])
        if part in (None, "track"):
            part = _track_species(clause[:m.start()])
        qual = "longest" if re.search(r"longest", clause[max(0, m.start() - 30):m.end()], re.I) else None
        out.append(_mk("track_length", m, clause, si, base, particle=part if part != "track" else None,
                       value=_length_cm(m["v"], m["u"]), qualifier=qual))
        take(m, "v")
    for m in re.finditer(rf"(?P<pre>\b(?:the\s+)?(?:longest|leading)\s+)?(?P<p>(?:muon|proton|pion|kaon)\s+track|track|muon|proton|pion|kaon)s?"
                         rf"(?:\s+is|\s*,|\s*\(|\s+of|\s+with a length of|\s+length(?: of)?|:)\s*(?:about\s+|~)?"
                         rf"(?P<v>{_NUM})\s*(?P<u>cm|m)\b(?!\s*(?:from|away|gap))", clause, re.I):
        if not free(m, "v") or _hypothetical(clause, *m.span()):
            continue
        part = _particle_in(m["p"])
        qual = "longest" if (m["pre"] and "longest" in m["pre"].lower()) else None
        out.append(_mk("track_length", m, clause, si, base, particle=part if part != "track" else None,
                       value=_length_cm(m["v"], m["u"]), qualifier=qual))
        take(m, "v")

    # ---- shower start dE/dx (numbers in MeV/cm, or 1 / 2 MIP) in a shower context
    shower_ctx = re.search(r"shower|trunk|first (?:few )?(?:centimet|cm)|start(?:s|ing)? (?:with|dE/dx)|start dE/dx|"
                           r"dE/dx at (?:the|its) start", clause, re.I)
    track_ctx = re.search(r"\b(track|muon|proton|pion)\b", clause, re.I) and not re.search(r"shower", clause, re.I)
    if shower_ctx and not track_ctx:
        for m in re.finditer(rf"(?P<v>{_NUM})\s*MeV/cm", clause):
            part = _shower_subject(clause[:m.start()], prev)
            if _hypothetical(clause, *m.span()) or re.search(r"\bnot\s+(?:the\s+)?(?:about\s+)?$",
                                                             clause[max(0, m.start() - 12):m.start()]):
                continue
            out.append(_mk("shower_dedx", m, clause, si, base, particle=part, value=float(m["v"])))
            take(m)
        for m in re.finditer(r"\b(?P<n>1|one|2|two)\s+MIPs?\b", clause, re.I):
            part = _shower_subject(clause[:m.start()], prev)
            pre = clause[max(0, m.start() - 10):m.start()]
            if _hypothetical(clause, *m.span()) or re.search(r"\bnot\b", pre, re.I):
                continue
            if any(c.kind == "shower_dedx" and c.value is not None and c.sentence == si for c in out):
                continue  # a number was given: the MIP words only restate it
            q = "mip1" if m["n"].lower() in ("1", "one") else "mip2"
            out.append(_mk("shower_dedx", m, clause, si, base, particle=part, qualifier=q))

    # ---- shower start relative to the vertex
    if re.search(r"shower|electron|photon|gamma|converts?|conversion", clause, re.I):
        for m in re.finditer(r"\b(?:(?:starts?|begins?|starting)\s+(?:right\s+)?at\s+the\s+(?:interaction\s+)?vertex|"
                             r"attached\s+to\s+the\s+vertex|with\s+no\s+gap|without\s+a\s+gap|no\s+gap)\b",
                             clause, re.I):
            if not free(m) or _hypothetical(clause, *m.span()):
                continue
            if re.search(r"\bno\s+(?:\w+\s+){0,2}shower\s+(?:starts?|begins?)", clause[:m.end()], re.I):
                continue  # 'no shower starts at the vertex' was read above
            out.append(_mk("shower_gap", m, clause, si, base, particle=_shower_subject(clause[:m.start()], prev),
                           qualifier="attached"))
            take(m)
        for m in re.finditer(rf"(?:gap\s+of\s+(?:about\s+|~)?(?P<v1>{_NUM})\s*(?P<u1>cm|m)\b|"
                             rf"(?P<v2>{_NUM})\s*(?P<u2>cm|m)\s+(?:gap|from\s+the\s+vertex|away\s+from\s+the\s+vertex|"
                             rf"before\s+(?:it\s+)?(?:converts|starts))|"
                             rf"(?:converts?|starts?)\s+(?:about\s+)?(?P<v3>{_NUM})\s*(?P<u3>cm|m)\s+(?:from|away|downstream))",
                             clause, re.I):
            if not free(m) or _hypothetical(clause, *m.span()) or re.search(r"mean|average|length", clause[max(0, m.start() - 25):m.start()], re.I):
                continue
            v = next(m[f"v{i}"] for i in (1, 2, 3) if m[f"v{i}"])
            u = next(m[f"u{i}"] for i in (1, 2, 3) if m[f"u{i}"])
            out.append(_mk("shower_gap", m, clause, si, base, particle=_shower_subject(clause[:m.start()], prev),
                           value=_length_cm(v, u)))
            take(m)

    # ---- presence: "a muon", "an electron shower", "the proton"
    for m in re.finditer(rf"\b(?:an?|the|one)\s+(?:(?:{_NUM}\s*(?:cm|m|MeV|GeV)|[A-Za-z]+[-A-Za-z]*)\s+){{0,3}}?"
                         rf"(?P<p>{_NOUN})\b(?!'s)", clause, re.I):
        if not free(m, "p") or _hypothetical(clause, *m.span()):
            continue
        p = _norm_particle(m["p"])
        if p in ("track", "shower", "michel", "pi0"):
            continue
        if re.search(r"\b(no|not|without|any)\b", m.group(0), re.I):
            continue
        out.append(_mk("present", m, clause, si, base, "p", particle=p, value=1.0))
        take(m, "p")

    # ---- energies
    for m in re.finditer(r"\b(?:visible|deposited|total)\s+energy(?:\s+is|\s+of|:)?\s*(?:about\s+|~)?"
                         rf"(?P<v>{_NUM})\s*(?P<u>MeV|GeV)\b(?!/)", clause, re.I):
        out.append(_mk("energy", m, clause, si, base, particle=None, value=_energy_mev(m["v"], m["u"]),
                       qualifier="visible"))
        take(m)
    for m in re.finditer(rf"(?P<v>{_NUM})\s*(?P<u>MeV|GeV)\b(?!/)(?P<mid>\s+(?:[\w-]+\s+){{0,2}}?)(?P<p>{_NOUN})", clause, re.I):
        if not free(m, "v") or _hypothetical(clause, *m.span()):
            continue
        if re.search(r"\b(of|in|from|and|with|at)\b", m["mid"], re.I):
            continue
        p = _norm_particle(m["p"])
        if p in ("michel", "track"):
            continue
        out.append(_mk("energy", m, clause, si, base, particle=p, value=_energy_mev(m["v"], m["u"])))
        take(m, "v")
    for m in re.finditer(rf"(?P<p>{_NOUN})\s*(?:shower\s*)?(?:\(|of|with|:)\s*(?:about\s+|~)?(?P<v>{_NUM})\s*(?P<u>MeV|GeV)\b(?!/)",
                         clause, re.I):
        if not free(m, "v") or _hypothetical(clause, *m.span()):
            continue
        p = _norm_particle(m["p"])
        if p in ("michel", "track"):
            continue
        out.append(_mk("energy", m, clause, si, base, particle=p, value=_energy_mev(m["v"], m["u"])))
        take(m, "v")
    out.sort(key=lambda c: c.start)
    return out


# ============================================================================ checking
def _tol(value_measured: float, kind: str) -> float:
    t = TOLERANCES[kind]
    return max(t.get("cm", t.get("mev_cm", t.get("mev", 0.0))), t.get("rel", 0.0) * abs(value_measured))


def _tol_text(kind: str) -> str:
    t = TOLERANCES[kind]
    unit = "cm" if "cm" in t else "MeV/cm" if "mev_cm" in t else "MeV" if "mev" in t else ""
    absv = t.get("cm", t.get("mev_cm", t.get("mev")))
    parts = []
    if absv is not None:
        parts.append(f"{absv:g} {unit}")
    if "rel" in t:
        parts.append(f"{100 * t['rel']:g}%")
    return " or ".join(parts) + (" (larger)" if len(parts) > 1 else "")



def _showers_with(ev, field: str, particle: Optional[str]) -> list:
    """Showers that have ``field`` measured; those of the claimed type when there are any."""
    sh = [p for p in ev.showers if getattr(p, field) is not None]
    if particle:
        sh = [p for p in sh if p.type == particle] or sh
    return sh

def _unverifiable(claim: Claim, what: str, tool: Optional[str]) -> Check:
    return Check(claim=claim, verdict="unverifiable", tool=tool,
                 note=f"no measurement of {what}" + (f" (run {tool})" if tool else ""))


def check_claim(claim: Claim, ev: Evidence) -> Check:
    """The verdict on one claim from the evidence (see the module docstring)."""
    k = claim.kind
    if k == "event_class":
        if ev.event_class is None:
            return _unverifiable(claim, "the event class", "classify_event")
        same = ev.event_class == claim.label
        ok = (not same) if claim.qualifier == "not" else same
        probs = {c: round(p, 3) for c, p in ev.class_probabilities.items()}
        return Check(claim=claim, verdict="supported" if ok else "contradicted",
                     evidence={"predicted": ev.event_class, **({"p": probs} if probs else {})},
                     tolerance="argmax class", tool=ev.tools.get("event_class", "classify_event"))
    if k == "vertex":
        if ev.vertex_cm is None:
            return _unverifiable(claim, "the vertex", "find_vertex")
        d = math.dist(ev.vertex_cm, claim.vector)
        tol = TOLERANCES["vertex"]["cm"]
        return Check(claim=claim, verdict="supported" if d <= tol else "contradicted",
                     evidence={"vertex_cm": list(ev.vertex_cm), "distance_cm": round(d, 2)},
                     tolerance=f"{tol:g} cm", tool=ev.tools.get("vertex", "find_vertex"))
    if k in ("present", "absent", "count"):
        n = ev.count(claim.particle or "")
        if n is None:
            return _unverifiable(claim, f"the {claim.particle} count", "reconstruct")
        if k == "present":
            ok = n >= 1
        elif k == "absent":
            ok = n == 0
        else:
            ok = n == int(claim.value or 0)
        return Check(claim=claim, verdict="supported" if ok else "contradicted",
                     evidence={f"n_{claim.particle}": n}, tolerance="exact count",
                     tool=ev.tools.get("particles", "reconstruct"))
    if k == "michel":
        has = ev.michel_at_track_end()
        if has is None:
            return _unverifiable(claim, "Michel electrons", "reconstruct")
        want = claim.qualifier != "absent"
        evidence: dict[str, Any] = {"michel_at_track_end": has}
        n_mich = ev.count("michel")
        if n_mich is not None:
            evidence["n_michel"] = n_mich
        if ev.n_michel_voxels is not None:
            evidence["michel_voxels"] = ev.n_michel_voxels
        ok = has == want
        if ok and want and claim.value is not None and n_mich is not None and ev.particles is not None:
            ok = n_mich == int(claim.value)
        return Check(claim=claim, verdict="supported" if ok else "contradicted", evidence=evidence,
                     tolerance="present / absent" if claim.value is None else "exact count",
                     tool=ev.tools.get("michel", "reconstruct"))
    if k == "track_length":
        if ev.particles is None:
            return _unverifiable(claim, "track lengths", "reconstruct")
        tracks = [p for p in ev.tracks if p.length_cm is not None]
        if not tracks:
            return Check(claim=claim, verdict="contradicted", evidence={"n_track": 0},
                         tolerance="a track must exist", tool="reconstruct")
        if claim.qualifier == "longest":
            cands = [max(tracks, key=lambda p: p.length_cm)]
        else:
            cands = [p for p in tracks if claim.particle and p.type == claim.particle] or tracks
        best = min(cands, key=lambda p: abs(p.length_cm - claim.value))
        ok = abs(best.length_cm - claim.value) <= _tol(best.length_cm, "track_length")
        return Check(claim=claim, verdict="supported" if ok else "contradicted",
                     evidence={"length_cm": round(best.length_cm, 1), "type": best.type,
                               **({"all_cm": [round(p.length_cm, 1) for p in cands]} if len(cands) > 1 else {})},
                     tolerance=_tol_text("track_length"), tool=ev.tools.get("particles", "reconstruct"))
    if k == "shower_dedx":
        if ev.particles is None:
            return _unverifiable(claim, "shower dE/dx", "reconstruct")
        sh = _showers_with(ev, "start_dedx_mev_cm", claim.particle)
        if not sh:
            return _unverifiable(claim, "a shower start dE/dx", None)
        if claim.value is not None:
            best = min(sh, key=lambda p: abs(p.start_dedx_mev_cm - claim.value))
            ok = abs(best.start_dedx_mev_cm - claim.value) <= _tol(best.start_dedx_mev_cm, "shower_dedx")
            tol = _tol_text("shower_dedx")
        else:
            split = TOLERANCES["shower_dedx_mip_split"]["mip"] * MIP_DEDX
            want_low = claim.qualifier == "mip1"
            match = [p for p in sh if (p.start_dedx_mev_cm < split) == want_low]
            best = match[0] if match else sh[0]
            ok = bool(match)
            tol = f"{'<' if want_low else '>='} {split:.2f} MeV/cm (1.5 MIP)"
        return Check(claim=claim, verdict="supported" if ok else "contradicted",
                     evidence={"start_dedx_mev_cm": round(best.start_dedx_mev_cm, 2), "type": best.type},
                     tolerance=tol, tool=ev.tools.get("particles", "reconstruct"))
    if k == "shower_gap":
        if ev.particles is None:
            return _unverifiable(claim, "shower starts", "reconstruct")
        sh = _showers_with(ev, "gap_cm", claim.particle)
        if not sh:
            if claim.qualifier == "not_attached" and ev.particles is not None and not ev.showers:
                return Check(claim=claim, verdict="supported", evidence={"n_shower": 0},
                             tolerance="no shower", tool="reconstruct")
            return _unverifiable(claim, "a shower start relative to the vertex", "find_vertex")
        gaps = [round(p.gap_cm, 1) for p in sh]
        att = TOLERANCES["shower_attached"]["cm"]
        if claim.qualifier == "attached":
            ok, tol = min(gaps) <= att, f"start within {att:g} cm of the vertex"
        elif claim.qualifier == "not_attached":
            ok, tol = min(gaps) > att, f"no start within {att:g} cm of the vertex"
        else:
            best = min(sh, key=lambda p: abs(p.gap_cm - claim.value))
            ok = abs(best.gap_cm - claim.value) <= _tol(best.gap_cm, "shower_gap")
            tol = _tol_text("shower_gap")
        return Check(claim=claim, verdict="supported" if ok else "contradicted",
                     evidence={"gaps_cm": gaps}, tolerance=tol, tool=ev.tools.get("particles", "reconstruct"))
    if k == "energy":
        if claim.qualifier == "visible":
            if ev.visible_energy_mev is None:
                return _unverifiable(claim, "the visible energy", "segment")
            rel = TOLERANCES["visible_energy"]["rel"]
            ok = abs(ev.visible_energy_mev - claim.value) <= rel * ev.visible_energy_mev + 1.0
            return Check(claim=claim, verdict="supported" if ok else "contradicted",
                         evidence={"visible_energy_mev": round(ev.visible_energy_mev, 1)},
                         tolerance=f"{100 * rel:g}%", tool=ev.tools.get("visible_energy", "segment"))
        if ev.particles is None:
            return _unverifiable(claim, "particle energies", "reconstruct")
        cands = [p for p in (ev.particles or []) if p.energy_mev is not None
                 and (claim.particle in (None, p.type) or claim.particle == p.kind)]
        if not cands:
            return _unverifiable(claim, f"a {claim.particle} energy", None)
        best = min(cands, key=lambda p: abs(p.energy_mev - claim.value))
        ok = abs(best.energy_mev - claim.value) <= _tol(best.energy_mev, "energy")
        # a particle whose measured energy is only a lower bound can have had more
        above = [] if ok else [p for p in cands if p.energy_is_lower_bound and claim.value > p.energy_mev]
        if above:
            bound = min(above, key=lambda p: claim.value - p.energy_mev)
            return Check(claim=claim, verdict="unverifiable",
                         evidence={"energy_mev_at_least": round(bound.energy_mev, 1), "type": bound.type},
                         tolerance="above a lower bound: neither confirmed nor excluded",
                         tool=ev.tools.get("particles", "reconstruct"))
        return Check(claim=claim, verdict="supported" if ok else "contradicted",
                     evidence={"energy_mev": round(best.energy_mev, 1), "type": best.type,
                               **({"lower_bound": True} if best.energy_is_lower_bound else {})},
                     tolerance=_tol_text("energy"), tool=ev.tools.get("particles", "reconstruct"))
    return _unverifiable(claim, k, None)  # pragma: no cover


def check_claims(claims: Iterable[Claim], evidence: Evidence) -> list[Check]:
    return [check_claim(c, evidence) for c in claims]


def validate(text: str, evidence: Evidence) -> Validation:
    """Extract the claims of ``text`` and check them against ``evidence``."""
    return Validation(checks=check_claims(extract_claims(text), evidence))


def tools_needed(claims: Iterable[Claim], evidence: Evidence) -> list[str]:
    """Tools whose measurements would decide claims that are unverifiable now."""
    need: list[str] = []
    for c in claims:
        chk = check_claim(c, evidence)
        if chk.verdict != "unverifiable":
            continue
        tool = {"event_class": "classify_event", "vertex": "find_vertex"}.get(c.kind, "reconstruct")
        if c.kind == "shower_gap" and evidence.particles is not None:
            tool = "find_vertex"
        if c.kind == "energy" and c.qualifier == "visible":
            tool = "segment"
        if c.kind == "michel" and evidence.particles is not None:
            tool = "segment"
        if tool not in need:
            need.append(tool)
    return need


# ============================================================================ revising
def correction(check: Check, evidence: Evidence) -> Optional[str]:
    """A sentence stating what the tools measured instead of a contradicted claim."""
    c = check.claim
    if c.kind == "event_class" and evidence.event_class:
        p = evidence.class_probabilities.get(evidence.event_class)
        return (f"The classifier says {CLASS_TEXT.get(evidence.event_class, evidence.event_class)}"
                + (f" (p = {p:.2f})" if p is not None else "") + ".")
    if c.kind == "vertex" and evidence.vertex_cm is not None:
        return "The vertex is at (" + ", ".join(f"{x:.1f}" for x in evidence.vertex_cm) + ") cm."
    if c.kind in ("present", "absent", "count") and evidence.counts is not None and c.particle:
        n = evidence.count(c.particle) or 0
        return f"The reconstruction finds {n or 'no'} {_plural_noun(c.particle, n)}."
    if c.kind == "michel":
        has = evidence.michel_at_track_end()
        if has is not None:
            return ("A Michel electron is found at a track end." if has else
                    "No Michel electron is found at a track end.")
    if c.kind == "track_length" and "length_cm" in check.evidence:
        what = "longest track" if c.qualifier == "longest" else f"{check.evidence.get('type', 'track')} track"
        return f"The {what} is {check.evidence['length_cm']:.1f} cm long."
    if c.kind == "shower_dedx" and "start_dedx_mev_cm" in check.evidence:
        return (f"The {check.evidence.get('type', '')} shower trunk measures "
                f"{check.evidence['start_dedx_mev_cm']:.1f} MeV/cm.").replace("The  ", "The ")
    if c.kind == "shower_gap" and check.evidence.get("gaps_cm"):
        g = min(check.evidence["gaps_cm"])
        return f"The nearest shower starts {g:.1f} cm from the vertex."
    if c.kind == "energy" and "energy_mev" in check.evidence:
        return f"The reconstructed {check.evidence.get('type', 'particle')} energy is {check.evidence['energy_mev']:.0f} MeV."
    if c.kind == "energy" and "visible_energy_mev" in check.evidence:
        return f"The visible energy is {check.evidence['visible_energy_mev']:.0f} MeV."
    return None


_PLURAL = {"muon": "muons", "electron": "electrons", "photon": "photons", "proton": "protons",
           "pion": "charged pions", "kaon": "kaons", "pi0": "pi0s", "track": "tracks",
           "shower": "showers", "michel": "Michel electrons"}


def _plural_noun(p: str, n: int) -> str:
    if n == 1:
        return "charged pion" if p == "pion" else "Michel electron" if p == "michel" else p
    return _PLURAL.get(p, p + "s")


def revise(text: str, checks: list[Check], evidence: Evidence) -> str:
    """``text`` without the clauses (parts of sentences between ';') that hold a contradicted
    claim, followed by what the tools measured instead (one sentence per contradicted claim)."""
    bad_at = [c.claim.start for c in checks if c.verdict == "contradicted"]
    if not bad_at:
        return text
    kept: list[str] = []
    for a, b in split_sentences(text):
        sentence = text[a:b].strip()
        lead = len(text[a:b]) - len(text[a:b].lstrip())
        parts = _clauses(sentence)
        good = [cl.strip() for off, cl in parts
                if not any(a + lead + off <= p < a + lead + off + len(cl) for p in bad_at)]
        if len(good) == len(parts):
            kept.append(sentence)
        elif good:
            s_ = "; ".join(g.rstrip(".;") for g in good)
            s_ = s_[:1].upper() + s_[1:] + "."
            label = re.match(r"([A-Z][\w' ]{2,40}:)\s", parts[0][1].strip())
            if label and not good[0].startswith(label.group(1)):
                s_ = f"{label.group(1)} {s_[:1].lower()}{s_[1:]}"   # "The VLM explains: ..." stays
            kept.append(s_)
    fixes: list[str] = []
    for c in checks:
        if c.verdict == "contradicted":
            s_ = correction(c, evidence)
            if s_ and s_ not in fixes:
                fixes.append(s_)
    return " ".join(kept + fixes).strip()


def annotate(text: str, checks: list[Check]) -> str:
    """``text`` with every sentence that holds an unverifiable or contradicted claim flagged
    in square brackets after it (nothing is silently kept)."""
    spans = split_sentences(text)
    flags: dict[int, list[str]] = {}
    for c in checks:
        if c.verdict == "supported":
            continue
        if c.verdict == "unverifiable":
            flag = f"unverified: {c.claim.describe()}"
        else:
            flag = f"contradicted by {c.tool or 'the tools'}: {c.claim.describe()}; measured {_fmt_evidence(c.evidence)}"
        lst = flags.setdefault(c.claim.sentence, [])
        if flag not in lst:
            lst.append(flag)
    if not flags:
        return text
    out = []
    for i, (a, b) in enumerate(spans):
        s = text[a:b].strip()
        if i in flags:
            s += " [" + "; ".join(flags[i]) + "]"
        out.append(s)
    return " ".join(out)
