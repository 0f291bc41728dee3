"""What every training loop of larsight shares (encoder pretraining and fine-tuning, the VLM
alignment, the baselines): the loss log (``loss.csv`` / ``loss.png``), the warmup + cosine
learning rate, AdamW parameter groups, the command line recorded in manifests, and a
resumable position in an event stream."""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = ["LossLog", "lr_at", "param_groups", "command_line", "positioned", "to_device_nested",
           "runs_root", "resolve_run_dir", "check_resume_config", "StopRequest", "log_checkpoint",
           "ResumeMismatch"]

RUNS_ENV = "LARSIGHT_RUNS"
"""Environment variable naming the folder run folders go under (default ~/.cache/larsight/runs)."""


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


# ============================================================================ run folders
def runs_root() -> Path:
    """Where run folders live: ``$LARSIGHT_RUNS``, else ``~/.cache/larsight/runs`` (outside the
    work tree, so hours-long runs never land in a checkout)."""
    env = os.environ.get(RUNS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "larsight" / "runs"


def resolve_run_dir(command: str, run_dir: Optional[str] = None, name: Optional[str] = None,
                    resume: bool = False) -> Path:
    """The run folder of ``command``: ``run_dir`` when given, else ``<runs_root>/<command>-<name>``;
    without a name a new ``<command>-<UTC timestamp>`` folder, or with ``resume`` the most
    recently written ``<command>-*`` folder that holds a training state."""
    if run_dir:
        return Path(run_dir).expanduser()
    root = runs_root()
    if name:
        if "/" in name or name in (".", ".."):
            raise ValueError(f"--name must be a plain folder name, got {name!r}")
        return root / f"{command}-{name}"
    if resume:
        runs = [p for p in root.glob(f"{command}-*") if (p / "state" / "state.json").exists()]
        if not runs:
            raise FileNotFoundError(f"--resume: no {command} run with a saved state under {root}; "
                                    f"give --run-dir or --name")
        return max(runs, key=lambda p: (p / "state" / "state.json").stat().st_mtime)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return root / f"{command}-{stamp}"


class ResumeMismatch(ValueError):
    """``--resume`` of a run folder written by another model / config / task / data."""


def check_resume_config(saved: Mapping[str, Any], current: Mapping[str, Any], free: Iterable[str],
                        run: Path) -> None:
    """Raise ``ResumeMismatch`` naming the first settings that differ between the run folder's
    saved config and this command's (``free`` fields may change between invocations)."""
    free = set(free)
    norm = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731 - as saved (no tuples)
    diffs = [f"{k}={saved.get(k)!r} there, {norm(v)!r} here" for k, v in current.items()
             if k not in free and k in saved and norm(saved.get(k)) != norm(v)]
    if diffs:
        more = f" (and {len(diffs) - 2} more)" if len(diffs) > 2 else ""
        raise ResumeMismatch(f"--resume: {run} was trained with other settings: "
                             f"{'; '.join(diffs[:2])}{more}; give a new --run-dir")


def log_checkpoint(run: Path, step: int, rank: int, files: Sequence[str]) -> None:
    """One line per checkpoint write in ``run/checkpoints.log`` (step, time, writing rank)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with open(Path(run) / "checkpoints.log", "a") as f:
        f.write(f"step={step} rank={rank} time={stamp} files={','.join(files)}\n")


class StopRequest:
    """When a training loop should stop with a checkpoint: after ``time_limit_min`` minutes
    (counted from entering the ``with`` block), or on SIGTERM / SIGINT (finish the step,
    checkpoint, stop; a second signal stops at once). ``requested(accelerator)`` agrees across
    processes; ``reason(accelerator)`` says which of the two it is ('time limit', 'signal') or
    None."""

    def __init__(self, time_limit_min: Optional[float] = None) -> None:
        self.flag = False
        self.time_limit_min = time_limit_min
        self.t_start = time.time()
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.flag:  # second signal: the default behaviour
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.flag = True
        print(f"signal {signum}: stopping after this step (with a checkpoint)", file=sys.stderr)

    def __enter__(self) -> "StopRequest":
        self.t_start = time.time()
        if hasattr(signal, "SIGTERM"):
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals stay as they are
                self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def out_of_time(self) -> bool:
        return self.time_limit_min is not None and (time.time() - self.t_start) / 60 >= self.time_limit_min

    def reason(self, accelerator=None) -> Optional[str]:
        if self.out_of_time():
            return "time limit"
        return "signal" if self.requested(accelerator) else None

    def requested(self, accelerator=None) -> bool:
        if accelerator is None or accelerator.num_processes == 1:
            return self.flag
        t = torch.tensor([1.0 if self.flag else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(t, "sum").item() > 0)
