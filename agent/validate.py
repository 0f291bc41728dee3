"""Expert validation: every physics claim of an answer, checked against the tools' measurements.

    from larsight.agent.validate import extract_claims, check_claims, validate
    claims = extract_claims("nu_mu CC: a 45.3 cm MIP-like muon track leaves the vertex ...")
    checks = check_claims(claims, evidence)          # agent.evidence.Evidence
    report = validate(text, evidence)                # Validation: checks, counts, table()

Claims are typed (``Claim.kind``; the kinds, example phrases and what each is checked against
are listed in :mod:`larsight.agent.claims`).

Verdicts: ``supported`` (the measurement agrees within the tolerance), ``contradicted`` (it
disagrees), ``unverifiable`` (nothing measured it). Each check carries the measured numbers
(``evidence``) and the tolerance it used (``TOLERANCES``; physics numbers of liquid argon, as
in ``events/sim/medium.py``: MIP 2.105 MeV/cm, electron showers start at ~1 MIP, photon showers at
~2 MIP; the rest are resolution estimates stated here).

How claims are read from an answer (and which language is not a claim about the event):
``agent.claims``; ``extract_claims`` and ``Claim`` are imported here too.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Literal, Optional

from pydantic import BaseModel, Field

from larsight.events.vocabulary import CLASS_TEXT, MIP_DEDX

from .claims import Claim, extract_claims, split_clauses, split_sentences
from .evidence import Evidence

__all__ = ["Claim", "Check", "Validation", "extract_claims", "check_claims", "validate",
           "revise", "annotate", "split_sentences", "TOLERANCES"]


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


def _verdict(ok: bool) -> Verdict:
    return "supported" if ok else "contradicted"


def _check_event_class(claim: Claim, ev: Evidence) -> Check:
    if ev.event_class is None:
        return _unverifiable(claim, "the event class", "classify_event")
    same = ev.event_class == claim.label
    ok = (not same) if claim.qualifier == "not" else same
    probs = {c: round(p, 3) for c, p in ev.class_probabilities.items()}
    return Check(claim=claim, verdict=_verdict(ok),
                 evidence={"predicted": ev.event_class, **({"p": probs} if probs else {})},
                 tolerance="argmax class", tool=ev.tools.get("event_class", "classify_event"))


def _check_vertex(claim: Claim, ev: Evidence) -> Check:
    if ev.vertex_cm is None:
        return _unverifiable(claim, "the vertex", "find_vertex")
    d = math.dist(ev.vertex_cm, claim.vector)
    tol = TOLERANCES["vertex"]["cm"]
    return Check(claim=claim, verdict=_verdict(d <= tol),
                 evidence={"vertex_cm": list(ev.vertex_cm), "distance_cm": round(d, 2)},
                 tolerance=f"{tol:g} cm", tool=ev.tools.get("vertex", "find_vertex"))


def _check_count(claim: Claim, ev: Evidence) -> Check:
    """``present``, ``absent`` and ``count`` claims."""
    n = ev.count(claim.particle or "")
    if n is None:
        return _unverifiable(claim, f"the {claim.particle} count", "reconstruct")
    if claim.kind == "present":
        ok = n >= 1
    elif claim.kind == "absent":
        ok = n == 0
    else:
        ok = n == int(claim.value or 0)
    return Check(claim=claim, verdict=_verdict(ok),
                 evidence={f"n_{claim.particle}": n}, tolerance="exact count",
                 tool=ev.tools.get("particles", "reconstruct"))


def _check_michel(claim: Claim, ev: Evidence) -> Check:
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
    return Check(claim=claim, verdict=_verdict(ok), evidence=evidence,
                 tolerance="present / absent" if claim.value is None else "exact count",
                 tool=ev.tools.get("michel", "reconstruct"))


def _check_track_length(claim: Claim, ev: Evidence) -> Check:
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
    return Check(claim=claim, verdict=_verdict(ok),
                 evidence={"length_cm": round(best.length_cm, 1), "type": best.type,
                           **({"all_cm": [round(p.length_cm, 1) for p in cands]} if len(cands) > 1 else {})},
                 tolerance=_tol_text("track_length"), tool=ev.tools.get("particles", "reconstruct"))


def _check_shower_dedx(claim: Claim, ev: Evidence) -> Check:
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
    return Check(claim=claim, verdict=_verdict(ok),
                 evidence={"start_dedx_mev_cm": round(best.start_dedx_mev_cm, 2), "type": best.type},
                 tolerance=tol, tool=ev.tools.get("particles", "reconstruct"))


def _check_shower_gap(claim: Claim, ev: Evidence) -> Check:
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
    return Check(claim=claim, verdict=_verdict(ok),
                 evidence={"gaps_cm": gaps}, tolerance=tol, tool=ev.tools.get("particles", "reconstruct"))


def _check_visible_energy(claim: Claim, ev: Evidence) -> Check:
    if ev.visible_energy_mev is None:
        return _unverifiable(claim, "the visible energy", "segment")
    rel = TOLERANCES["visible_energy"]["rel"]
    ok = abs(ev.visible_energy_mev - claim.value) <= rel * ev.visible_energy_mev + 1.0
    return Check(claim=claim, verdict=_verdict(ok),
                 evidence={"visible_energy_mev": round(ev.visible_energy_mev, 1)},
                 tolerance=f"{100 * rel:g}%", tool=ev.tools.get("visible_energy", "segment"))


def _check_energy(claim: Claim, ev: Evidence) -> Check:
    if claim.qualifier == "visible":
        return _check_visible_energy(claim, ev)
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
    return Check(claim=claim, verdict=_verdict(ok),
                 evidence={"energy_mev": round(best.energy_mev, 1), "type": best.type,
                           **({"lower_bound": True} if best.energy_is_lower_bound else {})},
                 tolerance=_tol_text("energy"), tool=ev.tools.get("particles", "reconstruct"))


_CHECKERS = {
    "event_class": _check_event_class, "vertex": _check_vertex, "present": _check_count,
    "absent": _check_count, "count": _check_count, "michel": _check_michel,
    "track_length": _check_track_length, "shower_dedx": _check_shower_dedx,
    "shower_gap": _check_shower_gap, "energy": _check_energy,
}
"""The check of each claim kind (``ClaimKind``)."""


def check_claim(claim: Claim, ev: Evidence) -> Check:
    """The verdict on one claim from the evidence (see the module docstring)."""
    checker = _CHECKERS.get(claim.kind)
    if checker is None:  # pragma: no cover - every ClaimKind has a checker
        return _unverifiable(claim, claim.kind, None)
    return checker(claim, ev)


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
        parts = split_clauses(sentence)
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
