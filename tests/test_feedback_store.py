"""Expert feedback (issue 19, items 1-2): the store (SQLite, transactions, several writing
processes, restarts), the checks of a correction against its claim, and the export as DPO
pairs and JSON lines."""
import importlib
import json
import multiprocessing as mp
import sqlite3

import pytest

from larsight.agent.feedback import (FeedbackDatabaseError, FeedbackInputError, FeedbackStore, corrected_text,
                                     corrections_from, export, parse_corrected, record_from_answer)


def _answer(question="How long is the muon?", length=45.3, event="sim:nu:seed=0:voxel=0.6:index=1"):
    """An agent answer as JSON (the shape of agent.Answer.model_dump), with a tool call."""
    return {"question": question, "event": event, "brain": "rules", "thread_id": None,
            "text": f"This is a nu_mu CC event. The longest track is a muon of {length} cm. There are 2 protons.",
            "claims": [{"claim": {"kind": "event_class", "subject": "event", "value": "numu_cc"}, "verdict": "supported"},
                       {"claim": {"kind": "track_length", "subject": "muon", "value": length, "unit": "cm",
                                  "qualifier": "longest"}, "verdict": "supported", "tool": "reconstruct"},
                       {"claim": {"kind": "count", "subject": "proton", "value": 2.0, "unit": "count"},
                        "verdict": "supported"},
                       {"claim": {"kind": "vertex", "subject": "vertex", "value": [10.0, 20.0, 30.0], "unit": "cm"},
                        "verdict": "supported"}],
            "steps": [{"index": 1, "node": "observe", "call": {
                "tool": "reconstruct", "arguments": {"event": event}, "ok": True, "purpose": "action",
                "output": {"particles": [{"type": "muon", "length_cm": length}]}}}]}


@pytest.fixture
def store(tmp_path):
    s = FeedbackStore(tmp_path / "feedback.sqlite")
    yield s
    s.close()


def test_answer_and_feedback_round_trip_with_the_full_context(store):
    aid = store.record_answer(_answer(), models={"encoder": "encoder_tiny@abc"})
    assert store.record_answer(_answer(), models={"encoder": "encoder_tiny@abc"}) == aid   # same answer, same id
    fid = store.add({"answer_id": aid, "verdict": "down", "author": "kt", "comment": "the muon exits",
                     "corrections": [{"claim": 1, "value": 520, "unit": "mm"},
                                     {"claim": 0, "label": "nu_e CC"},
                                     {"claim": 3, "value": [1, 2, 3], "unit": "m"},
                                     {"claim": 2, "mark": "right"}]})
    item = store.get(fid)
    assert (item.verdict, item.author, item.status, item.comment) == ("down", "kt", "new", "the muon exits")
    by = {c.claim: c for c in item.corrections}
    assert by[1].value == pytest.approx(52.0) and by[1].unit == "cm"          # 520 mm stored in cm
    assert by[0].label == "nue_cc" and by[3].value == pytest.approx([100, 200, 300]) and by[2].mark == "right"
    a = item.answer
    assert a.question == "How long is the muon?" and a.event.startswith("sim:nu") and a.models["encoder"].endswith("@abc")
    assert a.tools[0]["tool"] == "reconstruct" and a.tools[0]["output"]["particles"][0]["length_cm"] == 45.3
    assert len(a.claims) == 4 and a.claims[1]["claim"]["kind"] == "track_length"
    rows = store.list()
    assert [r.id for r in rows] == [fid] and rows[0].n_corrections == 4 and rows[0].question == a.question


@pytest.mark.parametrize("corr,words", [
    ({"claim": 1, "value": 52, "unit": "MeV"}, "not a unit of it"),
    ({"claim": 1, "value": 52}, "give the unit"),
    ({"claim": 1, "label": "photon"}, "give a number"),
    ({"claim": 2, "value": 2.5}, "whole number"),
    ({"claim": 2, "value": 3, "unit": "cm"}, "takes no unit"),
    ({"claim": 0, "label": "cosmic"}, "not one of nue_cc"),
    ({"claim": 0, "value": 3}, "give one of"),
    ({"claim": 3, "value": [1, 2], "unit": "cm"}, "three numbers"),
    ({"claim": 9, "value": 1}, "claim 9 does not exist"),
    ({"claim": 1, "mark": "wrong", "value": 3, "unit": "cm"}, "takes no value"),
    ({"claim": 1, "value": float("nan"), "unit": "cm"}, "finite"),
    ({"claim": 1, "mark": "maybe"}, "mark"),
])
def test_a_correction_that_does_not_fit_its_claim_is_refused_and_nothing_is_written(store, corr, words):
    aid = store.record_answer(_answer())
    with pytest.raises(FeedbackInputError, match=words) as err:
        store.add({"answer_id": aid, "verdict": "down", "corrections": [corr]})
    assert "\n" not in str(err.value) and "nothing was written" in str(err.value)
    assert store.list() == []


def test_feedback_on_an_answer_that_does_not_exist_and_empty_feedback(store):
    with pytest.raises(FeedbackInputError, match="no answer 'gone' in the feedback database"):
        store.add({"answer_id": "gone", "verdict": "up"})
    aid = store.record_answer(_answer())
    with pytest.raises(FeedbackInputError, match="empty feedback"):
        store.add({"answer_id": aid})
    with pytest.raises(FeedbackInputError, match="better_than: no answer"):
        store.add({"answer_id": aid, "better_than": "nope"})
    with pytest.raises(FeedbackInputError, match="unknown_field"):
        store.add({"answer_id": aid, "verdict": "up", "unknown_field": 1})
    with pytest.raises(FeedbackInputError, match="no feedback #5"):
        store.get(5)
    assert store.counts()["new"] == 0


def test_a_batch_with_one_bad_item_writes_nothing(store):
    aid = store.record_answer(_answer())
    good = {"answer_id": aid, "verdict": "up"}
    with pytest.raises(FeedbackInputError, match="item 3: no answer 'x'"):
        store.add_many([good, good, {"answer_id": "x", "verdict": "up"}])
    # an answer given inline in the failed batch is not kept either
    with pytest.raises(FeedbackInputError, match="item 2"):
        store.add_many([{"answer": _answer(length=10.0), "verdict": "up"}, {"answer_id": aid, "verdict": "left"}])
    assert store.list(limit=None) == []
    assert not store.has_answer(record_from_answer(_answer(length=10.0)).id)
    assert len(store.add_many([good, good])) == 2


def test_nothing_is_lost_when_the_store_is_opened_again(tmp_path):
    path = tmp_path / "fb.sqlite"
    s1 = FeedbackStore(path)
    aid = s1.record_answer(_answer())
    ids = [s1.add({"answer_id": aid, "verdict": v, "author": f"a{i}"}) for i, v in enumerate(["up", "down", "up"])]
    s1.set_status(ids[:1], "reviewed")
    s1.close()
    s2 = FeedbackStore(path)                      # "the app restarts"
    assert [r.id for r in s2.list()] == ids[::-1]
    assert s2.get(ids[0]).status == "reviewed" and s2.answer(aid).question == "How long is the muon?"
    assert s2.counts() == {"new": 2, "reviewed": 1, "exported": 0, "used-in-training": 0}
    with pytest.raises(FeedbackInputError, match="no feedback #99 .*no status was changed"):
        s2.set_status([ids[1], 99], "reviewed")
    assert s2.get(ids[1]).status == "new"
    s2.close()


def test_a_locked_database_gives_a_clear_message_and_loses_nothing(tmp_path):
    path = tmp_path / "fb.sqlite"
    store = FeedbackStore(path, busy_timeout_s=0.2)
    aid = store.record_answer(_answer())
    store.add({"answer_id": aid, "verdict": "up"})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")              # another writer holds the write lock
    try:
        with pytest.raises(FeedbackDatabaseError, match="is locked by another writer.*nothing was written"):
            store.add({"answer_id": aid, "verdict": "down"})
        assert len(store.list()) == 1             # reading still works in WAL mode
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add({"answer_id": aid, "verdict": "down"})
    assert [r.verdict for r in store.list()] == ["down", "up"]
    store.close()


def test_a_read_only_database_gives_a_clear_message(tmp_path):
    path = tmp_path / "fb.sqlite"
    with FeedbackStore(path) as s:
        aid = s.record_answer(_answer())
        s.add({"answer_id": aid, "verdict": "up"})
    ro = FeedbackStore(path, read_only=True)
    assert len(ro.list()) == 1
    with pytest.raises(FeedbackDatabaseError, match="read-only"):
        ro.add({"answer_id": aid, "verdict": "down"})
    ro.close()
    # the driver's own refusal (a file the process may not write) reads the same
    raw = FeedbackStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(FeedbackDatabaseError, match="is read-only; nothing was written"):
        raw.add({"answer_id": aid, "verdict": "down"})
    raw.close()
    with pytest.raises(FeedbackDatabaseError, match="not a feedback database"):
        empty = tmp_path / "other.sqlite"
        sqlite3.connect(empty).execute("CREATE TABLE x (a)").connection.commit()
        FeedbackStore(empty, read_only=True)
    with pytest.raises(FeedbackDatabaseError, match="does not exist"):
        FeedbackStore(tmp_path / "no" / "fb.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(FeedbackDatabaseError, match="junk.sqlite"):
        FeedbackStore(junk)


def _writer(path, aid, worker, n, barrier):
    store = FeedbackStore(path, busy_timeout_s=60)
    barrier.wait()
    for i in range(n):
        store.add({"answer_id": aid, "verdict": "up", "author": f"w{worker}", "comment": str(i)})
    store.close()


def test_several_processes_write_one_sqlite_file_at_once(tmp_path):
    path = tmp_path / "fb.sqlite"
    with FeedbackStore(path) as s:
        aid = s.record_answer(_answer())
    ctx = mp.get_context("fork")
    n_proc, n_each = 4, 25
    barrier = ctx.Barrier(n_proc)
    procs = [ctx.Process(target=_writer, args=(path, aid, w, n_each, barrier)) for w in range(n_proc)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n_proc
    with FeedbackStore(path) as s:
        rows = s.list(limit=None)
        assert len(rows) == n_proc * n_each and len({r.id for r in rows}) == len(rows)
        for w in range(n_proc):
            assert sorted(int(r.comment) for r in rows if r.author == f"w{w}") == list(range(n_each))
        assert s.engine.connect().exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


# ============================================================================ text and export
def test_corrected_text_changes_only_what_the_expert_corrected():
    a = _answer()
    claims = a["claims"]
    fixed = corrected_text(a["text"], claims, [{"claim": 1, "mark": "should_be", "value": 52.0, "unit": "cm"},
                                               {"claim": 0, "mark": "should_be", "label": "nue_cc"}])
    assert fixed == "This is a nu_e CC event. The longest track is a muon of 52.0 cm. There are 2 protons."
    assert corrected_text(a["text"], claims, [{"claim": 2, "mark": "wrong"}]).endswith("muon of 45.3 cm.")
    assert corrected_text(a["text"], claims, [{"claim": 2, "mark": "should_be", "value": 1.0}]).endswith(
        "There is 1 proton.")
    assert corrected_text(a["text"], claims, [{"claim": 1, "mark": "right"}]) == a["text"]
    # a claim the text does not state in words it can find: a sentence of its own
    out = corrected_text("Nothing to see.", claims, [{"claim": 3, "mark": "should_be", "value": [1.0, 2.0, 3.0]}])
    assert out == "Nothing to see. The vertex is at (1.0, 2.0, 3.0) cm."


def test_notebook_forms_of_corrections():
    assert corrections_from({1: "52 cm", 0: "photon", 2: "wrong", 3: (1, 2, 3)}) == [
        {"claim": 1, "value": 52.0, "unit": "cm"}, {"claim": 0, "label": "photon"},
        {"claim": 2, "mark": "wrong"}, {"claim": 3, "value": [1.0, 2.0, 3.0]}]
    assert parse_corrected("(10, 20.5, -3) cm") == {"value": [10.0, 20.5, -3.0], "unit": "cm"}
    assert parse_corrected("350 MeV") == {"value": 350.0, "unit": "MeV"}
    with pytest.raises(FeedbackInputError, match="not a claim number"):
        corrections_from({"first": "wrong"})


def test_export_dpo_pairs_of_every_kind_and_jsonl(store, tmp_path):
    a1, a2 = store.record_answer(_answer()), store.record_answer(_answer(length=60.0))
    a3 = store.record_answer(_answer(question="Where is the vertex?"))
    f_fix = store.add({"answer_id": a1, "verdict": "down", "corrections": [{"claim": 1, "value": 52, "unit": "cm"}]})
    f_rank = store.add({"answer_id": a2, "better_than": a1, "author": "kt"})
    f_up = store.add({"answer_id": a2, "verdict": "up"})
    f_down = store.add({"answer_id": a1, "verdict": "down"})
    f_lone = store.add({"answer_id": a3, "verdict": "up"})
    f_comment = store.add({"answer_id": a3, "comment": "fine"})
    rep = export(store, tmp_path / "p.jsonl", fmt="dpo", mark_exported=True)
    pairs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rep.pairs_by_kind == {"correction": 1, "ranking": 1, "verdict": 1} and rep.lines == 3 == len(pairs)
    by = {p["kind"]: p for p in pairs}
    assert "52.0 cm" in by["correction"]["chosen"] and "45.3 cm" in by["correction"]["rejected"]
    assert "Question: How long is the muon?" in by["correction"]["prompt"] and "Tool reconstruct" in by["correction"]["prompt"]
    assert "60.0 cm" in by["ranking"]["chosen"] and "45.3 cm" in by["ranking"]["rejected"]
    assert (by["verdict"]["feedback_id"], by["verdict"]["rejected_feedback_id"]) == (f_up, f_down)
    assert sum(rep.skipped.values()) == 2
    status = {i: store.get(i).status for i in (f_fix, f_rank, f_up, f_down, f_lone, f_comment)}
    assert [status[i] for i in (f_fix, f_rank, f_up, f_down)] == ["exported"] * 4
    assert status[f_lone] == status[f_comment] == "new" and rep.marked == 4
    rep = export(store, tmp_path / "all.jsonl", fmt="jsonl", status="new")
    lines = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert rep.lines == 2 and [x["feedback"]["id"] for x in lines] == [f_lone, f_comment]
    assert lines[0]["answer"]["tools"][0]["tool"] == "reconstruct" and lines[0]["answer"]["claims"][1]["claim"]["value"] == 45.3


def test_a_failed_export_leaves_the_earlier_file_intact(store, tmp_path, monkeypatch):
    aid = store.record_answer(_answer())
    store.add({"answer_id": aid, "verdict": "down", "corrections": [{"claim": 2, "value": 3}]})
    out = tmp_path / "p.jsonl"
    out.write_text("earlier export\n")
    ex = importlib.import_module("larsight.agent.feedback.export")   # the module (the package exports a function of that name)

    def boom(conn, fh, status):
        fh.write("half a line")
        raise RuntimeError("disk full")
    monkeypatch.setattr(ex, "_dpo", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export(store, out, fmt="dpo")
    assert out.read_text() == "earlier export\n" and [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
    with pytest.raises(FeedbackInputError, match="is a folder"):
        export(store, tmp_path, fmt="dpo")
    with pytest.raises(FeedbackInputError, match="unknown export format"):
        export(store, out, fmt="csv")


def test_the_python_export_path_writes_what_the_database_path_writes(store, tmp_path, monkeypatch):
    # databases without json_object / json_build_object get their lines built in Python
    a1, a2 = store.record_answer(_answer()), store.record_answer(_answer(length=60.0))
    store.add({"answer_id": a1, "verdict": "down", "comment": "é ✓", "corrections": [{"claim": 2, "value": 4}]})
    store.add({"answer_id": a2, "better_than": a1})
    store.add({"answer_id": a1, "comment": "nothing to pair"})
    ex = importlib.import_module("larsight.agent.feedback.export")
    out = {}
    for name, table in (("sql", ex._OBJECT), ("python", {})):
        monkeypatch.setattr(ex, "_OBJECT", table)
        for fmt in ("dpo", "jsonl"):
            export(store, tmp_path / f"{name}.{fmt}", fmt=fmt)
            out[name, fmt] = [json.loads(x) for x in (tmp_path / f"{name}.{fmt}").read_text().splitlines()]
    for fmt in ("dpo", "jsonl"):
        assert out["sql", fmt] == out["python", fmt] and out["sql", fmt]
    assert out["sql", "jsonl"][0]["feedback"]["comment"] == "é ✓"
    assert [p["kind"] for p in out["sql", "dpo"]] == ["correction", "ranking"]
