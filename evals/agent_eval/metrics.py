"""Metrics of an agent run from its scored records (one record per case and trial).

- answer accuracy, overall and per tag: the share of (case, trial) pairs whose every turn's
  answer is right (``scoring``); faithful accuracy counts also the wrong answers that state
  exactly what a tool measured (the tool's error, not the agent's): what the agent controls;
- pass^k (tau-bench): per case with n trials of which c passed, C(c, k) / C(n, k), the chance
  that k trials drawn from its n all pass, averaged over cases; pass^1 is the mean pass rate;
- tool-selection accuracy, trajectory match, argument correctness: over turns that name a
  reference (resp. expected arguments);
- claims: supported / contradicted / unverifiable over all claims of all final answers; the
  contradiction rate is contradicted / all claims, and the share of answers with at least one
  contradicted claim is given beside it; the first-draft contradiction rate is the share of the
  claims of the first drafts (before any revision by the validator) that the validator rejected;
- irrelevance handling: turns that expect no tool call and made none / such turns;
- steps (graph nodes and tool calls per turn) and latency p50 / p95 (seconds per turn, first
  trial only: later trials reuse the tool results of the first);
- per expected kind (``event_class``, ``vertex_cm``, ``counts`` ...): the share of turns, in
  any case, whose check of that kind holds (multi-turn and adversarial turns included);
- failures grouped by cause (``scoring.CAUSES``), with example case ids.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any, Iterable, Optional

__all__ = ["summarize", "pass_hat_k", "percentile"]


def percentile(xs: Iterable[float], q: float) -> Optional[float]:
    """The q-quantile (0..1) by the nearest-rank method; None for no data."""
    xs = sorted(float(x) for x in xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(math.ceil(q * len(xs))) - 1))
    return xs[k]


def pass_hat_k(n: int, c: int, k: int) -> Optional[float]:
    """C(c, k) / C(n, k): all of k trials drawn from n (c of which passed) pass."""
    if k < 1 or n < k:
        return None
    return math.comb(c, k) / math.comb(n, k)


def _mean(xs: list) -> Optional[float]:
    xs = [float(x) for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _round(x: Any, nd: int = 4) -> Any:
    return round(x, nd) if isinstance(x, float) else x


def _tool_caused(r: dict) -> bool:
    """A wrong answer that states exactly what a tool measured (or the tool measured nothing)."""
    cause = r["score"].get("cause") or ""
    return cause.startswith(("measurement:", "no_measurement:"))


def summarize(records: list[dict], k: int) -> dict:
    """The metrics of a run (see the module docstring). ``records``: scored records with
    ``case``, ``trial``, ``tags``, ``turns`` (turn records) and ``score`` (``score_case``)."""
    by_case: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_case[r["case"]].append(r)
    tags_of = {cid: rs[0].get("tags") or [] for cid, rs in by_case.items()}
    all_ids = sorted(by_case)
    tags = sorted({t for ts in tags_of.values() for t in ts})
    per_tag = {t: _block(by_case, [c for c in all_ids if t in tags_of[c]], k) for t in tags}
    rows = _turn_rows(records)
    overall = _block(by_case, all_ids, k)
    overall.update(_turn_metrics(records, rows))
    p_tool = _p_tool_call(rows)
    if p_tool:
        overall["p_tool_call"] = p_tool
    overall["selection_misses"] = _selection_misses(records)
    complete = sum(len(by_case[c]) >= k for c in all_ids)
    return {"k": k, "overall": overall, "per_tag": per_tag, "per_kind": _per_kind(rows),
            "failures": _failures(records), "complete_cases": complete}


def _turn_rows(rs: list[dict]) -> list[tuple[dict, dict]]:
    """(turn record, turn score) of every turn of the records."""
    return [(t, s) for r in rs for t, s in zip(r.get("turns") or [], r["score"]["turns"])]


def _pass_k(by_case: dict[str, list[dict]], cids: list[str], k: int) -> dict[str, Optional[float]]:
    out = {}
    for j in range(1, k + 1):
        vals = [pass_hat_k(len(by_case[c]), sum(bool(r["score"]["passed"]) for r in by_case[c]), j)
                for c in cids]
        out[f"pass^{j}"] = _round(_mean([v for v in vals if v is not None]))
    return out


def _block(by_case: dict[str, list[dict]], cids: list[str], k: int) -> dict:
    """Accuracy, pass^k, tool selection, latency and failure causes of the cases ``cids``."""
    rs = [r for c in cids for r in by_case[c]]
    rows = _turn_rows(rs)
    return {
        "cases": len(cids), "trials": len(rs),
        "answer_accuracy": _round(_mean([r["score"]["answer_ok"] for r in rs])),
        "faithful_accuracy": _round(_mean([r["score"]["answer_ok"] or _tool_caused(r) for r in rs])),
        **_pass_k(by_case, cids, k),
        "tool_selection": _round(_mean([s["tool_ok"] for _, s in rows if s["tool_ok"] is not None])),
        "trajectory_match": _round(_mean([s["traj_ok"] for _, s in rows if s["traj_ok"] is not None])),
        "latency_p50_s": _round(percentile([t.get("latency_s", 0) for r in rs if r["trial"] == 0
                                            for t in r.get("turns") or []], 0.5), 3),
        "failure_causes": dict(Counter(r["score"].get("cause") or "?" for r in rs
                                       if not r["score"]["passed"]).most_common()),
    }


def _turn_metrics(records: list[dict], rows: list[tuple[dict, dict]]) -> dict:
    """The whole run's per-turn numbers: arguments, claims, irrelevant questions, steps, tool
    calls, latency, revisions and errors."""
    claims = Counter()
    for t, _ in rows:
        claims["supported"] += int(t.get("n_supported") or 0)
        claims["contradicted"] += int(t.get("n_contradicted") or 0)
        claims["unverifiable"] += int(t.get("n_unverifiable") or 0)
    n_claims = sum(claims.values())
    drafts = [t.get("first_draft") for t, _ in rows if t.get("first_draft") is not None]
    n_first = sum(int(d.get("n_claims") or 0) for d in drafts)
    bad_first = sum(int(d.get("n_contradicted") or 0) for d in drafts)
    irr = [not (t.get("trajectory") or []) for t, s in rows if s["checks"].get("no_tools") is not None]
    first = [t for r in records if r["trial"] == 0 for t in r.get("turns") or []]
    return {
        "turns": len(rows),
        "argument_correctness": _round(_mean([s["args_ok"] for _, s in rows if s["args_ok"] is not None])),
        "args_turns": sum(s["args_ok"] is not None for _, s in rows),
        "claims": dict(claims), "n_claims": n_claims,
        "claim_support_rate": _round(claims["supported"] / n_claims) if n_claims else None,
        "contradiction_rate": _round(claims["contradicted"] / n_claims) if n_claims else None,
        "answers_with_contradiction": _round(_mean([s["contradicted"] for _, s in rows])),
        "first_draft_claims": n_first if drafts else None,
        "first_draft_contradiction_rate": _round(bad_first / n_first) if n_first else (0.0 if drafts else None),
        "irrelevant_without_tools": _round(_mean(irr)), "irrelevant_turns": len(irr),
        "steps_mean": _round(_mean([t.get("n_steps") for t, _ in rows]), 2),
        "steps_p95": percentile([t.get("n_steps") or 0 for t, _ in rows], 0.95),
        "tool_calls_mean": _round(_mean([len(t.get("trajectory") or []) for t, _ in rows]), 2),
        "tool_calls_p95": percentile([len(t.get("trajectory") or []) for t, _ in rows], 0.95),
        "latency_p50_s": _round(percentile([t.get("latency_s", 0) for t in first], 0.5), 3),
        "latency_p95_s": _round(percentile([t.get("latency_s", 0) for t in first], 0.95), 3),
        "latency_all_trials_p50_s": _round(percentile([t.get("latency_s", 0) for t, _ in rows], 0.5), 3),
        "latency_all_trials_p95_s": _round(percentile([t.get("latency_s", 0) for t, _ in rows], 0.95), 3),
        "revised_answers": sum(int(t.get("revisions") or 0) > 0 for t, _ in rows),
        "errors": sum(bool(t.get("error")) for t, _ in rows),
    }


def _p_tool_call(rows: list[tuple[dict, dict]]) -> Optional[dict]:
    """The VLM brain's probability that its reply starts a tool call (its tool threshold's
    margin), on event questions and on irrelevant ones; None for brains that do not report it."""
    p_event = [t["p_tool"] for t, s in rows if t.get("p_tool") is not None and s["checks"].get("no_tools") is None
               and s["tool_ok"] is not None]
    p_irr = [t["p_tool"] for t, s in rows if t.get("p_tool") is not None and s["checks"].get("no_tools") is not None]
    if not (p_event or p_irr):
        return None
    return {"event_questions_min": min(p_event) if p_event else None,
            "event_questions_p05": percentile(p_event, 0.05),
            "irrelevant_max": max(p_irr) if p_irr else None,
            "irrelevant_p95": percentile(p_irr, 0.95),
            "n_event": len(p_event), "n_irrelevant": len(p_irr)}


def _selection_misses(records: list[dict]) -> list[dict]:
    """The most frequent (question, expected first tool, tools called) of wrong first choices."""
    misses: Counter = Counter()
    for r in records:
        if r["trial"] != 0:
            continue
        for t, s in zip(r.get("turns") or [], r["score"]["turns"]):
            if s.get("tool_ok") is False:
                misses[(t.get("question", "?"), s.get("expected_tool") or "?",
                        " > ".join(t.get("trajectory") or []) or "(none)")] += 1
    return [{"question": q, "expected": e, "chosen": c, "cases": n} for (q, e, c), n in misses.most_common(15)]


def _per_kind(rows: list[tuple[dict, dict]]) -> dict:
    kinds: dict[str, list[bool]] = defaultdict(list)
    for _, s in rows:
        for kind, ok in s["checks"].items():
            kinds[kind].append(ok is True)
    return {kind: {"turns": len(v), "accuracy": _round(sum(v) / len(v))} for kind, v in sorted(kinds.items())}


def _failures(records: list[dict]) -> dict:
    """Failed trials by cause, most frequent first, with up to six ``case#trial`` examples."""
    causes: dict[str, list[str]] = defaultdict(list)
    for r in records:
        cause = r["score"].get("cause")
        if not r["score"]["passed"] and cause:
            causes[cause].append(f"{r['case']}#{r['trial']}")
    return {c: {"n": len(ids), "examples": ids[:6]}
            for c, ids in sorted(causes.items(), key=lambda kv: (-len(kv[1]), kv[0]))}
