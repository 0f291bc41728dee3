"""Options of ``larsight finetune`` (``FinetuneConfig``) and the parsing of its task lists."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from .heads import TASKS

LOSSES = ("balanced", "focal", "ce")
"""Classification losses: class-balanced cross-entropy (inverse square-root frequency weights,
from the shard manifest's label counts with ``--data``), focal (``focal_gamma``, no weights),
plain cross-entropy."""

DEFAULT_TASK_WEIGHTS = {"semantic": 1.0, "pid": 0.5, "particle": 0.5, "interaction": 0.5,
                        "vertex": 2.0, "event": 0.5}
"""Loss weights of multi-task fine-tuning (a single task always has weight 1 unless given).
The vertex loss is a smooth-L1 in units of 50 cm, so it is small and weighted up; the
grouping losses start large (push term ~ (2 delta_d)^2) and are weighted down."""


def parse_tasks(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"semantic"``, ``"semantic,vertex"``, ``"all"`` or a sequence -> a tuple of tasks
    (validated, duplicates dropped, order kept)."""
    items = ([t.strip() for t in value.split(",")] if isinstance(value, str)
             else [str(t).strip() for t in value])
    items = [t for t in items if t]
    if any(t == "all" for t in items):
        if len(items) > 1:
            raise ValueError(f"--task 'all' cannot be combined with other tasks, got {items}")
        return TASKS
    bad = [t for t in items if t not in TASKS]
    if bad or not items:
        raise ValueError(f"--task must be one of {TASKS}, a comma list of them, or 'all'; "
                         f"got {value!r}")
    return tuple(dict.fromkeys(items))


def parse_task_weights(value: str | Mapping[str, float] | None) -> Optional[dict[str, float]]:
    """``"semantic=1,vertex=2"`` (or a mapping) -> {task: weight}."""
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for item in str(value).split(","):
            if not item.strip():
                continue
            if "=" not in item:
                raise ValueError(f"--task-weights: expected TASK=WEIGHT items, got {item!r}")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v))
    out = {}
    for k, v in pairs:
        if k not in TASKS:
            raise ValueError(f"--task-weights: unknown task {k!r}; choose from {TASKS}")
        try:
            w = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"--task-weights: weight of {k!r} must be a number, got {v!r}") from None
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"--task-weights: weight of {k!r} must be >= 0, got {w}")
        out[k] = w
    return out


@dataclass
class FinetuneConfig:
    task: str = "semantic"
    """One task, a comma list of tasks, or 'all' (normalised to the comma list)."""
    mode: str = "probe"
    """'probe' (frozen encoder) or 'full'."""
    init: str = "scratch"
    """Path of pretrained weights, or 'scratch'."""
    preset: str = "tiny"
    """Encoder preset when ``init`` is 'scratch'."""
    head: Optional[str] = None
    """'linear' or 'mlp'; default linear for probes, mlp for full fine-tuning."""
    n_events: Optional[int] = 100
    """Fine-tuning set size (per data group); None = stream fresh events (simulated data only)."""
    steps: int = 300
    batch_size: int = 8
    lr: float = 3e-3
    min_lr: float = 1e-5
    warmup: int = 20
    weight_decay: float = 0.01
    encoder_lr_scale: float = 0.1
    grad_clip: float = 1.0
    data_mode: Optional[str] = None
    seed: int = 0
    voxel_size_cm: Optional[float] = None
    files: tuple[str, ...] = ()
    eval_files: tuple[str, ...] = ()
    n_eval: int = 200
    """Held-out events evaluated at the end (per data group)."""
    run_dir: Optional[str] = None
    """Default: ``<runs root>/finetune-<name or UTC time>`` (``encoder.training.resolve_run_dir``)."""
    name: Optional[str] = None
    data: Optional[str] = None
    """A shard folder (``larsight shards``) to fine-tune on instead of simulating / ``files``."""
    workers: int = 2
    """DataLoader worker processes reading shards (with ``data`` and ``n_events`` all)."""
    loss: str = "balanced"
    """Classification loss of the semantic / pid / event heads: one of ``LOSSES``."""
    focal_gamma: float = 2.0
    time_limit_min: Optional[float] = None
    """Stop (with a checkpoint) after this many minutes of training."""
    ckpt_every: int = 100
    resume: bool = False
    stop_at: Optional[int] = None
    """Stop (with a checkpoint) at this step; the schedule still runs to ``steps``."""
    log_every: int = 10
    encoder_overrides: Optional[dict] = None
    task_weights: Optional[dict] = None
    """Loss weight per task (multi-task); missing tasks get ``DEFAULT_TASK_WEIGHTS``."""

    def __post_init__(self) -> None:
        tasks = parse_tasks(self.task)
        self.task = ",".join(tasks)
        if self.mode not in ("probe", "full"):
            raise ValueError(f"--mode must be 'probe' or 'full', got {self.mode!r}")
        if self.n_events is not None and self.n_events < 1:
            raise ValueError("--n-events must be >= 1 or 'all'")
        if self.n_events is None and self.files:
            raise ValueError("--n-events all streams simulated events or --data shards; give a "
                             "number with --files")
        if self.data and self.files:
            raise ValueError("give either --data (a shard folder) or --files, not both")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        if not (self.focal_gamma >= 0):
            raise ValueError(f"--focal-gamma must be >= 0, got {self.focal_gamma}")
        self.files, self.eval_files = tuple(self.files), tuple(self.eval_files)
        self.task_weights = parse_task_weights(self.task_weights)
        extra = sorted(set(self.task_weights or {}) - set(tasks))
        if extra:
            raise ValueError(f"--task-weights names {extra}, which are not trained (--task {self.task})")

    @property
    def tasks(self) -> tuple[str, ...]:
        return parse_tasks(self.task)

    @property
    def multi(self) -> bool:
        return len(self.tasks) > 1

    def weights(self) -> dict[str, float]:
        """The loss weight of every trained task."""
        given = self.task_weights or {}
        if not self.multi:
            return {t: float(given.get(t, 1.0)) for t in self.tasks}
        return {t: float(given.get(t, DEFAULT_TASK_WEIGHTS[t])) for t in self.tasks}
