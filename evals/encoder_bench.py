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
import torch
from torch import nn

from larsight.encoder import PRESETS, EncoderConfig, PointEncoder, collate_events
from larsight.events import PILARNET_VOLUME, Event, EventMeta

from .encoder_bench_inputs import BATCH_SIZES, SLOTS, build_inputs, load_inputs, save_inputs
from .encoder_bench_report import write_report

REPO = Path(__file__).resolve().parents[1]
N_SEMANTIC = 5

DEFAULTS = dict(presets="tiny,small", sizes="1000,3000,10000,30000", warmup=2, repeats=10,
                min_repeats=3, max_seconds=20.0, timeout=900.0)
QUICK = dict(presets="tiny", sizes="250,750", warmup=1, repeats=2, min_repeats=2,
             max_seconds=5.0, timeout=120.0)


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


def _prepare(spec: Spec) -> tuple[Any, Any, Any, list, list]:
    """The device, the model and point head (eval mode, seeded), the event groups of each call
    and their batches collated on the device."""
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
    return device, model, head, groups, batches


def _warm_up(spec: Spec, forward, end_to_end, sync) -> tuple[list[float], Any]:
    """Warm-up calls of both phases (one only when a call is slow: the first one pays for
    allocations); returns their times and the last forward output."""
    warm = []
    out = None
    for w in range(spec.warmup):
        sync()
        t = time.perf_counter()
        out = forward(w)
        end_to_end(w)
        sync()
        warm.append(time.perf_counter() - t)
        if warm[-1] > 10.0:
            break
    return warm, out


def measure(spec: Spec) -> dict[str, Any]:
    """Run one configuration in this process (``run_config`` gives it a fresh one)."""
    device, model, head, groups, batches = _prepare(spec)

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

    warm, out = _warm_up(spec, forward, end_to_end, sync)
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


# ============================================================================ machine
def machine_info(device: str, threads: int) -> dict[str, Any]:
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


def _load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


# ============================================================================ CLI
def _ints(text: str) -> list[int]:
    vals = [int(x) for x in text.split(",") if x.strip()]
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
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
    return ap


def main(argv: Optional[Sequence[str]] = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)

    if args.worker:                      # one configuration, in a fresh process
        print(json.dumps(measure(Spec(**json.loads(args.worker)))))
        return Path()
    if args.render:                      # re-render text and plot from recorded numbers
        return render(args, argv)

    d = QUICK if args.quick else DEFAULTS
    presets, sizes_for, batches = _configurations(ap, args, d)
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
    results = run_all(presets, sizes_for, batches, dtypes, args, settings, inputs, d["timeout"])
    md = write_report(out, command, machine, results, info, load_before, _load(),
                      time.perf_counter() - t0, args.quick, settings, args.wait_idle)
    print(f"wrote {md}")
    return md


def render(args, argv: list[str]) -> Path:
    """Re-write the report and plot from a recorded results.json (no measuring)."""
    saved = json.loads(Path(args.render).read_text())
    out = Path(args.out) if args.out else REPO / "evals" / "reports"
    md = write_report(out, saved["command"], saved["machine"], saved["results"],
                      saved["inputs"], saved["load_before"], saved["load_after"],
                      saved.get("elapsed_s", float("nan")), saved.get("quick", False),
                      saved["settings"], saved.get("wait_idle", 0.0),
                      rendered_by="python -m larsight.evals.encoder_bench " + shlex.join(argv))
    print(f"wrote {md}")
    return md


def _configurations(ap: argparse.ArgumentParser, args, d: dict) -> tuple[list[str], dict[str, list[int]], list[int]]:
    """Presets, sizes per preset and batch sizes from the options (errors name the option)."""
    presets = (args.presets or d["presets"]).split(",")
    sizes = _ints(args.sizes or d["sizes"])
    batches = _ints(args.batches)
    if max(batches) > SLOTS:
        ap.error(f"--batches: at most {SLOTS}")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is available")
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
    return presets, sizes_for, batches


def run_all(presets: list[str], sizes_for: dict[str, list[int]], batches: list[int], dtypes: list[str],
            args, settings: dict, inputs: dict, default_timeout: float) -> list[dict]:
    """Every configuration in its own process, in order, printing one line each."""
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
                        r = run_config(spec, args.timeout or default_timeout, args.keep_memory)
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
    return results


if __name__ == "__main__":
    main()
