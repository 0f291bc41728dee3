"""The encoder benchmark's report: the markdown table and text, the summary sentences computed
from the results, and the plot (``evals.encoder_bench`` measures what they show)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from larsight.events.formats.atomic import atomic_open

from .encoder_bench_inputs import SLOTS

PANDA = dict(ms_per_event=8.3, memory_gb=1.75, device="A100")
"""The Panda talk's anchor: semantic segmentation at 8.3 ms/event on an A100 using 1.75 GB."""


def _fmt_load(la) -> str:
    return f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def plot(results: list[dict[str, Any]], path: Path, title: str, device: str) -> None:
    # not at the top: the benchmark's worker processes import this module, and their absolute
    # peak memory must not include matplotlib
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

    lines = _text_lines(command, machine, info, load_before, load_after, elapsed_s, quick, settings,
                        wait_idle, rendered_by)
    lines += [result_row(r) for r in results]
    lines += ["", "## Summary (computed from the table)", ""] + summary_lines(results)
    lines += ["", "![ms per event](encoder_speed/ms_per_event.png)", "",
              "Raw call times, warm-up times and memory figures: "
              "[encoder_speed/results.json](encoder_speed/results.json).", ""]
    md = out / "encoder_speed.md"
    with atomic_open(md, "w") as fh:
        fh.write("\n".join(lines))
    return md


def _text_lines(command: str, machine: dict, info: dict, load_before, load_after, elapsed_s: float,
                quick: bool, settings: dict, wait_idle: float, rendered_by: str) -> list[str]:
    """Everything above the table's rows: provenance, machine, anchor, method, table header."""
    device = machine["device"]
    mem_kind = ("peak RSS (`ru_maxrss`) of the configuration's own process" if device == "cpu"
                else "`torch.cuda.max_memory_allocated`")
    return [
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
    ] + _method_lines(machine, info, settings, mem_kind) + [
        "## Results", "",
        "| preset | params | points/event | batch | dtype | forward ms/event median | p90 | "
        "events/s | end-to-end ms/event median | p90 | mem delta MiB | mem peak MiB | "
        "page faults/call | repeats | load | other cores |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]


def _method_lines(machine: dict, info: dict, settings: dict, mem_kind: str) -> list[str]:
    """How the inputs were built and the calls timed and measured."""
    device = machine["device"]
    return [
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
                           "`--keep-memory`)."), ""
    ]


def result_row(r: dict) -> str:
    """One row of the results table (a failed configuration says why)."""
    s = r["spec"]
    head = f"| {s['preset']} | "
    if "error" in r:
        return (head + f"- | {s['n_points']} | {s['batch']} | {s['dtype']} | "
                f"failed: {r['error']} | | | | | | | | | {r.get('load1_start', 0):.2f} | |")
    return (
        head + f"{r['parameters'] / 1e6:.2f}M | {s['n_points']} | {s['batch']} | "
        f"{s['dtype']} | {_num(r['fwd_ms_median'])} | {_num(r['fwd_ms_p90'])} | "
        f"{_num(r['events_per_s'], 2)} | {_num(r['e2e_ms_median'])} | "
        f"{_num(r['e2e_ms_p90'])} | {_num(r['mem_delta_mib'], 0)} | "
        f"{_num(r['mem_peak_mib'], 0)} | {r.get('minor_page_faults_per_call', float('nan')):.0f} | "
        f"{r['repeats']} | {r['load1_start']:.2f} | "
        f"{r['other_cores']:.2f} |")
