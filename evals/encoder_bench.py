"""Encoder inference benchmark: speed and peak memory of ``PointEncoder`` at PILArNet-M event sizes.

    python -m larsight.evals.encoder_bench [--presets tiny,small,base] [--sizes 1000,3000,10000,30000]
                                  [--device cpu|cuda] [--threads 2] [--bf16] [--quick]
                                  [--out evals/reports]

For every (preset, points per event, batch size, dtype) configuration a fresh Python process
builds the model (eval mode, random init: speed does not depend on the weights), runs warm-up
calls, then times ``repeats`` calls under ``torch.no_grad()`` (and ``torch.autocast`` for bf16):

* forward: ``model(batch)`` on an already collated batch (on the device);
* end to end, semantic-segmentation style: ``collate_events`` from ``events.Event`` objects,
  the transfer to the device, the forward pass, a linear 5-class point head, ``argmax`` and the
  labels back on the host as numpy.

Peak memory is measured per process, so configurations never see each other's high-water
marks: on CPU ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the timed calls minus its
value once the model and the inputs are in memory (and absolute); on CUDA
``torch.cuda.max_memory_allocated`` (absolute, and above what the model and inputs hold).

Inputs are real simulated events on the PILArNet-M grid (768^3 voxels of 0.3 cm): ``mpr``
events (the biggest of the simulator's modes, ~2.6k voxels each) are merged, in stream order,
into one event until it holds at least N distinct 0.3 cm voxels (energies of a shared voxel are
summed), then cut to exactly N by dropping the last merged event's trailing points. Eight such
events are built per size from disjoint runs of the stream (for batch 8, and cycled through by
batch 1); the voxels of a slot's N-point event are the first N of its larger ones.

Writes ``<out>/encoder_speed.md``, ``<out>/encoder_speed/ms_per_event.png`` and the raw numbers
in ``<out>/encoder_speed/results.json`` (all written atomically). ``--quick`` (tiny preset, two
small sizes, two repeats) is the smoke test; it writes under the temp directory unless
``--out`` is given, so it never replaces the committed report.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from larsight.events.formats.atomic import atomic_open

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 8)
SLOTS = max(BATCH_SIZES)          # distinct input events per size
SLOT_STRIDE = 1000                # slot j draws mpr events j*SLOT_STRIDE, j*SLOT_STRIDE + 1, ...
N_SEMANTIC = 5
PANDA = dict(ms_per_event=8.3, memory_gb=1.75, device="A100")
"""The Panda talk's anchor: semantic segmentation at 8.3 ms/event on an A100 using 1.75 GB."""

DEFAULTS = dict(presets="tiny,small", sizes="1000,3000,10000,30000", warmup=2, repeats=10,
                min_repeats=3, max_seconds=20.0, timeout=900.0)
QUICK = dict(presets="tiny", sizes="250,750", warmup=1, repeats=2, min_repeats=2,
             max_seconds=5.0, timeout=120.0)


# ============================================================================ inputs
def _voxels(points: np.ndarray, voxel_size_cm: float) -> np.ndarray:
    return np.floor(points / voxel_size_cm + 1e-3).astype(np.int64)


def merged_event(stream: Sequence[tuple[np.ndarray, np.ndarray]] | Any, n_points: int,
                 voxel_size_cm: float = 0.3) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge events from ``stream`` (an iterable of (points, energy)) into exactly ``n_points``
    distinct voxels of ``voxel_size_cm``.

    Points are taken in stream order; a point whose voxel is already present adds its energy
    there. Returns (points (n, 3) float32, energy (n,) float32, events used).
    """
    pts, ens, keys_seen = [], [], {}
    total, used = 0, 0
    for points, energy in stream:
        used += 1
        vox = _voxels(points, voxel_size_cm)
        for p, e, v in zip(points, energy, map(tuple, vox)):
            row = keys_seen.get(v)
            if row is not None:
                ens[row] += float(e)
                continue
            if total == n_points:
                continue          # the event is full: later points only add energy to its voxels
            keys_seen[v] = total
            pts.append(p)
            ens.append(float(e))
            total += 1
        if total == n_points:
            break
    if total < n_points:
        raise ValueError(f"merged_event: the stream ran out at {total} < {n_points} voxels")
    return np.asarray(pts, np.float32), np.asarray(ens, np.float32), used


def build_inputs(sizes: Sequence[int], seed: int, mode: str = "mpr",
                 slots: int = SLOTS) -> tuple[dict[int, list[tuple[np.ndarray, np.ndarray]]], dict]:
    """``slots`` merged events per size (see the module doc) and a description of them."""
    from larsight.events import sim

    gen = sim.MODES[mode]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def stream(slot: int):
        k = 0
        while True:
            i = slot * SLOT_STRIDE + k
            if i not in cache:
                ev = gen(seed=seed, index=i)
                cache[i] = (ev.points, ev.energy)
            yield cache[i]
            k += 1
            if k >= SLOT_STRIDE:
                raise ValueError("build_inputs: too many events per slot")

    out, used = {}, {}
    for n in sorted(sizes):
        out[n], used[n] = [], []
        for j in range(slots):
            p, e, u = merged_event(stream(j), n)
            out[n].append((p, e))
            used[n].append(u)
    # the 0.6 cm grid of the tiny preset merges voxels: how many remain
    coarse = {n: float(np.mean([len(np.unique(_voxels(p, 0.6), axis=0)) / n for p, _ in out[n]]))
              for n in out}
    info = dict(mode=mode, seed=seed, simulated_events=len(cache),
                events_per_input={n: float(np.mean(u)) for n, u in used.items()},
                voxel_fraction_at_0p6cm=coarse)
    return out, info


def save_inputs(inputs: dict[int, list[tuple[np.ndarray, np.ndarray]]], path: Path) -> None:
    arrays = {}
    for n, evs in inputs.items():
        for j, (p, e) in enumerate(evs):
            arrays[f"p_{n}_{j}"], arrays[f"e_{n}_{j}"] = p, e
    np.savez(path, **arrays)


def load_inputs(path: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    with np.load(path) as d:
        out, j = [], 0
        while f"p_{n}_{j}" in d:
            out.append((d[f"p_{n}_{j}"], d[f"e_{n}_{j}"]))
            j += 1
    if not out:
        raise ValueError(f"load_inputs: no {n}-point events in {path}")
    return out


# ============================================================================ one configuration
@dataclass
class Spec:
    preset: str
    n_points: int
    batch: int
    inputs: str
    device: str = "cpu"
    dtype: str = "fp32"           # fp32 | bf16 (autocast)
    threads: int = 2
    warmup: int = 2
    repeats: int = 10
    min_repeats: int = 3
    max_seconds: float = 20.0     # per timed phase: stop after this once min_repeats are done

    @property
    def key(self) -> str:
        return f"{self.preset}/{self.n_points}/b{self.batch}/{self.dtype}"


def _maxrss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10   # bytes on macOS, KiB on Linux


def _rss_now_mib() -> float:
    """Resident set size now (Linux ``/proc/self/statm``); the high-water mark elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _maxrss_mib()


def _timed(phases, spec: Spec, sync) -> list[list[float]]:
    """Seconds per call of each phase, the phases interleaved call by call (so that drifts of
    the machine hit them alike): ``repeats`` rounds, or fewer once the rounds have taken
    ``max_seconds`` per phase (never fewer than ``min_repeats``)."""
    times: list[list[float]] = [[] for _ in phases]
    gc.collect()
    start = time.perf_counter()
    for r in range(spec.repeats):
        for fn, out in zip(phases, times):
            sync()
            t = time.perf_counter()
            fn(r)
            sync()
            out.append(time.perf_counter() - t)
        if (r + 1 >= spec.min_repeats
                and time.perf_counter() - start > spec.max_seconds * len(phases)):
            break
    return times


def measure(spec: Spec) -> dict[str, Any]:
    """Run one configuration in this process (``run_config`` gives it a fresh one)."""
    import torch
    from torch import nn

    from larsight.encoder import EncoderConfig, PointEncoder, collate_events
    from larsight.events import PILARNET_VOLUME, Event, EventMeta

    torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("encoder_bench: --device cuda but torch.cuda.is_available() is False")
    if spec.dtype not in ("fp32", "bf16"):
        raise ValueError(f"encoder_bench: dtype must be fp32 or bf16, got {spec.dtype!r}")

    torch.manual_seed(0)
    model = PointEncoder(EncoderConfig.preset(spec.preset)).eval().to(device)
    head = nn.Linear(model.config.out_channels, N_SEMANTIC).eval().to(device)
    meta = EventMeta(volume=PILARNET_VOLUME)
    events = [Event(points=p, energy=e, meta=meta) for p, e in load_inputs(Path(spec.inputs),
                                                                           spec.n_points)]
    groups = [[events[(g * spec.batch + i) % len(events)] for i in range(spec.batch)]
              for g in range(max(1, len(events) // spec.batch))]
    # forward timing sees collated batches already on the device (PILArNet-M grid, 0.3 cm)
    batches = [collate_events(g, voxel_size_cm=0.3, device=device) for g in groups]

    def autocast():
        if spec.dtype == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return torch.autocast(device.type, enabled=False)

    if device.type == "cuda":
        sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
    else:
        sync = lambda: None  # noqa: E731

    def forward(r: int):
        with torch.no_grad(), autocast():
            out = model(batches[r % len(batches)])
        return out

    def end_to_end(r: int):
        with torch.no_grad(), autocast():
            batch = collate_events(groups[r % len(groups)], voxel_size_cm=0.3, device=device)
            labels = head(model(batch).point_features).argmax(1)
        return labels.cpu().numpy()

    # inputs and model in memory: the baseline of the peak-memory measurement
    gc.collect()
    sync()
    rss_base = _rss_now_mib()          # resident now (the high-water mark may be from setup)
    rss_highwater_base = _maxrss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_base = torch.cuda.memory_allocated(device) / 2**20

    # warm-up (one call only when a call is slow: the first one pays for allocations)
    warm = []
    for w in range(spec.warmup):
        sync()
        t = time.perf_counter()
        out = forward(w)
        end_to_end(w)
        sync()
        warm.append(time.perf_counter() - t)
        if warm[-1] > 10.0:
            break
    n_voxels = int(out.point_features.shape[0])   # points are distinct voxels by construction
    finite = bool(torch.isfinite(out.point_features.float()).all()
                  and torch.isfinite(out.pooled.float()).all())
    del out

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t_forward, t_e2e = _timed((forward, end_to_end), spec, sync)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

    result: dict[str, Any] = dict(
        spec=asdict(spec), key=spec.key, parameters=model.num_parameters(),
        points_per_batch=n_voxels, outputs_finite=finite, warmup_s=warm,
        forward_s=t_forward, end_to_end_s=t_e2e, rss_base_mib=rss_base,
        rss_highwater_base_mib=rss_highwater_base,
        rss_peak_mib=_maxrss_mib(), threads=torch.get_num_threads(),
        minor_page_faults_per_call=faults / (len(t_forward) + len(t_e2e)),
    )
    result["rss_delta_mib"] = result["rss_peak_mib"] - rss_base
    if device.type == "cuda":
        result["cuda_base_mib"] = cuda_base
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["cuda_delta_mib"] = result["cuda_peak_mib"] - cuda_base
        result["cuda_device"] = torch.cuda.get_device_name(device)
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Per-event numbers from the raw call times of ``measure``."""
    b = result["spec"]["batch"]
    fwd = np.asarray(result["forward_s"]) * 1000 / b
    e2e = np.asarray(result["end_to_end_s"]) * 1000 / b
    gpu = "cuda_peak_mib" in result
    return dict(
        fwd_ms_median=float(np.median(fwd)), fwd_ms_p90=float(np.percentile(fwd, 90)),
        events_per_s=float(1000 / np.median(fwd)),
        e2e_ms_median=float(np.median(e2e)), e2e_ms_p90=float(np.percentile(e2e, 90)),
        e2e_events_per_s=float(1000 / np.median(e2e)),
        mem_delta_mib=float(result["cuda_delta_mib"] if gpu else result["rss_delta_mib"]),
        mem_peak_mib=float(result["cuda_peak_mib"] if gpu else result["rss_peak_mib"]),
        repeats=len(fwd),
    )


def _cpu_busy_s() -> float:
    """CPU seconds all processes of the machine have been busy (``/proc/stat``); nan elsewhere."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
        return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _own_cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def other_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes, averaged over ``seconds`` (while we sleep)."""
    b0, o0 = _cpu_busy_s(), _own_cpu_s()
    time.sleep(seconds)
    return max(0.0, (_cpu_busy_s() - b0 - (_own_cpu_s() - o0)) / seconds)


def wait_until_idle(limit_s: float, max_other: float = 0.25) -> float:
    """Wait (up to ``limit_s``) until other processes use at most ``max_other`` cores."""
    deadline = time.monotonic() + limit_s
    busy = other_cores(1.0) if limit_s > 0 else float("nan")
    while busy > max_other and time.monotonic() < deadline:
        time.sleep(5.0)
        busy = other_cores(2.0)
    return busy


KEEP_MEMORY_ENV = dict(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(64 * 2**30),
                       MALLOC_TOP_PAD_=str(256 * 2**20))
"""glibc malloc settings that keep freed memory in the process (no mmap'ed blocks, no trimming):
large CPU batches otherwise map, fault in and unmap hundreds of MB of fresh pages per call."""


def run_config(spec: Spec, timeout: float, keep_memory: bool = False) -> dict[str, Any]:
    """``measure`` in a fresh interpreter (so ru_maxrss / the CUDA allocator start clean)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.threads), MKL_NUM_THREADS=str(spec.threads),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if keep_memory:
        env.update(KEEP_MEMORY_ENV)
    cmd = [sys.executable, "-m", "larsight.evals.encoder_bench", "--worker", json.dumps(asdict(spec))]
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    b0, o0 = _cpu_busy_s(), _own_cpu_s()
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec=asdict(spec), key=spec.key, error=f"timed out after {timeout:.0f} s",
                    load1_start=load1)
    wall = time.perf_counter() - t
    other = max(0.0, (_cpu_busy_s() - b0 - (_own_cpu_s() - o0)) / wall)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"rc {proc.returncode}"]
        return dict(spec=asdict(spec), key=spec.key, error=tail[0][:300], load1_start=load1)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(load1_start=load1, process_wall_s=wall, other_cores=other)
    result.update(summarize(result))
    return result


# ============================================================================ report
def _load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def _fmt_load(la) -> str:
    return f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def machine_info(device: str, threads: int) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), threads=threads, torch=torch.__version__,
                python=platform.python_version(), platform=platform.platform(), device=device)
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def plot(results: list[dict[str, Any]], path: Path, title: str, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ok = [r for r in results if "error" not in r]
    fig, axs = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = dict(zip(("tiny", "small", "base"), ("tab:blue", "tab:orange", "tab:green")))
    keys = sorted({(r["spec"]["preset"], r["spec"]["batch"], r["spec"]["dtype"]) for r in ok},
                  key=lambda k: (["tiny", "small", "base"].index(k[0]) if k[0] in colours else 9,
                                 k[1], k[2]))
    for preset, batch, dtype in keys:
        rows = sorted((r for r in ok if (r["spec"]["preset"], r["spec"]["batch"],
                                         r["spec"]["dtype"]) == (preset, batch, dtype)),
                      key=lambda r: r["spec"]["n_points"])
        n = [r["spec"]["n_points"] for r in rows]
        style = dict(color=colours.get(preset), marker="o" if batch == 1 else "s",
                     ls="-" if batch == 1 else "--", alpha=1.0 if dtype == "fp32" else 0.6)
        label = f"{preset} batch {batch}" + ("" if dtype == "fp32" else f" {dtype}")
        axs[0].plot(n, [r["fwd_ms_median"] for r in rows], label=label, **style)
        axs[1].plot(n, [max(r["mem_delta_mib"], 0.5) for r in rows], label=label, **style)
    axs[0].axhline(PANDA["ms_per_event"], color="gray", ls=":", lw=1)
    axs[0].text(0.01, PANDA["ms_per_event"] * 1.1,
                f"Panda semseg on an {PANDA['device']}: {PANDA['ms_per_event']} ms/event",
                color="gray", fontsize=8, transform=axs[0].get_yaxis_transform())
    axs[0].set_ylabel("forward ms/event (median)")
    axs[1].set_ylabel("peak memory of a call above model + inputs, MiB"
                      + (" (RSS)" if device == "cpu" else " (CUDA allocated)"), fontsize=9)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for a in axs:
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("points (distinct 0.3 cm voxels) per event")
        a.grid(True, which="both", alpha=0.3)
        for axis in (a.xaxis, a.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(NullFormatter())
        if ok:
            a.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)


def summary_lines(results: list[dict[str, Any]]) -> list[str]:
    """A few sentences computed from the results: scaling with size, batching, memory, Panda."""
    ok = [r for r in results if "error" not in r]
    out = []
    order = {"tiny": 0, "small": 1, "base": 2}
    for preset in sorted({r["spec"]["preset"] for r in ok}, key=lambda p: order.get(p, 9)):
        rows = {(r["spec"]["n_points"], r["spec"]["batch"], r["spec"]["dtype"]): r
                for r in ok if r["spec"]["preset"] == preset}
        sizes = sorted({n for n, _, _ in rows})
        batches = sorted({b for _, b, _ in rows})
        parts = []
        b1 = [(n, rows[n, 1, "fp32"]["fwd_ms_median"]) for n in sizes if (n, 1, "fp32") in rows]
        if len(b1) >= 2:
            (n0, t0), (n1, t1) = b1[0], b1[-1]
            parts.append(f"batch 1 forward {t0:.0f} ms/event at {n0} points and {t1:.0f} ms at "
                         f"{n1} (x{t1 / t0:.1f} for x{n1 / n0:.0f} the points: time ~ N^"
                         f"{math.log(t1 / t0) / math.log(n1 / n0):.2f})")
        elif b1:
            parts.append(f"batch 1 forward {b1[0][1]:.0f} ms/event at {b1[0][0]} points")
        if len(batches) > 1:
            big = max(batches)
            gains = [f"x{rows[n, 1, 'fp32']['fwd_ms_median'] / rows[n, big, 'fp32']['fwd_ms_median']:.2f}"
                     f" at {n}" for n in sizes if (n, 1, "fp32") in rows and (n, big, "fp32") in rows]
            if gains:
                parts.append(f"per-event speed-up of batch {big} over batch 1 " + ", ".join(gains))
        e2e = [rows[k]["e2e_ms_median"] / rows[k]["fwd_ms_median"] for k in rows if k[2] == "fp32"]
        if e2e:
            parts.append(f"end-to-end (collate + forward + head) / forward time "
                         f"{min(e2e):.2f}-{max(e2e):.2f}")
        n_max = sizes[-1]
        mem = [rows[n_max, b, "fp32"] for b in batches if (n_max, b, "fp32") in rows]
        if mem:
            r = mem[-1]
            pts = r["spec"]["n_points"] * r["spec"]["batch"]
            parts.append(f"memory above model + inputs {r['mem_delta_mib']:.0f} MiB for "
                         f"{r['spec']['batch']} x {n_max} points "
                         f"({r['mem_delta_mib'] * 1024 / pts:.1f} KiB per point)")
        bf = [rows[k[0], k[1], "fp32"]["fwd_ms_median"] / rows[k]["fwd_ms_median"]
              for k in rows if k[2] == "bf16" and (k[0], k[1], "fp32") in rows]
        if bf:
            parts.append(f"bf16 autocast speed-up over fp32 x{min(bf):.2f}-x{max(bf):.2f}")
        near = [(n, t) for n, t in b1 if n <= 3000]
        if near:
            parts.append(f"batch 1 forward time over Panda's {PANDA['ms_per_event']} ms/event "
                         f"({PANDA['device']}): " + ", ".join(
                             f"{t / PANDA['ms_per_event']:.1f}x at {n} points" for n, t in near))
        params = next(iter(rows.values()))["parameters"]
        out.append(f"* **{preset}** ({params / 1e6:.2f}M parameters): " + "; ".join(parts) + ".")
    return out


def _num(x: float, digits: int = 1) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}f}" if x < 1000 else f"{x:.0f}"


def write_report(out: Path, command: str, machine: dict, results: list[dict], info: dict,
                 load_before, load_after, elapsed_s: float, quick: bool,
                 settings: dict, wait_idle: float = 0.0, rendered_by: str = "") -> Path:
    pdir = out / "encoder_speed"
    pdir.mkdir(parents=True, exist_ok=True)
    device = machine["device"]
    title = (f"PointEncoder inference (eval, no_grad), {device}: "
             + (machine.get("gpu") or f"{machine['cpu']}, {machine['threads']} thread(s)"))
    plot(results, pdir / "ms_per_event.png", title, device)
    with atomic_open(pdir / "results.json", "w") as fh:
        json.dump(dict(command=command, machine=machine, inputs=info, settings=settings,
                       wait_idle=wait_idle, elapsed_s=elapsed_s, quick=quick,
                       load_before=load_before, load_after=load_after, results=results),
                  fh, indent=1)

    mem_kind = ("peak RSS (`ru_maxrss`) of the configuration's own process" if device == "cpu"
                else "`torch.cuda.max_memory_allocated`")
    lines = [
        "# Encoder inference speed (PointEncoder)", "",
        f"Produced by `{command}`" + (" (**quick smoke-test mode**: few repeats, small sizes)"
                                       if quick else "")
        + (f" in {elapsed_s / 60:.1f} min." if elapsed_s and math.isfinite(elapsed_s) else ".")
        + (f" Text and plot re-rendered from its results.json by `{rendered_by}`."
           if rendered_by else ""), "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} torch "
        f"thread(s), torch {machine['torch']}, Python {machine['python']}, device "
        f"`{device}`" + (f" ({machine['gpu']})" if machine.get("gpu") else "") + ".",
        f"Load average before: {_fmt_load(load_before)}; after: {_fmt_load(load_after)}. "
        "Per row, `load` is the 1-minute load average when the configuration started (it "
        "lags by about a minute) and `other cores` is how many cores other processes kept busy, "
        "on average, while it ran (`/proc/stat` busy time minus this benchmark's own CPU time): "
        "with 2 torch threads on 2 cores, anything above ~0.1 means the row's times are "
        "inflated (OpenMP threads that lose their core stall the whole pool)."
        + (f" Each configuration waited up to {wait_idle:g} s for other processes to leave the "
           "cores." if wait_idle else ""), "",
        "## Anchor", "",
        f"The Panda talk reports semantic segmentation of PILArNet-M events at "
        f"**{PANDA['ms_per_event']} ms/event on an {PANDA['device']} using "
        f"{PANDA['memory_gb']} GB** (the `base`-sized PTv3 backbone plus a point head). "
        "That is a GPU number: the rows below measured on a CPU are not comparable to it, "
        "only the CUDA rows of the `base` preset are (`--device cuda`, ideally `--bf16`).", "",
        "## Method", "",
        f"* Inputs: real simulated `{info['mode']}` events (seed {info['seed']}, "
        f"{info['simulated_events']} simulated) on the PILArNet-M grid (768^3 voxels of "
        "0.3 cm). Simulated events have ~0.4k-6k voxels, so each benchmark event merges "
        "events of the stream, in order, until it holds N distinct 0.3 cm voxels (a shared "
        "voxel sums the energies), then drops the last merged event's trailing points to get "
        "exactly N. Events merged per input: "
        + ", ".join(f"{n}: {v:.1f}" for n, v in sorted(info["events_per_input"].items(),
                                                          key=lambda kv: int(kv[0]))) + ". "
        f"{SLOTS} different inputs per size (disjoint runs of the stream); batch 1 cycles "
        "through them, batch 8 uses all of them. Every preset sees the same 0.3 cm grid "
        "(`collate_events(..., voxel_size_cm=0.3)`), so N is also the number of tokens at "
        "the finest stage. `tiny` is trained at 0.6 cm: on its native grid the same events "
        "keep "
        + ", ".join(f"{100 * v:.0f}%" for _, v in sorted(info["voxel_fraction_at_0p6cm"].items(),
                                                       key=lambda kv: int(kv[0])))
        + " of their voxels (per size), so its cost at its training resolution is roughly "
        "that of a smaller row.",
        "* Model: `PointEncoder(EncoderConfig.preset(p))`, randomly initialised (speed does "
        "not depend on the weights), `eval()`, `torch.no_grad()`; `bf16` rows run under "
        "`torch.autocast(dtype=torch.bfloat16)`.",
        "* forward: `model(batch)` on a batch already collated and on the device. "
        "end to end (semantic segmentation style): `collate_events` from `events.Event` "
        "objects, transfer to the device, forward, a linear 5-class point head, `argmax`, "
        "labels back to numpy.",
        f"* Each configuration runs in a fresh process with {machine['threads']} torch "
        f"thread(s): {settings['warmup']} warm-up call(s) of each phase (one when a call takes "
        f"over 10 s), then {settings['repeats']} timed calls of each phase, the two phases "
        "alternating call by call, or fewer once they have run "
        f"{settings['max_seconds']:g} s per phase (never fewer than "
        f"{settings['min_repeats']}; the `repeats` column). ms/event = call time / batch "
        "size; median and p90 over the repeats (with three repeats p90 is close to their "
        "maximum); events/s = batch / median call time.",
        f"* Memory: {mem_kind} after the timed calls, minus the memory "
        + ("resident (`/proc/self/statm`)" if device == "cpu" else "allocated")
        + " once model and inputs were loaded (\"delta\": activations, temporaries and "
        "allocator caching of inference, per call, i.e. per batch); \"peak\" is the absolute "
        "value (on CPU it includes the Python interpreter, torch and the model). "
        "`page faults/call`: minor page faults (`ru_minflt`) of the worker per timed call: "
        "each is a fresh 4 KiB page the kernel had to map and zero.",
        "* Allocator: " + ("glibc malloc told to keep freed memory (`"
                           + " ".join(f"{k}={v}" for k, v in settings["malloc_env"].items())
                           + "` in the workers' environment)."
                           if settings.get("malloc_env") else
                           "glibc malloc defaults (blocks above its mmap threshold, at most "
                           "32 MiB, are mapped and unmapped on every allocation; see "
                           "`--keep-memory`)."), "",
        "## Results", "",
        "| preset | params | points/event | batch | dtype | forward ms/event median | p90 | "
        "events/s | end-to-end ms/event median | p90 | mem delta MiB | mem peak MiB | "
        "page faults/call | repeats | load | other cores |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for r in results:
        s = r["spec"]
        head = f"| {s['preset']} | "
        if "error" in r:
            lines.append(head + f"- | {s['n_points']} | {s['batch']} | {s['dtype']} | "
                         f"failed: {r['error']} | | | | | | | | | {r.get('load1_start', 0):.2f} | |")
            continue
        lines.append(
            head + f"{r['parameters'] / 1e6:.2f}M | {s['n_points']} | {s['batch']} | "
            f"{s['dtype']} | {_num(r['fwd_ms_median'])} | {_num(r['fwd_ms_p90'])} | "
            f"{_num(r['events_per_s'], 2)} | {_num(r['e2e_ms_median'])} | "
            f"{_num(r['e2e_ms_p90'])} | {_num(r['mem_delta_mib'], 0)} | "
            f"{_num(r['mem_peak_mib'], 0)} | {r.get('minor_page_faults_per_call', float('nan')):.0f} | "
            f"{r['repeats']} | {r['load1_start']:.2f} | "
            f"{r['other_cores']:.2f} |")
    lines += ["", "## Summary (computed from the table)", ""] + summary_lines(results)
    lines += ["", "![ms per event](encoder_speed/ms_per_event.png)", "",
              "Raw call times, warm-up times and memory figures: "
              "[encoder_speed/results.json](encoder_speed/results.json).", ""]
    md = out / "encoder_speed.md"
    with atomic_open(md, "w") as fh:
        fh.write("\n".join(lines))
    return md


# ============================================================================ CLI
def _ints(text: str) -> list[int]:
    vals = [int(x) for x in text.split(",") if x.strip()]
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def main(argv: Optional[Sequence[str]] = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only re-write the report and plot from a results.json (no measuring)")
    ap.add_argument("--presets", help=f"comma-separated (default {DEFAULTS['presets']})")
    ap.add_argument("--sizes", help=f"points per event (default {DEFAULTS['sizes']})")
    ap.add_argument("--sizes-for", action="append", default=[], metavar="PRESET=SIZES",
                    help="sizes for one preset instead of --sizes, e.g. base=1000,3000")
    ap.add_argument("--batches", default=",".join(map(str, BATCH_SIZES)))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--bf16", action="store_true", help="also run bf16 autocast (meant for CUDA)")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny, small sizes, 2 repeats")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--max-seconds", type=float, help="per timed phase, once min repeats are done")
    ap.add_argument("--timeout", type=float, help="per configuration process, s")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each configuration wait up to S seconds for other processes "
                         "to leave the cores (below 0.25 busy cores)")
    ap.add_argument("--keep-memory", action="store_true",
                    help="run the workers with glibc malloc keeping freed memory "
                         "(MALLOC_MMAP_MAX_=0, large trim threshold): fewer page faults")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", help="report directory (default evals/reports; --quick: a temp dir)")
    args = ap.parse_args(argv)

    if args.worker:                      # one configuration, in a fresh process
        print(json.dumps(measure(Spec(**json.loads(args.worker)))))
        return Path()

    if args.render:                      # re-render text and plot from recorded numbers
        saved = json.loads(Path(args.render).read_text())
        out = Path(args.out) if args.out else REPO / "evals" / "reports"
        md = write_report(out, saved["command"], saved["machine"], saved["results"],
                          saved["inputs"], saved["load_before"], saved["load_after"],
                          saved.get("elapsed_s", float("nan")), saved.get("quick", False),
                          saved["settings"], saved.get("wait_idle", 0.0),
                          rendered_by="python -m larsight.evals.encoder_bench " + shlex.join(argv))
        print(f"wrote {md}")
        return md

    d = QUICK if args.quick else DEFAULTS
    presets = (args.presets or d["presets"]).split(",")
    sizes = _ints(args.sizes or d["sizes"])
    batches = _ints(args.batches)
    if max(batches) > SLOTS:
        ap.error(f"--batches: at most {SLOTS}")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is available")
    from larsight.encoder import PRESETS
    for p in presets:
        if p not in PRESETS:
            ap.error(f"--presets: unknown preset {p!r}; choose from {sorted(PRESETS)}")
    sizes_for = {p: sizes for p in presets}
    for item in args.sizes_for:
        p, _, text = item.partition("=")
        if p not in sizes_for:
            ap.error(f"--sizes-for: {p!r} is not one of --presets {presets}")
        try:
            sizes_for[p] = _ints(text)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            ap.error(f"--sizes-for {item!r}: {exc}")
    out = Path(args.out) if args.out else (
        Path(tempfile.gettempdir()) / "larsight_encoder_bench_quick" if args.quick
        else REPO / "evals" / "reports")
    command = "python -m larsight.evals.encoder_bench" + ("" if not argv else " " + shlex.join(argv))

    t0 = time.perf_counter()
    load_before = _load()
    inputs, info = build_inputs(sorted({n for v in sizes_for.values() for n in v}), args.seed)
    machine = machine_info(args.device, args.threads)
    dtypes = ["fp32"] + (["bf16"] if args.bf16 else [])
    settings = dict(warmup=args.warmup if args.warmup is not None else d["warmup"],
                    repeats=args.repeats or d["repeats"],
                    min_repeats=min(d["min_repeats"], args.repeats or d["repeats"]),
                    max_seconds=args.max_seconds or d["max_seconds"])
    if args.keep_memory:
        settings["malloc_env"] = KEEP_MEMORY_ENV
    results = []
    with tempfile.TemporaryDirectory(prefix="encoder_bench_") as tmp:
        path = Path(tmp) / "inputs.npz"
        save_inputs(inputs, path)
        for preset in presets:
            for n in sizes_for[preset]:
                for b in batches:
                    for dt in dtypes:
                        spec = Spec(preset=preset, n_points=n, batch=b, inputs=str(path),
                                    device=args.device, dtype=dt, threads=args.threads,
                                    **{k: v for k, v in settings.items() if k != "malloc_env"})
                        idle = wait_until_idle(args.wait_idle) if args.wait_idle else None
                        r = run_config(spec, args.timeout or d["timeout"], args.keep_memory)
                        r["other_cores_before"] = idle
                        results.append(r)
                        if "error" in r:
                            print(f"{spec.key}: FAILED {r['error']}", flush=True)
                        else:
                            print(f"{spec.key}: forward {r['fwd_ms_median']:.1f} ms/event "
                                  f"(p90 {r['fwd_ms_p90']:.1f}), end to end "
                                  f"{r['e2e_ms_median']:.1f} ms/event, mem +"
                                  f"{r['mem_delta_mib']:.0f} MiB, load {r['load1_start']:.2f}, "
                                  f"other cores {r['other_cores']:.2f}",
                                  flush=True)
    md = write_report(out, command, machine, results, info, load_before, _load(),
                      time.perf_counter() - t0, args.quick, settings, args.wait_idle)
    print(f"wrote {md}")
    return md


if __name__ == "__main__":
    main()
