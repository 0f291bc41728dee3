"""The text corpus from simulator truth: facts, captions, QA, classification targets, tool traces."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from larsight import events
from larsight.events.sim import simulate
from larsight.qformer import corpus as C


@pytest.fixture(scope="module")
def nu_events():
    return list(simulate("nu", 20, seed=3))


@pytest.fixture(scope="module")
def nu_facts(nu_events):
    return [C.event_facts(ev) for ev in nu_events]


@pytest.fixture(scope="module")
def gun_events():
    return list(simulate("mpv", 40, seed=5)) + list(simulate("mpr", 3, seed=5))


def _nvox(ev, pid):
    return int((ev.particle == pid).sum())


# ---------------------------------------------------------------------------- facts
def test_facts_agree_with_truth(nu_events, nu_facts):
    classes = set()
    for ev, f in zip(nu_events, nu_facts):
        inter = ev.interactions[0]
        it = f.main
        classes.add(f.event_class)
        assert f.event_class == ev.event_class == it.event_class
        assert it.vertex_cm == pytest.approx(inter.vertex_cm, abs=1e-3)
        assert it.nu_energy_mev == pytest.approx(inter.nu_energy_mev, abs=0.1)
        assert it.visible_energy_mev == pytest.approx(ev.total_energy_mev, abs=0.1)
        prim = [p for p in ev.particles if p.parent == -1]
        # independent counts with the documented thresholds
        n_p = sum(1 for p in prim if p.pdg == 2212 and p.kinetic_energy_mev >= C.PROTON_MIN_KE_MEV
                  and _nvox(ev, p.id) >= C.MIN_VOXELS)
        n_mu = sum(1 for p in prim if abs(p.pdg) == 13 and _nvox(ev, p.id) >= C.MIN_VOXELS
                   and np.linalg.norm(np.subtract(p.end_cm, p.start_cm)) >= C.TRACK_MIN_LENGTH_CM)
        n_pi = sum(1 for p in prim if abs(p.pdg) == 211 and _nvox(ev, p.id) >= C.MIN_VOXELS
                   and np.linalg.norm(np.subtract(p.end_cm, p.start_cm)) >= C.TRACK_MIN_LENGTH_CM)
        assert it.counts["proton"] == n_p
        assert it.counts["muon"] == n_mu
        assert it.counts["pion"] == n_pi
        assert it.counts["pi0"] == sum(1 for p in prim if p.pdg == 111)
        assert it.n_neutrons == sum(1 for p in prim if p.pdg == 2112)
        assert it.counts["track"] + it.counts["shower"] == len(it.visible_particles())
        # the topology string is the counts
        parsed = C.parse_topology(it.topology)
        for k in ("muon", "electron", "proton", "pion", "photon", "kaon"):
            assert parsed[k] == it.counts[k]
        assert C.topology_string(it.counts) == it.topology
        # the charged lepton of a CC event is in the particle list with its true energy
        if f.event_class in ("nue_cc", "numu_cc"):
            lep = next(p for p in prim if abs(p.pdg) == (11 if f.event_class == "nue_cc" else 13))
            pf = next(p for p in it.particles if p.id == lep.id)
            assert pf.kinetic_energy_mev == pytest.approx(lep.kinetic_energy_mev, abs=0.1)
            assert pf.type == ("electron" if f.event_class == "nue_cc" else "muon")
        else:
            assert not [p for p in it.particles if p.type in ("muon", "electron") and not p.from_pi0]
        for pf in it.particles:
            assert pf.kind == ("track" if pf.type in ("muon", "pion", "proton", "kaon") else "shower")
            if pf.type == "photon" and pf.conversion_gap_cm is not None:
                assert pf.conversion_gap_cm >= 0
            if pf.michel:  # a Michel electron of its decay chain starts at its end
                ends = [np.asarray(p.start_cm) for p in ev.particles
                        if abs(p.pdg) == 11 and p.process == "decay"]
                assert min(np.linalg.norm(e - np.asarray(pf.end_cm)) for e in ends) <= C.MICHEL_MAX_DIST_CM
    assert classes == {"nue_cc", "numu_cc", "nc"}


def test_topology_convention():
    assert C.topology_string({"muon": 1, "proton": 2}) == "1mu 2p 0pi"
    assert C.topology_string({"electron": 1, "proton": 1}) == "1e 1p 0pi"
    assert C.topology_string({"proton": 1, "photon": 2}) == "0l 1p 0pi 2gamma"
    assert C.topology_string({"muon": 1, "electron": 1, "pion": 1, "kaon": 1}) == "1mu 1e 0p 1pi 1K"
    assert C.topology_string({}) == "0l 0p 0pi"
    for s in ("1mu 2p 0pi", "0l 1p 0pi 2gamma", "1mu 1e 0p 1pi 1K"):
        assert C.topology_string(C.parse_topology(s)) == s
    with pytest.raises(ValueError, match="cannot read"):
        C.parse_topology("1mu 2x")


def test_shower_start_dedx_separates_electrons_from_photons(gun_events):
    e, g = [], []
    for ev in gun_events[:40]:
        for p in C.event_facts(ev).all_particles():
            if p.start_dedx_mev_cm is not None:
                (e if p.type == "electron" else g).append(p.start_dedx_mev_cm)
    assert len(e) >= 5 and len(g) >= 5
    assert 1.4 < np.median(e) < 2.7          # about 1 MIP (2.1 MeV/cm)
    assert 3.3 < np.median(g) < 5.0          # about 2 MIP (4.2 MeV/cm)


def test_multi_interaction_events(gun_events):
    for ev in gun_events[40:]:
        f = C.event_facts(ev)
        assert f.mode == "mpr" and f.is_rain and f.event_class is None
        assert len(f.interactions) == len(ev.interactions)
        for it, inter in zip(f.interactions, ev.interactions):
            assert it.vertex_cm == pytest.approx(inter.vertex_cm, abs=1e-3)
            assert it.source == "gun"
        caps = C.captions(f, np.random.default_rng(0), n=3)
        assert all(caps)
        qa = dict(C.qa_pairs(f, np.random.default_rng(0)))
        assert any("separate" in a for a in qa.values())
        with pytest.raises(ValueError, match="no neutrino interaction class"):
            C.classification_target(f, np.random.default_rng(0))


def test_no_truth_gives_a_clear_error(nu_events, tmp_path):
    bare = events.Event(points=nu_events[0].points, energy=nu_events[0].energy)
    with pytest.raises(C.NoTruthError, match="no truth"):
        C.event_facts(bare)
    with pytest.raises(C.NoTruthError):
        C.build_corpus([bare], seed=0)
    recs = C.build_corpus([bare, nu_events[0]], seed=0, skip_untruthed=True)
    assert recs and {r["event_id"] for r in recs} == {nu_events[0].meta.event_id}
    with pytest.raises(TypeError):
        C.event_facts("not an event")


def test_labels_only_event(real_event):
    f = C.event_facts(real_event)
    it = f.main
    assert f.event_class is None and it.vertex_cm is None
    assert it.counts["muon"] >= 1 and it.counts["electron"] >= 1
    assert all(p.kinetic_energy_mev is None for p in it.particles)
    caps = C.captions(f, np.random.default_rng(1), n=4)
    assert all(caps) and not any("at the vertex" in c for c in caps)


# ---------------------------------------------------------------------------- texts carry the numbers
def _numbers_of(f):
    it = f.main
    out = []
    for p in it.visible_particles():
        out += C.energy_forms(p.energy_mev)
        if p.length_cm is not None:
            out += C.length_forms(p.length_cm)
    if it.vertex_cm:
        out.append(C.fmt_vertex(it.vertex_cm))
    if it.nu_energy_mev:
        out += C.energy_forms(it.nu_energy_mev)
    out += C.energy_forms(it.visible_energy_mev) + [it.topology]
    return out


def test_captions_contain_fact_numbers(nu_facts):
    for f in nu_facts:
        it = f.main
        rng = np.random.default_rng(7)
        caps = C.captions(f, rng, n=8)
        nums = _numbers_of(f)
        for c in caps:
            assert any(n in c for n in nums), c
        lead = it.leading
        if lead is not None:
            forms = C.energy_forms(lead.energy_mev) + (C.length_forms(lead.length_cm) if lead.length_cm else [])
            assert any(x in c for c in caps for x in forms)
        for c in caps:   # the physics is right where it is stated
            if "conversion length" in c:
                assert "18 cm" in c
            assert not re.search(r"\b(nan|None|inf)\b", c), c


def test_qa_answers_carry_the_numbers(nu_facts):
    topics = set()
    for f in nu_facts:
        it = f.main
        items = C.qa_items(f, np.random.default_rng(3))
        by = {d["topic"]: d for d in items}
        topics |= set(by)
        assert by["vertex"]["answer"] == f"At {C.fmt_vertex(it.vertex_cm)}."
        assert by["topology"]["answer"] == it.topology + "."
        assert by["class"]["answer"].startswith(C.CLASS_TEXT[f.event_class] + ":")
        for t in ("proton", "muon", "pion", "photon", "electron"):
            assert by[f"n_{t}"]["answer"].startswith(str(it.counts[t]))
        assert by["n_tracks"]["answer"].startswith(str(len(it.tracks)))
        assert any(x in by["nu_energy"]["answer"] for x in C.energy_forms(it.nu_energy_mev))
        if it.leading is not None:
            assert any(x in by["leading"]["answer"] for x in C.energy_forms(it.leading.energy_mev))
        if it.longest_track is not None:
            assert any(x in by["longest_track"]["answer"] for x in C.length_forms(it.longest_track.length_cm))
        assert by["has_muon"]["answer"].startswith("Yes" if it.counts["muon"] else "No")
        assert by["has_michel"]["answer"].startswith("Yes" if it.counts["michel"] else "No")
        assert by["has_photon"]["answer"].startswith("Yes" if it.counts["photon"] else "No")
        pairs = C.qa_pairs(f, np.random.default_rng(3))
        assert pairs == [(d["question"], d["answer"]) for d in items]
    assert len(topics) >= 20


# ---------------------------------------------------------------------------- classification
def test_classification_targets_start_with_the_canonical_class(nu_facts):
    assert C.CLASS_TEXT == {"nue_cc": "nu_e CC", "numu_cc": "nu_mu CC", "nc": "NC"}
    for f in nu_facts:
        for seed in range(3):
            prompt, answer = C.classification_target(f, np.random.default_rng(seed))
            assert prompt == C.CLASSIFY_PROMPT
            head = C.CLASS_TEXT[f.event_class] + ":"
            assert answer.startswith(head)
            assert [c for c in C.CLASS_TEXT.values() if answer.startswith(c + ":")] == [head[:-1]]
            assert len(answer) > len(head) + 20
        if f.event_class == "numu_cc" and f.main.counts["muon"]:
            assert "track" in answer
        if f.event_class == "nue_cc" and f.main.counts["electron"]:
            assert "shower" in answer and "vertex" in answer
        if f.event_class == "nc":
            assert "no charged lepton" in answer.lower()


def test_vlm_scores_the_corpus_class_strings():
    """qformer/vlm.py scores CLASS_TEXT continuations of CLASSIFY_PROMPT: the very same objects."""
    from larsight.qformer import vlm

    assert vlm.CLASS_TEXT is C.CLASS_TEXT and vlm.CLASSIFY_PROMPT is C.CLASSIFY_PROMPT
    assert set(C.CLASS_TEXT) == set(events.EVENT_CLASSES)


def test_one_physics_vocabulary_for_every_layer():
    """The class names, the MIP and the definitions have one home (events.vocabulary, the
    corpus's definitions): the tools, the agent, the UI and the suites use those very objects,
    not copies that could drift."""
    from importlib import import_module

    from larsight.events import vocabulary as V
    from larsight.events.sim import medium

    # by module path: the packages export functions named like some of their modules
    # the agent writes class names and MIP units where it renders typed claims (agent.render)
    compose, render, validate, generate, classification, reconstruction, app_chat = (
        import_module(f"larsight.{m}") for m in ("agent.compose", "agent.render", "agent.validate",
                                                 "evals.suites.generate", "tools.classification",
                                                 "tools.reconstruction", "ui.app_chat"))

    for mod in (C, compose, render, generate, classification, app_chat):
        assert mod.CLASS_TEXT is V.CLASS_TEXT, mod.__name__
    assert render.MIP_DEDX == validate.MIP_DEDX == medium.MIP_DEDX
    assert reconstruction.DEDX_MIN_SHOWER_MEV == V.DEDX_MIN_SHOWER_MEV
    assert reconstruction.finish_counts is V.finish_counts and reconstruction.is_visible is V.is_visible
    assert compose.DEFINITIONS is C.DEFINITIONS
    assert compose.general_answer("What is a Michel electron?").startswith("The electron (or positron)")


# ---------------------------------------------------------------------------- tools
def test_tool_traces(nu_facts):
    used = set()
    for f in nu_facts:
        traces = C.tool_traces(f, np.random.default_rng(5))
        for t in traces:
            assert t["tool"] in C.TOOL_NAMES or t["tool"] is None
            assert t["question"]
            text = C.tool_call_text(t)
            if t["tool"] is None:
                assert text == t["answer"] and text
            else:
                call = json.loads(text)
                assert call == {"tool": t["tool"], "arguments": t["arguments"]}
            used.add(t["tool"])
        vtx = [t for t in traces if t["tool"] == "find_vertex"]
        assert vtx and C.fmt_vertex(f.main.vertex_cm) in vtx[0]["answer"]
    assert used == set(C.TOOL_NAMES) | {None}


# ---------------------------------------------------------------------------- corpus
def test_diversity(nu_events, nu_facts):
    for f in nu_facts:
        caps = C.captions(f, np.random.default_rng(11), n=6)
        assert len(set(caps)) > 1
    recs = C.build_corpus(nu_events, seed=0)
    kinds = {r["kind"] for r in recs}
    assert kinds == set(C.KINDS)
    for r in recs:
        assert set(r) >= {"kind", "event_id", "prompt", "target"}
        assert isinstance(r["prompt"], str) and isinstance(r["target"], str) and r["target"]
    div = C.phrasing_diversity(recs)
    assert div["caption"]["templates"] >= 5
    assert div["caption"]["distinct_targets"] == div["caption"]["n"]
    assert div["qa"]["templates"] >= 15
    assert div["caption"]["distinct_prompts"] >= 4
    assert 0 < div["all"]["distinct_2"] <= 1
    assert div["classify"]["n"] == len(nu_events)


def test_determinism_and_independence(nu_events):
    a = C.build_corpus(nu_events[:6], seed=1)
    b = C.build_corpus(nu_events[:6], seed=1)
    assert a == b
    assert C.build_corpus(nu_events[:6], seed=2) != a
    # an event's records do not depend on the events after it or on the other kinds
    first = C.build_corpus(nu_events[:2], seed=1)
    assert first == [r for r in a if r["event_id"] in {e.meta.event_id for e in nu_events[:2]}]
    only_qa = C.build_corpus(nu_events[:6], seed=1, kinds=("qa",))
    assert only_qa == [r for r in a if r["kind"] == "qa"]
    f = C.event_facts(nu_events[0])
    assert C.captions(f, np.random.default_rng(4), n=3) == C.captions(f, np.random.default_rng(4), n=3)
    with pytest.raises(ValueError, match="unknown kinds"):
        C.build_corpus(nu_events[:1], kinds=("poem",))


def test_write_jsonl_round_trip(nu_events, tmp_path):
    recs = C.build_corpus(nu_events[:4], seed=0)
    path = tmp_path / "corpus.jsonl"
    assert C.write_jsonl(recs, path) == len(recs)
    assert C.read_jsonl(path) == recs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]   # no temporary left
    # a failing write leaves the old file untouched
    def bad():
        yield recs[0]
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        C.write_jsonl(bad(), path)
    assert C.read_jsonl(path) == recs
