"""``larsight mcp``: larsight's analysis tools for any MCP client (desktop assistants, coding
agents, LangChain through an MCP adapter).

    larsight mcp --data ~/events                     # stdio: what a desktop assistant launches
    larsight mcp --data ~/events --http 8765         # streamable HTTP: http://127.0.0.1:8765/mcp
    larsight mcp --data runs/a runs/b --index my_index

Tools
-----
The agent's seven (``agent.toolset.TOOLS``: segment, find_vertex, reconstruct, classify_event,
find_similar, describe, render) with its descriptions and argument schemas. ``event`` is
required (``find_similar`` takes a text ``query`` instead) and names an event of a file under a
``--data`` folder: ``"FILE:INDEX"`` (FILE relative to a data folder, or absolute inside one;
``"FILE"`` alone for a one-event file) or a ``sim:...`` key that ``find_similar`` returned.
A result is the JSON the agent observes (``agent.toolset.observation``: numbers with their units
in the field names, simulator truth removed), as text and as structured content. ``render``
returns a PNG of the XZ / YZ / XY projections coloured by the segmentation, with the
reconstructed vertex (matplotlib, so it works offline; plotly's static export would need a
browser for kaleido).

Resources
---------
``larsight://FILE/INDEX``: a summary of one event (points, visible energy, extent; no truth);
``larsight://FILE``: the file's event count; ``larsight://models/NAME/FILE.json``: the manifests
of the shipped checkpoints (how each was trained and evaluated).

Files
-----
Only files inside the ``--data`` folders are read: a name is resolved to its real path
(symlinks, ``..``, absolute paths) before anything is opened, and anything that lands outside
is refused. The event index (``--index``) is opened only by ``find_similar``. Nothing is written.

Errors
------
An unknown tool is a protocol error (``INVALID_PARAMS``); bad arguments, a refused path, a bad
index or a failing tool come back as one line in a result with ``is_error`` set, which the
assistant can read and correct. The server keeps serving after each.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import quote, unquote

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from larsight.agent.toolset import TOOL_NAMES, TOOLS, ToolCallError, ToolSet, observation, register
from larsight.tools.inputs import split_index

__all__ = ["DataFolders", "AccessError", "LarsightMCP", "build_server", "serve", "langchain_tools",
           "EVENT_SUFFIXES"]

log = logging.getLogger("larsight.mcp")

EVENT_SUFFIXES = (".h5", ".hdf5", ".root")
SCHEME = "larsight://"
MAX_LISTED_EVENTS = 20      # per file in resources/list; any index is readable through the template
MAX_LISTED_FILES = 50
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
EVENT_HELP = ("event: 'FILE:INDEX', FILE relative to one of the server's data folders (or an "
              "absolute path inside one), e.g. 'run1.h5:3'; 'FILE' alone for a one-event file; "
              "or a 'sim:...' key returned by find_similar")


class AccessError(PermissionError):
    """A file name that resolves outside the data folders."""


# ============================================================================ files
class DataFolders:
    """The folders the server may read events from, and the one check every name goes through."""

    def __init__(self, folders: Sequence[str | os.PathLike]):
        roots = []
        for f in folders:
            p = Path(f).expanduser()
            if not p.is_dir():
                raise ValueError(f"--data {f}: not a folder")
            roots.append(p.resolve())
        if not roots:
            raise ValueError("give at least one --data folder: the server reads event files only there")
        self.roots = tuple(dict.fromkeys(roots))

    def _inside(self, real: Path) -> Optional[Path]:
        return next((r for r in self.roots if real == r or r in real.parents), None)

    def resolve(self, name: str) -> Path:
        """The real path of ``name`` (relative to a data folder, or absolute), which must be a
        file inside a data folder; ``AccessError`` / ``FileNotFoundError`` otherwise. Nothing
        is opened before the check."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("empty file name: give 'FILE:INDEX' with FILE under a data folder")
        p = Path(name.strip()).expanduser()
        candidates = [p] if p.is_absolute() else [r / p for r in self.roots]
        for c in candidates:
            real = Path(os.path.realpath(c))
            if self._inside(real) is None:
                raise AccessError(f"refused: {name!r} resolves outside the data folders this server "
                                  f"may read ({', '.join(map(str, self.roots))})")
            if real.is_file():
                return real
        listed = ", ".join(self.relative(f) for f in self.files()[:10]) or "none"
        raise FileNotFoundError(f"no such event file under the data folders: {name!r} (files: {listed})")

    def relative(self, real: Path) -> str:
        root = self._inside(real)
        return real.relative_to(root).as_posix() if root is not None else str(real)

    def files(self) -> list[Path]:
        """Event files under the data folders (symlinks leading outside are left out)."""
        out = []
        for r in self.roots:
            for p in sorted(r.rglob("*")):
                if p.suffix.lower() in EVENT_SUFFIXES and p.is_file() and self._inside(Path(os.path.realpath(p))):
                    out.append(p)
        return out


def split_ref(ref: str) -> tuple[str, Optional[int]]:
    """``"FILE:INDEX"`` -> (FILE, INDEX); ``"FILE"`` -> (FILE, None)."""
    path, index = split_index(ref.strip())   # the path:index syntax of every tool (tools.inputs)
    if index is not None:
        return path, index
    head, sep, tail = ref.strip().rpartition(":")
    if sep and head and Path(head).suffix.lower() in EVENT_SUFFIXES:
        raise ValueError(f"bad event index {tail!r} in {ref!r}: give an integer, e.g. '{head}:0'")
    return ref.strip(), None


# ============================================================================ the tools
def tool_schema(name: str) -> dict:
    """The agent's argument schema of ``name`` with ``event`` required and described for MCP
    clients (find_similar: an event or a text query)."""
    js = TOOLS[name].schema()["function"]["parameters"]
    js = json.loads(json.dumps(js))
    js["properties"]["event"] = {"type": "string", "description": EVENT_HELP}
    if name != "find_similar":
        js["required"] = ["event"]
    return js


def _text(result: Any) -> list:
    return [types.TextContent(text=json.dumps(result, default=str))]


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=" ".join(str(message).split()))], is_error=True)


class LarsightMCP:
    """The tools and resources behind the MCP server (transport-free, so tests can call it)."""

    def __init__(self, data: Sequence[str | os.PathLike], index: Optional[str] = None):
        self.data = DataFolders(data)
        self.index = index
        self._run_dir = tempfile.mkdtemp(prefix="larsight-mcp-")   # the toolset needs one; nothing is written
        self.toolset = ToolSet(run_dir=self._run_dir, index=index)
        self._lock = threading.Lock()   # the models are shared: one tool call at a time

    # ------------------------------------------------------------------ events
    def event_ref(self, ref: Any) -> str:
        """A registered reference of the event ``ref`` names, after the path check."""
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError(f"missing event: {EVENT_HELP}")
        if ref.strip().startswith("sim:"):
            return ref.strip()          # re-simulated from its key: no file is read
        from larsight.tools.inputs import load_event

        path, index = split_ref(ref)
        real = self.data.resolve(path)
        ev = load_event((str(real), index) if index is not None else str(real), tool="mcp")
        return register(ev)

    def _check_query(self, query: Optional[str]) -> None:
        """A text query must not name a file: find_similar would read it as an event."""
        if not query:
            return
        q = query.strip()
        bare = re.sub(r":[+-]?\d+$", "", q)
        if not q.startswith("sim:") and (re.search(r"[/\\~]|\.(h5|hdf5|root)\b", q, re.I)
                                         or Path(bare).exists() or Path(q).exists()):
            raise ValueError(f"find_similar: query {query[:80]!r} looks like a file; give a text "
                             f"query, or the event as 'event' ('FILE:INDEX' under a data folder)")

    # ------------------------------------------------------------------ calls
    def call(self, name: str, arguments: Optional[dict]) -> types.CallToolResult:
        """Run one tool (blocking); every failure is a one-line error result."""
        try:
            args = self.toolset.check(name, arguments or {})
            if name == "find_similar":
                self._check_query(getattr(args, "query", None))
            with self._lock:
                ref = self.event_ref(args.event) if (args.event or name != "find_similar") else None
                if name == "render":
                    return self._render(ref, args.view)
                t0 = time.perf_counter()
                result = self.toolset.call(name, args, ref)
                data = observation(result)
                data.setdefault("seconds", round(time.perf_counter() - t0, 3))
            return types.CallToolResult(content=_text(data), structured_content=data)
        except (ToolCallError, ValueError, PermissionError, LookupError, FileNotFoundError) as e:
            return _error(f"{name}: {e}" if not str(e).startswith(name) else str(e))
        except Exception as e:  # noqa: BLE001 - a failing tool is an answer, never a dead server
            log.exception("tool %s failed", name)
            return _error(f"{name} failed: {type(e).__name__}: {e}")

    def _render(self, ref: str, view: str) -> types.CallToolResult:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        from larsight.agent.toolset import resolve
        from larsight.events import Event
        from larsight.events.display import draw_event_panels
        from larsight.tools import find_vertex, segment

        ev = resolve(ref)
        seg = segment(ev)
        vtx = find_vertex(ev)
        shown = Event(points=ev.points, energy=ev.energy, semantic=np.asarray(seg.semantic, np.int8), meta=ev.meta)
        fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
        try:
            _, handles = draw_event_panels(shown, axes, color_by="semantic", show_vertices=False)
            v = getattr(vtx, "vertex_cm", None)
            if v is not None:
                for ax, (a, b) in zip(axes, ((0, 2), (1, 2), (0, 1))):
                    h = ax.scatter([v[a]], [v[b]], marker="x", s=80, color="black", zorder=6, label="reco vertex")
                handles = list(handles or []) + [h]
            if handles:
                fig.legend(handles=handles, loc="outside right upper", markerscale=3, fontsize=8)
            fig.suptitle(f"{ref} | {len(ev)} points, {ev.total_energy_mev:.0f} MeV | colour: segmentation")
            path = Path(self._run_dir) / "render.png"
            fig.savefig(path, dpi=90, format="png")
        finally:
            plt.close(fig)
        png = path.read_bytes()
        path.unlink(missing_ok=True)
        info = {"event": ref, "view": view, "image": "XZ, YZ and XY projections coloured by the "
                "segmentation, reconstructed vertex as x (a static 3D view is not available offline)",
                "points": len(ev), "visible_energy_mev": round(float(ev.total_energy_mev), 1),
                "vertex_cm": [round(float(x), 1) for x in v] if v is not None else None}
        return types.CallToolResult(content=[types.ImageContent(data=base64.b64encode(png).decode(),
                                                                mime_type="image/png")] + _text(info),
                                    structured_content=info)

    def tools(self) -> list[types.Tool]:
        return [types.Tool(name=n, description=TOOLS[n].description if n != "render" else
                           "Draw the event: a PNG of its XZ, YZ and XY projections coloured by the "
                           "segmentation, with the reconstructed vertex.",
                           input_schema=tool_schema(n),
                           annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False))
                for n in TOOL_NAMES]

    # ------------------------------------------------------------------ resources
    def resources(self) -> list[types.Resource]:
        from larsight.events import formats

        out = []
        for f in self.data.files()[:MAX_LISTED_FILES]:
            rel = self.data.relative(Path(os.path.realpath(f)))
            try:
                n = formats.count(f)
            except Exception:  # noqa: BLE001 - an unreadable file is listed without its events
                n = 0
            out.append(types.Resource(uri=f"{SCHEME}{quote(rel)}", name=rel, mime_type="application/json",
                                      description=f"event file with {n} events"))
            for i in range(min(n, MAX_LISTED_EVENTS)):
                out.append(types.Resource(uri=f"{SCHEME}{quote(rel)}/{i}", name=f"{rel}:{i}",
                                          mime_type="application/json", description="event summary"))
        for m in sorted(CHECKPOINTS.glob("*/*.json")):
            out.append(types.Resource(uri=f"{SCHEME}models/{m.parent.name}/{m.name}",
                                      name=f"{m.parent.name}/{m.name}", mime_type="application/json",
                                      description=f"manifest of the shipped checkpoint {m.parent.name}"))
        return out

    def templates(self) -> list[types.ResourceTemplate]:
        return [types.ResourceTemplate(uri_template=SCHEME + "{file}/{index}", name="event",
                                       mime_type="application/json",
                                       description="summary of event INDEX of FILE (relative to a data folder)")]

    def read(self, uri: str) -> str:
        """The JSON text of a resource; ValueError / PermissionError / FileNotFoundError otherwise."""
        if not uri.startswith(SCHEME):
            raise ValueError(f"unknown resource {uri!r}: larsight resources start with {SCHEME}")
        rest = unquote(uri[len(SCHEME):])
        if rest.startswith("models/"):
            name = rest[len("models/"):]
            path = Path(os.path.realpath(CHECKPOINTS / name))
            if CHECKPOINTS.resolve() not in path.parents or path.suffix != ".json" or not path.is_file():
                raise FileNotFoundError(f"no model manifest {name!r}")
            return path.read_text()
        from larsight.events import formats

        head, _, tail = rest.rpartition("/")
        if head and re.fullmatch(r"[+-]?\d+", tail):
            real = self.data.resolve(head)
            from larsight.tools.inputs import load_event

            ev = load_event((str(real), int(tail)), tool="resource")
            return json.dumps(event_summary(ev, f"{self.data.relative(real)}:{ev.meta.index}"))
        real = self.data.resolve(rest)
        return json.dumps({"file": self.data.relative(real), "events": formats.count(real)})


def event_summary(ev, ref: str) -> dict:
    """Measured facts of an event that need no model (the file's truth labels left out)."""
    p = ev.points
    lo, hi = p.min(axis=0), p.max(axis=0)
    return {"event": ref, "points": len(ev), "visible_energy_mev": round(float(ev.total_energy_mev), 2),
            "extent_cm": {"min": [round(float(x), 1) for x in lo], "max": [round(float(x), 1) for x in hi]},
            "voxel_size_cm": ev.meta.volume.voxel_size_cm,
            "tools": "call segment, find_vertex, reconstruct, classify_event or describe with this event"}


# ============================================================================ LangChain
def langchain_tools(data: Sequence[str | os.PathLike], index: Optional[str] = None) -> list:
    """The same tools as LangChain ``StructuredTool`` objects, for LangChain / LangGraph agents:

        tools = langchain_tools(["~/events"])        # then model.bind_tools(tools), create_react_agent(...)

    Same schemas, results and ``--data`` confinement as the MCP server (no server process);
    a failing call raises ``ToolException``, which LangChain's tool node hands to the model."""
    from langchain_core.tools import StructuredTool, ToolException

    app = LarsightMCP(data, index=index)

    def make(name: str):
        def run(**kwargs):
            r = app.call(name, kwargs)
            text = " ".join(c.text for c in r.content if c.type == "text")
            if r.is_error:
                raise ToolException(text)
            images = [c for c in r.content if c.type == "image"]
            return (text, {"png_base64": images[0].data} if images else None)
        return run

    return [StructuredTool.from_function(func=make(t.name), name=t.name, description=t.description,
                                         args_schema=t.input_schema, response_format="content_and_artifact",
                                         handle_tool_error=True)
            for t in app.tools()]


# ============================================================================ server
def build_server(app: LarsightMCP) -> Server:
    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=app.tools())

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in TOOLS:
            raise MCPError(INVALID_PARAMS, f"unknown tool {params.name!r}; the tools are {', '.join(TOOL_NAMES)}")
        # the tools are CPU-bound: a worker thread keeps the server answering meanwhile
        return await anyio.to_thread.run_sync(app.call, params.name, params.arguments)

    async def list_resources(ctx, params) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=await anyio.to_thread.run_sync(app.resources))

    async def list_templates(ctx, params) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=app.templates())

    async def read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        try:
            text = await anyio.to_thread.run_sync(app.read, params.uri)
        except Exception as e:  # noqa: BLE001 - one clear error, the server goes on
            raise MCPError(INVALID_PARAMS, " ".join(str(e).split()), {"uri": params.uri}) from None
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=params.uri, text=text, mime_type="application/json")])

    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("larsight")
    except PackageNotFoundError:
        ver = "0"
    return Server("larsight", version=ver,
                  instructions="LArTPC neutrino-event analysis. Events are 'FILE:INDEX' under the server's "
                               "data folders (resources list them). Results carry units in field names.",
                  on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
                  on_list_resource_templates=list_templates, on_read_resource=read_resource)


def warm_up(app: LarsightMCP) -> threading.Thread:
    """Load the encoder and the VLM in the background, so that the first call is fast."""
    def run():
        try:
            from larsight.events import sim
            from larsight.tools import classify_event, segment

            ev = sim.neutrino(seed=0)
            with app._lock:
                segment(ev)
                classify_event(ev)
            log.info("models loaded")
        except Exception as e:  # noqa: BLE001 - the first call will report it
            log.warning("warm-up failed: %s: %s", type(e).__name__, e)

    t = threading.Thread(target=run, name="larsight-mcp-warm-up", daemon=True)
    t.start()
    return t


def serve(data: Sequence[str], *, http: Optional[int] = None, index: Optional[str] = None,
          warm: bool = True) -> int:
    """Run the server over stdio (default) or streamable HTTP on 127.0.0.1:``http``."""
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="larsight mcp: %(message)s")
    app = LarsightMCP(data, index=index)
    server = build_server(app)
    if warm:
        warm_up(app)
    if http is None:
        from mcp.server.stdio import stdio_server

        async def main():
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(main)
        return 0
    import uvicorn

    print(f"larsight mcp: http://127.0.0.1:{http}/mcp (data: {', '.join(map(str, app.data.roots))})",
          file=sys.stderr, flush=True)
    uvicorn.run(server.streamable_http_app(host="127.0.0.1"), host="127.0.0.1", port=http, log_level="warning")
    return 0
