"""Bounded reading of files written by others: parse in a worker process with a time limit and
a memory cap, so that a pathological file costs seconds and ends in one clear error.

    from larsight.events.formats import read_untrusted, count_untrusted, iter_untrusted

    n = count_untrusted("upload.h5")                   # int
    [ev] = read_untrusted("upload.h5", 3)               # one event (a list of one)
    evs = read_untrusted("upload.root")                 # every event (a list)
    for ev in iter_untrusted("big.h5"): ...             # every event, a block at a time

Why a process: HDF5 and ROOT are parsed by C code (libhdf5) and by uproot/awkward. A damaged
global heap makes libhdf5 loop forever inside ``Dataset.__getitem__`` -- no Python timeout or
signal reaches it -- and a forged length makes either library allocate gigabytes. Only a
process that can be killed bounds both. The worker sets ``RLIMIT_AS`` on itself (the memory the
parse may add on top of the interpreter and its libraries) and is reused across files; it is
restarted only after it was killed (timeout) or died (crash, memory).

Every failure is an :class:`~larsight.events.EventFileError` whose one-line message names the
file and the problem, and whose ``kind`` says which bound or check fired: ``"timeout"``,
``"memory"``, ``"crash"``, ``"invalid"`` (the file was read and refused) or ``"unexpected"``
(a library raised something the format readers do not anticipate; the file is refused all the
same, and the fuzz harness counts these as gaps). A missing file is
``FileNotFoundError`` and a non-integer index ``TypeError``, as with the in-process reader.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from larsight.events.model import Event, EventFileError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_MEMORY_MB = 2048
START_TIMEOUT_S = 120.0
"""How long a new worker may take to import its libraries (not charged to any file)."""
MAX_IDLE_WORKERS = 2
ITER_BLOCK = 32
"""Events per worker call in :func:`iter_untrusted`."""

__all__ = ["read_untrusted", "count_untrusted", "iter_untrusted", "ReaderPool",
           "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_MEMORY_MB"]

PathLike = Union[str, os.PathLike]


class _Worker:
    """One reader process and the two pipes to it."""

    def __init__(self, max_memory_mb: int):
        self.max_memory_mb = max_memory_mb
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "larsight.events.formats._worker", str(int(max_memory_mb))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "MKL_NUM_THREADS": "1"},
            close_fds=True, start_new_session=True)
        # Connection frames pickles and can poll with a timeout; it owns duplicates of the fds
        self.to_child = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.from_child = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        if not self.from_child.poll(START_TIMEOUT_S):
            self.kill()
            raise RuntimeError(f"the file-reader process did not start within {START_TIMEOUT_S:.0f} s")
        try:
            ready = self.from_child.recv()
        except (EOFError, OSError):
            ready = None
        if ready != "ready":
            self.kill()
            raise RuntimeError(f"the file-reader process failed to start (exit status "
                               f"{self.proc.poll()})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for conn in (self.to_child, self.from_child):
            try:
                conn.close()
            except OSError:
                pass

    def death_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the reader process stopped answering"
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the reader process was killed by {name}"
        return f"the reader process exited with status {code}"


class ReaderPool:
    """Warm reader processes for one memory cap; thread-safe (one worker per concurrent call)."""

    def __init__(self, max_memory_mb: int = DEFAULT_MAX_MEMORY_MB, max_idle: int = MAX_IDLE_WORKERS):
        if not max_memory_mb or max_memory_mb <= 0:
            raise ValueError(f"max_memory_mb must be positive, got {max_memory_mb!r}")
        self.max_memory_mb = int(max_memory_mb)
        self.max_idle = max_idle
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self.started = 0
        """Worker processes started so far (restarts included): for tests and reports."""

    def _acquire(self) -> _Worker:
        with self._lock:
            while self._idle:
                w = self._idle.pop()
                if w.alive():
                    return w
                w.kill()
            self.started += 1
        return _Worker(self.max_memory_mb)

    def _release(self, w: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle and w.alive():
                self._idle.append(w)
                return
        w.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()

    def call(self, op: str, path: PathLike, arg: Any = None, *,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
        """Run ``op`` ('count', 'read', 'range') on ``path`` in a worker; see the module doc."""
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        path = Path(path)
        # a warm worker keeps the working directory it started in: send an absolute path, and
        # name the file in messages as the caller did
        absolute = os.path.abspath(path)
        w = self._acquire()
        try:
            w.to_child.send((op, absolute, arg))
            if not w.from_child.poll(timeout_s):
                w.kill()
                raise EventFileError(f"{path}: did not finish reading within {timeout_s:g} s "
                                     f"(the file is damaged or pathological); the reader was "
                                     f"stopped", kind="timeout")
            answer = w.from_child.recv()
        except (EOFError, OSError, BrokenPipeError):
            reason = w.death_reason()
            w.kill()
            raise EventFileError(f"{path}: reading it crashed the reader ({reason}); the file "
                                 f"is damaged or needs more than {self.max_memory_mb} MB",
                                 kind="crash") from None
        except BaseException:
            w.kill()
            raise
        self._release(w)
        status, *rest = answer
        if status == "ok":
            result = rest[0]
            if isinstance(result, list) and absolute != str(path):
                for ev in result:  # as the in-process reader names it
                    ev.meta = ev.meta.model_copy(update={"source": str(path)})
            return result
        kind, message = rest
        if absolute != str(path):
            message = message.replace(absolute, str(path))
        if kind == "missing":
            raise FileNotFoundError(message)
        if kind == "type":
            raise TypeError(message)
        raise EventFileError(message, kind=kind)


_pools: dict[int, ReaderPool] = {}
_pools_lock = threading.Lock()


def _pool(max_memory_mb: int) -> ReaderPool:
    with _pools_lock:
        pool = _pools.get(int(max_memory_mb))
        if pool is None:
            pool = _pools[int(max_memory_mb)] = ReaderPool(max_memory_mb)
        return pool


@atexit.register
def _close_pools() -> None:
    for pool in list(_pools.values()):
        pool.close()


def count_untrusted(path: PathLike, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB) -> int:
    """Number of events in a file written by others, read in a bounded worker process."""
    return int(_pool(max_memory_mb).call("count", path, timeout_s=timeout_s))


def read_untrusted(path: PathLike, index: Optional[int] = None, *,
                   timeout_s: float = DEFAULT_TIMEOUT_S,
                   max_memory_mb: int = DEFAULT_MAX_MEMORY_MB) -> list[Event]:
    """Events of a file written by others, parsed and validated in a bounded worker process:
    all of them (``index=None``, a list) or the ``index``-th (a list of one).

    ``timeout_s`` bounds the whole call (the file's structure plus the events asked for);
    ``max_memory_mb`` the memory the parse may take. See the module doc for the errors."""
    if index is not None and (isinstance(index, bool) or not hasattr(index, "__index__")):
        raise TypeError(f"read: index must be an integer, got {type(index).__name__}")
    arg = None if index is None else int(index)
    return list(_pool(max_memory_mb).call("read", path, arg, timeout_s=timeout_s))


def iter_untrusted(path: PathLike, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                   max_memory_mb: int = DEFAULT_MAX_MEMORY_MB,
                   block: int = ITER_BLOCK) -> Iterator[Event]:
    """Every event of a file written by others, ``block`` events per bounded worker call
    (``timeout_s`` applies to each call), so that large files stream in constant memory."""
    pool = _pool(max_memory_mb)
    n = int(pool.call("count", path, timeout_s=timeout_s))
    for start in range(0, n, block):
        yield from pool.call("range", path, (start, min(start + block, n)), timeout_s=timeout_s)
