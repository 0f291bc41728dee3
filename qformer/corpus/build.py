"""``build_corpus``: records of every kind for a set of events, reproducibly seeded."""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from larsight.events.model import Event
from larsight.events.vocabulary import EventFacts, NoTruthError, event_facts

from .captions import CAPTION_PROMPTS, caption_items
from .classification import classification_target
from .qa import qa_items
from .text import pick
from .tool_traces import tool_call_text, tool_traces

KINDS = ("caption", "qa", "classify", "tool")


def build_corpus(events_or_iterable: Iterable[Event] | Event, seed: int = 0,
                 kinds: Sequence[str] = KINDS, captions_per_event: int = 2,
                 qa_per_event: Optional[int] = 6, tools_per_event: Optional[int] = 3,
                 skip_untruthed: bool = False) -> list[dict]:
    """Records ``{kind, event_id, prompt, target, template}`` (tool records add ``tool`` and
    ``arguments``) for events (or their ``EventFacts``). One generator per (seed, event index,
    kind), so the records of an event do not depend on the others or on which kinds are asked.
    ``qa_per_event`` / ``tools_per_event``: how many to draw (None: all). Events without a class
    give no 'classify' record; events without truth raise ``NoTruthError`` unless
    ``skip_untruthed``."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"build_corpus: unknown kinds {bad}; choose from {KINDS}")
    if isinstance(events_or_iterable, (Event, EventFacts)):
        events_or_iterable = [events_or_iterable]
    records: list[dict] = []
    for index, ev in enumerate(events_or_iterable):
        if isinstance(ev, EventFacts):
            facts = ev
        else:
            try:
                facts = event_facts(ev)
            except NoTruthError:
                if skip_untruthed:
                    continue
                raise
        eid = facts.event_id if facts.event_id is not None else index
        for kind in kinds:
            rng = np.random.default_rng([int(seed), index, KINDS.index(kind)])
            if kind == "caption":
                for c in caption_items(facts, rng, captions_per_event):
                    records.append(dict(kind=kind, event_id=eid, prompt=pick(rng, CAPTION_PROMPTS),
                                        target=c["text"], template=c["template"]))
            elif kind == "qa":
                items = qa_items(facts, rng)
                if qa_per_event is not None and len(items) > qa_per_event:
                    items = [items[int(i)] for i in sorted(rng.choice(len(items), qa_per_event, replace=False))]
                for d in items:
                    records.append(dict(kind=kind, event_id=eid, prompt=d["question"], target=d["answer"],
                                        template=d["topic"]))
            elif kind == "classify":
                if facts.main is None or facts.main.event_class is None:
                    continue
                p, a = classification_target(facts, rng)
                records.append(dict(kind=kind, event_id=eid, prompt=p, target=a,
                                    template=f"classify-{facts.main.event_class}"))
            else:
                tr = tool_traces(facts, rng)
                if tools_per_event is not None and len(tr) > tools_per_event:
                    tr = [tr[int(i)] for i in sorted(rng.choice(len(tr), tools_per_event, replace=False))]
                for t in tr:
                    records.append(dict(kind=kind, event_id=eid, prompt=t["question"], target=tool_call_text(t),
                                        template=f"tool-{t['tool'] or 'none'}", tool=t["tool"],
                                        arguments=t["arguments"]))
    return records
