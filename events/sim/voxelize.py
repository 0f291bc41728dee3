"""Deposits -> voxels -> an ``Event`` with SPINE-style truth labels.

- voxel = floor((x - origin) / voxel_size); deposits outside the volume are dropped; energies
  are summed per voxel and voxels below the threshold (0.01 MeV, Supera) are removed;
- ionisation electrons per deposit = dE * R_box(dE/dx) / W_ion, summed per voxel;
- detector knobs (events.sim.knobs, off by default; events.sim.detector): recombination model
  and constants, energy scale, per-voxel charge noise (before the threshold), dead voxels, fake
  LE voxels without a particle;
- labels: a delta ray touching fewer than 10 voxels is merged into its parent track; Compton /
  photoelectric electrons (and nuclear blips) touching 10 voxels or fewer are low energy,
  bigger ones shower; in a voxel shared by several particles the label follows the SPINE
  precedence track > Michel > shower > delta > LE (then the larger energy);
- ``particle`` is the group id (a shower and all its EM descendants share the primary's id;
  tracks, Michel electrons and kept delta rays are their own group), ``fragment`` the id of
  the particle that made the deposit, ``pid`` the PID class of the group's primary.
"""
from __future__ import annotations

import numpy as np

from larsight.events.model import Event, EventMeta, Interaction, Particle
from larsight.events.sim import detector as D
from larsight.events.sim import medium as M

SEM_SHOWER, SEM_TRACK, SEM_MICHEL, SEM_DELTA, SEM_LE = 0, 1, 2, 3, 4
_RANK = np.array([2, 0, 1, 3, 4])          # precedence rank by semantic class (lower wins)
DELTA_MIN_VOXELS = 10
COMPTON_MAX_VOXELS = 10

_PID_OF = {22: 0, 11: 1, 13: 2, 211: 3, 111: 3, 2212: 4, 321: 5}


def pid_of(pdg: int) -> int:
    return _PID_OF.get(abs(int(pdg)), -1)


def to_event(builder, interactions: list[Interaction], meta: EventMeta) -> Event:
    """Voxelise the builder's deposits into an ``Event`` with truth labels and tables."""
    vol = builder.volume
    parts = builder.parts
    shape = np.asarray(vol.shape, dtype=np.int64)
    inv, e, nel, ds, own, uk = _kept_deposits(builder, shape)
    nv = uk.size

    # per (voxel, owner) pairs
    npart = len(parts)
    pk = inv * max(npart, 1) + own
    upk, pinv = np.unique(pk, return_inverse=True)
    pe = np.bincount(pinv, weights=e, minlength=upk.size)
    p_vox = upk // max(npart, 1)
    p_own = upk % max(npart, 1)
    sem, group, frag = _owner_labels(parts, np.bincount(p_own, minlength=npart))
    pids = np.array([pid_of(parts[g]["pdg"]) for g in range(npart)], dtype=np.int64)
    inter = np.array([p["interaction"] for p in parts], dtype=np.int64)

    # winner per voxel: best precedence, then largest energy
    rank = _RANK[np.maximum(sem[p_own], 0)]
    order = np.lexsort((-pe, rank, p_vox))
    first = np.ones(order.size, dtype=bool)
    first[1:] = p_vox[order][1:] != p_vox[order][:-1]
    win = order[first]                     # one pair per voxel, voxels in increasing order
    wo = p_own[win]

    energy = np.bincount(inv, weights=e, minlength=nv)
    n_el = np.bincount(inv, weights=nel, minlength=nv)
    dx = np.bincount(inv, weights=ds, minlength=nv)
    v_sem = sem[wo]
    v_group = group[wo]
    v_frag = frag[wo]
    table = _particle_table(parts, group, v_group, v_frag, v_sem, energy)
    cols = dict(energy=energy, semantic=v_sem, particle=v_group, fragment=v_frag,
                interaction=inter[wo], pid=pids[group[wo]], n_electrons=n_el, dx_cm=dx)
    if builder.opt.le_without_particle:     # PILArNet-M: LE voxels belong to no instance
        le = v_sem == SEM_LE
        for c in ("particle", "fragment", "pid"):
            cols[c] = np.where(le, -1, cols[c])
    uk, cols = _with_noise_voxels(builder, uk, shape, cols)
    points = _voxel_corners(uk, shape, vol)
    time_us = (points[:, 0] - vol.lower_cm[0]) / M.DRIFT_CM_PER_US
    return Event(points=points, energy=cols["energy"].astype(np.float32),
                 semantic=cols["semantic"], particle=cols["particle"], fragment=cols["fragment"],
                 interaction=cols["interaction"], pid=cols["pid"],
                 n_electrons=cols["n_electrons"].astype(np.float32),
                 time_us=time_us.astype(np.float32), dx_cm=cols["dx_cm"].astype(np.float32),
                 particles=table, interactions=interactions, meta=meta)


def _with_noise_voxels(builder, uk: np.ndarray, shape: np.ndarray, cols: dict):
    """Add the fake voxels of the ``noisy_rate`` knob (LE, no particle, no interaction), keeping
    the voxels in key order; unchanged when the knob is off."""
    nk, ne = D.noise_voxel_keys(builder.rng, uk, shape, builder.knobs, builder.opt.threshold_mev)
    if not nk.size:
        return uk, cols
    add = dict(energy=ne, semantic=np.full(nk.size, SEM_LE), particle=np.full(nk.size, -1),
               fragment=np.full(nk.size, -1), interaction=np.full(nk.size, -1),
               pid=np.full(nk.size, -1), n_electrons=ne * float(M.recombination(M.MIP_DEDX)) / M.W_ION_MEV,
               dx_cm=np.zeros(nk.size))
    keys = np.concatenate([uk, nk])
    order = np.argsort(keys, kind="stable")
    return keys[order], {c: np.concatenate([v, np.asarray(add[c], dtype=v.dtype)])[order]
                         for c, v in cols.items()}


def _kept_deposits(builder, shape: np.ndarray):
    """Deposits inside the volume, in voxels above the threshold: (voxel index of each deposit
    into the kept voxels, energy, ionisation electrons, step length, owner, kept voxel keys)."""
    vol = builder.volume
    k = builder.knobs
    xyz, e, dedx, ds, own = builder.deposits()
    idx = np.floor((xyz - vol.lower_cm) / vol.voxel_size_cm).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < shape), axis=1) & (e > 0)
    idx, e, dedx, ds, own = idx[ok], e[ok], dedx[ok], ds[ok], own[ok]
    key = (idx[:, 0] * shape[1] + idx[:, 1]) * shape[2] + idx[:, 2]
    nel = D.ionisation_electrons(e, dedx, k)
    e = e * k.energy_scale                  # calibration: energy only, not the charge
    uk, inv = np.unique(key, return_inverse=True)
    gain = D.voxel_gain(builder.rng, uk.size, k)
    if gain is not None:                    # charge noise: energy and charge of the voxel
        e, nel = e * gain[inv], nel * gain[inv]
    ev = np.bincount(inv, weights=e, minlength=uk.size)
    keepv = ev >= builder.opt.threshold_mev
    live = D.alive(builder.rng, uk.size, k)
    if live is not None:
        keepv &= live
    # re-index onto the kept voxels
    newid = np.cumsum(keepv) - 1
    dk = keepv[inv]
    return newid[inv[dk]], e[dk], nel[dk], ds[dk], own[dk], uk[keepv]


def _owner_labels(parts: list, nvox_own: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Semantic class, group and fragment of every particle, after the Supera merging rules."""
    npart = len(parts)
    sem = np.full(npart, -1, dtype=np.int64)
    group = np.array([p["group"] for p in parts], dtype=np.int64) if npart else np.zeros(0, np.int64)
    frag = np.arange(npart, dtype=np.int64)
    for i, p in enumerate(parts):
        k = p["kind"]
        if k == "track":
            sem[i] = SEM_TRACK
        elif k == "michel":
            sem[i] = SEM_MICHEL
        elif k == "shower":
            sem[i] = SEM_SHOWER
        elif k == "delta":
            if nvox_own[i] >= DELTA_MIN_VOXELS:
                sem[i] = SEM_DELTA
            else:  # merged into the parent track
                par = p["parent"]
                sem[i] = SEM_TRACK
                group[i] = group[par]
                frag[i] = frag[par]
        elif k == "compton":
            sem[i] = SEM_SHOWER if nvox_own[i] > COMPTON_MAX_VOXELS else SEM_LE
        else:
            sem[i] = SEM_LE
    return sem, group, frag


def _voxel_corners(uk: np.ndarray, shape: np.ndarray, vol) -> np.ndarray:
    """float32 lower corners of the voxels with keys ``uk``."""
    ijk = np.stack([uk // (shape[1] * shape[2]), (uk // shape[2]) % shape[1], uk % shape[2]], axis=1)
    points = ijk * vol.voxel_size_cm + vol.lower_cm
    # float32 rounding must not push a point below the lower edge (negative origins)
    points = points.astype(np.float32)
    low = points.astype(np.float64) < vol.lower_cm
    points[low] = np.nextafter(points[low], np.float32(np.inf))
    return points


def _particle_table(parts: list, group: np.ndarray, v_group: np.ndarray, v_frag: np.ndarray,
                    v_sem: np.ndarray, energy: np.ndarray) -> list[Particle]:
    """One ``Particle`` row per simulated particle: a group head counts its whole group's voxels,
    any other particle its own fragment's."""
    npart = len(parts)
    if not npart:
        return []
    heads = np.zeros(npart, dtype=bool)
    heads[np.unique(v_group)] = True
    nvox_g = np.bincount(v_group, minlength=npart)
    e_g = np.bincount(v_group, weights=energy, minlength=npart)
    nvox_f = np.bincount(v_frag, minlength=npart)
    e_f = np.bincount(v_frag, weights=energy, minlength=npart)
    sem_g = np.bincount(v_group * 5 + v_sem, minlength=npart * 5).reshape(npart, 5)
    sem_f = np.bincount(v_frag * 5 + v_sem, minlength=npart * 5).reshape(npart, 5)
    table = []
    for i, p in enumerate(parts):
        is_head = heads[i] or group[i] == i
        nvx = int(nvox_g[i] if is_head else nvox_f[i])
        edep = float(e_g[i] if is_head else e_f[i])
        counts = sem_g[i] if is_head else sem_f[i]
        T = p["T"]
        pmag = float(np.sqrt(T * T + 2 * T * p["mass"])) if p["mass"] > 0 else T
        mom = p["d"] * pmag
        table.append(Particle(
            id=i, pdg=p["pdg"], pid=pid_of(p["pdg"]), parent=p["parent"], process=p["process"],
            interaction=p["interaction"], semantic=int(np.argmax(counts)) if counts.sum() else -1,
            start_cm=tuple(float(c) for c in p["x"]), end_cm=tuple(float(c) for c in p["end"]),
            momentum_mev=tuple(float(c) for c in mom), kinetic_energy_mev=float(T),
            deposited_energy_mev=edep, n_voxels=nvx))
    return table
