"""Helpers shared by the file formats: table (de)serialisation, event checks, error context."""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Iterator, Optional

import numpy as np
from pydantic import ValidationError

from larsight.events.model import (
    POINT_ARRAY_NAMES, Event, EventError, EventMeta, Interaction, Particle, Volume,
    validation_summary,
)

OPTIONAL_ARRAYS = tuple(n for n in POINT_ARRAY_NAMES if n not in ("points", "energy"))
"""Per-point arrays an Event may or may not carry."""

PID_MASS_MEV = (0.0, 0.51099895, 105.6583755, 139.57039, 938.27208816, 493.677)
"""Rest mass per PID class (photon, electron, muon, pion, proton, kaon), MeV/c^2."""

FORMAT_VERSION = 1
"""Version of larsight's own additions to the file formats (extra datasets / branches)."""


def pid_mass(pid: int) -> float:
    return PID_MASS_MEV[pid] if 0 <= pid < len(PID_MASS_MEV) else 0.0


def momentum_magnitude(p: Particle) -> float:
    """|p| in MeV/c: from the momentum vector, else from the kinetic energy and the PID mass."""
    mag = math.sqrt(sum(c * c for c in p.momentum_mev))
    if mag > 0 or p.kinetic_energy_mev <= 0:
        return mag
    t, m = p.kinetic_energy_mev, pid_mass(p.pid)
    return math.sqrt(t * t + 2.0 * t * m)


def kinetic_from_momentum(p_mag: float, pid: int) -> float:
    if not np.isfinite(p_mag) or p_mag <= 0:
        return 0.0
    m = pid_mass(pid)
    return float(math.sqrt(p_mag * p_mag + m * m) - m)


# ---------------------------------------------------------------- events in, events out
def as_event(item: Any, position: int, path) -> Event:
    """The item as a freshly validated Event (a copy: the caller's object is not modified)."""
    if not isinstance(item, Event):
        raise EventError(f"{path}: item {position} to write is a {type(item).__name__}, not an events.Event")
    try:
        return item.copy()  # dataclasses.replace re-runs the validation on the current arrays
    except EventError as exc:
        raise EventError(f"{path}: event {position} to write is invalid: {exc}") from None
    except ValidationError as exc:
        raise EventError(f"{path}: event {position} to write is invalid: "
                         f"{validation_summary(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise EventError(f"{path}: event {position} to write is invalid: {exc}") from None


def iter_events(events: Any) -> Iterable:
    """Accept one Event or any iterable of them."""
    if isinstance(events, Event):
        return (events,)
    try:
        iter(events)
    except TypeError:
        raise TypeError(f"write: expected an Event or an iterable of Events, got {type(events).__name__}") from None
    return events


def with_progress(items: Iterable, progress: bool, total: Optional[int], desc: str) -> Iterator:
    if not progress:
        return iter(items)
    from tqdm.auto import tqdm

    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return iter(tqdm(items, total=total, desc=desc, unit="ev"))


def build_event(path, index: int, arrays: dict, particles: list, interactions: list,
                meta: dict) -> Event:
    """Construct an Event from decoded parts; any problem becomes an EventError with context."""
    try:
        meta_obj = EventMeta(source=str(path), index=index, **meta)
        return Event(**arrays, particles=particles, interactions=interactions, meta=meta_obj)
    except EventError as exc:
        raise EventError(f"{path}: event {index}: {exc}") from None
    except ValidationError as exc:
        raise EventError(f"{path}: event {index}: invalid content: "
                         f"{validation_summary(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise EventError(f"{path}: event {index}: invalid content: {exc}") from None


# ---------------------------------------------------------------- JSON for tables and meta
def meta_record(ev: Event) -> dict:
    """What larsight stores about an event beyond the per-point arrays and the tables."""
    m = ev.meta
    record = {
        "format_version": FORMAT_VERSION,
        "volume": m.volume.model_dump(mode="json"),
        "event_id": m.event_id,
        "generator": m.generator,
        "seed": m.seed,
        "arrays": [name for name in OPTIONAL_ARRAYS if getattr(ev, name) is not None],
    }
    if m.sim_knobs is not None:   # only randomised / knobbed simulations have them
        record["sim_knobs"] = dict(m.sim_knobs)
    return record


def meta_fields(record: dict) -> dict:
    """EventMeta keyword arguments (without source/index) from a :func:`meta_record`."""
    if not isinstance(record, dict):
        raise EventError(f"larsight_meta is a {type(record).__name__}, not a JSON object")
    try:
        volume = Volume.model_validate(record.get("volume", {}))
    except ValidationError as exc:
        raise EventError(f"meta.volume: {validation_summary(exc)}") from None
    return {
        "volume": volume,
        "event_id": record.get("event_id"),
        "generator": record.get("generator"),
        "seed": record.get("seed"),
        "sim_knobs": record.get("sim_knobs"),
    }


def dumps(obj: Any) -> str:
    # repr-exact floats (json uses float.__repr__), NaN/inf allowed as in Python's json
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def particles_json(ev: Event) -> str:
    return dumps([p.model_dump(mode="json") for p in ev.particles])


def interactions_json(ev: Event) -> str:
    return dumps([i.model_dump(mode="json") for i in ev.interactions])


def parse_json(text: Any, what: str, path, index: int) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        return json.loads(text) if text else None
    except (TypeError, ValueError) as exc:
        raise EventError(f"{path}: event {index}: {what} is not valid JSON ({exc})") from None


def particles_from(records: Optional[list], path, index: int) -> list[Particle]:
    try:
        return [Particle.model_validate(r) for r in records or []]
    except ValidationError as exc:
        raise EventError(f"{path}: event {index}: bad particle table: "
                         f"{validation_summary(exc)}") from None


def interactions_from(records: Optional[list], path, index: int) -> list[Interaction]:
    try:
        return [Interaction.model_validate(r) for r in records or []]
    except ValidationError as exc:
        raise EventError(f"{path}: event {index}: bad interaction table: "
                         f"{validation_summary(exc)}") from None


def check_index(path, index: Any, n: int) -> int:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"read: index must be an integer, got {type(index).__name__}")
    i = int(index)
    if i < -n or i >= n:
        raise EventError(f"{path}: index {i} is out of range: the file holds {n} event"
                         f"{'' if n == 1 else 's'} (valid: 0..{n - 1} or -{n}..-1)" if n else
                         f"{path}: index {i} is out of range: the file holds no events")
    return i % n
