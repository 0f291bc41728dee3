"""The mutations of the reader fuzz harness (:mod:`larsight.evals.fuzz`): each takes a random
generator, a base file (``{"path", "events", "n"}``) and a destination path, writes the mutated
file there and returns a short description of what it did.

Every draw comes from the generator passed in, in a fixed order, so a file's mutation depends only
on the seed it was given; changing the order of draws here changes the files of every seed.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import uproot

from larsight.events.formats import pilarnet, root
from larsight.events.model import Event

BAD_FLOATS = (float("nan"), float("inf"), float("-inf"), -1.0, 3e38, 1e30)
BAD_INTS = (2 ** 40, 257, -7, -2 ** 31, 2 ** 31)


def _copy(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)


def m_truncate(rng, base, dst):
    _copy(base["path"], dst)
    size = dst.stat().st_size
    keep = int(rng.integers(0, size))
    os.truncate(dst, keep)
    return f"cut to {keep} of {size} bytes"


def m_byte_flip(rng, base, dst):
    _copy(base["path"], dst)
    size = dst.stat().st_size
    k = int(rng.integers(1, 9))
    with open(dst, "r+b") as fh:
        for off in rng.integers(0, size, k):
            fh.seek(int(off))
            b = fh.read(1)[0]
            fh.seek(int(off))
            fh.write(bytes([b ^ (1 << int(rng.integers(0, 8)))]))
    return f"{k} bit(s) flipped"


def m_zero_block(rng, base, dst):
    _copy(base["path"], dst)
    size = dst.stat().st_size
    n = int(rng.choice([512, 1024, 4096, 8192]))
    off = int(rng.integers(0, max(1, size - n)))
    with open(dst, "r+b") as fh:
        fh.seek(off)
        fh.write(b"\0" * n)
    return f"{n} bytes zeroed at {off}"


def m_random_block(rng, base, dst):
    _copy(base["path"], dst)
    size = dst.stat().st_size
    n = int(rng.choice([16, 256, 4096]))
    off = int(rng.integers(0, max(1, size - n)))
    with open(dst, "r+b") as fh:
        fh.seek(off)
        fh.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    return f"{n} random bytes at {off}"


def _datasets(f) -> list[str]:
    return sorted(k for k in f if isinstance(f[k], h5py.Dataset))


def m_h5_delete(rng, base, dst):
    _copy(base["path"], dst)
    with h5py.File(dst, "r+") as f:
        name = str(rng.choice(_datasets(f)))
        del f[name]
    return f"deleted '{name}'"


def m_h5_rename(rng, base, dst):
    _copy(base["path"], dst)
    with h5py.File(dst, "r+") as f:
        names = _datasets(f)
        name = str(rng.choice(names))
        other = str(rng.choice(names))
        if other != name and rng.random() < 0.5:  # swap two datasets
            f.move(name, "_tmp_")
            f.move(other, name)
            f.move("_tmp_", other)
            return f"swapped '{name}' and '{other}'"
        f.move(name, name + "_renamed")
    return f"renamed '{name}'"


def _recreate(f, name: str, data, **kw) -> None:
    del f[name]
    f.create_dataset(name, data=data, **kw)


def m_h5_dtype(rng, base, dst):
    _copy(base["path"], dst)
    with h5py.File(dst, "r+") as f:
        name = str(rng.choice(_datasets(f)))
        ds = f[name]
        rows = [np.asarray(r) for r in ds[()]] if ds.ndim == 1 else None
        choice = int(rng.integers(0, 4))
        if rows is None or choice == 0:  # a plain 2-D float array
            _recreate(f, name, rng.normal(size=(len(ds), 8)).astype(np.float64))
            return f"'{name}' as a 2-D float64 array"
        if choice == 1:  # text instead of numbers, or numbers instead of text
            if h5py.check_string_dtype(ds.dtype):
                vl = h5py.vlen_dtype(np.float32)
                col = np.empty(len(rows), dtype=vl)
                for j in range(len(rows)):
                    col[j] = rng.normal(size=8).astype(np.float32)
                _recreate(f, name, col, dtype=vl)
                return f"'{name}' as float rows"
            _recreate(f, name, np.array([str(r.tolist())[:200] for r in rows], dtype=object),
                      dtype=h5py.string_dtype())
            return f"'{name}' as text"
        target = [np.int8, np.uint64, np.float64, np.int16][int(rng.integers(0, 4))]
        if h5py.check_string_dtype(ds.dtype):
            return m_h5_rows(rng, base, dst)
        vl = h5py.vlen_dtype(target)
        col = np.empty(len(rows), dtype=vl)
        with np.errstate(all="ignore"):
            for j, r in enumerate(rows):
                col[j] = r.astype(target)
        _recreate(f, name, col, dtype=vl)
        return f"'{name}' rows cast to {np.dtype(target).name}"


def m_h5_shape(rng, base, dst):
    _copy(base["path"], dst)
    with h5py.File(dst, "r+") as f:
        name = str(rng.choice(_datasets(f)))
        n = len(f[name]) if f[name].shape else 1
        shape = [(), (n, 3), (n, 1, 2), (0,), (n + 2,)][int(rng.integers(0, 5))]
        _recreate(f, name, np.ones(shape, np.float32))
    return f"'{name}' replaced by shape {shape}"


def m_h5_length(rng, base, dst):
    _copy(base["path"], dst)
    n = base["n"]
    new = int(rng.choice([n + 1, n * 1000, 10 ** 6, 10 ** 9, 2 ** 40]))
    with h5py.File(dst, "r+") as f:
        names = _datasets(f) if rng.random() < 0.5 else [str(rng.choice(_datasets(f)))]
        for name in names:
            ds = f[name]
            if ds.chunks is not None and ds.maxshape[0] is None:
                ds.resize((new,) + ds.shape[1:])
    return f"{len(names)} dataset(s) declare {new} rows"


def m_h5_rows(rng, base, dst):
    """Replace one row of one dataset with other content (checksums kept or dropped)."""
    _copy(base["path"], dst)
    with h5py.File(dst, "r+") as f:
        names = [k for k in _datasets(f) if f[k].ndim == 1]
        name = str(rng.choice(names))
        ds = f[name]
        j = int(rng.integers(0, len(ds)))
        if h5py.check_string_dtype(ds.dtype):
            bad = str(rng.choice(['[{"id": 0, "vertex_cm": [NaN, 0, 0]}]', '{"volume": {"voxel_size_cm": 1e30}}',
                                  '[{"id": 1, "kinetic_energy_mev": Infinity}]', '{}', '[1, 2]', '"x"',
                                  '{"volume": {"shape": [100000, 100000, 100000]}}', "{not json"]))
            ds[j] = bad
            what = f"text {bad[:40]!r}"
        else:
            old = np.asarray(ds[j])
            new = old.copy()
            if new.size:
                k = int(rng.integers(0, new.size))
                if new.dtype.kind == "f":
                    new[k] = rng.choice(BAD_FLOATS)
                else:
                    info = np.iinfo(new.dtype)
                    new[k] = int(rng.choice([info.max, info.min, -1, 127]))
            else:
                new = rng.normal(size=5).astype(old.dtype)
            ds[j] = new
            what = f"value edited in row {j}"
        dropped = "larsight_crc32" in f and rng.random() < 0.5
        if dropped:
            del f["larsight_crc32"]
    return f"'{name}': {what}" + ("; checksums removed" if dropped else "")


def m_root_entries(rng, base, dst):
    """Forge the TTree's entry count (and any other big-endian int64 equal to it)."""
    data = bytearray(base["path"].read_bytes())
    needle = np.array([base["n"]], ">i8").tobytes()
    hits = [i for i in range(len(data) - 8) if data[i:i + 8] == needle]
    new = int(rng.choice([base["n"] + 1, 10 ** 6, 10 ** 9, 2 ** 40]))
    for i in hits:
        if rng.random() < 0.7:
            data[i:i + 8] = np.array([new], ">i8").tobytes()
    dst.write_bytes(bytes(data))
    return f"int64 {base['n']} -> {new} at up to {len(hits)} places"


def _bad_event(rng, evs: list[Event]) -> tuple[list[Event], str]:
    """Copies of the events with one value made non-physical, bypassing validation."""
    out = [e.copy() for e in evs]
    k = int(rng.integers(0, len(out)))
    ev = out[k]
    j = int(rng.integers(0, len(ev)))
    target = str(rng.choice(["energy", "points", "n_electrons", "dx_cm", "time_us", "semantic",
                             "particle", "pid", "fragment", "particle_table", "interaction_table",
                             "volume"]))
    if target in ("energy", "points", "n_electrons", "dx_cm", "time_us"):
        arr = getattr(ev, target).astype(np.float64)
        value = float(rng.choice(BAD_FLOATS + (-1e-3,)))
        if arr.ndim == 2:
            arr[j, int(rng.integers(0, 3))] = value
        else:
            arr[j] = value
        object.__setattr__(ev, target, arr)
        return out, f"event {k} {target}[{j}] = {value}"
    if target in ("semantic", "particle", "pid", "fragment"):
        arr = getattr(ev, target).astype(np.int64)
        value = int(rng.choice(BAD_INTS))
        arr[j] = value
        object.__setattr__(ev, target, arr)
        return out, f"event {k} {target}[{j}] = {value}"
    if target == "particle_table" and ev.particles:
        p = ev.particles[int(rng.integers(0, len(ev.particles)))].model_copy()
        field = str(rng.choice(["start_cm", "kinetic_energy_mev", "momentum_mev",
                                "deposited_energy_mev", "n_voxels", "id"]))
        if field in ("start_cm", "momentum_mev"):
            value: Any = (float(rng.choice(BAD_FLOATS)), 0.0, 0.0)
        elif field in ("n_voxels", "id"):
            value = int(rng.choice([-5, 2 ** 40]))
        else:
            value = float(rng.choice(BAD_FLOATS))
        object.__setattr__(p, field, value)
        ev.particles[0] = p
        return out, f"event {k} particle.{field} = {value}"
    if target == "interaction_table" and ev.interactions:
        i = ev.interactions[0].model_copy()
        field = str(rng.choice(["vertex_cm", "nu_energy_mev"]))
        value = (float(rng.choice(BAD_FLOATS)), 0.0, 0.0) if field == "vertex_cm" else float(rng.choice(BAD_FLOATS))
        object.__setattr__(i, field, value)
        ev.interactions[0] = i
        return out, f"event {k} interaction.{field} = {value}"
    vol = ev.meta.volume
    ev.meta = ev.meta.model_copy()  # copies share their meta with the originals
    kind = int(rng.integers(0, 3))
    if kind == 0:
        bad = type(vol).model_construct(voxel_size_cm=1e30, shape=vol.shape, origin_cm=vol.origin_cm)
        what = "voxel_size_cm = 1e30"
    elif kind == 1:
        bad = type(vol).model_construct(voxel_size_cm=vol.voxel_size_cm, shape=(10 ** 4,) * 3,
                                        origin_cm=vol.origin_cm)
        what = "shape = 1e12 voxels"
    else:
        bad = type(vol).model_construct(voxel_size_cm=vol.voxel_size_cm, shape=vol.shape,
                                        origin_cm=(float("nan"), 0.0, 0.0))
        what = "origin = NaN"
    object.__setattr__(ev.meta, "volume", bad)
    return out, f"event {k} volume {what}"


def _raw_write(path: Path, evs: list[Event]) -> None:
    """The project's encoders without the validation a normal write runs: what a foreign or
    buggy producer could put in a file."""
    if path.suffix == ".root":
        with uproot.recreate(path) as f:
            f["larsight_codes"] = json.dumps(root.CODES)
            tree = f.mktree(root.TREE, root._branch_types(), title=root.TITLE,
                            counter_name=root._counter_name, field_name=root._field_name)
            with np.errstate(all="ignore"):
                tree.extend(root._chunk(evs))
        return
    with h5py.File(path, "w") as f:
        w = pilarnet._Writer(f, "v2")
        with np.errstate(all="ignore"):
            for ev in evs:
                w.add(pilarnet.encode(ev, "v2"))
        w.flush()


def m_bad_values(rng, base, dst):
    evs, what = _bad_event(rng, base["events"])
    try:
        _raw_write(dst, evs)
    except (OverflowError, ValueError, TypeError) as exc:  # the encoder itself could not store it
        dst.write_bytes(b"")
        return f"{what} (encoder refused: {type(exc).__name__})"
    return what


BYTE_KINDS = {"truncate": m_truncate, "byte_flip": m_byte_flip, "zero_block": m_zero_block,
              "random_block": m_random_block}
H5_KINDS = {"h5_delete": m_h5_delete, "h5_rename": m_h5_rename, "h5_dtype": m_h5_dtype,
            "h5_shape": m_h5_shape, "h5_declared_length": m_h5_length, "h5_rows": m_h5_rows}
PLAN: list[tuple[str, str]] = (
    [(k, b) for k in BYTE_KINDS for b in ("base_v2.h5", "base_v1.h5", "base_foreign.h5", "base.root")]
    + [(k, b) for k in H5_KINDS for b in ("base_v2.h5", "base_v1.h5", "base_foreign.h5")]
    + [("root_declared_length", "base.root")] * 2
    + [("bad_values", "base_v2.h5")] * 3 + [("bad_values", "base.root")] * 3
)
"""(mutation kind, base file): file i uses one drawn at random, so each kind gets its share."""
MUTATIONS: dict[str, Callable] = {**BYTE_KINDS, **H5_KINDS, "root_declared_length": m_root_entries,
                                  "bad_values": m_bad_values}
