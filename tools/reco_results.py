"""The result types of ``tools.reconstruct``: particles, Michel electrons, interactions and the
whole reconstruction, with their text and HTML views and the display overlays
(``tools.reconstruction`` measures them).
"""
from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from .results import ToolResult, Vec3
from .vertexing import VertexResult

__all__ = ["ParticleReco", "MichelReco", "InteractionReco", "Reconstruction"]


class ParticleReco(ToolResult):
    """One reconstructed particle (a track or a shower)."""

    id: int = Field(description="particle number in this reconstruction (0 = most energetic)")
    interaction: int = Field(description="interaction it belongs to (InteractionReco.id)")
    kind: Literal["track", "shower"] = Field(description="track (muon, pion, proton, kaon) or shower (electron, photon)")
    pid: str = Field(description="particle type: photon, electron, muon, pion, proton or kaon")
    pid_method: Literal["encoder", "dE/dx", "gap", "length"] = Field(
        "encoder", description="what decided pid: the encoder's PID vote; for tracks the dE/dx "
                               "(proton or minimum ionising), then the length (the longest minimum-"
                               "ionising track is the muon); for showers the trunk dE/dx or a gap "
                               "to the vertex (photons)")
    pid_scores: dict[str, float] = Field(description="encoder: energy-weighted mean PID probability per class (sums to 1)")
    n_points: int = Field(description="number of points (voxels)")
    start_cm: Vec3 = Field(description="start point (x, y, z), cm")
    end_cm: Vec3 = Field(description="end point (x, y, z), cm; for a shower the far end of 95% of its points")
    direction: Vec3 = Field(description="unit vector of the initial direction")
    angle_to_beam_deg: float = Field(description="angle between the direction and the beam axis (+z), degrees")
    length_cm: float = Field(description="track: straight start-to-end distance; shower: extent of 95% "
                                         "of its points along the axis from its start, cm")
    path_length_cm: Optional[float] = Field(None, description="tracks: length along the (scattered) track, cm")
    distance_to_vertex_cm: Optional[float] = Field(None, description="start point to the event vertex, cm")
    deposited_energy_mev: float = Field(description="energy deposited in its points (and its delta rays), MeV")
    charge_energy_mev: Optional[float] = Field(None, description="the same from collected charge, corrected "
                                               "for recombination (modified box), MeV")
    range_energy_mev: Optional[float] = Field(None, description="tracks: kinetic energy from the CSDA range "
                                              "of the PID species at path_length_cm, MeV")
    kinetic_energy_mev: float = Field(description="best kinetic-energy estimate, MeV")
    energy_method: Literal["range", "calorimetry"] = Field(description="how kinetic_energy_mev was measured")
    energy_is_lower_bound: bool = Field(False, description="the particle leaves the volume or may have interacted")
    mean_dedx_mev_cm: Optional[float] = Field(None, description="tracks: deposited energy / path length, MeV/cm")
    start_dedx_mev_cm: Optional[float] = Field(None, description="median dE/dx of the first 4 cm (shower trunk "
                                               "within 1 cm of the axis; track start), MeV/cm")
    end_dedx_mev_cm: Optional[float] = Field(None, description="tracks: mean dE/dx of the last 3 cm, MeV/cm")
    bragg_ratio: Optional[float] = Field(None, description="tracks: last-3-cm dE/dx over the median of the rest")
    has_bragg_peak: bool = Field(False, description="tracks: bragg_ratio >= 1.5")
    stops: Optional[bool] = Field(None, description="tracks: the end lies inside the volume (not at a wall)")
    conversion_gap_cm: Optional[float] = Field(None, description="photons: vertex to shower start, cm")
    michel: bool = Field(False, description="tracks: a Michel electron is attached to its end")
    michel_energy_mev: Optional[float] = Field(None, description="deposited energy of that Michel electron, MeV")
    visible: bool = Field(True, description="counted in the topology: passes the corpus visibility thresholds "
                                            "and the reconstruction's own (see not_counted)")
    not_counted: Optional[str] = Field(None, description="why a particle is not counted, when it is not")
    dedx_residual_range_cm: Optional[np.ndarray] = Field(None, exclude=True, repr=False,
                                                         description="tracks: residual range of 1 cm bins, cm")
    dedx_profile_mev_cm: Optional[np.ndarray] = Field(None, exclude=True, repr=False,
                                                      description="tracks: dE/dx in those bins, MeV/cm")
    point_index: Optional[np.ndarray] = Field(None, exclude=True, repr=False,
                                              description="indices of its points in the event")

    @property
    def label(self) -> str:
        return f"{self.pid} {self.id}"

    def _headline(self) -> str:
        return (f"{self.pid} ({self.kind}) {self.length_cm:.1f} cm, {self.kinetic_energy_mev:.0f} MeV "
                f"({self.energy_method}), from {self.start_cm} cm")

    def _sections(self):
        rows = [(k, v) for k, v in self.model_dump().items() if k not in ("pid_scores",)]
        rows.append(("pid_scores", ", ".join(f"{k} {v:.2f}" for k, v in self.pid_scores.items())))
        return [("", ["field", "value"], rows)]


class MichelReco(ToolResult):
    """A Michel-electron candidate (points called Michel by the segmentation)."""

    n_points: int = Field(description="number of points")
    energy_mev: float = Field(description="deposited energy, MeV (a Michel electron has at most 52.8 MeV)")
    position_cm: Vec3 = Field(description="its point nearest the track end it is attached to (else its centroid), cm")
    attached_to: Optional[int] = Field(None, description="ParticleReco.id of the track whose end it sits at")
    distance_to_track_end_cm: Optional[float] = Field(None, description="distance to that track's end, cm")


class InteractionReco(ToolResult):
    """One interaction: its vertex, particles, visible energy and topology."""

    id: int = Field(description="interaction number (0 = main)")
    vertex_cm: Optional[Vec3] = Field(None, description="vertex (x, y, z), cm")
    particles: list[int] = Field(default_factory=list, description="ParticleReco ids")
    visible_energy_mev: float = Field(description="deposited energy of all its points, MeV")
    n_points: int = Field(description="number of points")
    counts: dict[str, int] = Field(default_factory=dict, description="visible particles by type, plus "
                                   "track / shower / michel totals (the corpus's keys)")
    topology: str = Field(description="visible primary-level particle counts, e.g. '1mu 2p 0pi'")


class Reconstruction(ToolResult):
    """The reconstructed event."""

    source: Optional[str] = Field(None, description="'file:index' the event came from, if any")
    model: str = Field(description="encoder checkpoint used")
    vertex: VertexResult = Field(description="the find_vertex result used to orient particles")
    particles: list[ParticleReco] = Field(default_factory=list, description="tracks and showers, most energetic first")
    michels: list[MichelReco] = Field(default_factory=list, description="Michel-electron candidates")
    interactions: list[InteractionReco] = Field(default_factory=list, description="main interaction first")
    topology: str = Field(description="topology of the main interaction (events.vocabulary convention)")
    visible_energy_mev: float = Field(description="deposited energy of the whole event, MeV")
    unassigned_energy_mev: float = Field(description="deposited energy in no particle (low-energy "
                                         "deposits, fragments under 5 points, Michel electrons), MeV")
    truth_topology: Optional[str] = Field(None, description="topology from the simulator truth, when known")
    notes: list[str] = Field(default_factory=list, description="caveats found while reconstructing")
    event: Optional[Any] = Field(None, exclude=True, repr=False, description="the input events.Event")

    @property
    def main(self) -> Optional[InteractionReco]:
        return self.interactions[0] if self.interactions else None

    def visible_particles(self) -> list[ParticleReco]:
        return [p for p in self.particles if p.visible]

    def of_type(self, pid: str) -> list[ParticleReco]:
        return [p for p in self.particles if p.visible and p.pid == pid]

    def overlays(self, directions: bool = True, max_particles: int = 20) -> list[dict]:
        """Overlay items for ``events.display.plot_event`` (vertex, particle starts, directions,
        Michel electrons)."""
        out: list[dict] = []
        v = self.vertex
        if v.vertex_cm is not None:
            out.append({"kind": "points", "points": [v.vertex_cm], "name": "reco vertex",
                        "text": [f"vertex ({v.status}, confidence {v.confidence:.2f})"],
                        "color": "black", "size": 7, "symbol": "x"})
        parts = [p for p in self.particles if p.visible][:max_particles]
        if parts:
            out.append({"kind": "points", "points": [p.start_cm for p in parts], "name": "particle starts",
                        "text": [f"{p.pid} {p.id}: {p.length_cm:.1f} cm, {p.kinetic_energy_mev:.0f} MeV"
                                 for p in parts], "color": "#444444", "size": 4, "symbol": "circle"})
        if directions:
            for p in parts:
                if p.kind == "track":
                    out.append({"kind": "segments", "start": p.start_cm, "end": p.end_cm,
                                "name": f"{p.pid} {p.id}", "color": _PID_LINE.get(p.pid, "#555555"),
                                "width": 4})
                else:
                    out.append({"kind": "segments", "start": p.start_cm, "direction": p.direction,
                                "length_cm": max(5.0, min(p.length_cm, 30.0)), "name": f"{p.pid} {p.id} axis",
                                "color": _PID_LINE.get(p.pid, "#555555"), "width": 4})
        mich = [m for m in self.michels if m.attached_to is not None]
        if mich:
            out.append({"kind": "points", "points": [m.position_cm for m in mich], "name": "Michel electrons",
                        "text": [f"Michel {m.energy_mev:.0f} MeV" for m in mich], "color": "#2ca02c",
                        "size": 5, "symbol": "diamond"})
        return out

    def _headline(self) -> str:
        src = f" of {self.source}" if self.source else ""
        # no truth here: the headline is what the language model reads (truth_topology stays a field)
        return (f"Reconstruction{src}: {self.topology}, {len(self.visible_particles())} visible "
                f"particles, {self.visible_energy_mev:.0f} MeV; vertex {self.vertex.status}")

    def _sections(self):
        parts = [(p.id, p.pid, f"{max(p.pid_scores.values()):.2f}", p.length_cm, p.kinetic_energy_mev,
                  p.energy_method + (" (>=)" if p.energy_is_lower_bound else ""),
                  p.start_dedx_mev_cm if p.kind == "shower" else p.mean_dedx_mev_cm,
                  "yes" if p.has_bragg_peak else "-", "yes" if p.michel else "-",
                  p.distance_to_vertex_cm, "yes" if p.visible else "no")
                 for p in self.particles[:15]]
        v = self.vertex
        out = [("Vertex", ["status", "(x, y, z) cm", "confidence", "particles there"],
                [(v.status, v.vertex_cm, v.confidence, v.n_particles_at_vertex)]),
               ("Particles" + (f" (15 of {len(self.particles)})" if len(self.particles) > 15 else ""),
                ["id", "PID", "score", "length [cm]", "KE [MeV]", "energy by",
                 "dE/dx [MeV/cm] (shower: trunk, track: mean)", "Bragg", "Michel", "from vertex [cm]",
                 "visible"], parts)]
        if self.michels:
            out.append(("Michel candidates", ["points", "energy [MeV]", "attached to", "to track end [cm]"],
                        [(m.n_points, m.energy_mev, m.attached_to if m.attached_to is not None else "-",
                          m.distance_to_track_end_cm) for m in self.michels]))
        out.append(("Interactions", ["id", "vertex (x, y, z) cm", "particles", "visible energy [MeV]", "topology"],
                    [(i.id, i.vertex_cm, len(i.particles), i.visible_energy_mev, i.topology)
                     for i in self.interactions]))
        if self.notes:
            out.append(("Notes", ["note"], [(n,) for n in self.notes]))
        return out


_PID_LINE = {"muon": "#d62728", "proton": "#2ca02c", "pion": "#ff7f0e", "kaon": "#8c564b",
             "electron": "#1f77b4", "photon": "#17becf"}
