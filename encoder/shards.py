"""Pre-simulated training shards (``larsight shards``): simulate once, train for hours.

    larsight shards --mode nu,mpv,mpr --n 20000 --seed 0 --shard-size 500 --out ~/data/pt0 --workers 8
    larsight pretrain --data ~/data/pt0 ...        # streams them (encoder.stream.ShardStream)

A shard folder holds ``shard-00000.h5``, ``shard-00001.h5``, ... (PILArNet-M HDF5 schema, written
by ``events.formats.write``, which is atomic: an interrupted shard never appears under its name)
and ``shards.json``, the manifest: the exact command, the data spec, the simulator seed, and per
shard its first event index, event count, points, semantic label counts and SHA-256. The manifest
is rewritten (atomically) after every finished shard with ``complete: false`` until the last one,
so rerunning the same command after an interruption writes only the missing shards, and training
refuses a folder whose writing has not finished.

Event ``i`` of the folder is event ``i`` of the simulator stream of ``split_seed(seed, split)``
(mode ``modes[i % len(modes)]``), so shards of the ``pretrain`` / ``finetune`` split never hold a
held-out evaluation event.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from larsight.events import formats
from larsight.events.formats.atomic import atomic_open
from larsight.events.model import Event
from larsight.events.sim import MODES, VERSION, simulate

from .data import split_seed, volume_for

MANIFEST = "shards.json"
FORMAT = "larsight-shards"
FORMAT_VERSION = 1
N_SEMANTIC = 5


class ShardError(ValueError):
    """A shard folder that cannot be written to or read from (the message says why)."""


@dataclass
class ShardSpec:
    """What a shard folder holds; two folders with equal specs hold the same events."""

    modes: tuple[str, ...] = ("nu",)
    n: int = 1000
    seed: int = 0
    split: str = "pretrain"
    shard_size: int = 500
    voxel_size_cm: float = 0.3
    randomize: bool = False
    knobs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.modes, str):
            self.modes = tuple(m for m in self.modes.split(",") if m)
        self.modes = tuple(self.modes)
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ShardError(f"shards: --mode must be one or more of {sorted(MODES)}, got {self.modes}")
        if self.n < 1 or self.shard_size < 1:
            raise ShardError(f"shards: --n and --shard-size must be >= 1 (got {self.n}, {self.shard_size})")
        split_seed(self.seed, self.split)  # validates both
        volume_for(self.voxel_size_cm)
        self.knobs = dict(self.knobs or {})

    @property
    def n_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_range(self, k: int) -> tuple[int, int]:
        first = k * self.shard_size
        return first, min(self.n, first + self.shard_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modes"] = list(self.modes)
        return d


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.h5"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sim_kwargs(spec: ShardSpec) -> dict[str, Any]:
    """Domain-randomisation keywords, passed only when asked for (so an older simulator runs)."""
    kw: dict[str, Any] = {}
    if spec.randomize:
        kw["randomize"] = True
    if spec.knobs:
        kw["knobs"] = dict(spec.knobs)
    return kw


def simulated_range(spec: ShardSpec, first: int, stop: int) -> Iterator[Event]:
    """Events ``first .. stop-1`` of the folder's stream."""
    seed, volume, kw = split_seed(spec.seed, spec.split), volume_for(spec.voxel_size_cm), _sim_kwargs(spec)
    for i in range(first, stop):
        mode = spec.modes[i % len(spec.modes)]
        try:
            yield from simulate(mode, 1, seed=seed, volume=volume, start=i, **kw)
        except TypeError as err:
            if kw and "unexpected keyword" in str(err):
                raise ShardError("shards: this larsight's simulator does not take --randomize / "
                                 "--knob yet") from None
            raise


class _Tally:
    """Counts what passes through the writer (events, points, semantic labels)."""

    def __init__(self, events: Iterator[Event]):
        self.events, self.n, self.nonempty, self.points = events, 0, 0, 0
        self.semantic = np.zeros(N_SEMANTIC, dtype=np.int64)

    def __iter__(self):
        for ev in self.events:
            self.n += 1
            self.nonempty += len(ev) > 0
            self.points += len(ev)
            if ev.semantic is not None and len(ev):
                s = np.asarray(ev.semantic, dtype=np.int64)
                self.semantic += np.bincount(s[(s >= 0) & (s < N_SEMANTIC)], minlength=N_SEMANTIC)
            yield ev


def write_shard(spec: ShardSpec, out: Path, k: int) -> dict[str, Any]:
    """Simulate and write shard ``k`` (atomically); returns its manifest record."""
    first, stop = spec.shard_range(k)
    path = out / shard_name(k)
    t0 = time.time()
    tally = _Tally(simulated_range(spec, first, stop))
    formats.write(path, tally)
    return {"file": path.name, "index": k, "first": first, "n": tally.n, "nonempty": tally.nonempty,
            "points": tally.points, "semantic_counts": tally.semantic.tolist(),
            "bytes": path.stat().st_size, "sha256": sha256(path), "seconds": time.time() - t0}


def _write_shard_job(args) -> dict[str, Any]:
    spec, out, k = args
    return write_shard(spec, Path(out), k)


def _save_manifest(out: Path, man: dict) -> None:
    man["shards"] = sorted(man["shards"], key=lambda r: r["index"])
    with atomic_open(out / MANIFEST, "w") as f:
        f.write(json.dumps(man, indent=1) + "\n")


def _start_manifest(spec: ShardSpec, out: Path, command: str) -> dict:
    """A fresh manifest, or the one of an interrupted run of the same spec (its finished shards
    kept when their files are intact)."""
    fresh = {"format": FORMAT, "format_version": FORMAT_VERSION, "command": command,
             "spec": spec.to_dict(), "simulator_seed": split_seed(spec.seed, spec.split),
             "simulator_version": VERSION, "n_shards": spec.n_shards, "complete": False, "shards": []}
    path = out / MANIFEST
    if not path.exists():
        stray = sorted(out.glob("shard-*.h5"))
        if stray:
            raise ShardError(f"shards: {out} holds {len(stray)} shard files but no {MANIFEST}; "
                             f"give an empty or new --out folder")
        return fresh
    old = json.loads(path.read_text())
    if old.get("spec") != spec.to_dict():
        diffs = [f"{k}={old.get('spec', {}).get(k)!r} there, {v!r} here"
                 for k, v in spec.to_dict().items() if old.get("spec", {}).get(k) != v]
        raise ShardError(f"shards: {out} holds shards of another command ({'; '.join(diffs)}); "
                         f"give a new --out folder")
    kept = [r for r in old.get("shards", []) if (out / r["file"]).exists()
            and (out / r["file"]).stat().st_size == r["bytes"]]
    fresh["shards"] = kept
    fresh["complete"] = len(kept) == spec.n_shards
    return fresh


def write_shards(spec: ShardSpec, out: str | os.PathLike, *, workers: int = 1,
                 command: str = "", progress: bool = True) -> dict[str, Any]:
    """Write every missing shard of ``spec`` into ``out`` with ``workers`` processes; returns the
    manifest (also ``out/shards.json``)."""
    from tqdm.auto import tqdm

    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    man = _start_manifest(spec, out, command)
    done = {r["index"] for r in man["shards"]}
    todo = [k for k in range(spec.n_shards) if k not in done]
    t0 = time.time()
    jobs = [(spec, str(out), k) for k in todo]
    bar = tqdm(total=len(todo), desc=f"shards -> {out.name}", unit="shard", disable=not progress)
    if workers > 1 and len(todo) > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(min(workers, len(todo))) as pool:
            for rec in pool.imap_unordered(_write_shard_job, jobs):
                man["shards"].append(rec)
                _save_manifest(out, man)
                bar.update(1)
    else:
        for job in jobs:
            man["shards"].append(_write_shard_job(job))
            _save_manifest(out, man)
            bar.update(1)
    bar.close()
    seconds = time.time() - t0
    n_new = sum(r["n"] for r in man["shards"] if r["index"] in set(todo))
    man["complete"] = True
    man["n_events"] = sum(r["n"] for r in man["shards"])
    man["semantic_counts"] = np.sum([r["semantic_counts"] for r in man["shards"]], axis=0).tolist()
    man["last_write"] = {"events": n_new, "seconds": round(seconds, 3), "workers": workers,
                         "events_per_s": round(n_new / seconds, 2) if seconds > 0 and n_new else None}
    _save_manifest(out, man)
    return man


# ============================================================================ reading
@dataclass
class ShardFolder:
    """A finished shard folder, as training reads it."""

    path: Path
    manifest: dict

    @property
    def spec(self) -> ShardSpec:
        return ShardSpec(**{**self.manifest["spec"], "modes": tuple(self.manifest["spec"]["modes"])})

    @property
    def files(self) -> list[Path]:
        return [self.path / r["file"] for r in self.manifest["shards"]]

    @property
    def counts(self) -> list[int]:
        return [int(r["n"]) for r in self.manifest["shards"]]

    @property
    def voxel_size_cm(self) -> float:
        return float(self.manifest["spec"]["voxel_size_cm"])

    def semantic_counts(self) -> np.ndarray:
        return np.asarray(self.manifest.get("semantic_counts")
                          or np.sum([r["semantic_counts"] for r in self.manifest["shards"]], axis=0))

    def fingerprint(self) -> str:
        """Identifies the folder's content (the shards' checksums), for resume checks."""
        return hashlib.sha256("".join(r["sha256"] for r in self.manifest["shards"]).encode()).hexdigest()[:16]


def open_shards(path: str | os.PathLike, verify: bool = False) -> ShardFolder:
    """Read and check a shard folder's manifest (and, with ``verify``, every file's SHA-256)."""
    path = Path(path).expanduser()
    man_path = path / MANIFEST
    if not path.is_dir():
        raise ShardError(f"--data {path}: no such folder")
    if not man_path.exists():
        raise ShardError(f"--data {path}: no {MANIFEST}; write shards with `larsight shards --out {path}`")
    try:
        man = json.loads(man_path.read_text())
    except json.JSONDecodeError as err:
        raise ShardError(f"--data {path}: {MANIFEST} is not valid JSON ({err.msg})") from None
    if man.get("format") != FORMAT:
        raise ShardError(f"--data {path}: {MANIFEST} is not a larsight shard manifest")
    if not man.get("complete"):
        raise ShardError(f"--data {path}: shard writing did not finish ({len(man.get('shards', []))} of "
                         f"{man.get('n_shards')} shards); rerun the same `larsight shards` command")
    for r in man["shards"]:
        f = path / r["file"]
        if not f.exists():
            raise ShardError(f"--data {path}: shard {r['file']} is missing")
        if f.stat().st_size != r["bytes"] or (verify and sha256(f) != r["sha256"]):
            raise ShardError(f"--data {path}: shard {r['file']} differs from the manifest (changed or corrupt)")
    return ShardFolder(path, man)
