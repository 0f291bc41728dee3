"""Encoder report: data efficiency of pretraining, and the shipped multi-task checkpoint's accuracy.

    python -m larsight.evals.encoder_report [--pretrained PATH] [--checkpoint PATH|auto|none]
        [--sizes 10,100,1000,all] [--seed 0] [--quick] [--work runs/encoder_report]

1. Data-efficiency grid (semantic segmentation): for each fine-tuning set size (10, 100, 1000
   events, ``all`` = fresh simulated events every step) x encoder init (pretrained, scratch)
   x mode (linear probe on the frozen encoder, full fine-tuning), ``encoder.finetune.finetune``
   trains a head and ``encoder.evaluate.evaluate`` scores it on the same held-out simulated
   neutrino events (the ``eval`` split of ``--seed``): macro-F1 and the Michel / delta F1.
   The scratch encoder has the pretrained one's architecture. Without ``--pretrained`` the
   report uses the shipped ``checkpoints/encoder_tiny_pretrained/encoder.safetensors``, else
   ``runs/pretrain/encoder.safetensors``, else pretrains one in the work folder
   (``--pretrain-steps``, resumable).
2. The multi-task checkpoint (``--checkpoint``; ``auto`` = ``encoder.DEFAULT_CHECKPOINT`` when
   it exists): every head's metrics on held-out events (each task on its default simulator
   mode), confusion matrices, and the targets (semantic macro-F1 >= 0.90, track and shower
   F1 >= 0.97, Michel F1 >= 0.80, median vertex error <= 1.5 cm, event-class accuracy >= 0.85)
   with the shortfall of each one missed.

Writes ``OUT/encoder.md``, ``OUT/encoder.json`` and PNGs under ``OUT/encoder/`` atomically
(``--out`` defaults to evals/reports). Resumable: each grid cell's metrics are cached as JSON
in the work folder (keyed by every setting that changes them), so a killed run skips the
finished cells when started again with the same options. ``--quick``: tiny step counts and
few evaluation events, a smoke test of the whole path in a couple of minutes (numbers are
meaningless; default output in the work folder, never over the real report).

Default sizing (2-core CPU, the shipped tiny encoder at 0.3 cm; measured with one torch
thread beside another training job): 16 cells; full fine-tuning 500 steps of 8 events
(~0.7-1.1 s/step, 5.5-9.5 min per cell), probes 500 steps on cached features (seconds;
streamed ``all``: 3-4 min), 200 held-out events per cell: 72 minutes for the grid, plus
~26 minutes when no pretrained encoder is found and it has to pretrain, and ~1 minute for
the checkpoint.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from larsight.encoder.checkpoint import has_train_state, load_weights, read_manifest  # noqa: E402
from larsight.encoder.config import PRESETS  # noqa: E402
# evaluate's confusion plot is private there; the report draws the same figure for the checkpoint
from larsight.encoder.evaluate import _plot_confusion, evaluate_on_split  # noqa: E402
from larsight.encoder.finetune import FinetuneConfig, finetune  # noqa: E402
from larsight.encoder.inference import DEFAULT_CHECKPOINT  # noqa: E402
from larsight.encoder.pretrain import PretrainConfig, pretrain  # noqa: E402
from larsight.events.formats.atomic import atomic_open  # noqa: E402

from .encoder_report_md import CONFIGS, markdown  # noqa: E402
from .report_common import REPO, copy_atomic, file_sha1, git_commit, machine, rel, write_json  # noqa: E402

SHIPPED_PRETRAINED = REPO / "checkpoints" / "encoder_tiny_pretrained" / "encoder.safetensors"
TARGETS = [  # (key, label, comparison, target)
    ("semantic_macro_f1", "semantic macro-F1", ">=", 0.90),
    ("track_f1", "track F1", ">=", 0.97),
    ("shower_f1", "shower F1", ">=", 0.97),
    ("michel_f1", "Michel F1", ">=", 0.80),
    ("vertex_median_cm", "median vertex error (cm)", "<=", 1.5),
    ("event_accuracy", "event-class accuracy", ">=", 0.85),
]


# ============================================================================ helpers
def _size(value: str) -> Optional[int]:
    return None if value.strip().lower() == "all" else int(value)


def _size_name(n: Optional[int]) -> str:
    return "all" if n is None else str(n)


def _encoder_spec(pretrained: Path) -> tuple[str, dict]:
    """(preset, overrides) that rebuild the pretrained encoder's architecture from scratch."""
    cfg = dict(read_manifest(pretrained)["config"])
    name = cfg.pop("name", "custom")
    return (name if name in PRESETS else "tiny"), cfg


# ============================================================================ pretraining
def ensure_pretrained(args, work: Path) -> Path:
    """The pretrained encoder: --pretrained, runs/pretrain, or one pretrained in ``work``."""
    if args.pretrained:
        p = Path(args.pretrained)
        if p.is_dir():
            p = p / "encoder.safetensors"
        if not p.exists():
            raise SystemExit(f"--pretrained {args.pretrained}: not found")
        return p
    for default in (SHIPPED_PRETRAINED, REPO / "runs" / "pretrain" / "encoder.safetensors"):
        if default.exists() and not args.quick:
            return default
    run = work / f"pretrain_{args.pretrain_objective}_{args.pretrain_steps}_s{args.seed}"
    out = run / "encoder.safetensors"
    if out.exists() and read_manifest(out).get("step") == args.pretrain_steps:
        return out
    print(f"encoder_report: pretraining ({args.pretrain_objective}, {args.pretrain_steps} steps) "
          f"in {run}")
    cfg = PretrainConfig(objective=args.pretrain_objective, run_dir=str(run),
                         steps=args.pretrain_steps, warmup=min(100, max(1, args.pretrain_steps // 10)),
                         seed=args.seed, log_every=max(1, min(10, args.pretrain_steps // 2)),
                         ckpt_every=100, resume=has_train_state(run / "state"))
    pretrain(cfg, command=args.command)
    return out


# ============================================================================ the grid
def cell_settings(args, pretrained: Path, init: str, mode: str, size: Optional[int]) -> dict:
    return {"task": "semantic", "init": init, "mode": mode, "n_events": _size_name(size),
            "steps": args.steps_full if mode == "full" else args.steps_probe,
            "batch_size": args.batch_size, "lr": args.lr_full if mode == "full" else args.lr_probe,
            "seed": args.seed, "n_eval": args.n_eval,
            "pretrained_sha1": file_sha1(pretrained)}


def run_cell(args, pretrained: Path, init: str, mode: str, size: Optional[int], work: Path
             ) -> dict:
    """One grid cell, from the cache when its settings match."""
    settings = cell_settings(args, pretrained, init, mode, size)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{init}_{mode}_n{_size_name(size)}_{digest}"
    cache = work / "cells" / f"{name}.json"
    if cache.exists() and not args.fresh:
        cached = json.loads(cache.read_text())
        if cached.get("settings") == settings:
            print(f"encoder_report: {init} {mode} n={_size_name(size)}: cached ({cache.name})")
            return cached
    preset, overrides = _encoder_spec(pretrained)
    cfg = FinetuneConfig(task="semantic", mode=mode,
                         init=str(pretrained) if init == "pretrained" else "scratch",
                         preset=preset, encoder_overrides=overrides if init == "scratch" else None,
                         n_events=size, steps=settings["steps"], batch_size=args.batch_size,
                         lr=settings["lr"], warmup=min(20, max(1, settings["steps"] // 10)),
                         seed=args.seed, n_eval=args.n_eval, run_dir=str(work / "runs" / name),
                         log_every=max(1, min(10, settings["steps"] // 2)))
    print(f"encoder_report: {init} {mode} n={_size_name(size)} ({settings['steps']} steps)")
    t0 = time.time()
    result = finetune(cfg, command=args.command, progress=not args.no_progress)
    m = result["metrics"]
    cell = {"settings": settings, "macro_f1": m["macro_f1"], "accuracy": m["accuracy"],
            "f1": m["f1"], "support": m["support"], "train_minutes": result["train_minutes"],
            "total_minutes": (time.time() - t0) / 60, "final_loss": result["final_loss"],
            "n_eval": result["n_eval"], "run_dir": cfg.run_dir}
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, cell)
    return cell


def plot_grid(cells: dict, sizes: list, path: Path) -> None:
    xs = list(range(len(sizes)))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    for ax, (key, title) in zip(axes, [("macro", "semantic macro-F1"), ("michel", "Michel F1"),
                                       ("delta", "delta-ray F1")]):
        for init, mode in CONFIGS:
            ys = []
            for s in sizes:
                c = cells.get((init, mode, _size_name(s)))
                v = None if c is None else (c["macro_f1"] if key == "macro" else
                                            c["f1"].get(key) if c["support"].get(key, 0) else None)
                ys.append(np.nan if v is None else v)
            ax.plot(xs, ys, marker="o", ls="-" if init == "pretrained" else "--",
                    color="tab:blue" if mode == "full" else "tab:orange",
                    label=f"{init}, {'full fine-tune' if mode == 'full' else 'linear probe'}")
        ax.set_xticks(xs, [_size_name(s) for s in sizes])
        ax.set_xlabel("fine-tuning events")
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F1 on held-out neutrino events")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ============================================================================ the checkpoint
def resolve_checkpoint(value: str) -> Optional[Path]:
    if value == "none":
        return None
    if value == "auto":
        return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.exists() else None
    p = Path(value)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.exists():
        raise SystemExit(f"--checkpoint {value}: not found")
    return p


def target_values(results: dict) -> dict[str, Optional[float]]:
    sem, vtx, evt = results.get("semantic", {}), results.get("vertex", {}), results.get("event", {})
    support = sem.get("support", {})
    f1 = {k: (v if support.get(k, 0) > 0 else None) for k, v in sem.get("f1", {}).items()}
    return {"semantic_macro_f1": sem.get("macro_f1"), "track_f1": f1.get("track"),
            "shower_f1": f1.get("shower"), "michel_f1": f1.get("michel"),
            "vertex_median_cm": vtx.get("median_cm"), "event_accuracy": evt.get("accuracy")}


def check_targets(results: dict) -> list[dict]:
    values = target_values(results)
    rows = []
    for key, label, op, target in TARGETS:
        v = values[key]
        if v is None or not np.isfinite(v):
            rows.append({"key": key, "label": label, "target": f"{op} {target}", "value": None,
                         "met": None, "shortfall": None})
            continue
        met = v >= target if op == ">=" else v <= target
        short = None if met else (target - v if op == ">=" else v - target)
        rows.append({"key": key, "label": label, "target": f"{op} {target}", "value": float(v),
                     "met": bool(met), "shortfall": None if short is None else float(short)})
    return rows


def evaluate_checkpoint_full(path: Path, args, png_dir: Path) -> dict:
    loaded = load_weights(path)
    if not loaded.heads:
        raise SystemExit(f"--checkpoint {path}: has no task heads (train with `larsight finetune "
                         f"--task all`)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded.encoder.to(device)
    for h in loaded.heads.values():
        h.to(device)
    t0 = time.time()
    results, groups = evaluate_on_split(loaded.encoder, loaded.heads, n=args.n_eval_checkpoint,
                                        seed=args.seed, device=device,
                                        progress=not args.no_progress)
    pngs = {}
    for task, r in results.items():
        if "confusion" in r:
            png = png_dir / f"confusion_{task}.png"
            _plot_confusion(np.array(r["confusion"]), r["classes"],
                            f"{task} (row-normalised), held-out events", png)
            pngs[task] = png.name
    man = loaded.manifest
    return {"path": rel(path), "heads": list(loaded.heads), "data": groups, "results": results,
            "targets": check_targets(results), "pngs": pngs, "minutes": (time.time() - t0) / 60,
            "manifest": {k: man.get(k) for k in ("command", "task", "mode", "init", "step",
                                                 "created", "task_weights")}}


# ============================================================================ main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m larsight.evals.encoder_report",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny step counts")
    ap.add_argument("--pretrained", default=None,
                    help="pretrained encoder.safetensors (default: runs/pretrain/encoder.safetensors, "
                         "else pretrain one in the work folder)")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="when pretraining here (default 600)")
    ap.add_argument("--pretrain-objective", choices=["distill", "mpm"], default="mpm",
                    help="when pretraining here (mpm: ~3x cheaper per step on a CPU)")
    ap.add_argument("--checkpoint", default="auto",
                    help="multi-task checkpoint to score against the targets; 'auto' = "
                         "encoder.DEFAULT_CHECKPOINT if it exists; 'none' skips")
    ap.add_argument("--sizes", default=None, help="fine-tuning set sizes (default 10,100,1000,all; "
                                                  "--quick: 10,100)")
    ap.add_argument("--inits", default="pretrained,scratch")
    ap.add_argument("--modes", default="probe,full")
    ap.add_argument("--steps-full", type=int, default=None, help="default 500 (--quick 6)")
    ap.add_argument("--steps-probe", type=int, default=None, help="default 500 (--quick 10)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr-full", type=float, default=3e-3)
    ap.add_argument("--lr-probe", type=float, default=1e-2)
    ap.add_argument("--n-eval", type=int, default=None,
                    help="held-out events per cell (default 200, --quick 8)")
    ap.add_argument("--n-eval-checkpoint", type=int, default=None,
                    help="held-out events per data group for the checkpoint (default 300, --quick 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="cache / run folder (default runs/encoder_report, "
                                                 "--quick: runs/encoder_report_quick)")
    ap.add_argument("--out", default=None, help="report folder (default evals/reports; --quick: "
                                                "WORK/report)")
    ap.add_argument("--fresh", action="store_true", help="recompute cached cells")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: Optional[list[str]] = None) -> Path:
    args = build_parser().parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    args.command = "python -m larsight.evals.encoder_report " + " ".join(shlex.quote(a) for a in argv)
    q = args.quick
    args.sizes = args.sizes or ("10,100" if q else "10,100,1000,all")
    args.steps_full = args.steps_full or (6 if q else 500)
    args.steps_probe = args.steps_probe or (10 if q else 500)
    args.n_eval = args.n_eval or (8 if q else 200)
    args.n_eval_checkpoint = args.n_eval_checkpoint or (8 if q else 300)
    args.pretrain_steps = args.pretrain_steps or (4 if q else 600)
    work = Path(args.work or (REPO / "runs" / ("encoder_report_quick" if q else "encoder_report")))
    out = Path(args.out or (work / "report" if q else REPO / "evals" / "reports"))
    png_dir = out / "encoder"
    for d in (work, out, png_dir, work / "png"):
        d.mkdir(parents=True, exist_ok=True)
    sizes = [_size(s) for s in args.sizes.split(",") if s.strip()]
    inits = [s.strip() for s in args.inits.split(",") if s.strip()]
    modes = [s.strip() for s in args.modes.split(",") if s.strip()]
    if set(inits) - {"pretrained", "scratch"} or set(modes) - {"probe", "full"}:
        raise SystemExit("--inits: pretrained,scratch; --modes: probe,full")
    t_start = time.time()
    machine_info = machine()
    ckpt_path = resolve_checkpoint(args.checkpoint)

    pretrained = ensure_pretrained(args, work)
    pman = read_manifest(pretrained)
    pinfo = (f"{pman.get('objective', pman.get('kind', '?'))}, {pman.get('step', '?')} steps, "
             f"{pman.get('config', {}).get('name', '?')} encoder at "
             f"{pman.get('config', {}).get('voxel_size_cm', '?')} cm")
    cells: dict[tuple, dict] = {}
    for size in sizes:
        for init, mode in CONFIGS:
            if init in inits and mode in modes:
                cells[(init, mode, _size_name(size))] = run_cell(args, pretrained, init, mode, size, work)
    plot_grid(cells, sizes, work / "png" / "data_efficiency.png")
    copy_atomic(work / "png" / "data_efficiency.png", png_dir / "data_efficiency.png")

    ckpt = None
    note = "none given" if args.checkpoint == "none" else (
        "the default checkpoint checkpoints/encoder_tiny/model.safetensors does not exist yet; "
        "train it with `larsight finetune --task all --mode full --init <pretrained> --n-events all "
        "--run-dir checkpoints/encoder_tiny` and rerun")
    if ckpt_path is not None:
        print(f"encoder_report: evaluating {ckpt_path}")
        ckpt = evaluate_checkpoint_full(ckpt_path, args, work / "png")
        for name in ckpt["pngs"].values():
            copy_atomic(work / "png" / name, png_dir / name)

    meta = {"command": args.command, "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "commit": git_commit(), "machine": machine_info, "seed": args.seed, "quick": q,
            "n_eval": args.n_eval, "steps_full": args.steps_full, "steps_probe": args.steps_probe,
            "batch_size": args.batch_size, "minutes": (time.time() - t_start) / 60,
            "checkpoint_note": note}
    grid = {"pretrained": rel(pretrained), "pretrained_info": pinfo,
            "sizes": [_size_name(s) for s in sizes],
            "cells": {f"{i}/{m}/{s}": c for (i, m, s), c in cells.items()}}
    write_json(out / "encoder.json", {"meta": meta, "grid": grid, "checkpoint": ckpt})
    with atomic_open(out / "encoder.md", "w") as fh:
        fh.write(markdown(meta, grid, ckpt, png_dir.name))
    print(f"encoder_report: wrote {out / 'encoder.md'} ({meta['minutes']:.1f} min)")
    return out / "encoder.md"


if __name__ == "__main__":
    main()
