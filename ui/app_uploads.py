"""Where the chat app keeps uploaded event files once they have been read: a folder capped in
total size.

An upload is read first, from Gradio's temporary copy, through the bounded reader; only a
file that reads is kept, under a name made from its content hash (the same file uploaded
twice is one file, and the events' references stay valid after Gradio's copy is gone). When
the folder would exceed its cap the least recently used files are deleted; a session whose
file was deleted is told to upload it again. ``UploadStore.forget_source`` deletes Gradio's
copy after use (the app's own cache otherwise keeps every upload until its age limit).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

__all__ = ["UploadStore", "content_name"]


def content_name(path: Path, suffix: str) -> str:
    """The stored name of a file: 20 hex digits of its SHA-256, then its extension."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"{h.hexdigest()[:20]}{suffix}"


class UploadStore:
    """A folder of kept uploads of at most ``cap_mb`` (the newest file is always kept)."""

    def __init__(self, folder: str | os.PathLike, cap_mb: float):
        if not cap_mb > 0:
            raise ValueError(f"UploadStore: cap_mb must be > 0, got {cap_mb!r}")
        self.folder = Path(folder).resolve()
        self.cap_bytes = int(cap_mb * 2**20)
        self._lock = threading.Lock()

    def keep(self, src: str | os.PathLike, suffix: str) -> Path:
        """Copy ``src`` into the store (atomically; once per content) and return its path."""
        src = Path(src)
        self.folder.mkdir(parents=True, exist_ok=True)
        dest = self.folder / content_name(src, suffix)
        with self._lock:
            if dest.exists():
                os.utime(dest)                 # recently used: evicted last
            else:
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".part-", suffix=suffix)
                os.close(fd)
                try:
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            self._evict(keep=dest)
        return dest

    def touch(self, path: str | os.PathLike) -> None:
        """Mark a kept file as used now (it is then evicted last)."""
        try:
            os.utime(path)
        except FileNotFoundError:
            pass

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".part-")]

    def _evict(self, keep: Path) -> None:
        files = []
        for p in self._files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files, key=lambda f: f[0]):
            if total <= self.cap_bytes:
                break
            if p == keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
        self._sweep_parts()

    def _sweep_parts(self, older_than_s: float = 3600.0) -> None:
        """Remove partial copies a killed server left behind."""
        now = time.time()
        for p in self.folder.glob(".part-*"):
            try:
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
            except FileNotFoundError:
                pass

    @staticmethod
    def forget_source(path: Optional[str | os.PathLike], cache_dir: str | os.PathLike) -> bool:
        """Delete an uploaded file if it lies in Gradio's upload cache ``cache_dir`` (never a
        file elsewhere); True when it was deleted."""
        if not path:
            return False
        p = Path(path).resolve()
        try:
            p.relative_to(Path(cache_dir).resolve())
        except ValueError:
            return False
        try:
            p.unlink()
        except FileNotFoundError:
            return False
        try:
            p.parent.rmdir()           # Gradio keeps each upload in a folder of its own
        except OSError:
            pass
        return True
