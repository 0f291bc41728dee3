"""Feedback out of the store: JSON lines with the full context, or DPO preference pairs.

    from larsight.agent.feedback import FeedbackStore, export
    report = export(FeedbackStore(), "prefs.jsonl", fmt="dpo")    # ExportReport: pairs, skipped

``dpo``: one JSON object a line, ``{"prompt", "chosen", "rejected", "kind", ...}`` (the
``prompt`` / ``chosen`` / ``rejected`` fields TRL's DPOTrainer reads). The pairs are the language
model's OWN text (``AnswerRecord.model_texts``), never the whole answer: most of an answer is
rendered by code from the tools' typed claims, and training the VLM on those words would teach it
nothing it wrote. ``prompt`` is the prompt the model wrote its first draft from, as stored
(``qformer.corpus.explain_schema.explain_prompt`` for the VLM). Three sources:

- ``model_correction``: an item whose corrections blame the model (``models.blame_of``: its own
  words said what the observations did not): chosen is the first-draft text with those
  corrections applied (``feedback.model_chosen``, written once when the item is stored), rejected
  the first draft as the model wrote it. Corrections that blame a tool (the model copied the
  measurement faithfully; the tool was off the truth) are not VLM training data: they are counted
  in ``ExportReport.tool_errors`` and kept in the ``jsonl`` export for the perception models;
- ``ranking``: an item that ranks its answer better than another answer to the same question
  (``better_than``), both with a first-draft model text from the same prompt: chosen is its
  answer's first-draft text, rejected the other's;
- ``verdict``: first-draft texts from one prompt, one answer thumbed up and one thumbed down,
  from items with nothing else to say (at most ``MAX_VERDICT_PAIRS`` per question).

``jsonl``: every item, one a line: ``{"feedback": {...}, "answer": {...}}`` with the full context
(question, event, tools with inputs and outputs, claim table, model versions, the prompt, the
model's texts with their prompts and claim tables); each correction carries its ``blame``; the
feedback carries ``chosen`` (the whole answer as corrected, for review) and ``model_chosen``.

Every ``dpo`` pair also names its ``event`` (the reference the preference stage re-loads for the
event tokens), ``question``, ``answer_id``, ``feedback_id`` and ``author``.

The lines are built by the database (SQLite's and MySQL's ``json_object``, PostgreSQL's
``json_build_object``; other databases: in Python), so that 100k items export in seconds
(evals/reports/feedback_bench.md). The file is written beside ``out`` and renamed over it when
complete, so a failure leaves an earlier export intact. ``mark_exported`` then moves the exported
items from new / reviewed to 'exported' in one transaction.
"""
from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, Field
from sqlalchemy import JSON, String, and_, case, cast, func, literal_column, select
from sqlalchemy.orm import aliased

from larsight.events.formats.atomic import atomic_open

from .models import STATUSES, FeedbackInputError
from .tables import AnswerRow, FeedbackRow

__all__ = ["export", "ExportReport", "FORMATS", "MAX_VERDICT_PAIRS"]

FORMATS = ("dpo", "jsonl")
MAX_VERDICT_PAIRS = 4
BATCH = 5000
_OBJECT = {"sqlite": "json_object", "mysql": "json_object", "mariadb": "json_object",
           "postgresql": "json_build_object"}


class ExportReport(BaseModel):
    """What an export wrote."""

    path: str
    format: str
    items: int = Field(0, description="feedback items read")
    lines: int = Field(0, description="lines written (pairs for dpo, items for jsonl)")
    pairs_by_kind: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict, description="items that gave no pair, by reason")
    tool_errors: int = Field(0, description="corrections that blame a tool (not VLM training data; kept in "
                             "the jsonl export)")
    marked: int = Field(0, description="items moved to status 'exported'")
    seconds: float = 0.0


# ============================================================================ JSON built by the database
class _Raw:
    """A text column that already holds JSON (embedded as JSON, not as a string)."""

    def __init__(self, col):
        self.col = col


def _sql_object(dialect: str, spec: list[tuple[str, Any]]):
    name = _OBJECT[dialect]
    args: list = []
    for key, value in spec:
        if isinstance(value, list):
            value = _sql_object(dialect, value)
        elif isinstance(value, _Raw):
            value = func.json(value.col) if dialect == "sqlite" else cast(value.col, JSON)
        args += [literal_column(f"'{key}'"), value]
    return getattr(func, name)(*args)


def _leaves(spec: list[tuple[str, Any]]) -> list:
    out = []
    for _key, value in spec:
        out += _leaves(value) if isinstance(value, list) else [value.col if isinstance(value, _Raw) else value]
    return out


def _py_object(spec: list[tuple[str, Any]], values: list) -> dict:
    out = {}
    for key, value in spec:
        if isinstance(value, list):
            out[key] = _py_object(value, values)
        else:
            v = values.pop(0)
            out[key] = json.loads(v) if isinstance(value, _Raw) and v is not None else v
    return out


def _write_lines(conn, fh, spec, joins, where) -> list[int]:
    """Write one JSON line per row of ``feedback`` (joined and filtered as given); returns the
    feedback ids written."""
    dialect = conn.dialect.name
    sql_json = dialect in _OBJECT
    q = select(FeedbackRow.id, _sql_object(dialect, spec)) if sql_json else select(FeedbackRow.id, *_leaves(spec))
    q = joins(q.select_from(FeedbackRow)).where(*where).order_by(FeedbackRow.id)
    ids: list[int] = []
    if sql_json:
        # (id, line) rows straight from the driver's cursor: SQLAlchemy's row objects would cost
        # more than the database's work here
        compiled = q.compile(dialect=conn.dialect)
        cur = conn.connection.cursor()
        try:
            cur.execute(str(compiled), compiled.positiontup and tuple(compiled.params[k] for k in compiled.positiontup)
                        or compiled.params)
            while part := cur.fetchmany(BATCH):
                fh.write("".join(f"{line if isinstance(line, str) else json.dumps(line)}\n" for _i, line in part))
                ids += [r[0] for r in part]
        finally:
            cur.close()
        return ids
    for part in conn.execution_options(yield_per=BATCH).execute(q).partitions():
        fh.write("".join(json.dumps(_py_object(spec, list(r[1:])), default=str) + "\n" for r in part))
        ids += [r[0] for r in part]
    return ids


# ============================================================================ the two formats
def _status(status: Optional[str]) -> list:
    return [FeedbackRow.status == status] if status is not None else []


def _jsonl(conn, fh, status: Optional[str]) -> list[int]:
    f, a = FeedbackRow, AnswerRow
    spec = [("feedback", [("id", f.id), ("answer_id", f.answer_id), ("verdict", f.verdict),
                          ("corrections", _Raw(f.corrections_json)), ("comment", f.comment), ("author", f.author),
                          ("better_than", f.better_than), ("chosen", f.chosen), ("model_chosen", f.model_chosen),
                          ("status", f.status), ("source", f.source),
                          ("created", cast(f.created, String)),
                          ("updated", cast(f.updated, String))]),
            ("answer", [("id", a.id), ("created", cast(a.created, String)), ("event", a.event),
                        ("question", a.question), ("text", a.text), ("claims", _Raw(a.claims_json)),
                        ("tools", _Raw(a.tools_json)), ("event_class", a.event_class),
                        ("class_probabilities", _Raw(a.probabilities_json)), ("brain", a.brain),
                        ("thread_id", a.thread_id), ("models", _Raw(a.models_json)), ("prompt", a.prompt),
                        ("model_texts", _Raw(a.model_texts_json))])]
    return _write_lines(conn, fh, spec, lambda q: q.join(a, a.id == f.answer_id), _status(status))


def _pair_spec(kind: str, chosen, rejected, extra: list) -> list:
    f, a = FeedbackRow, AnswerRow
    return [("prompt", a.draft_prompt), ("chosen", chosen), ("rejected", rejected),
            ("kind", literal_column(f"'{kind}'")), ("feedback_id", f.id), ("answer_id", f.answer_id), *extra,
            ("event", a.event), ("question", a.question), ("author", f.author)]


def _occurrences(col, pattern: str):
    """How many times ``pattern`` occurs in the text column ``col`` (portable SQL)."""
    return (func.length(col) - func.length(func.replace(col, pattern, ""))) / len(pattern)


TOOL_BLAME, MODEL_BLAME = '"blame": "tool"', '"blame": "model"'


def _dpo(conn, fh, status: Optional[str]) -> tuple[dict, dict, list[int], int]:
    """(pairs by kind, skipped items by reason, feedback ids used, tool-blamed corrections)."""
    f, a, b = FeedbackRow, AnswerRow, aliased(AnswerRow)
    st = _status(status)
    on_a = lambda q: q.join(a, a.id == f.answer_id)  # noqa: E731
    kinds, skipped = {}, {}
    used = _write_lines(conn, fh, _pair_spec("model_correction", f.model_chosen, a.draft_text, []), on_a,
                        [f.model_chosen.is_not(None), a.draft_text.is_not(None), *st])
    kinds["model_correction"] = len(used)
    count = lambda *w: int(conn.execute(select(func.count()).select_from(f).join(a, a.id == f.answer_id)  # noqa: E731
                                        .where(*w, *st)).scalar() or 0)
    n = count(f.model_chosen.is_(None), f.corrections_json.contains(MODEL_BLAME))
    if n:
        skipped["model errors without a pair (made in a revision, or the observations contradict the "
                "expert's value too: the tool was off as well)"] = n
    tool_errors = int(conn.execute(select(func.coalesce(func.sum(_occurrences(f.corrections_json, TOOL_BLAME)), 0))
                                   .where(*st)).scalar() or 0)
    n = count(f.corrections_json.contains(TOOL_BLAME), f.corrections_json.not_like(f"%{MODEL_BLAME}%"))
    if n:
        skipped["corrections of tool errors only (kept in the jsonl export)"] = n
    both = lambda q: q.join(a, a.id == f.answer_id).join(b, b.id == f.better_than)  # noqa: E731
    same = [a.draft_text.is_not(None), b.draft_text.is_not(None), a.draft_prompt == b.draft_prompt,
            a.draft_text != b.draft_text]
    ids = _write_lines(conn, fh, _pair_spec("ranking", a.draft_text, b.draft_text,
                                            [("rejected_answer_id", f.better_than)]),
                       both, [f.better_than.is_not(None), a.question == b.question, *same, *st])
    kinds["ranking"], used = len(ids), used + ids
    n_ranked = conn.execute(select(func.count()).select_from(f).where(f.better_than.is_not(None), *st)).scalar()
    if n_ranked - len(ids):
        skipped["ranked answers without model texts from one prompt"] = int(n_ranked - len(ids))
    kinds["verdict"], lone = _verdict_pairs(conn, fh, st, used)
    if lone:
        skipped["thumbs without an opposite verdict on a model text from the same prompt"] = lone
    n = count(f.corrections_json == "[]", f.better_than.is_(None), f.verdict.is_(None))
    if n:
        skipped["no correction, no ranking, no verdict"] = n
    return {k: v for k, v in kinds.items() if v}, skipped, used, tool_errors


def _verdict_pairs(conn, fh, st: list, used: list[int]) -> tuple[int, int]:
    """Thumbs up vs thumbs down on first-draft model texts from the same prompt, from items with
    nothing else: (pairs written, thumbs left without a pair). The database finds the prompts
    that have both; only their items come to Python."""
    f, a = FeedbackRow, AnswerRow
    thumbs = [f.corrections_json == "[]", f.better_than.is_(None), f.verdict.is_not(None), *st]
    mine = [*thumbs, a.draft_text.is_not(None)]
    n_up, n_down = (func.sum(case((f.verdict == v, 1), else_=0)) for v in ("up", "down"))
    mixed = (select(a.draft_prompt).select_from(f).join(a, a.id == f.answer_id).where(*mine)
             .group_by(a.draft_prompt).having(and_(n_up > 0, n_down > 0)).subquery())
    q = (select(f.id, f.answer_id, f.verdict, a.event, a.question, a.draft_prompt, a.draft_text, f.author)
         .join(a, a.id == f.answer_id).join(mixed, mixed.c.draft_prompt == a.draft_prompt)
         .where(*mine).order_by(f.id))
    groups: dict[str, dict[str, list]] = defaultdict(lambda: {"up": [], "down": []})
    for r in conn.execute(q):
        groups[r.draft_prompt][r.verdict].append(r)
    pairs = []
    for v in groups.values():
        pairs += [(u, d) for u in v["up"] for d in v["down"] if u.draft_text != d.draft_text][:MAX_VERDICT_PAIRS]
    for up, down in pairs:
        fh.write(json.dumps({"prompt": up.draft_prompt, "chosen": up.draft_text, "rejected": down.draft_text,
                             "kind": "verdict", "feedback_id": up.id, "rejected_feedback_id": down.id,
                             "answer_id": up.answer_id, "rejected_answer_id": down.answer_id, "event": up.event,
                             "question": up.question, "author": up.author}, ensure_ascii=False) + "\n")
        used += [up.id, down.id]
    n_thumbs = conn.execute(select(func.count()).select_from(f).where(*thumbs)).scalar()
    paired = {x.id for p in pairs for x in p}
    return len(pairs), int(n_thumbs) - len(paired)


def _check_out(out: Union[str, os.PathLike]) -> Path:
    path = Path(out).expanduser()
    if path.is_dir():
        raise FeedbackInputError(f"--out {out} is a folder; give a file name")
    if not path.parent.is_dir():
        raise FeedbackInputError(f"--out {out}: the folder {path.parent} does not exist")
    return path


def export(store, out: Union[str, os.PathLike], fmt: Literal["dpo", "jsonl"] = "dpo",
           status: Optional[str] = None, mark_exported: bool = False) -> ExportReport:
    """Write the store's feedback to ``out`` (see the module docstring); returns what it wrote."""
    if fmt not in FORMATS:
        raise FeedbackInputError(f"unknown export format {fmt!r}: use dpo or jsonl")
    if status is not None and status not in STATUSES:
        raise FeedbackInputError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    path = _check_out(out)
    t0 = time.perf_counter()
    kinds: dict = {}
    skipped: dict = {}
    # written beside ``path`` and renamed over it when complete (events.formats.atomic)
    with atomic_open(path, "w", encoding="utf-8") as fh, store._read() as conn:
        items = conn.execute(select(func.count()).select_from(FeedbackRow).where(*_status(status))).scalar()
        tool_errors = 0
        if fmt == "jsonl":
            used = _jsonl(conn, fh, status)
        else:
            kinds, skipped, used, tool_errors = _dpo(conn, fh, status)
    report = ExportReport(path=str(path), format=fmt, items=int(items),
                          lines=len(used) if fmt == "jsonl" else sum(kinds.values()),
                          pairs_by_kind=kinds, skipped=skipped, tool_errors=tool_errors if fmt == "dpo" else 0)
    if mark_exported and used:
        ids = sorted(set(used))
        with store._write("marked exported") as conn:
            store.mark_exported(conn, ids)
        report.marked = len(ids)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
