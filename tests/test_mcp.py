"""`larsight mcp` driven by the MCP SDK's own client, over stdio and streamable HTTP: every
tool on a simulated event, the resources, and one clear error (after which the server keeps
answering) for paths outside --data (absolute, '..', a symlink leading out), a bad index, a
malformed argument and an unknown tool."""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

mcp = pytest.importorskip("mcp", reason="the MCP SDK is the dev extra's 'mcp'")
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from larsight import events  # noqa: E402
from larsight.agent.toolset import TOOL_NAMES, TOOLS  # noqa: E402
from helpers.processes import stop

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 900     # the whole conversation; models load on the first call (2 shared cores)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """data/ with a simulated file and a symlink to a file outside; outside/ with a valid event
    file (so a read that escaped the check would succeed, not fail for another reason); an
    event index of the data file for find_similar."""
    root = tmp_path_factory.mktemp("mcp")
    data, outside = root / "data", root / "outside"
    data.mkdir()
    outside.mkdir()
    evs = list(events.sim.simulate("nu", 3, seed=5))
    events.write(data / "nu.h5", evs)
    events.write(outside / "secret.h5", evs[:1])
    (data / "link.h5").symlink_to(outside / "secret.h5")
    from larsight.tools import build_index

    build_index([str(data / "nu.h5")], str(root / "index"), progress=False)
    return {"root": root, "data": data, "outside": outside, "index": root / "index"}


def _text(result) -> str:
    return " ".join(c.text for c in result.content if c.type == "text")


async def _expect_error(client, tool: str, args: dict, *words: str) -> str:
    r = await client.call_tool(tool, args)
    msg = _text(r)
    assert r.is_error, f"{tool}({args}) should fail, got {msg[:200]}"
    assert "\n" not in msg and all(w in msg for w in words), msg
    # the server keeps answering after the error
    assert [t.name for t in (await client.list_tools()).tools] == list(TOOL_NAMES)
    return msg


async def _errors(client, f) -> None:
    secret = str(f["outside"] / "secret.h5")
    await _expect_error(client, "segment", {"event": f"{secret}:0"}, "refused", "outside the data folders")
    await _expect_error(client, "describe", {"event": "../outside/secret.h5:0"}, "refused")
    await _expect_error(client, "find_vertex", {"event": "link.h5:0"}, "refused")
    await _expect_error(client, "find_similar", {"query": secret}, "looks like a file")
    await _expect_error(client, "segment", {"event": "nu.h5:99"}, "unknown event index 99", "holds 3 events")
    await _expect_error(client, "segment", {"event": 3}, "bad arguments", "event")
    await _expect_error(client, "find_similar", {"event": "nu.h5:0", "k": "many"}, "bad arguments", "k")
    await _expect_error(client, "render", {"event": "nu.h5:0", "view": "sideways"}, "bad arguments", "view")
    await _expect_error(client, "segment", {}, "missing event")
    with pytest.raises(MCPError, match="unknown tool 'launch_rockets'"):
        await client.call_tool("launch_rockets", {})
    with pytest.raises(MCPError, match="refused"):
        await client.read_resource("larsight://..%2Foutside%2Fsecret.h5/0")


async def _all_tools(client, f) -> None:
    listed = {t.name: t for t in (await client.list_tools()).tools}
    assert list(listed) == list(TOOL_NAMES)
    for name, tool in listed.items():
        # the agent's own schema: same description (render aside: it returns an image here) and arguments
        assert set(tool.input_schema["properties"]) == set(TOOLS[name].args.model_fields)
        assert name == "render" or tool.description == TOOLS[name].description
        assert ("event" in tool.input_schema.get("required", [])) == (name != "find_similar")
    seen = {}
    for name in TOOL_NAMES:
        args = {"event": "nu.h5:0"} if name != "find_similar" else {"event": "nu.h5:0", "k": 2}
        r = await client.call_tool(name, args)
        assert not r.is_error, f"{name}: {_text(r)}"
        seen[name] = r
    assert seen["segment"].structured_content["class_counts"]
    assert len(seen["find_vertex"].structured_content["vertex_cm"]) == 3
    assert "particles" in seen["reconstruct"].structured_content
    probs = seen["classify_event"].structured_content["probabilities"]
    assert set(probs) == {"nue_cc", "numu_cc", "nc"} and abs(sum(probs.values()) - 1) < 1e-3
    assert len(seen["find_similar"].structured_content["hits"]) == 2
    assert seen["describe"].structured_content["text"]
    img = [c for c in seen["render"].content if c.type == "image"]
    assert img and img[0].mime_type == "image/png" and base64.b64decode(img[0].data)[:4] == b"\x89PNG"
    # no simulator truth in what the assistant sees
    assert not any(k.startswith(("truth", "true_")) for r in seen.values()
                   for k in (r.structured_content or {}))
    # a text search and an event file as a path relative to the data folder work too
    r = await client.call_tool("find_similar", {"query": "nu_mu CC with a long muon track", "k": 2})
    assert not r.is_error, _text(r)


async def _resources(client) -> None:
    uris = [r.uri for r in (await client.list_resources()).resources]
    assert "larsight://nu.h5/0" in uris and "larsight://models/vlm_smollm2/vlm.json" in uris
    assert not any("secret" in u for u in uris)          # the link leading out is not listed
    summary = json.loads((await client.read_resource("larsight://nu.h5/2")).contents[0].text)
    assert summary["event"] == "nu.h5:2" and summary["points"] > 0 and "event_class" not in summary
    manifest = json.loads((await client.read_resource("larsight://models/vlm_smollm2/vlm.json")).contents[0].text)
    assert manifest


def test_mcp_over_stdio(folders):
    params = StdioServerParameters(command=sys.executable, args=[
        "-m", "larsight.ui.cli", "mcp", "--data", str(folders["data"]), "--index", str(folders["index"]),
        "--no-warm-up"], cwd=str(REPO), env=dict(os.environ))

    async def main():
        with anyio.fail_after(LIMIT_S):
            async with Client(params) as client:
                await _all_tools(client, folders)
                await _errors(client, folders)
                await _resources(client)
                r = await client.call_tool("find_vertex", {"event": str(folders["data"] / "nu.h5") + ":1"})
                assert not r.is_error, _text(r)     # an absolute path inside the data folder

    anyio.run(main)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mcp_over_http(folders, tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "larsight.ui.cli", "mcp", "--data", str(folders["data"]),
                             "--http", str(port), "--no-warm-up"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP server did not start within 180 s"
                time.sleep(0.5)

        async def main():
            with anyio.fail_after(LIMIT_S):
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    assert [t.name for t in (await client.list_tools()).tools] == list(TOOL_NAMES)
                    r = await client.call_tool("find_vertex", {"event": "nu.h5:0"})
                    assert not r.is_error and len(r.structured_content["vertex_cm"]) == 3, _text(r)
                    await _expect_error(client, "segment", {"event": str(folders["outside"] / "secret.h5")}, "refused")
                    await _expect_error(client, "reconstruct", {"event": "link.h5"}, "refused")
                    await _expect_error(client, "reconstruct", {"event": "nu.h5:-9"}, "unknown event index")
                    await _expect_error(client, "find_similar", {"k": 0, "query": "x"}, "bad arguments")
                    with pytest.raises(MCPError, match="unknown tool"):
                        await client.call_tool("rm", {"event": "nu.h5:0"})
                    r = await client.call_tool("render", {"event": "nu.h5:1"})
                    assert not r.is_error and any(c.type == "image" for c in r.content), _text(r)

        anyio.run(main)
    finally:
        stop(proc, log)


def test_langchain_example_runs_offline(tmp_path):
    """examples/langchain_tools.py: the tools as LangChain tools in one line, confined the same way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LARSIGHT_OPENAI_")}
    p = subprocess.run([sys.executable, str(REPO / "examples" / "langchain_tools.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=LIMIT_S)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    assert "tools: " + ", ".join(TOOL_NAMES) in out
    assert "vertex: [" in out and "describe: " in out
    assert "outside the data folder: segment: refused" in out
