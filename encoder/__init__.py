"""encoder layer of larsight (docs/architecture.md): the point-cloud foundation encoder.

``PointEncoder(EncoderConfig.preset("tiny"))`` maps a ragged batch of events
(``collate_events``) to per-point features and per-event tokens in one forward pass.
``load_model(path)`` loads a trained checkpoint (encoder + task heads) for inference:
``EncoderModel.predict(events)`` -> ``EventPrediction`` per event, ``embed(events)``.
"""
from .backbone import EncoderOutput, PointEncoder, collate_events, energy_feature
from .config import PRESETS, EncoderConfig
from .inference import DEFAULT_CHECKPOINT, EncoderModel, EventPrediction, load_model

__all__ = ["EncoderConfig", "PRESETS", "PointEncoder", "EncoderOutput", "collate_events",
           "energy_feature", "load_model", "EncoderModel", "EventPrediction",
           "DEFAULT_CHECKPOINT"]
