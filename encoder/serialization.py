"""Space-filling-curve codes of integer voxel grids (vectorised torch, any device).

A code orders voxels along a curve that keeps neighbours in space close in the sequence, so
that cutting the sorted sequence into patches gives local neighbourhoods for attention
(Point Transformer V3's "serialization"). Four orders:

- ``z``: z-order / Morton, bits of (x, y, z) interleaved, x most significant;
- ``hilbert``: the 3D Hilbert curve (Skilling's transpose algorithm); consecutive codes are
  face-adjacent voxels;
- ``z-trans`` / ``hilbert-trans``: the same curves on (y, x, z), so that patch boundaries fall
  elsewhere.

``encode`` puts the event (batch) index above the ``3 * depth`` curve bits, so one sort of a
ragged batch orders every event's points along its curve, events one after another.
Codes are int64: ``3 * depth + bits(batch)`` must stay below 63.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
_MAX_DEPTH = 20  # 60 bits for the curve, 3 left for the batch index


# ---------------------------------------------------------------------------- bit interleaving
def _spread3(v: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits between each of the lowest 21 bits of ``v``."""
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def _compact3(v: torch.Tensor) -> torch.Tensor:
    """Inverse of ``_spread3``: keep every third bit, packed."""
    v = v & 0x1249249249249249
    v = (v ^ (v >> 2)) & 0x10C30C30C30C30C3
    v = (v ^ (v >> 4)) & 0x100F00F00F00F00F
    v = (v ^ (v >> 8)) & 0x1F0000FF0000FF
    v = (v ^ (v >> 16)) & 0x1F00000000FFFF
    v = (v ^ (v >> 32)) & 0x1FFFFF
    return v


def _interleave(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (_spread3(a) << 2) | (_spread3(b) << 1) | _spread3(c)


def _deinterleave(code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _compact3(code >> 2), _compact3(code >> 1), _compact3(code)


# ---------------------------------------------------------------------------- curves
def morton_encode(grid: torch.Tensor) -> torch.Tensor:
    """Z-order code of (N, 3) non-negative integer coordinates (< 2**21 each)."""
    grid = grid.long()
    return _interleave(grid[:, 0], grid[:, 1], grid[:, 2])


def morton_decode(code: torch.Tensor) -> torch.Tensor:
    """(N, 3) coordinates of z-order codes."""
    return torch.stack(_deinterleave(code.long()), dim=1)


def hilbert_encode(grid: torch.Tensor, depth: int) -> torch.Tensor:
    """Hilbert code of (N, 3) non-negative integer coordinates (< 2**depth each).

    Skilling (2004), "Programming the Hilbert curve": turn the coordinates into the
    "transposed" Hilbert index in place, then interleave its bits.
    """
    x = [grid[:, i].long().clone() for i in range(3)]
    # Levels above the highest set bit of the data only rotate the axes (x, y, z) -> (z, x, y)
    # (both exchanges swap every bit); do that directly and start at the data's top bit.
    bits = max(int(grid.max()).bit_length(), 1) if grid.numel() else 1
    bits = min(bits, depth)
    for _ in range((depth - bits) % 3):
        x = [x[2], x[0], x[1]]
    top = 1 << (bits - 1)
    q = top
    while q > 1:  # inverse undo of the excess work
        p = q - 1
        for i in range(3):
            hit = (x[i] & q) != 0
            if i == 0:
                x[0] = torch.where(hit, x[0] ^ p, x[0])
            else:
                t = (x[0] ^ x[i]) & p
                x[0], x[i] = torch.where(hit, x[0] ^ p, x[0] ^ t), torch.where(hit, x[i], x[i] ^ t)
        q >>= 1
    for i in (1, 2):  # Gray encode
        x[i] = x[i] ^ x[i - 1]
    t = torch.zeros_like(x[0])
    q = top
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return _interleave(x[0] ^ t, x[1] ^ t, x[2] ^ t)


def hilbert_decode(code: torch.Tensor, depth: int) -> torch.Tensor:
    """(N, 3) coordinates of Hilbert codes (inverse of ``hilbert_encode``)."""
    x = list(_deinterleave(code.long()))
    t = x[2] >> 1  # Gray decode
    for i in (2, 1):
        x[i] = x[i] ^ x[i - 1]
    x[0] = x[0] ^ t
    end = 2 << (depth - 1)
    q = 2
    while q != end:  # undo the excess work
        p = q - 1
        for i in (2, 1, 0):
            hit = (x[i] & q) != 0
            if i == 0:
                x[0] = torch.where(hit, x[0] ^ p, x[0])
            else:
                t = (x[0] ^ x[i]) & p
                x[0], x[i] = torch.where(hit, x[0] ^ p, x[0] ^ t), torch.where(hit, x[i], x[i] ^ t)
        q <<= 1
    return torch.stack(x, dim=1)


# ---------------------------------------------------------------------------- batched codes
def _check(grid: torch.Tensor, depth: int) -> None:
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"serialization: grid must be (N, 3), got {tuple(grid.shape)}")
    if grid.dtype.is_floating_point:
        raise ValueError("serialization: grid must hold integer voxel indices")
    if not 1 <= depth <= _MAX_DEPTH:
        raise ValueError(f"serialization: depth must be 1..{_MAX_DEPTH}, got {depth}")
    if grid.numel() and (int(grid.min()) < 0 or int(grid.max()) >= (1 << depth)):
        raise ValueError(f"serialization: grid indices must lie in [0, 2**{depth}); got "
                         f"{int(grid.min())}..{int(grid.max())} (shift each event to start at 0, "
                         f"or raise depth)")


def encode(grid: torch.Tensor, batch: Optional[torch.Tensor] = None, depth: int = 16,
           order: str = "z") -> torch.Tensor:
    """int64 codes (N,) of (N, 3) voxel indices along ``order``, event index in the high bits."""
    _check(grid, depth)
    grid = grid.long()
    if order.endswith("-trans"):
        grid = grid[:, [1, 0, 2]]
    if order in ("z", "z-trans"):
        code = morton_encode(grid)
    elif order in ("hilbert", "hilbert-trans"):
        code = hilbert_encode(grid, depth)
    else:
        raise ValueError(f"serialization: unknown order {order!r}; choose from {ORDERS}")
    if batch is not None:
        batch = batch.long()
        if batch.numel() and int(batch.max()) >= (1 << (63 - 3 * depth)):
            raise ValueError(f"serialization: batch index {int(batch.max())} does not fit above "
                             f"{3 * depth} code bits")
        code = code | (batch << (3 * depth))
    return code


def decode(code: torch.Tensor, depth: int = 16, order: str = "z") -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``encode``: (grid (N, 3), batch (N,))."""
    code = code.long()
    batch = code >> (3 * depth)
    code = code & ((1 << (3 * depth)) - 1)
    if order in ("z", "z-trans"):
        grid = morton_decode(code)
    elif order in ("hilbert", "hilbert-trans"):
        grid = hilbert_decode(code, depth)
    else:
        raise ValueError(f"serialization: unknown order {order!r}; choose from {ORDERS}")
    if order.endswith("-trans"):
        grid = grid[:, [1, 0, 2]]
    return grid, batch


def serialize(grid: torch.Tensor, batch: torch.Tensor, orders: Sequence[str] = ORDERS,
              depth: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes, sorting permutation and its inverse for each order, each (n_orders, N).

    ``points[order[k]]`` is the batch in the k-th curve's order (event by event), and
    ``inverse[k]`` maps a point to its position in that sequence.
    """
    codes = torch.stack([encode(grid, batch, depth, o) for o in orders])
    perm = torch.argsort(codes, dim=1, stable=True)
    inverse = torch.empty_like(perm)
    inverse.scatter_(1, perm, torch.arange(perm.shape[1], device=perm.device).expand_as(perm))
    return codes, perm, inverse
