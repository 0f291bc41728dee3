"""What every training loop of larsight shares (encoder pretraining and fine-tuning, the VLM
alignment, the baselines): the loss log (``loss.csv`` / ``loss.png``), the warmup + cosine
learning rate, AdamW parameter groups, the command line recorded in manifests, and a
resumable position in an event stream."""
from __future__ import annotations

import csv
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from torch import Tensor, nn

__all__ = ["LossLog", "lr_at", "param_groups", "command_line", "positioned", "to_device_nested"]


class LossLog:
    """``loss.csv`` (one row per logged step) and ``loss.png`` in a run folder."""

    def __init__(self, folder: str | Path, resume_step: Optional[int] = None, title: str = ""):
        self.path = Path(folder) / "loss.csv"
        self.title = title
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and self.path.exists():
            with open(self.path) as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            self._rewrite()

    def _rewrite(self) -> None:
        if not self.rows:
            self.path.unlink(missing_ok=True)
            return
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)

    def add(self, **row: Any) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        new_keys = self.rows and set(row) - set(self.rows[0])
        self.rows.append(row)
        if new_keys or len(self.rows) == 1:
            self._rewrite()
        else:
            keys = list(self.rows[0])
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=keys, extrasaction="ignore").writerow(row)

    def plot(self, keys: Sequence[str] = ("loss",)) -> Optional[Path]:
        if not self.rows:
            return None
        # matplotlib (about a second to import) only when a run draws its curve
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        steps = [int(r["step"]) for r in self.rows]
        for k in keys:
            if k in self.rows[0]:
                ax.plot(steps, [float(r[k]) for r in self.rows], label=k)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        out = self.path.with_suffix(".png")
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def lr_at(step: int, cfg) -> float:
    """Linear warmup, then cosine decay to ``min_lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and prototypes (1-D or named 'prototypes')."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "prototypes" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def command_line() -> str:
    return "larsight " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def positioned(stream, start: int, min_points: int):
    """(position after the event, event) for events with at least ``min_points`` points;
    the position is what ``--resume`` restarts the stream from."""
    pos = start
    for ev in stream:
        pos += 1
        if len(ev) >= min_points:
            yield pos, ev


def to_device_nested(obj: Any, device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device_nested(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device_nested(v, device) for v in obj)
    return obj
