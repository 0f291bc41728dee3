"""The encoder behind the tools: one loaded model per process and a small cache of predictions.

``get_model(path=None)`` loads a checkpoint once (thread-safe; the default is
``encoder.DEFAULT_CHECKPOINT``) and returns the same ``EncoderModel`` afterwards.
``predict(event, model)`` runs the encoder heads on one event and remembers the answer for the
last few events (keyed by the event's content and the model), so that ``segment``,
``find_vertex``, ``reconstruct``, ``classify_event`` (whose VLM reads the same pass's event
tokens) and ``describe`` on the same event run the network once; ``memo`` keeps derived results
(the reconstruction, the classification) the same way. Both caches are bounded (least recently
used out) and thread-safe: concurrent calls for the same event wait for the one computation
instead of repeating it.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Union

import numpy as np

from larsight.events.model import Event

__all__ = ["get_model", "predict", "event_key", "clear_cache", "model_name", "ModelLike"]

ModelLike = Union[None, str, Path, Any]
"""None (the shipped checkpoint), a checkpoint path, or a loaded ``encoder.EncoderModel``."""

_MODELS: dict[str, Any] = {}
_MODEL_LOCK = threading.Lock()
_PRED_LOCK = threading.Lock()
_PREDICTIONS: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_SIZE = 16
_MEMO: "OrderedDict[tuple, Any]" = OrderedDict()
_INFLIGHT: dict[tuple, threading.Lock] = {}


def get_model(model: ModelLike = None):
    """The ``EncoderModel`` for ``model`` (loaded once per process and path)."""
    if model is not None and not isinstance(model, (str, Path)):
        if not hasattr(model, "predict"):
            raise TypeError(f"model must be a checkpoint path or an encoder.EncoderModel, "
                            f"got {type(model).__name__}")
        return model
    # the encoder imports torch (seconds): only a tool that runs the model loads it
    from larsight.encoder.inference import DEFAULT_CHECKPOINT

    key = str(Path(model).resolve() if model is not None else DEFAULT_CHECKPOINT)
    found = _MODELS.get(key)
    if found is not None:
        return found
    with _MODEL_LOCK:
        found = _MODELS.get(key)
        if found is None:
            from larsight.encoder import load_model

            found = load_model(key)
            _MODELS[key] = found
    return found


def model_name(model) -> str:
    """A short name of a loaded model for results ('encoder_tiny/model.safetensors')."""
    path = getattr(model, "path", None)
    if path is None:
        return "in-memory encoder"
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def event_key(event: Event) -> tuple:
    """A content key of an event: points, energies and voxel size (labels do not matter)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(event.points).tobytes())
    h.update(np.ascontiguousarray(event.energy).tobytes())
    h.update(repr(event.meta.volume).encode())
    return (h.hexdigest(), len(event))


def _cached(store: "OrderedDict[tuple, Any]", key: tuple, compute, size: int):
    """``store[key]``, computed once: a caller that finds ``key`` being computed by another
    thread waits for it. Least recently used entries beyond ``size`` are dropped."""
    with _PRED_LOCK:
        if key in store:
            store.move_to_end(key)
            return store[key]
        gate = _INFLIGHT.get(key)
        owner = gate is None
        if owner:
            gate = _INFLIGHT[key] = threading.Lock()
            gate.acquire()
    if not owner:
        with gate:   # released when the owner is done (or failed: then compute here)
            pass
        with _PRED_LOCK:
            if key in store:
                store.move_to_end(key)
                return store[key]
        return _cached(store, key, compute, size)
    try:
        value = compute()
        with _PRED_LOCK:
            store[key] = value
            while len(store) > size:
                store.popitem(last=False)
        return value
    finally:
        with _PRED_LOCK:
            _INFLIGHT.pop(key, None)
        gate.release()


def predict(event: Event, model: ModelLike = None):
    """(EncoderModel, EventPrediction) for one event, from the cache when it was seen."""
    m = get_model(model)
    return m, _cached(_PREDICTIONS, (id(m), event_key(event)), lambda: m.predict(event)[0],
                      _CACHE_SIZE)


def memo(kind: str, event: Event, model, compute, extra: tuple = ()):
    """Cache ``compute()`` per (kind, event content, model, extra) beside the predictions."""
    return _cached(_MEMO, (kind, id(model), event_key(event), extra), compute, 4 * _CACHE_SIZE)


def clear_cache(models: bool = False) -> None:
    """Forget cached predictions (and the loaded models if ``models``)."""
    with _PRED_LOCK:
        _PREDICTIONS.clear()
        _MEMO.clear()
    if models:
        with _MODEL_LOCK:
            _MODELS.clear()
