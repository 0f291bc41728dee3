"""What a question asks for: intents read with keyword rules, and the tools that measure them.

    from larsight.agent.intents import intents, plan
    intents("How long is the muon track, and where is the vertex?")   # ['vertex', 'length']
    plan(["vertex", "length"])                                        # ['find_vertex', 'reconstruct']

``intents(question)`` returns the ordered set of what a question asks (class, vertex, counts,
...), empty for a textbook question or one that is not about the event (``is_general``,
``refers_to_event``); misspelt domain words are corrected first (``normalize``). ``plan`` maps
intents to tools (``INTENT_TOOLS``); ``similar_k``, ``similar_query`` and ``render_view`` read the
arguments of ``find_similar`` and ``render`` from the wording. ``agent.compose`` writes the
answers.
"""
from __future__ import annotations

import difflib
import functools
import re
from typing import Iterable, Optional

from spellchecker import SpellChecker

__all__ = ["intents", "plan", "similar_k", "similar_query", "render_view", "is_general",
           "refers_to_event", "normalize", "INTENT_TOOLS", "DEFAULT_K"]

DEFAULT_K = 5

_DEICTIC = re.compile(r"\b(this|these|here|it|its|the event|this event|this one|that event)\b", re.I)
_PATTERNS: list[tuple[str, re.Pattern]] = [(name, re.compile(p, re.I)) for name, p in (
    ("similar", r"\bsimilar\b|\blike (this|it)\b|\bevents? like\b|\blooks? like this\b|\balike\b|"
                r"\bneighbou?rs?\b|\bfind (me )?(\S+ ){0,4}?(events?|an? )|\bsearch\b|\bretriev|\bother events\b|"
                r"\bmore events\b|\bwhich stored events\b|"
                r"\blook (for|up)\s+(\S+\s+){0,6}?(events|interactions|examples|candidates)\b"),
    ("classify", r"\bclassif|\bclass\b|\bwhat (kind|type|sort) of (event|interaction|neutrino)|"
                 r"\b(nu_?e|nu_?mu|numu|nue|νe|νμ)\b|\bnc\b|\bcc\b|charged[- ]current|neutral[- ]current|"
                 r"\b(electron|muon)[- ]neutrino\b|\bwhich neutrino\b|\bflavou?r\b|\bcategor(y|i[sz])|"
                 r"\binteraction type\b|\btype of (this |the )?interaction\b|\bccqe\b|\bcc ?(0|1)pi\b"),
    ("vertex", r"\bvert(ex|ices)\b|\binteraction point\b|where (does|did) (the |this )?(interaction|event|it) "
               r"(start|begin|happen|occur)|\bwhere .{0,20}(start|originate)|"
               r"\bwhere (did|does|do) (the |this )?(neutrino|interaction|it) (interact|scatter)|"
               r"\b(start|starting|origin|initial) (point|position|location) of the (event|interaction)\b|"
               r"\bposition\b[^?.]{0,40}\b(start|begin|originate)"),
    ("michel", r"\bmichel\b|\bdecay electron\b|\bmuon decay\b"),
    ("length", r"\bhow long\b|\blength\b|\blongest\b|\bshortest\b|\brange\b|\bcontained\b"),
    ("dedx", r"\bde/?dx\b|\bdedx\b|\bmip\b|\bionis|\bioniz|\bbragg\b"),
    ("gap", r"\bgap\b|\bconver(ts?|sion)\b|\bstarts? at the vertex\b|\battached\b|\bdisplaced\b"),
    ("visible_energy", r"\b(visible|deposited|total) energy\b|\bhow much energy\b"),
    ("energy", r"\benerg(y|ies)\b|\bmev\b|\bgev\b|\bmomentum\b"),
    ("counts", r"\bhow many\b|\bnumber of\b|\bcount\b|\btopology\b|\bmultiplicity\b|\bfinal[- ]state\b|"
               r"\bparticle content\b|\b(which|what) particles\b|\blist\b|\bparticles?\b|\bis there\b|"
               r"\bare there\b|\bany\b|\b(muons?|electrons?|protons?|pions?|photons?|gammas?|kaons?|pi0s?|"
               r"leptons?|tracks?|showers?)\b"),
    ("segment", r"\bsegment|\bsemantic\b|\bvoxels?\b|\blabels?\b|\btrack-like\b|\bshower-like\b"),
    ("describe", r"\bdescribe\b|\bdescription\b|\bsummar|\boverview\b|\bwhat happened\b|\bwhat do you see\b|"
                 r"\bwhat is (in|going on)\b|\btell me about (this|the) event\b|\bcaption\b|\bwhat happens\b"),
    ("render", r"\b(draw|plot|render|visuali[sz]e)\b|\b(show|display)\b[^?.]{0,30}\b(event|display|projection|"
               r"picture|image|3d|xz|yz|view)\b|\bprojection\b|\bevent display\b"),
)]

INTENT_TOOLS = {
    "classify": ("classify_event",), "vertex": ("find_vertex",), "counts": ("reconstruct",),
    "michel": ("reconstruct",), "length": ("reconstruct",), "dedx": ("reconstruct",),
    "gap": ("reconstruct", "find_vertex"), "energy": ("reconstruct",), "visible_energy": ("segment",),
    "segment": ("segment",), "similar": ("find_similar",), "describe": ("describe",),
    "render": ("render",), "reasons": ("reconstruct",),
}

_GENERAL = re.compile(r"^\s*(what\s+(is|are)\s+an?\s+|what'?s\s+an?\s+|what\s+are\s+(?!the\b|there\b)|"
                      r"what\s+is\s+(?!the\b|there\b)[^\s?]+\s*\?\s*$|what\s+is\s+the\s+difference\s+between\s+|"
                      r"what\s+does\s+.{1,30}\s+mean\b|how\s+do\s+(you|i|we|one)\s+(tell|distinguish|identify|measure)|"
                      r"how\s+does\s+an?\s+|why\s+do(es)?\s+(some\s+|an?\s+)?(?!this|these|it\b)|define\s+|explain\s+what\s+)",
                      re.I)
_MEDIUM = re.compile(r"\b(liquid argon|argon|lar)\b", re.I)


_DETECTOR_WORDS = re.compile(r"\b(events?|interactions?|tracks?|showers?|vertex|vertices|particles?|"
                             r"hits?|points?|deposits?|clusters?|muons?|electrons?|protons?|pions?|"
                             r"photons?|neutrinos?|michel)\b", re.I)
# words that name a field or a manner of speaking, not something in the event
_NOT_EVENT = re.compile(r"\b(particle|neutrino|nuclear|high[- ]energy) physics\b|\bhow('s| is) it going\b|"
                        r"\bhow are you\b|\bis it (true|possible)\b", re.I)
_SPECIES = (r"(muons?|electrons?|positrons?|protons?|neutrons?|pions?|pi0s?|photons?|kaons?|neutrinos?|"
            r"mesons?|baryons?|leptons?|hadrons?|quarks?|nuclei|nucleus|argon( nuclei| nucleus| atoms?)?)")
# properties a particle species or the medium has in every event: answered from textbooks
# (mass, lifetime, ...), never measured here
_INTRINSIC = (r"((rest )?mass(es)?|lifetimes?|half[- ]li(fe|ves)|mean life|spin|quark content|magnetic moment|"
              r"(electric )?charge|decay (modes?|channels?|constant)|branching (ratios?|fractions?)|"
              r"radiation length|moli[eè]re radius|critical energy|nuclear interaction length|density|"
              r"drift (velocity|speed)|boiling point|w[- ]value|mean excitation energy|isospin|parity)")
_TEXTBOOK = [re.compile(p, re.I) for p in (
    # "the lifetime of a muon", "the muon's rest mass", "muon lifetime"
    rf"\b{_INTRINSIC}\s+of\s+(an?\s+|the\s+|a\s+single\s+)?(\w+[- ])?{_SPECIES}\b",
    rf"\b{_SPECIES}('s|s')?\s+{_INTRINSIC}\b",
    # manner of the question: about particles in general
    r"\bin general\b|\bgenerally\b|\btypical(ly)?\b|\busually\b|\bin principle\b|\bon average\b|"
    r"\bper (gev|mev)\b|\bin theory\b",
    # "Are pions mesons or baryons?", "Do muons decay?": a bare plural, not "the"/"any" ones
    rf"^\s*(are|do|does|can|could|why (are|do)|how (are|do))\s+"
    rf"(?!(the|these|those|its|any|all|both|some|such)\b)(\w+[- ])?{_SPECIES.replace('s?', 's')}\b"
    r"(?!\s+(here|there|in (this|the|it)))",
    # "How far does a minimum-ionising muon travel ...": a wh-question about "a" particle
    rf"^\s*(what|how|why|when)\b[^?]*\b(an?|one)\s+(\w+[- ]){{0,2}}?{_SPECIES}\b",
    # requests that are not about physics data at all
    r"\brecommend\b|\bbooks?\b|\bpoems?\b|\bjokes?\b|\btranslat|\brecipes?\b|\bweather\b|\bcapital of\b|"
    r"\bwrite (me )?(an? |some )?(python|code|function|script|program|poem|story|email|letter|haiku|essay)\b|"
    r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|thanks|thank you)\b",
)]
# existence and counting phrasings point at the event even without "this"
_EXISTENCE = re.compile(r"\b(is there|are there|do you see|can you see|any|how many|number of|does it|"
                        r"did it|contain|present)\b", re.I)


def refers_to_event(question: str) -> bool:
    """Whether the question points at the event or its contents ("this", "here", "the track",
    "any protons?"): a question that does neither needs no measurement of it. Idioms
    ("particle physics", "how's it going") do not count."""
    q = _NOT_EVENT.sub(" ", normalize(question))
    return bool(_DEICTIC.search(q) or _DETECTOR_WORDS.search(q))


def is_general(question: str) -> bool:
    """A textbook question ("What is a Michel electron?", "What is the radiation length of
    liquid argon?", "What is the lifetime of a muon?", "Are pions mesons?") or a request that
    is not about physics data, rather than one about the event."""
    q = normalize(question)
    if _DEICTIC.search(_NOT_EVENT.sub(" ", q)):
        return False
    if _GENERAL.search(q) or (re.match(r"^\s*what\s+is\s+the\b", q, re.I) and _MEDIUM.search(q)):
        return True
    if _EXISTENCE.search(q):
        return False
    return any(p.search(q) for p in _TEXTBOOK)


# ------------------------------------------------------------------ typing slips
# Domain words a question's misspelling is corrected to ("whre is the vertx" -> "where is the
# vertex"); a word is corrected only when it is not English (pyspellchecker's dictionary) nor
# a known jargon word, and is close to exactly one of these.
_VOCAB = sorted(set("""
vertex vertices event events interaction interactions neutrino neutrinos classify classification
category michel muon muons electron electrons proton protons pion pions photon photons kaon kaons
shower showers track tracks particle particles energy energies similar where there which what many
much topology decay reconstruct segment describe display render length contained current charged
neutral flavour flavor primary secondary lepton leptons hadron hadrons visible deposited
""".split()))
_JARGON = {"nue", "numu", "nc", "cc", "ccqe", "mip", "dedx", "pi0", "pi0s", "lar", "lartpc", "tpc", "ccpi",
           "nutau", "nubar", "antineutrino", "michels", "argon", "pilarnet", "topo", "reco", "xz", "yz", "xy",
           "dune", "uboone", "microboone", "sbnd", "icarus", "protodune", "geant", "genie", "larsoft"}


@functools.lru_cache(maxsize=1)
def _spell() -> SpellChecker:
    return SpellChecker()   # loads its English dictionary (~0.15 s): once, on first use


def _closest_domain_word(word: str) -> Optional[str]:
    """The one domain word closest to ``word`` (similarity >= 0.8), None if none or a tie."""
    match = difflib.get_close_matches(word, _VOCAB, n=2, cutoff=0.8)
    if len(match) == 2 and (difflib.SequenceMatcher(None, word, match[0]).ratio()
                            == difflib.SequenceMatcher(None, word, match[1]).ratio()):
        return None
    return match[0] if match else None


@functools.lru_cache(maxsize=4096)
def normalize(question: str) -> str:
    """``question`` with misspelt domain words corrected; everything else untouched."""
    q = question or ""
    cand = [w for w in re.findall(r"[A-Za-z]{4,}", q) if w.lower() not in _JARGON and w.lower() not in _VOCAB]
    if not cand:
        return q
    unknown = _spell().unknown([w.lower() for w in cand])
    for w in cand:
        fix = _closest_domain_word(w.lower()) if w.lower() in unknown else None
        if fix:
            q = re.sub(rf"\b{re.escape(w)}\b", fix, q)
    return q


def intents(question: str) -> list[str]:
    """What the question asks, in a fixed order (empty: no tool is needed)."""
    q = normalize(question or "")
    if not q.strip() or is_general(q):
        return []
    found = [name for name, pat in _PATTERNS if pat.search(q)]
    if "similar" in found:
        # "show me similar events" is a search, not a drawing; its other words describe
        # the events searched for
        found = ["similar"] + [f for f in found if f in ("render",) and re.search(r"\b(draw|plot|render)\b", q, re.I)]
    if "classify" in found and re.search(r"\bwhy\b|\bexplain|\breason|\bevidence\b|\bjustif|\bhow do you know\b", q, re.I):
        found.append("reasons")
    if "counts" in found and set(found) & {"michel", "length", "dedx", "gap", "energy"} and \
            not re.search(r"\bhow many\b|\bnumber of\b|\bcount\b|\btopology\b|\blist\b|\bparticles\b", q, re.I):
        found.remove("counts")   # "how long is the muon" asks a length, not a count
    if "segment" in found and "counts" in found and not re.search(r"\bhow many\b|\bnumber of\b|\bcount\b", q, re.I):
        found.remove("counts")   # "segment into tracks and showers" names classes, not a count
    if "vertex" in found and "counts" in found and re.search(r"\bhow many\b|\bnumber of\b|\bmultiplicity\b", q, re.I) \
            and re.search(r"\b(from|out of|at|near|around|leaving|emerging from|attached to) the (primary )?vert(ex|ices)\b", q, re.I) \
            and not re.search(r"\bwhere\b|\bposition\b|\blocation\b", q, re.I):
        found.remove("vertex")   # "how many protons leave the vertex" counts; the vertex only says which
    if "visible_energy" in found and "energy" in found:
        found.remove("energy")
    if not found and _DEICTIC.search(q) and re.search(r"\bevent\b|\binteraction\b|\bhere\b", q, re.I):
        found = ["describe"]
    return found


def plan(found: Iterable[str]) -> list[str]:
    """Tools to run for the intents, each once, in order."""
    out: list[str] = []
    for i in found:
        for t in INTENT_TOOLS.get(i, ()):
            if t not in out:
                out.append(t)
    return out


_NUMWORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
             "nine": 9, "ten": 10, "twenty": 20}


def similar_k(question: str, default: int = DEFAULT_K) -> int:
    """k for find_similar: '10 similar events', 'top 3', 'five events like this' (default 5)."""
    m = re.search(r"\b(?:top|first|best)\s+(\d+|\w+)\b|\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|twenty)"
                  r"\s+(?:\w+\s+)?(?:similar|events?|neighbou?rs|matches|closest|nearest|most)", question, re.I)
    if not m:
        return default
    w = (m.group(1) or m.group(2)).lower()
    n = int(w) if w.isdigit() else _NUMWORDS.get(w)
    return max(1, min(50, n)) if n else default


def similar_query(question: str) -> Optional[str]:
    """A text query when the question describes the events to find instead of pointing at this
    one ("Find me a nu_e CC event with topology 1e 1p 0pi."); None for "events like this"."""
    if _DEICTIC.search(question):
        return None
    m = re.search(r"(?:find|search|look)\s+(?:me\s+)?(?:for\s*:?\s*)?(?:events?\s+like\s*:?\s*)?(.+)$", question.strip(), re.I)
    if not m:
        return None
    text = re.sub(r"^\d+\s+", "", m.group(1)).strip(" .?!:")
    return text[:300] or None


def render_view(question: str) -> str:
    q = question.lower()
    if re.search(r"\bxz\b|from above|top view", q):
        return "xz"
    if re.search(r"\byz\b|side view|from the side", q):
        return "yz"
    return "3d"
