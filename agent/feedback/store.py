"""The feedback store: answers and experts' feedback on them in a real database.

    from larsight.agent.feedback import FeedbackStore
    store = FeedbackStore()                                   # SQLite beside the conversations
    aid = store.record_answer(answer)                         # an agent.Answer, with its context
    fid = store.add({"answer_id": aid, "verdict": "down", "author": "kt",
                     "corrections": [{"claim": 0, "mark": "should_be", "label": "photon"}]})
    store.list(status="new", limit=20); store.get(fid); store.set_status([fid], "reviewed")

Where: ``FeedbackStore(target)`` takes a SQLAlchemy URL (``postgresql+psycopg://...`` for a
shared lab server) or a file path (SQLite); without one, ``$LARSIGHT_FEEDBACK_DB``, else
``feedback.sqlite`` in the folder of the conversation checkpointer (``$LARSIGHT_AGENT_DB``'s
folder, else ``~/.cache/larsight/``, where ``agent_threads.sqlite`` lives).

Every write is one transaction: a batch with one bad item writes nothing. A locked or read-only
database, an unknown answer, a correction that does not fit its claim: one clear message
(``FeedbackDatabaseError`` / ``FeedbackInputError``), nothing half-written.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, inspect, select, update
from sqlalchemy.engine import Connection, make_url

from .models import (STATUSES, AnswerRecord, Correction, FeedbackIn, FeedbackInputError, FeedbackItem,
                     ModelText, blame_of, check_correction, claim_table, observed_verdict, record_from_answer)
from .render import corrected_text, prompt_text
from .tables import ADDED_COLUMNS, AnswerRow, Base, FeedbackRow, make_engine

__all__ = ["FeedbackStore", "FeedbackDatabaseError", "FeedbackSummary", "default_feedback_target",
           "to_url"]

Target = Union[str, os.PathLike, None]
CHUNK = 900
"""Ids per IN (...) query (under SQLite's bound-parameter limit)."""


class FeedbackDatabaseError(OSError):
    """The database cannot be used as asked (locked, read-only, missing, not a database)."""


class FeedbackSummary(BaseModel):
    """One row of ``FeedbackStore.list``."""

    id: int
    created: datetime
    status: str
    verdict: Optional[str]
    n_corrections: int
    author: str
    comment: str
    answer_id: str
    event: Optional[str]
    question: str


def default_feedback_target() -> str:
    """``$LARSIGHT_FEEDBACK_DB``, else ``feedback.sqlite`` beside the conversation checkpointer."""
    env = os.environ.get("LARSIGHT_FEEDBACK_DB")
    if env:
        return env
    agent_db = os.environ.get("LARSIGHT_AGENT_DB")
    folder = Path(agent_db).parent if agent_db else \
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "larsight"
    return str(folder / "feedback.sqlite")


def to_url(target: Target, read_only: bool = False) -> str:
    """A SQLAlchemy URL for a URL or a SQLite file path."""
    s = os.fspath(target) if target is not None else default_feedback_target()
    if "://" in s:
        return s
    path = Path(s).expanduser().resolve()
    return f"sqlite:///file:{path}?mode=ro&uri=true" if read_only else f"sqlite:///{path}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


class FeedbackStore:
    """Answers and feedback in SQLite (default) or any SQLAlchemy database; see the module doc.

    ``busy_timeout_s``: how long a write waits for another writer's lock before it gives up;
    ``read_only``: open for review only (SQLite opened with mode=ro)."""

    def __init__(self, target: Target = None, *, busy_timeout_s: float = 30.0, read_only: bool = False):
        self.url = to_url(target, read_only)
        self.read_only = read_only
        self.busy_timeout_s = busy_timeout_s
        url = make_url(self.url)
        self.where = url.render_as_string(hide_password=True) if url.get_backend_name() != "sqlite" \
            else str(url.database).removeprefix("file:")
        if url.get_backend_name() == "sqlite" and not read_only:
            folder = Path(self.where).parent
            if target is None and os.environ.get("LARSIGHT_FEEDBACK_DB") is None:
                folder.mkdir(parents=True, exist_ok=True)
            elif not folder.is_dir():
                raise FeedbackDatabaseError(f"the feedback database {self.where}: its folder {folder} does not exist")
        self.engine = make_engine(self.url, busy_timeout_s, read_only)
        self._ensure_schema()

    def __repr__(self) -> str:
        return f"FeedbackStore({self.where!r}{', read-only' if self.read_only else ''})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- plumbing
    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (FeedbackInputError, FeedbackDatabaseError):
            raise
        except sa_exc.DBAPIError as e:
            msg = " ".join(str(e.orig).split())
            low = msg.lower()
            if "locked" in low or "busy" in low:
                raise FeedbackDatabaseError(
                    f"the feedback database {self.where} is locked by another writer (waited "
                    f"{self.busy_timeout_s:g} s); nothing was {doing}: try again") from None
            if "readonly" in low or "read-only" in low or "read only" in low:
                raise FeedbackDatabaseError(f"the feedback database {self.where} is read-only; "
                                            f"nothing was {doing}") from None
            if "unable to open" in low:
                raise FeedbackDatabaseError(f"cannot open the feedback database {self.where} "
                                            f"(missing, or its folder is not writable)") from None
            raise FeedbackDatabaseError(f"the feedback database {self.where}: {msg}; nothing was {doing}") from None

    @contextmanager
    def _write(self, doing: str = "written") -> Iterator[Connection]:
        if self.read_only:
            raise FeedbackDatabaseError(f"the feedback database {self.where} was opened read-only; "
                                        f"nothing was {doing}")
        with self._errors(doing), self.engine.connect() as conn:
            conn = conn.execution_options(larsight_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors("read"), self.engine.connect() as conn:
            with conn.begin():
                yield conn

    def _ensure_schema(self) -> None:
        if self.read_only:
            with self._errors("read"), self.engine.connect() as conn:
                missing = {"answers", "feedback"} - set(inspect(conn).get_table_names())
            if missing:
                raise FeedbackDatabaseError(f"{self.where} is not a feedback database (no table "
                                            f"{', '.join(sorted(missing))})")
            with self._errors("read"), self.engine.connect() as conn:
                if self._missing_columns(conn):
                    raise FeedbackDatabaseError(f"{self.where} was written by an older larsight (feedback "
                                                f"schema 1); open it once writable to upgrade it")
            return
        with self._errors("written"), self.engine.connect() as conn:
            conn = conn.execution_options(larsight_write=True)
            with conn.begin():
                # under the write lock: several processes opening a new file create it once, and
                # a database of an older schema gets its new columns once
                Base.metadata.create_all(conn)
                for table, name, sql_type, default in self._missing_columns(conn):
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"
                                         + (f" DEFAULT {default}" if default else ""))

    @staticmethod
    def _missing_columns(conn: Connection) -> list[tuple[str, str, str, Optional[str]]]:
        """(table, column, SQL type, default) of the columns that schema 2 added and the database lacks."""
        insp = inspect(conn)
        out = []
        for table, cols in ADDED_COLUMNS.items():
            have = {c["name"] for c in insp.get_columns(table)}
            out += [(table, name, t, d) for name, t, d in cols if name not in have]
        return out

    # ---------------------------------------------------------------- answers
    def record_answer(self, answer: Any, models: Optional[dict[str, str]] = None) -> str:
        """Store an answer (``agent.Answer``, its JSON, or an ``AnswerRecord``) with its context;
        returns its id. Recording the same answer again returns the same id."""
        rec = answer if isinstance(answer, AnswerRecord) else record_from_answer(answer, models)
        with self._write() as conn:
            self._insert_answers(conn, [rec])
        return rec.id

    def _existing(self, conn: Connection, ids: Iterable[str]) -> dict[str, tuple[str, str, str]]:
        """{answer id: (its claim table as JSON text, its text, its model texts as JSON text)} of the
        ``ids`` that are stored."""
        ids = sorted(set(ids))
        out: dict[str, tuple[str, str, str]] = {}
        a = AnswerRow
        for i in range(0, len(ids), CHUNK):
            q = select(a.id, a.claims_json, a.text, a.model_texts_json).where(a.id.in_(ids[i:i + CHUNK]))
            out.update({r[0]: (r[1], r[2], r[3] or "[]") for r in conn.execute(q)})
        return out

    def _insert_answers(self, conn: Connection, recs: list[AnswerRecord]) -> dict[str, tuple[str, str, str]]:
        """Insert the records not stored yet (one statement for all); returns ``_existing`` of all."""
        claims = self._existing(conn, [r.id for r in recs])
        new = {r.id: r for r in recs if r.id not in claims}
        if new:
            dumps = json.dumps
            rows = [dict(id=r.id, created=r.created, event=r.event, question=r.question, text=r.text,
                         claims_json=dumps(r.claims, default=str), tools_json=dumps(r.tools, default=str),
                         prompt=prompt_text(r), event_class=r.event_class,
                         probabilities_json=dumps(r.class_probabilities), brain=r.brain, thread_id=r.thread_id,
                         models_json=dumps(r.models), latency_s=None,
                         model_texts_json=dumps([m.model_dump(mode="json") for m in r.model_texts]),
                         draft_text=r.first_draft.text if r.first_draft else None,
                         draft_prompt=r.first_draft.prompt if r.first_draft else None) for r in new.values()]
            conn.execute(AnswerRow.__table__.insert(), rows)
            claims.update({r["id"]: (r["claims_json"], r["text"], r["model_texts_json"]) for r in rows})
        return claims

    def answer(self, answer_id: str) -> AnswerRecord:
        """The stored answer ``answer_id`` (FeedbackInputError when there is none)."""
        with self._read() as conn:
            row = conn.execute(select(AnswerRow).where(AnswerRow.id == str(answer_id))).mappings().first()
        if row is None:
            raise FeedbackInputError(f"no answer {answer_id!r} in the feedback database {self.where}")
        return _answer_record(row)

    def has_answer(self, answer_id: str) -> bool:
        with self._read() as conn:
            return conn.execute(select(AnswerRow.id).where(AnswerRow.id == str(answer_id))).first() is not None

    # ---------------------------------------------------------------- feedback
    def add(self, item: Union[FeedbackIn, dict], *, source: Optional[str] = None) -> int:
        """Store one piece of feedback; returns its id."""
        return self.add_many([item], source=source)[0]

    def add_many(self, items: Iterable[Union[FeedbackIn, dict]], *, source: Optional[str] = None) -> list[int]:
        """Store several in one transaction: all of them, or (on any problem) none."""
        parsed = [_parse(item, n) for n, item in enumerate(items)]
        if not parsed:
            return []
        recs = [record_from_answer(fb.answer) if fb.answer is not None else None for fb in parsed]
        with self._write() as conn:
            claims = self._insert_answers(conn, [r for r in recs if r is not None])
            wanted = {x for fb in parsed for x in (fb.answer_id, fb.better_than) if x and x not in claims}
            claims.update(self._existing(conn, wanted))
            rows, now = [], _now()
            tools_of = self._tools_reader(conn)
            for n, (fb, rec) in enumerate(zip(parsed, recs)):
                try:
                    rows.append(_feedback_row(fb, rec, claims, source, now, tools_of))
                except FeedbackInputError as e:
                    prefix = f"item {n + 1}: " if len(parsed) > 1 else ""
                    raise FeedbackInputError(f"{prefix}{e}; nothing was written") from None
            table = FeedbackRow.__table__
            if len(rows) == 1:
                return [int(conn.execute(table.insert(), rows[0]).inserted_primary_key[0])]
            res = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
            return [int(r[0]) for r in res]

    @staticmethod
    def _tools_reader(conn: Connection):
        """answer id -> (its tool calls, its event), read when first asked (only model errors need them)."""
        cache: dict[str, tuple[list, Optional[str]]] = {}

        def read(aid: str) -> tuple[list, Optional[str]]:
            if aid not in cache:
                row = conn.execute(select(AnswerRow.tools_json, AnswerRow.event).where(AnswerRow.id == aid)).first()
                cache[aid] = (json.loads(row[0] or "[]"), row[1]) if row else ([], None)
            return cache[aid]
        return read

    def get(self, feedback_id: int) -> FeedbackItem:
        """One piece of feedback with its answer (FeedbackInputError when there is none)."""
        with self._read() as conn:
            row = conn.execute(select(FeedbackRow).where(FeedbackRow.id == int(feedback_id))).mappings().first()
            if row is None:
                raise FeedbackInputError(f"no feedback #{feedback_id} in the feedback database {self.where}")
            ans = conn.execute(select(AnswerRow).where(AnswerRow.id == row["answer_id"])).mappings().first()
        return _feedback_item(row, _answer_record(ans) if ans is not None else None)

    def list(self, status: Optional[str] = None, limit: Optional[int] = 20, author: Optional[str] = None,
             answer_id: Optional[str] = None) -> list[FeedbackSummary]:
        """The newest feedback first (optionally of one status, author or answer)."""
        if status is not None and status not in STATUSES:
            raise FeedbackInputError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        f, a = FeedbackRow, AnswerRow
        q = (select(f.id, f.created, f.status, f.verdict, f.corrections_json, f.author, f.comment,
                    f.answer_id, a.event, a.question).join(a, a.id == f.answer_id).order_by(f.id.desc()))
        if status is not None:
            q = q.where(f.status == status)
        if author is not None:
            q = q.where(f.author == author)
        if answer_id is not None:
            q = q.where(f.answer_id == answer_id)
        if limit is not None:
            q = q.limit(int(limit))
        with self._read() as conn:
            rows = conn.execute(q).all()
        return [FeedbackSummary(id=r.id, created=_aware(r.created), status=r.status, verdict=r.verdict,
                                n_corrections=r.corrections_json.count('"claim"'), author=r.author,
                                comment=r.comment, answer_id=r.answer_id, event=r.event,
                                question=r.question) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many items have each status."""
        with self._read() as conn:
            rows = conn.execute(select(FeedbackRow.status, func.count()).group_by(FeedbackRow.status)).all()
        out = {s: 0 for s in STATUSES}
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def set_status(self, ids: Iterable[int], status: str) -> int:
        """Give the items ``ids`` a status (all of them, or none when one is missing)."""
        if status not in STATUSES:
            raise FeedbackInputError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        ids = sorted({int(i) for i in ids})
        with self._write() as conn:
            found = {r[0] for r in conn.execute(select(FeedbackRow.id).where(FeedbackRow.id.in_(ids)))}
            missing = [i for i in ids if i not in found]
            if missing:
                raise FeedbackInputError(f"no feedback #{missing[0]} in the feedback database; "
                                         f"no status was changed")
            conn.execute(update(FeedbackRow).where(FeedbackRow.id.in_(ids)).values(status=status, updated=_now()))
        return len(ids)

    def mark_exported(self, conn: Connection, ids: list[int]) -> None:
        """Inside an export's transaction: new and reviewed items become 'exported'."""
        now = _now()
        for i in range(0, len(ids), CHUNK):
            conn.execute(update(FeedbackRow).where(FeedbackRow.id.in_(ids[i:i + CHUNK]),
                                                   FeedbackRow.status.in_(("new", "reviewed")))
                         .values(status="exported", updated=now))


# ============================================================================ rows <-> models
def _feedback_row(fb: FeedbackIn, rec: Optional[AnswerRecord], claims: dict[str, tuple[str, str, str]],
                  source: Optional[str], now: datetime, tools_of) -> dict:
    """The feedback table's row for ``fb`` after its checks (FeedbackInputError says which), with
    the corrected answer written once here (``chosen``), so that an export only copies it."""
    aid = fb.answer_id
    if rec is not None:
        if aid and aid != rec.id:
            raise FeedbackInputError(f"answer_id {aid!r} is not the id of the answer given ({rec.id!r})")
        aid = rec.id
    if not aid:
        raise FeedbackInputError("feedback needs the answer it is about: 'answer_id' or 'answer'")
    if aid not in claims:
        raise FeedbackInputError(f"no answer {aid!r} in the feedback database (it was never "
                                 f"recorded, or it is in another database)")
    table = json.loads(claims[aid][0]) if fb.corrections else []
    texts = [ModelText.model_validate(m) for m in json.loads(claims[aid][2])] if fb.corrections else []
    fixes = []
    for c in fb.corrections:
        own = claim_table(c, table, texts)
        fix = check_correction(c, own)
        blame = blame_of(fix, own[fix.claim])
        observed = observed_verdict(fix, own[fix.claim], *tools_of(aid)) if blame == "model" else None
        fixes.append(fix.model_copy(update={"blame": blame, "observed": observed}))
    fix_dicts = [c.model_dump() for c in fixes]
    chosen = None
    if any(c.mark != "right" for c in fixes):
        chosen = corrected_text(claims[aid][1], table, [c for c in fix_dicts if c["of"] == "answer"])
        chosen = chosen if chosen.strip() and chosen != claims[aid][1] else None
    if len({(c.of, c.claim) for c in fixes}) != len(fixes):
        raise FeedbackInputError("two corrections of the same claim: give one per claim")
    if fb.better_than is not None:
        if fb.better_than == aid:
            raise FeedbackInputError("an answer cannot be ranked better than itself")
        if fb.better_than not in claims:
            raise FeedbackInputError(f"better_than: no answer {fb.better_than!r} in the feedback database")
    if fb.verdict is None and not fixes and not fb.comment.strip() and fb.better_than is None:
        raise FeedbackInputError("empty feedback: give a verdict, a correction, a comment or a ranking")
    return dict(answer_id=aid, verdict=fb.verdict, corrections_json=json.dumps(fix_dicts), chosen=chosen,
                model_chosen=model_chosen(table, texts, fixes),
                comment=fb.comment, author=fb.author, better_than=fb.better_than, status=fb.status,
                source=source or fb.source, created=now, updated=now)


def model_chosen(answer_claims: list[dict], texts: list[ModelText], fixes: list[Correction]) -> Optional[str]:
    """The first-draft model text with the model-blamed corrections applied (those of the answer's
    claims only when the first draft makes the same claim; none that the observations contradict:
    the tool was off too); None when none changes it."""
    first = texts[0] if texts else None
    if first is None:
        return None
    keys = [_key(c) for c in first.claims]
    on_first = []
    for c in fixes:
        if c.blame != "model" or c.observed == "contradicted":
            continue
        if c.of == "first_draft":
            on_first.append(c.model_dump())
        elif _key(answer_claims[c.claim]) in keys:
            on_first.append({**c.model_dump(), "claim": keys.index(_key(answer_claims[c.claim]))})
    if not on_first:
        return None
    fixed = corrected_text(first.text, first.claims, on_first)
    return fixed if fixed.strip() and fixed != first.text else None


def _key(check: dict) -> tuple:
    c = check.get("claim", check)
    value = c.get("value")
    return (c.get("kind"), c.get("subject"), tuple(value) if isinstance(value, list) else value, c.get("qualifier"))


def _parse(item: Any, n: int) -> FeedbackIn:
    if isinstance(item, FeedbackIn):
        return item
    if not isinstance(item, dict):
        raise FeedbackInputError(f"item {n + 1}: expected a JSON object, got {type(item).__name__}")
    try:
        return FeedbackIn.model_validate(item)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "item"
        raise FeedbackInputError(f"item {n + 1}: {where}: {err['msg']}; nothing was written") from None


def _answer_record(row) -> AnswerRecord:
    return AnswerRecord(id=row["id"], created=_aware(row["created"]), event=row["event"],
                        question=row["question"], text=row["text"], claims=json.loads(row["claims_json"]),
                        tools=json.loads(row["tools_json"]), event_class=row["event_class"],
                        class_probabilities=json.loads(row["probabilities_json"]), brain=row["brain"],
                        thread_id=row["thread_id"], models=json.loads(row["models_json"]),
                        model_texts=json.loads(row.get("model_texts_json") or "[]"))


def _feedback_item(row, answer: Optional[AnswerRecord]) -> FeedbackItem:
    return FeedbackItem(id=row["id"], answer_id=row["answer_id"], verdict=row["verdict"],
                        corrections=[Correction.model_validate(c) for c in json.loads(row["corrections_json"])],
                        comment=row["comment"], author=row["author"], better_than=row["better_than"],
                        status=row["status"], source=row["source"], created=_aware(row["created"]),
                        updated=_aware(row["updated"]), answer=answer)
