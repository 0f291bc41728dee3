"""Expert feedback in the chat app and the notebook API (issue 19, item 1): a question answered
through the app's handlers, then a thumbs click and the per-claim panel store items with the
answer's context; the store survives a restart; ``Agent.feedback`` does the same from a notebook."""
import os

import gradio as gr
import pytest

from larsight.agent.feedback import FeedbackStore, export

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    from larsight.agent import Agent

    tmp = tmp_path_factory.mktemp("fb-agent")
    agent = Agent("rules", run_dir=tmp / "run", db=tmp / "threads.sqlite")
    agent.toolset.tool_kwargs["classify_event"] = {"vlm": False}   # the encoder's event head only
    agent.toolset.tool_kwargs["describe"] = {"vlm": False}
    return agent


@pytest.fixture(scope="module")
def event_ref():
    from larsight.ui.app_events import simulate_event

    return simulate_event("nu", 1, 0).ref


def _app(bot, path):
    from larsight.ui.app_feedback import FeedbackHandlers
    from larsight.ui.app_handlers import AppHandlers
    from larsight.ui.app_uploads import UploadStore

    fh = FeedbackHandlers(FeedbackStore(path), bot)
    h = AppHandlers(bot, None, UploadStore(path.parent / "uploads", 10), 5, 8)
    h.feedback = fh
    return h, fh


def _ask(h, state, question):
    last = None
    for last in h.on_ask(question, [], state):
        pass
    return last[0], last[1]


def test_a_click_in_the_chat_stores_feedback_with_its_context(bot, event_ref, tmp_path):
    from larsight.ui.app_handlers import new_session

    path = tmp_path / "feedback.sqlite"
    h, fh = _app(bot, path)
    msgs, state = _ask(h, {**new_session(), "ref": event_ref}, "How many protons are there?")
    aid = state["last_answer"]
    assert aid and state["answers"][-1]["msg"] == len(msgs) - 1

    # thumbs down on the answer's message; thumbs on a step's message store nothing
    rows = fh.on_like(state, gr.LikeData(None, {"index": len(msgs) - 1, "value": msgs[-1]["content"], "liked": False}))
    assert [r[2:4] for r in rows] == [["new", "down"]]
    fh.on_like(state, gr.LikeData(None, {"index": 0, "value": msgs[0]["content"], "liked": True}))
    assert len(fh.store.list()) == 1

    # the panel: the claim table of the last answer, a correction typed into it
    which, claims, note = fh.on_show(state)
    assert which["value"] == aid and "How many protons" in note
    row = next(r for r in claims if r[1].startswith("count proton"))
    table = [[r[0], r[1], r[2], "should be" if r is row else "", "3" if r is row else ""] for r in claims]
    msg, rows = fh.on_submit(aid, "down", table, "a third, short proton at the vertex", "kt", state)
    assert msg.startswith("✔ Saved feedback #2") and len(rows) == 2

    item = fh.store.get(2)
    assert item.verdict == "down" and item.author == "kt" and item.source == "ui"
    assert [(c.claim, c.mark, c.value, c.blame) for c in item.corrections] == [(row[0], "should_be", 3.0, "tool")]
    a = item.answer
    assert a.event == event_ref and a.question == "How many protons are there?" and a.brain == "rules"
    assert "reconstruct" in [t["tool"] for t in a.tools] and a.tools[0]["output"]
    assert a.models["brain"] == "rules" and a.models["encoder"].startswith("encoder_tiny@")
    # the rules brain's answer is rendered from the tools' claims: the count was the tool's error,
    # not VLM training data (the jsonl export keeps it)
    rep = export(fh.store, tmp_path / "p.jsonl")
    assert rep.lines == 0 and rep.tool_errors == 1
    export(fh.store, tmp_path / "all.jsonl", fmt="jsonl")
    assert "3 protons" in (tmp_path / "all.jsonl").read_text()      # the corrected answer, for review

    # bad input in the panel: a message, nothing stored
    bad = [[r[0], r[1], r[2], "should be" if r is row else "", "3 cm" if r is row else ""] for r in claims]
    msg, _ = fh.on_submit(aid, None, bad, "", "", state)
    assert msg.startswith("⚠ **Not saved:**") and "takes no unit" in msg
    msg, _ = fh.on_submit(aid, None, [[row[0], row[1], row[2], "maybe", ""]], "", "", state)
    assert "not right, wrong or should be" in msg
    msg, _ = fh.on_submit("0123456789abcdef", "up", [], "", "", state)
    assert "no answer '0123456789abcdef'" in msg
    assert len(fh.store.list()) == 2

    # the app restarts: a new store on the same file lists everything
    fh.store.close()
    _h2, fh2 = _app(bot, path)
    assert [r[0] for r in fh2.recent(None)] == [2, 1] and [r[0] for r in fh2.recent("new")] == [2, 1]
    assert fh2.recent("exported") == []


def test_new_conversation_forgets_the_message_map(bot, event_ref, tmp_path):
    from larsight.ui.app_handlers import new_session

    h, fh = _app(bot, tmp_path / "feedback.sqlite")
    msgs, state = _ask(h, {**new_session(), "ref": event_ref}, "Where is the vertex?")
    _chat, state, *_ = h.on_new_chat(state)
    assert state["answers"] == [] and state["last_answer"] is None
    fh.on_like(state, gr.LikeData(None, {"index": len(msgs) - 1, "value": "", "liked": True}))
    assert fh.store.list() == []
    which, claims, note = fh.on_show(state)
    assert claims == [] and "Ask a question" in note


def test_notebook_api_feedback(bot, event_ref, tmp_path):
    a = bot.ask(event_ref, "How many protons are there?")
    b = bot.ask(event_ref, "How many protons are there? Count carefully.")
    db = tmp_path / "nb.sqlite"
    fid = bot.feedback(a, verdict="down", corrections={0: "wrong"}, comment="no", author="kt", db=db)
    with FeedbackStore(db) as s:
        item = s.get(fid)
        assert item.answer.question == a.question and item.corrections[0].mark == "wrong"
        with pytest.raises(Exception, match="claim 7 does not exist"):
            bot.feedback(a, corrections={7: "3"}, db=db)
        assert len(s.list()) == 1
    # without db: beside the agent's conversations
    fid2 = bot.feedback(b, verdict="up", better_than=a)
    with FeedbackStore(bot.db_path.parent / "feedback.sqlite") as s:
        assert s.get(fid2).better_than is not None and s.get(fid2).answer.question.endswith("carefully.")


def test_the_app_builds_with_the_feedback_controls(bot, tmp_path):
    from larsight.ui.app import build_app

    demo = build_app(agent=bot, run_dir=tmp_path / "run", index=tmp_path / "no-index")
    assert demo.larsight_feedback.where == str(bot.db_path.parent / "feedback.sqlite")
    names = {getattr(fn, "api_name", None) for fn in demo.fns.values()}
    assert {"ask", "feedback", "feedback_thumbs", "feedback_recent"} <= names
    demo.larsight_feedback.close()
