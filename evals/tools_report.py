"""Reconstruction quality of the analysis tools against the simulator truth (issue 5).

    python -m larsight.evals.tools_report                 # 1,000 held-out events, about 5 min on one core
    python -m larsight.evals.tools_report --n 200 --seed 0
    python -m larsight.evals.tools_report --split finetune --out runs/tools_tune   # a tuning slice

writes ``evals/reports/tools.md``, ``tools.json`` and plots in ``evals/reports/tools/``.

Events: the first ``--n`` events of the ``eval`` split of ``DataSpec(modes="nu", seed=--seed)``
(``encoder.data``: simulator seed ``1000 * seed + 2``), which no training command reads. Every
event goes through ``tools.reconstruct`` and ``tools.find_vertex`` (the shipped encoder), exactly
what the agent calls; nothing is cached between runs, so the numbers always reflect the code.

Truth: ``qformer.corpus.event_facts`` (the same facts the training corpus and the agent
evaluation use): the visible primary-level particles of the main interaction, their counts,
topology string and vertex.

Matching (``match``): a reconstructed particle is paired with the truth particle that owns most
of its points (per-point ``particle`` labels), greedily by the number of shared points, one to
one, when the shared points are at least ``MATCH_FRACTION`` (half) of the reconstructed
particle's points. Unpaired visible reconstructed particles are classified by what their points
are: a piece of an already paired truth particle ("split"), a truth particle below the
visibility thresholds ("invisible truth"), a secondary (Michel, delta ray, low-energy deposit,
another interaction: "secondary"), or nothing in majority ("mixed").

Sections: PID accuracy and confusion (paired visible truth particles), track length and
kinetic-energy resolution for muons and protons (stopping, contained truth tracks), shower
energy resolution, e/gamma separation by the trunk dE/dx at the cut the tools use, Michel
tagging efficiency and purity, the vertex distance distribution, topology and per-particle
count accuracy, and the retrieval numbers of ``evals/reports/retrieval_bench.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "evals" / "reports"
RETRIEVAL_JSON = OUT_DIR / "retrieval_bench.json"

PIDS = ("photon", "electron", "muon", "pion", "proton", "kaon")
COUNT_KEYS = ("muon", "electron", "proton", "pion", "photon")
MATCH_FRACTION = 0.5
VERTEX_CM = 3.0                       # the agent's vertex tolerance (issue 8)
VERTEX_STEPS_CM = (1.0, 2.0, 3.0, 5.0, 10.0)
TARGET = 0.90                         # issue 8: >= 90 % of held-out events answered correctly
DEFAULT_N = 1000


# ============================================================================ per-event views
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


# ============================================================================ summary
def _res(x: Sequence[float]) -> Optional[dict]:
    """Median, 68 % central half-width, and the fractions within 5 / 10 / 20 % of relative errors."""
    a = np.asarray([v for v in x if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(a) == 0:
        return None
    lo, hi = np.percentile(a, [16, 84])
    return {"n": int(len(a)), "median": round(float(np.median(a)), 4), "sigma68": round(float(hi - lo) / 2, 4),
            "within_5pct": round(float(np.mean(np.abs(a) <= 0.05)), 4),
            "within_10pct": round(float(np.mean(np.abs(a) <= 0.10)), 4),
            "within_20pct": round(float(np.mean(np.abs(a) <= 0.20)), 4)}


def _abs_res(x: Sequence[float], steps=(1.0, 2.0, 5.0)) -> Optional[dict]:
    a = np.asarray([v for v in x if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(a) == 0:
        return None
    out = {"n": int(len(a)), "median": round(float(np.median(a)), 3),
           "median_abs": round(float(np.median(np.abs(a))), 3)}
    for s in steps:
        out[f"within_{s:g}cm"] = round(float(np.mean(np.abs(a) <= s)), 4)
    return out


def _frac(num: int, den: int) -> Optional[float]:
    return round(num / den, 4) if den else None


def summarise(records: Sequence[EventRecord], dedx_cut: float) -> dict:
    """All the report's metrics from per-event records (pure: no tools, no truth objects)."""
    n = len(records)
    out: dict[str, Any] = {"n_events": n}
    # ---- counts and topology
    per = {}
    for k in COUNT_KEYS + ("michel",):
        diffs = [r.reco_counts[k] - r.truth_counts[k] for r in records]
        per[k] = {"exact": _frac(sum(d == 0 for d in diffs), n),
                  "under": _frac(sum(d < 0 for d in diffs), n),
                  "over": _frac(sum(d > 0 for d in diffs), n),
                  "truth_mean": round(float(np.mean([r.truth_counts[k] for r in records])), 3) if n else None,
                  "reco_mean": round(float(np.mean([r.reco_counts[k] for r in records])), 3) if n else None}
    all5 = sum(all(r.reco_counts[k] == r.truth_counts[k] for k in COUNT_KEYS) for r in records)
    out["counts"] = {"per_type": per, "all_five_exact": _frac(all5, n),
                     "topology_exact": _frac(sum(r.reco_topology == r.truth_topology for r in records), n)}
    # ---- vertex
    d = np.array([r.vertex_distance_cm if r.vertex_distance_cm is not None else np.inf for r in records])
    status: dict[str, dict] = {}
    for r, x in zip(records, d):
        s = status.setdefault(r.vertex_status or "?", {"n": 0, "within_3cm": 0})
        s["n"] += 1
        s["within_3cm"] += int(x <= VERTEX_CM)
    for s in status.values():
        s["within_3cm"] = _frac(s["within_3cm"], s["n"])
    finite = d[np.isfinite(d)]
    out["vertex"] = {"n": n, "no_vertex": int(np.sum(~np.isfinite(d))),
                     "median_cm": round(float(np.median(finite)), 3) if len(finite) else None,
                     **{f"within_{s:g}cm": _frac(int(np.sum(d <= s)), n) for s in VERTEX_STEPS_CM},
                     "by_status": status}
    # ---- PID
    pairs = [p for r in records for p in r.pairs if p["truth_visible"]]
    conf = np.zeros((len(PIDS), len(PIDS)), dtype=np.int64)
    for p in pairs:
        if p["truth_type"] in PIDS and p["reco_pid"] in PIDS:
            conf[PIDS.index(p["truth_type"]), PIDS.index(p["reco_pid"])] += 1
    n_truth = sum(1 for r in records for p in r.pairs if p["truth_visible"]) + sum(len(r.missed) for r in records)
    n_reco_vis = sum(1 for r in records for p in r.pairs if p["reco_visible"]) + sum(len(r.extra) for r in records)
    extra_kinds: dict[str, int] = {}
    for r in records:
        for e in r.extra:
            extra_kinds[e["what"]] = extra_kinds.get(e["what"], 0) + 1
    out["pid"] = {
        "n_matched": int(conf.sum()), "accuracy": _frac(int(np.trace(conf)), int(conf.sum())),
        "classes": list(PIDS), "confusion": conf.tolist(),
        "per_class_efficiency": {c: _frac(int(conf[i, i]), int(conf[i].sum())) for i, c in enumerate(PIDS)},
        "per_class_purity": {c: _frac(int(conf[i, i]), int(conf[:, i].sum())) for i, c in enumerate(PIDS)},
        "truth_visible": n_truth, "truth_matched_fraction": _frac(len(pairs), n_truth),
        "reco_visible": n_reco_vis, "reco_unmatched": sum(extra_kinds.values()), "reco_unmatched_by_kind": extra_kinds,
        "missed_by_type": {c: sum(1 for r in records for m in r.missed if m["truth_type"] == c) for c in PIDS},
    }
    # ---- tracks: muons and protons that stop inside the volume
    tracks = {}
    for sp in ("muon", "proton"):
        sel = [p for p in pairs if p["truth_type"] == sp and p["end_state"] == "stops" and p["reco_kind"] == "track"]
        ke = [(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in sel if p["truth_ke_mev"]]
        ke_range = [(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in sel
                    if p["truth_ke_mev"] and p["energy_method"] == "range"]
        ke_right = [(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in sel
                    if p["truth_ke_mev"] and p["energy_method"] == "range" and p["reco_pid"] == sp]
        length = [p["reco_length_cm"] - p["truth_length_cm"] for p in sel
                  if p["reco_length_cm"] is not None and p["truth_length_cm"] is not None]
        tracks[sp] = {"n": len(sel), "length_cm": _abs_res(length), "ke_rel_all": _res(ke),
                      "ke_rel_range": _res(ke_range), "ke_rel_range_pid_right": _res(ke_right),
                      "range_fraction": _frac(len(ke_range), len(sel))}
    out["tracks"] = tracks
    # ---- showers
    sh = [p for p in pairs if p["truth_type"] in ("electron", "photon") and p["reco_kind"] == "shower"]
    out["showers"] = {sp: _res([(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in sh
                                if p["truth_type"] == sp and p["truth_ke_mev"]])
                      for sp in ("electron", "photon")}
    out["showers"]["all"] = _res([(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in sh
                                  if p["truth_ke_mev"]])
    # ---- e / gamma by trunk dE/dx
    dd = [p for p in sh if p["reco_start_dedx"] is not None]
    tp = sum(1 for p in dd if p["truth_type"] == "photon" and p["reco_start_dedx"] >= dedx_cut)
    fp = sum(1 for p in dd if p["truth_type"] == "electron" and p["reco_start_dedx"] >= dedx_cut)
    tn = sum(1 for p in dd if p["truth_type"] == "electron" and p["reco_start_dedx"] < dedx_cut)
    fn = sum(1 for p in dd if p["truth_type"] == "photon" and p["reco_start_dedx"] < dedx_cut)
    med = lambda sp: round(float(np.median([p["reco_start_dedx"] for p in dd if p["truth_type"] == sp])), 3) \
        if any(p["truth_type"] == sp for p in dd) else None  # noqa: E731
    final_ok = sum(1 for p in sh if p["reco_pid"] == p["truth_type"])
    out["e_gamma"] = {"cut_mev_cm": dedx_cut, "n_measured": len(dd), "n_showers": len(sh),
                      "photon_efficiency": _frac(tp, tp + fn), "photon_purity": _frac(tp, tp + fp),
                      "electron_efficiency": _frac(tn, tn + fp), "electron_purity": _frac(tn, tn + fn),
                      "median_dedx_electron": med("electron"), "median_dedx_photon": med("photon"),
                      "final_pid_accuracy": _frac(final_ok, len(sh)),
                      "by_method": {m: _frac(sum(1 for p in sh if p["pid_method"] == m and p["reco_pid"] == p["truth_type"]),
                                             sum(1 for p in sh if p["pid_method"] == m))
                                    for m in sorted({p["pid_method"] for p in sh if p["pid_method"]})}}
    # ---- Michel tagging on paired muon / pion tracks
    mt = [p for p in pairs if p["truth_type"] in ("muon", "pion") and p["reco_kind"] == "track"]
    t_m = sum(p["truth_michel"] for p in mt)
    r_m = sum(p["reco_michel"] for p in mt)
    both = sum(p["truth_michel"] and p["reco_michel"] for p in mt)
    r_all = sum(p["reco_michel"] for p in pairs)
    r_all_ok = sum(p["reco_michel"] and p["truth_michel"] for p in pairs)
    out["michel"] = {"n_tracks": len(mt), "truth_michel": int(t_m), "reco_michel": int(r_m),
                     "efficiency": _frac(int(both), int(t_m)), "purity": _frac(int(both), int(r_m)),
                     "purity_all_tracks": _frac(int(r_all_ok), int(r_all)),
                     "event_count_exact": per["michel"]["exact"]}
    secs = [r.seconds for r in records if r.seconds]
    out["seconds_per_event"] = round(float(np.median(secs)), 4) if secs else None
    return out


# ============================================================================ retrieval
def retrieval_section(path: Path = RETRIEVAL_JSON) -> Optional[dict]:
    """The headline numbers of ``evals.retrieval_bench`` (its json), or None if absent."""
    if not Path(path).exists():
        return None
    d = json.loads(Path(path).read_text())

    def g(*keys):
        x: Any = d
        for k in keys:
            if not isinstance(x, dict) or k not in x:
                return None
            x = x[k]
        return x

    return {
        "source": str(Path(path).relative_to(REPO)) if Path(path).is_relative_to(REPO) else str(path),
        "command": g("command"),
        "n_events": g("quality", "n_events"),
        "event_to_event": {s: {"class": g("quality", "event_to_event", s, "class_precision"),
                               "topology": g("quality", "event_to_event", s, "topology_precision")}
                           for s in ("aligned", "encoder", "chance")},
        "text_to_event": {"class": g("quality", "text_to_event", "class", "precision"),
                          "class_chance": g("quality", "text_to_event", "class", "chance"),
                          "topology": g("quality", "text_to_event", "topology", "precision"),
                          "topology_chance": g("quality", "text_to_event", "topology", "chance")},
        "build_local_events_per_s": g("build_local_sim", "events_per_s_wall"),
        "build_local_steady_events_per_s": g("build_local_sim", "steady_events_per_s_wall"),
        "build_ray_events_per_s": g("build_ray_sim", "events_per_s_wall"),
        "ray_actors": g("build_ray_sim", "actors"),
        "latency_rows": g("latency", "n_rows"),
        "latency_index": g("latency", "vector_index"),
        "latency_ms_p50": {k: g("latency", k, "wall_ms_p50") for k in
                           ("ann", "exact", "ann_filtered", "find_similar_by_key", "find_similar_by_text")},
        "latency_ms_p95": {k: g("latency", k, "wall_ms_p95") for k in
                           ("ann", "exact", "ann_filtered", "find_similar_by_key", "find_similar_by_text")},
    }


# ============================================================================ output
def _f(x, nd=3, pct=False) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f} %"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def plots(records: Sequence[EventRecord], m: dict, folder: Path) -> list[str]:
    """Vertex distance, PID confusion, energy resolution and trunk dE/dx plots (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from larsight.events.formats.atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    made = []

    def save(fig, name):
        with atomic_path(folder / name) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        made.append(name)

    d = np.array([r.vertex_distance_cm for r in records if r.vertex_distance_cm is not None])
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    if len(d):
        bins = np.logspace(-2, np.log10(max(d.max(), 10) * 1.1), 40)
        ax[0].hist(np.maximum(d, 0.011), bins=bins, color="#1f77b4")
        ax[0].set_xscale("log")
        ax[0].axvline(VERTEX_CM, color="k", ls="--", label=f"{VERTEX_CM:g} cm")
        ax[0].legend()
        xs = np.sort(d)
        ax[1].plot(xs, np.arange(1, len(xs) + 1) / len(records), color="#1f77b4")
        ax[1].set_xscale("log")
        ax[1].axvline(VERTEX_CM, color="k", ls="--")
        ax[1].axhline(TARGET, color="r", ls=":", label=f"target {TARGET:.0%}")
        ax[1].legend()
    ax[0].set_xlabel("reco vertex - truth vertex [cm]")
    ax[0].set_ylabel("events")
    ax[1].set_xlabel("distance [cm]")
    ax[1].set_ylabel("fraction of events within")
    fig.suptitle(f"find_vertex on {len(records)} held-out neutrino events")
    save(fig, "vertex_distance.png")

    conf = np.asarray(m["pid"]["confusion"], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(PIDS)):
        for j in range(len(PIDS)):
            if conf[i, j]:
                ax.text(j, i, f"{int(conf[i, j])}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(PIDS)), PIDS, rotation=45)
    ax.set_yticks(range(len(PIDS)), PIDS)
    ax.set_xlabel("reconstructed PID")
    ax.set_ylabel("true PID")
    ax.set_title(f"PID of paired particles (accuracy {_f(m['pid']['accuracy'], pct=True)})")
    save(fig, "pid_confusion.png")

    pairs = [p for r in records for p in r.pairs if p["truth_visible"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, sp in zip(axes, ("muon", "proton")):
        for meth, col in (("range", "#2ca02c"), ("calorimetry", "#ff7f0e")):
            x = [(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in pairs
                 if p["truth_type"] == sp and p["end_state"] == "stops" and p["reco_kind"] == "track"
                 and p["truth_ke_mev"] and p["energy_method"] == meth]
            if x:
                ax.hist(np.clip(x, -1, 1), bins=np.linspace(-1, 1, 41), alpha=0.6, color=col, label=f"{meth} ({len(x)})")
        ax.set_title(f"stopping {sp}s: kinetic energy")
        ax.set_xlabel("(reco - truth) / truth")
        _legend(ax)
    for sp, col in (("electron", "#1f77b4"), ("photon", "#17becf")):
        x = [(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in pairs
             if p["truth_type"] == sp and p["reco_kind"] == "shower" and p["truth_ke_mev"]]
        if x:
            axes[2].hist(np.clip(x, -1, 1), bins=np.linspace(-1, 1, 41), alpha=0.6, color=col, label=f"{sp} ({len(x)})")
    axes[2].set_title("showers: energy")
    axes[2].set_xlabel("(reco - truth) / truth")
    _legend(axes[2])
    save(fig, "energy_resolution.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for sp, col in (("electron", "#1f77b4"), ("photon", "#17becf")):
        x = [p["reco_start_dedx"] for p in pairs if p["truth_type"] == sp and p["reco_start_dedx"] is not None
             and p["reco_kind"] == "shower"]
        if x:
            ax.hist(np.clip(x, 0, 12), bins=np.linspace(0, 12, 49), alpha=0.6, color=col, label=f"true {sp} ({len(x)})")
    ax.axvline(m["e_gamma"]["cut_mev_cm"], color="k", ls="--", label=f"cut {m['e_gamma']['cut_mev_cm']:g} MeV/cm")
    ax.set_xlabel("shower trunk dE/dx [MeV/cm]")
    ax.set_ylabel("showers")
    _legend(ax)
    save(fig, "start_dedx.png")
    return made


def markdown(m: dict, settings: dict, figs: Sequence[str], retrieval: Optional[dict]) -> str:
    c, v, pid = m["counts"], m["vertex"], m["pid"]
    L = ["# Tools: reconstruction quality against the simulator truth", "",
         f"Command: `{settings['command']}`  ", 
         f"Events: the first {m['n_events']} events of the `{settings['split']}` split of "
         f"`DataSpec(modes='nu', seed={settings['seed']})` (simulator seed {settings['sim_seed']}; "
         + ("never read by any training command" if settings["split"] == "eval" else "a tuning slice, not the held-out split")
         + f"), voxel {settings['voxel_cm']} cm, encoder `{settings['model']}`. Truth: `qformer.corpus.event_facts` "
         f"(visible primary-level particles of the main interaction). Tools: `tools.reconstruct` and "
         f"`tools.find_vertex` as the agent calls them; {_f(m['seconds_per_event'], 2)} s per event "
         f"(median, both tools, one core). Generated {settings['date']}.", "",
         "## Headline (what the agent's answers rest on; issue 8 target: 90 % of events)", "",
         "| question | correct | target |", "|---|---|---|",
         f"| vertex within {VERTEX_CM:g} cm | {_f(v['within_3cm'], pct=True)} | {TARGET:.0%} |"]
    for k in COUNT_KEYS:
        L.append(f"| number of {k}s exact | {_f(c['per_type'][k]['exact'], pct=True)} | {TARGET:.0%} |")
    L += [f"| all five counts exact | {_f(c['all_five_exact'], pct=True)} | |",
          f"| topology string exact | {_f(c['topology_exact'], pct=True)} | |",
          f"| Michel count exact | {_f(c['per_type']['michel']['exact'], pct=True)} | |", "",
          "## Counts per particle type (main interaction)", "",
          "| type | exact | reco too few | reco too many | truth mean | reco mean |", "|---|---|---|---|---|---|"]
    for k in COUNT_KEYS + ("michel",):
        p = c["per_type"][k]
        L.append(f"| {k} | {_f(p['exact'], pct=True)} | {_f(p['under'], pct=True)} | {_f(p['over'], pct=True)} | "
                 f"{_f(p['truth_mean'], 2)} | {_f(p['reco_mean'], 2)} |")
    L += ["", "## Vertex", "",
          f"Distance between `find_vertex`'s vertex and the true neutrino vertex: median {_f(v['median_cm'], 2)} cm; "
          f"{v['no_vertex']} events without a vertex (counted as misses).", "",
          "| within | " + " | ".join(f"{s:g} cm" for s in VERTEX_STEPS_CM) + " |",
          "|---|" + "---|" * len(VERTEX_STEPS_CM),
          "| events | " + " | ".join(_f(v[f'within_{s:g}cm'], pct=True) for s in VERTEX_STEPS_CM) + " |", "",
          "| status | events | within 3 cm |", "|---|---|---|"]
    for s, row in sorted(v["by_status"].items(), key=lambda x: -x[1]["n"]):
        L.append(f"| {s} | {row['n']} | {_f(row['within_3cm'], pct=True)} |")
    L += ["", "![vertex distance](tools/vertex_distance.png)", "",
          "## Particle identification", "",
          f"Reconstructed particles are paired with truth particles by shared points (one to one, the pair "
          f"sharing at least {MATCH_FRACTION:.0%} of the reconstructed particle's points). "
          f"{pid['truth_visible']} visible truth particles, {_f(pid['truth_matched_fraction'], pct=True)} paired; "
          f"{pid['reco_visible']} visible reconstructed particles, {pid['reco_unmatched']} unpaired "
          f"({', '.join(f'{k}: {n}' for k, n in sorted(pid['reco_unmatched_by_kind'].items())) or 'none'}). "
          f"Missed truth particles by type: {', '.join(f'{k} {n}' for k, n in pid['missed_by_type'].items() if n) or 'none'}.", "",
          f"PID accuracy on {pid['n_matched']} paired particles: **{_f(pid['accuracy'], pct=True)}**.", "",
          "| true \\ reco | " + " | ".join(PIDS) + " | efficiency |", "|---|" + "---|" * (len(PIDS) + 1)]
    for i, cl in enumerate(PIDS):
        L.append(f"| {cl} | " + " | ".join(str(x) for x in pid["confusion"][i]) +
                 f" | {_f(pid['per_class_efficiency'][cl], pct=True)} |")
    L.append("| purity | " + " | ".join(_f(pid["per_class_purity"][cl], pct=True) for cl in PIDS) + " | |")
    L += ["", "![PID confusion](tools/pid_confusion.png)", "",
          "## Tracks: length and kinetic energy (paired truth muons / protons that stop in the volume)", "",
          "| species | tracks | length: median abs error | within 1 cm | within 5 cm | KE by range: share | "
          "KE (range) median | KE (range) sigma68 | within 10 % | KE (range, PID right) median / sigma68 | KE (all methods) median / sigma68 |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for sp, t in m["tracks"].items():
        ln, kr, kk, ka = t["length_cm"] or {}, t["ke_rel_range"] or {}, t["ke_rel_range_pid_right"] or {}, t["ke_rel_all"] or {}
        L.append(f"| {sp} | {t['n']} | {_f(ln.get('median_abs'), 2)} cm | {_f(ln.get('within_1cm'), pct=True)} | "
                 f"{_f(ln.get('within_5cm'), pct=True)} | {_f(t['range_fraction'], pct=True)} | {_f(kr.get('median'), 4)} | "
                 f"{_f(kr.get('sigma68'), 4)} | {_f(kr.get('within_10pct'), pct=True)} | "
                 f"{_f(kk.get('median'), 4)} / {_f(kk.get('sigma68'), 4)} | {_f(ka.get('median'), 3)} / {_f(ka.get('sigma68'), 3)} |")
    L += ["", "Relative errors (reco - truth) / truth; sigma68 = half the 16-84 % interval.", "",
          "## Showers: energy", "", "| true type | showers | median | sigma68 | within 10 % | within 20 % |",
          "|---|---|---|---|---|---|"]
    for sp in ("electron", "photon", "all"):
        s = m["showers"][sp] or {}
        L.append(f"| {sp} | {s.get('n', 0)} | {_f(s.get('median'), 3)} | {_f(s.get('sigma68'), 3)} | "
                 f"{_f(s.get('within_10pct'), pct=True)} | {_f(s.get('within_20pct'), pct=True)} |")
    L += ["", "![energy resolution](tools/energy_resolution.png)", ""]
    eg = m["e_gamma"]
    L += ["## Electron / photon separation", "",
          f"Trunk dE/dx (first 4 cm, `start_dedx_mev_cm`) measured on {eg['n_measured']} of {eg['n_showers']} paired "
          f"showers; median {_f(eg['median_dedx_electron'], 2)} MeV/cm for electrons, {_f(eg['median_dedx_photon'], 2)} "
          f"for photons. At the tools' cut ({eg['cut_mev_cm']:g} MeV/cm): photon efficiency "
          f"{_f(eg['photon_efficiency'], pct=True)}, purity {_f(eg['photon_purity'], pct=True)}; electron efficiency "
          f"{_f(eg['electron_efficiency'], pct=True)}, purity {_f(eg['electron_purity'], pct=True)}. The final e/gamma "
          f"call (gap, then dE/dx, then the encoder) is right for {_f(eg['final_pid_accuracy'], pct=True)} of paired "
          f"showers (by method: {', '.join(f'{k} {_f(x, pct=True)}' for k, x in eg['by_method'].items())}).", "",
          "![trunk dE/dx](tools/start_dedx.png)", ""]
    mi = m["michel"]
    L += ["## Michel electrons", "",
          f"On {mi['n_tracks']} paired muon / pion tracks: {mi['truth_michel']} have a visible Michel electron at "
          f"their end, {mi['reco_michel']} are tagged. Efficiency {_f(mi['efficiency'], pct=True)}, purity "
          f"{_f(mi['purity'], pct=True)} (purity over all paired particles {_f(mi['purity_all_tracks'], pct=True)}); "
          f"the event's Michel count is exact for {_f(mi['event_count_exact'], pct=True)} of events.", ""]
    L += ["## Retrieval (find_similar)", ""]
    if retrieval is None:
        L.append(f"`{RETRIEVAL_JSON.relative_to(REPO)}` not found: run `python -m larsight.evals.retrieval_bench`.")
    else:
        r = retrieval
        e2e, t2e = r["event_to_event"], r["text_to_event"]
        L += [f"Reprinted from `{r['source']}`, produced by `{r['command']}`.", "",
              f"Precision@10 on {r['n_events']} held-out events:", "",
              "| query | space | same class | same topology |", "|---|---|---|---|"]
        for s in ("aligned", "encoder", "chance"):
            L.append(f"| event -> event | {s} | {_f(e2e[s]['class'])} | {_f(e2e[s]['topology'])} |")
        L += [f"| text -> event | aligned | {_f(t2e['class'])} | {_f(t2e['topology'])} |",
              f"| text -> event | chance | {_f(t2e['class_chance'])} | {_f(t2e['topology_chance'])} |", "",
              f"Index build: {_f(r['build_local_events_per_s'], 1)} events/s locally (one process, steady "
              f"{_f(r['build_local_steady_events_per_s'], 1)}), {_f(r['build_ray_events_per_s'], 1)} events/s on Ray Data "
              f"({r['ray_actors']} actors).", "",
              f"Query latency at {r['latency_rows']} rows ({r['latency_index']}), wall ms p50 / p95: " +
              ", ".join(f"{k} {_f(r['latency_ms_p50'][k], 1)} / {_f(r['latency_ms_p95'][k], 1)}"
                        for k in r["latency_ms_p50"] if r["latency_ms_p50"][k] is not None) + "."]
    if settings.get("notes"):
        L += ["", "## Notes", "", settings["notes"]]
    return "\n".join(L) + "\n"


def events_path_for(out: Path) -> Path:
    """Where the per-event records go: beside a report written elsewhere, but under runs/ (not
    tracked) for the shipped report, whose 1000 records would add a megabyte to git per rerun."""
    return REPO / "runs" / "tools_report" / "events.jsonl" if Path(out).resolve() == OUT_DIR.resolve() \
        else Path(out) / "tools_events.jsonl"


def write(m: dict, records: Sequence[EventRecord], settings: dict, out: Path, retrieval: Optional[dict],
          make_plots: bool = True) -> dict:
    """Write ``tools.md``, ``tools.json`` (metrics), the per-event records (JSON lines, see
    ``events_path_for``) and the plots under ``out`` (atomically)."""
    from dataclasses import asdict

    from larsight.events.formats.atomic import atomic_open

    def default(x):
        return x.tolist() if isinstance(x, np.ndarray) else str(x)

    out.mkdir(parents=True, exist_ok=True)
    figs = plots(records, m, out / "tools") if make_plots else []
    events_path = events_path_for(out)
    events_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(events_path, "w") as fh:
        for r in records:
            fh.write(json.dumps(asdict(r), default=default) + "\n")
    doc = {"settings": {**settings, "per_event_records": str(events_path)}, "metrics": m,
           "retrieval": retrieval}
    with atomic_open(out / "tools.json", "w") as fh:
        json.dump(doc, fh, indent=1, default=default)
    with atomic_open(out / "tools.md", "w") as fh:
        fh.write(markdown(m, settings, figs, retrieval))
    return doc


def run(n: int = DEFAULT_N, seed: int = 0, split: str = "eval", out: Path = OUT_DIR, progress: bool = True,
        model=None, make_plots: bool = True, notes: str = "", command: Optional[str] = None,
        retrieval_json: Path = RETRIEVAL_JSON) -> dict:
    from tqdm.auto import tqdm

    from larsight.encoder.data import DataSpec, split_seed, take
    from larsight.qformer.corpus import event_facts
    from larsight.tools import engine, find_vertex, reconstruct
    from larsight.tools.reconstruction import PHOTON_DEDX_MEV_CM

    spec = DataSpec(modes="nu", seed=seed)
    evs = take(spec, split, n)
    m_obj = engine.get_model(model)
    records = []
    for i, ev in enumerate(tqdm(evs, desc="tools report", unit="ev", disable=not progress, dynamic_ncols=True)):
        t0 = time.process_time()
        reco = reconstruct(ev, m_obj)
        vtx = find_vertex(ev, m_obj)
        dt = time.process_time() - t0
        rec = compare(i, ev, event_facts(ev), RecoView.from_tools(reco, vtx))
        rec.seconds = round(dt, 4)
        records.append(rec)
        engine.clear_cache()
    metrics = summarise(records, PHOTON_DEDX_MEV_CM)
    settings = {"command": command or "python -m larsight.evals.tools_report " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]), "n": n, "seed": seed, "split": split,
        "sim_seed": split_seed(seed, split), "voxel_cm": spec.voxel_size_cm, "model": engine.model_name(m_obj),
        "date": time.strftime("%Y-%m-%d %H:%M"), "notes": notes}
    retrieval = retrieval_section(retrieval_json)
    write(metrics, records, settings, Path(out), retrieval, make_plots=make_plots)
    return {"settings": settings, "metrics": metrics, "records": records}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=DEFAULT_N, help=f"events (default {DEFAULT_N})")
    ap.add_argument("--seed", type=int, default=0, help="DataSpec seed (default 0)")
    ap.add_argument("--split", default="eval", help="data split (default eval: held out; "
                                                      "use another, e.g. finetune, to tune)")
    ap.add_argument("--out", default=str(OUT_DIR), help="folder for tools.md / tools.json / tools/")
    ap.add_argument("--notes", default="", help="free text added to the report")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    cmd = "python -m larsight.evals.tools_report " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    res = run(n=a.n, seed=a.seed, split=a.split, out=Path(a.out), progress=not a.no_progress,
              make_plots=not a.no_plots, notes=a.notes, command=cmd.strip())
    m = res["metrics"]
    c = m["counts"]
    print(f"vertex within 3 cm {_f(m['vertex']['within_3cm'], pct=True)} (median {_f(m['vertex']['median_cm'], 2)} cm); "
          + ", ".join(f"{k} {_f(c['per_type'][k]['exact'], pct=True)}" for k in COUNT_KEYS)
          + f"; all five {_f(c['all_five_exact'], pct=True)}; topology {_f(c['topology_exact'], pct=True)}; "
          f"PID {_f(m['pid']['accuracy'], pct=True)}")
    print(f"wrote {Path(a.out) / 'tools.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
