"""Atomic file output: write to a temporary file beside the target, then swap it in.

    from larsight.events.formats.atomic import atomic_path, atomic_open

    with atomic_path("out.h5") as tmp:        # tmp: a fresh path in the same directory
        with h5py.File(tmp, "w") as f: ...    # write and close it
    # on success: tmp is fsync'ed and os.replace()d onto out.h5 (then the directory is fsync'ed)
    # on any exception (KeyboardInterrupt included): tmp is removed, out.h5 is untouched

    with atomic_open("report.json", "w") as fh:
        json.dump(obj, fh)

Readers of the target therefore see either the old file or the complete new one, never a
half-written file. The temporary file is hidden, lives in the target's directory (so that the
final ``os.replace`` is a same-filesystem rename) and is named
``.<name>.tmp-<pid>-<random>.larsight-tmp`` after the writing process. A writer killed outright
(SIGKILL, power loss) cannot remove its temporary file; the next write to the same target removes
every such leftover whose writer process is no longer alive on this machine.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_path", "atomic_open", "temp_prefix", "remove_stale_temporaries"]

TEMP_SUFFIX = ".larsight-tmp"


def temp_prefix(target: Path) -> str:
    """The name every temporary file of ``target`` starts with (then the writer's pid)."""
    return f".{target.name}.tmp-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``target`` left by writers that are no longer running
    (this process's own are never touched). Returns the paths removed."""
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    prefix = temp_prefix(target)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            pass
        except OSError:  # not ours to delete (permissions): leave it
            pass
    return removed


def _default_mode(target: Path) -> int:
    """Permissions for the new file: the old file's, else what ``open()`` would give."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms cannot open directories; durability is best effort there
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on normal exit move it onto ``target``.

    The caller writes (and closes) the temporary file inside the ``with`` block. On success the
    file is fsync'ed, given the target's permissions (or the umask default) and renamed onto the
    target with ``os.replace``; on any exception it is deleted and the exception propagates, so an
    existing ``target`` is left byte-for-byte as it was.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {target}: directory {directory} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a directory")
    remove_stale_temporaries(target)
    fd, name = tempfile.mkstemp(prefix=f"{temp_prefix(target)}{os.getpid()}-",
                                suffix=TEMP_SUFFIX, dir=directory)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write of {target}: the temporary file {tmp} vanished")
        os.chmod(tmp, _default_mode(target))
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_path(directory, directory=True)


@contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open()`` for writing, made atomic with :func:`atomic_path` (``mode`` 'w', 'wb', 'x'...).

    With mode 'x' the target must not exist yet (checked before and, best effort, at the swap)."""
    if not any(c in mode for c in "wx") or any(c in mode for c in "ra+"):
        raise ValueError(f"atomic_open: mode must create or truncate a file ('w', 'wb', 'x'...), got {mode!r}")
    target = Path(target)
    exclusive = "x" in mode
    if exclusive and target.exists():
        raise FileExistsError(f"cannot write {target}: it already exists")
    with atomic_path(target) as tmp:
        with open(tmp, mode.replace("x", "w"), **kwargs) as fh:
            yield fh
            fh.flush()
        if exclusive and target.exists():
            raise FileExistsError(f"cannot write {target}: it appeared while writing")
