"""Answers composed from the tools' measurements as typed claims, for what a question asks
(an ``agent.request.Request``: its intents, the species and class it names, its units).

``compose(request, observations, evidence)`` returns an ``agent.render.Composition``:
sentences whose claims (``agent.claims.Claim``) carry the measured values and the tool that
measured them, in the units the request asks for. The composer never reads the question's
words: the brain decided what it asks (the rules brain with ``request.request_from_question``,
the VLM brain from its action's arguments with ``request.request_from_action``). Nothing here
writes a number into text: ``agent.render`` does, once, at the end; ``agent.validate`` checks the
claims directly. Data that is not a claim about the event (other events' summaries, file names,
error messages) is plain text quoted in backticks. ``general_answer`` answers a question that
needs no tool (a definition, or a polite refusal).
"""
from __future__ import annotations

import re
from typing import Optional

from larsight.events.vocabulary import CLASS_TEXT
from larsight.qformer.corpus import DEFINITIONS

from .claims import Claim
from .evidence import Evidence, ParticleEvidence
from .render import NOUNS, Composition, Sentence
from .request import SPECIES_ORDER, TRACK_SPECIES, Request

__all__ = ["compose", "general_answer"]


def _s(template: str, *claims: Claim) -> Sentence:
    return Sentence(template=template, claims=list(claims))


def _tool(ev: Evidence, what: str, default: str) -> str:
    return ev.tools.get(what, default)


def _count(ev: Evidence, subject: str) -> Claim:
    """The measured count of ``subject`` ('absent' when none)."""
    n = ev.count(subject) or 0
    return Claim(kind="count" if n else "absent", subject=subject, value=float(n), unit="count",
                 tool=_tool(ev, "particles", "reconstruct"))


def _present(ev: Evidence, p) -> list[Claim]:
    """'there is a <species>' for a particle (or a species name) of a known type."""
    t = p if isinstance(p, str) else p.type
    return [Claim(kind="present", subject=t, value=1.0, unit="count", tool=_tool(ev, "particles", "reconstruct"))] \
        if t in NOUN_TYPES else []


NOUN_TYPES = ("muon", "electron", "photon", "proton", "pion", "kaon")


def _particle_clause(p: ParticleEvidence, ev: Evidence, first: int = 0) -> tuple[str, list[Claim]]:
    """A particle as a phrase with slots numbered from ``first``, and its claims."""
    tool = _tool(ev, "particles", "reconstruct")
    claims = _present(ev, p)
    e = ""
    if p.energy_mev is not None:
        e = f"{{{first + len(claims)}}} "
        claims.append(Claim(kind="energy", subject=p.type if p.type != "unknown" else p.kind, value=p.energy_mev,
                            unit="MeV", tool=tool))
    noun = NOUNS.get(p.type, (p.type,))[0] if p.type != "unknown" else p.kind
    if p.kind == "track":
        s = f"a {e}{noun}" if p.type != "unknown" else f"a {e}track-like particle"
        if e and p.energy_is_lower_bound:
            # a track that leaves the volume (or may have interacted) only bounds its energy
            s += " (a lower bound: it leaves the detector or may have interacted)"
        if p.length_cm is not None:
            s += f" with a {{{first + len(claims)}}} track"
            claims.append(Claim(kind="track_length", subject=p.type if p.type != "unknown" else "track",
                                value=p.length_cm, unit="cm", tool=tool))
        if p.michel:
            s += " ending with a Michel electron"
            claims.append(Claim(kind="michel", subject="michel", tool=_tool(ev, "michel", "reconstruct")))
        return s, claims
    s = f"a {e}{noun} shower" if p.type in ("electron", "photon") else f"a {e}shower"
    bits = []
    sub = p.type if p.type in ("electron", "photon") else "shower"
    if p.gap_cm is not None:
        bits.append(f"that starts {{{first + len(claims)}}} from the vertex")
        claims.append(Claim(kind="shower_gap", subject=sub, value=p.gap_cm, unit="cm", tool=tool))
    if p.start_dedx_mev_cm is not None:
        bits.append(f"with {{{first + len(claims)}}} at its start")
        claims.append(Claim(kind="shower_dedx", subject=sub, value=p.start_dedx_mev_cm, unit="MeV/cm", tool=tool))
    return s + (" " + " ".join(bits) if bits else ""), claims


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _failed(observations: list[dict], tool: str) -> Optional[str]:
    errs = [o.get("error") for o in observations if o.get("tool") == tool and not o.get("ok")]
    return errs[-1] if errs else None


def _output(observations: list[dict], tool: str) -> Optional[dict]:
    outs = [o["output"] for o in observations if o.get("tool") == tool and o.get("ok") and isinstance(o.get("output"), dict)]
    return outs[-1] if outs else None


def _err(tool: str, err: str) -> Sentence:
    err = " ".join(str(err).split()).replace("`", "'")
    return _s(f"The {tool} tool failed: `{err[:300]}`.")


def _missing(observations: list[dict], tool: str, shown_as: str, otherwise: str) -> Sentence:
    err = _failed(observations, tool)
    return _err(shown_as, err) if err else _s(otherwise)


_PARTICLE_INTENTS = ("counts", "length", "dedx", "gap", "energy", "reasons")


def compose(request: Request, observations: list[dict], ev: Evidence) -> Composition:
    """The answer to a ``Request`` (its intents, species, units: ``agent.request``) from the
    observations, as typed sentences."""
    out: list[Sentence] = []
    done: set[str] = set()
    for it in request.intents:
        key = "reco-missing" if it in _PARTICLE_INTENTS and ev.particles is None else it
        if key in done:
            continue
        done.add(key)
        if key == "reco-missing":
            out.append(_missing(observations, "reconstruct", "reconstruct",
                                "The particles were not reconstructed, so I cannot say."))
        else:
            out += _section(it, request, observations, ev)
    if not out:
        out.append(_s("The tools gave nothing to answer this question with."))
    return Composition(sentences=out, units=request.units)


def _section(it: str, req: Request, observations: list[dict], ev: Evidence) -> list[Sentence]:
    """The sentences of one intent."""
    if it == "classify":
        part = _classify(ev, observations)
        if req.hypothesis and ev.event_class and part:
            part[0] = part[0].model_copy(update={"template": ("Yes. " if req.hypothesis == ev.event_class
                                                              else "No. ") + part[0].template})
        return part
    if it == "vertex":
        return _vertex(ev, observations)
    if it == "michel":
        if ev.michel_at_track_end() is None:
            err = _failed(observations, "reconstruct") or _failed(observations, "segment")
            return [_err("reconstruct", err) if err else _s("Michel electrons were not measured.")]
        return _michel(ev)
    if it == "visible_energy":
        return [_visible(ev) if ev.visible_energy_mev is not None else
                _missing(observations, "segment", "segment", "The visible energy was not measured.")]
    sections = {"counts": lambda: _counts(ev, req), "length": lambda: _length(ev, req), "dedx": lambda: _dedx(ev),
                "gap": lambda: _gap(ev), "energy": lambda: _energies(ev), "segment": lambda: _segment(observations),
                "similar": lambda: _similar(observations), "describe": lambda: _describe(observations, ev),
                "render": lambda: _render(observations)}
    return sections[it]() if it in sections else []


def _class_claim(ev: Evidence) -> Claim:
    return Claim(kind="event_class", subject="event", value=ev.event_class, tool=_tool(ev, "event_class", "classify_event"))


def _classify(ev: Evidence, observations: list[dict]) -> list[Sentence]:
    if ev.event_class is None:
        return [_missing(observations, "classify_event", "classify_event", "The event was not classified.")]
    c = ev.event_class
    probs = ev.class_probabilities
    p = probs.get(c)
    s = f"{{0}}: the classifier gives p = {p:.2f}" if p is not None else "{0}"
    if probs:
        s += " (" + ", ".join(f"{CLASS_TEXT.get(k, k)} {v:.2f}" for k, v in
                              sorted(probs.items(), key=lambda kv: -kv[1])) + ")"
    out = [_s(s + ".", _class_claim(ev))]
    if ev.particles is None:
        return out
    mu = sorted(ev.of_type("muon"), key=lambda t: -(t.length_cm or 0))
    el = sorted(ev.of_type("electron"), key=lambda t: (t.gap_cm if t.gap_cm is not None else 1e9))
    if c == "numu_cc":
        out += _numu_reasons(ev, mu, el)
    elif c == "nue_cc":
        out += _nue_reasons(ev, mu, el)
    else:
        out += _nc_reasons(ev, mu, el)
    return out


def _numu_reasons(ev: Evidence, mu: list, el: list) -> list[Sentence]:
    tool = _tool(ev, "particles", "reconstruct")
    out = []
    if mu:
        m = mu[0]
        claims = [Claim(kind="present", subject="muon", value=1.0, unit="count", tool=tool)]
        if m.length_cm is not None:
            t = "The muon track is {1} long"
            claims.append(Claim(kind="track_length", subject="muon", value=m.length_cm, unit="cm", tool=tool))
        else:
            t = "A muon is reconstructed"
        if m.michel is True:
            t += " and ends with a Michel electron"
            claims.append(Claim(kind="michel", subject="michel", tool=_tool(ev, "michel", "reconstruct")))
        out.append(_s(t + ".", *claims))
    else:
        out.append(_s("The reconstruction finds {0}, so this class is uncertain.", _count(ev, "muon")))
    if el:
        out.append(_s("The reconstruction also finds {0}.", _count(ev, "electron")))
    return out


def _nue_reasons(ev: Evidence, mu: list, el: list) -> list[Sentence]:
    out = []
    if el:
        e = el[0]
        phrase, claims = _particle_clause(e, ev)
        out.append(_s(_cap(phrase) + ".", *claims))
        if e.start_dedx_mev_cm is not None:
            d = Claim(kind="shower_dedx", subject="electron", value=e.start_dedx_mev_cm, unit="MeV/cm",
                      tool=_tool(ev, "particles", "reconstruct"))
            out.append(_s("Its start dE/dx of {0} is {0:mip}.", d))
    else:
        out.append(_s("The reconstruction finds no electron shower, so this class is uncertain.",
                      _count(ev, "electron")))
    if not mu:
        out.append(_s("No muon is reconstructed.", _count(ev, "muon")))
    return out


def _nc_reasons(ev: Evidence, mu: list, el: list) -> list[Sentence]:
    out = []
    if not mu and not el:
        out.append(_s("The reconstruction finds no muon and no electron.", _count(ev, "muon"), _count(ev, "electron")))
    else:
        out.append(_s("The reconstruction finds {0} and {1}, so this class is uncertain.",
                      _count(ev, "muon"), _count(ev, "electron")))
    for g in ev.of_type("photon")[:2]:
        phrase, claims = _particle_clause(g, ev)
        out.append(_s(_cap(phrase) + ".", *claims))
    return out


def _vertex(ev: Evidence, observations: list[dict]) -> list[Sentence]:
    out = _output(observations, "find_vertex")
    if ev.vertex_cm is None:
        err = _failed(observations, "find_vertex")
        if err:
            return [_err("find_vertex", err)]
        status = (out or {}).get("status", "unknown")
        return [_s(f"No common interaction vertex was found (status `{status}`).")]
    s = "The vertex is at {0}"
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
    return [_s(s + ".", Claim(kind="vertex", subject="vertex", value=tuple(ev.vertex_cm), unit="cm",
                              tool=_tool(ev, "vertex", "find_vertex")))]


def _counts(ev: Evidence, req: Request) -> list[Sentence]:
    out = []
    for p in req.species:
        c = _count(ev, p)
        if req.yes_no:
            out.append(_s(("Yes: " if c.value else "No: ") + "the reconstruction finds {0}.", c))
        else:
            out.append(_s(f"There {'is' if c.value == 1 else 'are'} {{0:pl}}.", c))
    if req.tracks_and_showers:
        t, sh = _count(ev, "track"), _count(ev, "shower")
        out.append(_s(f"There {'is' if t.value == 1 else 'are'} {{0:pl}} and {{1:pl}}.", t, sh))
    if req.all_species:
        cs = [_count(ev, p) for p in SPECIES_ORDER if (ev.count(p) or 0) or p in ("muon", "electron", "proton", "pion")]
        slots = [f"{{{i}}}" for i in range(len(cs))]
        out.append(_s("The reconstruction finds " + ", ".join(slots[:-1]) + (" and " if len(slots) > 1 else "")
                      + slots[-1] + ".", *cs))
        vis = list(ev.particles or [])
        if vis and req.list_particles:
            out += _listing(vis, ev)   # (an energy question lists them in its own section)
    return out


def _listing(parts: list[ParticleEvidence], ev: Evidence, limit: int = 8) -> list[Sentence]:
    parts = sorted(parts, key=lambda p: -(p.energy_mev or 0))
    items, claims = [], []
    for p in parts[:limit]:
        phrase, cl = _particle_clause(p, ev, first=len(claims))
        items.append(phrase)
        claims += cl
    s = "Particles: " + "; ".join(items)
    if len(parts) > limit:
        s += f"; and {len(parts) - limit} smaller ones"
    return [_s(s + ".", *claims)]


def _michel(ev: Evidence) -> list[Sentence]:
    has = ev.michel_at_track_end()
    tool = _tool(ev, "michel", "reconstruct")
    if has is None:
        return [_s("Michel electrons were not measured.")]
    if has:
        carriers = [p for p in (ev.particles or []) if p.michel]
        where = f"the {carriers[0].type} track" if carriers and carriers[0].type != "unknown" else "a track"
        return [_s(f"Yes: a Michel electron is found at the end of {where}.",
                   Claim(kind="michel", subject="michel", tool=tool), *_present(ev, carriers[0] if carriers else ""))]
    return [_s("No: no Michel electron is found at a track end.",
               Claim(kind="michel", subject="michel", qualifier="absent", tool=tool))]


def _length(ev: Evidence, req: Request) -> list[Sentence]:
    tracks = [p for p in ev.tracks if p.length_cm is not None]
    if not tracks:
        return [_s("No track is reconstructed.", _count(ev, "track"))]
    tool = _tool(ev, "particles", "reconstruct")
    asked = [p for p in req.species if p in TRACK_SPECIES]
    out = []
    for a in asked:
        ts = sorted([t for t in tracks if t.type == a], key=lambda t: -t.length_cm)
        if ts:
            out.append(_s("The {} track is {{{}}} long.".format(a, len(_present(ev, a))), *_present(ev, a),
                          Claim(kind="track_length", subject=a, value=ts[0].length_cm, unit="cm", tool=tool)))
        else:
            out.append(_s("The reconstruction finds {0}.", _count(ev, a)))
    if not asked:
        t = max(tracks, key=lambda t: t.length_cm)
        who = f" ({t.type})" if t.type != "unknown" else ""
        out.append(_s(f"The longest track is {{0}} long{who}.",
                      Claim(kind="track_length", subject=t.type if t.type != "unknown" else "track",
                            value=t.length_cm, unit="cm", qualifier="longest", tool=tool)))
    return out


def _shower_noun(p: ParticleEvidence) -> tuple[str, str]:
    sub = p.type if p.type in ("electron", "photon") else "shower"
    return sub, (f"{p.type} shower" if sub != "shower" else "shower")


def _dedx(ev: Evidence) -> list[Sentence]:
    sh = [p for p in ev.showers if p.start_dedx_mev_cm is not None]
    if not sh:
        return [_s("No shower start dE/dx could be measured.")]
    out = []
    for p in sorted(sh, key=lambda p: -(p.energy_mev or 0))[:3]:
        sub, noun = _shower_noun(p)
        out.append(_s(f"The {noun} starts with {{0}} ({{0:mip}}).",
                      Claim(kind="shower_dedx", subject=sub, value=p.start_dedx_mev_cm, unit="MeV/cm",
                            tool=_tool(ev, "particles", "reconstruct")), *_present(ev, p)))
    return out


def _gap(ev: Evidence) -> list[Sentence]:
    sh = [p for p in ev.showers if p.gap_cm is not None]
    if not sh:
        return [_s("No shower start could be placed relative to the vertex.")]
    out = []
    for p in sorted(sh, key=lambda p: -(p.energy_mev or 0))[:3]:
        sub, noun = _shower_noun(p)
        out.append(_s(f"The {noun} starts {{0}} from the vertex.",
                      Claim(kind="shower_gap", subject=sub, value=p.gap_cm, unit="cm",
                            tool=_tool(ev, "particles", "reconstruct")), *_present(ev, p)))
    return out


def _visible(ev: Evidence) -> Sentence:
    return _s("The visible energy is {0}.", Claim(kind="energy", subject="visible", value=ev.visible_energy_mev,
                                                  unit="MeV", qualifier="visible",
                                                  tool=_tool(ev, "visible_energy", "segment")))


def _energies(ev: Evidence) -> list[Sentence]:
    out = []
    if ev.visible_energy_mev is not None:
        out.append(_visible(ev))
    parts = [p for p in (ev.particles or []) if p.energy_mev is not None]
    if parts:
        out += _listing(parts, ev)
    return out or [_s("No energies were measured.")]


def _segment(observations: list[dict]) -> list[Sentence]:
    seg = _output(observations, "segment")
    if seg is None:
        return [_missing(observations, "segment", "segment", "The event was not segmented.")]
    cc = seg.get("class_counts") or {}
    names = {"track": "track", "shower": "shower", "michel": "Michel", "delta": "delta", "low_energy": "low-energy"}
    bits = ", ".join(f"{names.get(k, k)} `{v}`" for k, v in cc.items())
    s = f"Segmentation of `{seg.get('n_points', '?')}` voxels by class: {bits}."
    s2 = (f"It finds `{seg.get('n_particles', '?')}` particle instances in "
          f"`{seg.get('n_interactions', '?')}` interaction group(s).")
    return [_s(s), _s(s2)]


def _similar(observations: list[dict]) -> list[Sentence]:
    res = _output(observations, "find_similar")
    if res is None:
        return [_missing(observations, "find_similar", "find_similar", "No similar events were searched.")]
    hits = [h for h in res.get("hits", []) if isinstance(h, dict)]
    if not hits:
        return [_s(f"The index (`{res.get('n_indexed', 0)}` events) returned no match.")]
    rows = []
    for h in hits:
        cls = CLASS_TEXT.get(h.get("event_class") or "", h.get("event_class") or "?")
        rows.append(f"`{h.get('key')}` (`{cls}`, `{h.get('topology') or '?'}`, similarity "
                    f"`{float(h.get('similarity', 0)):.2f}`)")
    what = "text " + f"`{res.get('query')}`" if res.get("query_kind") == "text" else "this event"
    out = [_s(f"The {len(hits)} indexed events most similar to {what} (of `{res.get('n_indexed')}`): "
              + "; ".join(rows) + ".")]
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
    out.append(_s("What they share: " + "; ".join(share) + "."))
    return out


def _describe(observations: list[dict], ev: Evidence) -> list[Sentence]:
    d = _output(observations, "describe")
    if d is None:
        return [_missing(observations, "describe", "describe", "The event was not described.")]
    out = []
    if ev.event_class:
        out += _classify(ev, observations)
    if ev.vertex_cm is not None:
        out += _vertex(ev, observations)
    if ev.particles is not None:
        out += _counts(ev, Request(all_species=True, list_particles=True))
    if ev.visible_energy_mev is not None:
        out.append(_visible(ev))
    return out or [_s("The description tool returned no text.")]


def _render(observations: list[dict]) -> list[Sentence]:
    r = _output(observations, "render")
    if r is None:
        return [_missing(observations, "render", "render", "The event was not drawn.")]
    f = r.get("file")
    view = {"3d": "3D", "xz": "XZ", "yz": "YZ"}.get(r.get("view", "3d"), "3D")
    return [_s(f"The {view} display of the event is in `{f}`." if f else f"The {view} display was made but not saved.")]


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
