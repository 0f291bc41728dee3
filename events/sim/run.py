"""Event streams and files: ``simulate`` (a reproducible iterator) and ``simulate_file``."""
from __future__ import annotations

import multiprocessing as mp
import os
from functools import partial
from typing import Iterator

from tqdm.auto import tqdm

from larsight.events import formats
from larsight.events.model import PILARNET_VOLUME, Event, Volume
from larsight.events.sim.generators import mpr, mpv, neutrino
from larsight.events.sim.knobs import check_knobs

MODES = {"nu": neutrino, "mpv": mpv, "mpr": mpr}


def _generator(mode: str):
    try:
        return MODES[mode]
    except KeyError:
        raise ValueError(f"simulate: mode must be one of {sorted(MODES)}, got {mode!r}") from None


def _knob_kwargs(randomize: bool, knobs) -> dict:
    """The generators' knob keywords (validated now, so a bad knob fails before any event);
    empty without ``randomize`` and ``knobs``, so the events are those of the plain simulator."""
    if not randomize and knobs is None:
        return {}
    return {"randomize": bool(randomize), "knobs": check_knobs(knobs)}


def _one(i: int, mode: str, seed: int, volume: Volume, kw: dict | None = None) -> Event:
    return MODES[mode](seed=seed, index=i, volume=volume, **(kw or {}))


def simulate(mode: str, n: int, seed: int = 0, volume: Volume = PILARNET_VOLUME,
             start: int = 0, *, randomize: bool = False, knobs: dict | None = None
             ) -> Iterator[Event]:
    """Events ``start .. start+n-1`` of the stream (mode 'nu', 'mpv' or 'mpr'). Event i is drawn
    from ``np.random.default_rng([seed, i])``, so any event can be regenerated on its own.

    ``randomize``: draw every simulator knob (events.sim.knobs) per event, from its own stream
    seeded by (seed, i); ``knobs``: {name: value} kept fixed (without ``randomize``: the
    defaults with these overrides). Unknown knobs or values out of range raise ``KnobError``
    (a ValueError) at once. The values used are in each event's ``meta.sim_knobs``."""
    gen = _generator(mode)
    kw = _knob_kwargs(randomize, knobs)
    return (gen(seed=seed, index=i, volume=volume, **kw) for i in range(start, start + n))


def _pool_stream(mode, n, seed, volume, workers, chunksize, kw=None):
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(partial(_one, mode=mode, seed=seed, volume=volume, kw=kw), range(n),
                             chunksize=chunksize)


def simulate_file(path, mode: str, n: int, seed: int = 0, volume: Volume = PILARNET_VOLUME,
                  workers: int | None = None, progress: bool = True, *, randomize: bool = False,
                  knobs: dict | None = None) -> int:
    """Simulate ``n`` events and stream them into ``path`` (.h5 PILArNet-M schema or .root)
    through ``events.write``. Uses a process pool (ordered ``imap`` in chunks) over all cores
    when ``n`` is large enough to pay for it. ``randomize`` / ``knobs``: as in ``simulate``
    (the knob values are stored with each event in .h5 files). Returns the number of events
    written."""
    _generator(mode)
    if n < 0:
        raise ValueError(f"simulate_file: n must be >= 0, got {n}")
    kw = _knob_kwargs(randomize, knobs)
    workers = workers or os.cpu_count() or 1
    if workers > 1 and n >= 4 * workers:
        chunksize = max(1, min(32, n // (8 * workers)))
        stream = _pool_stream(mode, n, seed, volume, workers, chunksize, kw)
    else:
        stream = simulate(mode, n, seed=seed, volume=volume, **kw)
    if progress:
        stream = tqdm(stream, total=n, desc=f"simulate {mode}", unit="ev")
    return formats.write(path, stream)
