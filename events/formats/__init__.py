"""Event files: PILArNet-Medium HDF5 (``.h5``/``.hdf5``) and ROOT (``.root``), chosen by extension.

    from larsight.events.formats import read, write, count, convert

    for ev in read("file.h5"): ...          # lazy: one event decoded at a time, file open meanwhile
    ev = read("file.root", index=-1)        # one event (negative indices count from the end)
    n = count("file.h5")                    # number of events, without decoding any
    write("out.h5", events_iterable)        # streaming and atomic; returns the number written
    write("out.h5", evs, layout="v1")       # PILArNet-M v1 cluster layout (default "v2")
    convert("in.h5", "out.root")            # any supported format to any other

Every event read carries ``meta.source = str(path)`` and ``meta.index = i``. Problems with a
file (missing -> FileNotFoundError; corrupt, truncated, foreign, inconsistent -> EventError,
or its subclass EventFileError)
are reported with the file name and what is wrong, never as a raw h5py/uproot traceback.
Writes go to a temporary file in the target's directory that replaces the target only when
everything was written (see :mod:`events.formats.atomic`); on any error the target is untouched.

Trusted and untrusted files. ``read`` / ``count`` / ``read_range`` parse in this process and
are for files the project wrote itself (simulated files, training sets, converted files):
they are fast and stream, but libhdf5 can loop forever on a damaged heap and a forged length can
make h5py or uproot allocate gigabytes, and no Python timeout interrupts either. Anything written
by others -- uploads to the app, paths a user gives ``larsight inspect`` / ``ask`` / the agent --
goes through the bounded reader::

    from larsight.events.formats import read_untrusted, count_untrusted, iter_untrusted
    [ev] = read_untrusted(path, 3, timeout_s=10.0, max_memory_mb=2048)

which parses in a reused worker process with a wall-clock limit and an address-space cap and
raises :class:`EventFileError` (one line naming the file and the problem) when a bound fires
(:mod:`events.formats.untrusted`). Both readers refuse declared sizes the file cannot hold
(dataset rows without stored chunks, TTree entries beyond its baskets) before allocating, and
every event passes the model's checks (finite values, physical bounds, label ranges).

Integrity: larsight's HDF5 files carry a CRC-32 of every event's row of every dataset
(``larsight_crc32``, itself fletcher32-checksummed: HDF5 cannot filter variable-length
datasets), verified on read, so changed bytes in an event are refused with the dataset named.
ROOT baskets written compressed carry zlib's Adler-32, which uproot verifies; uncompressed
baskets and foreign PILArNet-M files carry no checksum, so damage that leaves valid values there
reads as a different, valid event.

Format details: :mod:`events.formats.pilarnet` (schema facts and where they were verified) and
:mod:`events.formats.root` (tree layout).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from larsight.events.formats.atomic import atomic_open, atomic_path
from larsight.events.formats.untrusted import count_untrusted, iter_untrusted, read_untrusted
from larsight.events.model import Event, EventError, EventFileError

FORMATS = {".h5": "pilarnet", ".hdf5": "pilarnet", ".root": "root"}
"""File extension -> format module (in events.formats)."""

__all__ = ["read", "write", "count", "convert", "format_of", "read_range", "FORMATS",
           "atomic_path", "atomic_open", "read_untrusted", "count_untrusted", "iter_untrusted",
           "EventFileError"]


def format_of(path: Union[str, os.PathLike]) -> str:
    """'pilarnet' or 'root' for a path, from its extension; EventError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise EventError(f"{path}: unknown event file extension {suffix or '(none)'!r}; "
                         f"supported: {known} (PILArNet-M HDF5 or ROOT)")
    return FORMATS[suffix]


def _module(path):
    import importlib

    return importlib.import_module(f"larsight.events.formats.{format_of(path)}")


def count(path: Union[str, os.PathLike]) -> int:
    """Number of events in a file (reads only the file's structure)."""
    p = Path(path)
    return _module(p).count(p)


def read(path: Union[str, os.PathLike], index: Optional[int] = None
         ) -> Union[Iterator[Event], Event]:
    """The events of a file, lazily (``index=None``), or the ``index``-th event.

    The file is opened and its structure checked right away, so a missing, corrupt or foreign
    file fails here rather than at the first ``next()``. Iteration then reopens it and keeps it
    open only while the iterator runs (it closes when exhausted or closed/garbage-collected)."""
    p = Path(path)
    mod = _module(p)
    if index is not None:
        return mod.read_one(p, index)
    mod.count(p)  # fail early on missing / corrupt / foreign files
    return mod.iterate(p)


def read_range(path: Union[str, os.PathLike], start: int, stop: int) -> list[Event]:
    """Events ``start``..``stop - 1`` of a file (clipped to the file), decoded together."""
    p = Path(path)
    return _module(p).read_range(p, int(start), int(stop))


def write(path: Union[str, os.PathLike], events: Union[Event, Iterable[Event]], *,
          progress: bool = False, layout: Optional[str] = None,
          total: Optional[int] = None) -> int:
    """Write events (one Event or any iterable, e.g. a generator: it is consumed once, in
    streaming blocks) to ``path``; the format follows the extension. Returns the number written.

    Atomic: the data go to a temporary file beside ``path`` that is fsync'ed and renamed onto
    ``path`` at the end. A bad item (not an Event, or an Event that no longer validates) or any
    exception raised while writing -- including one raised by the events generator -- removes the
    temporary file and propagates; an existing ``path`` is left untouched.

    ``layout`` ('v2' default, or 'v1') selects the PILArNet-M cluster layout of ``.h5`` files;
    ``progress`` shows a progress bar (``total`` sets its length when ``events`` has no len())."""
    from larsight.events.formats._common import iter_events

    p = Path(path)
    fmt = format_of(p)
    items = iter_events(events)
    if fmt == "pilarnet":
        from larsight.events.formats import pilarnet

        return pilarnet.write(p, items, progress=progress, layout=layout or "v2", total=total)
    if layout is not None:
        raise ValueError(f"write {p}: 'layout' applies to PILArNet-M .h5 files only")
    from larsight.events.formats import root

    return root.write(p, items, progress=progress, total=total)


def convert(in_path: Union[str, os.PathLike], out_path: Union[str, os.PathLike],
            progress: bool = False, untrusted: bool = False, **options: Any) -> int:
    """Stream every event of ``in_path`` into ``out_path`` (formats from the extensions; the
    output is written atomically). Returns the number of events converted. ``untrusted``: read
    ``in_path`` through the bounded worker (a file written by others)."""
    format_of(out_path)  # an unknown output extension fails before reading anything
    if untrusted:
        n = count_untrusted(in_path)
        return write(out_path, iter_untrusted(in_path), progress=progress, total=n, **options)
    n = count(in_path)
    return write(out_path, read(in_path), progress=progress, total=n, **options)
