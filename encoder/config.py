"""Configuration of the point-cloud encoder (``encoder.PointEncoder``).

One dataclass, ``EncoderConfig``, describes the whole network; named presets cover the range
from a model that trains on a 2-core laptop CPU (``tiny``) to the Panda-sized backbone for GPUs
(``base``: PTv3 with serialized attention, 5 stages of 48-512 channels, patch size 256).

``to_dict`` / ``from_dict`` round-trip through plain JSON types, for checkpoint manifests.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

SERIALIZATION_ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
"""Space-filling curves understood by ``encoder.serialization.encode``."""


@dataclass
class EncoderConfig:
    """Hyper-parameters of ``PointEncoder``.

    The encoder is a U-Net of ``len(enc_depths)`` stages. Stage ``s`` runs ``enc_depths[s]``
    serialized-attention blocks at ``enc_channels[s]`` channels on a voxel grid
    ``prod(strides[:s])`` times coarser than the input grid; the decoder climbs back with
    ``dec_depths[s]`` blocks at ``dec_channels[s]`` channels per stage (``s < n_stages - 1``),
    so per-point features come out at full resolution with ``dec_channels[0]`` channels.
    Event tokens are the coarsest-stage points of each event (capped at ``n_event_tokens``)
    projected to ``token_channels``.
    """

    # inputs
    in_channels: int = 4
    """Per-point input features; the default layout (``collate_events``) is x, y, z, log-energy."""
    voxel_size_cm: float = 0.3
    """Grid the model was trained on (used by ``collate_events``; the model itself sees indices)."""

    # encoder (one entry per stage)
    enc_depths: tuple[int, ...] = (2, 2, 2, 6, 2)
    enc_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    enc_num_heads: tuple[int, ...] = (2, 4, 8, 16, 32)
    enc_patch_size: tuple[int, ...] = (256, 256, 256, 256, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    """Grid coarsening between consecutive stages (``n_stages - 1`` entries)."""

    # decoder (one entry per stage except the coarsest)
    dec_depths: tuple[int, ...] = (1, 1, 1, 1)
    dec_channels: tuple[int, ...] = (64, 64, 128, 256)
    dec_num_heads: tuple[int, ...] = (4, 4, 8, 16)
    dec_patch_size: tuple[int, ...] = (256, 256, 256, 256)

    # blocks
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.1
    """Stochastic depth, rising linearly to this value over the encoder blocks (per event)."""
    attn_drop: float = 0.0
    layer_norm_eps: float = 1e-5
    cpe_kernel: int = 3
    """Conditional positional encoding: depthwise submanifold conv over the k^3 voxel
    neighbourhood (0 disables it)."""
    checkpoint_cpe: bool = False
    """Recompute the CPE neighbourhood gather in backward (saves (N, k^3, C) per block)."""

    # serialization
    orders: tuple[str, ...] = SERIALIZATION_ORDERS
    shuffle_orders: bool = True
    """In training, shuffle which order each block uses, once per stage and forward pass."""
    serialization_depth: int = 16
    """Bits per axis of the space-filling codes (grid extents up to 2**depth voxels)."""

    # pooling
    pool_reduce: str = "max"
    """How features of the points merged into one coarse voxel are reduced: 'max' or 'mean'."""

    # event tokens
    n_event_tokens: Optional[int] = 128
    """Most tokens per event; events with more coarsest-stage points are pooled further
    (parameter-free, grid stride 2 at a time). ``None``: no cap."""
    token_channels: Optional[int] = None
    """Width of event tokens and ``pooled``; defaults to the coarsest encoder width."""

    name: str = "custom"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                setattr(self, f.name, tuple(value))
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def n_stages(self) -> int:
        return len(self.enc_depths)

    @property
    def out_channels(self) -> int:
        """Width of ``point_features``."""
        return self.dec_channels[0] if self.n_stages > 1 else self.enc_channels[0]

    @property
    def token_dim(self) -> int:
        """Width of ``event_tokens`` and ``pooled``."""
        return self.token_channels or self.enc_channels[-1]

    def validate(self) -> None:
        n = self.n_stages
        if n < 1:
            raise ValueError("EncoderConfig.enc_depths: need at least one stage")
        for name in ("enc_channels", "enc_num_heads", "enc_patch_size"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"EncoderConfig.{name}: expected {n} entries (one per stage), "
                                 f"got {len(getattr(self, name))}")
        for name in ("strides", "dec_depths", "dec_channels", "dec_num_heads", "dec_patch_size"):
            if len(getattr(self, name)) != n - 1:
                raise ValueError(f"EncoderConfig.{name}: expected {n - 1} entries (one per stage "
                                 f"but the coarsest), got {len(getattr(self, name))}")
        for chans, heads, kind in ((self.enc_channels, self.enc_num_heads, "enc"),
                                   (self.dec_channels, self.dec_num_heads, "dec")):
            for c, h in zip(chans, heads):
                if h < 1 or c % h:
                    raise ValueError(f"EncoderConfig.{kind}_num_heads: {h} heads do not divide "
                                     f"{c} channels")
        if any(p < 1 for p in self.enc_patch_size + self.dec_patch_size):
            raise ValueError("EncoderConfig.*_patch_size: patch sizes must be >= 1")
        if any(s < 2 for s in self.strides):
            raise ValueError("EncoderConfig.strides: pooling strides must be >= 2")
        if any(d < 0 for d in self.enc_depths + self.dec_depths):
            raise ValueError("EncoderConfig.*_depths: depths must be >= 0")
        if not self.orders or any(o not in SERIALIZATION_ORDERS for o in self.orders):
            raise ValueError(f"EncoderConfig.orders: each must be one of {SERIALIZATION_ORDERS}, "
                             f"got {self.orders}")
        if self.cpe_kernel < 0 or (self.cpe_kernel and self.cpe_kernel % 2 == 0):
            raise ValueError("EncoderConfig.cpe_kernel: must be 0 (off) or odd")
        if self.pool_reduce not in ("max", "mean"):
            raise ValueError("EncoderConfig.pool_reduce: 'max' or 'mean'")
        if not 1 <= self.serialization_depth <= 20:
            raise ValueError("EncoderConfig.serialization_depth: 1..20 bits per axis")
        if self.n_event_tokens is not None and self.n_event_tokens < 1:
            raise ValueError("EncoderConfig.n_event_tokens: must be >= 1 or None")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError("EncoderConfig.drop_path: must be in [0, 1)")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        """Inverse of ``to_dict``; unknown keys raise (a manifest from another version)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"EncoderConfig.from_dict: unknown keys {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "EncoderConfig":
        """A named preset (``tiny``, ``small``, ``base``) with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"EncoderConfig.preset: unknown preset {name!r}; "
                             f"choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # ~0.9M parameters; trains on a 2-core CPU with ~1-5k points per event at 0.6 cm voxels.
    "tiny": dict(
        voxel_size_cm=0.6,
        enc_depths=(1, 1, 2, 1),
        enc_channels=(32, 64, 96, 128),
        enc_num_heads=(2, 4, 6, 8),
        enc_patch_size=(64, 64, 64, 64),
        strides=(2, 2, 2),
        dec_depths=(1, 1, 1),
        dec_channels=(48, 64, 96),
        dec_num_heads=(2, 4, 6),
        dec_patch_size=(64, 64, 64),
        drop_path=0.0,
        n_event_tokens=64,
    ),
    # a mid-size model for a single small GPU or long CPU runs.
    "small": dict(
        voxel_size_cm=0.3,
        enc_depths=(1, 1, 2, 4, 1),
        enc_channels=(32, 64, 128, 192, 256),
        enc_num_heads=(2, 4, 8, 12, 16),
        enc_patch_size=(128, 128, 128, 128, 128),
        strides=(2, 2, 2, 2),
        dec_depths=(1, 1, 1, 1),
        dec_channels=(64, 64, 128, 192),
        dec_num_heads=(4, 4, 8, 12),
        dec_patch_size=(128, 128, 128, 128),
        drop_path=0.1,
        n_event_tokens=128,
    ),
    # Panda-sized: PTv3 / Sonata encoder layout, patch 256, for GPUs.
    "base": dict(
        voxel_size_cm=0.3,
        enc_depths=(3, 3, 3, 12, 3),
        enc_channels=(48, 96, 192, 384, 512),
        enc_num_heads=(3, 6, 12, 24, 32),
        enc_patch_size=(256, 256, 256, 256, 256),
        strides=(2, 2, 2, 2),
        dec_depths=(2, 2, 2, 2),
        dec_channels=(64, 96, 192, 384),
        dec_num_heads=(4, 6, 12, 24),
        dec_patch_size=(256, 256, 256, 256),
        drop_path=0.3,
        checkpoint_cpe=True,
        n_event_tokens=256,
    ),
}
