"""Fuzzing the readers: mutated HDF5 and ROOT files through the bounded reader.

    python -m larsight.evals.fuzz --n 10000 [--seed S] [--workers W] [--timeout 5]
                                  [--out evals/reports/fuzz.md]

Valid files are written by the project (simulated neutrino events: PILArNet-M v2 and v1 HDF5,
a "foreign" HDF5 without larsight's extra datasets and checksums, and ROOT); each of ``--n``
files is one of them mutated -- truncation, bit flips, zeroed or random blocks, structural
edits with h5py (deleted or renamed datasets, wrong dtypes and shapes, oversized declared
lengths, edited rows), forged entry counts in ROOT, and NaN / inf / negative / huge /
out-of-range values written by a raw writer that skips validation -- and is read with
:func:`larsight.events.formats.read_untrusted`. Each outcome is one of

- ``clear error``: an EventError / EventFileError with a one-line message (``memory`` when the
  memory cap fired);
- ``raw exception``: anything else, or an exception the readers did not foresee (the worker
  wraps those as ``kind == "unexpected"``);
- ``hang``: killed at the time bound; ``crash``: the worker process died;
- ``silently accepted``: read without error but an event breaks an independent physical check
  (non-finite values, negative energies, labels out of range...): the model should have refused;
- ``benign``: read without error and identical to the original (``benign, identical``), or
  different but valid (``benign, changed``: damage no check can see, e.g. in a foreign file
  without checksums).

The file index ``i`` seeds everything about file ``i`` (``seed``, ``i``), so a run is
reproducible whatever ``--workers``; the report (``.md`` + ``.json``) gives counts per mutation
kind, the command and seed, and example messages.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import h5py
import numpy as np

from larsight.events.formats import read, write
from larsight.events.formats.atomic import atomic_open
from larsight.events.formats.untrusted import ReaderPool
from larsight.events.model import (
    INT32_MAX, MAX_COORDINATE_CM, MAX_ENERGY_MEV, MAX_VOXEL_ENERGY_MEV, PID_CLASSES,
    SEMANTIC_CLASSES, Event, EventError, EventFileError,
)

OUTCOMES = ("clear error", "raw exception", "hang", "crash", "silently accepted",
            "benign, identical", "benign, changed")
BAD_FLOATS = (float("nan"), float("inf"), float("-inf"), -1.0, 3e38, 1e30)
BAD_INTS = (2 ** 40, 257, -7, -2 ** 31, 2 ** 31)


# ====================================================================== base files
def make_bases(work: Path, seed: int) -> dict[str, dict]:
    """The valid files every mutation starts from, with their events as read in-process."""
    from larsight.events import sim

    evs = list(sim.simulate("nu", 3, seed=seed))
    bases = {}
    write(work / "base_v2.h5", evs)
    write(work / "base_v1.h5", evs, layout="v1")
    write(work / "base.root", evs)
    shutil.copy(work / "base_v2.h5", work / "base_foreign.h5")
    with h5py.File(work / "base_foreign.h5", "r+") as f:  # what a PILArNet-M producer writes
        for name in [k for k in f if k.startswith("larsight_")]:
            del f[name]
        for key in [k for k in f.attrs if k.startswith("larsight_")]:
            del f.attrs[key]
    for name in ("base_v2.h5", "base_v1.h5", "base_foreign.h5", "base.root"):
        path = work / name
        bases[name] = {"path": path, "events": list(read(path)), "n": len(evs)}
    bases["_sim"] = {"events": evs}
    return bases


# ====================================================================== mutations
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
        import uproot

        from larsight.events.formats import root

        with uproot.recreate(path) as f:
            f["larsight_codes"] = json.dumps(root.CODES)
            tree = f.mktree(root.TREE, root._branch_types(), title=root.TITLE,
                            counter_name=root._counter_name, field_name=root._field_name)
            with np.errstate(all="ignore"):
                tree.extend(root._chunk(evs))
        return
    from larsight.events.formats import pilarnet

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


# ====================================================================== judging
def violations(ev: Event) -> list[str]:
    """Independent physical checks (not the model's code): what a read event must never hold."""
    bad = []
    for name, arr in ev.point_arrays().items():
        a = np.asarray(arr)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad.append(f"{name} non-finite")
    if np.any(ev.energy < 0) or np.any(ev.energy > MAX_VOXEL_ENERGY_MEV):
        bad.append("energy out of range")
    for name, upper in (("n_electrons", 1e11), ("dx_cm", 1e3)):
        a = getattr(ev, name)
        if a is not None and a.size and (np.any(a < 0) or np.any(a > upper)):
            bad.append(f"{name} out of range")
    if ev.semantic is not None and ev.semantic.size and (
            ev.semantic.min() < -1 or ev.semantic.max() >= len(SEMANTIC_CLASSES)):
        bad.append("semantic out of range")
    if ev.pid is not None and ev.pid.size and (ev.pid.min() < -1 or ev.pid.max() >= len(PID_CLASSES)):
        bad.append("pid out of range")
    for name in ("particle", "fragment", "interaction"):
        a = getattr(ev, name)
        if a is not None and a.size and (a.min() < -1 or a.max() > INT32_MAX):
            bad.append(f"{name} out of range")
    v = ev.meta.volume
    if not (0 < v.voxel_size_cm <= 100) or not np.all(np.isfinite(v.origin_cm)) \
            or float(np.prod(np.asarray(v.shape, dtype=np.float64))) > 1e11:
        bad.append("volume out of range")
    if len(ev) and not np.all(v.contains(ev.points)):
        bad.append("points outside the volume")
    for p in ev.particles:
        floats = list(p.start_cm) + list(p.end_cm) + list(p.momentum_mev) + [
            p.kinetic_energy_mev, p.deposited_energy_mev]
        if not np.all(np.isfinite(floats)) or p.kinetic_energy_mev < 0 or p.deposited_energy_mev < 0 \
                or max(abs(x) for x in floats) > max(MAX_ENERGY_MEV, MAX_COORDINATE_CM) or p.n_voxels < 0:
            bad.append(f"particle {p.id} out of range")
            break
    for i in ev.interactions:
        if not np.all(np.isfinite(list(i.vertex_cm) + [i.nu_energy_mev])) or i.nu_energy_mev < 0:
            bad.append(f"interaction {i.id} out of range")
            break
    return bad


def judge(path: Path, reader: Callable, original: list[Event], timeout_s: float) -> tuple[str, str]:
    """(outcome, message) of reading one mutated file."""
    try:
        got = reader(path, timeout_s)
    except EventFileError as exc:
        msg = str(exc)
        if exc.kind == "timeout":
            return "hang", msg
        if exc.kind == "crash":
            return "crash", msg
        if exc.kind == "unexpected":
            return "raw exception", msg
        return "clear error", msg
    except EventError as exc:  # the in-process reader's class; still a clear error
        return "clear error", str(exc)
    except Exception as exc:  # noqa: BLE001 - the point is to count these
        return "raw exception", f"{type(exc).__name__}: {exc}"
    problems = [f"event {k}: {', '.join(violations(ev))}" for k, ev in enumerate(got) if violations(ev)]
    if problems:
        return "silently accepted", "; ".join(problems)[:300]
    same = len(got) == len(original) and all(a.equals(b) for a, b in zip(got, original))
    return ("benign, identical" if same else "benign, changed"), f"{len(got)} events read"


# ====================================================================== running
def run(n: int, seed: int, workers: int, timeout_s: float, work: Path, progress: bool = True,
        max_memory_mb: int = 1024) -> dict:
    bases = make_bases(work, seed)
    pool = ReaderPool(max_memory_mb=max_memory_mb, max_idle=max(workers, 1))

    def reader(path, t):
        return pool.call("read", path, None, timeout_s=t)

    def one(i: int) -> dict:
        rng = np.random.default_rng([seed, i])
        kind, base_name = PLAN[int(rng.integers(0, len(PLAN)))]
        base = bases[base_name]
        dst = work / f"m{i:06d}{base['path'].suffix}"
        t0 = time.monotonic()
        try:
            what = MUTATIONS[kind](rng, base, dst)
        except Exception as exc:  # noqa: BLE001 - a mutation that could not be applied
            what = f"mutation not applied ({type(exc).__name__}: {exc}); original file"
            _copy(base["path"], dst)
        outcome, msg = judge(dst, reader, base["events"], timeout_s)
        names_file = outcome not in ("clear error", "raw exception", "hang", "crash") or str(dst) in msg
        try:
            dst.unlink()
        except FileNotFoundError:
            pass
        return {"i": i, "kind": kind, "base": base_name, "mutation": what, "outcome": outcome,
                "message": msg.replace(str(dst), "<file>")[:400], "names_file": names_file,
                "seconds": round(time.monotonic() - t0, 3)}

    started = time.monotonic()
    results: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="fuzz", unit="file")
    try:
        if workers <= 1:
            for i in range(n):
                results.append(one(i))
                if bar:
                    bar.update(1)
        else:
            # h5py is not thread-safe: the mutations are made under a lock, the reads (in
            # worker processes) run in parallel
            import threading

            lock = threading.Lock()
            orig = dict(MUTATIONS)

            def locked(fn):
                def wrapped(*a):
                    with lock:
                        return fn(*a)
                return wrapped

            for k in list(MUTATIONS):
                MUTATIONS[k] = locked(orig[k])
            try:
                with ThreadPoolExecutor(workers) as ex:
                    for r in ex.map(one, range(n)):
                        results.append(r)
                        if bar:
                            bar.update(1)
            finally:
                MUTATIONS.update(orig)
    finally:
        if bar:
            bar.close()
        pool.close()
    return {"n": n, "seed": seed, "workers": workers, "timeout_s": timeout_s,
            "max_memory_mb": max_memory_mb, "wall_s": round(time.monotonic() - started, 1),
            "worker_starts": pool.started, "results": results}


def summarise(run_: dict) -> dict:
    results = run_["results"]
    total = Counter(r["outcome"] for r in results)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        by_kind[r["kind"]][r["outcome"]] += 1
    unnamed = [r for r in results if not r["names_file"]]
    memory = sum(1 for r in results if r["outcome"] == "clear error" and "MB of memory" in r["message"])
    return {"total": {o: total.get(o, 0) for o in OUTCOMES},
            "by_kind": {k: {o: c.get(o, 0) for o in OUTCOMES} for k, c in sorted(by_kind.items())},
            "failures_without_file_name": len(unnamed), "memory_cap_errors": memory,
            "multi_line_messages": sum(1 for r in results if "\n" in r["message"])}


def write_report(run_: dict, out: Path, command: str) -> None:
    s = summarise(run_)
    t = s["total"]
    headline = (f"{run_['n']} files: {t['raw exception']} raw exceptions, {t['hang']} hangs "
                f"(killed at {run_['timeout_s']:g} s), {t['crash']} crashes, "
                f"{t['silently accepted']} silently accepted; {t['clear error']} clear errors, "
                f"{t['benign, identical'] + t['benign, changed']} benign "
                f"({t['benign, changed']} changed but valid)")
    lines = ["# Fuzzing the event readers", "",
             f"Produced by `{command}` (seed {run_['seed']}, {run_['workers']} worker(s), "
             f"time bound {run_['timeout_s']:g} s and memory cap {run_['max_memory_mb']} MB per "
             f"file) in {run_['wall_s']:.0f} s on {os.cpu_count()} cores ({platform.machine()}, "
             f"Python {platform.python_version()}); {run_['worker_starts']} reader processes were "
             "started (a new one after each kill or crash).", "",
             "Each file is a valid file written by larsight (3 simulated neutrino events: PILArNet-M "
             "v2 and v1 HDF5, a foreign-style HDF5 without larsight's datasets and checksums, ROOT) "
             "with one mutation, read with `read_untrusted` (every event). Outcomes: see "
             "`larsight.evals.fuzz`.", "",
             "## Headline", "", headline, "",
             f"Failure messages that do not name the file: {s['failures_without_file_name']}; "
             f"messages over more than one line: {s['multi_line_messages']}; clear errors from "
             f"the memory cap: {s['memory_cap_errors']}.", "",
             "## Outcomes per mutation kind", "",
             "| kind | files | " + " | ".join(OUTCOMES) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in OUTCOMES) + " |"]
    for kind, c in s["by_kind"].items():
        lines.append(f"| {kind} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |")
    lines.append(f"| **all** | {run_['n']} | " + " | ".join(f"**{t[o]}**" for o in OUTCOMES) + " |")
    lines += ["", "## Example messages", "", "One per mutation kind and outcome (`<file>` is the "
              "mutated file's path).", "", "| kind | outcome | mutation | message |",
              "| --- | --- | --- | --- |"]
    seen = set()
    for r in run_["results"]:
        key = (r["kind"], r["outcome"])
        if key in seen:
            continue
        seen.add(key)
        msg = r["message"].replace("|", "\\|")[:220]
        lines.append(f"| {r['kind']} | {r['outcome']} | {r['mutation'][:80].replace('|', '/')} | {msg} |")
    bad = [r for r in run_["results"] if r["outcome"] in ("raw exception", "crash", "silently accepted")]
    if bad:
        lines += ["", "## Every raw exception, crash and silently accepted file (first 30)", "",
                  "| file | kind | base | mutation | outcome | message |", "| ---: | --- | --- | --- | --- | --- |"]
        for r in bad[:30]:
            lines.append(f"| {r['i']} | {r['kind']} | {r['base']} | {r['mutation'][:80]} | {r['outcome']} | "
                         f"{r['message'][:200].replace('|', '/')} |")
    changed = [r for r in run_["results"] if r["outcome"] == "benign, changed"]
    if changed:
        where = Counter(r["base"] for r in changed)
        lines += ["", "## Changed but valid", "",
                  "Files read without error whose events differ from the original but pass every "
                  "check, by base file: " + ", ".join(f"{k} {v}" for k, v in where.most_common()) +
                  ". In larsight's own HDF5 files the per-row CRC-32 checksums catch changed rows "
                  "(what reads changed there had its checksums removed, or gained an empty event "
                  "row); foreign HDF5 files and ROOT files carry no such checksums, so damage that "
                  "leaves valid values is not detectable there. For `bad_values` the raw writer "
                  "itself narrows integers to the stored dtype (a pid of 2^40 is stored as 0 in an "
                  "int8 branch) and some values are valid (a vertex at x = -1 cm, an unbounded "
                  "time), so the file holds a valid, different event."]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    payload = {k: v for k, v in run_.items() if k != "results"}
    payload.update({"command": command, "headline": headline, "summary": s,
                    "results": run_["results"]})
    with atomic_open(out.with_suffix(".json"), "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="number of mutated files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="files read at once (one reader process each)")
    ap.add_argument("--timeout", type=float, default=5.0, help="time bound per file, s")
    ap.add_argument("--max-memory-mb", type=int, default=1024, help="memory cap per reader process")
    ap.add_argument("--out", default="evals/reports/fuzz.md")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    for name, value in (("--n", args.n), ("--workers", args.workers), ("--timeout", args.timeout),
                        ("--max-memory-mb", args.max_memory_mb)):
        if not value > 0:
            ap.error(f"{name} must be positive, got {value}")
    command = "python -m larsight.evals.fuzz " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="larsight-fuzz-") as tmp:
        result = run(args.n, args.seed, args.workers, args.timeout, Path(tmp),
                     progress=not args.no_progress, max_memory_mb=args.max_memory_mb)
    out = Path(args.out)
    write_report(result, out, command.strip())
    print(json.dumps(summarise(result)["total"]))
    print(f"report: {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
