"""The files a ``larsight`` verb is pointed at: event files and references read through the
bounded reader for untrusted files, input globs, and output paths checked before any work.

Every problem is a ``CliError`` with a one-line message: a missing, unreadable, corrupt or
too-costly input is a ``BadInputError`` (exit 3), an output that cannot be written a
``UsageError`` (exit 2).
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Optional

# read_untrusted / count_untrusted are looked up on the module when called (not imported by
# name) so that a test can stand in for them
from larsight.events import formats
from larsight.events.model import Event, EventError
from larsight.tools.inputs import MIN_POINTS, split_index
from larsight.ui.cli_args import BadInputError, UsageError

__all__ = ["READ_TIMEOUT_S", "split_ref", "read_event", "check_event_file", "check_inputs",
           "output_file", "output_dir"]

READ_TIMEOUT_S = float(os.environ.get("LARSIGHT_READ_TIMEOUT_S", "10"))
"""Longest a file given on the command line may take to open or to yield one event."""


def split_ref(ref: str) -> tuple[str, Optional[int]]:
    """``FILE:INDEX`` -> (FILE, INDEX); a plain ``FILE`` (or one whose name ends in ':digits'
    and exists as given) -> (FILE, None). Negative indices count from the end."""
    head, index = split_index(ref)   # the path:index syntax of every tool (tools.inputs)
    if index is not None and not Path(ref).exists():
        return head, index
    return ref, None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def check_event_file(path: str | os.PathLike) -> int:
    """The number of events in an input file (bounded in time and memory)."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"no such event file: {p}")
    if p.is_dir():
        raise BadInputError(f"{p} is a folder: give an event file (.h5 / .hdf5 / .root)")
    try:
        return int(formats.count_untrusted(p, timeout_s=READ_TIMEOUT_S))
    except (EventError, OSError) as err:
        raise BadInputError(_one_line(err)) from None


def read_event(ref: str, *, min_points: int = MIN_POINTS) -> Event:
    """The event of ``FILE`` (its first event) or ``FILE:INDEX``, read in a bounded worker;
    refused when it has fewer than ``min_points`` points (nothing to analyse)."""
    path, index = split_ref(ref)
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"no such event file: {p}")
    if p.is_dir():
        raise BadInputError(f"{p} is a folder: give an event file (.h5 / .hdf5 / .root) and an index")
    i = 0 if index is None else index
    try:
        events = formats.read_untrusted(p, i, timeout_s=READ_TIMEOUT_S)
    except (EventError, OSError) as err:
        raise BadInputError(_one_line(err)) from None
    if len(events) != 1:
        raise BadInputError(f"{p}: no event {i} in the file")
    ev = events[0]
    if len(ev) < min_points:
        raise BadInputError(f"event {i} of {p} has {len(ev)} point{'' if len(ev) == 1 else 's'}: "
                            f"nothing to analyse (an event needs at least {min_points})")
    return ev


def check_inputs(patterns: Iterable[str], what: str = "--files") -> list[str]:
    """Every file an input list names (globs expanded); each pattern must match a file."""
    out: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(os.path.expanduser(pat))) if glob.has_magic(pat) else [pat]
        hits = [h for h in hits if Path(h).is_file()]
        if not hits:
            raise BadInputError(f"{what}: no event file matches {pat!r}")
        out += hits
    return out


def output_file(path: str | os.PathLike, suffixes: Optional[Iterable[str]] = None,
                what: str = "--out") -> Path:
    """An output file that can be written: its folder exists, it is not a folder itself, and
    its extension is one of ``suffixes`` (when given)."""
    p = Path(path).expanduser()
    if suffixes is not None:
        allowed = sorted(set(suffixes))
        if p.suffix.lower() not in allowed:
            raise UsageError(f"{what} {path}: the extension must be one of {', '.join(allowed)}")
    if p.is_dir():
        raise UsageError(f"{what} {path} is a folder: give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{what} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{what} {path}: the folder {parent} is not writable")
    return p


def output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """An output folder: it may not exist yet (it is made), but must not be a file, and the
    nearest existing folder above it must be writable."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {path} is a file: give a folder")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"{what} {path}: {parent} is not a writable folder")
    return p
