"""The tools report's per-event comparison: what it reads of a reconstruction (``RecoView``),
the one-to-one matching of reconstructed to truth particles by shared points, and the record of
one event (``EventRecord``, plain data that goes to the JSON as it is). See
``evals.tools_report`` for the matching rules."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

PIDS = ("photon", "electron", "muon", "pion", "proton", "kaon")
COUNT_KEYS = ("muon", "electron", "proton", "pion", "photon")
MATCH_FRACTION = 0.5


@dataclass
class RecoParticle:
    """What the report needs of one reconstructed particle (``tools.ParticleReco``)."""

    pid: str
    kind: str
    point_index: np.ndarray
    visible: bool = True
    length_cm: Optional[float] = None
    kinetic_energy_mev: Optional[float] = None
    energy_method: Optional[str] = None
    start_dedx_mev_cm: Optional[float] = None
    pid_method: Optional[str] = None
    michel: bool = False


@dataclass
class RecoView:
    """One event's reconstruction as the report reads it (the agent's view: the main
    interaction's counts and topology, ``find_vertex``'s vertex)."""

    particles: list[RecoParticle]
    counts: dict[str, int]
    topology: str
    vertex_cm: Optional[Sequence[float]]
    vertex_status: str = ""

    @classmethod
    def from_tools(cls, reco, vertex) -> "RecoView":
        parts = [RecoParticle(pid=p.pid, kind=p.kind, point_index=np.asarray(p.point_index, np.int64),
                              visible=p.visible, length_cm=p.length_cm,
                              kinetic_energy_mev=p.kinetic_energy_mev, energy_method=p.energy_method,
                              start_dedx_mev_cm=p.start_dedx_mev_cm, pid_method=p.pid_method,
                              michel=p.michel) for p in reco.particles]
        main = reco.main
        return cls(particles=parts, counts=dict(main.counts) if main else {}, topology=reco.topology,
                   vertex_cm=vertex.vertex_cm, vertex_status=vertex.status)


@dataclass
class EventRecord:
    """The comparison of one event (plain data: goes to the json as it is)."""

    index: int
    truth_topology: str
    reco_topology: str
    truth_counts: dict[str, int]
    reco_counts: dict[str, int]
    vertex_distance_cm: Optional[float]
    vertex_status: str
    pairs: list[dict] = field(default_factory=list)       # paired (truth, reco) particles
    missed: list[dict] = field(default_factory=list)      # visible truth particles without a pair
    extra: list[dict] = field(default_factory=list)       # visible reco particles without a pair
    seconds: float = 0.0


def match(truth_ids: Sequence[int], particle_labels: np.ndarray, reco: Sequence[RecoParticle]
          ) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    """Greedy one-to-one pairs (truth index, reco index, shared points) by shared points, each
    accepted when the shared points are at least ``MATCH_FRACTION`` of the reco particle's.
    Also returns the shared-points matrix (truth x reco)."""
    shared = np.zeros((len(truth_ids), len(reco)), dtype=np.int64)
    pos = {int(t): i for i, t in enumerate(truth_ids)}
    for j, r in enumerate(reco):
        if len(r.point_index) == 0:
            continue
        ids, cnt = np.unique(particle_labels[r.point_index], return_counts=True)
        for t, c in zip(ids.tolist(), cnt.tolist()):
            if t in pos:
                shared[pos[t], j] = c
    cand = [(int(shared[i, j]), i, j) for i, j in zip(*np.nonzero(shared))]
    cand.sort(key=lambda x: (-x[0], x[1], x[2]))
    used_t, used_r, pairs = set(), set(), []
    for s, i, j in cand:
        if i in used_t or j in used_r:
            continue
        if s < MATCH_FRACTION * max(len(reco[j].point_index), 1):
            continue
        used_t.add(i)
        used_r.add(j)
        pairs.append((i, j, s))
    return pairs, shared


def _classify_extra(r: RecoParticle, labels: np.ndarray, main_ids: set, paired_ids: set,
                    invisible_ids: set) -> str:
    ids, cnt = np.unique(labels[r.point_index], return_counts=True)
    k = int(np.argmax(cnt))
    top, frac = int(ids[k]), cnt[k] / max(len(r.point_index), 1)
    if frac < MATCH_FRACTION:
        return "mixed"
    if top in paired_ids:
        return "split"
    if top in invisible_ids:
        return "invisible truth"
    if top in main_ids:
        return "unpaired truth"
    return "secondary"


def compare(index: int, ev, facts, view: RecoView) -> EventRecord:
    """Compare one event's reconstruction with its truth (``qformer.corpus.event_facts``)."""
    main = facts.main
    truth_parts = list(main.particles) if main is not None else []
    truth_counts = {k: int(main.counts.get(k, 0)) if main else 0 for k in COUNT_KEYS + ("michel",)}
    reco_counts = {k: int(view.counts.get(k, 0)) for k in COUNT_KEYS + ("michel",)}
    dist = None
    if main is not None and main.vertex_cm is not None and view.vertex_cm is not None:
        dist = float(np.linalg.norm(np.subtract(view.vertex_cm, main.vertex_cm)))
    rec = EventRecord(index=index, truth_topology=main.topology if main else "0l 0p 0pi",
                      reco_topology=view.topology, truth_counts=truth_counts, reco_counts=reco_counts,
                      vertex_distance_cm=None if dist is None else round(dist, 3),
                      vertex_status=view.vertex_status)
    if ev.particle is None:
        return rec
    labels = np.asarray(ev.particle, dtype=np.int64)
    pairs, _ = match([p.id for p in truth_parts], labels, view.particles)
    paired_t = {i for i, _, _ in pairs}
    paired_r = {j for _, j, _ in pairs}
    for i, j, s in pairs:
        t, r = truth_parts[i], view.particles[j]
        rec.pairs.append(dict(
            truth_type=t.type, truth_kind=t.kind, truth_visible=bool(t.visible), reco_pid=r.pid,
            reco_kind=r.kind, reco_visible=bool(r.visible), shared=int(s), truth_voxels=int(t.n_voxels),
            reco_points=int(len(r.point_index)), truth_length_cm=t.length_cm, reco_length_cm=r.length_cm,
            truth_ke_mev=t.kinetic_energy_mev, reco_ke_mev=r.kinetic_energy_mev,
            energy_method=r.energy_method, end_state=t.end_state, truth_michel=bool(t.michel),
            reco_michel=bool(r.michel), reco_start_dedx=r.start_dedx_mev_cm, pid_method=r.pid_method,
            truth_gap_cm=t.conversion_gap_cm))
    for i, t in enumerate(truth_parts):
        if t.visible and i not in paired_t:
            rec.missed.append(dict(truth_type=t.type, truth_voxels=int(t.n_voxels),
                                   truth_ke_mev=t.kinetic_energy_mev, truth_length_cm=t.length_cm))
    main_ids = {int(t.id) for t in truth_parts}
    paired_ids = {int(truth_parts[i].id) for i in paired_t}
    invisible_ids = {int(t.id) for t in truth_parts if not t.visible}
    for j, r in enumerate(view.particles):
        if r.visible and j not in paired_r:
            rec.extra.append(dict(reco_pid=r.pid, n_points=int(len(r.point_index)),
                                  what=_classify_extra(r, labels, main_ids, paired_ids, invisible_ids)))
    return rec
