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
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import h5py
import numpy as np
from tqdm.auto import tqdm

# the mutations live in their own module; their names stay importable from here
from larsight.evals.fuzz_mutations import (  # noqa: F401
    BAD_FLOATS, BAD_INTS, BYTE_KINDS, H5_KINDS, MUTATIONS, PLAN, _bad_event, _copy, _datasets,
    _raw_write, _recreate, m_bad_values, m_byte_flip, m_h5_delete, m_h5_dtype, m_h5_length,
    m_h5_rename, m_h5_rows, m_h5_shape, m_random_block, m_root_entries, m_truncate, m_zero_block,
)
from larsight.events import sim
from larsight.events.formats import read, write
from larsight.events.formats.atomic import atomic_open
from larsight.events.formats.untrusted import ReaderPool
from larsight.events.model import (
    INT32_MAX, MAX_COORDINATE_CM, MAX_ENERGY_MEV, MAX_VOXEL_ENERGY_MEV, PID_CLASSES,
    SEMANTIC_CLASSES, Event, EventError, EventFileError,
)

OUTCOMES = ("clear error", "raw exception", "hang", "crash", "silently accepted",
            "benign, identical", "benign, changed")


# ====================================================================== base files
def make_bases(work: Path, seed: int) -> dict[str, dict]:
    """The valid files every mutation starts from, with their events as read in-process."""
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
