"""Metrics of the encoder's task heads (``larsight eval encoder``).

Metric functions (numpy, hand-checkable):

- ``confusion_matrix`` / ``f1_scores``: per-class precision, recall, F1 and macro-F1 (mean over
  the classes present in the truth);
- ``adjusted_rand_index`` (Hubert & Arabie), ``purity_efficiency`` (SPINE convention: mean
  over predicted clusters of the largest true share; mean over true clusters of the largest
  share recovered by one predicted cluster);
- ``distance_stats``: mean / median / 68 % / 90 % of vertex distances and the fractions
  within 1 and 3 cm.

``evaluate(encoder, heads, events)`` runs heads over held-out events and returns, per task,
a dict of numbers (and confusion matrices as lists). ``evaluate_checkpoint`` does it for a
checkpoint on simulated events (the ``eval`` split, never used in training) or files
(PILArNet-M .h5 or .root), and writes ``metrics.json``, ``report.md`` and confusion-matrix
plots.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from larsight.events.model import EVENT_CLASSES, PID_CLASSES, SEMANTIC_CLASSES

from .checkpoint import load_weights
from .data import DataSpec, encoder_inputs, make_batch, take
from .heads import DEFAULT_DATA_MODE

CLASS_NAMES = {"semantic": SEMANTIC_CLASSES, "pid": PID_CLASSES, "event": EVENT_CLASSES}


# ============================================================================ metric functions
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n) counts, rows = truth, columns = prediction; entries with truth < 0 are ignored."""
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    ok = (t >= 0) & (t < n_classes)
    return np.bincount(t[ok] * n_classes + p[ok], minlength=n_classes ** 2).reshape(n_classes, n_classes)


def f1_scores(cm: np.ndarray) -> dict[str, Any]:
    """Per-class precision / recall / F1 (NaN where undefined) and macro-F1 over classes
    with true support (a class that never occurs does not count)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
    present = support > 0
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int),
            "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
            "accuracy": float(tp.sum() / cm.sum()) if cm.sum() else float("nan")}


def _comb2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x * (x - 1) / 2


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    ia, ib = ia.ravel(), ib.ravel()
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def adjusted_rand_index(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Adjusted Rand index of two labellings of the same points (1 = identical partitions)."""
    a, b = np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()
    if a.shape != b.shape:
        raise ValueError(f"adjusted_rand_index: {a.shape} vs {b.shape} labels")
    n = a.size
    if n < 2:
        return 1.0
    table = _contingency(a, b)
    index = _comb2(table).sum()
    sum_a, sum_b = _comb2(table.sum(1)).sum(), _comb2(table.sum(0)).sum()
    expected = sum_a * sum_b / _comb2(n)
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:  # both trivial (one cluster each, or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))


def purity_efficiency(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float]:
    """(mean purity over predicted clusters, mean efficiency over true clusters)."""
    table = _contingency(np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel())
    purity = (table.max(0) / table.sum(0)).mean()
    efficiency = (table.max(1) / table.sum(1)).mean()
    return float(purity), float(efficiency)


def distance_stats(d: np.ndarray) -> dict[str, float]:
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n": 0}
    return {"n": int(d.size), "mean_cm": float(d.mean()), "median_cm": float(np.median(d)),
            "p68_cm": float(np.percentile(d, 68)), "p90_cm": float(np.percentile(d, 90)),
            "frac_within_1cm": float((d < 1).mean()), "frac_within_3cm": float((d < 3).mean())}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]
                           ) -> dict[str, Any]:
    cm = confusion_matrix(y_true, y_pred, len(names))
    f = f1_scores(cm)
    return {"macro_f1": f["macro_f1"], "accuracy": f["accuracy"],
            "f1": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, f["f1"])},
            "precision": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, f["precision"])},
            "recall": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, f["recall"])},
            "support": {n: int(s) for n, s in zip(names, f["support"])},
            "confusion": cm.tolist(), "classes": list(names)}


def grouping_metrics(truth: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per-event ARI / purity / efficiency (points with truth < 0 ignored), averaged."""
    ari, pur, eff = [], [], []
    for t, p in zip(truth, pred):
        ok = t >= 0
        if ok.sum() < 2:
            continue
        ari.append(adjusted_rand_index(t[ok], p[ok]))
        pu, ef = purity_efficiency(t[ok], p[ok])
        pur.append(pu), eff.append(ef)
    mean = lambda x: float(np.mean(x)) if x else float("nan")  # noqa: E731
    return {"ari": mean(ari), "purity": mean(pur), "efficiency": mean(eff),
            "ari_median": float(np.median(ari)) if ari else float("nan"), "n_events": len(ari)}


# ============================================================================ running heads
def evaluate(encoder, heads: Mapping[str, Any], events, device=None, batch_size: int = 8,
             progress: bool = True) -> dict[str, dict[str, Any]]:
    """Metrics of every head in ``heads`` (task -> head) over ``events`` (with truth)."""
    events = [e for e in events if len(e) > 0]
    encoder.eval()
    for h in heads.values():
        h.eval()
    acc: dict[str, dict[str, list]] = {t: {"true": [], "pred": [], "extra": []} for t in heads}
    it = range(0, len(events), batch_size)
    for i in tqdm(it, desc="evaluate", unit="batch", disable=not progress, leave=False):
        chunk = events[i:i + batch_size]
        batch = make_batch(chunk, encoder.config, device=device)
        with torch.no_grad():
            out = encoder(encoder_inputs(batch))
            for task, head in heads.items():
                dec = head.decode(head(out, batch), batch)
                a = acc[task]
                splits = batch["offset"][:-1].cpu()
                if task in ("semantic", "pid", "particle", "interaction"):
                    truth = torch.tensor_split(batch[task].cpu(), splits)
                    pred = torch.tensor_split(dec[task].cpu(), splits)
                    a["true"] += [t.numpy() for t in truth]
                    a["pred"] += [p.numpy() for p in pred]
                    if task == "pid" and "pid_instance" in dec:
                        a["extra"] += [p.numpy() for p in torch.tensor_split(dec["pid_instance"].cpu(), splits)]
                elif task == "vertex":
                    a["true"].append(batch["vertex"].cpu().numpy())
                    a["pred"].append(dec["vertex"].cpu().numpy())
                elif task == "event":
                    a["true"].append(batch["event_class"].cpu().numpy())
                    a["pred"].append(dec["event_class"].cpu().numpy())
    results: dict[str, dict[str, Any]] = {}
    for task, a in acc.items():
        if task in ("semantic", "pid"):
            t, p = np.concatenate(a["true"]), np.concatenate(a["pred"])
            r = classification_metrics(t, p, CLASS_NAMES[task])
            if task == "pid" and a["extra"]:
                r["instance_vote_accuracy"] = float(np.mean(np.concatenate(a["extra"])[t >= 0] == t[t >= 0]))
            results[task] = r
        elif task in ("particle", "interaction"):
            results[task] = grouping_metrics(a["true"], a["pred"])
        elif task == "vertex":
            t, p = np.concatenate(a["true"]), np.concatenate(a["pred"])
            ok = np.isfinite(t).all(1)
            r = distance_stats(np.linalg.norm(p[ok] - t[ok], axis=1))
            r["resolution_xyz_cm"] = (np.std(p[ok] - t[ok], axis=0).tolist() if ok.any() else None)
            results[task] = r
        elif task == "event":
            t, p = np.concatenate(a["true"]), np.concatenate(a["pred"])
            results[task] = classification_metrics(t, p, EVENT_CLASSES)
    return results


# ============================================================================ reports
def _plot_confusion(cm: np.ndarray, names: Sequence[str], title: str, path: Path) -> None:
    # matplotlib (about a second to import) only when a report draws its plots
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center",
                    fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else \
        (f"{v:.3f}" if isinstance(v, float) else str(v))


def write_report(results: Mapping[str, Mapping[str, Any]], out_dir: str | Path,
                 header: Optional[Mapping[str, Any]] = None) -> Path:
    """``metrics.json``, ``report.md`` and ``confusion_<task>.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**dict(header or {}), "results": results},
                                                 indent=2, default=str) + "\n")
    lines = ["# Encoder evaluation", ""]
    for k, v in (header or {}).items():
        lines.append(f"- **{k}**: {v}")
    for task, r in results.items():
        lines += ["", f"## {task}", ""]
        if "confusion" in r:
            names = r["classes"]
            lines += [f"macro-F1 **{_fmt(r['macro_f1'])}**, accuracy {_fmt(r['accuracy'])}", "",
                      "| class | support | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
            lines += [f"| {n} | {r['support'][n]} | {_fmt(r['precision'][n])} | "
                      f"{_fmt(r['recall'][n])} | {_fmt(r['f1'][n])} |" for n in names]
            _plot_confusion(np.array(r["confusion"]), names, f"{task} (row-normalised)",
                            out / f"confusion_{task}.png")
            lines += ["", f"![confusion](confusion_{task}.png)"]
        else:
            lines += ["| metric | value |", "|---|---:|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in r.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def evaluate_on_split(encoder, heads: Mapping[str, Any], *, n: int = 200, seed: int = 0,
                      data_mode: Optional[str] = None, files: Sequence[str] = (),
                      device=None, progress: bool = True, split: str = "eval"
                      ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Metrics of ``heads`` on ``n`` held-out events per data group.

    Without ``data_mode`` / ``files`` each head is evaluated on its task's default simulator
    mode (``encoder.heads.DEFAULT_DATA_MODE``: 'nu', 'mpr' for interaction grouping), so a
    multi-task checkpoint is scored like its single-task counterparts. Returns
    (results per task, one description per data group).
    """
    groups: dict[str, list[str]] = {}
    for task in heads:
        mode = data_mode or (DEFAULT_DATA_MODE[next(iter(heads))] if files else DEFAULT_DATA_MODE[task])
        groups.setdefault(mode, []).append(task)
    cfg = encoder.config
    results: dict[str, dict[str, Any]] = {}
    data: list[dict[str, Any]] = []
    for mode, tasks in groups.items():
        spec = DataSpec(modes=mode, seed=seed, voxel_size_cm=cfg.voxel_size_cm, files=tuple(files))
        evs = take(spec, split, n)
        results.update(evaluate(encoder, {t: heads[t] for t in tasks}, evs, device=device,
                                progress=progress))
        data.append({"modes": mode, "tasks": tasks, "events": len(evs),
                     "description": "files " + ", ".join(map(str, files)) if files else
                     f"simulated {mode}, {split} split of seed {seed} at {cfg.voxel_size_cm} cm"})
    return {t: results[t] for t in heads}, data


def evaluate_checkpoint(checkpoint: str | Path, *, tasks: Optional[Sequence[str]] = None,
                        n: int = 200, seed: int = 0, data_mode: Optional[str] = None,
                        files: Sequence[str] = (), out_dir: Optional[str | Path] = None,
                        device=None, progress: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint's heads on held-out simulated events or on files
    (``n`` events per data group; see ``evaluate_on_split``)."""
    loaded = load_weights(checkpoint)
    heads = loaded.heads
    if tasks:
        missing = [t for t in tasks if t not in heads]
        if missing:
            raise ValueError(f"{checkpoint} has no head for {missing} (it has {sorted(heads) or 'none'}); "
                             f"train one with `larsight finetune --task ...`")
        heads = {t: heads[t] for t in tasks}
    if not heads:
        raise ValueError(f"{checkpoint} has no task heads; train one with `larsight finetune`")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded.encoder.to(device)
    for h in heads.values():
        h.to(device)
    results, groups = evaluate_on_split(loaded.encoder, heads, n=n, seed=seed, data_mode=data_mode,
                                        files=files, device=device, progress=progress)
    header = {"checkpoint": str(checkpoint), "events": sum(g["events"] for g in groups),
              "data": "; ".join(g["description"] + (f" ({', '.join(g['tasks'])})" if len(groups) > 1
                                                      else "") for g in groups)}
    out = Path(out_dir) if out_dir else Path(checkpoint).with_suffix("").parent / "eval"
    write_report(results, out, header)
    return {"out_dir": str(out), **header, "results": results}
