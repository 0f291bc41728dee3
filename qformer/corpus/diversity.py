"""How varied a corpus's phrasing is: distinct texts, templates and n-gram ratios per kind."""
from __future__ import annotations

from typing import Any, Sequence


def _ngrams(tokens: list[str], n: int):
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def phrasing_diversity(records: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """Per kind (and 'all'): number of records, distinct targets and prompts, distinct templates,
    and distinct-n ratios (distinct n-grams / all n-grams of the targets, n = 1, 2, 3)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r.get("kind", "?"), []).append(r)
    groups["all"] = list(records)
    out = {}
    for kind, recs in groups.items():
        toks = [str(r.get("target", "")).lower().split() for r in recs]
        d = {"n": len(recs), "distinct_targets": len({r.get("target") for r in recs}),
             "distinct_prompts": len({r.get("prompt") for r in recs}),
             "templates": len({r.get("template") for r in recs if r.get("template") is not None})}
        for n in (1, 2, 3):
            grams = [g for t in toks for g in _ngrams(t, n)]
            d[f"distinct_{n}"] = round(len(set(grams)) / len(grams), 4) if grams else 0.0
        out[kind] = d
    return out
