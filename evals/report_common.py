"""What every report writes besides its numbers: paths relative to the repository, number
formatting, the code version and the machine, and atomic JSON / file copies."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from larsight.events.formats.atomic import atomic_open

REPO = Path(__file__).resolve().parents[1]


def rel(path: Path | str) -> str:
    """A path relative to the repository when it lies inside it (reports travel with the repo)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` places, missing or non-finite values as ``-``."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def git_commit() -> str:
    """The short commit of the checkout, marked when the tree has uncommitted changes."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except Exception:  # no git
        return "unknown"


def machine() -> str:
    """CPU, cores, accelerator, torch version and threads, and the load at the start of a run."""
    import torch  # heavy; only the reports that train or time models call this

    try:
        load = "load %.2f" % os.getloadavg()[0]
    except OSError:
        load = "load unknown"
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {dev}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), {load} at start")


def write_json(path: Path, obj: Any) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
        fh.write("\n")


def copy_atomic(src: Path, dst: Path) -> None:
    with atomic_open(dst, "wb") as fh:
        fh.write(src.read_bytes())


_SHA1: dict[tuple[str, int, int], str] = {}


def file_sha1(path: Path) -> str:
    """Content hash of a weights file (for caches of computed results): cached results stay
    valid when the same file is copied or moved, and only then; hashed once per file version
    (path, size, modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA1:
        _SHA1[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return _SHA1[key]
