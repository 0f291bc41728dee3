"""Measurements the validator checks claims against, read from the tools' observations.

The agent keeps every tool result as a JSON observation (``model_dump(mode="json")`` of the
tool's pydantic result, truth fields removed). ``Evidence.from_observations`` turns the
observations of one event into one flat, typed record: the event class and its
probabilities (``classify_event``), the vertex (``find_vertex``), the reconstructed particles
and their counts (``reconstruct``), the voxels labelled Michel and the deposited energy
(``segment``). A field is None when no tool has measured it yet; ``needs`` names the tool that
would.

The readers accept the field names of the tools package and a few spellings around them, so
that the validator keeps working while a tool's result grows (a missing field just leaves the
measurement unknown, which makes a claim *unverifiable*, never wrongly supported).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from pydantic import BaseModel, Field

from larsight.events.vocabulary import parse_topology

__all__ = ["Evidence", "ParticleEvidence", "PARTICLE_TYPES", "COUNT_KEYS", "TOOL_FOR", "strip_truth"]

PARTICLE_TYPES = ("muon", "electron", "photon", "proton", "pion", "kaon")
COUNT_KEYS = PARTICLE_TYPES + ("pi0", "track", "shower", "michel")

TOOL_FOR = {
    "event_class": "classify_event",
    "vertex": "find_vertex",
    "particles": "reconstruct",
    "michel": "reconstruct",
    "energy": "reconstruct",
    "visible_energy": "segment",
}
"""Which tool measures what (the validator runs it when a claim needs it and it did not run)."""

_TRUTH_KEYS = ("truth", "semantic_accuracy", "pid_accuracy", "true_")


def strip_truth(obj: Any) -> Any:
    """A copy of a JSON observation without simulator-truth fields (keys starting with 'truth'
    or 'true_', accuracies against truth labels): the agent answers from measurements only."""
    if isinstance(obj, dict):
        return {k: strip_truth(v) for k, v in obj.items()
                if not (isinstance(k, str) and k.lower().startswith(_TRUTH_KEYS))}
    if isinstance(obj, list):
        return [strip_truth(v) for v in obj]
    return obj


def _get(d: dict, *names, default=None):
    for n in names:
        if isinstance(d, dict) and n in d and d[n] is not None:
            return d[n]
    return default


def _num(x) -> Optional[float]:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _vec(x) -> Optional[tuple[float, float, float]]:
    if x is None:
        return None
    if isinstance(x, dict):
        x = [x.get("x"), x.get("y"), x.get("z")]
    try:
        v = tuple(float(c) for c in x)
    except (TypeError, ValueError):
        return None
    return v if len(v) == 3 and all(math.isfinite(c) for c in v) else None  # type: ignore[return-value]


def _ptype(p: dict) -> str:
    t = _get(p, "type", "pid", "pid_name", "particle_type", "species", default="unknown")
    t = str(t).lower()
    return {"mu": "muon", "e": "electron", "gamma": "photon", "p": "proton", "pi": "pion",
            "k": "kaon", "mu-": "muon", "mu+": "muon", "e-": "electron", "e+": "electron",
            "pi+": "pion", "pi-": "pion", "charged pion": "pion"}.get(t, t)


class ParticleEvidence(BaseModel):
    """One reconstructed particle, as far as the validator needs it."""

    id: Optional[int] = None
    type: str = Field("unknown", description="PID class name")
    kind: str = Field("unknown", description="track or shower")
    length_cm: Optional[float] = None
    energy_mev: Optional[float] = None
    start_cm: Optional[tuple[float, float, float]] = None
    end_cm: Optional[tuple[float, float, float]] = None
    start_dedx_mev_cm: Optional[float] = Field(None, description="showers: dE/dx of the trunk")
    gap_cm: Optional[float] = Field(None, description="showers: distance of the start from the vertex")
    michel: Optional[bool] = Field(None, description="tracks: a Michel electron at the end")
    from_vertex: Optional[bool] = None
    energy_is_lower_bound: bool = Field(False, description="the energy is a lower bound (the particle leaves "
                                                           "the volume or may have interacted)")

    @classmethod
    def read(cls, p: dict, vertex: Optional[tuple] = None) -> "ParticleEvidence":
        kind = str(_get(p, "kind", "semantic", "category", default="unknown")).lower()
        t = _ptype(p)
        if kind not in ("track", "shower"):
            kind = "track" if t in ("muon", "pion", "proton", "kaon") else \
                "shower" if t in ("electron", "photon") else kind
        start = _vec(_get(p, "start_cm", "start"))
        gap = _num(_get(p, "gap_cm", "conversion_gap_cm", "vertex_gap_cm", "distance_to_vertex_cm"))
        if gap is None and kind == "shower" and start is not None and vertex is not None:
            gap = math.dist(start, vertex)
        mich = _get(p, "michel", "has_michel", "michel_at_end")
        if isinstance(mich, dict):
            mich = True
        return cls(
            id=_get(p, "id", "index"), type=t, kind=kind,
            length_cm=_num(_get(p, "length_cm", "path_length_cm", "track_length_cm")),
            energy_mev=_num(_get(p, "energy_mev", "kinetic_energy_mev", "ke_mev")),
            start_cm=start, end_cm=_vec(_get(p, "end_cm", "end")),
            start_dedx_mev_cm=_num(_get(p, "start_dedx_mev_cm", "dedx_start_mev_cm", "start_dedx")),
            gap_cm=gap, michel=None if mich is None else bool(mich),
            from_vertex=_get(p, "from_vertex", "at_vertex"),
            energy_is_lower_bound=bool(_get(p, "energy_is_lower_bound", default=False)))


class Evidence(BaseModel):
    """What the tools measured on one event (None: not measured)."""

    event: Optional[str] = None
    event_class: Optional[str] = None
    class_probabilities: dict[str, float] = Field(default_factory=dict)
    vertex_cm: Optional[tuple[float, float, float]] = None
    vertex_status: Optional[str] = None
    particles: Optional[list[ParticleEvidence]] = None
    counts: Optional[dict[str, int]] = None
    topology: Optional[str] = None
    n_michel_voxels: Optional[int] = None
    michel_energy_mev: Optional[float] = None
    visible_energy_mev: Optional[float] = None
    tools: dict[str, str] = Field(default_factory=dict, description="measurement -> tool that gave it")

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_observations(cls, observations: Iterable[dict], event: Optional[str] = None) -> "Evidence":
        """Merge the successful observations (``{"tool", "ok", "output", "event"}``) of
        ``event`` (all events when None); later observations win."""
        ev = cls(event=event)
        for ob in observations:
            if not ob.get("ok") or not isinstance(ob.get("output"), dict):
                continue
            if event is not None and ob.get("event") not in (None, event):
                continue
            ev.add(ob["tool"], ob["output"])
        return ev

    def add(self, tool: str, out: dict) -> None:
        reader = getattr(self, f"_read_{tool}", None)
        if reader is not None:
            reader(out)

    def _read_classify_event(self, out: dict) -> None:
        probs = _get(out, "probabilities", "class_probabilities", "probs", default={}) or {}
        probs = {str(k): float(v) for k, v in probs.items() if _num(v) is not None}
        cls_ = _get(out, "event_class", "prediction", "predicted_class", "label")
        if cls_ is None and probs:
            cls_ = max(probs, key=probs.get)
        if cls_ is not None:
            self.event_class = str(cls_)
            self.class_probabilities = probs
            self.tools["event_class"] = "classify_event"

    def _read_find_vertex(self, out: dict) -> None:
        self.vertex_cm = _vec(_get(out, "vertex_cm"))
        self.vertex_status = _get(out, "status")
        self.tools["vertex"] = "find_vertex"
        for p in self.particles or []:  # gaps measured from this vertex when reconstruct lacks them
            if p.gap_cm is None and p.kind == "shower" and p.start_cm and self.vertex_cm:
                p.gap_cm = math.dist(p.start_cm, self.vertex_cm)

    def _read_reconstruct(self, out: dict) -> None:
        vres = out.get("vertex")
        vtx = _vec(vres.get("vertex_cm")) if isinstance(vres, dict) else _vec(_get(out, "vertex_cm"))
        if vtx is not None and self.tools.get("vertex") != "find_vertex":
            self.vertex_cm = vtx
            self.vertex_status = vres.get("status") if isinstance(vres, dict) else None
            self.tools["vertex"] = "reconstruct"
        inters = [i for i in (_get(out, "interactions", default=[]) or []) if isinstance(i, dict)]
        main = inters[0] if inters else None
        keep = set(main.get("particles") or []) if main and main.get("particles") is not None else None
        parts = [p for p in (_get(out, "particles", default=[]) or []) if isinstance(p, dict)
                 and _get(p, "visible", default=True) and not _get(p, "secondary", default=False)]
        if keep is not None and len(inters) > 1:
            parts = [p for p in parts if p.get("id") in keep]   # the main interaction's particles
        self.particles = [ParticleEvidence.read(p, vtx or self.vertex_cm) for p in parts]
        counts = main.get("counts") if main else _get(out, "counts", "particle_counts")
        derived = self._count(self.particles)
        if isinstance(counts, dict) and counts:
            self.counts = {k: int(v) for k, v in counts.items() if _num(v) is not None}
        else:
            self.counts = dict(derived)
        for k in COUNT_KEYS:
            self.counts.setdefault(k, derived.get(k, 0))
        self.topology = (main or {}).get("topology") or _get(out, "topology")
        e = _num(_get(out, "visible_energy_mev", "total_energy_mev"))
        if e is not None:
            self.visible_energy_mev = e
            self.tools.setdefault("visible_energy", "reconstruct")
        self.tools["particles"] = "reconstruct"
        self.tools["michel"] = "reconstruct"

    def _read_segment(self, out: dict) -> None:
        cc = _get(out, "class_counts", default={}) or {}
        if "michel" in cc:
            self.n_michel_voxels = int(cc["michel"])
            self.tools.setdefault("michel_voxels", "segment")
        ce = _get(out, "class_energy_mev", default={}) or {}
        if "michel" in ce:
            self.michel_energy_mev = _num(ce["michel"])
        e = _num(_get(out, "total_energy_mev", "visible_energy_mev"))
        if e is not None:
            self.visible_energy_mev = e
            self.tools["visible_energy"] = "segment"

    def _read_describe(self, out: dict) -> None:
        """``describe`` states the other tools' numbers: read them where nothing better is known."""
        if self.event_class is None and out.get("event_class"):
            self.event_class = str(out["event_class"])
            p = _num(out.get("class_probability"))
            self.class_probabilities = {self.event_class: p} if p is not None else {}
            self.tools["event_class"] = "describe"
        if self.vertex_cm is None and _vec(out.get("vertex_cm")) is not None:
            self.vertex_cm = _vec(out.get("vertex_cm"))
            self.vertex_status = out.get("vertex_status")
            self.tools["vertex"] = "describe"
        if self.particles is None and isinstance(out.get("particles"), list):
            self.particles = [ParticleEvidence.read(p, self.vertex_cm) for p in out["particles"] if isinstance(p, dict)]
            derived = self._count(self.particles)
            counts = dict(derived)
            if isinstance(out.get("topology"), str):
                try:
                    counts.update(parse_topology(out["topology"]))
                except ValueError:
                    pass
            if out.get("n_michel") is not None:
                counts["michel"] = int(out["n_michel"])
            self.counts = counts
            self.topology = out.get("topology")
            self.tools["particles"] = self.tools["michel"] = "describe"
        if self.visible_energy_mev is None and _num(out.get("visible_energy_mev")) is not None:
            self.visible_energy_mev = _num(out.get("visible_energy_mev"))
            self.tools["visible_energy"] = "describe"
        for tool, key in (("classify_event", "classification"), ("find_vertex", "vertex"),
                          ("reconstruct", "reconstruction"), ("segment", "segmentation")):
            sub = out.get(key)
            if isinstance(sub, dict):
                self.add(tool, sub)

    @staticmethod
    def _count(parts: list[ParticleEvidence]) -> dict[str, int]:
        c = {k: 0 for k in COUNT_KEYS}
        for p in parts:
            if p.type in c:
                c[p.type] += 1
            if p.kind in ("track", "shower"):
                c[p.kind] += 1
            if p.michel:
                c["michel"] += 1
        return c

    # ------------------------------------------------------------------ queries
    def count(self, key: str) -> Optional[int]:
        if self.counts is None:
            return None
        return int(self.counts.get(key, 0))

    def of_type(self, t: str) -> list[ParticleEvidence]:
        return [p for p in (self.particles or []) if p.type == t or p.kind == t]

    @property
    def tracks(self) -> list[ParticleEvidence]:
        return [p for p in (self.particles or []) if p.kind == "track"]

    @property
    def showers(self) -> list[ParticleEvidence]:
        return [p for p in (self.particles or []) if p.kind == "shower"]

    def michel_at_track_end(self) -> Optional[bool]:
        """True / False from the reconstruction (a track with a Michel electron at its end);
        from the segmentation's Michel voxels (3 or more) when the reconstruction lacks it."""
        if self.particles is not None and any(p.michel is not None for p in self.particles):
            return any(bool(p.michel) for p in self.particles)
        if self.counts is not None and "michel" in self.counts and self.particles is not None:
            return self.counts["michel"] > 0
        if self.n_michel_voxels is not None:
            return self.n_michel_voxels >= 3
        return None
