"""Task heads on the encoder: linear probes and full fine-tuning (``larsight finetune``).

    larsight finetune --task semantic --mode probe --init runs/pretrain/encoder.safetensors \\
        --n-events 100 --steps 300 --run-dir runs/ft_semantic
    larsight finetune --task all --mode full --init runs/pretrain/encoder.safetensors \\
        --n-events all --steps 3000 --run-dir checkpoints/encoder_tiny     # multi-task

``--mode probe``: the encoder is frozen (eval mode, no gradients) and only the head trains;
with a fixed fine-tuning set the encoder's outputs are computed once and cached, so a probe
costs little more than one pass over the set. ``--mode full``: encoder and head train
together (the encoder at ``--encoder-lr-scale`` times the head's learning rate).

``--task``: one task, a comma list (``semantic,particle,vertex,pid,event``) or ``all``
(every task in ``encoder.heads.TASKS``). Several tasks train one encoder with one head each,
jointly: the loss is ``sum_t weight_t * loss_t`` (``--task-weights semantic=1,vertex=2``;
defaults ``DEFAULT_TASK_WEIGHTS``). Tasks whose default simulator mode differs (``interaction``
needs several interactions per event, so ``mpr``) form separate data groups: each step draws
one batch per group and every head sees only its group's events (with ``--data-mode`` or
``--files`` all tasks share one group). One checkpoint holds the encoder and every head.

``--init``: a pretrained ``encoder.safetensors`` (``larsight pretrain``), any larsight
checkpoint with an encoder, or ``scratch`` (random weights: the baseline of the
data-efficiency table). ``--n-events``: size of the fine-tuning set per data group (10, 100,
1000, ... or ``all`` = fresh simulated events every step). Per-class weights (inverse
square-root frequency over the fine-tuning set) balance rare classes (Michel, delta) in the
classification losses.

The fine-tuning set is the ``finetune`` split of the simulator (or ``--files``), the
evaluation set the ``eval`` split (or ``--eval-files``): disjoint from each other and from
pretraining. The run folder gets ``loss.csv`` / ``loss.png`` (per-task losses too),
``metrics.json`` and ``model.safetensors`` + ``model.json`` (encoder + heads, exact command,
data, metrics).
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from .backbone import EncoderOutput, PointEncoder
from .checkpoint import load_weights, save_weights
from .config import EncoderConfig
from .data import DataSpec, encoder_inputs, event_stream, make_batch, take
from .evaluate import evaluate
from .heads import DEFAULT_DATA_MODE, N_CLASSES, TARGET_OF_TASK, TASKS, class_weights, head_for
from .training import LossLog, command_line, lr_at, param_groups

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
    run_dir: str = "runs/finetune"
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
            raise ValueError("--n-events all streams simulated events; give a number with --files")
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


def build_encoder(init: str, preset: str = "tiny", voxel_size_cm: Optional[float] = None,
                  overrides: Optional[dict] = None) -> tuple[PointEncoder, dict]:
    """The encoder to fine-tune: from a checkpoint (its manifest) or freshly initialised."""
    if init == "scratch":
        over = dict(overrides or {})
        if voxel_size_cm is not None:
            over["voxel_size_cm"] = voxel_size_cm
        return PointEncoder(EncoderConfig.preset(preset, **over)), {"init": "scratch"}
    loaded = load_weights(init, load_heads=False)
    if voxel_size_cm is not None and abs(voxel_size_cm - loaded.encoder.config.voxel_size_cm) > 1e-9:
        raise ValueError(f"--voxel-size {voxel_size_cm} differs from the checkpoint's grid "
                         f"({loaded.encoder.config.voxel_size_cm} cm)")
    return loaded.encoder, {"init": str(init), "init_manifest": {
        k: loaded.manifest.get(k) for k in ("objective", "command", "data", "step")}}


class _Cache:
    """Frozen-encoder outputs of a fixed event set, one entry per event."""

    def __init__(self, encoder: PointEncoder, evs, device, batch_size: int = 16):
        self.point, self.pooled = [], []
        encoder.eval()
        with torch.no_grad():
            for i in range(0, len(evs), batch_size):
                chunk = evs[i:i + batch_size]
                b = make_batch(chunk, encoder.config, labels=False, device=device)
                out = encoder(encoder_inputs(b))
                self.point += list(torch.tensor_split(out.point_features, b["offset"][:-1].cpu()))
                self.pooled += list(out.pooled)

    def output(self, idx) -> EncoderOutput:
        pooled = torch.stack([self.pooled[i] for i in idx])
        return EncoderOutput(point_features=torch.cat([self.point[i] for i in idx]),
                             event_tokens=pooled[:, None], event_token_mask=None,
                             event_token_coords=None, pooled=pooled)


@dataclass
class _Group:
    """Tasks that train on one data source (one batch per step)."""

    modes: str
    tasks: list[str]
    spec: DataSpec
    train_events: Optional[list] = None
    stream: Optional[Iterator] = None
    sample: list = field(default_factory=list)
    cache: Optional[_Cache] = None


def data_groups(cfg: FinetuneConfig) -> dict[str, list[str]]:
    """Simulator modes -> the tasks trained on them (one group unless tasks' defaults differ)."""
    if cfg.data_mode or cfg.files:
        return {cfg.data_mode or DEFAULT_DATA_MODE[cfg.tasks[0]]: list(cfg.tasks)}
    groups: dict[str, list[str]] = {}
    for t in cfg.tasks:
        groups.setdefault(DEFAULT_DATA_MODE[t], []).append(t)
    return groups


def _class_weight_kw(task: str, sample, enc_cfg: EncoderConfig) -> dict[str, Any]:
    if task not in N_CLASSES:
        return {}
    target = TARGET_OF_TASK[task]
    if task == "event":
        y = np.array([make_batch([e], enc_cfg)["event_class"][0].item() for e in sample])
    else:
        y = np.concatenate([getattr(e, target) if getattr(e, target) is not None
                            else np.full(len(e), -1) for e in sample])
    return {"class_weight": class_weights(y, N_CLASSES[task]).tolist()}


def _build_groups(cfg: FinetuneConfig, enc_cfg: EncoderConfig, accelerator: Accelerator) -> list[_Group]:
    """The data of each group: a fixed fine-tuning set, or a fresh stream."""
    groups: list[_Group] = []
    for modes, group_tasks in data_groups(cfg).items():
        spec = DataSpec(modes=modes, seed=cfg.seed, voxel_size_cm=enc_cfg.voxel_size_cm,
                        files=cfg.files)
        g = _Group(modes=modes, tasks=group_tasks, spec=spec)
        if cfg.n_events is not None:
            g.train_events = take(spec, "finetune", cfg.n_events)
            if len(g.train_events) < cfg.n_events:
                print(f"finetune: only {len(g.train_events)} events available (asked {cfg.n_events})")
            g.sample = g.train_events
        else:
            g.stream = event_stream(spec, "finetune", rank=accelerator.process_index,
                                    world=accelerator.num_processes)
            g.sample = list(itertools.islice(event_stream(spec, "finetune"), 200))
        groups.append(g)
    return groups


def _build_heads(cfg: FinetuneConfig, groups: list[_Group], enc_cfg: EncoderConfig) -> dict[str, nn.Module]:
    """One head per task, with class weights from its group's fine-tuning set, in --task order."""
    kind = cfg.head or ("linear" if cfg.mode == "probe" else "mlp")
    heads: dict[str, nn.Module] = {}
    for g in groups:
        for t in g.tasks:
            heads[t] = head_for(t, enc_cfg, kind=kind, **_class_weight_kw(t, g.sample, enc_cfg))
    return {t: heads[t] for t in cfg.tasks}


def _optimizer(cfg: FinetuneConfig, encoder: PointEncoder, head_dict: nn.ModuleDict
               ) -> tuple[torch.optim.Optimizer, nn.Module]:
    """AdamW over the heads (and, in full mode, the encoder at ``encoder_lr_scale``); returns
    it with the module whose gradients are clipped."""
    groups_params = param_groups(head_dict, cfg.weight_decay)
    if cfg.mode == "probe":
        encoder.requires_grad_(False).eval()
        trainable: nn.Module = head_dict
    else:
        for pg in param_groups(encoder, cfg.weight_decay):
            pg["lr_scale"] = cfg.encoder_lr_scale
            groups_params.append(pg)
        trainable = nn.ModuleDict({"encoder": encoder, "heads": head_dict})
    return torch.optim.AdamW(groups_params, lr=cfg.lr), trainable


def _group_loss(cfg: FinetuneConfig, g: _Group, encoder: PointEncoder, heads: dict[str, nn.Module],
                trainable: nn.Module, rng: np.random.Generator, device, recent: dict, total):
    """Draw a batch of group ``g``, run the encoder (or read the probe cache) and add each of the
    group's weighted task losses to ``total``."""
    idx = None
    if g.train_events is not None:
        idx = rng.choice(len(g.train_events), size=min(cfg.batch_size, len(g.train_events)),
                         replace=False)
        evs = [g.train_events[i] for i in idx]
    else:
        evs = [next(g.stream) for _ in range(cfg.batch_size)]
    batch = make_batch(evs, encoder.config, device=device)
    if g.cache is not None:
        out = g.cache.output(idx)
    elif cfg.mode == "probe":
        with torch.no_grad():
            out = encoder(encoder_inputs(batch))
    else:
        trainable.train()
        out = encoder(encoder_inputs(batch))
    weights = cfg.weights()
    for t in g.tasks:
        head = heads[t]
        head.train()
        loss_t = head.loss(head(out, batch), batch)
        recent[t].append(loss_t.item())
        term = weights[t] * loss_t
        total = term if total is None else total + term
    return total


def _train(cfg: FinetuneConfig, encoder: PointEncoder, heads: dict[str, nn.Module], groups: list[_Group],
           optimizer: torch.optim.Optimizer, trainable: nn.Module, log: LossLog, device,
           show: bool) -> None:
    tasks = cfg.tasks
    rng = np.random.default_rng([cfg.seed, 11])
    label = cfg.task if not cfg.multi else f"{len(tasks)} tasks"
    pbar = tqdm(range(cfg.steps), desc=f"finetune {label} {cfg.mode}", unit="step",
                disable=not show, dynamic_ncols=True)
    t_last = time.time()
    recent: dict[str, list[float]] = {k: [] for k in ("loss", *tasks)}
    for step in pbar:
        lr = lr_at(step, cfg)
        for pg in optimizer.param_groups:
            pg["lr"] = lr * pg.get("lr_scale", 1.0)
        total = None
        for g in groups:
            total = _group_loss(cfg, g, encoder, heads, trainable, rng, device, recent, total)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable.parameters(), cfg.grad_clip)
        optimizer.step()
        recent["loss"].append(total.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            now = time.time()
            sec = (now - t_last) / len(recent["loss"])
            t_last = now
            row: dict[str, Any] = {"step": step + 1, "loss": float(np.mean(recent["loss"])),
                                   "lr": lr, "sec_per_step": sec}
            if cfg.multi:
                row.update({f"loss_{t}": float(np.mean(recent[t])) for t in tasks})
            log.add(**row)
            pbar.set_postfix(loss=f"{row['loss']:.4f}")
            recent = {k: [] for k in recent}


def _evaluate_groups(cfg: FinetuneConfig, encoder: PointEncoder, heads: dict[str, nn.Module],
                     groups: list[_Group], device, progress: bool) -> tuple[dict, list, int]:
    """Each group's heads on its own held-out events: (metrics per task, eval data, n events)."""
    encoder.eval()
    for h in heads.values():
        h.eval()
    metrics: dict[str, Any] = {}
    eval_data: list[dict[str, Any]] = []
    n_eval_events = 0
    for g in groups:
        eval_spec = DataSpec(modes=g.spec.modes, seed=cfg.seed, voxel_size_cm=g.spec.voxel_size_cm,
                             files=cfg.eval_files)
        eval_events = take(eval_spec, "eval", cfg.n_eval)
        n_eval_events += len(eval_events)
        metrics.update(evaluate(encoder, {t: heads[t] for t in g.tasks}, eval_events,
                                device=device, progress=progress))
        eval_data.append({**eval_spec.to_dict(), "split": "eval", "n_events": len(eval_events),
                          "tasks": g.tasks})
    return {t: metrics[t] for t in cfg.tasks}, eval_data, n_eval_events


def _save_model(run: Path, cfg: FinetuneConfig, command: str, encoder: PointEncoder,
                heads: dict[str, nn.Module], groups: list[_Group], eval_data: list, init_info: dict,
                shown: dict) -> None:
    """``model.safetensors``: the encoder and every head, with the manifest of the run."""
    n_events = cfg.n_events if cfg.n_events is not None else "all"
    data = {**groups[0].spec.to_dict(), "split": "finetune", "n_events": n_events}
    extra: dict[str, Any] = {}
    if cfg.multi:
        extra = {"tasks": list(cfg.tasks), "task_weights": cfg.weights(),
                 "data_groups": [{**g.spec.to_dict(), "split": "finetune",
                                  "n_events": n_events, "tasks": g.tasks} for g in groups]}
    save_weights(run / "model.safetensors", encoder, heads, manifest={
        "kind": "finetuned", "task": cfg.task, "mode": cfg.mode, "command": command,
        "data": data, "eval_data": eval_data[0] if len(eval_data) == 1 else eval_data,
        **extra, **init_info, "finetune_config": asdict(cfg), "step": cfg.steps,
        "metrics": shown})


def finetune(cfg: FinetuneConfig, command: Optional[str] = None, progress: bool = True
             ) -> dict[str, Any]:
    """Train the heads (and, in full mode, the encoder); evaluate; save. Returns the metrics.

    One task: ``result["metrics"]`` is that task's metrics. Several: ``result["metrics"]``
    maps each task to its metrics (and ``result["tasks"]`` lists them).
    """
    accelerator = Accelerator()
    device, main = accelerator.device, accelerator.is_main_process
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    command = command or command_line()
    torch.manual_seed(cfg.seed)
    encoder, init_info = build_encoder(cfg.init, cfg.preset, cfg.voxel_size_cm, cfg.encoder_overrides)
    enc_cfg = encoder.config
    tasks, weights = cfg.tasks, cfg.weights()
    groups = _build_groups(cfg, enc_cfg, accelerator)
    heads = _build_heads(cfg, groups, enc_cfg)
    head_dict = nn.ModuleDict(heads)
    encoder.to(device)
    head_dict.to(device)
    optimizer, trainable = _optimizer(cfg, encoder, head_dict)
    for g in groups:
        if cfg.mode == "probe" and g.train_events:
            g.cache = _Cache(encoder, g.train_events, device)

    label = cfg.task if not cfg.multi else f"{len(tasks)} tasks"
    log = LossLog(run, title=f"finetune {label} ({cfg.mode}, init={Path(cfg.init).name})")
    t0 = time.time()
    _train(cfg, encoder, heads, groups, optimizer, trainable, log, device, show=progress and main)
    train_minutes = (time.time() - t0) / 60
    log.plot(("loss", *(f"loss_{t}" for t in tasks)) if cfg.multi else ("loss",))

    metrics, eval_data, n_eval_events = _evaluate_groups(cfg, encoder, heads, groups, device, progress)
    shown = metrics if cfg.multi else metrics[tasks[0]]
    result = {"task": cfg.task, "tasks": list(tasks), "mode": cfg.mode, "init": str(cfg.init),
              "n_events": cfg.n_events if cfg.n_events is not None else "all", "steps": cfg.steps,
              "train_minutes": train_minutes,
              "final_loss": float(log.rows[-1]["loss"]) if log.rows else None,
              "n_eval": n_eval_events, "task_weights": weights, "metrics": shown}
    if main:
        (run / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        _save_model(run, cfg, command, encoder, heads, groups, eval_data, init_info, shown)
    return result
