"""The chat app's expert feedback: thumbs on every answer, per-claim corrections, a comment, and
a table of recent feedback, all stored in the feedback database (``agent.feedback``).

Every final answer of the chat is recorded in the store when it arrives (its event, question,
tools with inputs and outputs, claim table and model versions), and the session remembers
which chat message shows it. Then:

- the thumbs of a final answer's message store a verdict (up / down) at once;
- the **Expert feedback** panel picks one of the session's answers (the last by default) and
  shows its claim table, with an editable column per claim: ``right``, ``wrong`` or
  ``should be`` a corrected value with its unit (``52 cm``, ``350 MeV``, ``2``,
  ``(10, 20, 30) cm``) or class (``nue_cc``, ``photon``, ``absent``), plus a verdict, a comment
  and the author; **Save feedback** stores it in one transaction, or says what to fix;
- **Recent feedback** lists the newest items with their status (new / reviewed / exported /
  used-in-training).

``FeedbackHandlers`` holds the store (shared by all sessions; SQLite copes with the app's
threads and with other processes writing the same file).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional

import gradio as gr

from larsight.agent.feedback import (STATUSES, FeedbackDatabaseError, FeedbackInputError, FeedbackStore,
                                     model_versions, parse_corrected)

__all__ = ["FeedbackHandlers", "feedback_section", "wire_feedback", "CLAIM_COLUMNS", "RECENT_COLUMNS",
           "MAX_SESSION_ANSWERS"]

CLAIM_COLUMNS = ["#", "claim", "check", "expert (right, wrong, should be)", "corrected value or class"]
RECENT_COLUMNS = ["id", "created (UTC)", "status", "verdict", "fixes", "author", "question", "comment"]
MARK_CHOICES = ("", "right", "wrong", "should be")
MAX_SESSION_ANSWERS = 50
RECENT_ROWS = 25


def _rows(table: Any) -> list[list]:
    """The rows of a Gradio Dataframe value (a pandas DataFrame, a dict, or lists)."""
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):
        return table.values.tolist()
    if isinstance(table, dict):
        return list(table.get("data") or [])
    return [list(r) for r in table]


def _describe(check: dict) -> str:
    c = check.get("claim", check)
    value = c.get("value") if c.get("value") is not None else c.get("label") or c.get("vector")
    words = [c.get("kind"), c.get("subject") or c.get("particle"), value, c.get("unit") if c.get("unit") != "count" else None,
             c.get("qualifier")]
    return " ".join(str(w) for w in words if w not in (None, ""))


class FeedbackHandlers:
    """The feedback controls' listeners (see the module docstring)."""

    def __init__(self, store: FeedbackStore, agent: Any = None):
        self.store = store
        self.agent = agent

    # ------------------------------------------------------------------ answers
    def remember(self, answer: Any, state: dict, message_index: int) -> dict:
        """Record ``answer`` (shown at chat message ``message_index``) and keep its id in the
        session; a store that cannot be written leaves the chat working and says so."""
        try:
            aid = self.store.record_answer(answer, model_versions(self.agent))
        except (FeedbackDatabaseError, FeedbackInputError) as e:
            gr.Warning(f"feedback is off for this answer: {e}")
            return state
        answers = [a for a in state.get("answers") or [] if a["id"] != aid]
        answers.append({"id": aid, "msg": int(message_index), "question": answer.question[:80]})
        return {**state, "answers": answers[-MAX_SESSION_ANSWERS:], "last_answer": aid}

    def _answer_at(self, state: Optional[dict], index: Any) -> Optional[str]:
        i = index[0] if isinstance(index, (list, tuple)) else index
        for a in (state or {}).get("answers") or []:
            if a["msg"] == i:
                return a["id"]
        return None

    def choices(self, state: Optional[dict]) -> list[tuple[str, str]]:
        return [(f"{n + 1}. {a['question']}", a["id"]) for n, a in enumerate((state or {}).get("answers") or [])]

    # ------------------------------------------------------------------ listeners
    def on_like(self, state, evt: gr.LikeData):
        """Thumbs on a chat message: a verdict on the answer it shows."""
        aid = self._answer_at(state, evt.index if evt is not None else None)
        if aid is None:
            gr.Info("Thumbs count on the agent's answers (the message with the claim table); "
                    "this message is a step or an answer that is no longer kept.")
            return self.recent(None)
        if evt.liked not in (True, False):
            return self.recent(None)
        try:
            fid = self.store.add({"answer_id": aid, "verdict": "up" if evt.liked else "down"}, source="ui")
            gr.Info(f"Saved feedback #{fid} (thumbs {'up' if evt.liked else 'down'}).")
        except (FeedbackDatabaseError, FeedbackInputError) as e:
            gr.Warning(f"Feedback not saved: {e}")
        return self.recent(None)

    def on_show(self, state, chosen=None):
        """The panel for one of the session's answers (the last when none is chosen)."""
        opts = self.choices(state)
        aid = chosen if chosen in {v for _, v in opts} else ((state or {}).get("last_answer") or None)
        if aid is None:
            return (gr.update(choices=opts, value=None), [],
                    "_Ask a question: each answer can then be marked here._")
        try:
            rec = self.store.answer(aid)
        except (FeedbackDatabaseError, FeedbackInputError) as e:
            return gr.update(choices=opts, value=None), [], f"⚠ {e}"
        rows = [[i, _describe(c), c.get("verdict", ""), "", ""] for i, c in enumerate(rec.claims)]
        note = (f"**Q:** {rec.question}  \n**A:** {rec.text[:400]}" + ("…" if len(rec.text) > 400 else "")
                + ("" if rows else "\n\n_This answer makes no checkable claim: give a verdict or a comment._"))
        return gr.update(choices=opts, value=aid), rows, note

    def corrections(self, table: Any) -> list[dict]:
        """The corrections the expert typed into the claim table (FeedbackInputError naming the
        row that does not read)."""
        out = []
        for row in _rows(table):
            if len(row) < 5:
                continue
            mark = str(row[3] or "").strip().lower().replace("_", " ")
            fix = str(row[4] or "").strip()
            if not mark and not fix:
                continue
            try:
                claim = int(float(row[0]))
            except (TypeError, ValueError):
                raise FeedbackInputError(f"row {row[0]!r}: the claim number is missing") from None
            if mark not in MARK_CHOICES or (mark in ("right", "wrong") and fix):
                if mark in ("right", "wrong"):
                    raise FeedbackInputError(f"claim {claim}: marked {mark!r} but a corrected value is given; "
                                             f"mark it 'should be'")
                raise FeedbackInputError(f"claim {claim}: {row[3]!r} is not right, wrong or should be")
            if mark in ("right", "wrong"):
                out.append({"claim": claim, "mark": mark})
            elif not fix:
                raise FeedbackInputError(f"claim {claim}: 'should be' needs the corrected value or class")
            else:
                out.append({"claim": claim, "mark": "should_be", **parse_corrected(fix)})
        return out

    def on_submit(self, chosen, verdict, table, comment, author, state):
        """Save the panel's feedback: (status message, recent-feedback rows)."""
        aid = chosen or (state or {}).get("last_answer")
        if not aid:
            return "⚠ No answer to give feedback on yet: ask a question first.", self.recent(None)
        v = verdict if verdict in ("up", "down") else None
        try:
            fixes = self.corrections(table)
            fid = self.store.add({"answer_id": aid, "verdict": v, "corrections": fixes, "comment": comment or "",
                                  "author": (author or "").strip()}, source="ui")
        except (FeedbackInputError, FeedbackDatabaseError) as e:
            return f"⚠ **Not saved:** {e}", self.recent(None)
        return (f"✔ Saved feedback #{fid}: {v or 'no verdict'}, {len(fixes)} claim mark(s)"
                + (", a comment" if (comment or "").strip() else "") + "."), self.recent(None)

    def recent(self, status) -> list[list]:
        """The newest feedback (optionally of one status) as table rows."""
        try:
            rows = self.store.list(status=status or None, limit=RECENT_ROWS)
        except (FeedbackDatabaseError, FeedbackInputError) as e:
            gr.Warning(f"cannot list feedback: {e}")
            return []
        return [[r.id, f"{r.created:%Y-%m-%d %H:%M}", r.status, r.verdict or "-", r.n_corrections, r.author or "-",
                 r.question[:60], r.comment[:60]] for r in rows]


def feedback_section() -> SimpleNamespace:
    """The feedback panel and the recent-feedback table (inside the current ``gr.Blocks``)."""
    with gr.Accordion("Expert feedback on an answer", open=False, elem_id="feedback-panel"):
        which = gr.Dropdown([], label="answer", elem_id="feedback-answer", interactive=True)
        shown = gr.Markdown("_Ask a question: each answer can then be marked here._", elem_id="feedback-answer-text")
        claims = gr.Dataframe(headers=CLAIM_COLUMNS, datatype=["number", "str", "str", "str", "str"],
                              column_count=len(CLAIM_COLUMNS), interactive=True, elem_id="feedback-claims",
                              label="claims: type right, wrong or should be, and the corrected value (52 cm, "
                                    "350 MeV, 2, nue_cc, photon)")
        with gr.Row():
            verdict = gr.Radio([("right", "up"), ("wrong", "down")], label="the answer as a whole",
                               elem_id="feedback-verdict")
            author = gr.Textbox(label="your name", max_lines=1, elem_id="feedback-author")
        comment = gr.Textbox(label="comment", lines=2, placeholder="e.g. the shower starts after a 4 cm gap: a photon",
                             elem_id="feedback-comment")
        save = gr.Button("Save feedback", variant="primary", elem_id="feedback-save")
        status = gr.Markdown("", elem_id="feedback-status")
    with gr.Accordion("Recent feedback", open=False, elem_id="feedback-recent-panel"):
        with gr.Row():
            filt = gr.Dropdown(["", *STATUSES], value="", label="status", scale=1)
            refresh = gr.Button("Refresh", scale=1, elem_id="feedback-refresh")
        recent = gr.Dataframe(headers=RECENT_COLUMNS, interactive=False, elem_id="feedback-recent",
                              column_count=len(RECENT_COLUMNS))
    return SimpleNamespace(which=which, shown=shown, claims=claims, verdict=verdict, author=author,
                           comment=comment, save=save, status=status, filt=filt, refresh=refresh, recent=recent)


def wire_feedback(fh: FeedbackHandlers, state, chat: SimpleNamespace, fb: SimpleNamespace) -> None:
    """Connect the feedback controls (inside the ``gr.Blocks`` context). The panel follows the
    last answer: it refreshes when the answer JSON changes (once per answered question)."""
    chat.chatbot.like(fh.on_like, [state], [fb.recent], api_name="feedback_thumbs")
    show_out = [fb.which, fb.claims, fb.shown]
    chat.answer_json.change(fh.on_show, [state], show_out, api_name=False)
    fb.which.input(fh.on_show, [state, fb.which], show_out, api_name=False)
    fb.save.click(fh.on_submit, [fb.which, fb.verdict, fb.claims, fb.comment, fb.author, state],
                  [fb.status, fb.recent], api_name="feedback")
    fb.refresh.click(fh.recent, [fb.filt], [fb.recent], api_name="feedback_recent")
    fb.filt.change(fh.recent, [fb.filt], [fb.recent], api_name=False)
