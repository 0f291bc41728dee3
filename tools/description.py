"""``describe``: a short factual summary of the reconstruction, for a person or a language model.

    from larsight.tools import describe
    d = describe("run.h5:3")
    print(d.text)      # 'nu_mu CC event (encoder 0.82). Vertex at (112.3, 54.1, 200.2) cm ...'
    d.topology, d.particles[0].pid, d.word_count

The text states only what the tools measured (``classify_event``, ``find_vertex``,
``reconstruct``), with the number formats of the training corpus (``qformer.corpus``: cm with
one decimal, MeV as integers, dE/dx in MeV/cm with one decimal, vertices as ``(x, y, z) cm``)
and at most ``MAX_WORDS`` words: the most energetic ``MAX_DESCRIBED`` visible particles one by
one, the rest counted by type.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

from pydantic import Field

from larsight.qformer.corpus import MAX_DESCRIBED, fmt_dedx, fmt_energy, fmt_length, fmt_vertex

from . import engine
from .classification import VLMLike, classify_event
from .inputs import EventLike, describe_ref, load_event
from .reconstruction import ParticleReco, Reconstruction, reconstruct
from .physics import MIP_DEDX
from .results import ToolResult, Vec3

__all__ = ["describe", "Description", "ParticleSummary", "MAX_WORDS"]

MAX_WORDS = 120


class ParticleSummary(ToolResult):
    """The facts of one particle that the text mentions."""

    id: int = Field(description="ParticleReco.id")
    pid: str = Field(description="particle type")
    kind: str = Field(description="track or shower")
    length_cm: float = Field(description="length, cm")
    kinetic_energy_mev: float = Field(description="kinetic energy estimate, MeV")
    energy_method: str = Field(description="range or calorimetry")
    energy_is_lower_bound: bool = Field(False, description="the energy only bounds it from below (it leaves "
                                                           "the volume or may have interacted)")
    start_dedx_mev_cm: Optional[float] = Field(None, description="showers: trunk dE/dx, MeV/cm")
    has_bragg_peak: bool = Field(False, description="tracks: Bragg peak at the end")
    stops: Optional[bool] = Field(None, description="tracks: ends inside the volume")
    michel: bool = Field(False, description="Michel electron at its end")
    distance_to_vertex_cm: Optional[float] = Field(None, description="start to vertex, cm")

    def _headline(self) -> str:
        return (f"{self.pid} ({self.kind}) {self.length_cm:.1f} cm, "
                f"{'>= ' if self.energy_is_lower_bound else ''}{self.kinetic_energy_mev:.0f} MeV ({self.energy_method})")


class Description(ToolResult):
    """A compact summary: ``text`` plus the structured facts it states."""

    source: Optional[str] = Field(None, description="'file:index' the event came from, if any")
    text: str = Field(description=f"the summary, at most {MAX_WORDS} words")
    word_count: int = Field(description="words in text")
    event_class: Optional[str] = Field(None, description="predicted class: nue_cc, numu_cc or nc")
    class_probability: Optional[float] = Field(None, description="its probability")
    classifier: Optional[str] = Field(None, description="vlm or encoder")
    vertex_cm: Optional[Vec3] = Field(None, description="vertex (x, y, z), cm")
    vertex_status: str = Field(description="find_vertex status")
    topology: str = Field(description="topology of the main interaction, e.g. '1mu 2p 0pi'")
    visible_energy_mev: float = Field(description="deposited energy of the event, MeV")
    n_interactions: int = Field(description="reconstructed interactions")
    particles: list[ParticleSummary] = Field(default_factory=list, description="visible particles, most energetic first")
    n_michel: int = Field(0, description="Michel electrons attached to tracks")

    def _headline(self) -> str:
        return self.text

    def _sections(self):
        return [("Particles", ["id", "PID", "length [cm]", "KE [MeV]", "by", "dE/dx start [MeV/cm]",
                               "Bragg", "Michel"],
                 [(p.id, p.pid, p.length_cm, p.kinetic_energy_mev, p.energy_method, p.start_dedx_mev_cm,
                   p.has_bragg_peak, p.michel) for p in self.particles])]

    def __str__(self) -> str:
        return self.text


_PLURAL = {"muon": "muons", "electron": "electrons", "photon": "photons", "proton": "protons",
           "pion": "pions", "kaon": "kaons"}


def _particle_phrase(p: ParticleReco, detail: int) -> str:
    """One particle in words; ``detail`` 2 (full), 1 (short) or 0 (type and energy)."""
    e = fmt_energy(p.kinetic_energy_mev)
    if p.kind == "track":
        bits = [f"{p.pid} track of {fmt_length(p.length_cm)}, {e}" +
                (" by range" if p.energy_method == "range" and detail else "")]
        if detail:
            if p.stops is False:
                bits.append("leaves the volume")
            elif p.has_bragg_peak:
                bits.append("stops with a Bragg peak")
            if p.michel:
                bits.append(f"Michel electron of {fmt_energy(p.michel_energy_mev or 0.0)} at its end"
                            if detail > 1 else "Michel electron at its end")
        if detail > 1 and p.mean_dedx_mev_cm and p.pid == "muon" and p.mean_dedx_mev_cm < 1.5 * MIP_DEDX:
            bits.append("minimum-ionising")
        return ", ".join(bits)
    bits = [f"{p.pid} shower of {e}"]
    if detail and p.start_dedx_mev_cm is not None:
        bits.append(f"start dE/dx {fmt_dedx(p.start_dedx_mev_cm)} ({p.start_dedx_mev_cm / MIP_DEDX:.1f} MIP)")
    if detail and p.distance_to_vertex_cm is not None:
        if p.distance_to_vertex_cm >= 3.0:
            bits.append(f"{fmt_length(p.distance_to_vertex_cm)} gap from the vertex")
        elif detail > 1:
            bits.append("starts at the vertex")
    return ", ".join(bits)


def _compose(reco: Reconstruction, cls, detail: int, n_listed: int) -> str:
    v = reco.vertex
    src = describe_ref(reco.event) if reco.event is not None else None
    s = []
    head = f"{cls.predicted_label} event" if cls is not None else "Event"
    if cls is not None:
        head += f" ({cls.method} {cls.probabilities[cls.predicted_class]:.2f})"
    if src and detail > 1:
        head += f" from {src}"
    s.append(head + ".")
    if v.vertex_cm is not None:
        conf = f"confidence {v.confidence:.2f}"
        meet = f", {v.n_particles_at_vertex} particles start there" if v.n_particles_at_vertex >= 2 and detail else ""
        s.append(f"Vertex at {fmt_vertex(v.vertex_cm)} ({conf}{meet}).")
    else:
        s.append("No clear interaction vertex" + (f": {len(v.interactions)} separate groups of activity."
                                                  if len(v.interactions) > 1 else "."))
    vis = reco.visible_particles()
    s.append(f"Topology {reco.topology}, visible energy {fmt_energy(reco.visible_energy_mev)}"
             + (f", {len(reco.interactions)} interactions" if len(reco.interactions) > 1 else "") + ".")
    if vis:
        listed, rest = vis[:n_listed], vis[n_listed:]
        phrases = [_particle_phrase(p, detail) for p in listed]
        if rest:
            c = Counter(p.pid for p in rest)
            phrases.append(f"{len(rest)} more (" + ", ".join(
                f"{n} {_PLURAL.get(k, k) if n > 1 else k}" for k, n in c.most_common()) + ")")
        s.append("Particles: " + "; ".join(phrases) + ".")
    else:
        s.append("No particle passes the visibility thresholds.")
    if v.status == "disagree" and detail > 1:
        s.append("The vertex head and the particle starts disagree.")
    return " ".join(s)


def describe(event: EventLike, vlm: VLMLike = None, model: engine.ModelLike = None) -> Description:
    """A factual summary (at most MAX_WORDS words) of one event's reconstruction.

    ``vlm`` / ``model``: as in ``classify_event`` / ``segment``. Raises
    ``tools.ToolInputError`` for unusable input."""
    ev = load_event(event, tool="describe")
    reco = reconstruct(ev, model=model)
    try:
        cls = classify_event(ev, vlm=vlm, model=model)
    except ValueError:     # no event head and no VLM: describe without a class
        cls = None
    text = ""
    for detail, n_listed in ((2, MAX_DESCRIBED), (1, MAX_DESCRIBED), (1, 3), (0, 3), (0, 1)):
        text = _compose(reco, cls, detail, n_listed)
        if len(text.split()) <= MAX_WORDS:
            break
    words = text.split()
    if len(words) > MAX_WORDS:
        text = " ".join(words[:MAX_WORDS - 1]) + " ..."
    vis = reco.visible_particles()
    return Description(
        source=describe_ref(ev), text=text, word_count=len(text.split()),
        event_class=cls.predicted_class if cls else None,
        class_probability=cls.probabilities[cls.predicted_class] if cls else None,
        classifier=cls.method if cls else None, vertex_cm=reco.vertex.vertex_cm,
        vertex_status=reco.vertex.status, topology=reco.topology,
        visible_energy_mev=reco.visible_energy_mev, n_interactions=len(reco.interactions),
        particles=[ParticleSummary(id=p.id, pid=p.pid, kind=p.kind, length_cm=p.length_cm,
                                   kinetic_energy_mev=p.kinetic_energy_mev, energy_method=p.energy_method,
                                   energy_is_lower_bound=p.energy_is_lower_bound,
                                   start_dedx_mev_cm=p.start_dedx_mev_cm, has_bragg_peak=p.has_bragg_peak,
                                   stops=p.stops, michel=p.michel, distance_to_vertex_cm=p.distance_to_vertex_cm)
                   for p in vis],
        n_michel=sum(1 for m in reco.michels if m.attached_to is not None))
