"""Tables, targets and plots of the robustness report (``evals.robustness_report``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from larsight.events.model import SEMANTIC_CLASSES

from .report_common import fmt, write_json

MAX_DROP = 0.03  # the robustness target: <= 3 points of macro-F1 / event-class accuracy

METRICS = ("accuracy", "macro_f1", "ari", "event_accuracy", "vertex_median_cm", "vertex_within_3cm")
COUNTS = ("count_exact_proton", "count_exact_photon", "count_exact_pion", "count_exact_all_five")
LABELS = {"accuracy": "point acc", "macro_f1": "macro-F1", "ari": "particle ARI",
          "event_accuracy": "event-class acc", "vertex_median_cm": "vertex median cm",
          "vertex_within_3cm": "vertex <3 cm", "count_exact_proton": "protons exact",
          "count_exact_photon": "photons exact", "count_exact_pion": "pions exact",
          "count_exact_all_five": "all five exact"}
GUARDED = ("macro_f1", "event_accuracy")
# (label, where the value comes from, comparison, threshold)
TARGETS = (("semantic macro-F1", ("in-domain", "macro_f1"), ">=", 0.92),
           ("track F1", ("in-domain", "f1", "track"), ">=", 0.97),
           ("shower F1", ("in-domain", "f1", "shower"), ">=", 0.97),
           ("Michel F1", ("in-domain", "f1", "michel"), ">=", 0.85),
           ("delta F1", ("in-domain", "f1", "delta"), ">=", 0.80),
           ("LE F1", ("in-domain", "f1", "low_energy"), ">=", 0.90),
           ("particle ARI", ("in-domain", "ari"), ">=", 0.90),
           ("vertex median (cm)", ("in-domain", "vertex_median_cm"), "<=", 1.0),
           ("vertex within 3 cm", ("in-domain", "vertex_within_3cm"), ">=", 0.90),
           ("real event point accuracy", ("real PILArNet-M event", "accuracy"), ">=", 0.90),
           ("reconstruct: protons exact", ("in-domain", "count_exact_proton"), ">=", 0.85),
           ("reconstruct: photons exact", ("in-domain", "count_exact_photon"), ">=", 0.85),
           ("reconstruct: pions exact", ("in-domain", "count_exact_pion"), ">=", 0.80),
           ("reconstruct: all five exact", ("in-domain", "count_exact_all_five"), ">=", 0.60))


def _num(x: Any) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and np.isfinite(x) else None


def drops(results: Mapping[str, dict], base: str = "in-domain") -> dict[str, dict[str, Optional[float]]]:
    """Per setting: metric(setting) - metric(in-domain), for every metric and class F1."""
    ref = results.get(base, {})
    out = {}
    for name, m in results.items():
        d = {}
        for k in METRICS + COUNTS:
            a, b = _num(m.get(k)), _num(ref.get(k))
            d[k] = None if a is None or b is None else a - b
        for c in SEMANTIC_CLASSES:
            a, b = _num((m.get("f1") or {}).get(c)), _num((ref.get("f1") or {}).get(c))
            d[f"f1_{c}"] = None if a is None or b is None else a - b
        out[name] = d
    return out


def fails(d: Mapping[str, Optional[float]]) -> bool:
    """More than 3 points lost on macro-F1 or event-class accuracy (exactly 3 passes)."""
    return worst(d) < -MAX_DROP - 1e-9


def identical(results: Mapping[str, dict], name: str, base: str = "in-domain") -> bool:
    keys = [k for k in results.get(base, {}) if k not in ("seconds", "events")]
    return name != base and all(results[name].get(k) == results[base].get(k) for k in keys)


def notes(settings: Sequence, results: Mapping[str, dict], n: int) -> list[str]:
    """What a reader needs to read the table: settings without any effect, statistics."""
    same = [s.name for s in settings if s.kind == "sim" and identical(results, s.name)]
    out = [f"- With {n} events, one event is {100 / n:.1f} points of event-class accuracy; every setting "
           "uses the same event indices, so the drops are paired, but a flag by a handful of events is "
           "near the noise (rerun with a larger `--n`)."]
    if same:
        txt = f"- Identical to in-domain on every metric: {', '.join(same)}."
        if any(x.startswith(("recombination", "box_", "birks_")) for x in same):
            txt += (" The recombination knobs change only the ionisation electrons per voxel "
                    "(`n_electrons`); the encoder reads the deposited energy, so they cannot affect it "
                    "(and the Birks constants act only with the Birks model, the box ones only with the box).")
        out.append(txt)
    return out


def worst(d: Mapping[str, Optional[float]]) -> float:
    vals = [d[k] for k in GUARDED if d.get(k) is not None]
    return min(vals) if vals else 0.0


def target_rows(results: Mapping[str, dict]) -> list[dict]:
    rows = []
    for label, path, op, thr in TARGETS:
        v: Any = results.get(path[0], {})
        for key in path[1:]:
            v = (v or {}).get(key) if isinstance(v, dict) else None
        v = _num(v)
        met = None if v is None else (v >= thr if op == ">=" else v <= thr)
        short = None if v is None else (max(0.0, thr - v) if op == ">=" else max(0.0, v - thr))
        rows.append({"label": label, "value": v, "target": f"{op} {thr:g}", "met": met, "shortfall": short})
    return rows


def _bar(names: list[str], values: list[float], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.5))
    colors = ["tab:red" if v < -100 * MAX_DROP - 1e-7 else "tab:blue" for v in values]
    ax.barh(range(len(names)), values, color=colors)
    ax.axvline(-3, color="k", ls="--", lw=1, label="-3 points (target)")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("change vs in-domain (points)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(out: Path, dd: Mapping[str, dict], sims: list[str]) -> list[str]:
    """Bar charts of the macro-F1 and event-class accuracy change per knob end (worst first)."""
    files = []
    for key, fname, title in (("macro_f1", "macro_f1_drop.png", "semantic macro-F1 per setting"),
                              ("event_accuracy", "event_accuracy_drop.png", "event-class accuracy per setting")):
        names = sorted((n for n in sims if dd[n].get(key) is not None), key=lambda n: dd[n][key])
        _bar(names, [100 * dd[n][key] for n in names], title, out / "robustness" / fname)
        files.append(f"robustness/{fname}")
    return files


def _setting_table(settings, results, dd, order) -> list[str]:
    by = {s.name: s for s in settings}
    extra = [c for c in COUNTS if any(c in results[n] for n in order)]
    cols = list(METRICS) + [f"F1 {c}" for c in SEMANTIC_CLASSES] + extra
    lines = ["| setting | events | " + " | ".join(LABELS.get(c, c) for c in cols)
             + " | d macro-F1 | d event acc | > 3 points lost |",
             "|---|---:|" + "---:|" * (len(cols) + 2) + "---|"]
    for name in order:
        m, d = results[name], dd[name]
        if "missing" in m:
            lines.append(f"| {name} | - | {m['missing']} |")
            continue
        vals = ([fmt(_num(m.get(c))) for c in METRICS] + [fmt(_num((m.get("f1") or {}).get(c))) for c in SEMANTIC_CLASSES]
                + [fmt(_num(m.get(c))) for c in extra])
        flag = "-" if by[name].kind == "real" or name == "in-domain" else \
            ("**yes**" if fails(d) else "no")
        dm, de = d["macro_f1"], d["event_accuracy"]
        lines.append(f"| {name} | {m.get('events', '-')} | " + " | ".join(vals)
                     + f" | {'-' if dm is None else f'{dm:+.3f}'} | {'-' if de is None else f'{de:+.3f}'} | {flag} |")
    return lines


def write_report(out: Path, header: dict, settings: Sequence, results: Mapping[str, dict]) -> Path:
    """``robustness.md``, ``robustness.json`` and the plots in ``out``; returns the .md path."""
    from larsight.events.formats.atomic import atomic_open

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dd = drops(results)
    sims = [s.name for s in settings if s.kind == "sim" and s.name != "in-domain"]
    order = ["in-domain"] + sorted(sims, key=lambda n: worst(dd[n])) + \
        [s.name for s in settings if s.kind == "real"]
    failing = [n for n in sims if fails(dd[n])]
    tr = [r for r in target_rows(results) if r["value"] is not None or not r["label"].startswith("reconstruct")]
    files = plots(out, dd, sims)
    lines = ["# Robustness of the perception stack", "",
             f"**command**: `{header['command']}`", "",
             f"- checkpoint: `{header['checkpoint']}` (sha1 {header['checkpoint_sha1'][:12]})",
             f"- data: {header['data']}; {header['n']} events per simulated setting",
             f"- wall time: {header['wall_s']:.0f} s this run ({len(header['computed'])} of {len(settings)} settings "
             f"computed, the rest from the cache); computing every setting took "
             f"{sum(float(m.get('seconds') or 0) for m in results.values()):.0f} s",
             f"- machine: {header['machine']}", "",
             "Each setting simulates the same held-out events with one knob changed (events.sim.knobs; "
             "docs/simulator_knobs.md), all others at their defaults. Drops are setting minus in-domain.", "",
             "## Robustness target", "",
             f"No knob end may cost more than 3 points of macro-F1 or event-class accuracy: "
             f"{len(sims) - len(failing)} of {len(sims)} settings pass"
             + (f"; failing: {', '.join(failing)}." if failing else "."), "",
             "## Targets", "", "| target | measured | required | met | shortfall |", "|---|---:|---|---|---:|"]
    lines += [f"| {r['label']} | {fmt(r['value'])} | {r['target']} | "
              f"{'-' if r['met'] is None else ('yes' if r['met'] else '**no**')} | {fmt(r['shortfall'])} |" for r in tr]
    lines += ["", "## Every setting (sorted by the worst drop of macro-F1 / event-class accuracy; the real event last)", ""]
    lines += _setting_table(settings, results, dd, order)
    lines += ["", *notes(settings, results, header["n"]),
              "- The real event has semantic truth only (no event class, vertex or usable instances here); "
              "its macro-F1 averages the classes present in it (its Michel and delta F1 are 0 when the model "
              "calls points Michel or delta that the event does not have).", "", "## Plots", ""]
    lines += [f"![{f}]({f})" for f in files]
    md = out / "robustness.md"
    with atomic_open(md, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    headline = {"in-domain macro-F1": _num(results.get("in-domain", {}).get("macro_f1")),
                "worst setting": (f"{order[1]} ({worst(dd[order[1]]):+.3f})" if len(order) > 1 else "-"),
                "settings within 3 points": f"{len(sims) - len(failing)}/{len(sims)}",
                "real event accuracy": _num(results.get("real PILArNet-M event", {}).get("accuracy"))}
    meta = {"command": header["command"], "seed": header["seed"]}
    write_json(out / "robustness.json", {**header, "headline": headline, "meta": meta,
                                         "setting_list": [s.__dict__ for s in settings],
                                         "results": dict(results), "drops": dd, "targets": tr,
                                         "failing": failing, "plots": files})
    return md
