"""The reader process behind :mod:`larsight.events.formats.untrusted` (``python -m`` this).

Protocol: pickled messages over stdin/stdout (``multiprocessing.connection`` framing). The
worker answers ``"ready"`` once its libraries are imported, then for each request
``(op, path, arg)`` one ``("ok", result)`` or ``("error", kind, one-line message)``. It exits
when its stdin closes (the parent went away). The argument is the memory, in MB, that a parse
may add to the address space the interpreter has after its imports.
"""
from __future__ import annotations

import os
import resource
import sys
from multiprocessing.connection import Connection
from pathlib import Path


def _serve(conn_in: Connection, conn_out: Connection, max_memory_mb: int) -> None:
    from larsight.events.formats import count, read, read_range
    from larsight.events.model import EventError

    def answer(op: str, path: Path, arg):
        if op == "count":
            return count(path)
        if op == "read":
            return list(read(path)) if arg is None else [read(path, arg)]
        if op == "range":
            return read_range(path, *arg)
        raise ValueError(f"unknown request {op!r}")

    while True:
        try:
            op, path, arg = conn_in.recv()
        except EOFError:
            return
        p = Path(path)
        try:
            result = answer(op, p, arg)
            conn_out.send(("ok", result))
            continue
        except MemoryError:
            reply = ("error", "memory", f"{p}: reading it needs more than {max_memory_mb} MB of "
                                        f"memory (the file declares absurd sizes or is damaged)")
        except FileNotFoundError as exc:
            reply = ("error", "missing", str(exc))
        except TypeError as exc:
            reply = ("error", "type", str(exc))
        except (EventError, IsADirectoryError, PermissionError) as exc:
            reply = ("error", "invalid", _one_line(str(exc), p))
        except RecursionError:
            reply = ("error", "invalid", f"{p}: its structure is nested too deeply to read")
        except Exception as exc:  # a library error the format readers did not foresee
            # still one clear line for the user; the kind lets the fuzz harness count the gap
            reply = ("error", "unexpected",
                     _one_line(f"cannot read it: {type(exc).__name__}: {exc}", p))
        result = None
        conn_out.send(reply)


def _one_line(message: str, path: Path) -> str:
    line = " ".join(message.split())
    if str(path) not in line:
        line = f"{path}: {line}"
    return line[:600]


def main() -> None:
    max_memory_mb = int(sys.argv[1])
    # the pipes become Connections; fd 1 then points at stderr so that a stray print from a
    # library cannot corrupt the protocol
    conn_in = Connection(os.dup(0), writable=False)
    conn_out = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    # import everything a parse needs before the cap, so the cap measures the parse only
    import awkward  # noqa: F401
    import h5py  # noqa: F401
    import numpy  # noqa: F401
    import uproot  # noqa: F401

    import larsight.events.formats.pilarnet  # noqa: F401
    import larsight.events.formats.root  # noqa: F401

    if max_memory_mb > 0:
        with open("/proc/self/statm") as fh:
            base = int(fh.read().split()[0]) * resource.getpagesize()
        cap = base + max_memory_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn_out.send("ready")
    _serve(conn_in, conn_out, max_memory_mb)


if __name__ == "__main__":
    main()
