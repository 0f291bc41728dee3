"""The physics ``tools.find_vertex`` relies on (``tools.vertexing.locate``; ``score_candidates``,
``pointing_back``, ``crossings`` of ``tools.vertex_candidates``), on synthetic events on the 0.6 cm grid the agent's events use,
with the encoder's labels given (no network): particles meeting at a point, a proton's Bragg
peak, the beam direction, photons pointing back at the vertex, an event without particles."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from larsight.encoder.data import volume_for
from larsight.events.model import Event, EventMeta
from larsight.tools.clusters import SEM_LE, SEM_SHOWER, SEM_TRACK, build_clusters, significant
from larsight.tools.vertex_candidates import beam_event, crossings, pointing_back
from larsight.tools.vertexing import locate

VOL = volume_for(0.6)
VS = VOL.voxel_size_cm
V = np.array([100.0, 100.0, 100.0])


def _line(start, direction, length, dedx):
    """Voxels (corner coordinates) and energies of a straight track; ``dedx(s)`` in MeV/cm at
    distance ``s`` from ``start``."""
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    step = 0.1
    s = np.arange(0.0, length, step)
    pos = np.asarray(start, float) + s[:, None] * d
    vox = np.floor(pos / VS).astype(np.int64)
    keys, inv = np.unique(vox, axis=0, return_inverse=True)
    e = np.bincount(inv.ravel(), weights=dedx(s) * step)
    return keys * VS, e


def _shower(start, direction, length, energy, rng):
    """A narrow cone of deposits from ``start`` along ``direction``, dense early, thin later."""
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    t = rng.gamma(2.0, length / 6.0, 600)
    t = t[t < length]
    side = rng.normal(0.0, 1.0, (len(t), 3)) * (0.15 * t[:, None] + 0.2)
    side -= (side @ d)[:, None] * d
    pos = np.asarray(start, float) + t[:, None] * d + side
    vox = np.floor(pos / VS).astype(np.int64)
    keys, inv = np.unique(vox, axis=0, return_inverse=True)
    e = np.bincount(inv.ravel(), minlength=len(keys)).astype(float)
    return keys * VS, e * energy / e.sum()


def _event(parts, generator=None):
    """(event, clusters) from [(points, energy, semantic class)], one particle each."""
    pts = np.vstack([p for p, _, _ in parts]).astype(np.float32)
    en = np.concatenate([e for _, e, _ in parts]).astype(np.float32)
    sem = np.concatenate([np.full(len(e), s) for _, e, s in parts]).astype(np.int64)
    inst = np.concatenate([np.full(len(e), k) for k, (_, e, _) in enumerate(parts)]).astype(np.int64)
    pts, keep = np.unique(pts, axis=0, return_index=True)      # one deposit per voxel
    ev = Event(points=pts, energy=en[keep], meta=EventMeta(volume=VOL, generator=generator))
    clusters = build_clusters(ev, sem[keep], inst[keep], np.zeros(len(keep), np.int64), None)
    return ev, clusters


def _pred(n, head=None, conf=0.0):
    vertex = np.full(3, np.nan) if head is None else np.asarray(head, float)
    return SimpleNamespace(vertex=vertex, vertex_confidence=conf, vertex_spread_cm=float("nan"),
                           interaction=np.zeros(n, np.int64))


def _mip(s):
    return np.full(len(s), 2.1)


def _proton(length):
    """Rising towards the stopping end (PHYSICS.md: 17 R^-0.42 MeV/cm, R the residual range)."""
    return lambda s: 17.0 * np.maximum(length - s, 0.3) ** -0.42


def _dist(vtx, p):
    return float(np.linalg.norm(np.subtract(vtx.vertex_cm, p)))


def test_two_tracks_from_a_common_point():
    """A minimum-ionising track (no Bragg peak: either end could be its start) and a stopping
    proton leave one point: the vertex is that point, although an unsure vertex head points at
    the far end of the long track."""
    mu = _line(V, (0.3, 0.0, 1.0), 40.0, _mip)
    p = _line(V, (-0.6, 0.5, 0.6), 12.0, _proton(12.0))
    ev, clusters = _event([(*mu, SEM_TRACK), (*p, SEM_TRACK)])
    far = V + 40.0 * np.array([0.3, 0.0, 1.0]) / np.linalg.norm([0.3, 0.0, 1.0])
    vtx = locate(ev, _pred(len(ev), far, 0.02), clusters)
    assert vtx.status != "no_vertex"
    assert _dist(vtx, V) < 1.5
    assert vtx.n_particles_at_vertex == 2


@pytest.mark.parametrize("bragg_at_high_x", [True, False])
def test_a_lone_proton_starts_away_from_its_bragg_peak(bragg_at_high_x):
    """A lone stopping proton across the beam: the vertex is the end without the Bragg peak."""
    a, b = V, V + np.array([15.0, 0.0, 0.0])
    start, end = (a, b) if bragg_at_high_x else (b, a)
    ev, clusters = _event([(*_line(start, end - start, 15.0, _proton(15.0)), SEM_TRACK)])
    vtx = locate(ev, _pred(len(ev)), clusters)
    assert _dist(vtx, start) < 1.5
    assert _dist(vtx, end) > 10.0


def test_a_lone_mip_track_in_a_beam_event_starts_upstream():
    """A neutrino's products go forward: a lone track with nothing to tell its ends apart starts
    at its upstream end along the beam (+z) in a neutrino event; an isotropic particle-gun event
    has no beam to tell."""
    start = V
    ev, clusters = _event([(*_line(start, (0.2, 0.1, 1.0), 50.0, _mip), SEM_TRACK)],
                          generator="larsight.sim 0.1 (nu)")
    assert beam_event(ev)
    vtx = locate(ev, _pred(len(ev)), clusters)
    assert _dist(vtx, start) < 1.5
    gun = Event(points=ev.points, energy=ev.energy, meta=EventMeta(volume=VOL, generator="larsight.sim 0.1 (mpv)"))
    assert not beam_event(gun)


def test_a_photon_points_back_at_the_vertex_across_its_gap():
    """A photon shower converting 15 cm from the vertex points back at it; seen from a point
    beside its axis, it does not."""
    rng = np.random.default_rng(1)
    d = np.array([0.5, 0.2, 1.0])
    d = d / np.linalg.norm(d)
    ev, clusters = _event([(*_shower(V + 15.0 * d, d, 30.0, 150.0, rng), SEM_SHOWER)])
    sig = [c for c in clusters if significant(c, VS)]
    assert len(sig) == 1 and sig[0].kind == "shower"
    assert pointing_back(sig, V, VS) == 1
    side = V + 15.0 * d + 12.0 * np.cross(d, [0.0, 1.0, 0.0]) / np.linalg.norm(np.cross(d, [0.0, 1.0, 0.0]))
    assert pointing_back(sig, side, VS) == 0


def test_tracks_whose_starts_are_lost_cross_at_the_vertex():
    """Two tracks starting 5 cm from a hidden vertex, extended backwards, cross there."""
    d1 = np.array([0.0, 0.3, 1.0]) / np.linalg.norm([0.0, 0.3, 1.0])
    d2 = np.array([0.8, -0.2, 0.6]) / np.linalg.norm([0.8, -0.2, 0.6])
    ev, clusters = _event([(*_line(V + 5.0 * d1, d1, 30.0, _mip), SEM_TRACK),
                           (*_line(V + 5.0 * d2, d2, 20.0, _mip), SEM_TRACK)])
    sig = [c for c in clusters if significant(c, VS)]
    found = crossings(sig, VS)
    assert found and min(float(np.linalg.norm(q - V)) for q in found) < 1.5


def test_an_event_without_particles_has_no_vertex():
    """A few scattered low-energy deposits: no particle can define a vertex."""
    rng = np.random.default_rng(0)
    pts = np.floor(rng.uniform(20.0, 200.0, (12, 3)) / VS) * VS
    en = rng.uniform(0.05, 0.5, 12)
    ev, clusters = _event([(pts, en, SEM_LE)])
    vtx = locate(ev, _pred(len(ev), V, 0.01), clusters)
    assert vtx.status == "no_vertex"
    assert vtx.vertex_cm is None
