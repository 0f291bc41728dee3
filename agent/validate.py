"""Expert validation: every physics claim of an answer, checked against the tools' measurements.

    from larsight.agent.validate import check_claims, revise, validate
    checks = check_claims(composition.claims, evidence)   # typed claims (agent.render.Composition)
    revised = revise(composition, checks, evidence)         # without contradicted claims, plus the measurements
    report = validate(free_text, evidence)                  # free text of a language model: Validation

Claims are typed (``agent.claims.Claim``). The agent's own answers are compositions of typed
claims and are checked directly; only free text written by a language model is read into claims
first (``agent.claims.extract_claims``).

Verdicts: ``supported`` (the measurement agrees within the tolerance), ``contradicted`` (it
disagrees), ``unverifiable`` (nothing measured it). Each check carries the measured numbers
(``evidence``) and the tolerance it used (``TOLERANCES``; physics numbers of liquid argon, as
in ``events/sim/medium.py``: MIP 2.105 MeV/cm, electron showers start at ~1 MIP, photon showers at
~2 MIP; the rest are resolution estimates stated here).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Optional

from pydantic import BaseModel, Field

from larsight.events.vocabulary import MIP_DEDX

from .claims import Claim, extract_claims, split_clauses, split_sentences
from .evidence import Evidence
from .render import Composition, FreeText, Sentence

__all__ = ["Claim", "Check", "Validation", "extract_claims", "check_claims", "validate",
           "revise", "split_sentences", "TOLERANCES", "fmt_evidence", "checks_table"]


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
        rows.append((c.claim.describe(), c.verdict, fmt_evidence(c.evidence), c.tolerance or "-",
                     c.tool or "-"))
    w = [min(max(len(r[i]) for r in rows), 60) for i in range(5)]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(str(x)[:60].ljust(w[i]) for i, x in enumerate(r)).rstrip())
        if k == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def fmt_evidence(ev: dict) -> str:
    """The measured numbers of a check in one line."""
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
    d = math.dist(ev.vertex_cm, claim.value)
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
    best = min(cands, key=lambda p: abs(p.length_cm - claim.number))
    ok = abs(best.length_cm - claim.number) <= _tol(best.length_cm, "track_length")
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
    """Read the claims of free text written by a language model and check them against ``evidence``."""
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
def _measured(kind: str, subject: str, value, ev: Evidence, tool: str, qualifier: Optional[str] = None) -> Claim:
    unit = {"event_class": None, "vertex": "cm", "count": "count", "absent": "count", "michel": "count",
            "track_length": "cm", "shower_dedx": "MeV/cm", "shower_gap": "cm", "energy": "MeV"}[kind]
    return Claim(kind=kind, subject=subject, value=value, unit=unit if value is not None else None, tool=tool,
                 qualifier=qualifier)


def correction(check: Check, ev: Evidence) -> Optional[Sentence]:
    """A sentence of typed claims stating what the tools measured instead of a contradicted claim."""
    c, got, tool = check.claim, check.evidence, check.tool or "reconstruct"
    if c.kind == "event_class" and ev.event_class:
        p = ev.class_probabilities.get(ev.event_class)
        return Sentence(template="The classifier says {0}" + (f" (p = {p:.2f})" if p is not None else "") + ".",
                        claims=[_measured("event_class", "event", ev.event_class, ev, tool)])
    if c.kind == "vertex" and ev.vertex_cm is not None:
        return Sentence(template="The vertex is at {0}.", claims=[_measured("vertex", "vertex", tuple(ev.vertex_cm), ev, tool)])
    if c.kind in ("present", "absent", "count") and ev.counts is not None and c.particle:
        n = ev.count(c.particle) or 0
        return Sentence(template="The reconstruction finds {0}.",
                        claims=[_measured("count" if n else "absent", c.particle, float(n), ev, tool)])
    if c.kind == "michel" and ev.michel_at_track_end() is not None:
        has = ev.michel_at_track_end()
        return Sentence(template=("A Michel electron is found at a track end." if has else
                                  "No Michel electron is found at a track end."),
                        claims=[_measured("michel", "michel", None, ev, tool, None if has else "absent")])
    if c.kind == "track_length" and "length_cm" in got:
        t = got.get("type") or "track"
        what = "longest track" if c.qualifier == "longest" else f"{t} track"
        return Sentence(template=f"The {what} is {{0}} long.", claims=[_measured(
            "track_length", t if t != "unknown" else "track", float(got["length_cm"]), ev, tool, c.qualifier)])
    return _shower_or_energy_correction(c, got, ev, tool)


def _shower_or_energy_correction(c: Claim, got: dict, ev: Evidence, tool: str) -> Optional[Sentence]:
    t = got.get("type")
    sub = t if t in ("electron", "photon") else "shower"
    if c.kind == "shower_dedx" and "start_dedx_mev_cm" in got:
        noun = f"{sub} shower" if sub != "shower" else "shower"
        return Sentence(template=f"The {noun} trunk measures {{0}}.",
                        claims=[_measured("shower_dedx", sub, float(got["start_dedx_mev_cm"]), ev, tool)])
    if c.kind == "shower_gap" and got.get("gaps_cm"):
        return Sentence(template="The nearest shower starts {0} from the vertex.",
                        claims=[_measured("shower_gap", "shower", float(min(got["gaps_cm"])), ev, tool)])
    if c.kind == "energy" and "energy_mev" in got:
        return Sentence(template=f"The reconstructed {t or 'particle'} energy is {{0}}.",
                        claims=[_measured("energy", t or "shower", float(got["energy_mev"]), ev, tool)])
    if c.kind == "energy" and "visible_energy_mev" in got:
        return Sentence(template="The visible energy is {0}.", claims=[_measured(
            "energy", "visible", float(got["visible_energy_mev"]), ev, tool, "visible")])
    return None


def revise(comp: Composition, checks: list[Check], evidence: Evidence) -> Composition:
    """``comp`` without its contradicted claims, followed by what the tools measured instead:
    typed sentences that hold a contradicted claim are dropped; free text loses the clauses
    (parts of sentences between ';') that hold one; one correction sentence per contradicted claim."""
    bad = [c for c in checks if c.verdict == "contradicted"]
    if not bad:
        return comp
    bad_keys = {c.claim.key() for c in bad if c.claim.source == "tools"}
    kept = [s for s in comp.sentences if not any(c.key() in bad_keys for c in s.claims)]
    have = {c.key() for s in kept for c in s.claims}
    for c in bad:
        fix = correction(c, evidence)
        if fix is not None and not all(k.key() in have for k in fix.claims):
            kept.append(fix)
            have |= {k.key() for k in fix.claims}
    free = comp.free
    if free is not None:
        text = _revise_free(free.text, [c for c in bad if c.claim.source == "text"])
        free = free.model_copy(update={"text": text}) if text.strip() else None
    return comp.model_copy(update={"sentences": kept, "free": free})


def _revise_free(text: str, bad: list[Check]) -> str:
    """Free text without the clauses that hold a contradicted claim read from it."""
    bad_at = [c.claim.start for c in bad]
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
            kept.append(s_[:1].upper() + s_[1:] + ".")
    return " ".join(kept).strip()


def as_composition(text: str, author: str = "model") -> Composition:
    """Free text of a language model (the openai brain's answer) as a composition."""
    return Composition(free=FreeText(text=text, author=author))
