"""qformer layer of larsight (docs/architecture.md): the detector-native VLM.

``load_vlm()`` loads a trained VLM (frozen encoder + Q-Former projector + language model with
LoRA adapters): ``VLM.classify(event)`` -> {class: probability}, ``explain(event, question)``,
``embed(events)`` / ``embed_text(texts)`` in the aligned event-text space.
``lm.load_lm`` loads the language model (bundled SmolLM2-135M-Instruct by default; NF4 +
LoRA = QLoRA), ``corpus`` writes training texts from simulator truth, ``align`` trains the
two stages (``qformer.align.align``, ``larsight align --stage 1|2``).

Imports are lazy: ``import qformer`` does not load torch or transformers.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "VLM": "vlm", "load_vlm": "vlm", "DEFAULT_VLM_DIR": "vlm",
    "EventProjector": "projector", "EventProjectorConfig": "projector",
    "load_lm": "lm", "describe_lm": "lm",
    "AlignConfig": "align",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'qformer' has no attribute {name!r}")
