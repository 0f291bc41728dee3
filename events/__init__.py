"""The data layer: the Event model, file formats, the simulator, projections and datasets.

    from larsight import events
    for ev in events.read("file.h5"): ...          # lazy, one event at a time
    ev = events.read("file.h5", index=3)            # one event
    events.write("out.root", evs)                   # atomic; format from the extension
    ev = events.sim.particle_gun(13, 500.0, seed=1)
"""
from larsight.events.model import (
    EVENT_CLASSES, PID_CLASSES, PILARNET_VOLUME, PROCESSES, SEMANTIC_CLASSES,
    Event, EventError, EventFileError, EventMeta, Interaction, Particle, Volume,
)

__all__ = [
    "Event", "EventError", "EventFileError", "EventMeta", "Interaction", "Particle", "Volume", "PILARNET_VOLUME",
    "SEMANTIC_CLASSES", "PID_CLASSES", "EVENT_CLASSES", "PROCESSES", "read", "write",
]


def __getattr__(name):
    # Submodules and the format verbs load on first use, so `import events` stays light
    # (no h5py / uproot / plotly until they are needed).
    import importlib
    if name in ("read", "write"):
        return getattr(importlib.import_module("larsight.events.formats"), name)
    if name in ("sim", "display", "projections", "dataset", "inspect", "vocabulary"):
        return importlib.import_module(f"larsight.events.{name}")
    raise AttributeError(f"module 'larsight.events' has no attribute {name!r}")
