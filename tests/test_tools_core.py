"""The core tools (segment, find_vertex, reconstruct, classify_event, describe, render) on
simulated events, on a PILArNet-M-schema file, on the real PILArNet-M event, and on bad input.

Physics checks against the simulator's truth: a contained 300 MeV muon's length and
range energy, a muon + proton vertex, probabilities that sum to one; the measurement helpers
(range tables, recombination, dE/dx, track geometry) on synthetic input."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from larsight import events
from larsight.events import sim
from larsight.events.model import EVENT_CLASSES, PID_CLASSES, SEMANTIC_CLASSES, EventMeta, Interaction
from larsight.qformer.corpus import parse_topology, topology_string

from larsight import tools
from larsight.tools import classify_event, describe, find_vertex, reconstruct, render, segment
from larsight.tools import physics as P
from larsight.tools.inputs import load_event

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def mu_p_event(seed: int = 4, vertex=(100.0, 110.0, 90.0)) -> events.Event:
    """A 300 MeV muon and a 150 MeV proton leaving one vertex 70 degrees apart (seed 4: neither
    interacts, both stop)."""
    from larsight.events.sim.transport import Builder, SimOptions
    from larsight.events.sim.voxelize import to_event

    rng = np.random.default_rng(seed)
    b = Builder(rng, events.PILARNET_VOLUME, SimOptions())
    x = np.asarray(vertex)
    for pdg, t, d in ((13, 300.0, (0.3, 0.2, 1.0)), (2212, 150.0, (-0.6, 0.5, 0.4))):
        b.add(pdg, t, x, np.asarray(d) / np.linalg.norm(d), interaction=0)
    b.run()
    return to_event(b, [Interaction(id=0, vertex_cm=vertex, channel="GUN")],
                    EventMeta(seed=seed, generator="test mu+p"))


@pytest.fixture(scope="module")
def nu_event():
    return sim.neutrino(seed=3, index=1, flavour="numu_cc")


@pytest.fixture(scope="module")
def mu_p():
    return mu_p_event()


@pytest.fixture(scope="module")
def muon():
    """A contained 300 MeV muon (CSDA range about 122 cm)."""
    return sim.particle_gun(13, 300.0, seed=1, direction=(0.1, 0.2, 1.0), position=(115.0, 100.0, 40.0))


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory, nu_event):
    path = tmp_path_factory.mktemp("tools") / "one_nu.h5"
    events.write(path, [nu_event])
    return path


# ============================================================================ input resolution
# (bad input for every tool: tests/test_tools_inputs.py)
def test_load_event_references(h5_file, nu_event):
    ev = load_event(f"{h5_file}:0")
    assert ev.meta.source == str(h5_file) and ev.meta.index == 0 and len(ev) == len(nu_event)
    assert len(load_event(str(h5_file))) == len(nu_event)          # a one-event file needs no index
    assert len(load_event(f"{h5_file}:-1")) == len(nu_event)
    assert load_event(nu_event) is nu_event
    assert len(load_event(tools.EventInput(event=f"{h5_file}:0"))) == len(nu_event)


def test_import_is_lazy():
    code = ("import sys, tools; assert 'torch' not in sys.modules and 'plotly' not in sys.modules; "
            "print(sorted(n for n in tools.__all__ if not n[0].isupper()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("classify_event", "describe", "find_similar", "find_vertex", "reconstruct", "render", "segment"):
        assert name in out.stdout


# ============================================================================ segment
def test_segment_on_simulated_event(nu_event):
    seg = segment(nu_event)
    n = len(nu_event)
    assert seg.n_points == n and seg.semantic.shape == (n,) and seg.semantic_probs.shape == (n, 5)
    assert np.allclose(seg.semantic_probs.sum(1), 1.0, atol=1e-4)
    assert seg.pid_probs.shape == (n, len(PID_CLASSES)) and np.allclose(seg.pid_probs.sum(1), 1.0, atol=1e-4)
    assert set(seg.class_counts) == set(SEMANTIC_CLASSES) and sum(seg.class_counts.values()) == n
    assert sum(seg.class_energy_mev.values()) == pytest.approx(nu_event.total_energy_mev, rel=1e-3)
    assert seg.n_particles == len(np.unique(seg.particle)) and seg.n_interactions >= 1
    assert sum(p.n_points for p in seg.particles) == n
    # a nu_mu CC event is mostly track; most points agree with the simulator's labels
    assert seg.class_counts["track"] > seg.class_counts["shower"]
    assert seg.semantic_accuracy is not None and seg.semantic_accuracy > 0.6
    dumped = json.loads(seg.model_dump_json())
    assert "semantic" not in dumped and dumped["class_counts"] == seg.class_counts  # arrays stay out
    relabelled = seg.to_event()
    assert np.array_equal(relabelled.semantic, seg.semantic) and relabelled.particles == []
    assert segment(nu_event) is not seg and np.array_equal(segment(nu_event).particle, seg.particle)


def test_model_loads_once_thread_safe():
    from larsight.tools.engine import get_model

    got = []
    threads = [threading.Thread(target=lambda: got.append(get_model())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and all(m is got[0] for m in got)


# ============================================================================ vertex
def test_vertex_of_muon_and_proton(mu_p):
    v = find_vertex(mu_p)
    assert v.status == "ok" and v.vertex_cm is not None
    assert v.truth_distance_cm is not None and v.truth_distance_cm < 3.0
    assert np.linalg.norm(np.subtract(v.vertex_cm, (100.0, 110.0, 90.0))) < 3.0
    assert v.n_particles_at_vertex >= 2 and 0.0 < v.confidence <= 1.0
    assert v.head_vertex_cm is not None and 0.0 <= v.head_confidence <= 1.0
    assert v.particle_vertex_cm is not None and v.head_to_particles_cm is not None


def test_no_vertex_for_particle_rain():
    rain = sim.mpr(seed=1, index=0)
    v = find_vertex(rain)
    assert v.status == "no_vertex" and v.vertex_cm is None
    assert "no common interaction vertex" in v.note and "separate groups" in v.note
    assert len(v.interactions) >= 2 and all(g.energy_mev >= 0 for g in v.interactions)
    reco = reconstruct(rain)      # still reconstructs, each particle on its own
    assert reco.vertex.status == "no_vertex" and len(reco.particles) >= 2
    assert any("no common interaction vertex" in n for n in reco.notes)
    assert describe(rain, vlm=False).text.count("No clear interaction vertex") == 1


def test_label_free_event(nu_event):
    bare = events.Event(points=nu_event.points, energy=nu_event.energy)
    v = find_vertex(bare)
    assert v.truth_vertex_cm is None and v.truth_distance_cm is None
    reco = reconstruct(bare)
    assert reco.truth_topology is None and reco.particles
    assert segment(bare).semantic_accuracy is None
    assert classify_event(bare, vlm=False).truth_class is None


# ============================================================================ reconstruct
def test_contained_muon_length_and_range_energy(muon):
    truth = muon.particles[0]
    true_length = float(np.linalg.norm(np.subtract(truth.end_cm, truth.start_cm)))
    reco = reconstruct(muon)
    mu = max((p for p in reco.particles if p.kind == "track"), key=lambda p: p.length_cm)
    assert mu.pid == "muon" and mu.pid_scores["muon"] == max(mu.pid_scores.values())
    assert sum(mu.pid_scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert mu.length_cm == pytest.approx(true_length, abs=2.0)               # truth 122.6 cm
    assert mu.path_length_cm >= mu.length_cm - 0.5
    assert mu.stops and mu.has_bragg_peak and mu.bragg_ratio > 1.5
    assert mu.energy_method == "range" and not mu.energy_is_lower_bound
    assert mu.kinetic_energy_mev == pytest.approx(truth.kinetic_energy_mev, rel=0.05)  # CSDA, PHYSICS.md
    assert mu.range_energy_mev == mu.kinetic_energy_mev
    assert mu.deposited_energy_mev == pytest.approx(truth.kinetic_energy_mev, rel=0.15)
    assert mu.charge_energy_mev == pytest.approx(mu.deposited_energy_mev, rel=0.1)  # box-model inverse
    # oriented from where it started: direction along the gun's, start near the gun
    d = np.array([0.1, 0.2, 1.0]) / np.linalg.norm([0.1, 0.2, 1.0])
    assert np.dot(mu.direction, d) > 0.9
    assert np.linalg.norm(np.subtract(mu.start_cm, truth.start_cm)) < 3.0
    assert mu.mean_dedx_mev_cm == pytest.approx(2.3, abs=0.6)            # MIP-like on average
    assert mu.end_dedx_mev_cm > 2 * mu.start_dedx_mev_cm                 # the Bragg peak
    rr, dd = mu.dedx_residual_range_cm, mu.dedx_profile_mev_cm
    assert len(rr) == len(dd) > 100 and rr.min() < 1.0


def test_reconstruct_muon_and_proton(mu_p):
    reco = reconstruct(mu_p)
    vis = reco.visible_particles()
    assert reco.topology == "1mu 1p 0pi" and reco.truth_topology == "1mu 1p 0pi"
    assert parse_topology(reco.topology) == {**{k: 0 for k in ("electron", "pion", "photon", "kaon")},
                                             "muon": 1, "proton": 1}
    assert topology_string(reco.main.counts) == reco.topology
    mu, p = reco.of_type("muon")[0], reco.of_type("proton")[0]
    assert mu.distance_to_vertex_cm < 3.0 and p.distance_to_vertex_cm < 3.0
    assert p.kinetic_energy_mev == pytest.approx(150.0, rel=0.1)            # by range
    assert mu.kinetic_energy_mev == pytest.approx(300.0, rel=0.1)
    assert p.mean_dedx_mev_cm > 2 * mu.mean_dedx_mev_cm                     # protons ionise more
    assert {q.id for q in vis} <= set(reco.main.particles)
    assert reco.main.visible_energy_mev == pytest.approx(mu_p.total_energy_mev, rel=0.05)
    assert 0 <= reco.unassigned_energy_mev < 0.3 * reco.visible_energy_mev
    assert all(q.kind == "track" for q in vis)


def test_reconstruct_neutrino_event_and_michel(nu_event):
    reco = reconstruct(nu_event)
    assert reco.particles and reco.interactions and reco.main is reco.interactions[0]
    parse_topology(reco.topology)
    assert set(reco.main.counts) >= {"muon", "proton", "pion", "electron", "photon", "track", "shower", "michel"}
    for p in reco.particles:
        assert p.kind in ("track", "shower") and p.pid in PID_CLASSES
        assert np.linalg.norm(p.direction) == pytest.approx(1.0, abs=1e-3)
        assert 0.0 <= p.angle_to_beam_deg <= 180.0 and p.length_cm > 0 and p.kinetic_energy_mev >= 0
        assert (p.kind == "track") == (p.pid in ("muon", "pion", "proton", "kaon"))
    for m in reco.michels:
        if m.attached_to is not None:
            host = next(p for p in reco.particles if p.id == m.attached_to)
            assert host.michel and host.pid in ("muon", "pion") and m.distance_to_track_end_cm <= 5.0


def test_shower_trunk_dedx_separates_electrons_from_photons():
    """A 1-MIP trunk for an electron, 2 MIPs for a photon (PHYSICS.md), measured by the tools'
    trunk estimator on the simulator's own shower points."""
    from larsight.tools.clusters import Cluster
    from larsight.tools.reconstruction import _shower

    values = {}
    for pdg in (11, 22):
        found = []
        for seed in range(6):
            ev = sim.particle_gun(pdg, 300.0, seed=seed, position=(115.0, 115.0, 60.0), direction=(0, 0, 1))
            m = ev.particle == 0
            c = Cluster(idx=np.flatnonzero(m), kind="shower", instance=0, interaction=0,
                        centres=ev.points[m].astype(float) + 0.15, energy=ev.energy[m].astype(float),
                        pid_vote=np.full(6, 1 / 6))
            found.append(_shower(c, np.array(ev.interactions[0].vertex_cm), 0.3)["start_dedx"])
        values[pdg] = float(np.median(found))
    # medians of six 300 MeV showers: about 2.1 (e) and 4 (gamma) MeV/cm
    assert 1.5 < values[11] < 2.7 and 3.3 < values[22] < 5.0


# ============================================================================ classify / describe
def test_classify_event_encoder_and_missing_vlm(nu_event, tmp_path):
    c = classify_event(nu_event, vlm=False)
    assert c.method == "encoder" and c.vlm_probabilities is None and c.vlm is None
    assert set(c.probabilities) == set(EVENT_CLASSES)
    assert sum(c.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert c.predicted_class == max(c.probabilities, key=c.probabilities.get)
    assert c.predicted_label in ("nu_e CC", "nu_mu CC", "NC") and c.truth_class == "numu_cc"
    missing = classify_event(nu_event, vlm=tmp_path / "no_vlm")
    assert missing.vlm_probabilities is None and "no trained VLM" in missing.note
    assert missing.probabilities == c.probabilities
    assert "encoder" in str(missing) and "<table" in missing._repr_html_()


def test_truth_stays_out_of_the_classification_headline(nu_event):
    """The headline is what a language model reads: measurements only; the simulator's truth
    stays available as a field."""
    c = classify_event(nu_event, vlm=False)
    assert c.truth_class == "numu_cc"
    head = c._headline()
    assert "truth" not in head.lower()
    assert head.count("nu_mu CC") == (c.predicted_label == "nu_mu CC")   # the truth label is not added
    assert c.predicted_label in head and f"{c.probabilities[c.predicted_class]:.2f}" in head
    assert "truth" not in str(c).lower() and "truth" not in c._repr_html_().lower()
    assert c.model_dump()["truth_class"] == "numu_cc"


def test_truth_stays_out_of_reconstruction_and_segmentation_headlines(nu_event):
    reco, seg = reconstruct(nu_event), segment(nu_event)
    assert reco.truth_topology is not None and seg.semantic_accuracy is not None   # kept as fields
    assert "truth" not in reco._headline().lower() and "truth" not in seg._headline().lower()


def test_describe_is_short_and_factual(nu_event):
    d = describe(nu_event, vlm=False)
    reco = reconstruct(nu_event)
    assert 10 < d.word_count <= 120 and d.word_count == len(d.text.split())
    assert d.topology == reco.topology and f"Topology {reco.topology}" in d.text
    assert d.event_class in EVENT_CLASSES and d.classifier == "encoder"
    assert d.vertex_cm == reco.vertex.vertex_cm and d.vertex_status == reco.vertex.status
    assert len(d.particles) == len(reco.visible_particles())
    assert str(d) == d.text
    busy = describe(sim.mpr(seed=2, index=0), vlm=False)     # many particles: still short
    assert busy.word_count <= 120


# ============================================================================ files and real data
def test_tools_on_pilarnet_file(h5_file, nu_event):
    ref = f"{h5_file}:0"
    seg = segment(ref)
    assert seg.source == ref and seg.n_points == len(nu_event)
    assert np.array_equal(seg.semantic, segment(nu_event).semantic)     # same event, same answer
    v = find_vertex(ref)
    assert v.source == ref and v.vertex_cm == find_vertex(nu_event).vertex_cm
    reco = reconstruct(ref)
    assert reco.source == ref and reco.topology == reconstruct(nu_event).topology
    assert classify_event(ref, vlm=False).source == ref
    assert ref in describe(ref, vlm=False).text
    assert render(ref).layout.height == 600


def test_real_pilarnet_event(real_event):
    seg = segment(real_event)
    assert seg.n_points == 1390 and seg.semantic_accuracy > 0.7
    reco = reconstruct(real_event)
    assert reco.visible_energy_mev == pytest.approx(919.08, abs=0.1)
    showers = [p for p in reco.particles if p.kind == "shower" and p.deposited_energy_mev > 100]
    tracks = [p for p in reco.visible_particles() if p.kind == "track"]
    assert showers and len(tracks) >= 2       # an electron shower, a muon, pions and protons
    assert describe(real_event, vlm=False).word_count <= 120


# ============================================================================ render and display
def test_render_views_and_overlays(nu_event):
    fig = render(nu_event)
    names = [t.name for t in fig.data]
    assert fig.layout.height == 600 and "reco vertex" in names and "particle starts" in names
    assert "truth vertex" in names
    fig = render(nu_event, color_by="particle", height=450)
    names = [t.name for t in fig.data]
    assert fig.layout.height == 450 and any(n.startswith("particle 0 (") for n in names)
    assert render(nu_event, color_by="semantic", labels="truth", overlay=False).data[0].name in SEMANTIC_CLASSES
    proj = render(nu_event, view="projections")
    kinds = [t.type for t in proj.data]
    assert kinds.count("heatmap") == 2 and "scatter" in kinds
    assert render(nu_event, view="xz").data[0].type == "heatmap"
    with pytest.raises(ValueError, match="color_by must be one of"):
        render(nu_event, color_by="rainbow")
    with pytest.raises(ValueError, match="view must be one of"):
        render(nu_event, view="xy")
    bare = events.Event(points=nu_event.points, energy=nu_event.energy)
    with pytest.raises(ValueError, match="no truth 'semantic' labels"):
        render(bare, color_by="semantic", labels="truth")


def test_render_writes_files_atomically(nu_event, tmp_path):
    import importlib.util

    from larsight.tools.rendering import ImageExportError

    out = tmp_path / "figs" / "event.html"
    fig = render(nu_event, view="projections", height=400, out=out)
    page = out.read_text()
    assert page.lower().startswith("<!doctype html>") and "plotly" in page.lower()
    assert page.rstrip().endswith("</html>") and fig.layout.height == 400
    assert sorted(p.name for p in out.parent.iterdir()) == ["event.html"]   # no temporary left
    with pytest.raises(ValueError, match=r"must end in one of .html, .png"):
        render(nu_event, out=tmp_path / "event.txt")
    png = tmp_path / "event.png"
    if importlib.util.find_spec("kaleido") is None:
        with pytest.raises(ImageExportError, match="needs plotly's static image export.*kaleido"):
            render(nu_event, out=png)
        assert not png.exists()
    else:
        try:
            render(nu_event, view="xz", out=png)
        except ImageExportError as err:        # kaleido without a browser to drive
            assert "could not write event.png" in str(err) and not png.exists()
        else:
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_print_and_draw_as_tables(nu_event):
    results = [segment(nu_event), find_vertex(nu_event), reconstruct(nu_event),
               classify_event(nu_event, vlm=False), describe(nu_event, vlm=False)]
    for r in results:
        html = r._repr_html_()
        assert html.startswith("<div") and "<table" in html
        text = str(r)
        assert text and "\n" in text or isinstance(r, tools.Description)
        json.loads(r.model_dump_json())            # no numpy array leaks into the JSON
    reco = results[2]
    assert "Particles" in str(reco) and "topology" in str(reco).lower()
    assert str(reco.particles[0]).startswith(reco.particles[0].pid)


# ============================================================================ physics helpers
def test_range_energy_inverts_the_csda_table():
    for species, pdg, t in (("muon", 13, 300.0), ("proton", 2212, 150.0), ("pion", 211, 200.0)):
        r = float(sim.csda_range_cm(pdg, t))
        assert P.range_energy_mev(species, r) == pytest.approx(t, rel=1e-3)
    # PHYSICS.md table: a 100 MeV muon travels 30.4 cm, a 100 MeV proton 7.82 cm
    assert P.range_energy_mev("muon", 30.4) == pytest.approx(100.0, rel=0.03)
    assert P.range_energy_mev("proton", 7.82) == pytest.approx(100.0, rel=0.03)
    assert P.range_energy_mev("electron", 10.0) is None and P.range_energy_mev("muon", 0.0) is None


def test_recombination_inverse_and_charge_energy():
    from larsight.events.sim import medium as M

    dedx = np.array([1.5, 2.105, 5.0, 20.0])
    visible = dedx * M.recombination(dedx)                 # what the charge says
    assert np.allclose(P.inverse_box(visible), dedx, rtol=1e-6)
    assert M.recombination(2.105) == pytest.approx(0.70, abs=0.01)   # PHYSICS.md: a MIP keeps ~70%
    # a MIP track of 10 cm, 2.105 MeV per cm: charge back to energy
    s = np.arange(0.0, 10.0, 0.3)
    e = np.full(len(s), 2.105 * 0.3)
    nel = e * M.recombination(2.105) / M.W_ION_MEV
    assert P.charge_energy_mev(nel, s, 10.0) == pytest.approx(e.sum(), rel=0.02)
    assert P.charge_energy_mev(nel) == pytest.approx(e.sum(), rel=0.02)


def test_track_geometry_dedx_profile_and_bragg_ratio():
    t = np.arange(0.0, 50.0, 0.3)
    pts = np.stack([10 + t * 0.6, 20 + t * 0.8, np.full_like(t, 30.0)], 1)
    g = P.track_geometry(pts, 0.3)
    assert g.path_length_cm == pytest.approx(t[-1] + 0.3, abs=0.3)
    ends = {tuple(np.round(pts[g.a], 3)), tuple(np.round(pts[g.b], 3))}
    assert ends == {tuple(np.round(pts[0], 3)), tuple(np.round(pts[-1], 3))}
    residual = t[-1] - t
    energy = 0.3 * np.where(residual < 3.0, 8.0, 2.0)           # a peak in the last 3 cm
    s = g.s if np.allclose(pts[g.a], pts[0]) else g.flipped().s
    rr, dd = P.dedx_profile(s, energy, t[-1] + 0.3)
    assert np.median(dd) == pytest.approx(2.0, rel=0.15)
    assert P.bragg_ratio(rr, dd) > 3.0
    flat = P.bragg_ratio(rr, np.full_like(dd, 2.0))
    assert flat == pytest.approx(1.0)
    assert P.pca_axis(pts) @ np.array([0.6, 0.8, 0.0]) == pytest.approx(1.0, abs=1e-6) or \
        P.pca_axis(pts) @ np.array([0.6, 0.8, 0.0]) == pytest.approx(-1.0, abs=1e-6)
