"""``event_facts``: the truth summary of an ``Event`` (see ``events.vocabulary``), from the
simulator's particle and interaction tables or, for a foreign file, from per-point labels."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from larsight.events.model import PID_CLASSES, Event
from larsight.events.sim import medium as _M
from larsight.events.vocabulary.facts import EventFacts, InteractionFacts, NoTruthError, ParticleFacts, Vec3
from larsight.events.vocabulary.terms import (DECAY_VISIBLE_MEV, DEDX_FROM_CM, DEDX_MIN_SHOWER_MEV,
                                              DEDX_MIN_VOXELS, DEDX_RADIUS_CM, DEDX_WINDOW_CM,
                                              MICHEL_MAX_DIST_CM, MICHEL_MIN_VOXELS, TRACK_TYPES)
from larsight.events.vocabulary.topology import finish_counts, is_visible

__all__ = ["event_facts"]


def _r(x: float, nd: int = 2) -> float:
    return float(round(float(x), nd))


def _vec(v) -> Vec3:
    return tuple(_r(c, 3) for c in v)  # type: ignore[return-value]


def _mode_of(event: Event) -> Optional[str]:
    gen = event.meta.generator or ""
    if "(" in gen and gen.endswith(")"):
        return gen[gen.rindex("(") + 1:-1]
    return None


def event_facts(event: Event) -> EventFacts:
    """The truth summary of ``event`` (see ``events.vocabulary``). Raises ``NoTruthError`` if the
    event carries no truth (no particle / interaction tables and no per-point particle labels)."""
    if not isinstance(event, Event):
        raise TypeError(f"event_facts: expected an events.Event, got {type(event).__name__}")
    if not event.particles and not event.interactions and event.particle is None:
        raise NoTruthError(
            "event_facts: the event carries no truth (no particle or interaction table and no "
            "per-point 'particle' labels), so there is nothing to describe; use simulated events "
            "or a labelled file")
    if event.particles and (event.interactions or event.particle is None):
        inters = _facts_from_tables(event)
    else:  # per-point labels only, or a foreign file's per-group table without interactions
        inters = _facts_from_labels(event)
    return EventFacts(event_id=event.meta.event_id if event.meta.event_id is not None else event.meta.index,
                      mode=_mode_of(event), event_class=event.event_class, n_points=len(event),
                      visible_energy_mev=_r(event.total_energy_mev, 1), interactions=inters)


def _pca(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Principal axis and the extent of the points along it."""
    if len(points) < 2:
        return np.array([0.0, 0.0, 1.0]), 0.0
    c = points - points.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    axis = vt[0]
    t = c @ axis
    return axis, float(t.max() - t.min())


# ============================================================================ from the tables
class _Truth:
    """Lookups over an event's particle table and per-point labels: children of a particle,
    the voxels of a particle, voxel centres, the volume."""

    def __init__(self, event: Event):
        self.event = event
        vol = event.meta.volume
        self.vs = vol.voxel_size_cm
        self.lo, self.hi = vol.lower_cm, vol.upper_cm
        self.centres = event.points.astype(np.float64) + 0.5 * self.vs if event.particle is not None else None
        self.by_id = {p.id: p for p in event.particles}
        self.children: dict[int, list] = {}
        for p in event.particles:
            self.children.setdefault(p.parent, []).append(p)
        self.vox_of: dict[int, np.ndarray] = {}
        if event.particle is not None:
            order = np.argsort(event.particle, kind="stable")
            ids, starts = np.unique(event.particle[order], return_index=True)
            bounds = list(starts[1:]) + [len(order)]
            for i, a, b in zip(ids, starts, bounds):
                self.vox_of[int(i)] = order[a:b]

    def voxels(self, pid: int) -> np.ndarray:
        return self.vox_of.get(pid, np.zeros(0, dtype=np.int64))

    def michel_below(self, pid: int, end: np.ndarray, depth: int = 0) -> Optional[float]:
        """Energy of a visible Michel electron of the decay chain of ``pid`` that starts at
        ``end`` (within MICHEL_MAX_DIST_CM: mu -> e, or pi+ -> mu+ -> e+ at rest; a muon from a
        decay in flight travels away and its Michel electron is not at this end)."""
        if depth > 3:
            return None
        for ch in self.children.get(pid, []):
            if ch.process != "decay":
                continue
            par = self.by_id[pid]
            if abs(ch.pdg) == 11 and abs(par.pdg) == 13:
                nv = ch.n_voxels if self.event.particle is None else len(self.voxels(ch.id))
                near = np.linalg.norm(np.asarray(ch.start_cm) - end) <= MICHEL_MAX_DIST_CM
                if nv >= MICHEL_MIN_VOXELS and near:
                    return float(ch.kinetic_energy_mev)
            elif abs(ch.pdg) == 13:
                e = self.michel_below(ch.id, end, depth + 1)
                if e is not None:
                    return e
        return None


def _interaction_sums(event: Event) -> tuple[dict[int, float], dict[int, int]]:
    """Deposited energy and voxel count per interaction label (empty without labels)."""
    if event.interaction is None:
        return {}, {}
    ids, inv = np.unique(event.interaction, return_inverse=True)
    en = np.bincount(inv, weights=event.energy.astype(np.float64))
    nv = np.bincount(inv)
    return ({int(i): float(e) for i, e in zip(ids, en)}, {int(i): int(n) for i, n in zip(ids, nv)})


def _interaction_header(inter, iid: int) -> tuple[InteractionFacts, Optional[np.ndarray]]:
    """The facts of an interaction row before its particles (and its vertex as an array), or
    of an interaction known only from particle labels (``inter`` None)."""
    if inter is None:
        return InteractionFacts(id=iid, source="labels"), None
    vtx = np.asarray(inter.vertex_cm, dtype=np.float64)
    neutrino = inter.nu_pdg != 0
    it = InteractionFacts(
        id=iid, vertex_cm=_vec(vtx), source="neutrino" if neutrino else "gun",
        event_class=inter.event_class, current=inter.current,
        channel=inter.channel if inter.channel != "GUN" else None, nu_pdg=inter.nu_pdg,
        nu_energy_mev=_r(inter.nu_energy_mev, 1) if inter.nu_energy_mev > 0 else None)
    return it, vtx


def _primary_level(prims, truth: _Truth, it: InteractionFacts) -> tuple[list, int]:
    """(particle, from_pi0) pairs of the primary level (primaries, with each primary pi0
    replaced by its decay photons) and the number of primary pi0s; primary neutrons are only
    counted on ``it``."""
    level = []
    n_pi0 = 0
    for p in prims:
        if p.pdg == 111:
            n_pi0 += 1
            level += [(c, True) for c in truth.children.get(p.id, []) if c.pdg == 22 and c.process == "decay"]
        elif p.pdg == 2112:
            it.n_neutrons += 1
        elif p.pid >= 0:
            level.append((p, False))
    return level, n_pi0


def _facts_from_tables(event: Event) -> list[InteractionFacts]:
    truth = _Truth(event)
    interactions = list(event.interactions)
    known = {i.id for i in interactions}
    extra_ids = sorted({p.interaction for p in event.particles if p.parent < 0} - known - {-1})
    out: list[InteractionFacts] = []
    inter_energy, inter_nvox = _interaction_sums(event)
    for inter in interactions + [None] * len(extra_ids):
        iid = extra_ids[len(out) - len(interactions)] if inter is None else inter.id
        it, vtx = _interaction_header(inter, iid)
        if inter_energy:
            it.visible_energy_mev = _r(inter_energy.get(iid, 0.0), 1)
            it.n_voxels = inter_nvox.get(iid, 0)
        else:
            it.visible_energy_mev = _r(sum(p.deposited_energy_mev for p in event.particles
                                           if p.interaction == iid and p.parent < 0), 1)
        prims = [p for p in event.particles if p.parent < 0 and p.interaction == iid]
        if not prims and len(interactions) == 1 and iid == interactions[0].id:
            prims = [p for p in event.particles if p.parent < 0 and p.interaction == -1]
        level, n_pi0 = _primary_level(prims, truth, it)
        beam = it.source == "neutrino"
        for p, from_pi0 in level:
            pf = _particle_facts(p, from_pi0, truth, vtx, beam)
            if pf is not None:
                it.particles.append(pf)
        if vtx is None and it.particles:
            starts = [p.start_cm for p in it.particles if p.start_cm is not None]
            if starts and all(np.allclose(s, starts[0]) for s in starts) and any(starts[0]):
                it.vertex_cm = starts[0]
        finish_counts(it, n_pi0)
        out.append(it)
    return out


def _charge(pdg: int) -> Optional[int]:
    if not pdg:
        return None
    try:
        return int(round(_M.pdg_info(pdg)[1]))
    except Exception:  # unknown code in a foreign file
        return None


def _particle_facts(p, from_pi0: bool, truth: _Truth, vtx, beam: bool) -> Optional[ParticleFacts]:
    name = PID_CLASSES[p.pid]
    if p.pdg == 111:
        return None
    kind = "track" if name in TRACK_TYPES else "shower"
    event = truth.event
    vox = truth.voxels(p.id)
    if event.particle is not None:
        n_vox = int(len(vox))
        edep = float(event.energy[vox].sum(dtype=np.float64)) if n_vox else 0.0
    else:
        n_vox, edep = int(p.n_voxels), float(p.deposited_energy_mev)
    start = np.asarray(p.start_cm, dtype=np.float64)
    end = np.asarray(p.end_cm, dtype=np.float64)
    has_geom = not np.allclose(start, end) or p.kinetic_energy_mev > 0
    mom = np.asarray(p.momentum_mev, dtype=np.float64)
    pn = float(np.linalg.norm(mom))
    pts = truth.centres[vox] if (truth.centres is not None and n_vox) else None
    if pn > 0:
        d = mom / pn
    elif pts is not None and len(pts) >= 2:
        d, _ = _pca(pts)
        ref = vtx if vtx is not None else start
        if np.dot(pts.mean(0) - ref, d) < 0:
            d = -d
    else:
        d = None
    ke = float(p.kinetic_energy_mev) if p.kinetic_energy_mev > 0 else None
    pf = ParticleFacts(id=p.id, pdg=p.pdg, type=name, charge=_charge(p.pdg), kind=kind, from_pi0=from_pi0,
                       kinetic_energy_mev=_r(ke, 1) if ke is not None else None,
                       deposited_energy_mev=_r(edep, 1), n_voxels=n_vox,
                       direction=_vec(d) if d is not None else None,
                       start_cm=_vec(start) if (has_geom or any(start)) else None,
                       end_cm=_vec(end) if has_geom and not np.allclose(start, end) else None)
    if beam and d is not None:
        pf.angle_to_beam_deg = _r(math.degrees(math.acos(max(-1.0, min(1.0, float(d[2]))))), 1)
    if kind == "track":
        _track_facts(pf, p, truth, pts, start, end, has_geom, edep)
    else:
        _shower_facts(pf, p, truth, vox, pts, d, start, end, has_geom, vtx)
    pf.visible = is_visible(pf)
    return pf


def _track_facts(pf: ParticleFacts, p, truth: _Truth, pts, start, end, has_geom: bool,
                 edep: float) -> None:
    """Length, end state, Michel electron and mean dE/dx of a track."""
    straight = has_geom and not np.allclose(start, end)
    if straight:
        length = float(np.linalg.norm(end - start))
    elif pts is not None and len(pts) >= 2:
        length = _pca(pts)[1] + truth.vs
    else:
        length = None
    pf.length_cm = _r(length, 2) if length is not None else None
    if straight:
        pf.end_state = _end_state(p, truth, end)
    e_m = truth.michel_below(p.id, end)
    if e_m is not None and pf.end_state != "exits":
        pf.michel, pf.michel_energy_mev = True, _r(e_m, 1)
    if length and length >= 1.0 and edep > 0:
        pf.mean_dedx_mev_cm = _r(edep / length, 2)


def _end_state(p, truth: _Truth, end: np.ndarray) -> str:
    margin = 0.5 * truth.vs
    children = truth.children.get(p.id, [])
    if np.any(end < truth.lo + margin) or np.any(end > truth.hi - margin):
        return "exits"
    if any(c.process == "hadronic" for c in children):
        return "interacts"
    if any(c.process == "decay" and abs(c.pdg) in (13, 211) and c.kinetic_energy_mev > DECAY_VISIBLE_MEV
           for c in children):
        return "decays"
    return "stops"


def _shower_facts(pf: ParticleFacts, p, truth: _Truth, vox, pts, d, start, end, has_geom: bool,
                  vtx) -> None:
    """Conversion gap, extent and start dE/dx of a shower."""
    vs = truth.vs
    # shower start: the conversion point for a photon (truth end of a showering photon),
    # the creation point for an electron
    s0 = None
    if has_geom:
        if pf.type == "photon":
            if p.kinetic_energy_mev >= 20.0 and not np.allclose(start, end):
                s0 = end
            elif pts is not None:
                s0 = pts[np.argmin(np.linalg.norm(pts - start, axis=1))]
        else:
            s0 = start
    if pf.type == "photon" and s0 is not None:
        ref = vtx if vtx is not None else start
        pf.conversion_gap_cm = _r(float(np.linalg.norm(s0 - ref)), 2)
    if pts is not None and d is not None and s0 is not None and len(pts) >= 3:
        rel = pts - s0
        t = rel @ d
        r = np.linalg.norm(rel - np.outer(t, d), axis=1)
        ahead = t[t >= -vs]
        if len(ahead):
            pf.length_cm = _r(float(np.quantile(ahead, 0.95)) + 0.5 * vs, 2)
        sel = (t >= DEDX_FROM_CM) & (t < DEDX_FROM_CM + DEDX_WINDOW_CM) & (r < DEDX_RADIUS_CM)
        if int(sel.sum()) >= DEDX_MIN_VOXELS and (p.kinetic_energy_mev or 0.0) >= DEDX_MIN_SHOWER_MEV:
            pf.start_dedx_mev_cm = _r(float(truth.event.energy[vox][sel].sum(dtype=np.float64))
                                      / DEDX_WINDOW_CM, 2)
    elif pts is not None and len(pts) >= 2 and pf.length_cm is None:
        pf.length_cm = _r(_pca(pts)[1] + vs, 2)


# ============================================================================ from labels only
def _majority(labels: Optional[np.ndarray], n: int) -> int:
    """The most common label >= 0, or -1."""
    if labels is None or not (labels >= 0).any():
        return -1
    return int(np.bincount(labels[labels >= 0], minlength=n).argmax())


def _facts_from_labels(event: Event) -> list[InteractionFacts]:
    """Facts from per-point labels only (a foreign PILArNet-M file): one interaction per
    interaction label (or one for all), particles from the labelled voxels."""
    vs = event.meta.volume.voxel_size_cm
    centres = event.points.astype(np.float64) + 0.5 * vs
    inter = event.interaction if event.interaction is not None else np.zeros(len(event), np.int32)
    table = {p.id: p for p in event.particles}
    out = []
    for iid in sorted(int(i) for i in np.unique(inter) if i >= 0) or [0]:
        it = InteractionFacts(id=iid, source="labels")
        m_int = inter == iid
        it.visible_energy_mev = _r(event.energy[m_int].sum(dtype=np.float64), 1)
        it.n_voxels = int(m_int.sum())
        michels = []
        for g in sorted(int(g) for g in np.unique(event.particle[m_int]) if g >= 0):
            vox = np.flatnonzero(m_int & (event.particle == g))
            sem_major = _majority(event.semantic[vox] if event.semantic is not None else None, 5)
            pid_major = _majority(event.pid[vox] if event.pid is not None else None, 6)
            pts = centres[vox]
            axis, extent = _pca(pts)
            edep = float(event.energy[vox].sum(dtype=np.float64))
            if sem_major == 2:
                michels.append((pts.mean(0), edep, len(vox)))
                continue
            if sem_major in (3, 4):
                continue
            if pid_major >= 0:
                name = PID_CLASSES[pid_major]
                kind = "track" if name in TRACK_TYPES else "shower"
            elif sem_major in (0, 1):
                name, kind = "unknown", ("shower" if sem_major == 0 else "track")
            else:
                continue
            pf = ParticleFacts(id=g, type=name, kind=kind, deposited_energy_mev=_r(edep, 1),
                               n_voxels=len(vox), length_cm=_r(extent + vs, 2), direction=_vec(axis))
            row = table.get(g)
            if row is not None and row.kinetic_energy_mev > 0:   # a foreign file's momentum
                pf.kinetic_energy_mev = _r(row.kinetic_energy_mev, 1)
            if kind == "track" and pf.length_cm:
                pf.mean_dedx_mev_cm = _r(edep / pf.length_cm, 2)
            pf.visible = is_visible(pf)
            it.particles.append(pf)
        _attach_michels(it, michels, event, m_int, centres)
        finish_counts(it, 0)
        out.append(it)
    return out


def _attach_michels(it: InteractionFacts, michels: list, event: Event, m_int: np.ndarray,
                    centres: np.ndarray) -> None:
    """A Michel cluster belongs to the muon (or pion) track with an end closest to it."""
    for centre, e_m, nv in michels:
        best, dist = None, 5.0
        for pf in it.particles:
            if pf.type not in ("muon", "pion") or pf.kind != "track":
                continue
            vox = np.flatnonzero(m_int & (event.particle == pf.id))
            dd = float(np.min(np.linalg.norm(centres[vox] - centre, axis=1)))
            if dd < dist:
                best, dist = pf, dd
        if best is not None and nv >= MICHEL_MIN_VOXELS:
            best.michel, best.michel_energy_mev = True, _r(e_m, 1)
