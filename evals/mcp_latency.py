"""Per-tool latency of `larsight mcp` as an MCP client sees it, on ~3k-point events.

    python -m larsight.evals.mcp_latency                      # 10 events, writes evals/reports/mcp_latency.json
    python -m larsight.evals.mcp_latency --n-events 12 --threads 2

Simulates neutrino events of 2.7k-3.3k points (simulator seed ``--seed``) into a temporary
``--data`` folder, starts ``larsight mcp`` over stdio with the MCP SDK's client, loads the
models with warm-up calls on another event, then on each event calls the tools in the order a
client asking about a new event would (segment, find_vertex, reconstruct, classify_event,
describe, render) and, on ``--n-describe-first`` further events, ``describe`` first (its
worst case: nothing about the event is cached yet). Each call gets two times: wall-clock
seconds as the client saw it (JSON-RPC over stdio included) and the CPU seconds the server
process spent on it (all its threads; psutil). On a shared machine other jobs inflate the wall
time but not the CPU time; with ``--threads 1`` the CPU time is what the call takes on an idle
core. The JSON has every call, p50 and max per tool, and the load average.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from larsight.events.formats.atomic import atomic_path

from .report_common import REPO, git_commit, machine

TOOLS = ("segment", "find_vertex", "reconstruct", "classify_event", "describe", "render")
OUT = REPO / "evals" / "reports" / "mcp_latency.json"


def pick_events(n: int, seed: int, lo: int = 2700, hi: int = 3300) -> list:
    from larsight import events

    picked = []
    for ev in events.sim.simulate("nu", 40 * n + 400, seed=seed):
        if lo <= len(ev) <= hi:
            picked.append(ev)
        if len(picked) == n:
            return picked
    raise RuntimeError(f"only {len(picked)} events of {lo}-{hi} points in the simulated sample "
                       f"(seed {seed}); ask for fewer")


async def _session(data: Path, n_order: int, n_first: int, threads: int) -> list[dict]:
    from mcp import Client, StdioServerParameters

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    params = StdioServerParameters(command=sys.executable, cwd=str(REPO), env=env,
                                   args=["-m", "larsight.ui.cli", "mcp", "--data", str(data),
                                         "--no-warm-up"])
    import psutil

    calls = []
    async with Client(params) as client:
        server = _server_process(psutil)
        for tool in ("segment", "classify_event", "describe", "render"):   # loads the models
            await client.call_tool(tool, {"event": "warm.h5:0"})
        plan = [(i, tool, "in order") for i in range(n_order) for tool in TOOLS]
        plan += [(n_order + j, "describe", "describe first") for j in range(n_first)]
        for i, tool, how in plan:
            c0, t0 = _cpu(server), time.perf_counter()
            r = await client.call_tool(tool, {"event": f"big.h5:{i}"})
            s, cpu = time.perf_counter() - t0, _cpu(server) - c0
            if r.is_error:
                raise RuntimeError(f"{tool} on big.h5:{i} failed: {r.content[0].text}")
            calls.append({"event": i, "tool": tool, "how": how, "seconds": s, "cpu_seconds": cpu})
            print(f"event {i:2d} {tool:15s} {how:15s} wall {1e3 * s:6.0f} ms  server CPU "
                  f"{1e3 * cpu:6.0f} ms", flush=True)
    return calls


def _server_process(psutil):
    """The `larsight mcp` process this client started (its child)."""
    kids = [p for p in psutil.Process().children(recursive=True)
            if "mcp" in " ".join(p.cmdline())]
    if len(kids) != 1:
        raise RuntimeError(f"expected one `larsight mcp` child process, found {len(kids)}")
    return kids[0]


def _cpu(proc) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def summarise(calls: list[dict]) -> dict:
    out = {}
    for key in sorted({(c["tool"], c["how"]) for c in calls}):
        rows = [c for c in calls if (c["tool"], c["how"]) == key]
        t, cpu = np.array([c["seconds"] for c in rows]), np.array([c["cpu_seconds"] for c in rows])
        out[f"{key[0]} ({key[1]})"] = {
            "n": len(rows), "p50_s": float(np.median(t)), "max_s": float(t.max()),
            "cpu_p50_s": float(np.median(cpu)), "cpu_max_s": float(cpu.max()),
            "cpu_under_1s": int((cpu < 1).sum())}
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m larsight.evals.mcp_latency",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-events", type=int, default=10, help="events called in the usual order")
    ap.add_argument("--n-describe-first", type=int, default=5, help="events whose first call is describe")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.n_events < 1 or args.n_describe_first < 0:
        raise SystemExit("mcp_latency: --n-events must be >= 1 and --n-describe-first >= 0")
    from larsight import events

    picked = pick_events(args.n_events + args.n_describe_first, args.seed)
    with tempfile.TemporaryDirectory(prefix="larsight-mcp-") as tmp:
        data = Path(tmp)
        events.write(data / "big.h5", picked)
        events.write(data / "warm.h5", list(events.sim.simulate("nu", 1, seed=1)))
        load0 = os.getloadavg()
        calls = asyncio.run(_session(data, args.n_events, args.n_describe_first, args.threads))
    result = {"command": "python -m larsight.evals.mcp_latency " + " ".join(argv or sys.argv[1:]),
              "commit": git_commit(), "machine": machine(), "threads": args.threads,
              "measured_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "points": [len(e) for e in picked], "load_average_start": load0,
              "load_average_end": os.getloadavg(), "per_tool": summarise(calls), "calls": calls}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp_path:
        Path(tmp_path).write_text(json.dumps(result, indent=1) + "\n")
    for k, v in result["per_tool"].items():
        print(f"{k:32s} n={v['n']:2d} wall p50 {v['p50_s']:.2f} s max {v['max_s']:.2f} s; "
              f"server CPU p50 {v['cpu_p50_s']:.2f} s max {v['cpu_max_s']:.2f} s")
    print("load average start / end:", load0, result["load_average_end"])
    return result


if __name__ == "__main__":
    main()
