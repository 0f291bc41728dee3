"""Encoder checkpoints: safetensors weights + a JSON manifest; resumable training state.

Shipped weights (``save_weights`` / ``load_weights``)::

    run/encoder.safetensors   tensors "encoder.<name>" and "heads.<task>.<name>"
    run/encoder.json          manifest: encoder config, head specs, exact command line, data
                              (mode, seed, voxel size, files), step, metrics, larsight version

The manifest is also stored in the safetensors header (key ``larsight_manifest``), so a lone
``.safetensors`` file still loads. Loading validates the format, the encoder configuration
and every tensor's name and shape, and raises ``CheckpointError`` naming what does not match.

Training state for ``--resume`` (``save_train_state`` / ``load_train_state``) lives only in
run folders (``run/state/``) and is never shipped: modules, optimizer moments, step and RNG
states, again as safetensors + JSON (no pickle anywhere).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import random
import shutil
from importlib.metadata import version
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .backbone import PointEncoder
from .config import EncoderConfig
from .heads import build_head

FORMAT = "larsight-encoder"
FORMAT_VERSION = 1
METADATA_KEY = "larsight_manifest"

TRAINING_ONLY_FIELDS = frozenset({"name", "drop_path", "attn_drop", "checkpoint_cpe",
                                  "shuffle_orders"})
"""EncoderConfig fields that do not change the weights or the function (may differ on load)."""


class CheckpointError(ValueError):
    """A checkpoint does not match the model it is loaded into (the message says what)."""


def larsight_version() -> str:
    try:
        return version("larsight")
    except Exception:  # not installed (running from a checkout)
        return "0.1.0+local"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _dumps(obj: Any, indent: Optional[int] = None) -> str:
    return json.dumps(obj, indent=indent, default=_json_default, sort_keys=False)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _cpu_tensors(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone()
            for k, v in module.state_dict().items()}


# ============================================================================ shipped weights
def manifest_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_weights(path: str | Path, encoder: PointEncoder,
                 heads: Optional[Mapping[str, nn.Module]] = None,
                 manifest: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``path`` (.safetensors) and its manifest ``path.with_suffix('.json')``.

    ``heads`` maps a task name to a head with a ``spec()`` (see ``encoder.heads``);
    ``manifest`` adds fields (``command``, ``data``, ``step``, ``metrics``, ...).
    Returns the weights path. Both files are written atomically.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_weights: the file name must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    heads = dict(heads or {})
    tensors = _cpu_tensors("encoder.", encoder)
    for task, head in heads.items():
        tensors.update(_cpu_tensors(f"heads.{task}.", head))
    man = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "larsight_version": larsight_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": encoder.config.to_dict(),
        "heads": {task: head.spec() if hasattr(head, "spec") else {} for task, head in heads.items()},
        "n_parameters": int(sum(t.numel() for t in tensors.values())),
        **dict(manifest or {}),
    }
    text = _dumps(man, indent=2)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: _dumps(man)})
    os.replace(tmp, path)
    _atomic_write_text(manifest_path(path), text + "\n")
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a weights file (the JSON beside it, else the safetensors header)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    side = manifest_path(path)
    if side.exists():
        man = json.loads(side.read_text())
    else:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if METADATA_KEY not in meta:
            raise CheckpointError(f"{path}: no manifest (neither {side.name} nor a "
                                  f"'{METADATA_KEY}' header entry); not a larsight checkpoint")
        man = json.loads(meta[METADATA_KEY])
    if man.get("format") != FORMAT:
        raise CheckpointError(f"{path}: manifest format is {man.get('format')!r}, expected {FORMAT!r}")
    if int(man.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: manifest format_version {man.get('format_version')} is newer "
                              f"than this larsight understands ({FORMAT_VERSION}); upgrade larsight")
    return man


def check_config(saved: Mapping[str, Any], config: EncoderConfig, source: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` listing architecture fields that differ."""
    current = config.to_dict()
    diffs = [f"{k}: {source} has {saved.get(k)!r}, model has {current.get(k)!r}"
             for k in sorted(set(saved) | set(current))
             if k not in TRAINING_ONLY_FIELDS and saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(f"{source}: encoder configuration does not match the model: "
                              + "; ".join(diffs))


def load_module_tensors(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str,
                        source: str, strict: bool = True) -> None:
    """Copy ``tensors[prefix + name]`` into ``module``, checking names and shapes first."""
    expected = module.state_dict()
    mine = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = [k for k in expected if k not in mine]
    if missing:
        raise CheckpointError(f"{source}: tensor '{prefix}{missing[0]}' is missing"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    for k, want in expected.items():
        got = mine[k]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{source}: tensor '{prefix}{k}' has shape {tuple(got.shape)} in "
                                  f"the checkpoint but the model expects {tuple(want.shape)}")
    unexpected = [k for k in mine if k not in expected]
    if strict and unexpected:
        raise CheckpointError(f"{source}: unexpected tensor '{prefix}{unexpected[0]}'"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
                              + " not in the model")
    module.load_state_dict({k: mine[k] for k in expected}, strict=True)


@dataclass
class Loaded:
    """What ``load_weights`` returns."""

    encoder: PointEncoder
    heads: dict[str, nn.Module] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def load_weights(path: str | Path, encoder: Optional[PointEncoder] = None,
                 heads: Optional[Mapping[str, nn.Module]] = None, *, load_heads: bool = True,
                 strict: bool = True, map_location: str | torch.device = "cpu") -> Loaded:
    """Load a ``save_weights`` file.

    Args:
        encoder: load into this model (its config must match); default: build it from the
            manifest's config.
        heads: load into these heads (by task); default: rebuild every head in the manifest
            (``encoder.heads.build_head``) unless ``load_heads`` is False.
        strict: unexpected encoder tensors are an error.
    Raises:
        CheckpointError naming the mismatched field or tensor; FileNotFoundError.
    """
    path = Path(path)
    man = read_manifest(path)
    source = str(path)
    if encoder is None:
        try:
            encoder = PointEncoder(EncoderConfig.from_dict(man["config"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: cannot build the encoder from the manifest: {err}") from err
    else:
        check_config(man["config"], encoder.config, source)
    tensors = load_file(str(path), device=str(map_location))
    load_module_tensors(encoder, tensors, "encoder.", source, strict=strict)
    loaded_heads: dict[str, nn.Module] = {}
    if heads is not None:
        for task, head in heads.items():
            if task not in man.get("heads", {}):
                raise CheckpointError(f"{source}: has no '{task}' head (it has "
                                      f"{sorted(man.get('heads', {})) or 'none'})")
            load_module_tensors(head, tensors, f"heads.{task}.", source)
            loaded_heads[task] = head
    elif load_heads:
        for task, spec in man.get("heads", {}).items():
            head = build_head(**spec)
            load_module_tensors(head, tensors, f"heads.{task}.", source)
            loaded_heads[task] = head
    return Loaded(encoder=encoder, heads=loaded_heads, manifest=man)


# ============================================================================ training state
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    return tensors, {"python": [py[0], list(py[1]), py[2]]}


def _set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(len(tensors)) if f"rng.cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in cuda])
    if "python" in meta:
        v, state, gauss = meta["python"]
        random.setstate((v, tuple(state), gauss))


def save_train_state(folder: str | Path, *, step: int, modules: Mapping[str, nn.Module],
                     optimizer: Optional[torch.optim.Optimizer] = None,
                     extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Everything ``--resume`` needs, in ``folder`` (state.safetensors + state.json).

    ``extra`` holds JSON-able values (data cursor, numpy generator state, schedules...).
    Written to a temporary folder and renamed, so a crash never leaves a half state.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors.update(_cpu_tensors(f"module.{name}.", module))
    meta: dict[str, Any] = {"step": int(step), "larsight_version": larsight_version(),
                            "modules": sorted(modules), "extra": dict(extra or {})}
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, st in sd["state"].items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"optimizer.{pid}.{k}"] = v.detach().to("cpu").contiguous().clone()
                else:
                    scalars.setdefault(str(pid), {})[k] = v
        meta["optimizer"] = {"param_groups": sd["param_groups"], "scalars": scalars,
                             "state_ids": [int(k) for k in sd["state"]]}
    rng_tensors, rng_meta = _rng_state()
    tensors.update(rng_tensors)
    meta["rng"] = rng_meta
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(_dumps(meta, indent=1))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)
    return folder


def has_train_state(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "state.json").exists() and (folder / "state.safetensors").exists()


def load_train_state(folder: str | Path, *, modules: Mapping[str, nn.Module],
                     optimizer: Optional[torch.optim.Optimizer] = None,
                     restore_rng: bool = True) -> dict[str, Any]:
    """Restore ``save_train_state``; returns ``{"step": ..., "extra": {...}}``."""
    folder = Path(folder)
    if not has_train_state(folder):
        raise FileNotFoundError(f"no training state to resume in {folder}")
    meta = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "state.safetensors"))
    source = str(folder / "state.safetensors")
    for name, module in modules.items():
        if name not in meta["modules"]:
            raise CheckpointError(f"{source}: has no module '{name}' (it has {meta['modules']})")
        device = next((t.device for t in module.state_dict().values()), torch.device("cpu"))
        load_module_tensors(module, {k: v.to(device) for k, v in tensors.items()
                                     if k.startswith(f"module.{name}.")},
                            f"module.{name}.", source)
    if optimizer is not None:
        if "optimizer" not in meta:
            raise CheckpointError(f"{source}: no optimizer state saved")
        om = meta["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for pid in om["state_ids"]:
            st = {k.split(".", 2)[2]: v for k, v in tensors.items()
                  if k.startswith(f"optimizer.{pid}.")}
            st.update(om["scalars"].get(str(pid), {}))
            state[pid] = st
        groups = om["param_groups"]
        for g in groups:
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    if restore_rng:
        _set_rng_state(tensors, meta.get("rng", {}))
    return {"step": int(meta["step"]), "extra": meta.get("extra", {})}
