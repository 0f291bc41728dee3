"""encoder layer of larsight (see DESIGN.md): the point-cloud foundation encoder.

``PointEncoder(EncoderConfig.preset("tiny"))`` maps a ragged batch of events
(``collate_events``) to per-point features and per-event tokens in one forward pass.
"""
from .backbone import EncoderOutput, PointEncoder, collate_events, energy_feature
from .config import PRESETS, EncoderConfig

__all__ = ["EncoderConfig", "PRESETS", "PointEncoder", "EncoderOutput", "collate_events",
           "energy_feature"]
