"""The explanation corpus: grounded explanations written from the observations.

    from larsight.qformer.corpus.explanations import explanation_examples
    train = explanation_examples(20000, seed=0, split="train")
    held = explanation_examples(200, seed=1, split="heldout")     # templates training never sees

Each example samples a physically plausible set of measurements (an ``agent.evidence.Evidence``
as JSON, ``evidence``): an event class with probabilities, a vertex, particles that fit a
nu_e CC, nu_mu CC or NC final state (muon tracks of 20-400 cm with or without a Michel electron,
protons of 2-60 cm, charged pions, electron showers that start within 1 cm of the vertex at
about 1 MIP, photon showers that convert 2-40 cm away at about 2 MIP, pi0 photon pairs), and
now and then a classifier that disagrees with the particles, or an electron candidate that
looks photon-like. The question comes from many phrasings (why this class, why not another,
could a pi0 fake the electron, which particles, how confident); the target is an explanation of
2-5 sentences written from the measurements with several sentence templates per fact, in
varying order, minor facts sometimes left out. Every number of a target is copied from
``observations`` (``explain_schema.evidence_text``); ``agent.validate`` finds no contradicted
claim in any target (tests/test_explanations.py).

The split is by template (``actions.template_split``), as in the action corpus: question
templates and sentence templates of the held-out split are never trained on. Deterministic:
example ``i`` of a seed is drawn from ``numpy.random.default_rng([seed, i, split, 16])``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from larsight.events.vocabulary import CLASS_TEXT

from . import explanation_phrases as P
from .actions import SPLITS, split_templates
from .explain_schema import MAX_PARTICLES, evidence_text, explain_prompt, fmt_dedx, fmt_energy, fmt_length, fmt_prob, mip_level

__all__ = ["explanation_examples", "QUESTION_KINDS", "sample_evidence"]

QUESTION_KINDS = tuple(P.QUESTIONS)
KIND_WEIGHTS = {"why": 0.34, "why_not": 0.18, "pi0": 0.18, "particles": 0.15, "confidence": 0.15}
CLASSES = ("nue_cc", "numu_cc", "nc")
VOLUME_CM = 230.4
TOOLS = {"event_class": "classify_event", "vertex": "find_vertex", "particles": "reconstruct",
         "michel": "reconstruct", "visible_energy": "segment"}


@dataclass
class _Particle:
    """A reconstructed particle, with the fields of ``agent.evidence.ParticleEvidence``."""

    type: str
    kind: str
    length_cm: Optional[float] = None
    energy_mev: Optional[float] = None
    start_dedx_mev_cm: Optional[float] = None
    gap_cm: Optional[float] = None
    michel: Optional[bool] = None
    energy_is_lower_bound: bool = False
    id: Optional[int] = None


@dataclass
class _Evidence:
    """The measurements of one example, with the fields of ``agent.evidence.Evidence``."""

    event_class: str
    class_probabilities: dict
    vertex_cm: Optional[tuple]
    particles: list
    counts: dict = field(default_factory=dict)
    visible_energy_mev: Optional[float] = None
    tools: dict = field(default_factory=lambda: dict(TOOLS))
    photon_pair: bool = False
    gapped_electron: bool = False


# ============================================================================ measurements
def _r(x: float, n: int = 2) -> float:
    return float(round(float(x), n))


def _muon(rng) -> _Particle:
    length = float(np.exp(rng.uniform(np.log(20), np.log(400))))
    lower = bool(rng.random() < 0.35)
    mich = (not lower) and bool(rng.random() < 0.4)
    return _Particle("muon", "track", _r(length), _r((2.2 * length + 35) * rng.uniform(0.92, 1.08)),
                     gap_cm=_r(rng.uniform(0, 1.5)), michel=mich, energy_is_lower_bound=lower)


def _proton(rng) -> _Particle:
    length = float(rng.uniform(2, 60))
    return _Particle("proton", "track", _r(length), _r((length / 2.34e-3) ** (1 / 1.76) * rng.uniform(0.95, 1.05)),
                     gap_cm=_r(rng.uniform(0, 1.5)), michel=False)


def _pion(rng) -> _Particle:
    length = float(rng.uniform(10, 150))
    lower = bool(rng.random() < 0.3)
    return _Particle("pion", "track", _r(length), _r((2.2 * length + 25) * rng.uniform(0.9, 1.1)),
                     gap_cm=_r(rng.uniform(0, 1.5)), michel=bool(rng.random() < 0.1) and not lower,
                     energy_is_lower_bound=lower)


def _electron(rng, gapped: bool) -> _Particle:
    energy = float(np.exp(rng.uniform(np.log(80), np.log(1500))))
    if gapped:   # an electron label on a shower that starts like a photon
        gap, dedx = rng.uniform(3.5, 25), rng.uniform(3.4, 5.0)
    else:
        gap, dedx = rng.uniform(0, 0.9), float(np.clip(rng.normal(2.1, 0.25), 1.5, 2.9))
    return _Particle("electron", "shower", energy_mev=_r(energy), start_dedx_mev_cm=_r(dedx, 3), gap_cm=_r(gap))


def _photon(rng) -> _Particle:
    gap = float(np.clip(rng.exponential(14.0), 2.0, 40.0))
    dedx = float(np.clip(rng.normal(4.2, 0.4), 3.4, 5.2))
    return _Particle("photon", "shower", energy_mev=_r(rng.uniform(30, 500)), start_dedx_mev_cm=_r(dedx, 3),
                     gap_cm=_r(gap))


def _content(rng, truth: str) -> tuple[list[_Particle], bool, bool]:
    """Particles of a final state of class ``truth`` (and whether it has a photon pair / a
    photon-like electron)."""
    parts: list[_Particle] = []
    gapped = False
    if truth == "numu_cc":
        parts.append(_muon(rng))
    elif truth == "nue_cc":
        gapped = bool(rng.random() < 0.15)
        parts.append(_electron(rng, gapped))
    parts += [_proton(rng) for _ in range(int(rng.choice(4, p=[0.25, 0.4, 0.2, 0.15])))]
    parts += [_pion(rng) for _ in range(int(rng.choice(3, p=[0.6, 0.3, 0.1])))]
    pair = bool(rng.random() < {"numu_cc": 0.2, "nue_cc": 0.15, "nc": 0.55}[truth])
    if pair:
        parts += [_photon(rng), _photon(rng)]
    elif truth == "nc" and rng.random() < 0.2:
        parts.append(_photon(rng))
    if not parts:
        parts.append(_proton(rng))
    return parts, pair, gapped


def _probabilities(rng, predicted: str, agree: bool) -> dict[str, float]:
    p = rng.uniform(0.55, 0.99) if agree and rng.random() > 0.15 else rng.uniform(0.4, 0.6 if agree else 0.8)
    rest = 1.0 - p
    lo, hi = max(0.0, rest - p + 0.01), min(rest, p - 0.01)
    a = rng.uniform(lo, hi) if hi > lo else rest / 2
    others = [c for c in CLASSES if c != predicted]
    rng.shuffle(others)
    return {predicted: _r(p, 4), others[0]: _r(a, 4), others[1]: _r(rest - a, 4)}


def sample_evidence(rng: np.random.Generator) -> _Evidence:
    """One plausible set of measurements (see the module docstring)."""
    truth = CLASSES[int(rng.choice(3, p=[0.35, 0.4, 0.25]))]
    parts, pair, gapped = _content(rng, truth)
    agree = bool(rng.random() < 0.82)
    predicted = truth if agree else str(rng.choice([c for c in CLASSES if c != truth]))
    parts.sort(key=lambda p: -(p.energy_mev or 0.0))
    while any(p.type in ("muon", "electron") for p in parts[MAX_PARTICLES:]):
        # the charged lepton stays among the particles the observations list
        drop = max(i for i, p in enumerate(parts) if p.type not in ("muon", "electron"))
        pair = pair and parts[drop].type != "photon"
        del parts[drop]
    for i, p in enumerate(parts):
        p.id = i
    counts = {k: sum(p.type == k for p in parts) for k in ("muon", "electron", "photon", "proton", "pion", "kaon")}
    counts.update(pi0=int(pair), track=sum(p.kind == "track" for p in parts),
                  shower=sum(p.kind == "shower" for p in parts), michel=sum(bool(p.michel) for p in parts))
    vertex = tuple(_r(x, 1) for x in rng.uniform(10, VOLUME_CM - 10, size=3)) if rng.random() < 0.92 else None
    vis = _r(sum(p.energy_mev or 0 for p in parts) * rng.uniform(0.85, 1.1), 2) if rng.random() < 0.8 else None
    return _Evidence(event_class=predicted, class_probabilities=_probabilities(rng, predicted, agree),
                     vertex_cm=vertex, particles=parts, counts=counts, visible_energy_mev=vis,
                     photon_pair=pair, gapped_electron=gapped)


def _evidence_json(ev: _Evidence) -> dict:
    """The measurements as ``agent.evidence.Evidence`` JSON (``Evidence.model_validate`` reads it)."""
    return {"event_class": ev.event_class, "class_probabilities": dict(ev.class_probabilities),
            "vertex_cm": list(ev.vertex_cm) if ev.vertex_cm else None,
            "particles": [asdict(p) for p in ev.particles], "counts": dict(ev.counts),
            "visible_energy_mev": ev.visible_energy_mev, "tools": dict(ev.tools)}


# ============================================================================ writing
_WORDS = {1: "one", 2: "two", 3: "three"}
_NOUN = {"muon": ("muon", "muons"), "electron": ("electron", "electrons"), "photon": ("photon", "photons"),
         "proton": ("proton", "protons"), "pion": ("charged pion", "charged pions")}


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


class _Writer:
    """Sentences of one target: a template per fact from the split's share of its list."""

    def __init__(self, rng: np.random.Generator, split: str, ev: _Evidence):
        self.rng, self.split, self.ev = rng, split, ev
        self.templates: list[str] = []

    def say(self, key: str, **slots) -> str:
        tpl = _pick(self.rng, split_templates(f"explain|{key}", P.S[key], self.split))
        self.templates.append(f"{key}|{tpl}")
        return tpl.format(**slots)

    def why(self, key: str, **slots) -> str:
        tpl = _pick(self.rng, split_templates(f"explain_why|{key}", P.WHY[key], self.split))
        self.templates.append(f"why|{key}|{tpl}")
        return tpl.format(**slots)

    def count(self, kind: str, n: int) -> str:
        one, many = _NOUN[kind]
        num = _WORDS[n] if n in _WORDS and self.rng.random() < 0.3 else str(n)
        return f"{num} {one if n == 1 else many}"


def _shown(ev: _Evidence) -> list[_Particle]:
    """The particles the observations list (the most energetic ``MAX_PARTICLES``)."""
    return sorted(ev.particles, key=lambda p: -(p.energy_mev or 0.0))[:MAX_PARTICLES]


def _first(ev: _Evidence, t: str) -> Optional[_Particle]:
    ps = [p for p in _shown(ev) if p.type == t]
    return max(ps, key=lambda p: p.length_cm or p.energy_mev or 0) if ps else None


def _shower_slots(p: _Particle) -> dict:
    return {"E": fmt_energy(p.energy_mev), "g": fmt_length(p.gap_cm), "d": fmt_dedx(p.start_dedx_mev_cm),
            "m": mip_level(p.start_dedx_mev_cm)}


def _uncertainty(w: _Writer) -> Optional[str]:
    """Why the class is uncertain (a reason clause), or None when the particles back it."""
    ev = w.ev
    c, mu, el = ev.event_class, _first(ev, "muon"), _first(ev, "electron")
    if c == "nue_cc" and el is None:
        return w.why("no_electron")
    if c == "nue_cc" and ev.gapped_electron:
        return w.why("gapped", **_shower_slots(el))
    if c == "numu_cc" and mu is None:
        return w.why("no_muon")
    if c == "nc" and mu is not None:
        return w.why("muon", L=fmt_length(mu.length_cm))
    if c == "nc" and el is not None:
        return w.why("electron", **_shower_slots(el))
    if ev.class_probabilities.get(c, 1.0) < 0.55:
        return w.why("low_p")
    return None


def _class_sentence(w: _Writer, alts: bool) -> list[str]:
    ev = w.ev
    slots = {"C": CLASS_TEXT[ev.event_class], "p": fmt_prob(ev.class_probabilities[ev.event_class])}
    why = _uncertainty(w)
    out = [w.say("class_uncertain", why=why, **slots) if why else w.say("class", **slots)]
    if alts:
        others = sorted(((k, v) for k, v in ev.class_probabilities.items() if k != ev.event_class), key=lambda kv: -kv[1])
        out.append(w.say("alts", alts=" and ".join(f"{CLASS_TEXT[k]} {fmt_prob(v)}" for k, v in others)))
    return out


def _lepton_facts(w: _Writer) -> list[str]:
    """What the charged lepton (or its absence) says."""
    ev, rng = w.ev, w.rng
    mu, el = _first(ev, "muon"), _first(ev, "electron")
    out = []
    if mu is not None:
        tpl_mich = mu.michel and rng.random() < 0.7
        s = w.say("muon", L=fmt_length(mu.length_cm), mich=w.say("mich") if tpl_mich else "")
        if mu.michel and "Michel" not in s:
            s += " " + w.say("michel_sent")
        elif not any(p.michel for p in ev.particles) and rng.random() < 0.3:
            s += " " + w.say("no_michel")
        if rng.random() < 0.3:
            s += " " + w.say("muon_energy_lb" if mu.energy_is_lower_bound else "muon_energy", E=fmt_energy(mu.energy_mev))
        out.append(s)
    if el is not None:
        out.append(w.say("electron_gapped" if ev.gapped_electron else "electron", **_shower_slots(el)))
    if mu is None and el is None:
        out.append(w.say("no_lepton"))
    elif mu is None and rng.random() < 0.6:
        out.append(w.say("no_muon"))
    elif el is None and rng.random() < 0.4:
        out.append(w.say("no_electron"))
    return out


def _photon_facts(w: _Writer) -> list[str]:
    ph = [p for p in _shown(w.ev) if p.type == "photon"]
    if len(ph) == 2:
        a, b = ph
        s = w.say("photon_pair", g1=fmt_length(a.gap_cm), g2=fmt_length(b.gap_cm), d1=fmt_dedx(a.start_dedx_mev_cm),
                  d2=fmt_dedx(b.start_dedx_mev_cm))
        return [s + (" " + w.say("pi0_word") if w.ev.photon_pair and w.rng.random() < 0.8 else "")]
    return [w.say("photon_one", **_shower_slots(p)) for p in ph[:1]]


def _minor_facts(w: _Writer, p_each: float) -> list[str]:
    ev, rng = w.ev, w.rng
    out = []
    protons = [p for p in _shown(ev) if p.type == "proton"]
    pions = [p for p in _shown(ev) if p.type == "pion"]
    if protons and rng.random() < p_each:
        n = ev.counts["proton"]
        out.append(w.say("proton_one", L=fmt_length(protons[0].length_cm)) if n == 1 and rng.random() < 0.5
                   else w.say("protons", N=w.count("proton", n)))
    if pions and rng.random() < p_each:
        out.append(w.say("pions", N=w.count("pion", ev.counts["pion"])))
    if ev.visible_energy_mev is not None and rng.random() < p_each / 2:
        out.append(w.say("visible", E=fmt_energy(ev.visible_energy_mev)))
    if ev.vertex_cm is not None and rng.random() < p_each / 4:
        out.append(w.say("vertex", V="(" + ", ".join(fmt_length(x) for x in ev.vertex_cm) + ") cm"))
    return out


def _not_sentence(w: _Writer, y: str) -> str:
    """Why the event is not of class ``y`` (or that the particles cannot rule it out)."""
    ev = w.ev
    mu, el = _first(ev, "muon"), _first(ev, "electron")
    if y == "numu_cc" and mu is None:
        return w.say("not_numu")
    if y == "nue_cc" and el is None:
        return w.say("not_nue_photons" if any(p.type == "photon" for p in ev.particles) else "not_nue")
    if y == "nc" and mu is not None:
        return w.say("not_nc_muon")
    if y == "nc" and el is not None and not ev.gapped_electron:
        return w.say("not_nc_electron")
    return w.say("cannot_rule_out", Y=CLASS_TEXT[y])


def _pi0_answer(w: _Writer) -> list[str]:
    """Could a pi0 fake the electron shower, and what tells them apart."""
    ev, rng = w.ev, w.rng
    el = _first(ev, "electron")
    out = []
    if el is None:
        out.append(w.say("no_shower_to_fake"))
        out += _photon_facts(w)
        if len(out) < 2 or rng.random() < 0.5:
            out.insert(0, _class_sentence(w, False)[0])
        return out
    if rng.random() < 0.5:
        out.append(w.say("pi0_test"))
    out.append(w.say("electron_gapped" if ev.gapped_electron else "electron", **_shower_slots(el)))
    out.append(w.say("pi0_verdict_g" if ev.gapped_electron else "pi0_verdict_e"))
    if rng.random() < 0.5:
        out += _photon_facts(w)
    return out


def _target(w: _Writer, kind: str, asked: str) -> list[str]:
    """The sentences that answer a question of ``kind`` about class ``asked``."""
    ev, rng = w.ev, w.rng
    if kind == "pi0":
        return _pi0_answer(w)
    if kind == "why_not" or asked != ev.event_class:
        not_s = _not_sentence(w, asked)
        # the class is stated when the particles cannot exclude the class asked about
        head = _class_sentence(w, False) if w.templates[-1].startswith("cannot_rule_out") or rng.random() < 0.6 else []
        body = [not_s] + _lepton_facts(w)[:1]
        extra = _minor_facts(w, 0.3)
        rng.shuffle(extra)
        return head + body + extra
    head = _class_sentence(w, kind == "confidence" or rng.random() < 0.25)
    body = _lepton_facts(w)
    extra = _photon_facts(w) + _minor_facts(w, 0.6 if kind == "particles" else 0.35)
    if kind == "particles" and rng.random() < 0.4:
        c = ev.counts
        extra.append(w.say("counts", N=", ".join(w.count(k, c[k]) for k in ("muon", "electron", "proton"))
                           + " and " + w.count("pion", c["pion"])))
    if rng.random() < 0.2:
        extra.append(_not_sentence(w, str(rng.choice([c for c in CLASSES if c != ev.event_class]))))
    rng.shuffle(extra)
    return head + body + extra


def _question(rng, split: str, ev: _Evidence) -> tuple[str, str, str, str]:
    """(kind, question, the class it asks about, template)."""
    kinds = list(KIND_WEIGHTS)
    kind = kinds[int(rng.choice(len(kinds), p=np.array([KIND_WEIGHTS[k] for k in kinds])))]
    tpl = _pick(rng, split_templates(f"explain_q|{kind}", P.QUESTIONS[kind], split))
    others = [c for c in CLASSES if c != ev.event_class]
    asked = str(rng.choice(others)) if kind == "why_not" or rng.random() < 0.12 else ev.event_class
    name = _pick(rng, P.CLASS_ASKED[asked])
    text = tpl.replace("{X}", name).replace("{Xs}", name).replace("{Y}", name)
    if "{X" not in tpl and "{Y}" not in tpl:
        asked = ev.event_class
    return kind, text, asked, f"{kind}|{tpl}"


MAX_CHARS = 300
"""Sentences after the second are kept while the target stays this short (about 90 tokens)."""


def _n_sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


def _fit(pieces: list[str]) -> list[str]:
    """The leading pieces (one or more sentences each) within 5 sentences and ``MAX_CHARS``."""
    out: list[str] = []
    for s in pieces:
        text = " ".join(out + [s])
        if out and (_n_sentences(text) > 5 or (_n_sentences(text) > 2 and len(text) > MAX_CHARS)):
            break
        out.append(s)
    return out


def explanation_examples(n: int, seed: int = 0, split: str = "train", start: int = 0) -> list[dict]:
    """``n`` examples (indices ``start`` .. ``start + n - 1``) of a split: ``kind``, ``question``,
    ``evidence`` (``agent.evidence.Evidence`` JSON), ``observations`` (``evidence_text``),
    ``prompt`` (``explain_prompt``), ``target`` (2-5 sentences), ``template`` (the question
    template and every sentence template used), ``split``, ``index``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0 or start < 0:
        raise ValueError("explanation_examples: n and start must be >= 0")
    out = []
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i, SPLITS.index(split), 16])
        ev = sample_evidence(rng)
        kind, question, asked, qtpl = _question(rng, split, ev)
        w = _Writer(rng, split, ev)
        sentences = _fit(_target(w, kind, asked))
        out.append({"kind": kind, "question": question, "evidence": _evidence_json(ev),
                    "observations": evidence_text(ev), "prompt": explain_prompt(question, ev),
                    "target": " ".join(sentences), "template": [qtpl] + w.templates, "split": split, "index": i})
    return out
