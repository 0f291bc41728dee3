"""``segment``: per-point semantic classes, particle instances and interaction groups.

    from larsight.tools import segment
    seg = segment("run.h5:3")          # or an events.Event
    seg.semantic, seg.semantic_probs   # (N,), (N, 5) numpy, input point order
    seg.class_energy_mev["track"]      # MeV in points called track
    seg.to_event()                     # the event with the predicted labels (for displays)

Everything comes from the shipped encoder's heads (``encoder.load_model``; semantic, pid,
particle and interaction heads): one forward pass, shared with the other tools through
``tools.engine``. When the event carries truth labels, the agreement of the predicted
semantic classes with them is reported too (``semantic_accuracy``).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from pydantic import Field

from larsight.events.model import PID_CLASSES, SEMANTIC_CLASSES, Event

from . import engine
from .inputs import EventLike, describe_ref, load_event
from .results import ToolResult

__all__ = ["segment", "Segmentation", "InstanceSummary"]


class InstanceSummary(ToolResult):
    """One predicted particle instance or interaction group."""

    id: int = Field(description="instance id (0..K-1, as the encoder's clustering numbers them)")
    n_points: int = Field(description="number of points (voxels)")
    energy_mev: float = Field(description="deposited energy of its points, MeV")
    semantic: str = Field(description="most common semantic class of its points (energy-weighted)")
    pid: Optional[str] = Field(None, description="energy-weighted PID vote of its points")
    n_particles: Optional[int] = Field(None, description="interaction groups: particle instances in it")


class Segmentation(ToolResult):
    """Per-point output of the encoder heads plus per-class and per-instance summaries.

    Arrays (numpy, one row per input point, in input order) are excluded from ``model_dump``."""

    source: Optional[str] = Field(None, description="'file:index' the event came from, if any")
    model: str = Field(description="encoder checkpoint used")
    n_points: int = Field(description="number of points (voxels) in the event")
    total_energy_mev: float = Field(description="deposited energy of the event, MeV")
    class_counts: dict[str, int] = Field(description="points per predicted semantic class")
    class_energy_mev: dict[str, float] = Field(description="deposited energy per predicted class, MeV")
    mean_confidence: float = Field(description="mean over points of the top semantic probability (0-1)")
    n_particles: int = Field(description="particle instances (all sizes)")
    n_interactions: int = Field(description="interaction groups")
    particles: list[InstanceSummary] = Field(default_factory=list,
                                             description="particle instances, most energetic first")
    interactions: list[InstanceSummary] = Field(default_factory=list,
                                                description="interaction groups, most energetic first")
    semantic_accuracy: Optional[float] = Field(
        None, description="fraction of points whose predicted class equals the event's truth label "
                          "(None without truth labels)")

    semantic: np.ndarray = Field(exclude=True, repr=False, description="(N,) class index (SEMANTIC_CLASSES)")
    semantic_probs: np.ndarray = Field(exclude=True, repr=False, description="(N, 5) probabilities")
    particle: np.ndarray = Field(exclude=True, repr=False, description="(N,) particle instance id")
    interaction: np.ndarray = Field(exclude=True, repr=False, description="(N,) interaction group id")
    pid: Optional[np.ndarray] = Field(None, exclude=True, repr=False, description="(N,) per-point PID")
    pid_probs: Optional[np.ndarray] = Field(None, exclude=True, repr=False, description="(N, 6) PID probabilities")
    event: Optional[Any] = Field(None, exclude=True, repr=False, description="the input events.Event")

    def to_event(self) -> Event:
        """The input event with the predicted labels in place of any truth labels (tables
        dropped): what ``events.display.plot_event`` needs to colour by the reconstruction."""
        ev: Event = self.event
        return Event(points=ev.points, energy=ev.energy, semantic=self.semantic.astype(np.int8),
                     particle=self.particle.astype(np.int32),
                     interaction=self.interaction.astype(np.int32),
                     pid=None if self.pid is None else self.pid.astype(np.int8),
                     meta=ev.meta)

    def _headline(self) -> str:
        src = f" of {self.source}" if self.source else ""
        # no truth here: the headline is what the language model reads (semantic_accuracy stays a field)
        return (f"Segmentation{src}: {self.n_points} points, {self.total_energy_mev:.1f} MeV, "
                f"{self.n_particles} particle instances, {self.n_interactions} interaction "
                f"group{'s' if self.n_interactions != 1 else ''} ({self.model})")

    def _sections(self):
        classes = [(c, self.class_counts[c], self.class_energy_mev[c]) for c in SEMANTIC_CLASSES]
        parts = [(p.id, p.n_points, p.energy_mev, p.semantic, p.pid or "-") for p in self.particles[:12]]
        out = [("Semantic classes", ["class", "points", "energy [MeV]"], classes),
               ("Particle instances" + (f" (12 of {len(self.particles)})" if len(self.particles) > 12 else ""),
                ["id", "points", "energy [MeV]", "semantic", "PID vote"], parts)]
        if self.n_interactions > 1:
            out.append(("Interaction groups", ["id", "points", "energy [MeV]", "particles"],
                        [(g.id, g.n_points, g.energy_mev, g.n_particles) for g in self.interactions]))
        return out

    def __repr__(self) -> str:
        return (f"Segmentation(n_points={self.n_points}, n_particles={self.n_particles}, "
                f"n_interactions={self.n_interactions}, class_counts={self.class_counts})")


def _summaries(labels: np.ndarray, energy: np.ndarray, sem_probs: np.ndarray,
               pid_probs: Optional[np.ndarray], particle: Optional[np.ndarray] = None
               ) -> list[InstanceSummary]:
    ids, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(-1)
    w = energy.astype(np.float64) + 1e-6
    n = np.bincount(inv, minlength=len(ids))
    e = np.bincount(inv, weights=energy.astype(np.float64), minlength=len(ids))
    sem_vote = np.zeros((len(ids), sem_probs.shape[1]))
    np.add.at(sem_vote, inv, sem_probs * w[:, None])
    pid_vote = None
    if pid_probs is not None:
        pid_vote = np.zeros((len(ids), pid_probs.shape[1]))
        np.add.at(pid_vote, inv, pid_probs * w[:, None])
    out = []
    for k, i in enumerate(ids):
        npart = None
        if particle is not None:
            npart = int(len(np.unique(particle[inv == k])))
        out.append(InstanceSummary(
            id=int(i), n_points=int(n[k]), energy_mev=round(float(e[k]), 2),
            semantic=SEMANTIC_CLASSES[int(np.argmax(sem_vote[k]))],
            pid=PID_CLASSES[int(np.argmax(pid_vote[k]))] if pid_vote is not None else None,
            n_particles=npart))
    out.sort(key=lambda s: -s.energy_mev)
    return out


def segment(event: EventLike, model: engine.ModelLike = None) -> Segmentation:
    """Semantic segmentation, particle instances and interaction groups of one event.

    ``event``: an ``events.Event``, a path to a one-event file, or ``"path:index"``.
    ``model``: None (the shipped ``checkpoints/encoder_tiny``), a checkpoint path, or a loaded
    ``encoder.EncoderModel``. Raises ``tools.ToolInputError`` for unusable input."""
    ev = load_event(event, tool="segment")
    m, pred = engine.predict(ev, model)
    missing = [h for h in ("semantic", "particle", "interaction") if getattr(pred, h) is None]
    if missing:
        raise ValueError(f"segment: the encoder checkpoint {engine.model_name(m)} has no "
                         f"{', '.join(missing)} head; use a multi-task checkpoint")
    sem = pred.semantic.astype(np.int64)
    energy = ev.energy.astype(np.float64)
    counts = np.bincount(sem, minlength=len(SEMANTIC_CLASSES))
    esum = np.bincount(sem, weights=energy, minlength=len(SEMANTIC_CLASSES))
    acc = None
    if ev.semantic is not None and (ev.semantic >= 0).any():
        ok = ev.semantic >= 0
        acc = round(float(np.mean(sem[ok] == ev.semantic[ok])), 4)
    particles = _summaries(pred.particle, ev.energy, pred.semantic_probs, pred.pid_probs)
    inters = _summaries(pred.interaction, ev.energy, pred.semantic_probs, pred.pid_probs,
                        particle=pred.particle)
    return Segmentation(
        source=describe_ref(ev), model=engine.model_name(m), n_points=len(ev),
        total_energy_mev=round(ev.total_energy_mev, 2),
        class_counts={c: int(k) for c, k in zip(SEMANTIC_CLASSES, counts)},
        class_energy_mev={c: round(float(x), 2) for c, x in zip(SEMANTIC_CLASSES, esum)},
        mean_confidence=round(float(pred.semantic_probs.max(1).mean()), 4),
        n_particles=int(len(np.unique(pred.particle))),
        n_interactions=int(len(np.unique(pred.interaction))),
        particles=particles, interactions=inters, semantic_accuracy=acc,
        semantic=sem, semantic_probs=pred.semantic_probs, particle=pred.particle.astype(np.int64),
        interaction=pred.interaction.astype(np.int64),
        pid=None if pred.pid is None else pred.pid.astype(np.int64), pid_probs=pred.pid_probs,
        event=ev)
