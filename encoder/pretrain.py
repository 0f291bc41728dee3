"""Self-supervised pretraining of the point encoder (``larsight pretrain``); no labels are read.

One readable loop, two objectives (``--objective``):

``distill`` -- self-distillation in the spirit of DINO / Sonata. Every event gives
``n_global`` global views (the event with point dropout) and ``n_local`` local crops (the
5-30 % of points nearest a random point), each independently rotated about the drift axis (x)
with position and energy jitter. The student sees all views, with ``mask_ratio`` of the
coarse cells of its global views masked (energy feature replaced by a mask value, positions
kept); an EMA teacher sees the unmasked global views. Two prototype heads (MLP -> L2-normed
bottleneck -> cosine prototypes) turn features into soft assignments:

- event level: the student's pooled embedding of every view predicts the teacher's
  assignment of each other global view of the same event;
- point level (Sonata): for every point present in a student view and a (different) teacher
  global view -- views keep their original point indices, so the match is exact -- the
  student's point feature predicts the teacher's assignment of the same point.

Teacher targets are centred and sharpened (DINO) or Sinkhorn-Knopp balanced (SwAV / DINOv2):
by default centring for the event level (a batch holds only ``2 * batch_size`` teacher
views) and Sinkhorn for the point level (thousands of points). The teacher's encoder is what
gets shipped.

``mpm`` -- masked point modelling in the spirit of PoLAr-MAE / Point-MAE, on the voxel grid:
cells of ``mpm_cell^3`` voxels are masked at ``mpm_mask_ratio`` (60 %); their points are
removed and one mask token (energy feature = mask value) sits at each masked cell's centre;
from the token's output feature an MLP predicts which of the cell's ``mpm_cell^3`` voxels are
occupied (BCE) and the log-energy of each occupied voxel (MSE).

Everything else is shared: events simulated in the step (``--data-mode``, ``--seed``; the
pretraining split's simulator seed never equals the fine-tuning or evaluation seeds), event
files, or a pre-simulated shard folder streamed by DataLoader workers (``--data``, see
``encoder.shards`` / ``encoder.stream``; each process reads its own shards); AdamW with
warmup + cosine; HF Accelerate (one CPU, one GPU, or ``accelerate launch`` on many); tqdm;
``loss.csv`` and ``loss.png`` in the run folder (default ``~/.cache/larsight/runs/pretrain-*``,
``$LARSIGHT_RUNS``); periodic ``encoder.safetensors`` + manifest and the resumable state
(``--resume`` continues exactly: weights, optimizer, schedule, every process's data position
and random state; ``--time-limit``, ``--stop-at`` or SIGTERM stop with a checkpoint).
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object
from torch import Tensor, nn
from tqdm.auto import tqdm

from .backbone import PointEncoder
from .checkpoint import has_train_state, load_train_state, save_train_state, save_weights
from .config import EncoderConfig
from .data import DataSpec
from .pretrain_objectives import (DistillModel, DistillTargets, MaskedPointModel, ProtoHead,  # noqa: F401
                                  distill_batch, distill_loss, ema_update, mpm_batch, mpm_loss,
                                  sinkhorn)
from .stream import describe_data, training_stream
from .training import (LossLog, ResumeMismatch, StopRequest, check_resume_config, command_line,
                       log_checkpoint, lr_at, param_groups, resolve_run_dir, to_device_nested)


@dataclass
class PretrainConfig:
    """Options of ``larsight pretrain`` (every field is a command-line flag)."""

    objective: str = "distill"
    """'distill' (student / EMA teacher self-distillation) or 'mpm' (masked point modelling)."""
    preset: str = "tiny"
    run_dir: Optional[str] = None
    """Default: ``<runs root>/pretrain-<name or UTC time>`` (``encoder.training.resolve_run_dir``)."""
    name: Optional[str] = None
    steps: int = 2000
    batch_size: int = 8
    """Events per process per step."""
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    time_limit_min: Optional[float] = None
    """Stop (with a checkpoint) after this many minutes of training."""
    # data
    data_mode: str = "nu,mpv,mpr"
    seed: int = 0
    voxel_size_cm: Optional[float] = None
    """Default: the preset's grid."""
    files: tuple[str, ...] = ()
    data: Optional[str] = None
    """A shard folder (``larsight shards``) streamed instead of simulating in the step."""
    workers: int = 2
    """DataLoader worker processes reading shards (with ``data``; 0: in the training process)."""
    encoder_overrides: dict = field(default_factory=dict)
    """EncoderConfig fields changed from the preset (tests use a micro model)."""
    # bookkeeping
    log_every: int = 10
    ckpt_every: int = 200
    resume: bool = False
    stop_at: Optional[int] = None
    """Stop (with a checkpoint) at this step; the schedule still runs to ``steps``."""
    # augmentation
    jitter_voxels: float = 0.25
    energy_scale: float = 0.1
    # distill
    n_global: int = 2
    n_local: int = 4
    local_frac: tuple[float, float] = (0.05, 0.3)
    global_keep: tuple[float, float] = (0.85, 1.0)
    mask_ratio: float = 0.4
    mask_cell: int = 4
    n_prototypes: int = 256
    n_point_prototypes: int = 256
    proj_hidden: int = 256
    proj_bottleneck: int = 64
    student_temp: float = 0.1
    teacher_temp: float = 0.05
    teacher_temp_start: float = 0.04
    teacher_temp_warmup: float = 0.3
    """Fraction of ``steps`` over which the teacher temperature rises to ``teacher_temp``."""
    event_targets: str = "center"
    """Teacher targets of the event-level loss: 'center' (DINO centring + sharpening; suits
    small batches) or 'sinkhorn' (balanced over the batch; needs batches >> prototypes)."""
    point_targets: str = "sinkhorn"
    """Teacher targets of the point-level loss (thousands of points per batch: Sinkhorn)."""
    center_momentum: float = 0.9
    ema_start: float = 0.994
    point_weight: float = 1.0
    max_point_pairs: int = 16384
    # mpm
    mpm_mask_ratio: float = 0.6
    mpm_cell: int = 4
    mpm_pos_weight: float = 3.0
    mpm_energy_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.objective not in ("distill", "mpm"):
            raise ValueError(f"--objective must be 'distill' or 'mpm', got {self.objective!r}")
        for name in ("event_targets", "point_targets"):
            if getattr(self, name) not in ("sinkhorn", "center"):
                raise ValueError(f"--{name.replace('_', '-')} must be 'sinkhorn' or 'center', "
                                 f"got {getattr(self, name)!r}")
        if self.n_global < 1 or (self.n_global < 2 and self.n_local < 1):
            raise ValueError("distill needs n_global >= 2, or n_global >= 1 and n_local >= 1")
        self.files = tuple(self.files)
        self.local_frac, self.global_keep = tuple(self.local_frac), tuple(self.global_keep)

    def encoder_config(self) -> EncoderConfig:
        over = dict(self.encoder_overrides)
        if self.voxel_size_cm is not None:
            over["voxel_size_cm"] = self.voxel_size_cm
        return EncoderConfig.preset(self.preset, **over)


# ============================================================================ the loop
@dataclass
class _Models:
    """What pretraining trains: the student (wrapped by Accelerate), the EMA teacher and its
    target normaliser (distill only), the optimizer, and the modules the state file holds."""

    encoder: PointEncoder
    model: nn.Module
    teacher: Optional[nn.Module]
    targets: Optional[nn.Module]
    optimizer: torch.optim.Optimizer
    modules: dict[str, nn.Module]


@dataclass
class _Progress:
    """Where a run is: the resumable counters and this process's random stream."""

    rng: np.random.Generator
    step: int = 0
    events_seen: int = 0
    stream_pos: int = 0


RESUME_FREE = ("run_dir", "name", "resume", "data", "steps", "time_limit_min", "log_every", "ckpt_every",
               "stop_at")
"""PretrainConfig fields that may change when a run is resumed (``steps`` extends the schedule)."""


def _build_models(cfg: PretrainConfig, enc_cfg: EncoderConfig, accelerator: Accelerator) -> _Models:
    encoder = PointEncoder(enc_cfg)
    if cfg.objective == "distill":
        student: nn.Module = DistillModel(encoder, cfg)
        teacher = copy.deepcopy(student).requires_grad_(False)
        targets = DistillTargets(cfg)
    else:
        student, teacher, targets = MaskedPointModel(encoder, cfg), None, None
    optimizer = torch.optim.AdamW(param_groups(student, cfg.weight_decay), lr=cfg.lr,
                                  betas=(0.9, 0.95))
    model, optimizer = accelerator.prepare(student, optimizer)
    if teacher is not None:
        teacher.to(accelerator.device).eval()
        targets.to(accelerator.device)
    modules = {"student": accelerator.unwrap_model(model)}
    if teacher is not None:
        modules.update(teacher=teacher, targets=targets)
    return _Models(encoder, model, teacher, targets, optimizer, modules)


def _resume(cfg: PretrainConfig, run: Path, m: _Models, prog: _Progress, rank: int, world: int,
            main: bool, data_info: dict) -> None:
    """Restore the run's state (refusing one of another model, config or data)."""
    state_dir = run / "state"
    if not (cfg.resume and has_train_state(state_dir)):
        if cfg.resume and main:
            print(f"--resume: no state in {state_dir}; starting from scratch")
        return
    saved = json.loads((state_dir / "state.json").read_text()).get("extra", {})
    check_resume_config(saved.get("config", {}), asdict(cfg), RESUME_FREE, run)
    check_resume_config(saved.get("data", {}), data_info, ("shards",), run)
    st = load_train_state(state_dir, modules=m.modules, optimizer=m.optimizer)
    prog.step, extra = st["step"], st["extra"]
    prog.events_seen = int(extra["events_seen"])
    per_rank = extra.get("ranks") or [  # a state written before per-process records
        {"stream_pos": extra["stream_pos"], "numpy_rng": st} for st in extra.get("numpy_rng", [])]
    if len(per_rank) != world:
        raise ResumeMismatch(f"--resume: {run} ran on {len(per_rank)} process(es); resume it on as many")
    prog.stream_pos = int(per_rank[rank]["stream_pos"])
    prog.rng.bit_generator.state = per_rank[rank]["numpy_rng"]
    if main:
        print(f"resumed {run} at step {prog.step}")


def _save(run: Path, cfg: PretrainConfig, m: _Models, prog: _Progress, data_info: dict, command: str,
          accelerator: Accelerator, log: LossLog, final_metrics: dict, shards_read: list) -> None:
    """The resumable state, the shipped encoder (the teacher's for distill) and the loss plot;
    every process gives its stream position and random state, the main process writes."""
    mine = {"stream_pos": prog.stream_pos, "numpy_rng": prog.rng.bit_generator.state,
            "shards_read": sorted(shards_read)}
    ranks = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    if not accelerator.is_main_process:
        return
    world = accelerator.num_processes
    save_train_state(run / "state", step=prog.step, modules=m.modules, optimizer=m.optimizer,
                     extra={"events_seen": prog.events_seen, "ranks": ranks, "config": asdict(cfg),
                            "data": data_info, "processes": world})
    shipped = m.teacher.encoder if m.teacher is not None else m.modules["student"].encoder
    save_weights(run / "encoder.safetensors", shipped, manifest={
        "kind": "pretrained-encoder", "objective": cfg.objective,
        "weights_from": "EMA teacher" if m.teacher is not None else "student",
        "command": command, "data": {**data_info, "split": "pretrain"},
        "shards_read_by_rank": [r["shards_read"] for r in ranks] if cfg.data else None,
        "pretrain_config": asdict(cfg), "step": prog.step, "events_seen": prog.events_seen * world,
        "processes": world, "metrics": final_metrics})
    log_checkpoint(run, prog.step, accelerator.process_index, ["state", "encoder.safetensors"])
    log.plot(("loss", "event", "point") if cfg.objective == "distill"
             else ("loss", "occupancy", "energy"))


def _train_step(cfg: PretrainConfig, m: _Models, evs: list, prog: _Progress, voxel: float,
                accelerator: Accelerator) -> tuple[Tensor, dict[str, float]]:
    """One optimizer step on ``evs`` (and the teacher's EMA update); returns the loss."""
    m.model.train()
    if cfg.objective == "distill":
        batch = to_device_nested(distill_batch(evs, prog.rng, cfg, voxel), accelerator.device)
        with accelerator.autocast():
            loss, parts = distill_loss(m.model, m.teacher, m.targets, batch, cfg, prog.step)
    else:
        batch = to_device_nested(mpm_batch(evs, prog.rng, cfg, voxel), accelerator.device)
        with accelerator.autocast():
            loss, parts = mpm_loss(m.model, batch, cfg)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"pretrain: non-finite loss at step {prog.step}: {parts}")
    accelerator.backward(loss)
    if cfg.grad_clip:
        accelerator.clip_grad_norm_(m.model.parameters(), cfg.grad_clip)
    m.optimizer.step()
    m.optimizer.zero_grad(set_to_none=True)
    if m.teacher is not None:
        mom = 1 - (1 - cfg.ema_start) * (math.cos(math.pi * prog.step / cfg.steps) + 1) / 2
        ema_update(m.teacher, accelerator.unwrap_model(m.model), mom)
    return loss, parts


def _setup(cfg: PretrainConfig, accelerator: Accelerator):
    """Run folder, models, progress and the event stream of this process (resumed if asked)."""
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    run = resolve_run_dir("pretrain", cfg.run_dir, cfg.name, cfg.resume)
    cfg.run_dir = str(run)
    if main:
        run.mkdir(parents=True, exist_ok=True)
    enc_cfg = cfg.encoder_config()
    spec = DataSpec(modes=cfg.data_mode, seed=cfg.seed, voxel_size_cm=enc_cfg.voxel_size_cm,
                    files=cfg.files)
    torch.manual_seed(cfg.seed)  # same initial weights on every process
    m = _build_models(cfg, enc_cfg, accelerator)
    prog = _Progress(rng=np.random.default_rng([cfg.seed, rank, 7]))
    _resume(cfg, run, m, prog, rank, world, main, describe_data(cfg.data, spec, "pretrain"))
    stream, reader, data_info = training_stream(cfg.data, spec, "pretrain", seed=cfg.seed, rank=rank,
                                                world=world, workers=cfg.workers,
                                                start=prog.stream_pos, min_points=8)
    return run, enc_cfg, spec, m, prog, stream, reader, data_info


def pretrain(cfg: PretrainConfig, command: Optional[str] = None) -> dict[str, Any]:
    """Run (or resume) pretraining; returns a summary (also in ``run_dir/encoder.json``)."""
    accelerator = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(
        find_unused_parameters=True)])
    main, world = accelerator.is_main_process, accelerator.num_processes
    command = command or command_line()
    run, enc_cfg, spec, m, prog, stream, reader, data_info = _setup(cfg, accelerator)
    voxel = enc_cfg.voxel_size_cm
    log = LossLog(run, resume_step=prog.step, title=f"pretrain {cfg.objective} ({enc_cfg.name})") \
        if main else None
    n_params = sum(p.numel() for p in m.encoder.parameters())
    if main:
        print(f"pretrain {cfg.objective}: encoder {enc_cfg.name} ({n_params / 1e6:.2f} M params), "
              f"{world} process(es) on {accelerator.device}, {cfg.batch_size} events/process/step, "
              f"data {cfg.data or spec.to_dict()}, run folder {run}")

    def checkpoint(final_metrics: dict) -> None:
        accelerator.wait_for_everyone()
        _save(run, cfg, m, prog, data_info, command, accelerator, log, final_metrics,
              list(reader.shards_read) if reader else [])

    pbar = tqdm(total=cfg.steps, initial=prog.step, disable=not main, desc=f"pretrain {cfg.objective}",
                unit="step", dynamic_ncols=True)
    t_start = time.time()
    t_last, steps_since, recent = t_start, 0, []
    metrics: dict[str, float] = {}
    last = min(cfg.steps, cfg.stop_at or cfg.steps)
    with StopRequest(cfg.time_limit_min) as stop:
        while prog.step < last:
            lr = lr_at(prog.step, cfg)
            for g in m.optimizer.param_groups:
                g["lr"] = lr
            evs = []
            for _ in range(cfg.batch_size):
                prog.stream_pos, ev = next(stream)
                evs.append(ev)
            prog.events_seen += cfg.batch_size
            loss, parts = _train_step(cfg, m, evs, prog, voxel, accelerator)
            prog.step += 1
            steps_since += 1
            recent.append(float(accelerator.reduce(loss.detach(), "mean")))
            pbar.update(1)
            if prog.step % cfg.log_every == 0 or prog.step == last:
                now = time.time()
                sec = (now - t_last) / steps_since
                t_last, steps_since = now, 0
                metrics = {"loss": float(np.mean(recent)), **parts, "sec_per_step": sec}
                recent = []
                if main:
                    log.add(step=prog.step, loss=metrics["loss"], **parts, lr=lr, sec_per_step=sec,
                            events=prog.events_seen * world, elapsed_min=(now - t_start) / 60)
                    pbar.set_postfix(loss=f"{metrics['loss']:.4f}", s_step=f"{sec:.2f}")
            why = stop.reason(accelerator)
            if prog.step % cfg.ckpt_every == 0 or prog.step == last or why:
                checkpoint(metrics)
            if why:
                if main:
                    print(f"stopped at step {prog.step} ({why}); "
                          f"continue with --resume --run-dir {run}")
                break
    pbar.close()
    elapsed = time.time() - t_start
    summary = {"run_dir": str(run), "objective": cfg.objective, "step": prog.step,
               "events_seen": prog.events_seen * world, "minutes": elapsed / 60, **metrics}
    if main:
        print(f"pretrain done: step {prog.step}, loss {metrics.get('loss', float('nan')):.4f}, "
              f"{elapsed / 60:.1f} min; weights {run / 'encoder.safetensors'}")
    accelerator.end_training() if hasattr(accelerator, "end_training") else None
    return summary
