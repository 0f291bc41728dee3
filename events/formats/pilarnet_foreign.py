"""The particle table of a foreign PILArNet-M file (one without larsight's datasets), derived
from its cluster rows; :mod:`larsight.events.formats.pilarnet` reads the rest of the file."""
from __future__ import annotations

from typing import Optional

import numpy as np

from larsight.events.formats._common import kinetic_from_momentum
from larsight.events.model import EventError, Particle, Volume


def particles_from_clusters(cl: np.ndarray, extra: Optional[np.ndarray], energy: np.ndarray,
                            volume: Volume, path, index: int) -> list[Particle]:
    """A particle table for a foreign file: one row per group id >= 0, from its clusters."""
    counts = cl[:, 0]
    groups = cl[:, 2]
    k = len(cl)
    if k == 0:
        return []
    owner = np.repeat(np.arange(k), counts)
    cluster_energy = np.bincount(owner, weights=energy.astype(np.float64), minlength=k)
    out = []
    for g in np.unique(groups[groups >= 0]):
        rows = np.flatnonzero(groups == g)
        main = rows[np.argmax(counts[rows])]  # the group's largest cluster speaks for it
        sem_votes = np.zeros(5)
        for r in rows:
            if 0 <= cl[r, 4] <= 4:
                sem_votes[cl[r, 4]] += counts[r]
        pid = int(cl[main, 5]) if cl.shape[1] == 6 else -1
        start = (0.0, 0.0, 0.0)
        t_kin = 0.0
        if extra is not None and extra.shape[1] >= 5:
            vtx = extra[main, 2:5] * volume.voxel_size_cm + volume.lower_cm
            if np.all(np.isfinite(vtx)):
                start = tuple(float(v) for v in vtx)
            t_kin = kinetic_from_momentum(float(extra[main, 1]), pid)
        try:
            out.append(Particle(
                id=int(g), pid=pid, interaction=int(cl[main, 3]),
                semantic=int(np.argmax(sem_votes)) if sem_votes.sum() > 0 else -1,
                start_cm=start, end_cm=start, kinetic_energy_mev=t_kin,
                deposited_energy_mev=float(max(cluster_energy[rows].sum(), 0.0)),
                n_voxels=int(counts[rows].sum())))
        except ValueError as exc:  # pydantic ValidationError is a ValueError
            raise EventError(f"{path}: event {index}: cluster rows of group {int(g)} are "
                             f"invalid: {exc}") from None
    return out
