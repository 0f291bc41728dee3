"""Feedback out of the store: JSON lines with the full context, or DPO preference pairs.

    from larsight.agent.feedback import FeedbackStore, export
    report = export(FeedbackStore(), "prefs.jsonl", fmt="dpo")    # ExportReport: pairs, skipped

``dpo``: one JSON object a line, ``{"prompt", "chosen", "rejected", "kind", ...}`` (the
``prompt`` / ``chosen`` / ``rejected`` fields TRL's DPOTrainer reads), from three sources:

- ``correction``: an item that marks claims wrong or gives their right value: chosen is the
  answer rewritten from the corrected claims (``render.corrected_text``, written once when the
  item is stored), rejected the original;
- ``ranking``: an item that ranks its answer better than another answer to the same question
  (``better_than``): chosen is its answer, rejected the other;
- ``verdict``: answers to the same question about the same event, one thumbed up and one thumbed
  down, from items with nothing else to say (at most ``MAX_VERDICT_PAIRS`` per question).

``jsonl``: every item, one a line: ``{"feedback": {...}, "answer": {...}}`` with the full context
(question, event, tools with inputs and outputs, claim table, model versions, the prompt).

Every ``dpo`` pair also carries what rebuilds the VLM's input for it without the database
(``larsight align --stage prefs`` reads these files): ``event`` (the event reference), ``question``
and ``tools`` (the chosen answer's tool calls with their outputs, as stored).

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
                          ("better_than", f.better_than), ("status", f.status), ("source", f.source),
                          ("created", cast(f.created, String)),
                          ("updated", cast(f.updated, String))]),
            ("answer", [("id", a.id), ("created", cast(a.created, String)), ("event", a.event),
                        ("question", a.question), ("text", a.text), ("claims", _Raw(a.claims_json)),
                        ("tools", _Raw(a.tools_json)), ("event_class", a.event_class),
                        ("class_probabilities", _Raw(a.probabilities_json)), ("brain", a.brain),
                        ("thread_id", a.thread_id), ("models", _Raw(a.models_json)), ("prompt", a.prompt)])]
    return _write_lines(conn, fh, spec, lambda q: q.join(a, a.id == f.answer_id), _status(status))


def _pair_spec(kind: str, chosen, rejected, extra: list) -> list:
    f, a = FeedbackRow, AnswerRow
    return [("prompt", a.prompt), ("chosen", chosen), ("rejected", rejected), ("kind", literal_column(f"'{kind}'")),
            ("feedback_id", f.id), ("answer_id", f.answer_id), *extra, ("event", a.event),
            ("question", a.question), ("author", f.author), ("tools", _Raw(a.tools_json))]


def _dpo(conn, fh, status: Optional[str]) -> tuple[dict, dict, list[int]]:
    f, a, b = FeedbackRow, AnswerRow, aliased(AnswerRow)
    st = _status(status)
    on_a = lambda q: q.join(a, a.id == f.answer_id)  # noqa: E731
    kinds, skipped = {}, {}
    used = _write_lines(conn, fh, _pair_spec("correction", f.chosen, a.text, []), on_a, [f.chosen.is_not(None), *st])
    kinds["correction"] = len(used)
    both = lambda q: q.join(a, a.id == f.answer_id).join(b, b.id == f.better_than)  # noqa: E731
    ids = _write_lines(conn, fh, _pair_spec("ranking", a.text, b.text, [("rejected_answer_id", f.better_than)]),
                       both, [f.better_than.is_not(None), a.question == b.question, *st])
    kinds["ranking"], used = len(ids), used + ids
    n_ranked = conn.execute(select(func.count()).select_from(f).where(f.better_than.is_not(None), *st)).scalar()
    if n_ranked - len(ids):
        skipped["ranked answers to different questions"] = int(n_ranked - len(ids))
    kinds["verdict"], lone = _verdict_pairs(conn, fh, st, used)
    if lone:
        skipped["thumbs without an opposite verdict on the same question"] = lone
    none = conn.execute(select(func.count()).select_from(f).where(
        f.chosen.is_(None), f.better_than.is_(None), f.verdict.is_(None), *st)).scalar()
    if none:
        skipped["no correction that changes the answer, no ranking, no verdict"] = int(none)
    return {k: v for k, v in kinds.items() if v}, skipped, used


def _verdict_pairs(conn, fh, st: list, used: list[int]) -> tuple[int, int]:
    """Thumbs up vs thumbs down on the same question and event, from items with nothing else:
    (pairs written, thumbs left without a pair). The database finds the questions that have
    both; only their items come to Python."""
    f, a = FeedbackRow, AnswerRow
    thumbs = [f.chosen.is_(None), f.better_than.is_(None), f.verdict.is_not(None), *st]
    n_up, n_down = (func.sum(case((f.verdict == v, 1), else_=0)) for v in ("up", "down"))
    mixed = (select(a.event, a.question).select_from(f).join(a, a.id == f.answer_id).where(*thumbs)
             .group_by(a.event, a.question).having(and_(n_up > 0, n_down > 0)).subquery())
    q = (select(f.id, f.answer_id, f.verdict, a.event, a.question, f.author).join(a, a.id == f.answer_id)
         .join(mixed, and_(mixed.c.event == a.event, mixed.c.question == a.question)).where(*thumbs).order_by(f.id))
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: {"up": [], "down": []})
    for r in conn.execute(q):
        groups[(r.event, r.question)][r.verdict].append(r)
    pairs, in_groups = [], 0
    for v in groups.values():
        pairs += [(u, d) for u in v["up"] for d in v["down"] if u.answer_id != d.answer_id][:MAX_VERDICT_PAIRS]
        in_groups += len(v["up"]) + len(v["down"])
    need = sorted({x.answer_id for p in pairs for x in p})
    texts: dict[str, tuple[str, str, str]] = {}
    for i in range(0, len(need), 900):
        rows = conn.execute(select(a.id, a.text, a.prompt, a.tools_json).where(a.id.in_(need[i:i + 900])))
        texts.update({r[0]: (r[1], r[2], r[3]) for r in rows})
    for up, down in pairs:
        fh.write(json.dumps({"prompt": texts[up.answer_id][1], "chosen": texts[up.answer_id][0],
                             "rejected": texts[down.answer_id][0], "kind": "verdict", "feedback_id": up.id,
                             "rejected_feedback_id": down.id, "answer_id": up.answer_id,
                             "rejected_answer_id": down.answer_id, "event": up.event, "question": up.question,
                             "author": up.author, "tools": json.loads(texts[up.answer_id][2] or "[]")},
                            ensure_ascii=False) + "\n")
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
        if fmt == "jsonl":
            used = _jsonl(conn, fh, status)
        else:
            kinds, skipped, used = _dpo(conn, fh, status)
    report = ExportReport(path=str(path), format=fmt, items=int(items),
                          lines=len(used) if fmt == "jsonl" else sum(kinds.values()),
                          pairs_by_kind=kinds, skipped=skipped)
    if mark_exported and used:
        ids = sorted(set(used))
        with store._write("marked exported") as conn:
            store.mark_exported(conn, ids)
        report.marked = len(ids)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
