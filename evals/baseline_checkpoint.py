"""Baseline checkpoints: ``run_dir/model.safetensors`` + ``model.json`` (format
``larsight-baseline``), written atomically; loading rebuilds the model from the manifest and
checks every tensor's name and shape."""
from __future__ import annotations

import datetime as _dt
import json
from importlib.metadata import version
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from larsight.encoder.checkpoint import CheckpointError, load_module_tensors
from larsight.events.formats.atomic import atomic_path
from larsight.events.model import EVENT_CLASSES

from .baseline_models import KINDS, VIEWS, build_model, count_parameters

FORMAT = "larsight-baseline"
FORMAT_VERSION = 1
METADATA_KEY = "larsight_manifest"
WEIGHTS_NAME = "model.safetensors"
MANIFEST_NAME = "model.json"


# ============================================================================ checkpoints
class BaselineCheckpointError(ValueError):
    """A baseline checkpoint is missing, malformed or does not fit the model (message says what)."""


def _larsight_version() -> str:
    try:
        return version("larsight")
    except Exception:
        return "0.1.0+local"


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` then rename onto ``path`` (events.formats.atomic: a crash leaves the old file)."""
    with atomic_path(path) as tmp:
        write(tmp)


def save_baseline(run_dir: str | Path, model: nn.Module, manifest: Optional[dict] = None) -> Path:
    """``run_dir/model.safetensors`` + ``model.json``, each written to a temporary name and
    renamed, so an interrupted save never leaves a half-written checkpoint under the real name."""
    if getattr(model, "kind", None) not in KINDS:
        raise TypeError(f"save_baseline: expected a TwoViewCNN or TwoViewViT, got {type(model).__name__}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    man = {"format": FORMAT, "format_version": FORMAT_VERSION, "larsight_version": _larsight_version(),
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "model": {"kind": model.kind, "config": dict(model.config)},
           "image": {"size": model.image_size, "views": list(VIEWS), "values": "log1p(MeV per pixel)",
                     "extent": "full detector volume"},
           "classes": list(EVENT_CLASSES), "n_parameters": count_parameters(model),
           **dict(manifest or {})}
    text = json.dumps(man, indent=2, default=str)
    weights = run / WEIGHTS_NAME
    _atomic_write(weights, lambda p: save_file(tensors, str(p), metadata={METADATA_KEY: json.dumps(man, default=str)}))
    _atomic_write(run / MANIFEST_NAME, lambda p: p.write_text(text + "\n"))
    return weights


def _locate(run_dir: str | Path) -> tuple[Path, Path]:
    path = Path(run_dir)
    weights = path if path.suffix == ".safetensors" else path / WEIGHTS_NAME
    if not weights.exists():
        if not path.exists():
            raise FileNotFoundError(f"load_baseline: {path} does not exist")
        raise FileNotFoundError(f"load_baseline: no {weights.name} in {weights.parent} (train one with "
                                f"train_baseline or python -m larsight.evals.baselines train)")
    return weights, weights.with_name(MANIFEST_NAME)


def read_baseline_manifest(run_dir: str | Path) -> dict:
    """The manifest (``model.json``, else the safetensors header), format-checked."""
    weights, side = _locate(run_dir)
    if side.exists():
        man = json.loads(side.read_text())
    else:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        if METADATA_KEY not in meta:
            raise BaselineCheckpointError(f"{weights}: no manifest ({side.name} missing and no header entry)")
        man = json.loads(meta[METADATA_KEY])
    if man.get("format") != FORMAT:
        raise BaselineCheckpointError(f"{weights}: format is {man.get('format')!r}, expected {FORMAT!r} "
                                      f"(an encoder checkpoint? use encoder.checkpoint.load_weights)")
    if int(man.get("format_version", -1)) > FORMAT_VERSION:
        raise BaselineCheckpointError(f"{weights}: format_version {man['format_version']} is newer than "
                                      f"this larsight understands ({FORMAT_VERSION})")
    return man


def load_baseline(run_dir: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model of a run folder (or a ``.safetensors`` path), in eval mode, with its manifest
    as ``model.manifest``. Every tensor is checked by name and shape before loading."""
    weights, _ = _locate(run_dir)
    man = read_baseline_manifest(weights)
    try:
        model = build_model(man["model"]["kind"], **man["model"]["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise BaselineCheckpointError(f"{weights}: cannot build the model from the manifest: {err}") from err
    tensors = load_file(str(weights), device=str(map_location))
    try:
        load_module_tensors(model, tensors, "", str(weights))
    except CheckpointError as err:
        raise BaselineCheckpointError(str(err)) from err
    model.manifest = man
    return model.to(map_location).eval()
