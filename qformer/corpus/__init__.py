"""Text from simulator truth: the corpus that aligns the point-cloud encoder to the language model.

    from larsight.qformer import corpus
    facts = corpus.event_facts(event)                   # EventFacts (pydantic) from the truth
    corpus.captions(facts, rng, n=3)                    # varied descriptions (stage 1)
    corpus.qa_pairs(facts, rng)                         # [(question, answer), ...]
    corpus.classification_target(facts, rng)            # (CLASSIFY_PROMPT, "nu_e CC: ...")
    corpus.tool_traces(facts, rng)                      # [{question, tool, arguments, ...}]
    recs = corpus.build_corpus(events, seed=0)          # records: kind, event_id, prompt, target
    corpus.write_jsonl(recs, "corpus.jsonl")            # atomic
    corpus.phrasing_diversity(recs)                     # distinct texts, templates, n-gram ratios

The agent's action has its own corpus: ``qformer.corpus.actions`` (question templates and
phrase bank in ``action_phrases``, the grammar's shared words and canonical text in
``action_schema``), trained by ``larsight align --stage actions``. So do the grounded
explanations (``--explain-fraction``): ``explanations`` (examples), ``explanation_phrases``
(question and sentence templates, train and held-out kept apart) and ``explain_schema`` (the
tools' measurements written as the text the VLM explains from).

The facts, the visibility thresholds and the topology notation are the event's physics
vocabulary and live in ``larsight.events.vocabulary`` (re-exported here); this package only
writes text, one module per kind: ``captions``, ``qa``, ``classification`` (targets and the
reasons for a class), ``tool_traces``, ``definitions`` (textbook answers), ``build``
(``build_corpus``), ``io`` (JSONL) and ``diversity``; ``text`` and ``phrases`` hold the number
formats and particle phrases they share.

Numbers in texts: cm with one decimal (lengths of 1 m and more also as metres with two
decimals), MeV as integers (energies of 1 GeV and more also as GeV with two decimals),
dE/dx in MeV/cm with one decimal, vertices as ``(x, y, z) cm``. ``energy_forms`` and
``length_forms`` list the spellings a value can take. Physics numbers come from
shared/PHYSICS.md (through ``events.sim.medium`` where the simulator carries them).

Everything is deterministic given the ``numpy.random.Generator`` passed in; ``build_corpus``
seeds one generator per (seed, event index, kind).
"""
from larsight.events.vocabulary import (CLASS_TEXT, MICHEL_MAX_DIST_CM, MICHEL_MIN_VOXELS, MIN_VOXELS,
                                        PROTON_MIN_KE_MEV, PROTON_MIN_LENGTH_CM, SHOWER_MIN_MEV,
                                        TRACK_MIN_LENGTH_CM, EventFacts, InteractionFacts, NoTruthError,
                                        ParticleFacts, event_facts, parse_topology, topology_string)

from .build import KINDS, build_corpus
from .captions import CAPTION_PROMPT, CAPTION_PROMPTS, CAPTION_STYLES, MAX_DESCRIBED, caption_items, captions
from .classification import CLASS_LONG, CLASSIFY_PROMPT, classification_target, explain_class
from .definitions import DEFINITIONS
from .diversity import phrasing_diversity
from .io import read_jsonl, write_jsonl
from .qa import qa_items, qa_pairs
from .text import energy_forms, fmt_dedx, fmt_energy, fmt_length, fmt_vertex, length_forms
from .tool_traces import TOOL_NAMES, tool_call_text, tool_traces

__all__ = [
    "EventFacts", "InteractionFacts", "ParticleFacts", "NoTruthError", "event_facts",
    "topology_string", "parse_topology", "captions", "caption_items", "qa_pairs", "qa_items",
    "classification_target", "explain_class", "tool_traces", "tool_call_text", "build_corpus",
    "write_jsonl", "read_jsonl", "phrasing_diversity", "energy_forms", "length_forms",
    "fmt_energy", "fmt_length", "fmt_vertex", "fmt_dedx", "CLASS_TEXT", "CLASS_LONG",
    "CLASSIFY_PROMPT", "CAPTION_PROMPT", "CAPTION_PROMPTS", "TOOL_NAMES", "KINDS", "DEFINITIONS",
    "MIN_VOXELS", "PROTON_MIN_KE_MEV", "PROTON_MIN_LENGTH_CM", "TRACK_MIN_LENGTH_CM",
    "SHOWER_MIN_MEV", "MICHEL_MIN_VOXELS", "MICHEL_MAX_DIST_CM", "CAPTION_STYLES", "MAX_DESCRIBED",
]
