"""Detector response knobs applied at voxelisation (see ``events.sim.knobs``): recombination
model, energy scale, per-voxel charge noise, dead voxels and fake (noisy) voxels.

Every function is a no-op that draws nothing from the random stream when its knob is at the
default, so events made with default knobs are those of the simulator without knobs."""
from __future__ import annotations

from typing import Optional

import numpy as np

from larsight.events.sim import medium as M
from larsight.events.sim.knobs import Knobs

NOISE_MEV = (0.01, 0.5)     # energy range of a fake voxel (log-uniform), MeV
NOISE_MARGIN_VOXELS = 5     # fake voxels fall in the event's bounding box grown by this much


def ionisation_electrons(e: np.ndarray, dedx: np.ndarray, k: Knobs) -> np.ndarray:
    """Electrons that survive recombination, per deposit (box or Birks, from the knobs)."""
    if k.recombination_model == "birks":
        r = M.recombination_birks(dedx, k.birks_a, k.birks_k)
    else:
        r = M.recombination(dedx, k.box_alpha, k.box_beta)
    return e * r / M.W_ION_MEV


def voxel_gain(rng: np.random.Generator, n_voxels: int, k: Knobs) -> Optional[np.ndarray]:
    """Per-voxel multiplicative Gaussian noise 1 + charge_noise * N(0,1) (kept >= 0.05), or None
    when the knob is off."""
    if k.charge_noise <= 0:
        return None
    return np.maximum(1.0 + k.charge_noise * rng.standard_normal(n_voxels), 0.05)


def alive(rng: np.random.Generator, n_voxels: int, k: Knobs) -> Optional[np.ndarray]:
    """Mask of voxels that survive the dead-channel fraction, or None when the knob is off."""
    if k.dead_fraction <= 0:
        return None
    return rng.random(n_voxels) >= k.dead_fraction


def noise_voxel_keys(rng: np.random.Generator, keys: np.ndarray, shape: np.ndarray, k: Knobs,
                     threshold_mev: float) -> tuple[np.ndarray, np.ndarray]:
    """(keys, energies MeV) of fake voxels: Poisson(noisy_rate * real voxels) of them, uniform in
    the event's bounding box (grown by NOISE_MARGIN_VOXELS), never on a real voxel, energies
    log-uniform above the threshold. Empty when the knob is off or the event is empty."""
    empty = np.zeros(0, np.int64), np.zeros(0)
    if k.noisy_rate <= 0 or keys.size == 0:
        return empty
    n = int(rng.poisson(k.noisy_rate * keys.size))
    if n == 0:
        return empty
    ijk = np.stack([keys // (shape[1] * shape[2]), (keys // shape[2]) % shape[1], keys % shape[2]], 1)
    lo = np.maximum(ijk.min(0) - NOISE_MARGIN_VOXELS, 0)
    hi = np.minimum(ijk.max(0) + NOISE_MARGIN_VOXELS, shape - 1)
    new = rng.integers(lo, hi + 1, size=(n, 3))
    nk = np.unique((new[:, 0] * shape[1] + new[:, 1]) * shape[2] + new[:, 2])
    nk = nk[~np.isin(nk, keys)]
    e_lo = max(NOISE_MEV[0], threshold_mev)
    e_hi = max(NOISE_MEV[1], 2 * e_lo)
    return nk, np.exp(rng.uniform(np.log(e_lo), np.log(e_hi), nk.size))
