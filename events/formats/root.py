"""ROOT files through uproot: one TTree ``events``, one entry per event, plain branches.

Layout (what a ROOT user sees with ``events->Print()``):

- per point (jagged, counter ``n_points``): ``x_cm y_cm z_cm energy_mev`` (float32) and
  ``semantic`` (int8), ``particle fragment interaction`` (int32), ``pid`` (int8),
  ``n_electrons time_us dx_cm`` (float32); an optional array the event lacks is written as -1 / 0
  and flagged by ``has_<name> = false``;
- particle table (jagged, counter ``n_particles``): ``particles_id pdg pid parent process
  interaction semantic start_{x,y,z}_cm end_{x,y,z}_cm p{x,y,z}_mev kinetic_energy_mev
  deposited_energy_mev n_voxels`` (``process`` is a code, see below);
- interaction table (jagged, counter ``n_interactions``): ``interactions_id vertex_{x,y,z}_cm
  nu_pdg current channel nu_energy_mev event_class`` (codes, -1 for none);
- per event scalars: ``voxel_size_cm volume_n{x,y,z} origin_{x,y,z}_cm event_id generator seed``
  (with ``has_event_id has_generator has_seed``), ``extra_processes`` (JSON list of process
  names beyond the standard table) and ``format_version``.

The code tables (process, current, channel, event class) are in the tree title and, as JSON, in
the TObjString ``larsight_codes``. Floats of the tables are float64, per-point values float32,
so a round trip is exact. Reading streams the tree in blocks of entries; ``read(path, i)``
decompresses only the baskets that hold entry i. Writing streams too (``mktree`` + ``extend`` in
blocks), into a temporary file that replaces the target only when complete.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from larsight.events.formats._common import (
    FORMAT_VERSION, OPTIONAL_ARRAYS, as_event, build_event, check_index, dumps, with_progress,
)
from larsight.events.formats.atomic import atomic_path
from larsight.events.model import PILARNET_VOLUME, PROCESSES, Event, EventError, Interaction

TREE = "events"


def _literal_values(field: str) -> tuple:
    for arg in typing.get_args(Interaction.model_fields[field].annotation):
        values = typing.get_args(arg)
        if values:
            return values
    return ()


CURRENTS = _literal_values("current")
CHANNELS = _literal_values("channel")
EVENT_CLASS_CODES = _literal_values("event_class")

# name -> (numpy dtype, fill for an absent array)
POINT_BRANCHES = {
    "x_cm": ("float32", 0), "y_cm": ("float32", 0), "z_cm": ("float32", 0),
    "energy_mev": ("float32", 0), "semantic": ("int8", -1), "particle": ("int32", -1),
    "fragment": ("int32", -1), "interaction": ("int32", -1), "pid": ("int8", -1),
    "n_electrons": ("float32", 0), "time_us": ("float32", 0), "dx_cm": ("float32", 0),
}
PARTICLE_BRANCHES = {
    "id": "int64", "pdg": "int32", "pid": "int8", "parent": "int64", "process": "int16",
    "interaction": "int64", "semantic": "int8",
    "start_x_cm": "float64", "start_y_cm": "float64", "start_z_cm": "float64",
    "end_x_cm": "float64", "end_y_cm": "float64", "end_z_cm": "float64",
    "px_mev": "float64", "py_mev": "float64", "pz_mev": "float64",
    "kinetic_energy_mev": "float64", "deposited_energy_mev": "float64", "n_voxels": "int64",
}
INTERACTION_BRANCHES = {
    "id": "int64", "vertex_x_cm": "float64", "vertex_y_cm": "float64", "vertex_z_cm": "float64",
    "nu_pdg": "int32", "current": "int8", "channel": "int8", "nu_energy_mev": "float64",
    "event_class": "int8",
}
SCALAR_BRANCHES = {
    "voxel_size_cm": "float64", "volume_nx": "int32", "volume_ny": "int32", "volume_nz": "int32",
    "origin_x_cm": "float64", "origin_y_cm": "float64", "origin_z_cm": "float64",
    "event_id": "int64", "has_event_id": "bool", "generator": "string", "has_generator": "bool",
    "seed": "int64", "has_seed": "bool", "extra_processes": "string", "format_version": "int32",
    **{f"has_{name}": "bool" for name in OPTIONAL_ARRAYS},
}
_ARRAY_OF_BRANCH = {"x_cm": "points", "y_cm": "points", "z_cm": "points", "energy_mev": "energy"}
CODES = {"process": list(PROCESSES), "current": list(CURRENTS), "channel": list(CHANNELS),
         "event_class": list(EVENT_CLASS_CODES)}
TITLE = ("larsight events (one entry per event); codes: "
         + "; ".join(f"{k}: " + ",".join(f"{i}={v}" for i, v in enumerate(vals))
                     for k, vals in CODES.items()) + "; -1 = none")

_READ_STEP = 64           # entries per block while iterating
_WRITE_EVENTS = 256       # events per extend()
_WRITE_POINTS = 2_000_000  # ... or this many points


def _uproot():
    import uproot

    return uproot


# ====================================================================== writing
def _record_type(fields: dict) -> str:
    return "var * {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


def _branch_types() -> dict:
    import awkward as ak

    types = {
        "point": ak.types.from_datashape(_record_type({k: v for k, (v, _) in POINT_BRANCHES.items()}),
                                         highlevel=False),
        "particles": ak.types.from_datashape(_record_type(PARTICLE_BRANCHES), highlevel=False),
        "interactions": ak.types.from_datashape(_record_type(INTERACTION_BRANCHES), highlevel=False),
    }
    for name, dt in SCALAR_BRANCHES.items():
        types[name] = "string" if dt == "string" else np.dtype(dt)
    return types


def _counter_name(counted: str) -> str:
    return {"point": "n_points"}.get(counted, f"n_{counted}")


def _field_name(outer: str, inner: str) -> str:
    return inner if outer == "point" else f"{outer}_{inner}"


def _code(value: Optional[str], table: tuple) -> int:
    return -1 if value is None else table.index(value)


def _jagged(records: list[list[tuple]], fields: dict) -> Any:
    """A var * record awkward array from per-event lists of row tuples."""
    import awkward as ak

    counts = np.array([len(r) for r in records], dtype=np.int64)
    rows = [row for rec in records for row in rec]
    cols = {}
    for j, (name, dt) in enumerate(fields.items()):
        cols[name] = np.array([row[j] for row in rows], dtype=dt) if rows else np.zeros(0, dt)
    return ak.unflatten(ak.zip(cols, depth_limit=1), counts)


def _chunk(evs: list[Event]) -> dict:
    import awkward as ak

    counts = np.array([len(e) for e in evs], dtype=np.int64)
    cols = {}
    for name, (dt, fill) in POINT_BRANCHES.items():
        parts = []
        for e in evs:
            if name in ("x_cm", "y_cm", "z_cm"):
                parts.append(e.points[:, "xyz".index(name[0])])
            elif name == "energy_mev":
                parts.append(e.energy)
            else:
                arr = getattr(e, name)
                parts.append(np.full(len(e), fill, dt) if arr is None else arr)
        cols[name] = np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)
    out: dict[str, Any] = {"point": ak.unflatten(ak.zip(cols, depth_limit=1), counts)}

    particle_rows, interaction_rows, extra_processes = [], [], []
    for e in evs:
        extra: list[str] = []
        rows = []
        for p in e.particles:
            if p.process in PROCESSES:
                code = PROCESSES.index(p.process)
            else:
                if p.process not in extra:
                    extra.append(p.process)
                code = len(PROCESSES) + extra.index(p.process)
            rows.append((p.id, p.pdg, p.pid, p.parent, code, p.interaction, p.semantic,
                         *p.start_cm, *p.end_cm, *p.momentum_mev, p.kinetic_energy_mev,
                         p.deposited_energy_mev, p.n_voxels))
        particle_rows.append(rows)
        extra_processes.append(dumps(extra) if extra else "")
        interaction_rows.append([
            (i.id, *i.vertex_cm, i.nu_pdg, _code(i.current, CURRENTS), _code(i.channel, CHANNELS),
             i.nu_energy_mev, _code(i.event_class, EVENT_CLASS_CODES)) for i in e.interactions])
    out["particles"] = _jagged(particle_rows, PARTICLE_BRANCHES)
    out["interactions"] = _jagged(interaction_rows, INTERACTION_BRANCHES)

    def scalar(fn, dt):
        return np.array([fn(e) for e in evs], dtype=dt)

    out.update({
        "voxel_size_cm": scalar(lambda e: e.meta.volume.voxel_size_cm, "float64"),
        "volume_nx": scalar(lambda e: e.meta.volume.shape[0], "int32"),
        "volume_ny": scalar(lambda e: e.meta.volume.shape[1], "int32"),
        "volume_nz": scalar(lambda e: e.meta.volume.shape[2], "int32"),
        "origin_x_cm": scalar(lambda e: e.meta.volume.origin_cm[0], "float64"),
        "origin_y_cm": scalar(lambda e: e.meta.volume.origin_cm[1], "float64"),
        "origin_z_cm": scalar(lambda e: e.meta.volume.origin_cm[2], "float64"),
        "event_id": scalar(lambda e: e.meta.event_id or 0, "int64"),
        "has_event_id": scalar(lambda e: e.meta.event_id is not None, "bool"),
        "generator": np.array([e.meta.generator or "" for e in evs], dtype=object),
        "has_generator": scalar(lambda e: e.meta.generator is not None, "bool"),
        "seed": scalar(lambda e: e.meta.seed or 0, "int64"),
        "has_seed": scalar(lambda e: e.meta.seed is not None, "bool"),
        "extra_processes": np.array(extra_processes, dtype=object),
        "format_version": np.full(len(evs), FORMAT_VERSION, dtype="int32"),
    })
    for name in OPTIONAL_ARRAYS:
        out[f"has_{name}"] = scalar(lambda e, name=name: getattr(e, name) is not None, "bool")
    return out


def write(path: Path, events: Iterable, *, progress: bool = False,
          total: Optional[int] = None) -> int:
    uproot = _uproot()
    n = 0
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as f:
            f["larsight_codes"] = json.dumps(CODES)
            tree = f.mktree(TREE, _branch_types(), title=TITLE, counter_name=_counter_name,
                            field_name=_field_name)
            buffer: list[Event] = []
            points = 0
            for i, item in enumerate(with_progress(events, progress, total, f"write {path.name}")):
                ev = as_event(item, i, path)
                buffer.append(ev)
                points += len(ev)
                if len(buffer) >= _WRITE_EVENTS or points >= _WRITE_POINTS:
                    tree.extend(_checked_chunk(buffer, n, path))
                    n += len(buffer)
                    buffer, points = [], 0
            if buffer:
                tree.extend(_checked_chunk(buffer, n, path))
                n += len(buffer)
    return n


def _checked_chunk(buffer: list[Event], first: int, path: Path) -> dict:
    try:
        return _chunk(buffer)
    except (OverflowError, ValueError) as exc:  # e.g. an id beyond int64
        raise EventError(f"{path}: events {first}..{first + len(buffer) - 1} cannot be stored "
                         f"in ROOT branches: {exc}") from None


# ====================================================================== reading
def _open(path: Path):
    uproot = _uproot()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise EventError(f"{path}: is a directory, not a ROOT file")
    try:
        # a plain local-file source: the file is open exactly while `f` is (uproot's default
        # fsspec source keeps no handle and starts background threads)
        handler = getattr(getattr(uproot, "source", None), "file", None)
        handler = getattr(handler, "MultithreadedFileSource", None)
        f = (uproot.open(path, handler=handler, num_workers=1) if handler is not None
             else uproot.open(path))
    except Exception as exc:  # uproot raises ValueError/OSError/DeserializationError...
        raise EventError(f"{path}: not a readable ROOT file (corrupt, truncated or another "
                         f"format): {exc}") from None
    try:
        names = {k.split(";")[0]: v for k, v in f.classnames().items()}
        if TREE not in names:
            found = ", ".join(f"{k} ({v})" for k, v in sorted(names.items())[:12]) or "nothing"
            raise EventError(f"{path}: no TTree '{TREE}' in this ROOT file (found: {found})")
        if names[TREE] not in ("TTree", "TNtuple"):
            raise EventError(f"{path}: '{TREE}' is a {names[TREE]}, not a TTree")
        tree = f[TREE]
        missing = [b for b in ("x_cm", "y_cm", "z_cm", "energy_mev") if b not in tree.keys()]
        if missing:
            raise EventError(f"{path}: TTree '{TREE}' lacks the branches {', '.join(missing)}")
        _check_declared_entries(tree, path)
    except EventError:
        f.close()
        raise
    except Exception as exc:
        f.close()
        raise EventError(f"{path}: cannot read the ROOT file's directory (corrupt or "
                         f"truncated?): {exc}") from None
    return f, tree


def _check_declared_entries(tree, path: Path) -> None:
    """Refuse an entry count the baskets do not cover, or baskets outside the file, before
    anything is allocated for them (a forged or cut file)."""
    n = int(tree.num_entries)
    size = path.stat().st_size
    if n < 0:
        raise EventError(f"{path}: TTree '{TREE}' declares a negative number of entries ({n})")
    for branch in tree.itervalues(recursive=True):
        nb = int(branch.num_baskets)
        covered = int(branch.entry_offsets[-1]) if nb else 0
        if covered < n:
            raise EventError(f"{path}: TTree '{TREE}' declares {n} entries but the baskets of "
                             f"branch '{branch.name}' hold {covered} (the file holds "
                             f"{size / 1024:.0f} KB)")
        seeks = np.asarray(branch.member("fBasketSeek")[:nb], dtype=np.int64)
        nbytes = np.asarray(branch.member("fBasketBytes")[:nb], dtype=np.int64)
        if nb and (np.any(seeks < 0) or np.any(nbytes < 0) or np.any(seeks + nbytes > size)):
            raise EventError(f"{path}: branch '{branch.name}' of TTree '{TREE}' points outside "
                             f"the file ({size / 1024:.0f} KB): cut or damaged")


def _arrays(tree, path: Path, start: int, stop: int) -> dict:
    try:
        return tree.arrays(library="np", entry_start=start, entry_stop=stop)
    except Exception as exc:
        raise EventError(f"{path}: cannot read entries {start}..{stop - 1} of TTree '{TREE}' "
                         f"(corrupt or truncated file?): {exc}") from None


def _decode(cols: dict, k: int, path: Path, index: int) -> Event:
    def get(name, default=None):
        return cols[name][k] if name in cols else default

    def flag(name):
        return bool(get(f"has_{name}", True))

    arrays: dict[str, Any] = {
        "points": np.stack([np.asarray(get(c), dtype=np.float32) for c in ("x_cm", "y_cm", "z_cm")],
                           axis=1),
        "energy": np.asarray(get("energy_mev"), dtype=np.float32),
    }
    for name in OPTIONAL_ARRAYS:
        if name in cols and flag(name):
            arrays[name] = np.asarray(get(name), dtype=POINT_BRANCHES[name][0])

    extra_names = json.loads(get("extra_processes") or "[]") or []
    table = list(PROCESSES) + list(extra_names)
    particles = []
    if "particles_id" in cols:
        n_p = len(get("particles_id"))
        pc = {f: get(f"particles_{f}", np.zeros(n_p)) for f in PARTICLE_BRANCHES}
        for j in range(n_p):
            code = int(pc["process"][j])
            if not 0 <= code < len(table):
                raise EventError(f"{path}: event {index}: particle {j} has an unknown process code {code}")
            particles.append(dict(
                id=int(pc["id"][j]), pdg=int(pc["pdg"][j]), pid=int(pc["pid"][j]),
                parent=int(pc["parent"][j]), process=table[code],
                interaction=int(pc["interaction"][j]), semantic=int(pc["semantic"][j]),
                start_cm=tuple(float(pc[f"start_{a}_cm"][j]) for a in "xyz"),
                end_cm=tuple(float(pc[f"end_{a}_cm"][j]) for a in "xyz"),
                momentum_mev=tuple(float(pc[f"p{a}_mev"][j]) for a in "xyz"),
                kinetic_energy_mev=float(pc["kinetic_energy_mev"][j]),
                deposited_energy_mev=float(pc["deposited_energy_mev"][j]),
                n_voxels=int(pc["n_voxels"][j])))
    interactions = []
    if "interactions_id" in cols:
        n_i = len(get("interactions_id"))
        ic = {f: get(f"interactions_{f}", np.zeros(n_i)) for f in INTERACTION_BRANCHES}

        def decode(table, code, what, j):
            code = int(code)
            if code == -1:
                return None
            if not 0 <= code < len(table):
                raise EventError(f"{path}: event {index}: interaction {j} has an unknown {what} code {code}")
            return table[code]

        for j in range(n_i):
            interactions.append(dict(
                id=int(ic["id"][j]),
                vertex_cm=tuple(float(ic[f"vertex_{a}_cm"][j]) for a in "xyz"),
                nu_pdg=int(ic["nu_pdg"][j]),
                current=decode(CURRENTS, ic["current"][j], "current", j),
                channel=decode(CHANNELS, ic["channel"][j], "channel", j),
                nu_energy_mev=float(ic["nu_energy_mev"][j]),
                event_class=decode(EVENT_CLASS_CODES, ic["event_class"][j], "event class", j)))

    if "voxel_size_cm" in cols:
        volume = dict(voxel_size_cm=float(get("voxel_size_cm")),
                      shape=tuple(int(get(f"volume_n{a}")) for a in "xyz"),
                      origin_cm=tuple(float(get(f"origin_{a}_cm")) for a in "xyz"))
    else:
        volume = PILARNET_VOLUME
    meta = {
        "volume": volume,
        "event_id": int(get("event_id")) if "event_id" in cols and get("has_event_id", True) else None,
        "generator": str(get("generator")) if "generator" in cols and get("has_generator", True) else None,
        "seed": int(get("seed")) if "seed" in cols and get("has_seed", True) else None,
    }
    return build_event(path, index, arrays, particles, interactions, meta)


def _decode_checked(cols: dict, k: int, path: Path, index: int) -> Event:
    try:
        return _decode(cols, k, path, index)
    except EventError:
        raise
    except Exception as exc:  # odd branch contents (wrong types, bad JSON...)
        raise EventError(f"{path}: event {index}: cannot decode it: {exc!r}") from None


def count(path: Path) -> int:
    f, tree = _open(path)
    with f:
        return int(tree.num_entries)


def read_one(path: Path, index: Any) -> Event:
    f, tree = _open(path)
    with f:
        i = check_index(path, index, int(tree.num_entries))
        return _decode_checked(_arrays(tree, path, i, i + 1), 0, path, i)


def read_range(path: Path, start: int, stop: int) -> list[Event]:
    f, tree = _open(path)
    with f:
        n = int(tree.num_entries)
        start, stop = max(0, min(start, n)), max(0, min(stop, n))
        if stop <= start:
            return []
        cols = _arrays(tree, path, start, stop)
        return [_decode_checked(cols, k, path, start + k) for k in range(stop - start)]


def iterate(path: Path) -> Iterator[Event]:
    f, tree = _open(path)
    with f:
        n = int(tree.num_entries)
        for start in range(0, n, _READ_STEP):
            stop = min(start + _READ_STEP, n)
            cols = _arrays(tree, path, start, stop)
            for k in range(stop - start):
                yield _decode_checked(cols, k, path, start + k)


__all__ = ["count", "read_one", "read_range", "iterate", "write", "TREE", "CODES"]
