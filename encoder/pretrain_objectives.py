"""The two self-supervised objectives of ``larsight pretrain`` (see ``encoder.pretrain``):
self-distillation (student / EMA teacher, event- and point-level prototype heads) and masked
point modelling; each gives its batch builder, model wrapper and loss."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import PointEncoder, energy_feature
from .data import MASK_ENERGY_FEATURE, Augment, batch_from_arrays, crop_indices, subsample_indices

if TYPE_CHECKING:
    from .pretrain import PretrainConfig

__all__ = ["ProtoHead", "sinkhorn", "DistillModel", "distill_batch", "DistillTargets", "distill_loss",
           "ema_update", "MaskedPointModel", "mpm_batch", "mpm_loss"]


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
