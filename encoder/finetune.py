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

Long runs: ``--data DIR`` trains on a pre-simulated shard folder (``larsight shards``; with
``--n-events all`` streamed by ``--workers`` DataLoader processes, each ``accelerate launch``
process reading its own shards). The run folder defaults to ``~/.cache/larsight/runs/
finetune-<name or time>`` (``$LARSIGHT_RUNS``); ``--ckpt-every`` writes ``state/`` and the
weights; ``--time-limit``, ``--stop-at`` or SIGTERM stop with a checkpoint, and ``--resume``
continues exactly (evaluation runs when the last step is reached). ``--loss balanced|focal|ce``
picks the classification loss (balanced weights come from the shards' label counts).
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from tqdm.auto import tqdm

from larsight.events import read as read_events

from .backbone import EncoderOutput, PointEncoder
from .checkpoint import has_train_state, load_train_state, load_weights, save_train_state, save_weights
from .config import EncoderConfig
from .data import DataSpec, encoder_inputs, event_stream, make_batch, take
from .evaluate import evaluate
from .finetune_config import (DEFAULT_TASK_WEIGHTS, LOSSES, FinetuneConfig, parse_task_weights,  # noqa: F401
                              parse_tasks)
from .heads import (DEFAULT_DATA_MODE, N_CLASSES, TARGET_OF_TASK, class_weights,
                    class_weights_from_counts, head_for)
from .shards import open_shards
from .stream import ShardReader, check_voxel, describe_data, training_stream
from .training import (LossLog, ResumeMismatch, StopRequest, check_resume_config, command_line,
                       log_checkpoint, lr_at, param_groups, resolve_run_dir)

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
    """``(position, event)`` pairs of this process (``--n-events all``)."""
    reader: Optional[ShardReader] = None
    pos: int = 0
    sample: list = field(default_factory=list)
    cache: Optional[_Cache] = None
    semantic_counts: Optional[np.ndarray] = None
    """Semantic label counts of a shard folder (its manifest), for class-balanced weights."""


def data_groups(cfg: FinetuneConfig) -> dict[str, list[str]]:
    """Simulator modes -> the tasks trained on them (one group unless tasks' defaults differ)."""
    if cfg.data:
        return {",".join(open_shards(cfg.data).spec.modes): list(cfg.tasks)}
    if cfg.data_mode or cfg.files:
        return {cfg.data_mode or DEFAULT_DATA_MODE[cfg.tasks[0]]: list(cfg.tasks)}
    groups: dict[str, list[str]] = {}
    for t in cfg.tasks:
        groups.setdefault(DEFAULT_DATA_MODE[t], []).append(t)
    return groups


def _has_labels(ev, task: str) -> bool:
    if task == "vertex":
        return bool(ev.interactions)
    if task == "event":
        return ev.event_class is not None
    v = getattr(ev, TARGET_OF_TASK[task])
    return v is not None and bool((np.asarray(v) >= 0).any())


def check_labels(tasks: Sequence[str], sample: Sequence, source: str) -> None:
    """One-line error when the training events carry none of a task's truth labels."""
    if not sample:
        raise ValueError(f"finetune: no training events with points in {source}")
    for t in tasks:
        if not any(_has_labels(ev, t) for ev in sample):
            what = {"vertex": "interaction (vertex)", "event": "event-class"}.get(t, TARGET_OF_TASK[t])
            raise ValueError(f"finetune --task {t}: none of the {len(sample)} training events in "
                             f"{source} has {what} labels; give labelled events")


def _class_weight_kw(cfg: FinetuneConfig, task: str, g: _Group, enc_cfg: EncoderConfig) -> dict[str, Any]:
    if task not in N_CLASSES:
        return {}
    kw: dict[str, Any] = {"loss": cfg.loss, "focal_gamma": cfg.focal_gamma}
    if task == "semantic" and g.semantic_counts is not None:
        return {**kw, "class_weight": class_weights_from_counts(g.semantic_counts).tolist()}
    target = TARGET_OF_TASK[task]
    if task == "event":
        y = np.array([make_batch([e], enc_cfg)["event_class"][0].item() for e in g.sample])
    else:
        y = np.concatenate([getattr(e, target) if getattr(e, target) is not None
                            else np.full(len(e), -1) for e in g.sample])
    return {**kw, "class_weight": class_weights(y, N_CLASSES[task]).tolist()}


def _first_shard_events(folder, n: int) -> list:
    """The first ``n`` events with points of a shard folder, in file order."""
    out: list = []
    for f in folder.files:
        for ev in read_events(f):
            if len(ev):
                out.append(ev)
                if len(out) == n:
                    return out
    return out


def _build_groups(cfg: FinetuneConfig, enc_cfg: EncoderConfig, rank: int, world: int,
                  positions: Sequence[int]) -> list[_Group]:
    """The data of each group: a fixed fine-tuning set, or this process's stream (resumed at
    ``positions``)."""
    groups: list[_Group] = []
    folder = open_shards(cfg.data) if cfg.data else None
    if folder is not None:
        check_voxel(folder, enc_cfg.voxel_size_cm)
    source = str(cfg.data or ", ".join(cfg.files) or "the simulator")
    for gi, (modes, group_tasks) in enumerate(data_groups(cfg).items()):
        spec = DataSpec(modes=modes, seed=cfg.seed, voxel_size_cm=enc_cfg.voxel_size_cm, files=cfg.files)
        g = _Group(modes=modes, tasks=group_tasks, spec=spec, pos=positions[gi] if positions else 0,
                   semantic_counts=folder.semantic_counts() if folder is not None else None)
        if cfg.n_events is not None:
            g.train_events = (_first_shard_events(folder, cfg.n_events) if folder is not None
                              else take(spec, "finetune", cfg.n_events))
            if len(g.train_events) < cfg.n_events:
                print(f"finetune: only {len(g.train_events)} events available (asked {cfg.n_events})")
            g.sample = g.train_events
        else:
            g.stream, g.reader, _ = training_stream(cfg.data, spec, "finetune", seed=cfg.seed, rank=rank,
                                                    world=world, workers=cfg.workers, start=g.pos,
                                                    min_points=1)
            g.sample = (_first_shard_events(folder, 200) if folder is not None
                        else list(itertools.islice(event_stream(spec, "finetune"), 200)))
        check_labels(group_tasks, g.sample, source)
        groups.append(g)
    return groups


def _build_heads(cfg: FinetuneConfig, groups: list[_Group], enc_cfg: EncoderConfig) -> dict[str, nn.Module]:
    """One head per task, with class weights from its group's fine-tuning set, in --task order."""
    kind = cfg.head or ("linear" if cfg.mode == "probe" else "mlp")
    heads: dict[str, nn.Module] = {}
    for g in groups:
        for t in g.tasks:
            heads[t] = head_for(t, enc_cfg, kind=kind, **_class_weight_kw(cfg, t, g, enc_cfg))
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
        evs = []
        for _ in range(cfg.batch_size):
            g.pos, ev = next(g.stream)
            evs.append(ev)
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


def sync_gradients(params: Sequence[torch.Tensor], accelerator: Accelerator) -> None:
    """Average the gradients over processes (one all-reduce; what DDP does) when distributed."""
    if accelerator.num_processes == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= accelerator.num_processes
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


@dataclass
class _Loop:
    """What one training invocation works with (the resumable state is ``step``, ``rng`` and
    the groups' stream positions)."""

    cfg: FinetuneConfig
    encoder: PointEncoder
    heads: dict[str, nn.Module]
    groups: list[_Group]
    optimizer: torch.optim.Optimizer
    trainable: nn.Module
    accelerator: Accelerator
    rng: np.random.Generator
    step: int = 0


def _train(lp: _Loop, log: Optional[LossLog], checkpoint, show: bool) -> None:
    """Steps until ``steps`` (or ``stop_at``, the time limit, a stop signal); ``checkpoint()``
    every ``ckpt_every`` steps and at the end."""
    cfg, tasks, acc = lp.cfg, lp.cfg.tasks, lp.accelerator
    params = [p for p in lp.trainable.parameters() if p.requires_grad]
    last = min(cfg.steps, cfg.stop_at or cfg.steps)
    label = cfg.task if not cfg.multi else f"{len(tasks)} tasks"
    pbar = tqdm(total=cfg.steps, initial=lp.step, desc=f"finetune {label} {cfg.mode}", unit="step",
                disable=not show, dynamic_ncols=True)
    t_last = time.time()
    recent: dict[str, list[float]] = {k: [] for k in ("loss", *tasks)}
    with StopRequest(cfg.time_limit_min) as stop:
        while lp.step < last:
            lr = lr_at(lp.step, cfg)
            for pg in lp.optimizer.param_groups:
                pg["lr"] = lr * pg.get("lr_scale", 1.0)
            total = None
            for g in lp.groups:
                total = _group_loss(cfg, g, lp.encoder, lp.heads, lp.trainable, lp.rng, acc.device,
                                    recent, total)
            lp.optimizer.zero_grad(set_to_none=True)
            total.backward()
            sync_gradients(params, acc)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            lp.optimizer.step()
            lp.step += 1
            recent["loss"].append(float(acc.reduce(total.detach(), "mean")))
            pbar.update(1)
            if lp.step % cfg.log_every == 0 or lp.step == last:
                now = time.time()
                row: dict[str, Any] = {"step": lp.step, "loss": float(np.mean(recent["loss"])), "lr": lr,
                                       "sec_per_step": (now - t_last) / len(recent["loss"])}
                t_last = now
                if cfg.multi:
                    row.update({f"loss_{t}": float(np.mean(recent[t])) for t in tasks})
                if log is not None:
                    log.add(**row)
                pbar.set_postfix(loss=f"{row['loss']:.4f}")
                recent = {k: [] for k in recent}
            why = stop.reason(acc)
            if lp.step % cfg.ckpt_every == 0 or lp.step == last or why:
                checkpoint()
            if why:
                if show:
                    print(f"stopped at step {lp.step} ({why}); "
                          f"continue with --resume --run-dir {cfg.run_dir}")
                break
    pbar.close()


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


def _save_model(run: Path, cfg: FinetuneConfig, command: str, lp: _Loop, eval_data: list,
                init_info: dict, shown: dict, data_info: dict, ranks: Sequence[dict] = ()) -> None:
    """``model.safetensors``: the encoder and every head, with the manifest of the run."""
    n_events = cfg.n_events if cfg.n_events is not None else "all"
    data = {**data_info, "split": "finetune", "n_events": n_events}
    extra: dict[str, Any] = {}
    if cfg.multi:
        extra = {"tasks": list(cfg.tasks), "task_weights": cfg.weights(),
                 "data_groups": [{**g.spec.to_dict(), "split": "finetune",
                                  "n_events": n_events, "tasks": g.tasks} for g in lp.groups]}
    save_weights(run / "model.safetensors", lp.encoder, lp.heads, manifest={
        "kind": "finetuned", "task": cfg.task, "mode": cfg.mode, "command": command,
        "data": data, "eval_data": eval_data[0] if len(eval_data) == 1 else eval_data,
        **extra, **init_info, "finetune_config": asdict(cfg), "step": lp.step,
        "processes": lp.accelerator.num_processes,
        "shards_read_by_rank": [r["shards_read"] for r in ranks] if cfg.data else None,
        "complete": lp.step >= cfg.steps, "metrics": shown})


RESUME_FREE = ("run_dir", "name", "resume", "data", "steps", "time_limit_min", "log_every", "ckpt_every",
               "stop_at", "n_eval", "eval_files")
"""FinetuneConfig fields that may change when a run is resumed."""


def _save_state(run: Path, lp: _Loop, data_info: dict, log: Optional[LossLog]) -> list[dict]:
    """The resumable state (every process gives its stream positions and random state; the
    main process writes). Returns every process's record."""
    acc = lp.accelerator
    mine = {"positions": [g.pos for g in lp.groups], "numpy_rng": lp.rng.bit_generator.state,
            "shards_read": sorted(set().union(*[g.reader.shards_read for g in lp.groups if g.reader]))}
    ranks = gather_object([mine]) if acc.num_processes > 1 else [mine]
    if acc.is_main_process:
        save_train_state(run / "state", step=lp.step, optimizer=lp.optimizer,
                         modules={"encoder": lp.encoder, "heads": nn.ModuleDict(lp.heads)},
                         extra={"ranks": ranks, "config": asdict(lp.cfg), "data": data_info,
                                "processes": acc.num_processes})
        if log is not None:
            log.plot(("loss", *(f"loss_{t}" for t in lp.cfg.tasks)) if lp.cfg.multi else ("loss",))
    return ranks


def _resume_record(cfg: FinetuneConfig, run: Path, world: int, rank: int, data_info: dict) -> Optional[dict]:
    """This process's saved record of a run being resumed (after checking it is the same run)."""
    state = run / "state"
    if not cfg.resume:
        return None
    if not has_train_state(state):
        print(f"--resume: no state in {state}; starting from scratch")
        return None
    saved = json.loads((state / "state.json").read_text()).get("extra", {})
    check_resume_config(saved.get("config", {}), asdict(cfg), RESUME_FREE, run)
    check_resume_config(saved.get("data", {}), data_info, ("shards",), run)
    if len(saved.get("ranks", [])) != world:
        raise ResumeMismatch(f"--resume: {run} ran on {len(saved.get('ranks', []))} process(es); "
                             f"resume it on as many")
    return saved["ranks"][rank]


def _setup(cfg: FinetuneConfig, accelerator: Accelerator) -> tuple[_Loop, dict, dict, Path]:
    """Run folder, encoder, heads, data and optimizer of this process, resumed if asked."""
    rank, world = accelerator.process_index, accelerator.num_processes
    run = resolve_run_dir("finetune", cfg.run_dir, cfg.name, cfg.resume)
    cfg.run_dir = str(run)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    encoder, init_info = build_encoder(cfg.init, cfg.preset, cfg.voxel_size_cm, cfg.encoder_overrides)
    data_info = describe_data(cfg.data, DataSpec(modes=next(iter(data_groups(cfg))), seed=cfg.seed,
                                                 voxel_size_cm=encoder.config.voxel_size_cm,
                                                 files=cfg.files), "finetune")
    record = _resume_record(cfg, run, world, rank, data_info)
    groups = _build_groups(cfg, encoder.config, rank, world, record["positions"] if record else [])
    heads = _build_heads(cfg, groups, encoder.config)
    head_dict = nn.ModuleDict(heads)
    encoder.to(accelerator.device)
    head_dict.to(accelerator.device)
    optimizer, trainable = _optimizer(cfg, encoder, head_dict)
    lp = _Loop(cfg, encoder, heads, groups, optimizer, trainable, accelerator,
               rng=np.random.default_rng([cfg.seed, 11] if rank == 0 else [cfg.seed, 11, rank]))
    if record is not None:
        st = load_train_state(run / "state", modules={"encoder": encoder, "heads": head_dict},
                              optimizer=optimizer)
        lp.step = st["step"]
        lp.rng.bit_generator.state = record["numpy_rng"]
        print(f"resumed {run} at step {lp.step}")
    for g in groups:
        if cfg.mode == "probe" and g.train_events:
            g.cache = _Cache(encoder, g.train_events, accelerator.device)
    return lp, init_info, data_info, run


def finetune(cfg: FinetuneConfig, command: Optional[str] = None, progress: bool = True
             ) -> dict[str, Any]:
    """Train the heads (and, in full mode, the encoder); evaluate; save. Returns the metrics.

    One task: ``result["metrics"]`` is that task's metrics. Several: ``result["metrics"]``
    maps each task to its metrics (and ``result["tasks"]`` lists them). A run stopped before
    ``steps`` (``stop_at``, time limit, signal) saves its state and weights, and is evaluated
    when a ``--resume`` finishes it.
    """
    accelerator = Accelerator()
    main = accelerator.is_main_process
    command = command or command_line()
    lp, init_info, data_info, run = _setup(cfg, accelerator)
    tasks, weights = cfg.tasks, cfg.weights()
    label = cfg.task if not cfg.multi else f"{len(tasks)} tasks"
    log = LossLog(run, resume_step=lp.step,
                  title=f"finetune {label} ({cfg.mode}, init={Path(cfg.init).name})") if main else None

    ranks: list[dict] = []

    def checkpoint() -> None:
        ranks[:] = _save_state(run, lp, data_info, log)
        if main:
            _save_model(run, cfg, command, lp, [], init_info, {}, data_info, ranks)
            log_checkpoint(run, lp.step, accelerator.process_index, ["state", "model.safetensors"])

    t0 = time.time()
    _train(lp, log, checkpoint, show=progress and main)
    train_minutes = (time.time() - t0) / 60
    result = {"task": cfg.task, "tasks": list(tasks), "mode": cfg.mode, "init": str(cfg.init),
              "n_events": cfg.n_events if cfg.n_events is not None else "all", "steps": lp.step,
              "run_dir": str(run), "train_minutes": train_minutes, "complete": lp.step >= cfg.steps,
              "final_loss": float(log.rows[-1]["loss"]) if log and log.rows else None,
              "task_weights": weights, "metrics": {}, "main_process": main}
    if main and lp.step >= cfg.steps:
        metrics, eval_data, n_eval_events = _evaluate_groups(cfg, lp.encoder, lp.heads, lp.groups,
                                                             accelerator.device, progress)
        shown = metrics if cfg.multi else metrics[tasks[0]]
        result.update(n_eval=n_eval_events, metrics=shown)
        (run / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        _save_model(run, cfg, command, lp, eval_data, init_info, shown, data_info, ranks)
        log_checkpoint(run, lp.step, accelerator.process_index, ["model.safetensors (evaluated)"])
    elif main:
        print(f"finetune stopped at step {lp.step} of {cfg.steps}; evaluation runs when --resume finishes it")
    accelerator.wait_for_everyone()
    return result
