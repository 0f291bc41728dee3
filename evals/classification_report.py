"""The VLM paper's Table 1 and Table 2, reproduced side by side on simulated events.

    python -m larsight.evals.classification_report                    # 2,000 held-out events, ~1 h on 2 cores
    python -m larsight.evals.classification_report --n-events 300     # a quick look

writes ``evals/reports/classification.md`` and ``classification.json`` (+ confusion and ROC
plots) for nu_e CC / nu_mu CC / NC classification by

* ``vlm``: larsight's detector-native VLM (shipped ``checkpoints/vlm_smollm2``): constrained
  scoring of the three class texts, with the system prompt it was trained with;
* ``encoder_head``: the shipped encoder with its event-class head (``checkpoints/encoder_tiny``);
* ``cnn``: the paper's two-view MobileNetV2-like CNN on XZ/YZ energy maps (``evals.baselines``);
* ``vit``: a ViT on the same maps, built with open_clip, no pretrained weights;
* ``zero_shot``: SmolLM2 with no alignment at all: the same prompt and constrained scoring, the
  event slots filled by an untrained projector (the paper's "VLM zero-shot" row).

All models see the same events: the first ``--n-events`` of the simulator's ``eval`` split
(``encoder.data``: seed ``1000 * seed + 2``), which no training command reads (pretraining,
fine-tuning, the baselines and alignment read the ``pretrain``, ``finetune`` and ``align``
splits). Table 2 feeds the very same events re-voxelised on a 2x coarser grid
(``events.projections.coarsen``) to the same weights, without retraining. The prompt ablation
scores the VLM with and without the physics definitions in its system prompt.

Speed and memory are measured in a fresh subprocess per model (batch 1, ``--threads`` torch
threads, median over ``--n-speed`` events after a warm-up): milliseconds from an in-memory
``Event`` to class probabilities, and the process's peak resident memory (Python, torch,
weights and activations: what a user's machine has to hold).

Baselines missing under ``--cnn`` / ``--vit`` are trained first with the command in
``BASELINE_COMMANDS`` (about 30 + 15 min on one core). Per-model predictions are cached in
``--work`` keyed on the checkpoint files' hashes, so a re-run only recomputes what changed.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from larsight.encoder.data import DataSpec, take
from larsight.events.formats.atomic import atomic_open, atomic_path
from larsight.events.model import EVENT_CLASSES
from larsight.events.projections import coarsen

from .report_common import REPO, fmt, git_commit, machine, rel, write_json

# The models' libraries, sklearn and matplotlib are imported where they are used: the speed
# probe runs this module in a fresh process and reports its peak memory, which must hold what
# one model needs (with Python and torch) and nothing more.

OUT = REPO / "evals" / "reports" / "classification"
DEFAULT_WORK = REPO / "runs" / "classification_report"

MODELS = ("vlm", "encoder_head", "cnn", "vit", "zero_shot")
LABELS = {"vlm": "larsight VLM (encoder + Q-Former + SmolLM2-135M QLoRA)",
          "vlm_physics": "larsight VLM, physics definitions added to the prompt",
          "vlm_bare": "larsight VLM, bare prompt",
          "encoder_head": "encoder + event head",
          "encoder_head_03": "encoder + event head, events on its 0.3 cm training grid",
          "cnn": "two-view CNN (MobileNetV2-like)",
          "vit": "ViT (open_clip, from scratch)",
          "zero_shot": "SmolLM2 zero-shot (untrained projector)"}

BASELINE_COMMANDS = {
    kind: [sys.executable, "-m", "larsight.evals.baselines", "train", "--kind", kind, "--steps", "600",
           "--n-events", "all", "--threads", "1", "--seed", "0"]
    for kind in ("cnn", "vit")}
"""How the baselines were trained (the run folder is appended as ``--run-dir``)."""

TARGETS = {"vlm_accuracy": 0.90, "vlm_ms_per_event": 100.0, "vlm_peak_memory_gb": 2.5}
PAPER = {"vlm_accuracy": 0.87, "vlm_auc": 0.96, "vlm_s_per_sample": 3.3,
         "vlm_memory_gb": "13-25", "cnn_accuracy_half_resolution": "0.43-0.49",
         "vlm_accuracy_half_resolution": 0.85, "zero_shot": "everything nu_e CC (36.8 %)"}


# ============================================================================ test set
TEST_VOXEL_CM = 0.6
"""The grid the VLM's alignment data, the CNN and the ViT were trained on (``DataSpec``'s
default); the encoder was fine-tuned at 0.3 cm, so it also gets a row at its own grid."""


def test_events(n: int, seed: int, voxel_scale: int = 1, voxel_size_cm: float = TEST_VOXEL_CM):

    events = take(DataSpec(modes="nu", seed=seed, voxel_size_cm=voxel_size_cm), "eval", n,
                  min_points=8)
    if voxel_scale > 1:
        events = [coarsen(e, voxel_scale) for e in events]
    return events


def truth_labels(events) -> np.ndarray:
    labels = []
    for e in events:
        cls = e.event_class
        if cls not in EVENT_CLASSES:
            raise ValueError(f"test event {e!r} has no neutrino class; the test set must be "
                             f"neutrino events")
        labels.append(EVENT_CLASSES.index(cls))
    return np.asarray(labels)


# ============================================================================ models
def _sha(paths: Sequence[Path]) -> str:
    h = hashlib.sha1()
    for p in sorted(Path(x) for x in paths):
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file() and f.suffix in (".safetensors", ".json"):
                h.update(f.name.encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


class Classifier:
    """One row of the tables: ``predict(events) -> (N, 3)`` probabilities plus bookkeeping."""

    def __init__(self, name: str, predict: Callable, trainable: int, files: Sequence[Path],
                 note: str = ""):
        self.name, self.predict, self.trainable, self.files, self.note = \
            name, predict, trainable, list(files), note

    @functools.cached_property
    def fingerprint(self) -> str:  # hashes the weight files: once per model, not per lookup
        return _sha(self.files)


def _chunked(fn: Callable, events, batch: int, desc: str) -> np.ndarray:
    out = []
    with tqdm(total=len(events), desc=desc, unit="ev", leave=False) as bar:
        for i in range(0, len(events), batch):
            out.append(np.asarray(fn(events[i:i + batch]), dtype=np.float64))
            bar.update(len(events[i:i + batch]))
    return np.concatenate(out)


def _vlm_probs(vlm, events, physics: Optional[bool]) -> np.ndarray:
    out = vlm.classify(list(events), physics=physics)
    return np.array([[p[c] for c in EVENT_CLASSES] for p in out])


def build(name: str, args) -> Classifier:
    """Load one model (heavy imports happen here, so a speed probe loads only its own)."""
    if name in ("vlm", "vlm_physics", "vlm_bare"):
        from larsight.qformer.vlm import load_vlm

        vlm = load_vlm(args.vlm)
        physics = {"vlm": None, "vlm_physics": True, "vlm_bare": False}[name]
        n_proj = sum(p.numel() for p in vlm.projector.parameters())
        from safetensors import safe_open
        n_lora = 0
        adapter = Path(args.vlm) / "adapter" / "adapter_model.safetensors"
        if adapter.exists():
            with safe_open(str(adapter), "pt") as fh:
                n_lora = sum(int(np.prod(fh.get_slice(k).get_shape())) for k in fh.keys())
        enc = Path(vlm.encoder.path) if vlm.encoder.path else None
        return Classifier(name, lambda evs: _vlm_probs(vlm, evs, physics), n_proj + n_lora,
                          [Path(args.vlm)] + ([enc] if enc else []),
                          note=f"projector {n_proj / 1e6:.2f} M + LoRA {n_lora / 1e6:.2f} M")
    if name == "encoder_head":
        from larsight.encoder import load_model
        from larsight.encoder.inference import DEFAULT_CHECKPOINT

        model = load_model(args.encoder)
        path = Path(args.encoder) if args.encoder else DEFAULT_CHECKPOINT
        n_enc = sum(p.numel() for p in model.encoder.parameters())
        n_head = sum(p.numel() for p in model.heads["event"].parameters())
        return Classifier(name, lambda evs: np.stack([p.event_probs for p in model.predict(evs)]),
                          n_enc + n_head, [path],
                          note=f"encoder {n_enc / 1e6:.2f} M (fine-tuned with all heads) + "
                               f"event head {n_head / 1e3:.1f} k")
    if name in ("cnn", "vit"):
        from larsight.evals.baselines import count_parameters, load_baseline, predict_proba

        run = Path(getattr(args, name))
        model = load_baseline(run)
        return Classifier(name, lambda evs: predict_proba(model, evs), count_parameters(model),
                          [run])
    if name == "zero_shot":
        from larsight.encoder import load_model
        from larsight.qformer.lm import load_lm
        from larsight.qformer.projector import EventProjector, EventProjectorConfig
        from larsight.qformer.vlm import VLM

        enc = load_model(args.encoder)
        lm, tok = load_lm("smollm2-135m-instruct", quantization="none", lora=False)
        torch.manual_seed(0)
        proj = EventProjector(EventProjectorConfig(
            encoder_dim=enc.embedding_dim, lm_dim=lm.get_input_embeddings().embedding_dim))
        vlm = VLM(enc, proj, lm, tok, physics_prompt=True)
        return Classifier(name, lambda evs: _vlm_probs(vlm, evs, True), 0, [],
                          note="no training; physics definitions in the prompt")
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS + ('vlm_physics',)}")


# ============================================================================ metrics
def metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import (accuracy_score, confusion_matrix, precision_recall_fscore_support,
                                 roc_auc_score)

    pred = probs.argmax(1)
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, labels=range(3), average="macro",
                                                       zero_division=0)
    pc, rc, _, support = precision_recall_fscore_support(y, pred, labels=range(3), zero_division=0)
    onehot = np.eye(3)[y]
    auc = roc_auc_score(onehot, probs, average="macro", multi_class="ovr")
    pred_share = np.bincount(pred, minlength=3) / len(pred)
    return {"accuracy": float(accuracy_score(y, pred)), "precision": float(prec),
            "recall": float(rec), "f1": float(f1), "auc": float(auc),
            "per_class": {c: {"precision": float(pc[i]), "recall": float(rc[i]),
                              "support": int(support[i]), "predicted_share": float(pred_share[i])}
                          for i, c in enumerate(EVENT_CLASSES)},
            "confusion": confusion_matrix(y, pred, labels=range(3)).tolist()}


def cached_predictions(clf: Classifier, events, tag: str, work: Path, batch: int) -> np.ndarray:
    path = work / f"{clf.name}_{tag}_{clf.fingerprint}.npy"
    if path.exists():
        p = np.load(path)
        if p.shape == (len(events), 3):
            return p
    t = time.time()
    p = _chunked(clf.predict, events, batch, f"{clf.name} {tag}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, p)
    print(f"  {clf.name} {tag}: {len(events)} events in {time.time() - t:.0f} s")
    return p


# ============================================================================ speed / memory probe
def probe(name: str, args) -> dict[str, Any]:
    """Run inside a fresh process: load one model, classify ``n_speed`` events one at a time."""
    torch.set_num_threads(args.threads)
    events = test_events(args.n_speed + 3, args.seed)
    rss0 = peak_rss_gb()
    t = time.perf_counter()
    clf = build(name, args)
    load_s = time.perf_counter() - t
    for e in events[:3]:
        clf.predict([e])
    times, cpu = [], []
    for e in events[3:]:
        t, c = time.perf_counter(), time.process_time()
        clf.predict([e])
        times.append(1e3 * (time.perf_counter() - t))
        cpu.append(1e3 * (time.process_time() - c))   # all threads: other jobs do not inflate it
    peak = peak_rss_gb()
    return {"ms_median": float(np.median(times)), "ms_p90": float(np.percentile(times, 90)),
            "cpu_ms_median": float(np.median(cpu)),
            "ms_mean": float(np.mean(times)), "n": len(times), "load_s": load_s,
            "peak_rss_gb": peak, "rss_before_model_gb": rss0, "threads": args.threads,
            "load_avg": os.getloadavg()[0]}


def peak_rss_gb() -> float:
    """This process's peak resident memory. /proc's VmHWM, not getrusage: ru_maxrss survives
    fork + exec, so a probe started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_probe(name: str, args) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "larsight.evals.classification_report", "--probe", name,
           "--n-speed", str(args.n_speed), "--threads", str(args.threads), "--seed", str(args.seed),
           "--vlm", str(args.vlm), "--cnn", str(args.cnn), "--vit", str(args.vit)]
    if args.encoder:
        cmd += ["--encoder", str(args.encoder)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"speed probe of {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ============================================================================ plots
def plot_confusions(results: dict, names: Sequence[str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.4))
    for ax, n in zip(np.atleast_1d(axes), names):
        cm = np.asarray(results[n]["confusion"], dtype=float)
        frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{frac[i, j]:.2f}", ha="center", va="center",
                        color="white" if frac[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(3), EVENT_CLASSES, fontsize=8)
        ax.set_yticks(range(3), EVENT_CLASSES, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_title(f"{n}\nacc {results[n]['accuracy']:.3f}", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("true")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_rocs(y: np.ndarray, probs: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for k, (ax, c) in enumerate(zip(axes, EVENT_CLASSES)):
        for n, p in probs.items():
            fpr, tpr, _ = roc_curve(y == k, p[:, k])
            ax.plot(fpr, tpr, lw=1.3, label=f"{n} ({roc_auc_score(y == k, p[:, k]):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{c} vs rest")
        ax.set_xlabel("false positive rate")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("true positive rate")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ============================================================================ report
def markdown(meta: dict, t1: dict, t2: dict, ablation: dict, speed: dict, clfs: dict,
             targets: list[dict]) -> str:
    L = ["# Classification: nu_e CC / nu_mu CC / NC, the VLM paper's tables on our events", "",
         f"Regenerate: `{meta['command']}` ({meta['minutes']:.0f} min; commit {meta['commit']}; "
         f"{meta['machine']}).", "",
         f"Test set: the first {meta['n_events']} events of the simulator's `eval` split, data "
         f"seed {meta['seed']} (simulator seed {meta['sim_seed']}), on {TEST_VOXEL_CM} cm voxels "
         f"(the grid the VLM's alignment data and the 2D baselines were trained on; the encoder "
         f"was fine-tuned at 0.3 cm and has a second row there); no training command reads "
         f"that split. Classes: " + ", ".join(f"{c} {n}" for c, n in meta["class_counts"].items())
         + ". Anchor: Sagar et al., arXiv 2509.08461 (LLaMA 3.2 Vision 11B + QLoRA on 512x512 "
         "XZ/YZ maps: accuracy 0.87, AUC 0.96, 3.3 s and 13-25 GB per sample).", "",
         "## Table 1: held-out events at the training voxel size", "",
         "| model | accuracy | precision | recall | AUC-ROC | trainable params | peak memory (GB) "
         "| ms / event (median, p90) |", "|---|---|---|---|---|---|---|---|"]
    for n, r in t1.items():
        s = speed.get(n, {})
        L.append(f"| {LABELS[n]} | {fmt(r['accuracy'])} | {fmt(r['precision'])} | "
                 f"{fmt(r['recall'])} | {fmt(r['auc'])} | {clfs[n]['trainable'] / 1e6:.2f} M | "
                 f"{fmt(s.get('peak_rss_gb'), 2)} | {fmt(s.get('ms_median'), 0)}, "
                 f"{fmt(s.get('ms_p90'), 0)} |")
    L += ["", "Precision and recall are macro averages over the three classes; AUC-ROC is the "
          "macro one-vs-rest AUC of the class probabilities. Memory is the peak resident size of "
          "a fresh process that loads the model and classifies events one at a time (it includes "
          "Python and torch, about 0.4 GB before any weights); ms / event is from an in-memory "
          f"event to probabilities, batch 1, {meta['threads']} torch threads.", ""]
    for n, c in clfs.items():
        if c["note"]:
            L.append(f"- {n}: {c['note']}")
    L += ["", "![confusion matrices](classification/confusion.png)", "",
          "![ROC curves](classification/roc.png)", "",
          "Per class (recall / precision / share of predictions):", "",
          "| model | " + " | ".join(meta["classes"]) + " |", "|---|" + "---|" * len(meta["classes"])]
    for n, r in t1.items():
        L.append(f"| {n} | " + " | ".join(
            f"{pc['recall']:.2f} / {pc['precision']:.2f} / {pc['predicted_share']:.2f}"
            for pc in r["per_class"].values()) + " |")
    L += ["", "## Table 2: the same events on a 2x coarser voxel grid, no retraining", "",
          "| model | accuracy | precision | recall | AUC-ROC | accuracy change |",
          "|---|---|---|---|---|---|"]
    for n, r in t2.items():
        L.append(f"| {LABELS[n]} | {fmt(r['accuracy'])} | {fmt(r['precision'])} | "
                 f"{fmt(r['recall'])} | {fmt(r['auc'])} | {r['accuracy'] - t1[n]['accuracy']:+.3f} |")
    L += ["", f"Each event is re-voxelised (`events.projections.coarsen(event, 2)`: "
          f"{2 * TEST_VOXEL_CM:.1f} cm voxels, "
          "energy summed) and given to the unchanged weights (the zero-shot row is left out: no "
          "event information reaches it). In the paper the CNN fell to "
          "0.43-0.49 at half resolution while the VLM held 0.85.", "",
          "![coarse confusion matrices](classification/confusion_coarse.png)", "",
          "## Prompt ablation: physics definitions in the system prompt", "",
          "| prompt | accuracy | precision | recall | AUC-ROC |", "|---|---|---|---|---|"]
    for n, r in ablation.items():
        L.append(f"| {LABELS[n]} | {fmt(r['accuracy'])} | {fmt(r['precision'])} | "
                 f"{fmt(r['recall'])} | {fmt(r['auc'])} |")
    L += ["", meta["ablation_note"], "", "## Targets", "", "| target | measured | met |",
          "|---|---|---|"]
    for t in targets:
        L.append(f"| {t['what']} | {t['measured']} | {'yes' if t['met'] else 'no'} |")
    L += ["", "## Reading the numbers", ""] + meta["discussion"]
    return "\n".join(L) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m larsight.evals.classification_report",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-events", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="data seed (the eval split of it)")
    ap.add_argument("--vlm", default=str(REPO / "checkpoints" / "vlm_smollm2"))
    ap.add_argument("--encoder", default=None, help="encoder checkpoint (default: shipped)")
    ap.add_argument("--cnn", default=str(REPO / "runs" / "baseline_cnn"))
    ap.add_argument("--vit", default=str(REPO / "runs" / "baseline_vit"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-speed", type=int, default=40, help="events timed per model")
    ap.add_argument("--batch", type=int, default=16, help="events per call for the accuracy pass")
    ap.add_argument("--work", default=str(DEFAULT_WORK), help="prediction cache")
    ap.add_argument("--out", default=str(OUT), help="report stem (writes STEM.md, STEM.json, STEM/)")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = build_parser().parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args)))
        return Path()

    t_start = time.time()
    torch.set_num_threads(args.threads)
    work, stem = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    (stem.parent / stem.name).mkdir(parents=True, exist_ok=True)
    ensure_models(args)
    command = "python -m larsight.evals.classification_report" + (
        f" --n-events {args.n_events}" if args.n_events != 2000 else "")
    machine_info = machine()
    events = test_events(args.n_events, args.seed)
    y = truth_labels(events)
    print(f"test set: {len(events)} events, classes {np.bincount(y, minlength=3).tolist()}")

    t1, t2, ablation, probs1, clfs = accuracy_tables(args, events, y, work)
    native_row(args, work, t1, clfs)
    ablation, vlm_physics = prompt_ablation(args, events, y, work, t1, ablation, clfs)
    speed = {}
    for name in MODELS:
        print(f"speed / memory probe: {name}")
        speed[name] = run_probe(name, args)

    plot_confusions(t1, list(t1), stem / "confusion.png", "held-out events, training voxel size")
    plot_confusions(t2, list(t2), stem / "confusion_coarse.png", "the same events, 2x coarser voxels")
    plot_rocs(y, probs1, stem / "roc.png", "one-vs-rest ROC, held-out events (AUC in brackets)")

    targets = check_targets(t1, speed)
    meta = {"command": command, "commit": git_commit(), "machine": machine_info,
            "n_events": len(events), "seed": args.seed, "sim_seed": 1000 * args.seed + 2,
            "classes": list(EVENT_CLASSES), "threads": args.threads,
            "class_counts": {c: int(n) for c, n in zip(EVENT_CLASSES, np.bincount(y, minlength=3))},
            "vlm": rel(args.vlm), "vlm_manifest": json.loads((Path(args.vlm) / "vlm.json").read_text()),
            "baseline_commands": {k: " ".join(c[1:]) + f" --run-dir {rel(getattr(args, k))}"
                                  for k, c in BASELINE_COMMANDS.items()},
            "ablation_note": ("The VLM was trained with the bare prompt (the physics definitions cost "
                              "108 prompt tokens per training step on a CPU), so the ablation adds the "
                              "definitions at inference to a model that never saw them."
                              if not vlm_physics else
                              "The VLM was trained with the physics definitions; the ablation removes "
                              "them at inference."),
            "discussion": discussion(t1, t2, ablation, speed), "paper": PAPER}
    meta["minutes"] = (time.time() - t_start) / 60
    result = {"meta": meta, "table1": t1, "table2": t2, "prompt_ablation": ablation,
              "speed_memory": speed, "models": clfs, "targets": targets}
    write_json(stem.with_suffix(".json"), result)
    with atomic_open(stem.with_suffix(".md"), "w") as fh:
        fh.write(markdown(meta, t1, t2, ablation, speed, clfs, targets))
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')} "
          f"({meta['minutes']:.0f} min)")
    return stem.with_suffix(".md")


def ensure_models(args) -> None:
    """Train the 2D baselines that are missing; refuse a VLM folder without a trained VLM."""
    for kind in ("cnn", "vit"):
        run = Path(getattr(args, kind))
        if not (run / "model.safetensors").exists():
            print(f"training the {kind} baseline into {run} (not found)")
            subprocess.run(BASELINE_COMMANDS[kind] + ["--run-dir", str(run)], cwd=REPO, check=True)
    if not (Path(args.vlm) / "vlm.json").exists():
        raise FileNotFoundError(f"--vlm {args.vlm}: no trained VLM there (see checkpoints/README.md)")


def _model_row(clf: Classifier) -> dict:
    return {"trainable": clf.trainable, "note": clf.note, "fingerprint": clf.fingerprint,
            "files": [rel(f) for f in clf.files]}


def accuracy_tables(args, events, y: np.ndarray, work: Path) -> tuple[dict, dict, dict, dict, dict]:
    """Table 1 (the test events), Table 2 (the same events on 2x coarser voxels), the
    physics-prompt row of the ablation, the Table 1 probabilities and each model's row."""
    coarse = test_events(args.n_events, args.seed, voxel_scale=2)
    t1, t2, ablation, probs1, probs2, clfs = {}, {}, {}, {}, {}, {}
    for name in MODELS + ("vlm_physics",):
        clf = build(name, args)
        clfs[name] = _model_row(clf)
        p = cached_predictions(clf, events, f"x1_n{args.n_events}_s{args.seed}", work, args.batch)
        if name == "vlm_physics":
            ablation[name] = metrics(y, p)
        else:
            probs1[name] = p
            t1[name] = metrics(y, p)
            if name != "zero_shot":  # no event information reaches it: coarser voxels are moot
                p2 = cached_predictions(clf, coarse, f"x2_n{args.n_events}_s{args.seed}", work,
                                        args.batch)
                probs2[name] = p2
                t2[name] = metrics(y, p2)
        del clf
    return t1, t2, ablation, probs1, clfs


def native_row(args, work: Path, t1: dict, clfs: dict) -> None:
    """Table 1's extra row: the encoder head on events simulated on its own 0.3 cm grid."""
    # the encoder head on the same interactions simulated on its own 0.3 cm training grid
    # (the simulator's random stream depends on the grid, so these are other interactions of
    # the same split and seed, with their own truth)
    native = test_events(args.n_events, args.seed, voxel_size_cm=0.3)
    clf = build("encoder_head", args)
    p03 = cached_predictions(clf, native, f"g03_n{args.n_events}_s{args.seed}", work, args.batch)
    t1["encoder_head_03"] = metrics(truth_labels(native), p03)
    clfs["encoder_head_03"] = dict(clfs["encoder_head"], note=(
        f"the same encoder head on {len(native)} eval-split events simulated on 0.3 cm voxels, its "
        "training grid (same split and seed; other interactions, since the simulator's random "
        "stream depends on the grid)"))


def prompt_ablation(args, events, y: np.ndarray, work: Path, t1: dict, ablation: dict,
                    clfs: dict) -> tuple[dict, bool]:
    """The VLM with and without the physics definitions in its prompt (the trained prompt's
    row is Table 1's); returns the ablation rows and whether the VLM was trained with them."""
    vlm_physics = json.loads((Path(args.vlm) / "vlm.json").read_text()).get("physics_prompt", True)
    trained = "vlm_physics" if vlm_physics else "vlm_bare"
    ablation = {trained: t1["vlm"], **({"vlm_physics": ablation["vlm_physics"]} if not vlm_physics
                                      else {})}
    if vlm_physics:  # trained with the definitions: the ablation removes them
        clf = build("vlm_bare", args)
        ablation["vlm_bare"] = metrics(y, cached_predictions(
            clf, events, f"x1_n{args.n_events}_s{args.seed}", work, args.batch))
        clfs["vlm_bare"] = dict(_model_row(clf), note="")
    clfs.pop("vlm_physics", None)
    return ablation, vlm_physics


def check_targets(t1: dict, speed: dict) -> list[dict]:
    v = t1["vlm"]
    best2d = max(t1["cnn"]["accuracy"], t1["vit"]["accuracy"])
    targets = [
        {"what": "VLM accuracy >= 0.90", "measured": f"{v['accuracy']:.3f}",
         "met": v["accuracy"] >= TARGETS["vlm_accuracy"]},
        {"what": "VLM accuracy above the best 2D baseline", "measured":
         f"{v['accuracy']:.3f} vs {best2d:.3f}", "met": v["accuracy"] > best2d},
        {"what": "<= 100 ms per event (this CPU)", "measured": f"{speed['vlm']['ms_median']:.0f} ms",
         "met": speed["vlm"]["ms_median"] <= TARGETS["vlm_ms_per_event"]},
        {"what": "peak memory <= 2.5 GB", "measured": f"{speed['vlm']['peak_rss_gb']:.2f} GB",
         "met": speed["vlm"]["peak_rss_gb"] <= TARGETS["vlm_peak_memory_gb"]}]
    return targets


def discussion(t1: dict, t2: dict, ablation: dict, speed: dict) -> list[str]:
    """Sentences computed from the numbers (so they cannot drift from the tables)."""
    v, e = t1["vlm"], t1["encoder_head"]
    e03 = t1.get("encoder_head_03", {}).get("accuracy", float("nan"))
    out = [f"- The VLM reaches {v['accuracy']:.3f} against {e['accuracy']:.3f} for the encoder's "
           f"own event head on the same 0.6 cm events; that head was fine-tuned at 0.3 cm and "
           f"reaches {e03:.3f} on its own grid, while the VLM was aligned on the frozen encoder's "
           f"tokens of 0.6 cm events. The VLM's misses are mostly NC events called CC "
           f"(NC recall {v['per_class']['nc']['recall']:.2f}): NC is the smallest class and the "
           f"one the 1,200 classification examples of stage 2 taught least.",
           f"- 2D baselines on the same events: CNN {t1['cnn']['accuracy']:.3f}, ViT "
           f"{t1['vit']['accuracy']:.3f}. Coarser voxels move them by "
           f"{t2['cnn']['accuracy'] - t1['cnn']['accuracy']:+.3f} / "
           f"{t2['vit']['accuracy'] - t1['vit']['accuracy']:+.3f}, the VLM by "
           f"{t2['vlm']['accuracy'] - v['accuracy']:+.3f} and the encoder head by "
           f"{t2['encoder_head']['accuracy'] - e['accuracy']:+.3f}. The maps are 128 px over "
           f"the 230 cm detector (1.8 cm pixels), coarser than even the 1.2 cm voxels, so the 2D "
           f"models see nearly the same images; the point models see every voxel and were never "
           f"shown a 1.2 cm grid. The paper's CNN collapse happened at 512 px, where a pixel is "
           f"finer than the coarse voxels.",
           f"- Zero-shot SmolLM2 predicts " + ", ".join(
               f"{c} {pc['predicted_share']:.0%}" for c, pc in t1["zero_shot"]["per_class"].items())
           + f" (accuracy {t1['zero_shot']['accuracy']:.3f}): without alignment the event slots "
           "carry nothing it can use, as the paper's zero-shot VLM answered nu_e CC for everything.",
           f"- Speed: {speed['vlm']['ms_median']:.0f} ms per event for the VLM (an encoder pass, "
           f"16 queries, then one forward of the question and a 7-token tree of the class texts, "
           f"~53 tokens after a cached system prefix, through a 135 M-parameter LM) vs "
           f"{speed['encoder_head']['ms_median']:.0f} ms for the encoder head alone; the "
           f"paper's 11B VLM needed 3.3 s and 13-25 GB per sample on a GPU. The probes ran "
           f"while other jobs shared the 2 cores (load average "
           f"{speed['vlm'].get('load_avg', float('nan')):.1f} during the VLM probe), so "
           f"these times are upper bounds for an idle machine."]
    return out


if __name__ == "__main__":
    main()
