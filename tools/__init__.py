"""tools layer of larsight (see DESIGN.md): the analysis tools, for notebooks and the agent.

    from larsight.tools import segment, find_vertex, reconstruct, classify_event, describe, render, find_similar
    seg = segment("run.h5:3")           # per-point classes, particle instances, interaction groups
    vtx = find_vertex(ev)               # vertex + confidence, cross-checked with particle starts
    reco = reconstruct(ev)              # particles (PID, length, energy, dE/dx, Michel), topology
    cls = classify_event(ev)            # nu_e CC / nu_mu CC / NC from the VLM and the encoder
    print(describe(ev).text)            # a short factual summary
    render(ev, color_by="particle")     # plotly figure with the reconstruction drawn over it
    render(ev, view="projections", out="ev.html")   # XZ / YZ images, written to a file too
    build_index(["run.h5"], "my_index")  # an on-disk embedding index of events, then:
    find_similar(ev, k=5, index="my_index")          # or a text: find_similar("nu_e CC ...")

Every tool takes an ``events.Event``, a path to a one-event file, or ``"path:index"``
(PILArNet-M ``.h5`` or ``.root``) and returns a pydantic result with units in its field names
and descriptions, which prints as text and draws as tables in Jupyter. Unusable input raises
``ToolInputError`` (a ValueError) with a message that says what is wrong.

Imports are lazy: ``import tools`` loads neither torch nor plotly.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "segment": "segmentation", "Segmentation": "segmentation",
    "find_vertex": "vertexing", "VertexResult": "vertexing",
    "reconstruct": "reconstruction", "Reconstruction": "reco_results",
    "ParticleReco": "reco_results", "MichelReco": "reco_results", "InteractionReco": "reco_results",
    "classify_event": "classification", "Classification": "classification",
    "describe": "description", "Description": "description",
    "render": "rendering",
    "find_similar": "retrieval", "SimilarResult": "retrieval", "SimilarEvent": "retrieval",
    "EventIndex": "retrieval", "EventEmbedder": "embedder",
    "build_index": "index_build", "IndexBuildReport": "index_build",
    "ToolInputError": "inputs", "EventFileNotFoundError": "inputs", "EventInput": "inputs",
    "load_event": "inputs",
    "clear_cache": "engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    # the function shadows nothing: submodules have other names (segmentation, vertexing, ...)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
