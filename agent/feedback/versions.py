"""The versions of the models behind an answer, stored with every answer that gets feedback.

``model_versions(agent)`` names the brain, the encoder checkpoint and (for the vlm brain) the
VLM folder, each as ``name@sha256[:12]`` of its weight files (hashed once per file version:
path, size and modification time), plus the VLM manifest's kind and step. Files that are not
there are named without a hash; nothing here loads a model.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Optional

__all__ = ["model_versions", "file_digest", "folder_digest"]

ROOT = Path(__file__).resolve().parents[2]
ENCODER = ROOT / "checkpoints" / "encoder_tiny" / "model.safetensors"
VLM = ROOT / "checkpoints" / "vlm_smollm2"
_CACHE: dict[tuple, str] = {}
_LOCK = threading.Lock()


def file_digest(*paths: Path) -> Optional[str]:
    """The first 12 hex digits of the SHA-256 over the files (None when one is missing)."""
    files = [Path(p) for p in paths]
    if not files or not all(p.is_file() for p in files):
        return None
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    h = hashlib.sha256()
    for p in files:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    digest = h.hexdigest()[:12]
    with _LOCK:
        _CACHE[key] = digest
    return digest


def folder_digest(folder: Path) -> Optional[str]:
    """``file_digest`` of a model folder's weights (``*/*.safetensors``: projector, adapter)."""
    return file_digest(*sorted(Path(folder).glob("*/*.safetensors")))


def _vlm_folder(brain: Any) -> Optional[Path]:
    vlm = getattr(brain, "_vlm", None)
    for cand in (vlm, getattr(vlm, "folder", None), getattr(vlm, "path", None)):
        if isinstance(cand, (str, os.PathLike)) and Path(cand).is_dir():
            return Path(cand)
    return VLM if VLM.is_dir() else None


def _vlm_version(folder: Path) -> dict[str, str]:
    out = {"vlm": f"{folder.name}@{folder_digest(folder) or 'unhashed'}"}
    manifest = folder / "vlm.json"
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
            out["vlm_manifest"] = f"{m.get('kind', '?')} step {m.get('step', '?')} ({m.get('lm', '?')})"
        except (OSError, ValueError):
            out["vlm_manifest"] = "unreadable"
    return out


def model_versions(agent: Any = None) -> dict[str, str]:
    """{brain, encoder[, vlm, vlm_manifest]} for an ``agent.Agent`` (or the defaults)."""
    brain = getattr(agent, "brain", None)
    name = getattr(agent, "brain_name", None) or getattr(brain, "name", None) or "unknown"
    out = {"brain": str(name)}
    enc = ENCODER
    out["encoder"] = f"{enc.parent.name}@{file_digest(enc) or 'missing'}"
    if name == "vlm":
        folder = _vlm_folder(brain)
        if folder is not None:
            out.update(_vlm_version(folder))
    model = getattr(brain, "model", None) or getattr(brain, "model_name", None)
    if name == "openai" and model:
        out["openai_model"] = str(model)
    return out
