"""Tool-use traces: questions mapped to the agent tool to call (stage 2, and the VLM brain)."""
from __future__ import annotations

import json

import numpy as np

from larsight.events.vocabulary import CLASS_TEXT, EventFacts

from .definitions import DEFINITIONS
from .qa import question_view
from .text import fmt_dedx, fmt_energy, fmt_length, fmt_vertex, noun, one_of, pick, plural, with_article

TOOL_NAMES = ("segment", "find_vertex", "reconstruct", "classify_event", "find_similar",
              "describe", "render")
"""The agent's tools (DESIGN.md, Tools); a trace with tool None is answered without a tool."""


def _trace(question, tool, arguments=None, answer_template=None, answer=None) -> dict:
    return {"question": question, "tool": tool, "arguments": dict(arguments or {}),
            "answer_template": answer_template, "answer": answer}


def tool_traces(facts: EventFacts, rng: np.random.Generator, n_definitions: int = 2) -> list[dict]:
    """Questions mapped to the tool to call (``TOOL_NAMES``), with the arguments (the agent adds
    the current event's id), an ``answer_template`` whose ``{placeholders}`` the tool result
    fills, and the ``answer`` filled from the truth; ``n_definitions`` traces need no tool
    (``tool`` None, ``answer`` a short definition)."""
    it = question_view(facts)
    out: list[dict] = []
    if it is not None:
        vtx = fmt_vertex(it.vertex_cm) if it.vertex_cm is not None else None
        n_mich = it.counts.get("michel", 0)
        out.append(_trace(one_of(rng, "Segment this event into tracks and showers.",
                                 "Which voxels are track-like and which shower-like?",
                                 "Label every voxel: shower, track, Michel, delta or low energy.",
                                 "Show me the semantic segmentation."),
                          "segment", {}, "Segmentation: {summary}.",
                          f"{len(it.tracks)} track-like and {len(it.showers)} shower-like particles"
                          + (f", {n_mich} Michel electron" + ("s" if n_mich != 1 else "") if n_mich else "") + "."))
        out.append(_trace(one_of(rng, "Is there a Michel electron?", "Are there Michel electrons at the track ends?",
                                 "Do any tracks end with a Michel decay?"),
                          "segment", {}, "{n_michel_voxels} voxels are labelled Michel.",
                          "Yes." if n_mich else "No."))
        if vtx:
            out.append(_trace(one_of(rng, "Where is the vertex?", "Find the interaction vertex.",
                                     "Where does the interaction start?", "Locate the primary vertex."),
                              "find_vertex", {}, "The vertex is at {vertex}.", f"The vertex is at {vtx}."))
        recon_q = [("How many protons are there?", f"{plural(it.counts.get('proton', 0), 'proton')}."),
                   ("What is the topology?", f"{it.topology}."),
                   ("List the particles with their energies.", None),
                   ("How long is the longest track?",
                    f"{fmt_length(it.longest_track.length_cm)}." if it.longest_track else "There is no track."),
                   ("What is the dE/dx at the start of the shower?", None)]
        q, a = pick(rng, recon_q)
        if a is None:
            a = "; ".join(f"{noun(p.type)} {fmt_energy(p.energy_mev)}" for p in it.visible_particles()) or "none"
            if q.startswith("What is the dE/dx"):
                s = [p for p in it.showers if p.start_dedx_mev_cm is not None]
                a = (f"{fmt_dedx(s[0].start_dedx_mev_cm)}." if s else "There is no shower with a measurable start.")
        out.append(_trace(q, "reconstruct", {}, "{particles}", a))
        if it.event_class:
            out.append(_trace(one_of(rng, "Is this a nu_e CC event?", "Classify this event.",
                                     "What type of neutrino interaction is this?", "Is this NC or CC?",
                                     "Which class does this event belong to?"),
                              "classify_event", {}, "{event_class} (p = {probability}).",
                              f"{CLASS_TEXT[it.event_class]}."))
        if rng.random() < 0.5:
            out.append(_trace(one_of(rng, "Find events like this one.", "Show me similar events.",
                                     "Which stored events look like this?"),
                              "find_similar", {"k": int(pick(rng, (3, 5, 10)))},
                              "The most similar events are {event_ids}.", None))
        else:
            query = (f"{CLASS_TEXT[it.event_class]} event with topology {it.topology}" if it.event_class
                     else f"event with topology {it.topology}")
            out.append(_trace(one_of(rng, f"Find me {with_article(query)}.", f"Search for: {query}.",
                                     f"Look for events like: {query}."),
                              "find_similar", {"query": query, "k": 5},
                              "The best matches are {event_ids}.", None))
        out.append(_trace(one_of(rng, "Describe this event.", "What happened here?", "Summarise this event.",
                                 "Give me an overview of this event."),
                          "describe", {}, "{description}", None))
        view = pick(rng, ("3d", "xz", "yz"))
        out.append(_trace({"3d": one_of(rng, "Show me the event.", "Draw the event in 3D.", "Plot this event."),
                           "xz": one_of(rng, "Draw the XZ projection.", "Show the event from above (XZ)."),
                           "yz": one_of(rng, "Show the YZ projection.", "Draw the YZ view.")}[view],
                          "render", {"view": view}, "{figure}", None))
    k = int(min(n_definitions, len(DEFINITIONS)))
    for i in rng.choice(len(DEFINITIONS), size=k, replace=False):
        q, a = DEFINITIONS[int(i)]
        out.append(_trace(q, None, {}, None, a))
    return out


def tool_call_text(trace: dict) -> str:
    """The brain's target text for a trace: the JSON tool call ``{"tool": ..., "arguments": ...}``
    (keys sorted), or the answer itself when no tool is needed."""
    if trace.get("tool") is None:
        return str(trace.get("answer") or "")
    return json.dumps({"tool": trace["tool"], "arguments": trace.get("arguments") or {}}, sort_keys=True)
