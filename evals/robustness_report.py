"""Robustness of the perception stack (issue 15, item 5): every metric on the same held-out
event stream under different simulator settings.

    python -m larsight.evals.robustness_report                      # n = 100 per setting
    python -m larsight.evals.robustness_report --n 20 --knobs energy_scale,dead_fraction
    larsight eval all --only robustness

Settings: in-domain (every knob at its default, the model's 0.3 cm grid), each knob of
``events.sim.knobs.SPECS`` at the low and the high end of its range (an end equal to the
default is the in-domain setting and is not repeated; a choice knob gets one setting per
non-default choice), the coarse 0.6 cm grid, and the real PILArNet-M event (../shared/data).
Events: the simulator's ``eval`` split (``encoder.data.split_seed(seed, 'eval')``, never a
training split), event i drawn from ``default_rng([split seed, i])`` in every setting, so the
settings differ only by the knob. Metrics come from ``encoder.evaluate.evaluate`` (semantic
accuracy / macro-F1 / per-class F1, particle ARI, event-class accuracy, vertex distances).

Each setting's metrics are cached in ``--work`` as one JSON keyed by (checkpoint sha1, setting,
n, seed), written atomically, so a rerun computes only what is missing. Writes
``robustness.md``, ``robustness.json`` and ``robustness/*.png`` in ``--out``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from larsight.events.sim.knobs import SPEC_BY_NAME, SPECS, KnobError

from .report_common import REPO, file_sha1, machine, rel, write_json

REPORTS = REPO / "evals" / "reports"
WORK = Path("runs") / "robustness_work"
TASKS = ("semantic", "particle", "vertex", "event")
GRID_KNOB = "voxel_size_cm"
QUICK_KNOBS = ("energy_scale", "dead_fraction")


@dataclass(frozen=True)
class Setting:
    """One simulator setting: a name, the knob overrides (None = plain simulator) or the real event."""

    name: str
    knobs: Optional[dict] = None
    kind: str = "sim"            # sim | real
    knob: str = ""               # the knob varied ('' for in-domain / real)
    end: str = ""                # low | high | choice value


def knob_settings(names: Optional[Sequence[str]] = None) -> list[Setting]:
    """Each knob at both ends of its range (ends equal to the default skipped)."""
    names = list(names) if names else [s.name for s in SPECS if s.name != GRID_KNOB]
    bad = [n for n in names if n not in SPEC_BY_NAME or n == GRID_KNOB]
    if bad:
        raise KnobError(f"unknown knob(s) {', '.join(map(repr, bad))}; valid knobs: "
                        f"{', '.join(s.name for s in SPECS if s.name != GRID_KNOB)} "
                        f"(the grid is its own setting)")
    out = []
    for n in names:
        s = SPEC_BY_NAME[n]
        ends = ([(str(c), c) for c in s.choices] if s.sampling == "choice"
                else [("low", s.lo), ("high", s.hi)])
        for end, v in ends:
            if v != s.default:
                out.append(Setting(f"{n}={v:g}" if not isinstance(v, str) else f"{n}={v}",
                                   {n: v}, knob=n, end=end))
    return out


def all_settings(knobs: Optional[Sequence[str]] = None, coarse: bool = True, real: bool = True) -> list[Setting]:
    out = [Setting("in-domain")] + knob_settings(knobs)
    if coarse:
        out.append(Setting("coarse grid 0.6 cm", {GRID_KNOB: 0.6}, knob=GRID_KNOB, end="0.6"))
    if real:
        out.append(Setting("real PILArNet-M event", kind="real"))
    return out


# ============================================================================ computing
def cache_path(work: Path, sha1: str, setting: Setting, n: int, seed: int, counts: bool = False) -> Path:
    key = hashlib.sha1(json.dumps([sha1, setting.name, setting.knobs, setting.kind, n, seed]
                                  + (["counts"] if counts else []),
                                  sort_keys=True, default=str).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "._-=" else "_" for c in setting.name)
    return work / f"{safe}__{key}.json"


def held_out_events(setting: Setting, n: int, seed: int, voxel_size_cm: float) -> list:
    """The first ``n`` non-empty events of the eval split under ``setting``'s knobs."""
    from larsight.encoder.data import split_seed, volume_for
    from larsight.events.sim import MODES

    gen, vol, s = MODES["nu"], volume_for(voxel_size_cm), split_seed(seed, "eval")
    kw = {} if setting.knobs is None else {"knobs": dict(setting.knobs)}
    out, i = [], 0
    while len(out) < n:
        ev = gen(seed=s, index=i, volume=vol, **kw)
        i += 1
        if len(ev) > 0:
            out.append(ev)
        if i > 20 * n + 100:
            raise RuntimeError(f"setting {setting.name}: only {len(out)} non-empty events in {i} draws")
    return out


def real_event(path: Optional[Path] = None):
    """The real PILArNet-M event as an Event, or None if ../shared/data does not hold it."""
    from larsight.events import Event

    from .simulator_real import REAL_NAME

    cands = [path] if path else [REPO.parent / "shared" / "data" / REAL_NAME, Path("/work/shared/data") / REAL_NAME]
    f = next((p for p in cands if p and Path(p).exists()), None)
    if f is None:
        return None
    with np.load(f) as d:
        pid = d["pid"].astype(np.int8)
        pid[pid == 5] = -1
        return Event(points=d["voxels"].astype(np.float32) * np.float32(0.3), energy=d["energy_mev"],
                     semantic=d["semantic"], particle=d["instance"].astype(np.int32), pid=pid)


def summarise(res: dict) -> dict:
    """The report's numbers from ``encoder.evaluate.evaluate`` results."""
    out: dict[str, Any] = {}
    if "semantic" in res:
        s = res["semantic"]
        out.update(accuracy=s["accuracy"], macro_f1=s["macro_f1"], f1=s["f1"], support=s["support"])
    if "particle" in res:
        out["ari"] = res["particle"]["ari"]
    if "event" in res:
        out["event_accuracy"] = res["event"]["accuracy"]
    if "vertex" in res:
        out["vertex_median_cm"] = res["vertex"].get("median_cm")
        out["vertex_within_3cm"] = res["vertex"].get("frac_within_3cm")
    return out


def count_exactness(evs: list, checkpoint: Path) -> dict:
    """``tools.reconstruct`` count exactness (the tools report's matching and metrics)."""
    from larsight.qformer.corpus import event_facts
    from larsight.tools import engine, find_vertex, reconstruct

    from .tools_metrics import count_metrics
    from .tools_records import RecoView, compare

    m_obj, records = engine.get_model(checkpoint), []
    for i, ev in enumerate(evs):
        view = RecoView.from_tools(reconstruct(ev, m_obj), find_vertex(ev, m_obj))
        records.append(compare(i, ev, event_facts(ev), view))
        engine.clear_cache()
    c = count_metrics(records)
    return {**{f"count_exact_{k}": c["per_type"][k]["exact"] for k in ("proton", "photon", "pion")},
            "count_exact_all_five": c["all_five_exact"]}


def evaluate_setting(loaded, setting: Setting, n: int, seed: int, real_path: Optional[Path] = None,
                     counts: Optional[Path] = None) -> dict:
    """Metrics of one setting (the real event: semantic only); ``counts``: the checkpoint whose
    ``reconstruct`` counts are scored too."""
    from larsight.encoder.evaluate import evaluate

    enc, heads = loaded.encoder, loaded.heads
    if setting.kind == "real":
        ev = real_event(real_path)
        if ev is None:
            return {"missing": "real event not found in ../shared/data"}
        res = evaluate(enc, {"semantic": heads["semantic"]}, [ev], progress=False)
        return {**summarise(res), "events": 1}
    evs = held_out_events(setting, n, seed, enc.config.voxel_size_cm)
    res = evaluate(enc, {t: heads[t] for t in TASKS if t in heads}, evs, progress=False)
    extra = count_exactness(evs, counts) if counts else {}
    return {**summarise(res), **extra, "events": len(evs)}


@dataclass
class Run:
    checkpoint: Path
    n: int = 100
    seed: int = 0
    knobs: Optional[list[str]] = None
    work: Path = WORK
    progress: bool = True
    real_path: Optional[Path] = None
    counts: bool = False
    computed: list[str] = field(default_factory=list)


def run_settings(run: Run, settings: list[Setting]) -> dict[str, dict]:
    """Each setting's metrics, from the cache where present; the model loads only if needed."""
    from tqdm.auto import tqdm

    sha1 = file_sha1(run.checkpoint)
    run.work.mkdir(parents=True, exist_ok=True)
    loaded, out = None, {}
    for s in tqdm(settings, desc="robustness", unit="setting", disable=not run.progress):
        p = cache_path(run.work, sha1, s, run.n, run.seed, run.counts)
        if p.exists():
            try:
                out[s.name] = json.loads(p.read_text())["metrics"]
                continue
            except (json.JSONDecodeError, KeyError):
                pass  # a damaged cache entry is recomputed
        if loaded is None:
            loaded = _load(run.checkpoint)
        t0 = time.time()
        m = evaluate_setting(loaded, s, run.n, run.seed, run.real_path,
                             run.checkpoint if run.counts else None)
        m["seconds"] = round(time.time() - t0, 1)
        write_json(p, {"checkpoint_sha1": sha1, "setting": asdict(s), "n": run.n, "seed": run.seed, "metrics": m})
        run.computed.append(s.name)
        out[s.name] = m
    return out


def _load(checkpoint: Path):
    from larsight.encoder.checkpoint import load_weights

    loaded = load_weights(checkpoint)
    missing = [t for t in ("semantic",) if t not in loaded.heads]
    if missing:
        raise ValueError(f"{checkpoint} has no {missing[0]} head; the robustness report needs it")
    return loaded


# ============================================================================ command line
def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from larsight.encoder.inference import DEFAULT_CHECKPOINT

    ap = argparse.ArgumentParser(prog="python -m larsight.evals.robustness_report", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--n", type=int, default=100, help="held-out events per setting (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="data seed; events are its eval split")
    ap.add_argument("--knobs", default="", help="comma-separated knobs (default: all)")
    ap.add_argument("--no-coarse", action="store_true", help="skip the 0.6 cm grid setting")
    ap.add_argument("--no-real", action="store_true", help="skip the real PILArNet-M event")
    ap.add_argument("--out", type=Path, default=REPORTS, help="folder for robustness.md/.json/plots")
    ap.add_argument("--work", type=Path, default=WORK, help="cache of per-setting results")
    ap.add_argument("--quick", action="store_true", help=f"n=3, knobs {','.join(QUICK_KNOBS)}")
    ap.add_argument("--counts", action="store_true",
                    help="also score `reconstruct` count exactness (protons, photons, pions; ~0.3 s/event)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.knobs = 3, a.knobs or ",".join(QUICK_KNOBS)
    if a.n < 1:
        ap.error(f"--n must be >= 1, got {a.n}")
    if not a.checkpoint.exists():
        ap.error(f"--checkpoint {a.checkpoint} does not exist")
    return a


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from .robustness_md import write_report

    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse(argv)
    knobs = [k.strip() for k in a.knobs.split(",") if k.strip()] or None
    try:
        settings = all_settings(knobs, coarse=not a.no_coarse, real=not a.no_real)
    except KnobError as e:
        raise SystemExit(f"robustness_report: {e}") from None
    t0 = time.time()
    run = Run(a.checkpoint, a.n, a.seed, knobs, a.work, not a.no_progress, counts=a.counts)
    results = run_settings(run, settings)
    header = {"command": "python -m larsight.evals.robustness_report " + " ".join(map(shlex.quote, argv)),
              "checkpoint": rel(a.checkpoint), "checkpoint_sha1": file_sha1(a.checkpoint),
              "data": f"simulated nu events, eval split of data seed {a.seed} "
                      f"(simulator seed {1000 * a.seed + 2}), the same event indices in every setting",
              "seed": a.seed, "n": a.n, "wall_s": round(time.time() - t0, 1), "computed": run.computed,
              "machine": machine()}
    md = write_report(a.out, header, settings, results)
    print(f"wrote {md} ({len(run.computed)} of {len(settings)} settings computed)", file=sys.stderr)
    return {"header": header, "results": results}


if __name__ == "__main__":
    main()
