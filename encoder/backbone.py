"""Hierarchical serialized-attention point transformer (a pure-PyTorch PTv3-style U-Net).

Config in, tensors out::

    model = PointEncoder(EncoderConfig.preset("tiny"))
    out = model(collate_events(events, model.config))  # or model(coords, grid, feat, offset)
    out.point_features      # (N, D_out)   per point, full resolution, input order
    out.event_tokens        # (B, T, D_tok) coarsest-stage points of each event, padded
    out.event_token_mask    # (B, T) bool  True where a token is real
    out.event_token_coords  # (B, T, 3)    token positions, cm (mean of their points)
    out.pooled              # (B, D_tok)   one vector per event

A batch is ragged: the points of all events are concatenated and ``offset`` holds the
cumulative point counts (Pointcept convention: ``offset[b]`` is the end of event ``b``).
Nothing is padded except, per stage, the one patch of an event that has fewer points than
the patch size.

How it works, per stage of the U-Net:

1. The stage's voxels are sorted along a few space-filling curves
   (``encoder.serialization``); the event index sits in the high bits of the code, so each
   event is one contiguous run of the sorted sequence.
2. Each event's run is cut into patches of ``patch_size`` points. The last patch of an event
   is the event's last ``patch_size`` points (it overlaps the previous patch; each point keeps
   the output of the patch it belongs to), so no patch ever mixes events and no padding is
   needed, except for an event smaller than a patch: its single patch is padded and the
   padding is masked out of the attention. Attention is
   ``F.scaled_dot_product_attention`` over (n_patches, heads, patch_size, head_dim), which
   takes the flash / memory-efficient kernels on a GPU.
3. Consecutive blocks use different curves (shuffled per stage in training), so information
   crosses patch boundaries.
4. Positions enter through a conditional positional encoding: a depthwise submanifold
   convolution over the 3x3x3 voxel neighbourhood, found by hashing voxel keys and
   ``torch.searchsorted`` (no sparse-convolution library).
5. Between stages the voxel grid is coarsened by the stride (``torch.unique`` of the coarse
   voxel keys); features are projected and max-pooled with ``scatter_reduce``; the decoder
   unpools with the stored inverse index and adds skip connections, so small features
   (Michel electrons, delta rays) reach the per-point output from the full-resolution stage.

Only per-event operations are used (LayerNorm, never BatchNorm; drop-path per event), so an
event's outputs do not depend on the other events in its batch, and every step works on a
canonical, content-defined ordering of the voxels, so outputs are equivariant to the order
of the input points. Several points in one voxel of ``grid`` are merged (features averaged)
and share one output.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .config import EncoderConfig
from .serialization import encode


# ============================================================================ outputs
@dataclass
class EncoderOutput:
    """What ``PointEncoder.forward`` returns (B events, N points in all)."""

    point_features: Tensor
    """(N, config.out_channels) per input point, in input order."""
    event_tokens: Tensor
    """(B, T, config.token_dim) tokens per event, zero-padded to the largest T in the batch."""
    event_token_mask: Tensor
    """(B, T) bool, True for real tokens (the Q-Former's encoder_attention_mask)."""
    event_token_coords: Tensor
    """(B, T, 3) token positions in cm (mean coordinate of the points pooled into each)."""
    pooled: Tensor
    """(B, config.token_dim) event embedding (mean over the coarsest stage, normalised)."""


# ============================================================================ ragged geometry
def _counts_from_offset(offset: Tensor) -> Tensor:
    return torch.diff(offset, prepend=offset.new_zeros(1))


def _starts(counts: Tensor) -> Tensor:
    return torch.cumsum(counts, 0) - counts


def _voxel_keys(grid: Tensor, batch: Tensor, size: int) -> Tensor:
    """Unique int64 key per (event, voxel); ``grid`` entries must lie in [0, size)."""
    return ((batch * size + grid[:, 0]) * size + grid[:, 1]) * size + grid[:, 2]


def _key_size(grid: Tensor, batch: Tensor, margin: int = 0) -> int:
    size = (int(grid.max()) + 1 + 2 * margin) if grid.numel() else 1
    n_events = (int(batch.max()) + 1) if batch.numel() else 1
    if n_events * size ** 3 >= 2 ** 62:
        raise ValueError(f"PointEncoder: grid extent {size} is too large to hash "
                         f"{n_events} events into int64 keys")
    return size


def _unique_voxels(grid: Tensor, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct (event, voxel) pairs, sorted by event then voxel.

    Returns (grid (M, 3), batch (M,), cluster (N,)) with ``cluster[i]`` the row of point ``i``.
    """
    keys = _voxel_keys(grid, batch, _key_size(grid, batch))
    uniq, cluster = torch.unique(keys, sorted=True, return_inverse=True)
    first = torch.full((uniq.numel(),), grid.shape[0], dtype=torch.long, device=grid.device)
    first.scatter_reduce_(0, cluster, torch.arange(grid.shape[0], device=grid.device), "amin")
    return grid[first], batch[first], cluster


def _segment_mean(x: Tensor, index: Tensor, n: int, weight: Optional[Tensor] = None) -> Tensor:
    """(Weighted) mean of the rows of ``x`` sharing an ``index`` in [0, n); summed in fp32."""
    w = torch.ones_like(index, dtype=torch.float32) if weight is None else weight.float()
    total = torch.zeros((n,) + x.shape[1:], dtype=torch.float32, device=x.device)
    total.index_add_(0, index, x.float() * w.view((-1,) + (1,) * (x.dim() - 1)))
    norm = torch.zeros(n, dtype=torch.float32, device=x.device).index_add_(0, index, w)
    return (total / norm.clamp_(min=1e-12).view((n,) + (1,) * (x.dim() - 1))).to(x.dtype)


@dataclass
class _PatchPlan:
    """How one stage's points are cut into attention patches along one curve."""

    index: Tensor
    """(P, K) point rows gathered into each patch."""
    home: Tensor
    """(M,) position in the flattened (P * K) output that each point takes its result from."""
    mask: Optional[Tensor]
    """(P, 1, 1, K) bool keys to attend to; None when no patch is padded."""


@dataclass
class _Level:
    """The voxels of one U-Net stage and everything derived from their geometry."""

    grid: Tensor        # (M, 3) int64 voxel indices, each event starting at 0
    coords: Tensor      # (M, 3) mean position of the input points in each voxel, cm
    batch: Tensor       # (M,) event index, sorted
    counts: Tensor      # (B,) voxels per event
    size: Tensor        # (M,) number of input points in each voxel (weights for positions)
    cluster: Optional[Tensor] = None      # (M_finer,) row of each finer-level voxel here
    neighbours: Optional[Tensor] = None   # (k^3, M) rows of the k^3 neighbourhood, M if empty
    orders: Sequence[str] = ()            # curve of each block (cycled), shuffled in training
    depth: int = 16                       # bits per axis of the curve codes
    plans: dict = field(default_factory=dict)  # (order, patch_size) -> _PatchPlan

    @property
    def n_events(self) -> int:
        return self.counts.numel()

    def coarsen(self, stride: int) -> "_Level":
        grid, batch, cluster = _unique_voxels(torch.div(self.grid, stride, rounding_mode="floor"),
                                              self.batch)
        n = grid.shape[0]
        return _Level(grid=grid, coords=_segment_mean(self.coords, cluster, n, self.size),
                      batch=batch, counts=torch.bincount(batch, minlength=self.n_events),
                      size=torch.zeros(n, device=grid.device).index_add_(0, cluster, self.size),
                      cluster=cluster)

    def plan(self, block_index: int, patch_size: int) -> _PatchPlan:
        """Patches for the ``block_index``-th block at this level (encoder, then decoder)."""
        order = self.orders[block_index % len(self.orders)]
        if (order, patch_size) not in self.plans:
            perm = torch.argsort(encode(self.grid, self.batch, self.depth, order), stable=True)
            self.plans[order, patch_size] = _patch_plan(perm, self.counts, patch_size)
        return self.plans[order, patch_size]


def _patch_plan(perm: Tensor, counts: Tensor, patch_size: int) -> _PatchPlan:
    """Cut each event's run of the sorted sequence ``perm`` into patches (see module doc).

    Events with ``n >= K`` points get ``ceil(n / K)`` full patches, the last one being the
    event's last K points; an event with ``n < K`` gets one patch padded with a masked copy of
    its first point. ``K = min(patch_size, largest event)``: when every event fits in one
    patch, padding to the largest is enough, and that leaves each event's result unchanged.
    """
    device = perm.device
    n_events = counts.numel()
    k = min(patch_size, int(counts.max()))
    starts = _starts(counts)
    n_patches = torch.div(counts + k - 1, k, rounding_mode="floor")
    first_patch = _starts(n_patches)
    total = int(n_patches.sum())

    def window_start(event: Tensor, i: Tensor) -> Tensor:
        last = i == n_patches[event] - 1
        return torch.where(last, (counts[event] - k).clamp(min=0), i * k)

    # patches -> the points they gather
    patch_event = torch.repeat_interleave(torch.arange(n_events, device=device), n_patches,
                                          output_size=total)
    i = torch.arange(total, device=device) - first_patch[patch_event]
    local = window_start(patch_event, i)[:, None] + torch.arange(k, device=device)
    valid = local < counts[patch_event][:, None]
    seq = starts[patch_event][:, None] + torch.where(valid, local, 0)
    index = perm[seq]

    # points -> the patch slot holding their result
    m = perm.numel()
    seq_event = torch.repeat_interleave(torch.arange(n_events, device=device), counts,
                                        output_size=m)
    pos = torch.arange(m, device=device) - starts[seq_event]
    ip = torch.minimum(torch.div(pos, k, rounding_mode="floor"), n_patches[seq_event] - 1)
    flat = (first_patch[seq_event] + ip) * k + pos - window_start(seq_event, ip)
    home = torch.empty_like(flat)
    home[perm] = flat

    mask = None if bool(valid.all()) else valid[:, None, None, :]
    return _PatchPlan(index=index, home=home, mask=mask)


def _neighbour_table(grid: Tensor, batch: Tensor, kernel: int) -> Tensor:
    """(kernel^3, M) row of each voxel's neighbour at every offset, ``M`` where there is none."""
    r = kernel // 2
    m = grid.shape[0]
    size = _key_size(grid, batch, margin=r)
    # rows come from _unique_voxels, sorted by (event, x, y, z): the keys are already sorted
    keys = _voxel_keys(grid + r, batch, size)
    axis = torch.arange(-r, r + 1, device=grid.device)
    offsets = torch.cartesian_prod(axis, axis, axis)
    delta = (offsets[:, 0] * size + offsets[:, 1]) * size + offsets[:, 2]
    query = keys[None, :] + delta[:, None]
    pos = torch.searchsorted(keys, query).clamp_(max=m - 1)
    return torch.where(keys[pos] == query, pos, m)


# ============================================================================ layers
class NeighbourhoodCPE(nn.Module):
    """Conditional positional encoding: depthwise k^3 submanifold conv, then Linear + LayerNorm.

    The pure-PyTorch stand-in for PTv3's sparse-conv xCPE: each voxel sums its occupied
    neighbours' features with a per-offset, per-channel weight.
    """

    def __init__(self, channels: int, kernel: int, eps: float, use_checkpoint: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(kernel ** 3, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.linear = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels, eps=eps)
        self.use_checkpoint = use_checkpoint
        nn.init.uniform_(self.weight, -1 / math.sqrt(kernel ** 3), 1 / math.sqrt(kernel ** 3))

    def _conv(self, x: Tensor, neighbours: Tensor) -> Tensor:
        padded = F.pad(x, (0, 0, 0, 1))  # row M is the zero feature of an empty neighbour
        # one offset at a time: much faster (and lighter) than gathering (M, k^3, C) at once
        y = torch.addcmul(self.bias, padded.index_select(0, neighbours[0]), self.weight[0])
        for k in range(1, neighbours.shape[0]):
            y.addcmul_(padded.index_select(0, neighbours[k]), self.weight[k])
        return y

    def forward(self, x: Tensor, neighbours: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            y = checkpoint(self._conv, x, neighbours, use_reentrant=False)
        else:
            y = self._conv(x, neighbours)
        return self.norm(self.linear(y))


class SerializedAttention(nn.Module):
    """Multi-head self-attention inside the patches of a ``_PatchPlan``."""

    def __init__(self, channels: int, num_heads: int, qkv_bias: bool, attn_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.attn_drop = attn_drop

    def forward(self, x: Tensor, plan: _PatchPlan) -> Tensor:
        n_patches, k = plan.index.shape
        c = x.shape[1]
        qkv = self.qkv(x).index_select(0, plan.index.view(-1))  # (P * K, 3C)
        q, key, v = qkv.view(n_patches, k, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, key, v, attn_mask=plan.mask,
                                             dropout_p=self.attn_drop if self.training else 0.0)
        out = out.transpose(1, 2).reshape(n_patches * k, c).index_select(0, plan.home)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block: x += CPE(x); x += attn(LN(x)); x += MLP(LN(x))."""

    def __init__(self, channels: int, num_heads: int, config: EncoderConfig, drop_path: float):
        super().__init__()
        eps = config.layer_norm_eps
        self.cpe = (NeighbourhoodCPE(channels, config.cpe_kernel, eps, config.checkpoint_cpe)
                    if config.cpe_kernel else None)
        self.norm1 = nn.LayerNorm(channels, eps=eps)
        self.attn = SerializedAttention(channels, num_heads, config.qkv_bias, config.attn_drop)
        self.norm2 = nn.LayerNorm(channels, eps=eps)
        hidden = int(round(channels * config.mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))
        self.drop_path = drop_path

    def _drop(self, y: Tensor, level: _Level) -> Tensor:
        """Stochastic depth, one coin per event (never mixes events)."""
        if not self.training or self.drop_path == 0.0:
            return y
        keep = (torch.rand(level.n_events, device=y.device) >= self.drop_path).to(y.dtype)
        return y * (keep / (1.0 - self.drop_path))[level.batch, None]

    def forward(self, x: Tensor, level: _Level, plan: _PatchPlan) -> Tensor:
        if self.cpe is not None:
            x = x + self.cpe(x, level.neighbours)
        x = x + self._drop(self.attn(self.norm1(x), plan), level)
        return x + self._drop(self.mlp(self.norm2(x)), level)


class Stage(nn.Module):
    """A run of blocks at one resolution; the level's curves are cycled through its blocks,
    continuing after ``first_block`` blocks already run there (decoder after encoder)."""

    def __init__(self, channels: int, num_heads: int, depth: int, patch_size: int,
                 config: EncoderConfig, drop_paths: Sequence[float], first_block: int = 0):
        super().__init__()
        self.patch_size = patch_size
        self.first_block = first_block
        self.blocks = nn.ModuleList(Block(channels, num_heads, config, dp)
                                    for dp in list(drop_paths)[:depth])

    def forward(self, x: Tensor, level: _Level) -> Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, level, level.plan(self.first_block + i, self.patch_size))
        return x


class GridPool(nn.Module):
    """Project, then reduce the points of each coarse voxel (max or mean), LayerNorm, GELU."""

    def __init__(self, in_channels: int, out_channels: int, reduce: str, eps: float):
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels, eps=eps)
        self.reduce = reduce

    def forward(self, x: Tensor, cluster: Tensor, n_out: int) -> Tensor:
        x = self.proj(x)
        if self.reduce == "max":
            out = x.new_zeros(n_out, x.shape[1]).scatter_reduce_(
                0, cluster[:, None].expand_as(x), x, "amax", include_self=False)
        else:
            out = _segment_mean(x, cluster, n_out)
        return F.gelu(self.norm(out))


class GridUnpool(nn.Module):
    """Copy coarse features back to the finer voxels (stored inverse) and add the skip."""

    def __init__(self, coarse_channels: int, skip_channels: int, out_channels: int, eps: float):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(coarse_channels, out_channels),
                                  nn.LayerNorm(out_channels, eps=eps), nn.GELU())
        self.proj_skip = nn.Sequential(nn.Linear(skip_channels, out_channels),
                                       nn.LayerNorm(out_channels, eps=eps), nn.GELU())

    def forward(self, coarse: Tensor, skip: Tensor, cluster: Tensor) -> Tensor:
        return self.proj(coarse).index_select(0, cluster) + self.proj_skip(skip)


# ============================================================================ model
class PointEncoder(nn.Module):
    """Hierarchical serialized-attention point transformer; see the module docstring."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        config.validate()
        self.config = config
        eps = config.layer_norm_eps
        n = config.n_stages
        enc_c, dec_c = config.enc_channels, config.dec_channels

        self.embed = nn.Sequential(nn.Linear(config.in_channels, enc_c[0]),
                                   nn.LayerNorm(enc_c[0], eps=eps), nn.GELU())
        n_blocks = sum(config.enc_depths)
        drop = [config.drop_path * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        self.pools = nn.ModuleList(GridPool(enc_c[s - 1], enc_c[s], config.pool_reduce, eps)
                                   for s in range(1, n))
        self.enc_stages = nn.ModuleList()
        for s in range(n):
            first = sum(config.enc_depths[:s])
            self.enc_stages.append(Stage(enc_c[s], config.enc_num_heads[s], config.enc_depths[s],
                                         config.enc_patch_size[s], config,
                                         drop[first:first + config.enc_depths[s]]))
        self.unpools = nn.ModuleList()
        self.dec_stages = nn.ModuleList()
        for s in range(n - 1):
            coarse = enc_c[-1] if s == n - 2 else dec_c[s + 1]
            self.unpools.append(GridUnpool(coarse, enc_c[s], dec_c[s], eps))
            self.dec_stages.append(Stage(dec_c[s], config.dec_num_heads[s], config.dec_depths[s],
                                         config.dec_patch_size[s], config,
                                         [0.0] * config.dec_depths[s],
                                         first_block=config.enc_depths[s]))
        self.out_norm = nn.LayerNorm(config.out_channels, eps=eps)
        self.token_proj = nn.Linear(enc_c[-1], config.token_dim)
        self.token_norm = nn.LayerNorm(config.token_dim, eps=eps)
        self.pooled_norm = nn.LayerNorm(config.token_dim, eps=eps)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def forward(self, coords: Tensor | Mapping[str, Tensor], grid: Optional[Tensor] = None,
                feat: Optional[Tensor] = None, offset: Optional[Tensor] = None) -> EncoderOutput:
        """Encode a ragged batch.

        Args:
            coords: (N, 3) float point positions in cm (or a dict with all four inputs).
            grid: (N, 3) int64 voxel indices on the model's grid (any per-event origin).
            feat: (N, config.in_channels) float input features (see ``collate_events``).
            offset: (B,) int64 cumulative point counts; event b is rows offset[b-1]:offset[b].
        """
        if isinstance(coords, Mapping):
            coords, grid, feat, offset = (coords[k] for k in ("coords", "grid", "feat", "offset"))
        counts, batch = self._check_inputs(coords, grid, feat, offset)
        cfg = self.config

        # each event's grid starts at 0, so codes and keys only see relative positions
        grid = grid.long()
        lower = torch.full((counts.numel(), 3), torch.iinfo(torch.long).max, dtype=torch.long,
                           device=grid.device)
        lower.scatter_reduce_(0, batch[:, None].expand(-1, 3), grid, "amin")
        grid = grid - lower[batch]
        if int(grid.max()) >= (1 << cfg.serialization_depth):
            raise ValueError(f"PointEncoder: an event spans {int(grid.max()) + 1} voxels along an "
                             f"axis; serialization_depth={cfg.serialization_depth} allows "
                             f"{1 << cfg.serialization_depth}")

        # merge points sharing a voxel; all later work is on the canonical voxel order
        vgrid, vbatch, point_to_voxel = _unique_voxels(grid, batch)
        n_vox = vgrid.shape[0]
        level = _Level(grid=vgrid, coords=_segment_mean(coords.float(), point_to_voxel, n_vox),
                       batch=vbatch, counts=torch.bincount(vbatch, minlength=counts.numel()),
                       size=torch.bincount(point_to_voxel, minlength=n_vox).float())
        x = self.embed(_segment_mean(feat, point_to_voxel, n_vox))

        levels, skips = [], []
        for s, stage in enumerate(self.enc_stages):
            if s > 0:
                level = level.coarsen(cfg.strides[s - 1])
                x = self.pools[s - 1](x, level.cluster, level.grid.shape[0])
            self._prepare(level)
            x = stage(x, level)
            levels.append(level)
            skips.append(x)

        tokens, token_mask, token_coords, pooled = self._event_tokens(x, level)

        for s in reversed(range(cfg.n_stages - 1)):
            x = self.unpools[s](x, skips[s], levels[s + 1].cluster)
            x = self.dec_stages[s](x, levels[s])

        point_features = self.out_norm(x).index_select(0, point_to_voxel)
        return EncoderOutput(point_features=point_features, event_tokens=tokens,
                             event_token_mask=token_mask, event_token_coords=token_coords,
                             pooled=pooled)

    def _check_inputs(self, coords, grid, feat, offset) -> tuple[Tensor, Tensor]:
        cfg = self.config
        if any(t is None for t in (coords, grid, feat, offset)):
            raise ValueError("PointEncoder: coords, grid, feat and offset are all required")
        n = coords.shape[0]
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise ValueError(f"PointEncoder: coords must be (N, 3), got {tuple(coords.shape)}")
        if grid.shape != (n, 3) or grid.dtype.is_floating_point:
            raise ValueError(f"PointEncoder: grid must be integer (N, 3) = ({n}, 3), got "
                             f"{grid.dtype} {tuple(grid.shape)}")
        if feat.shape != (n, cfg.in_channels):
            raise ValueError(f"PointEncoder: feat must be (N, in_channels) = ({n}, "
                             f"{cfg.in_channels}), got {tuple(feat.shape)}")
        if offset.ndim != 1 or offset.numel() == 0 or offset.dtype.is_floating_point:
            raise ValueError("PointEncoder: offset must be a non-empty 1-D integer tensor")
        offset = offset.long().to(coords.device)
        counts = _counts_from_offset(offset)
        if int(offset[-1]) != n:
            raise ValueError(f"PointEncoder: offset[-1] = {int(offset[-1])} but there are {n} points")
        if bool((counts <= 0).any()):
            bad = int(torch.nonzero(counts <= 0)[0])
            raise ValueError(f"PointEncoder: event {bad} has no points (offset must increase)")
        batch = torch.repeat_interleave(torch.arange(counts.numel(), device=coords.device), counts,
                                        output_size=n)
        return counts, batch

    def _prepare(self, level: _Level) -> None:
        """Curves and neighbour table of a level, shared by its encoder and decoder stages."""
        cfg = self.config
        level.orders, level.depth = cfg.orders, cfg.serialization_depth
        if self.training and cfg.shuffle_orders:
            level.orders = [cfg.orders[i] for i in torch.randperm(len(cfg.orders)).tolist()]
        if cfg.cpe_kernel:
            level.neighbours = _neighbour_table(level.grid, level.batch, cfg.cpe_kernel)

    def _event_tokens(self, x: Tensor, level: _Level) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Coarsest-stage voxels as tokens, pooled further (mean) in events above the cap."""
        cap = self.config.n_event_tokens
        n_events = level.n_events
        grid, batch = level.grid, level.batch
        assign = torch.arange(grid.shape[0], device=grid.device)  # coarsest voxel -> token
        while cap is not None:
            over = torch.bincount(batch, minlength=n_events) > cap
            if not bool(over.any()):
                break
            coarser = torch.div(grid, 2, rounding_mode="floor")
            grid, batch, cluster = _unique_voxels(torch.where(over[batch, None], coarser, grid), batch)
            assign = cluster[assign]
        n_tok = grid.shape[0]
        projected = self.token_proj(x)
        tok = self.token_norm(_segment_mean(projected, assign, n_tok))
        tok_coords = _segment_mean(level.coords, assign, n_tok, level.size)
        pooled = self.pooled_norm(_segment_mean(projected, level.batch, n_events))

        tok_counts = torch.bincount(batch, minlength=n_events)
        width = int(tok_counts.max())
        rank = torch.arange(n_tok, device=x.device) - _starts(tok_counts)[batch]
        tokens = tok.new_zeros(n_events, width, tok.shape[1])
        tokens[batch, rank] = tok
        coords = tok_coords.new_zeros(n_events, width, 3)
        coords[batch, rank] = tok_coords
        mask = torch.zeros(n_events, width, dtype=torch.bool, device=x.device)
        mask[batch, rank] = True
        return tokens, mask, coords, pooled


# ============================================================================ batching
def energy_feature(energy_mev: Tensor, scale_mev: float = 0.1) -> Tensor:
    """Log-scaled voxel energy, ``log1p(E / scale)``: 0 at 0 MeV, ~4.6 at 10 MeV."""
    return torch.log1p(energy_mev.clamp(min=0) / scale_mev)


def collate_events(events: Iterable[Any], config: Optional[EncoderConfig] = None, *,
                   voxel_size_cm: Optional[float] = None, device: Any = None) -> dict[str, Tensor]:
    """A ragged batch for ``PointEncoder`` from ``events.Event`` objects (or (points, energy) pairs).

    ``feat`` is (x, y, z) scaled to [-1, 1] over the event's detector volume (or divided by
    100 cm when there is no volume) and ``energy_feature(energy)``; ``grid`` is the voxel
    index on a grid of ``voxel_size_cm`` (default: the config's, else the event's own).
    Several points falling in one voxel are merged by the encoder.
    """
    coords, grids, feats, counts = [], [], [], []
    for ev in events:
        if isinstance(ev, (tuple, list)):
            points, energy, volume = ev[0], ev[1], None
        else:
            points, energy = ev.points, ev.energy
            volume = getattr(getattr(ev, "meta", None), "volume", None)
        p = torch.as_tensor(points, dtype=torch.float32)
        e = torch.as_tensor(energy, dtype=torch.float32)
        if p.ndim != 2 or p.shape[1] != 3 or e.shape != (p.shape[0],):
            raise ValueError(f"collate_events: event {len(counts)} has points {tuple(p.shape)} "
                             f"and energy {tuple(e.shape)}")
        size = voxel_size_cm or (config.voxel_size_cm if config else None)
        if volume is not None:
            lower = torch.as_tensor(volume.lower_cm, dtype=torch.float32)
            half = torch.as_tensor(volume.size_cm, dtype=torch.float32) / 2
            size = size or volume.voxel_size_cm
            xyz = (p - lower - half) / half
        else:
            lower = torch.zeros(3)
            xyz = p / 100.0
            size = size or 0.3
        grids.append(torch.floor((p - lower) / size + 1e-3).long())
        coords.append(p)
        feats.append(torch.cat([xyz, energy_feature(e)[:, None]], dim=1))
        counts.append(p.shape[0])
    batch = {"coords": torch.cat(coords), "grid": torch.cat(grids), "feat": torch.cat(feats),
             "offset": torch.cumsum(torch.tensor(counts, dtype=torch.long), 0)}
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch
