"""evals.tools_report: the matching and metrics are consistent, a perfect reconstruction scores
1.0, and a tiny run writes the report files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from larsight.encoder.data import DataSpec, take
from larsight.evals.tools_metrics import RETRIEVAL_JSON, summarise
from larsight.evals.tools_records import COUNT_KEYS, RecoParticle, RecoView, compare, match
from larsight.evals.tools_report import run
from larsight.qformer.corpus import event_facts


@pytest.fixture(scope="module")
def events():
    return take(DataSpec(modes="nu", seed=0), "eval", 4)


def _perfect_view(ev) -> RecoView:
    """A fake reconstruction that is the truth itself: every visible truth particle's points,
    PID, length, energy and Michel flag, the truth counts, topology and vertex."""
    main = event_facts(ev).main
    parts = []
    for p in main.particles:
        idx = np.flatnonzero(ev.particle == p.id)
        if len(idx) == 0:
            continue
        parts.append(RecoParticle(pid=p.type, kind=p.kind, point_index=idx, visible=p.visible,
                                    length_cm=p.length_cm, kinetic_energy_mev=p.kinetic_energy_mev,
                                    energy_method="range", start_dedx_mev_cm=None, pid_method="truth",
                                    michel=p.michel))
    return RecoView(particles=parts, counts=dict(main.counts), topology=main.topology,
                      vertex_cm=main.vertex_cm, vertex_status="ok")


def test_perfect_reconstruction_scores_one(events):
    recs = [compare(i, ev, event_facts(ev), _perfect_view(ev)) for i, ev in enumerate(events)]
    m = summarise(recs, dedx_cut=3.0)
    assert m["n_events"] == len(events)
    assert m["pid"]["accuracy"] == 1.0 and m["pid"]["reco_unmatched"] == 0
    assert m["pid"]["truth_matched_fraction"] == 1.0
    assert m["counts"]["all_five_exact"] == 1.0 and m["counts"]["topology_exact"] == 1.0
    assert m["vertex"]["within_1cm"] == 1.0 and m["vertex"]["median_cm"] == 0.0
    for sp in ("muon", "proton"):
        t = m["tracks"][sp]
        if t["n"]:
            assert t["ke_rel_all"]["median"] == 0.0 and t["length_cm"]["median_abs"] == 0.0
    if m["michel"]["truth_michel"]:
        assert m["michel"]["efficiency"] == 1.0 and m["michel"]["purity"] == 1.0


def test_confusion_sums_to_matched_and_mistakes_show(events):
    ev = events[0]
    view = _perfect_view(ev)
    swap = {"muon": "proton", "proton": "muon", "pion": "muon", "electron": "photon", "photon": "electron",
            "kaon": "proton"}
    for p in view.particles:
        p.pid = swap[p.pid]
    view.counts = {k: 0 for k in view.counts}
    view.vertex_cm = tuple(np.add(event_facts(ev).main.vertex_cm, (4.0, 0.0, 0.0)))
    rec = compare(0, ev, event_facts(ev), view)
    m = summarise([rec], dedx_cut=3.0)
    conf = np.asarray(m["pid"]["confusion"])
    assert conf.sum() == m["pid"]["n_matched"] == len(rec.pairs) > 0
    assert m["pid"]["accuracy"] == 0.0
    assert m["vertex"]["within_3cm"] == 0.0 and m["vertex"]["within_5cm"] == 1.0
    truth_total = sum(event_facts(ev).main.counts[k] for k in COUNT_KEYS)
    assert (m["counts"]["all_five_exact"] == 0.0) == (truth_total > 0)


def test_match_is_one_to_one_and_needs_a_majority():
    labels = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    reco = [RecoParticle(pid="muon", kind="track", point_index=np.array([0, 1, 2])),     # all of 1
            RecoParticle(pid="muon", kind="track", point_index=np.array([3, 4])),        # 1 and 2: tie
            RecoParticle(pid="proton", kind="track", point_index=np.array([4, 5, 6, 7, 8, 9]))]
    pairs, shared = match([1, 2, 3], labels, reco)
    assert shared.sum() == 11 and shared[:, 0].tolist() == [3, 0, 0]
    got = {(i, j) for i, j, _ in pairs}
    assert (0, 0) in got and len({i for i, _ in got}) == len(got) == len({j for _, j in got})
    # reco 2 shares 3 points with truth 2 and 3 with truth 3: at least half of its points -> paired once
    assert sum(1 for _, j in got if j == 2) == 1


def test_tiny_run_writes_the_report(tmp_path):
    res = run(n=3, seed=0, out=tmp_path, progress=False, command="python -m larsight.evals.tools_report --n 3")
    md = (tmp_path / "tools.md").read_text()
    doc = json.loads((tmp_path / "tools.json").read_text())
    assert "python -m larsight.evals.tools_report --n 3" in md and "DataSpec(modes='nu', seed=0)" in md
    lines = (tmp_path / "tools_events.jsonl").read_text().splitlines()
    assert doc["metrics"]["n_events"] == 3 == len(lines)
    assert json.loads(lines[0])["index"] == 0
    assert doc["settings"]["split"] == "eval" and doc["settings"]["sim_seed"] == 2
    m = res["metrics"]
    assert np.asarray(m["pid"]["confusion"]).sum() == m["pid"]["n_matched"]
    assert 0.0 <= m["vertex"]["within_3cm"] <= m["vertex"]["within_10cm"] <= 1.0
    for name in ("vertex_distance.png", "pid_confusion.png", "energy_resolution.png", "start_dedx.png"):
        assert (tmp_path / "tools" / name).stat().st_size > 0
    if RETRIEVAL_JSON.exists():
        assert "## Retrieval" in md and doc["retrieval"]["command"]
