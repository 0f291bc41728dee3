"""Fake tools for the agent: fixed measurements of a 1mu 1p numu CC event (no models)."""


VERTEX = [10.0, 20.0, 30.0]


def fake_vertex(ev):
    return {"status": "ok", "vertex_cm": VERTEX, "confidence": 0.9, "n_particles_at_vertex": 2,
            "truth_vertex_cm": [1.0, 2.0, 3.0]}


def fake_reco(ev):
    return {"vertex": {"status": "ok", "vertex_cm": VERTEX},
            "particles": [{"id": 0, "kind": "track", "pid": "muon", "length_cm": 40.0, "kinetic_energy_mev": 190.0,
                           "michel": True, "distance_to_vertex_cm": 0.1, "visible": True},
                          {"id": 1, "kind": "track", "pid": "proton", "length_cm": 4.0, "kinetic_energy_mev": 55.0,
                           "michel": False, "distance_to_vertex_cm": 0.3, "visible": True}],
            "interactions": [{"id": 0, "particles": [0, 1], "topology": "1mu 1p 0pi",
                              "counts": {"muon": 1, "proton": 1, "electron": 0, "pion": 0, "photon": 0,
                                         "kaon": 0, "michel": 1, "track": 2, "shower": 0}}],
            "topology": "1mu 1p 0pi", "visible_energy_mev": 300.0}


def fake_classify(ev):
    return {"predicted_class": "numu_cc", "probabilities": {"nue_cc": 0.05, "numu_cc": 0.9, "nc": 0.05}}


def boom(ev):
    raise RuntimeError("detector on fire")


FAKES = {"find_vertex": fake_vertex, "reconstruct": fake_reco, "classify_event": fake_classify}
