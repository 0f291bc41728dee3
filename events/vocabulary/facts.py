"""The truth facts of an event as typed records: what the corpus describes, what the tools'
measurements are compared with, and what the reports and the agent evaluation score against."""
from __future__ import annotations

from collections import Counter
from typing import Literal, Optional

from pydantic import BaseModel, Field

from larsight.events.model import EventError

__all__ = ["Vec3", "COUNT_KEYS", "NoTruthError", "ParticleFacts", "InteractionFacts", "EventFacts"]

Vec3 = tuple[float, float, float]

COUNT_KEYS = ("muon", "electron", "photon", "proton", "pion", "kaon", "pi0", "michel",
              "track", "shower")
"""Keys of ``InteractionFacts.counts``: visible particles per PID name, primary pi0s, Michel
electrons, and visible particles per kind."""


class NoTruthError(EventError):
    """The event carries no truth to describe (no tables and no per-point particle labels)."""


class ParticleFacts(BaseModel):
    """One primary-level particle, from the truth."""

    id: int = Field(description="particle (group) id in the event")
    pdg: int = Field(0, description="PDG code, 0 if unknown")
    type: str = Field(description="PID class name (photon, electron, muon, pion, proton, kaon) or 'unknown'")
    charge: Optional[int] = Field(None, description="electric charge in e, if known")
    kind: Literal["track", "shower"]
    from_pi0: bool = Field(False, description="a photon from a primary pi0 decay")
    kinetic_energy_mev: Optional[float] = Field(None, description="initial kinetic energy (truth)")
    deposited_energy_mev: float = Field(0.0, description="energy in its voxels")
    n_voxels: int = 0
    length_cm: Optional[float] = Field(None, description="track: start-end distance; shower: "
                                       "extent of 95% of its voxels along the axis from its start")
    direction: Optional[Vec3] = Field(None, description="unit vector of the initial momentum")
    angle_to_beam_deg: Optional[float] = Field(None, description="angle to the beam (+z), neutrinos")
    start_cm: Optional[Vec3] = None
    end_cm: Optional[Vec3] = None
    end_state: Optional[Literal["stops", "exits", "interacts", "decays"]] = Field(
        None, description="tracks: stops in the volume, leaves it, ends in a hadronic interaction, "
                          "or decays into a visible charged particle (pion / kaon decay in flight, "
                          "kaon decay at rest)")
    michel: bool = Field(False, description="a visible Michel electron appears at its end")
    michel_energy_mev: Optional[float] = None
    conversion_gap_cm: Optional[float] = Field(None, description="photons: vertex to shower start")
    start_dedx_mev_cm: Optional[float] = Field(None, description="showers: dE/dx of the first cm")
    mean_dedx_mev_cm: Optional[float] = Field(None, description="tracks: deposited energy / length")
    visible: bool = Field(True, description="passes the visibility thresholds (counted)")

    @property
    def energy_mev(self) -> float:
        """Kinetic energy if known, else the deposited energy."""
        return self.kinetic_energy_mev if self.kinetic_energy_mev is not None else self.deposited_energy_mev


class InteractionFacts(BaseModel):
    """One interaction (neutrino, gun vertex or rain particle) and its visible content."""

    id: int
    vertex_cm: Optional[Vec3] = None
    source: Literal["neutrino", "gun", "labels"] = "gun"
    event_class: Optional[Literal["nue_cc", "numu_cc", "nc"]] = None
    current: Optional[str] = None
    channel: Optional[str] = None
    nu_pdg: int = 0
    nu_energy_mev: Optional[float] = None
    visible_energy_mev: float = 0.0
    n_voxels: int = 0
    particles: list[ParticleFacts] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    topology: str = "0l 0p 0pi"
    n_neutrons: int = Field(0, description="primary neutrons (invisible, truth only)")

    def visible_particles(self) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible]

    def of_type(self, t: str) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible and p.type == t]

    @property
    def tracks(self) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible and p.kind == "track"]

    @property
    def showers(self) -> list[ParticleFacts]:
        return [p for p in self.particles if p.visible and p.kind == "shower"]

    @property
    def leading(self) -> Optional[ParticleFacts]:
        vis = self.visible_particles()
        return max(vis, key=lambda p: p.energy_mev) if vis else None

    @property
    def longest_track(self) -> Optional[ParticleFacts]:
        t = [p for p in self.tracks if p.length_cm is not None]
        return max(t, key=lambda p: p.length_cm) if t else None


class EventFacts(BaseModel):
    """The truth summary of one event."""

    event_id: Optional[int] = None
    mode: Optional[str] = Field(None, description="'nu', 'mpv', 'mpr', 'gun' or None (from meta)")
    event_class: Optional[Literal["nue_cc", "numu_cc", "nc"]] = None
    n_points: int = 0
    visible_energy_mev: float = 0.0
    interactions: list[InteractionFacts] = Field(default_factory=list)

    @property
    def main(self) -> Optional[InteractionFacts]:
        """The classified (neutrino) interaction if any, else the most energetic one."""
        for it in self.interactions:
            if it.event_class:
                return it
        return max(self.interactions, key=lambda i: i.visible_energy_mev) if self.interactions else None

    @property
    def is_rain(self) -> bool:
        return self.mode == "mpr" or (self.mode is None and len(self.interactions) > 1)

    def all_particles(self) -> list[ParticleFacts]:
        return [p for it in self.interactions for p in it.particles if p.visible]

    def total_counts(self) -> dict[str, int]:
        c: Counter = Counter()
        for it in self.interactions:
            c.update(it.counts)
        return {k: int(c.get(k, 0)) for k in COUNT_KEYS}
