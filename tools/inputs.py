"""What every tool accepts as its event, resolved in one place.

    from larsight.tools.inputs import load_event
    ev = load_event(event)                 # an events.Event: returned as it is (after checks)
    ev = load_event("run.h5:3")            # event 3 of a PILArNet-M file (or ROOT file)
    ev = load_event("run.h5")              # a file holding exactly one event
    ev = load_event(("run.root", -1))      # (path, index)

Every problem becomes a ``ToolInputError`` (a ``ValueError``) whose message says what was
given and what to do: a missing file (``EventFileNotFoundError``, also a
``FileNotFoundError``), an index the file does not have (the message names the file and how
many events it holds), a file of several events without an index, an empty event, an event
of a single point, or an object that is not an event at all.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, Field

from larsight.events import formats
from larsight.events.model import Event, EventError

__all__ = ["ToolInputError", "EventFileNotFoundError", "EventLike", "EventInput", "load_event",
           "parse_ref", "split_index", "checked_index", "describe_ref", "MIN_POINTS"]

MIN_POINTS = 2
"""Fewest points an event may have: one point has no extent, direction or structure."""

EventLike = Union[Event, str, os.PathLike, tuple]
"""An ``events.Event``, a path to an event file, ``"path:index"``, or ``(path, index)``."""

_REF = re.compile(r"^(?P<path>.+):(?P<index>[+-]?\d+)$")


class ToolInputError(ValueError):
    """The event given to a tool cannot be used; the message says why and what to do."""


class EventFileNotFoundError(ToolInputError, FileNotFoundError):
    """The event file does not exist."""


class EventInput(BaseModel):
    """The argument every tool takes, as the agent passes it (a string)."""

    event: str = Field(description="event reference: a path to a PILArNet-M .h5 or .root event "
                                   "file followed by ':index' (e.g. 'data/run1.h5:3'; negative "
                                   "indices count from the end); a path alone for a one-event file")


def split_index(text: str) -> tuple[str, Optional[int]]:
    """``"path:index"`` -> ("path", index) by the syntax alone (an integer after the last
    colon); any other text -> (text, None). ``parse_ref`` adds the checks against the disk."""
    m = _REF.match(text)
    return (m["path"], int(m["index"])) if m else (text, None)


def parse_ref(ref: Union[str, os.PathLike]) -> tuple[Path, Optional[int]]:
    """``"path:index"`` -> (path, index); a plain path -> (path, None).

    A path that exists as given wins over the ``:index`` reading (a file may have a colon in
    its name)."""
    text = os.fspath(ref)
    if not isinstance(text, str):
        raise ToolInputError(f"event reference must be a string path, got bytes {text!r}")
    text = text.strip()
    if not text:
        raise ToolInputError("empty event reference: give an events.Event, a file path or 'path:index'")
    head, index = split_index(text)
    if index is not None and not Path(text).exists():
        return Path(head).expanduser(), index
    head, sep, tail = text.rpartition(":")
    if sep and head and not Path(text).exists() and Path(head).expanduser().is_file():
        raise ToolInputError(f"bad event index {tail!r} in {text!r}: after the file name give "
                             f"the event's integer index ('{head}:0')")
    return Path(text).expanduser(), None


def describe_ref(event: Event) -> Optional[str]:
    """``"file.h5:3"`` for an event read from a file, else None."""
    src = event.meta.source
    if src is None:
        return None
    return f"{src}:{event.meta.index}" if event.meta.index is not None else str(src)


def checked_index(path: Path, index: Optional[int]) -> tuple[int, int]:
    """(index counted from the start, number of events) for ``path:index`` after checking the
    file exists, is an event file and holds that event; ``index=None`` is allowed only for a
    one-event file. Negative indices count from the end."""
    if not path.exists():
        hint = ""
        if path.suffix.lower() not in formats.FORMATS:
            hint = " (event files are PILArNet-M .h5 / .hdf5 or .root)"
        raise EventFileNotFoundError(f"event file not found: {path}{hint}")
    if path.is_dir():
        raise ToolInputError(f"{path} is a directory; give an event file (.h5 or .root) and an index")
    try:
        formats.format_of(path)
        n = formats.count(path)
    except EventError as exc:
        raise ToolInputError(f"cannot read events from {path}: {exc}") from None
    if n == 0:
        raise ToolInputError(f"{path} holds no events")
    if index is None:
        if n != 1:
            raise ToolInputError(f"{path} holds {n} events; choose one with '{path}:INDEX' "
                                 f"(INDEX 0..{n - 1}, or -{n}..-1 from the end)")
        index = 0
    if not -n <= index < n:
        raise ToolInputError(f"unknown event index {index}: {path} holds {n} event"
                             f"{'' if n == 1 else 's'} (valid indices 0..{n - 1}, or -{n}..-1)")
    return index % n, n


def _read(path: Path, index: Optional[int]) -> Event:
    index, _ = checked_index(path, index)
    try:
        return formats.read(path, index=index)
    except EventError as exc:
        raise ToolInputError(f"cannot read event {index} of {path}: {exc}") from None


def load_event(event: Any, *, min_points: int = MIN_POINTS, tool: str = "tool") -> Event:
    """Resolve a tool's event argument to an ``events.Event`` (see the module docstring).

    ``min_points`` (default 2) is the smallest event accepted; ``tool`` names the caller in
    error messages."""
    if isinstance(event, Event):
        ev = event
    elif isinstance(event, EventInput):
        ev = load_event(event.event, min_points=min_points, tool=tool)
    elif isinstance(event, (str, os.PathLike)):
        path, index = parse_ref(event)
        ev = _read(path, index)
    elif isinstance(event, tuple) and len(event) == 2 and isinstance(event[0], (str, os.PathLike)):
        idx = event[1]
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise ToolInputError(f"{tool}: the index of (path, index) must be an integer, "
                                 f"got {type(idx).__name__}")
        ev = _read(Path(os.fspath(event[0])).expanduser(), int(idx))
    else:
        raise ToolInputError(
            f"{tool}: expected an events.Event, a path to an event file (.h5 / .root) or "
            f"'path:index', got {type(event).__name__}")
    n = len(ev)
    where = describe_ref(ev)
    label = f"event {where}" if where else "the event"
    if n == 0:
        raise ToolInputError(f"{tool}: {label} is empty (0 points): there is nothing to analyse")
    if n < min_points:
        raise ToolInputError(f"{tool}: {label} has a single point ({n} voxel); the tools need at "
                             f"least {min_points} points to find structure, direction or length"
                             if n == 1 else
                             f"{tool}: {label} has only {n} points; at least {min_points} are needed")
    return ev
