"""The agent's fixed tool set, the per-process event registry and the run-folder guard.

Tools
-----
``TOOLS`` maps each name of ``qformer.corpus.TOOL_NAMES`` (segment, find_vertex, reconstruct,
classify_event, find_similar, describe, render) to a ``ToolSpec``: a description, a pydantic
model of its arguments (the agent fills the event itself), and how to call the function of the
``tools`` package. A brain can only name one of these; anything else is an invalid action.
``ToolSet`` runs a call: it validates the arguments, resolves the event from the registry,
times the call, and turns the result into a JSON observation (``observation()``): the tool's
pydantic result dumped to JSON, simulator-truth fields removed, long lists cut.

Events
------
Graph state holds references, never arrays. ``register(event)`` returns a reference (the
``file:index`` the event came from when it was read from a file, else ``event:<hash>``) and
keeps the object in a bounded per-process registry; ``resolve(ref)`` returns the event (from the
registry, else by reading ``file:index`` or re-simulating a ``sim:...`` key of the retrieval
index). An unknown ``event:<hash>`` raises ``UnknownEventError``.

Files
-----
Only ``render`` writes (an HTML display). Every path a tool writes goes through
``safe_path(run_dir, name)``, which refuses anything that resolves outside the run folder.
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from larsight import tools
from larsight.events.display import save_html
from larsight.qformer.corpus import TOOL_NAMES
from larsight.qformer.corpus.action_schema import (CLASS_FILTERS, ENERGY_UNITS, LENGTH_UNITS, PARTICLES,
                                                   RECO_QUANTITIES, SEGMENT_QUANTITIES)
from larsight.tools.event_keys import parse_event_ref
from larsight.tools.inputs import ToolInputError, load_event

from .evidence import strip_truth

__all__ = ["TOOLS", "TOOL_NAMES", "ToolSpec", "ToolSet", "ToolCallError", "UnknownEventError",
           "check_call", "register", "resolve", "event_ref", "safe_path", "observation", "clear_registry",
           "RUN_ROOT"]

RUN_ROOT = Path(os.environ.get("LARSIGHT_RUNS", "runs")) / "agent"
"""Default parent of the run folders (one per agent instance) where tools may write."""

MAX_LIST = 25          # longest list kept in an observation
REGISTRY_SIZE = 256    # events kept in memory by reference


class UnknownEventError(LookupError):
    """An event reference that is neither registered in this process nor loadable."""


class ToolCallError(ValueError):
    """An invalid action: unknown tool, bad arguments, or an event the agent may not use."""


# ============================================================================ arguments
class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: Optional[str] = Field(None, description="event reference; default: the event asked about")


class SegmentArgs(NoArgs):
    quantity: Optional[Literal[SEGMENT_QUANTITIES]] = Field(
        None, description="what the answer reports: the labels per class (default) or the visible energy")


class VertexArgs(NoArgs):
    unit: Optional[Literal[LENGTH_UNITS]] = Field(None, description="unit the answer quotes the vertex in (default cm)")


class ReconstructArgs(NoArgs):
    quantity: Optional[Literal[RECO_QUANTITIES]] = Field(
        None, description="what the answer reports: counts (default), length, energy, dedx, michel, gap "
                          "(shower start vs the vertex) or reasons (the particles behind a classification)")
    particle: Optional[Literal[PARTICLES]] = Field(None, description="the particle the question is about")
    unit: Optional[Literal[LENGTH_UNITS + ENERGY_UNITS]] = Field(
        None, description="unit the answer quotes lengths (cm, mm, m) or energies (MeV, GeV) in")


class SimilarArgs(NoArgs):
    k: int = Field(5, ge=1, le=50, description="number of similar events")
    query: Optional[str] = Field(None, max_length=300,
                                 description="text to search for instead of the event (text-to-event search)")
    event_class: Optional[Literal[CLASS_FILTERS]] = Field(None, description="only events of this class")
    min_energy_mev: Optional[float] = Field(None, ge=0, le=1e6, description="only events with at least this energy")
    max_energy_mev: Optional[float] = Field(None, ge=0, le=1e6, description="only events with at most this energy")


class RenderArgs(NoArgs):
    view: Literal["3d", "xz", "yz"] = Field("3d", description="3D display or a 2D projection")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    """The tool's name, which is also its function's name in ``larsight.tools``."""
    description: str
    args: type[BaseModel]
    writes_files: bool = False
    presentation: tuple[str, ...] = ()
    """Arguments that say what the answer reports and how (which particle, quantity, unit): they
    are kept in the observation for the answer and not passed to the tool's function."""

    @property
    def function(self) -> Callable:
        return getattr(tools, self.name)

    def schema(self) -> dict:
        """OpenAI-style function schema (the event argument stays optional)."""
        js = self.args.model_json_schema()
        js.pop("title", None)
        for p in js.get("properties", {}).values():
            p.pop("title", None)
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": js}}


TOOLS: dict[str, ToolSpec] = {s.name: s for s in (
    ToolSpec("segment", "Per-voxel semantic segmentation (shower, track, Michel, delta, low energy), "
             "particle instances and interaction groups, with energies per class.", SegmentArgs,
             presentation=("quantity",)),
    ToolSpec("find_vertex", "The interaction vertex (x, y, z) in cm with its confidence and cross-checks.",
             VertexArgs, presentation=("unit",)),
    ToolSpec("reconstruct", "Reconstructed particles: PID, track/shower, length (cm), energy (MeV), "
             "direction, start dE/dx (MeV/cm), start and end points, Michel electrons, counts.",
             ReconstructArgs, presentation=("quantity", "particle", "unit")),
    ToolSpec("classify_event", "Event class (nu_e CC, nu_mu CC, NC) with probabilities.", NoArgs),
    ToolSpec("find_similar", "The k most similar events of the event index (or events matching a "
             "text query), with their class, topology and energy.", SimilarArgs),
    ToolSpec("describe", "A physics description of the event built from the other tools.", NoArgs),
    ToolSpec("render", "Draw the event (3D or an XZ / YZ projection) to an HTML file in the run folder.",
             RenderArgs, writes_files=True),
)}
assert tuple(TOOLS) == TOOL_NAMES, "one spec per tool the VLM was trained to call, in its order"


# ============================================================================ registry
_REGISTRY: "OrderedDict[str, Any]" = OrderedDict()
_LOCK = threading.Lock()


def _content_hash(event) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(np.ascontiguousarray(event.points).tobytes())
    h.update(np.ascontiguousarray(event.energy).tobytes())
    return h.hexdigest()


def event_ref(event) -> str:
    """The reference of an event: ``file:index`` when it was read from an existing file,
    else ``event:<content hash>``."""
    src, idx = event.meta.source, event.meta.index
    if src and idx is not None and Path(src).exists():
        return f"{src}:{idx}"
    return f"event:{_content_hash(event)}"


def register(event) -> str:
    """Keep ``event`` in the per-process registry; returns its reference."""
    ref = event_ref(event)
    with _LOCK:
        _REGISTRY[ref] = event
        _REGISTRY.move_to_end(ref)
        while len(_REGISTRY) > REGISTRY_SIZE:
            _REGISTRY.popitem(last=False)
    return ref


def clear_registry() -> None:
    with _LOCK:
        _REGISTRY.clear()


def resolve(ref: str):
    """The event of a reference (registry, ``file:index``, a file, or a ``sim:`` key)."""
    with _LOCK:
        ev = _REGISTRY.get(ref)
    if ev is not None:
        return ev
    if not isinstance(ref, str) or not ref.strip():
        raise UnknownEventError("no event given: pass an events.Event or 'file.h5:INDEX'")
    if ref.startswith("event:"):
        raise UnknownEventError(f"unknown event id {ref!r}: it is not registered in this process "
                                f"(events given as objects live only in the process that got them; "
                                f"give 'file.h5:INDEX' to read one from disk)")
    if ref.startswith("sim:"):
        try:
            ev = parse_event_ref(ref).load()
        except Exception as e:  # noqa: BLE001 - any failure to rebuild it is an unknown event
            raise UnknownEventError(f"cannot rebuild event {ref!r}: {e}") from None
    else:
        try:
            ev = load_event(ref, tool="agent")
        except ToolInputError as e:
            raise UnknownEventError(str(e)) from None
    with _LOCK:
        _REGISTRY[ref] = ev
        while len(_REGISTRY) > REGISTRY_SIZE:
            _REGISTRY.popitem(last=False)
    return ev


# ============================================================================ files
def safe_path(run_dir: str | os.PathLike, name: str) -> Path:
    """``run_dir/name``, refusing absolute names, '..' and links that lead outside ``run_dir``."""
    root = Path(run_dir).resolve()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise PermissionError(f"refusing to write {name!r}: tools write only inside {root}")
    path = (root / name).resolve()
    if root != path and root not in path.parents:
        raise PermissionError(f"refusing to write {name!r}: it resolves outside {root}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ============================================================================ observations
def _compact(x: Any, depth: int = 0) -> Any:
    if isinstance(x, float):
        return round(x, 3) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _compact(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        items = [_compact(v, depth + 1) for v in list(x)[:MAX_LIST]]
        if len(x) > MAX_LIST:
            items.append(f"... {len(x) - MAX_LIST} more")
        return items
    if isinstance(x, str) and len(x) > 2000:
        return x[:2000] + " ..."
    return x


def observation(result: Any) -> dict:
    """A tool result as compact JSON without truth fields."""
    if hasattr(result, "model_dump"):
        try:
            data = result.model_dump(mode="json")
        except Exception:  # noqa: BLE001 - arrays a result forgot to exclude
            data = json.loads(json.dumps(result.model_dump(), default=lambda o: None))
    elif isinstance(result, dict):
        data = json.loads(json.dumps(result, default=str))
    else:
        data = {"text": str(result)}
    return _compact(strip_truth(data))


def headline(result: Any, limit: int = 600) -> str:
    """A short text of a result for traces and language models."""
    if isinstance(result, dict):
        text = json.dumps(strip_truth(result), default=str)
        return text if len(text) <= limit else text[:limit] + " ..."
    for attr in ("_headline", "summary"):
        f = getattr(result, attr, None)
        if callable(f):
            try:
                text = str(f())
                break
            except Exception:  # noqa: BLE001
                pass
    else:
        text = str(result)
    text = re.sub(r"\s+\n", "\n", text)
    text = re.sub(r"\s*\(truth [^)]*\)", "", text)   # the agent reports measurements, not truth
    return text if len(text) <= limit else text[:limit] + " ..."


def check_call(tool: Any, arguments: Any) -> BaseModel:
    """Validated arguments of a call of ``tool``, or ``ToolCallError`` saying what is wrong."""
    if not isinstance(tool, str) or tool not in TOOLS:
        raise ToolCallError(f"invalid action: unknown tool {tool!r}; the tools are {', '.join(TOOL_NAMES)}")
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            raise ToolCallError(f"invalid action: arguments of {tool} are not JSON: {arguments[:80]!r}") from None
    if not isinstance(arguments, dict):
        raise ToolCallError(f"invalid action: arguments of {tool} must be an object")
    try:
        return TOOLS[tool].args.model_validate(arguments)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'arguments'}: {err['msg']}"
                         for err in e.errors())
        raise ToolCallError(f"invalid action: bad arguments for {tool}: {msgs}") from None


class ToolSet:
    """Runs the fixed tools for the agent (see the module docstring).

    ``overrides`` replaces tool functions by name (tests use fakes); ``run_dir`` is the only
    folder tools may write into."""

    def __init__(self, overrides: Optional[dict[str, Callable]] = None,
                 run_dir: Optional[str | os.PathLike] = None, index: Optional[str] = None,
                 tool_kwargs: Optional[dict[str, dict]] = None):
        self.overrides = dict(overrides or {})
        self.tool_kwargs = dict(tool_kwargs or {})   # extra keyword arguments per tool (callables: lazy)
        self.run_dir = Path(run_dir) if run_dir is not None else RUN_ROOT / time.strftime("%Y%m%d-%H%M%S")
        self.index = index
        self._n_files = itertools.count(1)   # render_<n>_<view>.html (thread-safe numbering)

    @property
    def names(self) -> tuple[str, ...]:
        return TOOL_NAMES

    def specs(self) -> list[ToolSpec]:
        return [TOOLS[n] for n in TOOL_NAMES]

    def check(self, tool: Any, arguments: Any) -> BaseModel:
        """Validated arguments of an action, or ``ToolCallError`` saying what is wrong."""
        return check_call(tool, arguments)

    def call(self, tool: str, args: BaseModel, event_ref_: Optional[str]) -> Any:
        """Run one tool on the event ``event_ref_`` and return its raw result."""
        fn = self.overrides.get(tool) or TOOLS[tool].function
        ev = resolve(event_ref_) if event_ref_ else None
        kw = args.model_dump(exclude={"event", *TOOLS[tool].presentation}, exclude_none=True)
        if tool not in self.overrides:
            for k, v in self.tool_kwargs.get(tool, {}).items():
                kw[k] = v() if callable(v) else v
        if tool == "find_similar":
            query = kw.pop("query", None)
            target = query if query else ev
            if target is None:
                raise ToolCallError("find_similar needs an event or a text query")
            if self.index is not None and tool not in self.overrides:
                kw["index"] = self.index
            if query is None and tool not in self.overrides:
                kw.setdefault("exclude_self", True)
            return fn(target, **kw)
        if ev is None:
            raise UnknownEventError(f"{tool} needs an event and none was given")
        if tool == "render":
            return self._render(fn, ev, kw)
        return fn(ev, **kw)

    def _render(self, fn, ev, kw) -> Any:
        view = kw.get("view", "3d")
        path = safe_path(self.run_dir, f"render_{next(self._n_files)}_{view}.html")
        try:
            takes_out = "out" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_out = False
        result = fn(ev, view=view, out=path) if takes_out else fn(ev, view=view)
        fig = result if hasattr(result, "to_html") else getattr(result, "figure", None)
        written = path if path.exists() else None
        if written is None and fig is not None and hasattr(fig, "to_html"):
            save_html(fig, path)             # standalone page (plotly.js embedded: works offline)
            written = path
        out = {"view": view, "file": str(written) if written else None}
        if hasattr(result, "model_dump"):
            try:
                out.update({k: v for k, v in observation(result).items() if k not in out})
            except Exception:  # noqa: BLE001
                pass
        return out
