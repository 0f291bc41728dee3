"""``classify_event``: nu_e CC / nu_mu CC / NC probabilities from the VLM and the encoder.

    from larsight.tools import classify_event
    c = classify_event("run.h5:3")
    c.predicted_class, c.probabilities        # 'numu_cc', {'nue_cc': 0.1, 'numu_cc': 0.8, 'nc': 0.1}
    c.vlm_probabilities, c.encoder_probabilities

Two classifiers, reported side by side:

- the VLM (``qformer.load_vlm``; default ``checkpoints/vlm_smollm2``): each class's canonical
  answer scored as the continuation of the classification prompt (constrained decoding, as in
  the VLM paper), softmax over the classes;
- the encoder's event head (``encoder.load_model``), trained on the same three classes.

``probabilities`` are the VLM's when it is available, else the encoder's (``source`` says
which). A missing or broken VLM is never an error: ``vlm_probabilities`` is then None and
``note`` says why.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import Field

from larsight.events.model import EVENT_CLASSES
from larsight.events.vocabulary import CLASS_TEXT

from . import engine
from .inputs import EventLike, describe_ref, load_event
from .results import ToolResult

__all__ = ["classify_event", "Classification", "get_vlm"]

_VLMS: dict[str, Any] = {}
_VLM_ERRORS: dict[str, str] = {}
_VLM_LOCK = threading.Lock()

VLMLike = Union[None, bool, str, Path, Any]


class Classification(ToolResult):
    """Event-class probabilities from the VLM and from the encoder's event head."""

    source: Optional[str] = Field(None, description="'file:index' the event came from, if any")
    predicted_class: Literal["nue_cc", "numu_cc", "nc"] = Field(description="most probable class (of `probabilities`)")
    predicted_label: str = Field(description="the class as text: 'nu_e CC', 'nu_mu CC' or 'NC'")
    probabilities: dict[str, float] = Field(description="class -> probability (sums to 1), from `method`")
    method: Literal["vlm", "encoder"] = Field(description="which classifier `probabilities` come from")
    vlm_probabilities: Optional[dict[str, float]] = Field(None, description="the VLM's, None without a VLM")
    encoder_probabilities: Optional[dict[str, float]] = Field(None, description="the encoder event head's")
    vlm: Optional[str] = Field(None, description="VLM folder used, None when no VLM was available")
    encoder: str = Field(description="encoder checkpoint used")
    agree: Optional[bool] = Field(None, description="VLM and encoder pick the same class (None without a VLM)")
    truth_class: Optional[str] = Field(None, description="simulator truth class, when the event has one")
    note: str = Field("", description="what was missing or failed, if anything")

    def _headline(self) -> str:
        # measurements only: the simulator truth (``truth_class``) stays a field, out of the
        # text a language model reads
        p = self.probabilities[self.predicted_class]
        src = f" of {self.source}" if self.source else ""
        agree = ("" if self.agree is None else
                 "; the VLM and the encoder agree" if self.agree else
                 "; the VLM and the encoder disagree")
        extra = f"; {self.note}" if self.note else ""
        return (f"Classification{src}: {self.predicted_label} with probability {p:.2f} "
                f"from the {self.method}{agree}{extra}")

    def _sections(self):
        rows = []
        for c in EVENT_CLASSES:
            rows.append((CLASS_TEXT[c],
                         "-" if self.vlm_probabilities is None else f"{self.vlm_probabilities[c]:.3f}",
                         "-" if self.encoder_probabilities is None else f"{self.encoder_probabilities[c]:.3f}"))
        return [("Class probabilities", ["class", "VLM probability", "encoder probability"], rows)]


def get_vlm(vlm: VLMLike = None):
    """(loaded VLM or None, note). Loaded once per process and folder; failures are remembered
    (and reported as the note) rather than raised."""
    if vlm is False:
        return None, "VLM not requested"
    if vlm is not None and vlm is not True and not isinstance(vlm, (str, Path)):
        if not hasattr(vlm, "classify"):
            return None, f"vlm must be a folder or a qformer.VLM, got {type(vlm).__name__}"
        return vlm, ""
    from larsight.qformer.vlm import DEFAULT_VLM_DIR   # imports torch (seconds): only with a VLM

    folder = Path(vlm) if isinstance(vlm, (str, Path)) else DEFAULT_VLM_DIR
    key = str(folder.resolve())
    if key in _VLMS:
        return _VLMS[key], ""
    if key in _VLM_ERRORS:
        return None, _VLM_ERRORS[key]
    if not (folder / "vlm.json").exists():
        return None, (f"no trained VLM at {folder} (train one with `larsight align --stage 1` and "
                      f"`--stage 2`); encoder event head only")
    with _VLM_LOCK:
        if key in _VLMS:
            return _VLMS[key], ""
        try:
            from larsight.qformer import load_vlm   # torch, as above

            _VLMS[key] = load_vlm(folder)
        except Exception as exc:  # a broken VLM must not break the tool
            _VLM_ERRORS[key] = f"the VLM at {folder} could not be loaded ({type(exc).__name__}: {exc}); encoder only"
            return None, _VLM_ERRORS[key]
    return _VLMS[key], ""


def _norm(p) -> Optional[dict[str, float]]:
    if p is None:
        return None
    a = np.asarray([p[c] for c in EVENT_CLASSES] if isinstance(p, dict) else p, dtype=np.float64)
    if a.shape != (len(EVENT_CLASSES),) or not np.all(np.isfinite(a)) or a.sum() <= 0:
        return None
    a = a / a.sum()
    return {c: round(float(x), 4) for c, x in zip(EVENT_CLASSES, a)}


def _shares_encoder(loaded, model) -> bool:
    """The VLM reads the event tokens of the tools' own encoder checkpoint (so the tools'
    cached encoder pass can feed it)."""
    a, b = getattr(getattr(loaded, "encoder", None), "path", None), getattr(model, "path", None)
    return (a is not None and b is not None and hasattr(loaded, "prediction_inputs")
            and Path(a).resolve() == Path(b).resolve())


def _vlm_probabilities(ev, loaded, m, pred) -> tuple[Optional[dict[str, float]], str]:
    """(the VLM's class probabilities or None, what failed), cached per event content, encoder
    and VLM (``engine.memo``): ``describe`` and repeated calls do not score the event again."""
    def compute():
        try:
            if _shares_encoder(loaded, m):   # one encoder pass per event, shared with the tools
                probs = loaded.classify(ev, event_inputs=loaded.prediction_inputs([pred]))
            else:
                probs = loaded.classify(ev)
            return _norm(probs), ""
        except Exception as exc:
            return None, f"the VLM failed on this event ({type(exc).__name__}: {exc})"
    return engine.memo("classify_vlm", ev, m, compute, extra=(id(loaded),))


def classify_event(event: EventLike, vlm: VLMLike = None, model: engine.ModelLike = None) -> Classification:
    """nu_e CC / nu_mu CC / NC probabilities of one event, VLM and encoder side by side.

    ``vlm``: None (the default folder, if it holds a trained VLM), a folder, a loaded
    ``qformer.VLM``, or False (encoder only). ``model``: the encoder (see ``segment``).
    Raises ``tools.ToolInputError`` for unusable input, never for a missing VLM."""
    ev = load_event(event, tool="classify_event")
    m, pred = engine.predict(ev, model)
    enc = _norm(pred.event_probs)
    notes = []
    loaded, note = get_vlm(vlm)
    vlm_probs = None
    vlm_name = None
    if loaded is not None:
        vlm_probs, failed = _vlm_probabilities(ev, loaded, m, pred)
        if failed:
            notes.append(failed)
        else:
            vlm_name = (str(vlm) if isinstance(vlm, (str, Path)) else
                        "checkpoints/vlm_smollm2" if vlm in (None, True) else "in-memory VLM")
    elif note and vlm is not False:
        notes.append(note)
    if enc is None and vlm_probs is None:
        raise ValueError(f"classify_event: the encoder checkpoint {engine.model_name(m)} has no event "
                         f"head and no VLM is available" + (f" ({notes[0]})" if notes else ""))
    probs, method = (vlm_probs, "vlm") if vlm_probs is not None else (enc, "encoder")
    best = max(probs, key=probs.get)
    agree = None
    if vlm_probs is not None and enc is not None:
        agree = max(vlm_probs, key=vlm_probs.get) == max(enc, key=enc.get)
    return Classification(
        source=describe_ref(ev), predicted_class=best, predicted_label=CLASS_TEXT[best],
        probabilities=probs, method=method, vlm_probabilities=vlm_probs, encoder_probabilities=enc,
        vlm=vlm_name, encoder=engine.model_name(m), agree=agree, truth_class=ev.event_class,
        note="; ".join(notes))
