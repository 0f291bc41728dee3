"""larsight's tools from Python through the MCP SDK's own client, with the time of each call.

    python examples/mcp_client.py

Simulates four neutrino events of 2.7k-3.3k points into a temporary data folder, starts
`larsight mcp --data FOLDER` over stdio, loads the models with a warm-up call, then calls every
tool on each event and prints how long the call took as the client saw it (the numbers in
evals/reports/mcp.md come from this script).
"""
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

from larsight import events

TOOLS = ("segment", "find_vertex", "reconstruct", "classify_event", "describe", "render")

data = Path(tempfile.mkdtemp(prefix="larsight-mcp-"))
picked = []
for ev in events.sim.simulate("nu", 400, seed=11):
    if 2700 <= len(ev) <= 3300:
        picked.append(ev)
    if len(picked) == 4:
        break
events.write(data / "big.h5", picked)
events.write(data / "warm.h5", list(events.sim.simulate("nu", 1, seed=1)))
print("points per event:", [len(e) for e in picked])

params = StdioServerParameters(command=sys.executable, cwd=str(Path(__file__).resolve().parents[1]),
                               args=["-m", "larsight.ui.cli", "mcp", "--data", str(data), "--no-warm-up"])


async def main():
    async with Client(params) as client:
        for tool in ("segment", "classify_event", "render"):      # loads the encoder and the VLM
            await client.call_tool(tool, {"event": "warm.h5:0"})
        for i, ev in enumerate(picked):
            for tool in TOOLS:
                t0 = time.perf_counter()
                r = await client.call_tool(tool, {"event": f"big.h5:{i}"})
                ms = (time.perf_counter() - t0) * 1000
                status = "error: " + r.content[0].text if r.is_error else "ok"
                print(f"event {i} ({len(ev)} points) {tool:15s} {ms:7.0f} ms  {status}", flush=True)


asyncio.run(main())
print("load average (1, 5, 15 min):", os.getloadavg())
