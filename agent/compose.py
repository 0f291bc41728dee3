"""Answers written from the tools' measurements, for the intents a question has
(``agent.intents``).

``compose(question, intents, observations, evidence)`` writes the answer from the
observations, in sentences the validator reads back (``agent.validate``): every number in an
answer comes from a tool. Data that is not a claim about the event (other events' summaries,
file names, error messages) is quoted in backticks, which the validator skips.
``general_answer`` answers a question that needs no tool (a definition, or a polite refusal).
"""
from __future__ import annotations

import re
from typing import Optional

from larsight.events.vocabulary import CLASS_TEXT, MIP_DEDX
from larsight.qformer.corpus import DEFINITIONS

from .evidence import Evidence, ParticleEvidence

__all__ = ["compose", "general_answer"]


_NOUN = {"muon": ("muon", "muons"), "electron": ("electron", "electrons"), "photon": ("photon", "photons"),
         "proton": ("proton", "protons"), "pion": ("charged pion", "charged pions"), "kaon": ("kaon", "kaons"),
         "pi0": ("pi0", "pi0s"), "track": ("track", "tracks"), "shower": ("shower", "showers"),
         "michel": ("Michel electron", "Michel electrons")}


def _count_phrase(p: str, n: int, plural_none: bool = False) -> str:
    one, many = _NOUN.get(p, (p, p + "s"))
    return f"no {many if plural_none else one}" if n == 0 else f"{n} {one if n == 1 else many}"


def _vec(v) -> str:
    return "(" + ", ".join(f"{x:.1f}" for x in v) + ") cm"


def _particle_clause(p: ParticleEvidence) -> str:
    e = f"{p.energy_mev:.0f} MeV " if p.energy_mev is not None else ""
    noun = _NOUN.get(p.type, (p.type, ""))[0] if p.type != "unknown" else p.kind
    if p.kind == "track":
        s = f"a {e}{noun}" if p.type != "unknown" else f"a {e}track-like particle"
        if e and p.energy_is_lower_bound:
            # a track that leaves the volume (or may have interacted) only bounds its energy
            s += " (a lower bound: it leaves the detector or may have interacted)"
        if p.length_cm is not None:
            s += f" with a {p.length_cm:.1f} cm track"
        if p.michel:
            s += " ending with a Michel electron"
        return s
    s = f"a {e}{noun} shower" if p.type in ("electron", "photon") else f"a {e}shower"
    bits = []
    if p.gap_cm is not None:
        bits.append(f"that starts {p.gap_cm:.1f} cm from the vertex")
    if p.start_dedx_mev_cm is not None:
        bits.append(f"with {p.start_dedx_mev_cm:.1f} MeV/cm at its start")
    return s + (" " + " ".join(bits) if bits else "")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _failed(observations: list[dict], tool: str) -> Optional[str]:
    errs = [o.get("error") for o in observations if o.get("tool") == tool and not o.get("ok")]
    return errs[-1] if errs else None


def _output(observations: list[dict], tool: str) -> Optional[dict]:
    outs = [o["output"] for o in observations if o.get("tool") == tool and o.get("ok") and isinstance(o.get("output"), dict)]
    return outs[-1] if outs else None


def _err_sentence(tool: str, err: str) -> str:
    err = " ".join(str(err).split()).replace("`", "'")
    return f"The {tool} tool failed: `{err[:300]}`."


def compose(question: str, found: list[str], observations: list[dict], ev: Evidence) -> str:
    """The answer to ``question`` for the intents ``found`` from the observations."""
    out: list[str] = []
    q = question.lower()
    done: set[str] = set()

    def section(name: str) -> bool:
        if name in done:
            return False
        done.add(name)
        return True

    for it in found:
        if it == "classify" and section("classify"):
            part = _classify(ev, observations, reasons="reasons" in found)
            asked = _asked_class(question)
            if asked and ev.event_class and part:
                part[0] = ("Yes. " if asked == ev.event_class else "No. ") + part[0]
            out += part
        elif it == "vertex" and section("vertex"):
            out += _vertex(ev, observations)
        elif it == "michel" and section("michel"):
            if ev.michel_at_track_end() is None:
                err = _failed(observations, "reconstruct") or _failed(observations, "segment")
                out.append(_err_sentence("reconstruct", err) if err else "Michel electrons were not measured.")
            else:
                out += _michel(ev)
        elif it in ("counts", "length", "dedx", "gap", "energy", "reasons"):
            if ev.particles is None:
                if section("reco-missing"):
                    err = _failed(observations, "reconstruct")
                    out.append(_err_sentence("reconstruct", err) if err else
                               "The particles were not reconstructed, so I cannot say.")
                continue
            if it == "counts" and section("counts"):
                out += _counts(ev, q)
            elif it == "length" and section("length"):
                out += _length(ev, q)
            elif it == "dedx" and section("dedx"):
                out += _dedx(ev)
            elif it == "gap" and section("gap"):
                out += _gap(ev)
            elif it == "energy" and section("energy"):
                out += _energies(ev)
        elif it == "visible_energy" and section("visible_energy"):
            if ev.visible_energy_mev is not None:
                out.append(f"The visible energy is {ev.visible_energy_mev:.0f} MeV.")
            else:
                err = _failed(observations, "segment")
                out.append(_err_sentence("segment", err) if err else "The visible energy was not measured.")
        elif it == "segment" and section("segment"):
            out += _segment(observations)
        elif it == "similar" and section("similar"):
            out += _similar(observations)
        elif it == "describe" and section("describe"):
            out += _describe(observations, ev)
        elif it == "render" and section("render"):
            out += _render(observations)
    if not out:
        out.append("The tools gave nothing to answer this question with.")
    return " ".join(out)


def _asked_class(question: str) -> Optional[str]:
    """The class a yes/no question names ("Is this a nu_e CC event?"), else None."""
    m = re.match(r"\s*(is|was)\s+(this|it|the event)\s+(an?\s+)?(?P<c>nu_?e\s*cc|nu_?mu\s*cc|numu\s*cc|nue\s*cc|nc|"
                 r"neutral[- ]current)\b", question, re.I)
    if not m or re.search(r"\bor\b", question, re.I):
        return None
    c = m["c"].lower().replace(" ", "")
    return "nc" if c in ("nc",) or c.startswith("neutral") else "nue_cc" if c in ("nu_ecc", "nuecc") else "numu_cc"


def _classify(ev: Evidence, observations: list[dict], reasons: bool) -> list[str]:
    if ev.event_class is None:
        err = _failed(observations, "classify_event")
        return [_err_sentence("classify_event", err) if err else "The event was not classified."]
    c = ev.event_class
    probs = ev.class_probabilities
    p = probs.get(c)
    s = f"{CLASS_TEXT.get(c, c)}: the classifier gives p = {p:.2f}" if p is not None else f"{CLASS_TEXT.get(c, c)}."
    if probs:
        s += " (" + ", ".join(f"{CLASS_TEXT.get(k, k)} {v:.2f}" for k, v in
                              sorted(probs.items(), key=lambda kv: -kv[1])) + ")"
    out = [s.rstrip(".") + "."]
    if ev.particles is None:
        return out
    mu = sorted(ev.of_type("muon"), key=lambda t: -(t.length_cm or 0))
    el = sorted(ev.of_type("electron"), key=lambda t: (t.gap_cm if t.gap_cm is not None else 1e9))
    ph = ev.of_type("photon")
    if c == "numu_cc":
        if mu:
            m = mu[0]
            s = f"The muon track is {m.length_cm:.1f} cm long" if m.length_cm is not None else "A muon is reconstructed"
            if m.michel is True:
                s += " and ends with a Michel electron"
            out.append(s + ".")
        else:
            out.append("The reconstruction finds no muon, so this class is uncertain.")
        if el:
            out.append(f"The reconstruction also finds {_count_phrase('electron', len(el))}.")
    elif c == "nue_cc":
        if el:
            e = el[0]
            out.append(_cap(_particle_clause(e)) + ".")
            if e.start_dedx_mev_cm is not None:
                r = e.start_dedx_mev_cm / MIP_DEDX
                out.append(f"Its start dE/dx of {e.start_dedx_mev_cm:.1f} MeV/cm is {r:.1f} MIP.")
        else:
            out.append("The reconstruction finds no electron shower, so this class is uncertain.")
        if not mu:
            out.append("No muon is reconstructed.")
    else:
        leptons = len(mu) + len(el)
        if leptons == 0:
            out.append("The reconstruction finds no muon and no electron.")
        else:
            out.append(f"The reconstruction finds {_count_phrase('muon', len(mu))} and "
                       f"{_count_phrase('electron', len(el))}, so this class is uncertain.")
        for g in ph[:2]:
            out.append(_cap(_particle_clause(g)) + ".")
    return out


def _vertex(ev: Evidence, observations: list[dict]) -> list[str]:
    out = _output(observations, "find_vertex")
    if ev.vertex_cm is None:
        err = _failed(observations, "find_vertex")
        if err:
            return [_err_sentence("find_vertex", err)]
        status = (out or {}).get("status", "unknown")
        return [f"No common interaction vertex was found (status `{status}`)."]
    s = f"The vertex is at {_vec(ev.vertex_cm)}"
    if out:
        bits = []
        if out.get("n_particles_at_vertex") is not None:
            n = int(out["n_particles_at_vertex"])
            bits.append(f"{n} particle start{'s' if n != 1 else ''} within 3 cm")
        if out.get("confidence") is not None:
            bits.append(f"confidence {float(out['confidence']):.2f}")
        if out.get("status") and out["status"] != "ok":
            bits.append(f"status `{out['status']}`")
        if bits:
            s += " (" + ", ".join(bits) + ")"
    return [s + "."]


_ORDER = ("muon", "electron", "proton", "pion", "photon", "kaon")


def _counts(ev: Evidence, q: str) -> list[str]:
    out = []
    asked = [p for p in _ORDER if re.search(rf"\b{p}s?\b", q)]
    if re.search(r"\bgammas?\b", q) and "photon" not in asked:
        asked.append("photon")
    if re.search(r"\bleptons?\b", q):
        asked += [p for p in ("muon", "electron") if p not in asked]
    for p in asked:
        n = ev.count(p) or 0
        yesno = re.match(r"\s*(is there|are there|does (it|the event|this event) (have|contain)|do you see|"
                         r"any\b|has it)", q) and not re.search(r"\bhow many\b", q)
        prefix = ("Yes: " if n else "No: ") if yesno else ""
        out.append(f"{prefix}the reconstruction finds {_count_phrase(p, n)}." if prefix else
                   f"There {'is' if n == 1 else 'are'} {_count_phrase(p, n, plural_none=True)}.")
    if re.search(r"\btracks?\b|\bshowers?\b", q) and not asked:
        nt = ev.count('track') or 0
        out.append(f"There {'is' if nt == 1 else 'are'} {_count_phrase('track', nt, True)} and "
                   f"{_count_phrase('shower', ev.count('shower') or 0, True)}.")
    if not asked or re.search(r"\btopology\b|\bparticles\b|\blist\b|\bfinal[- ]state\b|\bcontent\b", q):
        parts = [_count_phrase(p, ev.count(p) or 0) for p in _ORDER if (ev.count(p) or 0) or p in ("muon", "electron", "proton", "pion")]
        out.append("The reconstruction finds " + ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "")
                   + parts[-1] + ".")
        vis = [p for p in (ev.particles or [])]
        if vis and re.search(r"\blist\b|\bparticles\b|\benerg", q) and not re.search(r"\benerg", q):
            out += _listing(vis)   # (an energy question lists them in its own section)
    return [o[:1].upper() + o[1:] for o in out]


def _listing(parts: list[ParticleEvidence], limit: int = 8) -> list[str]:
    parts = sorted(parts, key=lambda p: -(p.energy_mev or 0))
    items = [_particle_clause(p) for p in parts[:limit]]
    s = "Particles: " + "; ".join(items)
    if len(parts) > limit:
        s += f"; and {len(parts) - limit} smaller ones"
    return [s + "."]


def _michel(ev: Evidence) -> list[str]:
    has = ev.michel_at_track_end()
    if has is None:
        return ["Michel electrons were not measured."]
    if has:
        carriers = [p for p in (ev.particles or []) if p.michel]
        where = f"the {carriers[0].type} track" if carriers and carriers[0].type != "unknown" else "a track"
        return [f"Yes: a Michel electron is found at the end of {where}."]
    return ["No: no Michel electron is found at a track end."]


def _length(ev: Evidence, q: str) -> list[str]:
    tracks = [p for p in ev.tracks if p.length_cm is not None]
    if not tracks:
        return ["No track is reconstructed."]
    asked = [p for p in ("muon", "proton", "pion", "kaon") if re.search(rf"\b{p}s?\b", q)]
    out = []
    for a in asked:
        ts = sorted([t for t in tracks if t.type == a], key=lambda t: -t.length_cm)
        if ts:
            out.append(f"The {a} track is {ts[0].length_cm:.1f} cm long.")
        else:
            out.append(f"The reconstruction finds {_count_phrase(a, 0)}.")
    if not asked:
        t = max(tracks, key=lambda t: t.length_cm)
        who = f" ({t.type})" if t.type != "unknown" else ""
        out.append(f"The longest track is {t.length_cm:.1f} cm long{who}.")
    return out


def _dedx(ev: Evidence) -> list[str]:
    sh = [p for p in ev.showers if p.start_dedx_mev_cm is not None]
    if not sh:
        return ["No shower start dE/dx could be measured."]
    out = []
    for p in sorted(sh, key=lambda p: -(p.energy_mev or 0))[:3]:
        noun = f"{p.type} shower" if p.type in ("electron", "photon") else "shower"
        out.append(f"The {noun} starts with {p.start_dedx_mev_cm:.1f} MeV/cm "
                   f"({p.start_dedx_mev_cm / MIP_DEDX:.1f} MIP).")
    return out


def _gap(ev: Evidence) -> list[str]:
    sh = [p for p in ev.showers if p.gap_cm is not None]
    if not sh:
        return ["No shower start could be placed relative to the vertex."]
    out = []
    for p in sorted(sh, key=lambda p: -(p.energy_mev or 0))[:3]:
        noun = f"{p.type} shower" if p.type in ("electron", "photon") else "shower"
        out.append(f"The {noun} starts {p.gap_cm:.1f} cm from the vertex.")
    return out


def _energies(ev: Evidence) -> list[str]:
    out = []
    if ev.visible_energy_mev is not None:
        out.append(f"The visible energy is {ev.visible_energy_mev:.0f} MeV.")
    parts = [p for p in (ev.particles or []) if p.energy_mev is not None]
    if parts:
        out += _listing(parts)
    return out or ["No energies were measured."]


def _segment(observations: list[dict]) -> list[str]:
    seg = _output(observations, "segment")
    if seg is None:
        err = _failed(observations, "segment")
        return [_err_sentence("segment", err) if err else "The event was not segmented."]
    cc = seg.get("class_counts") or {}
    names = {"track": "track", "shower": "shower", "michel": "Michel", "delta": "delta", "low_energy": "low-energy"}
    bits = ", ".join(f"{names.get(k, k)} `{v}`" for k, v in cc.items())
    s = f"Segmentation of `{seg.get('n_points', '?')}` voxels by class: {bits}."
    s2 = (f"It finds `{seg.get('n_particles', '?')}` particle instances in "
          f"`{seg.get('n_interactions', '?')}` interaction group(s).")
    return [s, s2]


def _similar(observations: list[dict]) -> list[str]:
    res = _output(observations, "find_similar")
    if res is None:
        err = _failed(observations, "find_similar")
        return [_err_sentence("find_similar", err) if err else "No similar events were searched."]
    hits = [h for h in res.get("hits", []) if isinstance(h, dict)]
    if not hits:
        return [f"The index (`{res.get('n_indexed', 0)}` events) returned no match."]
    rows = []
    for h in hits:
        cls = CLASS_TEXT.get(h.get("event_class") or "", h.get("event_class") or "?")
        rows.append(f"`{h.get('key')}` (`{cls}`, `{h.get('topology') or '?'}`, similarity "
                    f"`{float(h.get('similarity', 0)):.2f}`)")
    what = "text " + f"`{res.get('query')}`" if res.get("query_kind") == "text" else "this event"
    out = [f"The {len(hits)} indexed events most similar to {what} (of `{res.get('n_indexed')}`): "
           + "; ".join(rows) + "."]
    classes: dict[str, int] = {}
    topos: dict[str, int] = {}
    for h in hits:
        classes[h.get("event_class") or "unknown"] = classes.get(h.get("event_class") or "unknown", 0) + 1
        if h.get("topology"):
            topos[h["topology"]] = topos.get(h["topology"], 0) + 1
    share = []
    c, n = max(classes.items(), key=lambda kv: kv[1])
    share.append(f"`{n} of {len(hits)}` are `{CLASS_TEXT.get(c, c)}`")
    if topos:
        t, n = max(topos.items(), key=lambda kv: kv[1])
        share.append(f"the most common topology is `{t}` (`{n} of {len(hits)}`)")
    e = [float(h["visible_energy_mev"]) for h in hits if h.get("visible_energy_mev") is not None]
    if e:
        share.append(f"visible energies span `{min(e):.0f}-{max(e):.0f} MeV`")
    out.append("What they share: " + "; ".join(share) + ".")
    return out


def _describe(observations: list[dict], ev: Evidence) -> list[str]:
    d = _output(observations, "describe")
    if d is None:
        err = _failed(observations, "describe")
        return [_err_sentence("describe", err) if err else "The event was not described."]
    for key in ("text", "description", "summary", "caption"):
        if isinstance(d.get(key), str) and d[key].strip():
            return [d[key].strip()]
    out = []
    if ev.event_class:
        out += _classify(ev, observations, reasons=True)
    if ev.vertex_cm is not None:
        out += _vertex(ev, observations)
    if ev.particles is not None:
        out += _counts(ev, "particles")
    return out or ["The description tool returned no text."]


def _render(observations: list[dict]) -> list[str]:
    r = _output(observations, "render")
    if r is None:
        err = _failed(observations, "render")
        return [_err_sentence("render", err) if err else "The event was not drawn."]
    f = r.get("file")
    view = {"3d": "3D", "xz": "XZ", "yz": "YZ"}.get(r.get("view", "3d"), "3D")
    return [f"The {view} display of the event is in `{f}`." if f else f"The {view} display was made but not saved."]


# ============================================================================ no tool needed
_STOP = set("what is a an the of do you how why does in are some tell from to and".split())


def general_answer(question: str) -> str:
    """A definition for a textbook question, or a polite refusal for anything unrelated."""
    words = {w for w in re.findall(r"[a-z0-9]+", question.lower()) if w not in _STOP}
    best, score = None, 0.0
    for q, a in DEFINITIONS:
        qw = {w for w in re.findall(r"[a-z0-9]+", q.lower()) if w not in _STOP}
        s = len(words & qw) / max(1, len(qw))
        if s > score:
            best, score = a, s
    if best is not None and score >= 0.5:
        return best
    return ("I answer questions about liquid-argon TPC events (class, vertex, particles, energies, "
            "similar events) with my analysis tools; this question does not need them, and I have "
            "nothing reliable to say about it.")
