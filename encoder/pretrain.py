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

Everything else is shared: streaming simulated events (``--data-mode``, ``--seed``; the
pretraining split's simulator seed never equals the fine-tuning or evaluation seeds) or
event files; AdamW with warmup + cosine; HF Accelerate (one CPU, one GPU, or
``accelerate launch`` on many, each process drawing its own events); tqdm; ``loss.csv`` and
``loss.png`` in the run folder; periodic ``encoder.safetensors`` + manifest and resumable
state (``--resume``).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch import Tensor, nn
from tqdm.auto import tqdm

from .backbone import PointEncoder, energy_feature
from .checkpoint import has_train_state, load_train_state, save_train_state, save_weights
from .config import EncoderConfig
from .data import (MASK_ENERGY_FEATURE, Augment, DataSpec, batch_from_arrays, crop_indices,
                   event_stream, subsample_indices)
from .training import LossLog, command_line, lr_at, param_groups, positioned, to_device_nested


@dataclass
class PretrainConfig:
    """Options of ``larsight pretrain`` (every field is a command-line flag)."""

    objective: str = "distill"
    """'distill' (student / EMA teacher self-distillation) or 'mpm' (masked point modelling)."""
    preset: str = "tiny"
    run_dir: str = "runs/pretrain"
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
    encoder_overrides: dict = field(default_factory=dict)
    """EncoderConfig fields changed from the preset (tests use a micro model)."""
    # bookkeeping
    log_every: int = 10
    ckpt_every: int = 200
    resume: bool = False
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


# ============================================================================ shared pieces
class ProtoHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> cosine similarity to learned prototypes."""

    def __init__(self, in_dim: int, n_prototypes: int, hidden: int, bottleneck: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.randn(n_prototypes, bottleneck) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        return z @ F.normalize(self.prototypes, dim=-1).t()


def _all_reduce(t: Tensor) -> Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn(scores: Tensor, temp: float, iters: int = 3) -> Tensor:
    """Sinkhorn-Knopp: soft assignments (rows sum to 1) with equal prototype use over the
    (global, all-process) batch."""
    q = torch.exp((scores.float() - scores.max()) / temp).t()  # K x B
    n = torch.tensor([q.shape[1]], device=q.device, dtype=q.dtype)
    b, k = float(_all_reduce(n)), q.shape[0]
    q /= _all_reduce(q.sum()).clamp(min=1e-30)
    for _ in range(iters):
        q /= _all_reduce(q.sum(1, keepdim=True)).clamp(min=1e-30)
        q /= k
        q /= q.sum(0, keepdim=True).clamp(min=1e-30)
        q /= b
    return (q * b).t()


def _cell_mask(grid: np.ndarray, cell: int, ratio: float, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask ``ratio`` of the occupied ``cell``^3 cells (at least one kept visible).

    Returns (masked point flag, unique cells (M, 3), masked flag per cell)."""
    cells, inv = np.unique(np.floor_divide(grid, cell), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    m = len(cells)
    n_mask = min(int(round(ratio * m)), m - 1)
    cell_masked = np.zeros(m, dtype=bool)
    if n_mask > 0:
        cell_masked[rng.choice(m, size=n_mask, replace=False)] = True
    return cell_masked[inv], cells, cell_masked


def _grid_of(points: np.ndarray, volume, voxel_size: float) -> np.ndarray:
    return np.floor((points - volume.lower_cm) / voxel_size + 1e-3).astype(np.int64)


# ============================================================================ distill
class DistillModel(nn.Module):
    """Student (or, deep-copied, teacher): encoder + event and point prototype heads."""

    def __init__(self, encoder: PointEncoder, cfg: PretrainConfig):
        super().__init__()
        self.encoder = encoder
        c = encoder.config
        self.event_head = ProtoHead(c.token_dim, cfg.n_prototypes, cfg.proj_hidden, cfg.proj_bottleneck)
        self.point_head = ProtoHead(c.out_channels, cfg.n_point_prototypes, cfg.proj_hidden,
                                    cfg.proj_bottleneck)

    def forward(self, inputs: dict[str, Tensor], point_rows: Optional[Tensor] = None
                ) -> tuple[Tensor, Tensor]:
        out = self.encoder(inputs)
        feats = out.point_features if point_rows is None else out.point_features[point_rows]
        return self.event_head(out.pooled), self.point_head(feats)


def distill_batch(evs, rng: np.random.Generator, cfg: PretrainConfig, voxel_size: float
                  ) -> dict[str, Any]:
    """Views of every event, the student / teacher batches and the matches between them."""
    aug = Augment(jitter_voxels=cfg.jitter_voxels, energy_scale=cfg.energy_scale)
    G, L = cfg.n_global, cfg.n_local
    V = G + L
    s_pts, s_e, s_feat, t_pts, t_e = [], [], [], [], []
    ev_pairs_s, ev_pairs_t, pt_s, pt_t = [], [], [], []
    s_off = t_off = 0
    volume = evs[0].meta.volume
    for b, ev in enumerate(evs):
        pts, en = ev.points, ev.energy
        views = [subsample_indices(len(pts), rng, cfg.global_keep) for _ in range(G)]
        views += [crop_indices(pts, rng, cfg.local_frac) for _ in range(L)]
        starts = []
        for v, idx in enumerate(views):
            p, e = aug(pts[idx], en[idx], rng, voxel_size)
            ef = energy_feature(torch.from_numpy(e))
            if v < G:  # teacher gets it clean; the student's copy is masked
                t_pts.append(p), t_e.append(e)
                masked, _, _ = _cell_mask(_grid_of(p, volume, voxel_size), cfg.mask_cell,
                                          cfg.mask_ratio, rng)
                ef = ef.masked_fill(torch.from_numpy(masked), MASK_ENERGY_FEATURE)
            s_pts.append(p), s_e.append(e), s_feat.append(ef)
            starts.append(s_off)
            s_off += len(idx)
        t_starts = []
        for g in range(G):
            t_starts.append(t_off)
            t_off += len(views[g])
        for g in range(G):
            lookup = np.full(len(pts), -1, dtype=np.int64)
            lookup[views[g]] = np.arange(len(views[g])) + t_starts[g]
            for v in range(V):
                if v == g:
                    continue
                ev_pairs_s.append(b * V + v), ev_pairs_t.append(b * G + g)
                t = lookup[views[v]]
                ok = t >= 0
                pt_s.append(np.flatnonzero(ok) + starts[v]), pt_t.append(t[ok])
    pt_s, pt_t = np.concatenate(pt_s), np.concatenate(pt_t)
    if len(pt_s) > cfg.max_point_pairs:
        keep = rng.choice(len(pt_s), cfg.max_point_pairs, replace=False)
        pt_s, pt_t = pt_s[keep], pt_t[keep]
    # only the rows that take part in a match go through the point heads
    s_rows, s_inv = np.unique(pt_s, return_inverse=True)
    t_rows, t_inv = np.unique(pt_t, return_inverse=True)
    return {
        "student": batch_from_arrays(s_pts, s_e, volume, voxel_size, energy_feat=s_feat),
        "teacher": batch_from_arrays(t_pts, t_e, volume, voxel_size),
        "event_pairs": (torch.tensor(ev_pairs_s), torch.tensor(ev_pairs_t)),
        "student_rows": torch.from_numpy(s_rows), "teacher_rows": torch.from_numpy(t_rows),
        "point_pairs": (torch.from_numpy(s_inv.reshape(-1)), torch.from_numpy(t_inv.reshape(-1))),
    }


class DistillTargets(nn.Module):
    """Teacher-side target computation (holds the centres for ``--targets center``)."""

    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("event_center", torch.zeros(cfg.n_prototypes))
        self.register_buffer("point_center", torch.zeros(cfg.n_point_prototypes))

    @torch.no_grad()
    def forward(self, scores: Tensor, temp: float, which: str) -> Tensor:
        if getattr(self.cfg, f"{which}_targets") == "sinkhorn":
            return sinkhorn(scores, temp)
        center = getattr(self, f"{which}_center")
        probs = F.softmax((scores.float() - center) / temp, dim=-1)
        n = torch.tensor([scores.shape[0]], device=scores.device, dtype=torch.float32)
        mean = _all_reduce(scores.float().sum(0)) / _all_reduce(n)
        center.mul_(self.cfg.center_momentum).add_(mean, alpha=1 - self.cfg.center_momentum)
        return probs


def _cross_entropy(q: Tensor, student_scores: Tensor, temp: float) -> Tensor:
    return -(q * F.log_softmax(student_scores.float() / temp, dim=-1)).sum(-1).mean()


def distill_loss(model, teacher, targets: DistillTargets, batch: dict, cfg: PretrainConfig,
                 step: int) -> tuple[Tensor, dict[str, float]]:
    warm = max(1, int(cfg.teacher_temp_warmup * cfg.steps))
    t_temp = cfg.teacher_temp_start + (cfg.teacher_temp - cfg.teacher_temp_start) * min(1.0, step / warm)
    s_event, s_point = model(batch["student"], batch["student_rows"])
    with torch.no_grad():
        t_event, t_point = teacher(batch["teacher"], batch["teacher_rows"])
        q_event = targets(t_event, t_temp, "event")
        q_point = targets(t_point, t_temp, "point")
    es, et = batch["event_pairs"]
    ps, pt = batch["point_pairs"]
    l_event = _cross_entropy(q_event[et], s_event[es], cfg.student_temp)
    l_point = _cross_entropy(q_point[pt], s_point[ps], cfg.student_temp)
    loss = l_event + cfg.point_weight * l_point
    # diagnostics: entropy of the mean teacher assignment (collapse to one prototype -> 0) and
    # mean entropy of single targets (uniform targets, i.e. no signal -> log K)
    # and KL(teacher || student) = cross-entropy - target entropy: how well the student agrees
    h = lambda q: float(-(q * (q + 1e-12).log()).sum(-1).mean())  # noqa: E731
    kl = l_event.item() - h(q_event[et]) + cfg.point_weight * (l_point.item() - h(q_point[pt]))
    return loss, {"event": l_event.item(), "point": l_point.item(), "kl": kl,
                  "event_h_mean": h(q_event.mean(0)), "event_h_row": h(q_event),
                  "point_h_mean": h(q_point.mean(0)), "point_h_row": h(q_point),
                  "teacher_temp": t_temp}


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    for pt, ps in zip(teacher.parameters(), student.parameters()):
        pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)
    for bt, bs in zip(teacher.buffers(), student.buffers()):
        bt.copy_(bs)


# ============================================================================ mpm
class MaskedPointModel(nn.Module):
    """Encoder + an MLP from a mask token's feature to its cell's occupancy and energies."""

    def __init__(self, encoder: PointEncoder, cfg: PretrainConfig):
        super().__init__()
        self.encoder = encoder
        self.n_sub = cfg.mpm_cell ** 3
        c = encoder.config.out_channels
        self.head = nn.Sequential(nn.Linear(c, 256), nn.LayerNorm(256), nn.GELU(),
                                  nn.Linear(256, 2 * self.n_sub))

    def forward(self, inputs: dict[str, Tensor], token_rows: Tensor) -> tuple[Tensor, Tensor]:
        out = self.head(self.encoder(inputs).point_features[token_rows])
        return out[:, :self.n_sub], out[:, self.n_sub:]


def mpm_batch(evs, rng: np.random.Generator, cfg: PretrainConfig, voxel_size: float
              ) -> dict[str, Any]:
    """Visible points + one mask token per masked cell; occupancy / energy targets."""
    aug = Augment(jitter_voxels=cfg.jitter_voxels, energy_scale=cfg.energy_scale)
    s = cfg.mpm_cell
    volume = evs[0].meta.volume
    pts_out, e_out, feat_out, token_rows, occ, energy = [], [], [], [], [], []
    off = 0
    for ev in evs:
        p, e = aug(ev.points, ev.energy, rng, voxel_size)
        grid = _grid_of(p, volume, voxel_size)
        masked, cells, cell_masked = _cell_mask(grid, s, cfg.mpm_mask_ratio, rng)
        mcells = cells[cell_masked]
        # targets: per masked cell, occupancy and summed energy of its s^3 voxels
        cell_index = np.full(len(cells), -1)
        cell_index[cell_masked] = np.arange(len(mcells))
        _, inv = np.unique(np.floor_divide(grid, s), axis=0, return_inverse=True)
        row = cell_index[inv.reshape(-1)][masked]
        sub = grid[masked] - np.floor_divide(grid[masked], s) * s
        lin = (sub[:, 0] * s + sub[:, 1]) * s + sub[:, 2]
        e_cell = np.zeros((len(mcells), s ** 3), dtype=np.float64)
        np.add.at(e_cell, (row, lin), e[masked])
        occ.append(torch.from_numpy(e_cell > 0))
        energy.append(energy_feature(torch.from_numpy(e_cell).float()))
        # inputs: visible points, then the tokens at the masked cells' centres
        tok = (volume.lower_cm + (mcells * s + s / 2.0) * voxel_size).astype(np.float32)
        n_vis = int((~masked).sum())
        pts_out.append(np.concatenate([p[~masked], tok]))
        e_out.append(np.concatenate([e[~masked], np.zeros(len(tok), np.float32)]))
        feat_out.append(torch.cat([energy_feature(torch.from_numpy(e[~masked])),
                                   torch.full((len(tok),), MASK_ENERGY_FEATURE)]))
        token_rows.append(torch.arange(len(tok)) + off + n_vis)
        off += n_vis + len(tok)
    return {"inputs": batch_from_arrays(pts_out, e_out, volume, voxel_size, energy_feat=feat_out),
            "token_rows": torch.cat(token_rows), "occupancy": torch.cat(occ).float(),
            "energy": torch.cat(energy)}


def mpm_loss(model, batch: dict, cfg: PretrainConfig) -> tuple[Tensor, dict[str, float]]:
    occ_logit, e_pred = model(batch["inputs"], batch["token_rows"])
    occ = batch["occupancy"]
    pos_weight = torch.tensor(cfg.mpm_pos_weight, device=occ.device)
    l_occ = F.binary_cross_entropy_with_logits(occ_logit.float(), occ, pos_weight=pos_weight)
    on = occ > 0
    l_e = F.mse_loss(e_pred.float()[on], batch["energy"][on]) if bool(on.any()) else e_pred.sum() * 0
    with torch.no_grad():
        pred = occ_logit > 0
        iou = float((pred & on).sum() / (pred | on).sum().clamp(min=1))
    return l_occ + cfg.mpm_energy_weight * l_e, {"occupancy": l_occ.item(), "energy": l_e.item(),
                                                 "occupancy_iou": iou}


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


def _resume(cfg: PretrainConfig, state_dir: Path, m: _Models, prog: _Progress, rank: int,
            main: bool, run: Path) -> None:
    if cfg.resume and has_train_state(state_dir):
        st = load_train_state(state_dir, modules=m.modules, optimizer=m.optimizer)
        prog.step, extra = st["step"], st["extra"]
        prog.events_seen, prog.stream_pos = int(extra["events_seen"]), int(extra["stream_pos"])
        prog.rng.bit_generator.state = extra["numpy_rng"][rank] if rank < len(extra["numpy_rng"]) \
            else prog.rng.bit_generator.state
        if main:
            print(f"resumed {run} at step {prog.step}")
    elif cfg.resume and main:
        print(f"--resume: no state in {state_dir}; starting from scratch")


def _save(run: Path, cfg: PretrainConfig, m: _Models, prog: _Progress, spec: DataSpec, command: str,
          world: int, log: LossLog, final_metrics: dict) -> None:
    """The resumable state, the shipped encoder (the teacher's for distill) and the loss plot."""
    numpy_states = [prog.rng.bit_generator.state]  # this process; others restart their own
    save_train_state(run / "state", step=prog.step, modules=m.modules, optimizer=m.optimizer,
                     extra={"events_seen": prog.events_seen, "stream_pos": prog.stream_pos,
                            "numpy_rng": numpy_states, "config": asdict(cfg)})
    shipped = m.teacher.encoder if m.teacher is not None else m.modules["student"].encoder
    save_weights(run / "encoder.safetensors", shipped, manifest={
        "kind": "pretrained-encoder", "objective": cfg.objective,
        "weights_from": "EMA teacher" if m.teacher is not None else "student",
        "command": command, "data": {**spec.to_dict(), "split": "pretrain"},
        "pretrain_config": asdict(cfg), "step": prog.step, "events_seen": prog.events_seen * world,
        "processes": world, "metrics": final_metrics})
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


def pretrain(cfg: PretrainConfig, command: Optional[str] = None) -> dict[str, Any]:
    """Run (or resume) pretraining; returns a summary (also in ``run_dir/encoder.json``)."""
    accelerator = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(
        find_unused_parameters=True)])
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    run = Path(cfg.run_dir)
    if main:
        run.mkdir(parents=True, exist_ok=True)
    command = command or command_line()

    enc_cfg = cfg.encoder_config()
    spec = DataSpec(modes=cfg.data_mode, seed=cfg.seed, voxel_size_cm=enc_cfg.voxel_size_cm,
                    files=cfg.files)
    voxel = enc_cfg.voxel_size_cm
    torch.manual_seed(cfg.seed)  # same initial weights on every process
    m = _build_models(cfg, enc_cfg, accelerator)
    prog = _Progress(rng=np.random.default_rng([cfg.seed, rank, 7]))
    _resume(cfg, run / "state", m, prog, rank, main, run)
    stream = positioned(event_stream(spec, "pretrain", start=prog.stream_pos, rank=rank, world=world,
                                     min_points=0), prog.stream_pos, min_points=8)
    log = LossLog(run, resume_step=prog.step, title=f"pretrain {cfg.objective} ({enc_cfg.name})") \
        if main else None
    n_params = sum(p.numel() for p in m.encoder.parameters())
    if main:
        print(f"pretrain {cfg.objective}: encoder {enc_cfg.name} ({n_params / 1e6:.2f} M params), "
              f"{world} process(es) on {accelerator.device}, {cfg.batch_size} events/process/step, "
              f"data {spec.to_dict()}")

    def checkpoint(final_metrics: dict) -> None:
        accelerator.wait_for_everyone()
        if main:
            _save(run, cfg, m, prog, spec, command, world, log, final_metrics)

    pbar = tqdm(total=cfg.steps, initial=prog.step, disable=not main, desc=f"pretrain {cfg.objective}",
                unit="step", dynamic_ncols=True)
    t_start = time.time()
    t_last, steps_since, recent = t_start, 0, []
    metrics: dict[str, float] = {}
    while prog.step < cfg.steps:
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
        if prog.step % cfg.log_every == 0 or prog.step == cfg.steps:
            now = time.time()
            sec = (now - t_last) / steps_since
            t_last, steps_since = now, 0
            metrics = {"loss": float(np.mean(recent)), **parts, "sec_per_step": sec}
            recent = []
            if main:
                log.add(step=prog.step, loss=metrics["loss"], **parts, lr=lr, sec_per_step=sec,
                        events=prog.events_seen * world, elapsed_min=(now - t_start) / 60)
                pbar.set_postfix(loss=f"{metrics['loss']:.4f}", s_step=f"{sec:.2f}")
        out_of_time = cfg.time_limit_min is not None and \
            (time.time() - t_start) / 60 >= cfg.time_limit_min
        if prog.step % cfg.ckpt_every == 0 or prog.step == cfg.steps or out_of_time:
            checkpoint(metrics)
        if out_of_time:
            if main:
                print(f"time limit {cfg.time_limit_min} min reached at step {prog.step}")
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
