"""Claims: the typed physics statements an answer makes about the event.

    from larsight.agent.claims import Claim
    Claim(kind="track_length", subject="muon", value=45.3, unit="cm", tool="reconstruct")

Inside the agent an answer is a list of typed claims (``agent.render.Composition``, written by
``agent.compose`` from the tools' measurements, checked by ``agent.validate`` and rendered to
English once, at the end, by ``agent.render``). A claim's value is in the canonical unit of its
kind (cm, MeV, MeV/cm, a count); a unit the question asks for (m, mm, GeV, keV) is applied
when it is rendered.

==================  =========================  ===========  ===================================
kind                subject                    value, unit  checked against
==================  =========================  ===========  ===================================
event_class         event                      label        classify_event argmax
present / absent    particle species           count        reconstruct counts
count               species, track, shower     count        reconstruct counts
track_length        species or track           cm           reconstruct track lengths
shower_dedx         electron, photon, shower   MeV/cm       shower trunk dE/dx (or mip1 / mip2)
shower_gap          electron, photon, shower   cm           shower start - vertex (or attached)
vertex              vertex                     (x,y,z) cm   find_vertex
michel              michel                     count|None   reconstruct / segment
energy              species, shower, visible   MeV          reconstruct / segment
==================  =========================  ===========  ===================================

**Free text written by a language model** (the VLM's explanation sentence, the openai brain's
answer) has no typed claims: ``extract_claims`` reads them from its words (``source="text"``).
This is the only place English is parsed back into claims. Hypothetical and definitional
language ("a photon would convert after ...", "unlike a muon", "not the two MIPs of a photon")
is not a claim about the event and is skipped. The text is read sentence by sentence and clause
by clause (split at ';' and ' but '); each clause goes through the patterns of ``_EXTRACTORS``
in order, and words one pattern has read are not read again by a later one.
"""
from __future__ import annotations

import re
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Claim", "ClaimKind", "Unit", "extract_claims", "split_sentences", "split_clauses", "make_claim", "unique"]

ClaimKind = Literal["event_class", "present", "absent", "count", "track_length", "shower_dedx",
                    "shower_gap", "vertex", "michel", "energy"]
Unit = Literal["cm", "MeV", "MeV/cm", "count"]

UNIT_OF: dict[str, Optional[str]] = {
    "event_class": None, "present": "count", "absent": "count", "count": "count", "track_length": "cm",
    "shower_dedx": "MeV/cm", "shower_gap": "cm", "vertex": "cm", "michel": "count", "energy": "MeV"}
"""The canonical unit of each kind's value."""

_GENERIC = ("event", "vertex", "track", "shower", "visible")


class Claim(BaseModel):
    """One typed claim about the event (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    kind: ClaimKind
    subject: str = Field(description="event, vertex, a particle species (muon, electron, photon, proton, "
                         "pion, kaon, pi0), track, shower, michel or visible (the deposited energy)")
    value: Union[float, tuple[float, float, float], str, None] = Field(
        None, description="the claimed value in ``unit`` (a class label for event_class)")
    unit: Optional[Unit] = None
    tool: Optional[str] = Field(None, description="the tool whose measurement the claim states (typed claims)")
    qualifier: Optional[str] = Field(None, description="longest, mip1, mip2, attached, not_attached, "
                                     "visible, absent, topology, not (a negated class)")
    source: Literal["tools", "text"] = Field("tools", description="composed from the tools' measurements, "
                                             "or read from a language model's free text")
    text: str = Field("", description="free text only: the words that make the claim")
    sentence: int = Field(0, description="free text only: index of the sentence (split_sentences) holding it")
    start: int = Field(0, description="free text only: character offset of the claim in the text")

    @property
    def particle(self) -> Optional[str]:
        """The species (or track / shower for counts) the claim is about; None when generic."""
        if self.kind in ("count", "present", "absent"):
            return self.subject
        return None if self.subject in _GENERIC else self.subject

    @property
    def label(self) -> Optional[str]:
        return self.value if self.kind == "event_class" and isinstance(self.value, str) else None

    @property
    def number(self) -> Optional[float]:
        return float(self.value) if isinstance(self.value, (int, float)) else None

    def key(self) -> tuple:
        """What the claim says, without where it was said (claims with one key are one claim)."""
        return (self.kind, self.subject, self.value, self.qualifier)

    def describe(self) -> str:
        k, v = self.kind, self.value
        if k == "event_class":
            return f"class {'is not' if self.qualifier == 'not' else 'is'} {v}"
        if k == "vertex":
            return "vertex at (" + ", ".join(f"{c:.1f}" for c in v or ()) + ") cm"
        if k in ("present", "absent"):
            return f"{self.subject} {k}"
        if k == "count":
            return f"{int(self.number or 0)} {self.subject}"
        if k == "track_length":
            return f"{self.qualifier + ' ' if self.qualifier else ''}{self.particle or 'track'} length {v:.1f} cm"
        if k == "shower_dedx":
            return (f"{self.particle or 'shower'} start dE/dx "
                    + (f"{v:.1f} MeV/cm" if self.number is not None else self.qualifier or ""))
        if k == "shower_gap":
            return (f"{self.particle or 'shower'} "
                    + ({"attached": "starts at the vertex", "not_attached": "does not start at the vertex"}
                       .get(self.qualifier or "", f"gap {v:.1f} cm" if self.number is not None else "gap")))
        if k == "michel":
            return "Michel electron at a track end" + (" (absent)" if self.qualifier == "absent" else "")
        if k == "energy":
            return f"{self.particle or 'visible'} energy {v:.0f} MeV"
        return k


def make_claim(kind: str, *, particle: Optional[str] = None, value=None, vector=None, label: Optional[str] = None,
               qualifier: Optional[str] = None, **kw) -> Claim:
    """A claim from the parts a phrase names (the species or none, a number, a vector, a class)."""
    if kind == "event_class":
        subject, val = "event", label
    elif kind == "vertex":
        subject, val = "vertex", tuple(vector)
    elif kind == "michel":
        subject, val = "michel", value
    elif kind == "energy" and qualifier == "visible":
        subject, val = "visible", value
    else:
        default = {"track_length": "track", "shower_dedx": "shower", "shower_gap": "shower",
                   "energy": "shower"}.get(kind, "track")
        subject, val = particle or default, value
    return Claim(kind=kind, subject=subject, value=val, unit=UNIT_OF.get(kind) if val is not None else None,
                 qualifier=qualifier, **kw)


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


def split_clauses(sentence: str) -> list[tuple[int, str]]:
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
    """The claims of free text written by a language model, in order of appearance (the only
    reader of English; see the module docstring)."""
    claims: list[Claim] = []
    # text between backticks is quoted data (file names, other events' summaries, tool
    # errors), not a claim about this event: blank it, keeping every offset
    text = _mask_quotes(text)
    for si, (a, b) in enumerate(split_sentences(text)):
        sentence = text[a:b]
        prev = ""
        for off, clause in split_clauses(sentence):
            base = a + off
            claims += _claims_in_clause(clause, si, base, first=(si == 0 and off == 0), prev=prev)
            prev = clause
    return unique(claims)


def unique(claims: list[Claim]) -> list[Claim]:
    """The claims without repeats (one per ``Claim.key``), in order."""
    seen, out = set(), []
    for c in claims:
        if c.key() not in seen:
            seen.add(c.key())
            out.append(c)
    return out


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


class _ClauseReader:
    """One clause being read: its place in the answer, the claims found so far and the spans
    already turned into claims (a later pattern never reads the same words again)."""

    def __init__(self, clause: str, si: int, base: int, first: bool, prev: str):
        self.clause, self.si, self.base, self.first, self.prev = clause, si, base, first, prev
        self.out: list[Claim] = []
        self.used: list[tuple[int, int]] = []

    def free(self, m, g=0) -> bool:
        s, e = m.span(g)
        return not any(s < b and a < e for a, b in self.used)

    def take(self, m, g=0) -> None:
        self.used.append(m.span(g))

    def add(self, kind: str, m, group=0, **kw) -> None:
        """A claim of ``kind`` made by the words of group ``group`` of the match ``m``."""
        self.out.append(make_claim(kind, source="text", text=m.group(group).strip(), sentence=self.si,
                                   start=self.base + m.start(group), **kw))


def _event_class_claims(r: _ClauseReader) -> None:
    """Event class."""
    clause, first = r.clause, r.first
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
        r.add("event_class", m, "c", label=_norm_class(c),
              qualifier="not" if neg else None)
        r.take(m, "c")
    for m in re.finditer(rf"\b(?:is\s+)?not\s+(?:an?\s+)?{_CLASS_PAT}\b", clause):
        if r.free(m, "c"):
            r.add("event_class", m, "c", label=_norm_class(m.group("c")),
                  qualifier="not")
            r.take(m, "c")


def _vertex_claims(r: _ClauseReader) -> None:
    """Vertex."""
    clause = r.clause
    for m in re.finditer(rf"vertex[^()\d]{{0,40}}\(\s*(?P<x>-?{_NUM})\s*,\s*(?P<y>-?{_NUM})\s*,\s*"
                         rf"(?P<z>-?{_NUM})\s*\)", clause, re.I):
        r.add("vertex", m,
              vector=(float(m["x"]), float(m["y"]), float(m["z"])))
        r.take(m)


def _topology_claims(r: _ClauseReader) -> None:
    """Topology string "1mu 2p 0pi [1gamma] [1K]"."""
    clause, out = r.clause, r.out
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
            out.append(make_claim("count", source="text", text=topo, sentence=r.si, start=r.base + m.start(),
                                  particle=k, value=float(v), qualifier="topology"))
        r.take(m)


def _michel_claims(r: _ClauseReader) -> None:
    """Michel electron at a track end (before the generic counts: 'no Michel', 'a Michel')."""
    clause = r.clause
    for m in re.finditer(r"\b(?:without|no|not\s+(?:followed by|ending in))\s+(?:an?\s+|any\s+)?"
                         r"(?:visible\s+)?Michel(?:\s+electrons?|\s+decays?)?", clause, re.I):
        r.add("michel", m, particle="michel", qualifier="absent")
        r.take(m)
    for m in re.finditer(r"\b(?:(?:ends?|ending|stops?|stopping)\s+(?:in|with)\s+an?\s+Michel|"
                         r"with\s+an?\s+Michel|an?\s+Michel\s+(?:electron|decay)|"
                         r"Michel\s+electrons?\s+(?:at|near)\s+(?:its|the|their|the track's|the muon's)\s+ends?|"
                         r"(?:\d+|one|two|three)\s+Michel\s+electrons?)", clause, re.I):
        if r.free(m) and not _hypothetical(clause, *m.span()):
            nm = re.match(r"(\d+|one|two|three)\s+Michel", m.group(0), re.I)
            n = None
            if nm:
                n = float(_WORDNUM.get(nm[1].lower(), nm[1]) if not nm[1].isdigit() else nm[1])
            if n == 0:
                r.add("michel", m, particle="michel", qualifier="absent")
            else:
                r.add("michel", m, particle="michel", value=n)
            r.take(m)


def _count_claims(r: _ClauseReader) -> None:
    """Counts and absence: "2 protons", "no muon", "without a pion"."""
    clause = r.clause
    for m in re.finditer(rf"\b(?P<n>{_COUNT_WORD})\s+{_ADJ}(?P<p>{_NOUN})\b", clause, re.I):
        if not r.free(m) or _hypothetical(clause, *m.span()):
            continue
        word = m["n"].lower()
        p = _norm_particle(m["p"])
        if p == "michel":
            continue
        n = int(word) if word.isdigit() else _WORDNUM[word]
        tail = clause[m.end():m.end() + 40]
        if n == 0 and p in ("shower", "electron") and re.match(r"\s*(?:shower\s+)?(?:starts?|begins?)\s+at\s+the\s+vertex", tail, re.I):
            r.add("shower_gap", m, particle=p, qualifier="not_attached")
        elif n == 0:
            r.add("absent", m, particle=p, value=0.0)
        else:
            r.add("count", m, particle=p, value=float(n))
        r.take(m)
    for m in re.finditer(r"\bno\s+(?:visible\s+)?charged\s+leptons?\b", clause, re.I):
        if r.free(m):
            for p in ("muon", "electron"):
                r.add("absent", m, particle=p, value=0.0)
            r.take(m)
    for m in re.finditer(rf"\b(?:without|there is no|there are no|no sign of)\s+(?:an?\s+|any\s+)?{_ADJ}(?P<p>{_NOUN})\b",
                         clause, re.I):
        if r.free(m) and not _hypothetical(clause, *m.span()):
            p = _norm_particle(m["p"])
            if p != "michel":
                r.add("absent", m, particle=p, value=0.0)
                r.take(m)


def _track_length_claims(r: _ClauseReader) -> None:
    """Track lengths."""
    clause = r.clause
    for m in re.finditer(rf"(?P<pre>\b(?:longest|leading|long)\s+)?(?P<v>{_NUM})\s*(?P<u>cm|m)\b(?:\s+long)?"
                         rf"(?P<mid>\s+(?:[\w+-]+\s+){{0,3}}?)(?P<p>(?:muon|proton|pion|kaon)\s+track|track|muon|proton|pion|kaon)s?\b",
                         clause, re.I):
        if not r.free(m, "v") or _hypothetical(clause, *m.span()):
            continue
        if re.search(r"\b(gap|from|away|radius|length of the shower|shower)\b", m["mid"], re.I):
            continue
        part = _particle_in(m["mid"] + " " + m["p"])
        if part in (None, "track"):
            part = _track_species(clause[:m.start()])
        qual = "longest" if re.search(r"longest", clause[max(0, m.start() - 30):m.end()], re.I) else None
        r.add("track_length", m, particle=part if part != "track" else None,
              value=_length_cm(m["v"], m["u"]), qualifier=qual)
        r.take(m, "v")
    for m in re.finditer(rf"(?P<pre>\b(?:the\s+)?(?:longest|leading)\s+)?(?P<p>(?:muon|proton|pion|kaon)\s+track|track|muon|proton|pion|kaon)s?"
                         rf"(?:\s+is|\s*,|\s*\(|\s+of|\s+with a length of|\s+length(?: of)?|:)\s*(?:about\s+|~)?"
                         rf"(?P<v>{_NUM})\s*(?P<u>cm|m)\b(?!\s*(?:from|away|gap))", clause, re.I):
        if not r.free(m, "v") or _hypothetical(clause, *m.span()):
            continue
        part = _particle_in(m["p"])
        qual = "longest" if (m["pre"] and "longest" in m["pre"].lower()) else None
        r.add("track_length", m, particle=part if part != "track" else None,
              value=_length_cm(m["v"], m["u"]), qualifier=qual)
        r.take(m, "v")


def _shower_dedx_claims(r: _ClauseReader) -> None:
    """Shower start dE/dx (numbers in MeV/cm, or 1 / 2 MIP) in a shower context."""
    clause, prev, si = r.clause, r.prev, r.si
    shower_ctx = re.search(r"shower|trunk|first (?:few )?(?:centimet|cm)|start(?:s|ing)? (?:with|dE/dx)|start dE/dx|"
                           r"dE/dx at (?:the|its) start", clause, re.I)
    track_ctx = re.search(r"\b(track|muon|proton|pion)\b", clause, re.I) and not re.search(r"shower", clause, re.I)
    if shower_ctx and not track_ctx:
        for m in re.finditer(rf"(?P<v>{_NUM})\s*MeV/cm", clause):
            part = _shower_subject(clause[:m.start()], prev)
            if _hypothetical(clause, *m.span()) or re.search(r"\bnot\s+(?:the\s+)?(?:about\s+)?$",
                                                             clause[max(0, m.start() - 12):m.start()]):
                continue
            r.add("shower_dedx", m, particle=part, value=float(m["v"]))
            r.take(m)
        for m in re.finditer(r"\b(?P<n>1|one|2|two)\s+MIPs?\b", clause, re.I):
            part = _shower_subject(clause[:m.start()], prev)
            pre = clause[max(0, m.start() - 10):m.start()]
            if _hypothetical(clause, *m.span()) or re.search(r"\bnot\b", pre, re.I):
                continue
            if any(c.kind == "shower_dedx" and c.value is not None and c.sentence == si for c in r.out):
                continue  # a number was given: the MIP words only restate it
            q = "mip1" if m["n"].lower() in ("1", "one") else "mip2"
            r.add("shower_dedx", m, particle=part, qualifier=q)


def _shower_gap_claims(r: _ClauseReader) -> None:
    """Shower start relative to the vertex."""
    clause, prev = r.clause, r.prev
    if re.search(r"shower|electron|photon|gamma|converts?|conversion", clause, re.I):
        for m in re.finditer(r"\b(?:(?:starts?|begins?|starting)\s+(?:right\s+)?at\s+the\s+(?:interaction\s+)?vertex|"
                             r"attached\s+to\s+the\s+vertex|with\s+no\s+gap|without\s+a\s+gap|no\s+gap)\b",
                             clause, re.I):
            if not r.free(m) or _hypothetical(clause, *m.span()):
                continue
            if re.search(r"\bno\s+(?:\w+\s+){0,2}shower\s+(?:starts?|begins?)", clause[:m.end()], re.I):
                continue  # 'no shower starts at the vertex' was read above
            r.add("shower_gap", m, particle=_shower_subject(clause[:m.start()], prev),
                  qualifier="attached")
            r.take(m)
        for m in re.finditer(rf"(?:gap\s+of\s+(?:about\s+|~)?(?P<v1>{_NUM})\s*(?P<u1>cm|m)\b|"
                             rf"(?P<v2>{_NUM})\s*(?P<u2>cm|m)\s+(?:gap|from\s+the\s+vertex|away\s+from\s+the\s+vertex|"
                             rf"before\s+(?:it\s+)?(?:converts|starts))|"
                             rf"(?:converts?|starts?)\s+(?:about\s+)?(?P<v3>{_NUM})\s*(?P<u3>cm|m)\s+(?:from|away|downstream))",
                             clause, re.I):
            if not r.free(m) or _hypothetical(clause, *m.span()) or re.search(r"mean|average|length", clause[max(0, m.start() - 25):m.start()], re.I):
                continue
            v = next(m[f"v{i}"] for i in (1, 2, 3) if m[f"v{i}"])
            u = next(m[f"u{i}"] for i in (1, 2, 3) if m[f"u{i}"])
            r.add("shower_gap", m, particle=_shower_subject(clause[:m.start()], prev),
                  value=_length_cm(v, u))
            r.take(m)


def _presence_claims(r: _ClauseReader) -> None:
    """Presence: "a muon", "an electron shower", "the proton"."""
    clause = r.clause
    for m in re.finditer(rf"\b(?:an?|the|one)\s+(?:(?:{_NUM}\s*(?:cm|m|MeV|GeV)|[A-Za-z]+[-A-Za-z]*)\s+){{0,3}}?"
                         rf"(?P<p>{_NOUN})\b(?!'s)", clause, re.I):
        if not r.free(m, "p") or _hypothetical(clause, *m.span()):
            continue
        p = _norm_particle(m["p"])
        if p in ("track", "shower", "michel", "pi0"):
            continue
        if re.search(r"\b(no|not|without|any)\b", m.group(0), re.I):
            continue
        r.add("present", m, "p", particle=p, value=1.0)
        r.take(m, "p")


def _energy_claims(r: _ClauseReader) -> None:
    """Energies."""
    clause = r.clause
    for m in re.finditer(r"\b(?:visible|deposited|total)\s+energy(?:\s+is|\s+of|:)?\s*(?:about\s+|~)?"
                         rf"(?P<v>{_NUM})\s*(?P<u>MeV|GeV)\b(?!/)", clause, re.I):
        r.add("energy", m, particle=None, value=_energy_mev(m["v"], m["u"]),
              qualifier="visible")
        r.take(m)
    # "350 MeV electron shower" (value first) and "electron shower of 350 MeV" (particle first)
    value_first = rf"(?P<v>{_NUM})\s*(?P<u>MeV|GeV)\b(?!/)(?P<mid>\s+(?:[\w-]+\s+){{0,2}}?)(?P<p>{_NOUN})"
    particle_first = rf"(?P<p>{_NOUN})\s*(?:shower\s*)?(?:\(|of|with|:)\s*(?:about\s+|~)?(?P<v>{_NUM})\s*(?P<u>MeV|GeV)\b(?!/)"
    for pattern in (value_first, particle_first):
        for m in re.finditer(pattern, clause, re.I):
            if not r.free(m, "v") or _hypothetical(clause, *m.span()):
                continue
            if "mid" in m.re.groupindex and re.search(r"\b(of|in|from|and|with|at)\b", m["mid"], re.I):
                continue
            p = _norm_particle(m["p"])
            if p in ("michel", "track"):
                continue
            r.add("energy", m, particle=p, value=_energy_mev(m["v"], m["u"]))
            r.take(m, "v")


_EXTRACTORS = (_event_class_claims, _vertex_claims, _topology_claims, _michel_claims, _count_claims,
               _track_length_claims, _shower_dedx_claims, _shower_gap_claims, _presence_claims,
               _energy_claims)
"""The patterns, in the order they read a clause (earlier ones take their words first)."""


def _claims_in_clause(clause: str, si: int, base: int, first: bool, prev: str = "") -> list[Claim]:
    r = _ClauseReader(clause, si, base, first, prev)
    for extract in _EXTRACTORS:
        extract(r)
    r.out.sort(key=lambda c: c.start)
    return r.out
