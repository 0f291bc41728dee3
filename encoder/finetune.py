"""Task heads on the encoder: linear probes and full fine-tuning (``larsight finetune``).

    larsight finetune --task semantic --mode probe --init runs/pretrain/encoder.safetensors \\
        --n-events 100 --steps 300 --run-dir runs/ft_semantic

``--mode probe``: the encoder is frozen (eval mode, no gradients) and only the head trains;
with a fixed fine-tuning set the encoder's outputs are computed once and cached, so a probe
costs little more than one pass over the set. ``--mode full``: encoder and head train
together (the encoder at ``--encoder-lr-scale`` times the head's learning rate).

``--init``: a pretrained ``encoder.safetensors`` (``larsight pretrain``), any larsight
checkpoint with an encoder, or ``scratch`` (random weights: the baseline of the
data-efficiency table). ``--n-events``: size of the fine-tuning set (10, 100, 1000, ... or
``all`` = fresh simulated events every step). Per-class weights (inverse square-root
frequency over the fine-tuning set) balance rare classes (Michel, delta) in the
classification losses.

The fine-tuning set is the ``finetune`` split of the simulator (or ``--files``), the
evaluation set the ``eval`` split (or ``--eval-files``): disjoint from each other and from
pretraining. The run folder gets ``loss.csv`` / ``loss.png``, ``metrics.json`` and
``model.safetensors`` + ``model.json`` (encoder + head, exact command, data, metrics).
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .backbone import EncoderOutput, PointEncoder
from .checkpoint import load_weights, save_weights
from .config import EncoderConfig
from .data import DataSpec, encoder_inputs, event_stream, make_batch, take
from .heads import N_CLASSES, TARGET_OF_TASK, TASKS, class_weights, head_for
from .pretrain import LossLog, command_line, lr_at, param_groups

DEFAULT_DATA_MODE = {"semantic": "nu", "particle": "nu", "pid": "nu", "vertex": "nu",
                     "event": "nu", "interaction": "mpr"}
"""Simulator mode per task ('interaction' needs several interactions per event)."""


@dataclass
class FinetuneConfig:
    task: str = "semantic"
    mode: str = "probe"
    """'probe' (frozen encoder) or 'full'."""
    init: str = "scratch"
    """Path of pretrained weights, or 'scratch'."""
    preset: str = "tiny"
    """Encoder preset when ``init`` is 'scratch'."""
    head: Optional[str] = None
    """'linear' or 'mlp'; default linear for probes, mlp for full fine-tuning."""
    n_events: Optional[int] = 100
    """Fine-tuning set size; None = stream fresh events (simulated data only)."""
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
    run_dir: str = "runs/finetune"
    log_every: int = 10
    encoder_overrides: Optional[dict] = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {TASKS}, got {self.task!r}")
        if self.mode not in ("probe", "full"):
            raise ValueError(f"--mode must be 'probe' or 'full', got {self.mode!r}")
        if self.n_events is not None and self.n_events < 1:
            raise ValueError("--n-events must be >= 1 or 'all'")
        if self.n_events is None and self.files:
            raise ValueError("--n-events all streams simulated events; give a number with --files")
        self.files, self.eval_files = tuple(self.files), tuple(self.eval_files)


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


def finetune(cfg: FinetuneConfig, command: Optional[str] = None, progress: bool = True
             ) -> dict[str, Any]:
    """Train a head (and, in full mode, the encoder); evaluate; save. Returns the metrics."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from .evaluate import evaluate

    accelerator = Accelerator()
    device, main = accelerator.device, accelerator.is_main_process
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    command = command or command_line()
    torch.manual_seed(cfg.seed)
    encoder, init_info = build_encoder(cfg.init, cfg.preset, cfg.voxel_size_cm, cfg.encoder_overrides)
    enc_cfg = encoder.config
    spec = DataSpec(modes=cfg.data_mode or DEFAULT_DATA_MODE[cfg.task], seed=cfg.seed,
                    voxel_size_cm=enc_cfg.voxel_size_cm, files=cfg.files)

    # ---- data: a fixed fine-tuning set, or a fresh stream
    if cfg.n_events is not None:
        train_events = take(spec, "finetune", cfg.n_events)
        if len(train_events) < cfg.n_events:
            print(f"finetune: only {len(train_events)} events available (asked {cfg.n_events})")
        stream = None
        sample = train_events
    else:
        train_events = None
        stream = event_stream(spec, "finetune", rank=accelerator.process_index,
                              world=accelerator.num_processes)
        sample = list(itertools.islice(event_stream(spec, "finetune"), 200))

    # ---- head, with class weights from the fine-tuning set
    kind = cfg.head or ("linear" if cfg.mode == "probe" else "mlp")
    head_kw: dict[str, Any] = {}
    if cfg.task in N_CLASSES:
        target = TARGET_OF_TASK[cfg.task]
        if cfg.task == "event":
            y = np.array([make_batch([e], enc_cfg)["event_class"][0].item() for e in sample])
        else:
            y = np.concatenate([getattr(e, target) if getattr(e, target) is not None
                                else np.full(len(e), -1) for e in sample])
        head_kw["class_weight"] = class_weights(y, N_CLASSES[cfg.task]).tolist()
    head = head_for(cfg.task, enc_cfg, kind=kind, **head_kw)

    encoder.to(device)
    head.to(device)
    if cfg.mode == "probe":
        encoder.requires_grad_(False).eval()
        groups = param_groups(head, cfg.weight_decay)
        trainable: nn.Module = head
    else:
        groups = param_groups(head, cfg.weight_decay)
        for g in param_groups(encoder, cfg.weight_decay):
            g["lr_scale"] = cfg.encoder_lr_scale
            groups.append(g)
        trainable = nn.ModuleDict({"encoder": encoder, "head": head})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    cache = _Cache(encoder, train_events, device) if (cfg.mode == "probe" and train_events) else None

    rng = np.random.default_rng([cfg.seed, 11])
    log = LossLog(run, title=f"finetune {cfg.task} ({cfg.mode}, init={Path(cfg.init).name})")
    pbar = tqdm(range(cfg.steps), desc=f"finetune {cfg.task} {cfg.mode}", unit="step",
                disable=not (progress and main), dynamic_ncols=True)
    t0 = t_last = time.time()
    recent: list[float] = []
    for step in pbar:
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        if train_events is not None:
            idx = rng.choice(len(train_events), size=min(cfg.batch_size, len(train_events)),
                             replace=False)
            evs = [train_events[i] for i in idx]
        else:
            evs = [next(stream) for _ in range(cfg.batch_size)]
        batch = make_batch(evs, enc_cfg, device=device)
        if cache is not None:
            out = cache.output(idx)
        elif cfg.mode == "probe":
            with torch.no_grad():
                out = encoder(encoder_inputs(batch))
        else:
            trainable.train()
            out = encoder(encoder_inputs(batch))
        head.train()
        loss = head.loss(head(out, batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable.parameters(), cfg.grad_clip)
        optimizer.step()
        recent.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            now = time.time()
            sec = (now - t_last) / len(recent)
            t_last = now
            log.add(step=step + 1, loss=float(np.mean(recent)), lr=lr, sec_per_step=sec)
            pbar.set_postfix(loss=f"{np.mean(recent):.4f}")
            recent = []
    train_minutes = (time.time() - t0) / 60
    log.plot()

    # ---- held-out evaluation and the shipped weights
    eval_spec = DataSpec(modes=spec.modes, seed=cfg.seed, voxel_size_cm=spec.voxel_size_cm,
                         files=cfg.eval_files)
    eval_events = take(eval_spec, "eval", cfg.n_eval)
    encoder.eval()
    head.eval()
    metrics = evaluate(encoder, {cfg.task: head}, eval_events, device=device, progress=progress)
    result = {"task": cfg.task, "mode": cfg.mode, "init": str(cfg.init),
              "n_events": cfg.n_events if cfg.n_events is not None else "all",
              "steps": cfg.steps, "train_minutes": train_minutes,
              "final_loss": float(log.rows[-1]["loss"]) if log.rows else None,
              "n_eval": len(eval_events), "metrics": metrics[cfg.task]}
    (run / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    save_weights(run / "model.safetensors", encoder, {cfg.task: head}, manifest={
        "kind": "finetuned", "task": cfg.task, "mode": cfg.mode, "command": command,
        "data": {**spec.to_dict(), "split": "finetune", "n_events": result["n_events"]},
        "eval_data": {**eval_spec.to_dict(), "split": "eval", "n_events": len(eval_events)},
        **init_info, "finetune_config": asdict(cfg), "step": cfg.steps,
        "metrics": metrics[cfg.task]})
    return result
