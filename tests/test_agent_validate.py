"""agent.validate / agent.evidence: claims read from a language model's free text, verdicts against
measurements (typed claims composed by the agent: tests/test_claims_typed.py)."""
import pytest

from larsight.agent.evidence import Evidence, strip_truth
from larsight.agent.render import Composition, FreeText, render
from larsight.agent.validate import (TOLERANCES, as_composition, check_claims, extract_claims, revise,
                                     split_sentences, validate)

RECO = {
    "vertex": {"status": "ok", "vertex_cm": [100.0, 50.0, 30.0]},
    "particles": [
        {"id": 0, "kind": "track", "pid": "muon", "length_cm": 45.3, "kinetic_energy_mev": 210.0,
         "start_cm": [100.0, 50.0, 30.0], "end_cm": [100.0, 50.0, 75.3], "michel": True,
         "distance_to_vertex_cm": 0.2, "visible": True},
        {"id": 1, "kind": "track", "pid": "proton", "length_cm": 5.1, "kinetic_energy_mev": 62.0,
         "start_cm": [100.0, 50.0, 30.0], "end_cm": [105.0, 50.0, 30.0], "michel": False,
         "distance_to_vertex_cm": 0.4, "visible": True},
        {"id": 2, "kind": "shower", "pid": "photon", "length_cm": 30.0, "kinetic_energy_mev": 120.0,
         "start_cm": [100.0, 62.0, 30.0], "start_dedx_mev_cm": 4.3, "conversion_gap_cm": 12.0,
         "distance_to_vertex_cm": 12.0, "visible": True},
        {"id": 3, "kind": "track", "pid": "proton", "length_cm": 0.6, "kinetic_energy_mev": 12.0,
         "visible": False},
    ],
    "interactions": [{"id": 0, "particles": [0, 1, 2, 3], "topology": "1mu 1p 0pi 1gamma",
                      "counts": {"muon": 1, "electron": 0, "photon": 1, "proton": 1, "pion": 0, "kaon": 0,
                                 "pi0": 0, "michel": 1, "track": 2, "shower": 1}}],
    "topology": "1mu 1p 0pi 1gamma", "visible_energy_mev": 400.0,
    "truth_topology": "1mu 2p 0pi",
}
CLS = {"predicted_class": "numu_cc", "probabilities": {"nue_cc": 0.1, "numu_cc": 0.8, "nc": 0.1},
       "truth_class": "nc"}
VTX = {"status": "ok", "vertex_cm": [100.5, 50.0, 30.0], "truth_vertex_cm": [0, 0, 0]}


def obs(tool, output):
    return {"tool": tool, "ok": True, "output": strip_truth(output), "event": "e"}


@pytest.fixture
def evidence():
    return Evidence.from_observations([obs("reconstruct", RECO), obs("classify_event", CLS),
                                       obs("find_vertex", VTX)], event="e")


def verdicts(text, ev):
    return [(c.claim.kind, c.claim.particle, c.verdict) for c in validate(text, ev).checks]


def test_truth_fields_are_stripped():
    assert "truth_topology" not in strip_truth(RECO)
    assert strip_truth({"a": [{"truth_vertex_cm": 1, "b": 2}]}) == {"a": [{"b": 2}]}


def test_evidence_reads_the_tools(evidence):
    assert evidence.event_class == "numu_cc" and evidence.class_probabilities["numu_cc"] == 0.8
    assert evidence.vertex_cm == (100.5, 50.0, 30.0) and evidence.tools["vertex"] == "find_vertex"
    assert [p.type for p in evidence.particles] == ["muon", "proton", "photon"]   # invisible dropped
    assert evidence.count("proton") == 1 and evidence.count("michel") == 1
    assert evidence.particles[2].gap_cm == 12.0 and evidence.michel_at_track_end() is True


def test_class_vertex_and_counts(evidence):
    text = ("nu_mu CC: the classifier is confident. The vertex is at (100.0, 50.0, 31.0) cm. "
            "There are 2 protons and no pions. Topology 1mu 1p 0pi 1gamma.")
    got = verdicts(text, evidence)
    assert got[:4] == [("event_class", None, "supported"), ("vertex", None, "supported"),
                       ("count", "proton", "contradicted"), ("absent", "pion", "supported")]
    assert set(got[4:]) == {("count", p, "supported") for p in
                            ("muon", "electron", "proton", "pion", "photon", "kaon")}


def test_wrong_class_and_far_vertex(evidence):
    checks = validate("This is an NC event. The vertex is at (110.0, 50.0, 30.0) cm.", evidence).checks
    assert [c.verdict for c in checks] == ["contradicted", "contradicted"]
    assert checks[1].evidence["distance_cm"] == pytest.approx(9.5, abs=0.01)
    assert checks[1].tolerance == f"{TOLERANCES['vertex']['cm']:g} cm"
    assert validate("It is not NC.", evidence).checks[0].verdict == "supported"


def test_tracks_michel_showers(evidence):
    text = ("A 45.3 cm MIP-like muon track leaves the vertex and stops with a Michel electron at its end; "
            "a photon shower starts 12.5 cm from the vertex with 4.3 MeV/cm (2 MIP).")
    got = verdicts(text, evidence)
    assert ("track_length", "muon", "supported") in got
    assert ("michel", "michel", "supported") in got
    assert ("shower_gap", "photon", "supported") in got
    assert ("shower_dedx", "photon", "supported") in got
    assert ("present", "photon", "supported") in got
    assert not [g for g in got if g[2] != "supported"]


def test_contradicted_physics(evidence):
    got = verdicts("The muon track is 80.0 cm long. The photon shower starts at the vertex. "
                   "Its start dE/dx is 1 MIP.", evidence)
    assert ("track_length", "muon", "contradicted") in got
    assert ("shower_gap", "photon", "contradicted") in got
    assert ("shower_dedx", None, "contradicted") in got


def test_hypotheticals_and_quotes_are_not_claims(evidence):
    assert extract_claims("A photon would convert after a gap of about 18 cm.") == []
    assert extract_claims("Similar events: `sim:nu:index=3` (`nu_e CC`, `1e 2p 0pi`).") == []
    claims = extract_claims("nu_e CC: an electron shower starts right at the vertex; its start dE/dx of "
                            "2.1 MeV/cm is one MIP, not the two MIPs of a photon's e+e- pair.")
    kinds = [(c.kind, c.particle, c.qualifier) for c in claims]
    assert ("shower_dedx", "electron", None) in kinds
    assert not any(k == "shower_dedx" and q == "mip2" for k, _, q in kinds)


def test_unverifiable_without_measurement():
    ev = Evidence.from_observations([obs("find_vertex", VTX)])
    checks = validate("There are 2 protons. The vertex is at (100.0, 50.0, 30.0) cm.", ev).checks
    assert [c.verdict for c in checks] == ["unverifiable", "supported"]
    assert "reconstruct" in checks[0].note


def test_energy_claims(evidence):
    got = verdicts("A 210 MeV muon; a proton of 120 MeV. Visible energy 0.40 GeV.", evidence)
    assert got == [("energy", "muon", "supported"), ("present", "muon", "supported"),
                   ("present", "proton", "supported"), ("energy", "proton", "contradicted"),
                   ("energy", None, "supported")]


def test_revise_and_flag_free_text(evidence):
    text = "nu_mu CC: the muon dominates. There are 3 protons. The vertex is at (9.0, 9.0, 9.0) cm."
    comp = as_composition(text)
    checks = check_claims(comp.claims, evidence)
    fixed = revise(comp, checks, evidence)
    out = render(fixed)
    assert "3 protons" not in out and "(9.0, 9.0, 9.0)" not in out
    assert "The reconstruction finds 1 proton." in out
    assert "The vertex is at (100.5, 50.0, 30.0) cm." in out
    # the corrections are typed claims from the measurements, checked directly (not re-read from text)
    assert {c.source for c in fixed.typed_claims} == {"tools"}
    assert all(c.verdict == "supported" for c in check_claims(fixed.claims, evidence))
    flagged = render(comp, checks)
    assert "[contradicted by reconstruct: 3 proton" in flagged
    unv = render(as_composition("There are 2 kaons."), check_claims(extract_claims("There are 2 kaons."), Evidence()))
    assert unv.endswith("[unverified: 2 kaon]")


def test_sentences_keep_decimals():
    text = "The muon track is 45.3 cm long. The vertex is at (1.0, 2.0, 3.0) cm."
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "The muon track is 45.3 cm long.", "The vertex is at (1.0, 2.0, 3.0) cm."]


def test_revise_removes_only_contradicted_clauses(evidence):
    comp = Composition(free=FreeText(text="there are 3 protons; a 45.3 cm MIP-like muon track leaves the vertex; "
                                          "the vertex is at (9.0, 9.0, 9.0) cm.", label="The VLM explains:", author="vlm"))
    checks = check_claims(comp.claims, evidence)
    fixed = render(revise(comp, checks, evidence))
    assert "The VLM explains: A 45.3 cm MIP-like muon track leaves the vertex." in fixed
    assert "3 protons" not in fixed and "(9.0, 9.0, 9.0)" not in fixed
    assert all(c.verdict == "supported" for c in validate(fixed, evidence).checks)


def test_energy_of_a_track_leaving_the_detector_is_a_lower_bound():
    """An exiting muon's range energy only bounds its energy from below: a larger claimed
    energy cannot be confirmed nor excluded, a smaller one is contradicted, and the composed
    answer says so while its other claims stay checkable."""
    import copy

    from larsight.agent.compose import _particle_clause

    reco = copy.deepcopy(RECO)
    reco["particles"][0]["energy_is_lower_bound"] = True
    ev = Evidence.from_observations([obs("reconstruct", reco)], event="e")
    assert ev.particles[0].energy_is_lower_bound and not ev.particles[1].energy_is_lower_bound
    got = {c.claim.value: c for c in validate("A 1200 MeV muon. A 100 MeV muon.", ev).checks
           if c.claim.kind == "energy"}
    assert got[1200].verdict == "unverifiable" and got[1200].evidence["energy_mev_at_least"] == 210.0
    assert got[100].verdict == "contradicted"
    clause, claims = _particle_clause(ev.particles[0], ev)
    assert "lower bound" in clause
    checks = check_claims(claims, ev)
    assert {(c.claim.kind, c.verdict) for c in checks} >= {("energy", "supported"), ("track_length", "supported")}
    # a proton that stops is not a bound: a larger claim is contradicted
    assert verdicts("A proton of 300 MeV.", ev)[-1] == ("energy", "proton", "contradicted")
