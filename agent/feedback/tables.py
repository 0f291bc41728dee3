"""The feedback database's tables (SQLAlchemy 2 typed ORM) and how an engine is opened.

Two tables: ``answers`` (an answer with its full context: event, question, tools called with
inputs and outputs, text, claim table, model versions; keyed by ``answer_id_of``) and
``feedback`` (verdict, per-claim corrections, comment, author, status, timestamps; many per
answer). JSON fields are stored as text, so the JSON-lines export copies them without decoding.

Schema 2 added the language model's own texts: ``answers.model_texts_json`` (every draft's model
text with its prompt and claim table), ``answers.draft_text`` / ``draft_prompt`` (the first
draft's, what the DPO export reads) and ``feedback.model_chosen`` (the first-draft text as the
expert's model-blamed corrections fix it). ``ADDED_COLUMNS`` lists them: a database written by
schema 1 gets them when it is opened (``FeedbackStore._ensure_schema``).

SQLite (the default) is opened in WAL mode with a busy timeout, and writes take the write lock
when they begin (``BEGIN IMMEDIATE``): writers in several processes queue instead of failing.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import (DateTime, Float, ForeignKey, Index, Integer, String, Text, create_engine,
                        event)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "AnswerRow", "FeedbackRow", "make_engine", "SCHEMA_VERSION", "ADDED_COLUMNS"]

SCHEMA_VERSION = 2


class Base(DeclarativeBase):
    pass


class AnswerRow(Base):
    __tablename__ = "answers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event: Mapped[Optional[str]] = mapped_column(Text, index=True)
    question: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text, default="", doc="the question with its context, as text")
    claims_json: Mapped[str] = mapped_column(Text, default="[]")
    event_class: Mapped[Optional[str]] = mapped_column(String(16))
    probabilities_json: Mapped[str] = mapped_column(Text, default="{}")
    brain: Mapped[str] = mapped_column(String(64), default="")
    thread_id: Mapped[Optional[str]] = mapped_column(String(200))
    models_json: Mapped[str] = mapped_column(Text, default="{}")
    latency_s: Mapped[Optional[float]] = mapped_column(Float)
    draft_text: Mapped[Optional[str]] = mapped_column(Text, doc="the model's first-draft text (None: no model text)")
    draft_prompt: Mapped[Optional[str]] = mapped_column(Text, doc="the prompt the model wrote draft_text from")
    model_texts_json: Mapped[str] = mapped_column(Text, default="[]", doc="agent.feedback.ModelText of each draft")
    # the largest column last: SQLite reads a row's columns in order through its overflow pages,
    # so the review and the DPO export (which never read the tool outputs) stop before them
    tools_json: Mapped[str] = mapped_column(Text, default="[]")


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(ForeignKey("answers.id"), index=True)
    verdict: Mapped[Optional[str]] = mapped_column(String(8))
    corrections_json: Mapped[str] = mapped_column(Text, default="[]")
    chosen: Mapped[Optional[str]] = mapped_column(Text, doc="the answer as corrected (None: no correction "
                                                  "changes it); written with the item, copied by the export")
    model_chosen: Mapped[Optional[str]] = mapped_column(Text, doc="the first-draft model text with the "
                                                        "model-blamed corrections applied (None: none applies)")
    comment: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(200), default="", index=True)
    better_than: Mapped[Optional[str]] = mapped_column(ForeignKey("answers.id"))
    status: Mapped[str] = mapped_column(String(20), default="new")
    source: Mapped[str] = mapped_column(String(20), default="api")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


ADDED_COLUMNS = {"answers": (("draft_text", "TEXT", None), ("draft_prompt", "TEXT", None),
                             ("model_texts_json", "TEXT", "'[]'")),
                 "feedback": (("model_chosen", "TEXT", None),)}
"""Columns added after schema 1: (name, SQL type, default) by table."""


class MetaRow(Base):
    __tablename__ = "larsight_feedback_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _sqlite_setup(engine: Engine, busy_timeout_s: float, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None          # transactions are begun below, not by the driver
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            cur.execute("PRAGMA page_size = 16384")     # a new file only: answers fit in fewer pages
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        write = conn.get_execution_options().get("larsight_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write and not read_only else "BEGIN")


def make_engine(url: str, busy_timeout_s: float = 30.0, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and write-locking transactions."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})
        _sqlite_setup(engine, busy_timeout_s, read_only)
        return engine
    return create_engine(url, pool_pre_ping=True)
