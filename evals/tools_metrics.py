"""The tools report's metrics from per-event records (pure: no tools, no truth objects), and the
retrieval numbers reprinted from ``evals/reports/retrieval_bench.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .report_common import REPO
from .tools_records import COUNT_KEYS, PIDS, EventRecord

RETRIEVAL_JSON = REPO / "evals" / "reports" / "retrieval_bench.json"
VERTEX_CM = 3.0                       # the agent's vertex tolerance (issue 8)
VERTEX_STEPS_CM = (1.0, 2.0, 3.0, 5.0, 10.0)


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
    pairs = [p for r in records for p in r.pairs if p["truth_visible"]]
    showers = [p for p in pairs if p["truth_type"] in ("electron", "photon") and p["reco_kind"] == "shower"]
    out: dict[str, Any] = {"n_events": n}
    out["counts"] = count_metrics(records)
    out["vertex"] = vertex_metrics(records)
    out["pid"] = pid_metrics(records, pairs)
    out["tracks"] = track_metrics(pairs)
    out["showers"] = shower_metrics(showers)
    out["e_gamma"] = e_gamma_metrics(showers, dedx_cut)
    out["michel"] = michel_metrics(pairs, out["counts"]["per_type"]["michel"]["exact"])
    secs = [r.seconds for r in records if r.seconds]
    out["seconds_per_event"] = round(float(np.median(secs)), 4) if secs else None
    return out


def count_metrics(records: Sequence[EventRecord]) -> dict:
    """Per particle type: exact / too few / too many counts; all five exact; topology exact."""
    n = len(records)
    per = {}
    for k in COUNT_KEYS + ("michel",):
        diffs = [r.reco_counts[k] - r.truth_counts[k] for r in records]
        per[k] = {"exact": _frac(sum(d == 0 for d in diffs), n),
                  "under": _frac(sum(d < 0 for d in diffs), n),
                  "over": _frac(sum(d > 0 for d in diffs), n),
                  "truth_mean": round(float(np.mean([r.truth_counts[k] for r in records])), 3) if n else None,
                  "reco_mean": round(float(np.mean([r.reco_counts[k] for r in records])), 3) if n else None}
    all5 = sum(all(r.reco_counts[k] == r.truth_counts[k] for k in COUNT_KEYS) for r in records)
    return {"per_type": per, "all_five_exact": _frac(all5, n),
            "topology_exact": _frac(sum(r.reco_topology == r.truth_topology for r in records), n)}


def vertex_metrics(records: Sequence[EventRecord]) -> dict:
    """Distance of the vertex to the truth: median, fractions within each step, by status."""
    n = len(records)
    d = np.array([r.vertex_distance_cm if r.vertex_distance_cm is not None else np.inf for r in records])
    status: dict[str, dict] = {}
    for r, x in zip(records, d):
        s = status.setdefault(r.vertex_status or "?", {"n": 0, "within_3cm": 0})
        s["n"] += 1
        s["within_3cm"] += int(x <= VERTEX_CM)
    for s in status.values():
        s["within_3cm"] = _frac(s["within_3cm"], s["n"])
    finite = d[np.isfinite(d)]
    return {"n": n, "no_vertex": int(np.sum(~np.isfinite(d))),
            "median_cm": round(float(np.median(finite)), 3) if len(finite) else None,
            **{f"within_{s:g}cm": _frac(int(np.sum(d <= s)), n) for s in VERTEX_STEPS_CM},
            "by_status": status}


def pid_metrics(records: Sequence[EventRecord], pairs: list[dict]) -> dict:
    """PID confusion of the paired visible particles, matched fractions, unpaired ones by kind."""
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
    return {
        "n_matched": int(conf.sum()), "accuracy": _frac(int(np.trace(conf)), int(conf.sum())),
        "classes": list(PIDS), "confusion": conf.tolist(),
        "per_class_efficiency": {c: _frac(int(conf[i, i]), int(conf[i].sum())) for i, c in enumerate(PIDS)},
        "per_class_purity": {c: _frac(int(conf[i, i]), int(conf[:, i].sum())) for i, c in enumerate(PIDS)},
        "truth_visible": n_truth, "truth_matched_fraction": _frac(len(pairs), n_truth),
        "reco_visible": n_reco_vis, "reco_unmatched": sum(extra_kinds.values()), "reco_unmatched_by_kind": extra_kinds,
        "missed_by_type": {c: sum(1 for r in records for m in r.missed if m["truth_type"] == c) for c in PIDS},
    }


def track_metrics(pairs: list[dict]) -> dict:
    """Length and kinetic-energy resolution of paired muons and protons that stop in the volume."""
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
    return tracks


def shower_metrics(sh: list[dict]) -> dict:
    """Energy resolution of paired electron and photon showers."""
    out = {sp: _res([(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in sh
                     if p["truth_type"] == sp and p["truth_ke_mev"]])
           for sp in ("electron", "photon")}
    out["all"] = _res([(p["reco_ke_mev"] - p["truth_ke_mev"]) / p["truth_ke_mev"] for p in sh
                       if p["truth_ke_mev"]])
    return out


def e_gamma_metrics(sh: list[dict], dedx_cut: float) -> dict:
    """Electron / photon separation of paired showers by the trunk dE/dx at the tools' cut, and
    the final e/gamma call by method."""
    dd = [p for p in sh if p["reco_start_dedx"] is not None]
    tp = sum(1 for p in dd if p["truth_type"] == "photon" and p["reco_start_dedx"] >= dedx_cut)
    fp = sum(1 for p in dd if p["truth_type"] == "electron" and p["reco_start_dedx"] >= dedx_cut)
    tn = sum(1 for p in dd if p["truth_type"] == "electron" and p["reco_start_dedx"] < dedx_cut)
    fn = sum(1 for p in dd if p["truth_type"] == "photon" and p["reco_start_dedx"] < dedx_cut)
    med = lambda sp: round(float(np.median([p["reco_start_dedx"] for p in dd if p["truth_type"] == sp])), 3) \
        if any(p["truth_type"] == sp for p in dd) else None  # noqa: E731
    final_ok = sum(1 for p in sh if p["reco_pid"] == p["truth_type"])
    return {"cut_mev_cm": dedx_cut, "n_measured": len(dd), "n_showers": len(sh),
            "photon_efficiency": _frac(tp, tp + fn), "photon_purity": _frac(tp, tp + fp),
            "electron_efficiency": _frac(tn, tn + fp), "electron_purity": _frac(tn, tn + fn),
            "median_dedx_electron": med("electron"), "median_dedx_photon": med("photon"),
            "final_pid_accuracy": _frac(final_ok, len(sh)),
            "by_method": {m: _frac(sum(1 for p in sh if p["pid_method"] == m and p["reco_pid"] == p["truth_type"]),
                                 sum(1 for p in sh if p["pid_method"] == m))
                        for m in sorted({p["pid_method"] for p in sh if p["pid_method"]})}}


def michel_metrics(pairs: list[dict], event_count_exact: Optional[float]) -> dict:
    """Michel tagging efficiency and purity on paired muon / pion tracks."""
    mt = [p for p in pairs if p["truth_type"] in ("muon", "pion") and p["reco_kind"] == "track"]
    t_m = sum(p["truth_michel"] for p in mt)
    r_m = sum(p["reco_michel"] for p in mt)
    both = sum(p["truth_michel"] and p["reco_michel"] for p in mt)
    r_all = sum(p["reco_michel"] for p in pairs)
    r_all_ok = sum(p["reco_michel"] and p["truth_michel"] for p in pairs)
    return {"n_tracks": len(mt), "truth_michel": int(t_m), "reco_michel": int(r_m),
            "efficiency": _frac(int(both), int(t_m)), "purity": _frac(int(both), int(r_m)),
            "purity_all_tracks": _frac(int(r_all_ok), int(r_all)),
            "event_count_exact": event_count_exact}

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
