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


PROMPT = "Observations:\nreconstruct: muon track 182.0 cm, 1 proton\nQuestion: {q}\nExplain from the observations."


def _vlm_answer(said=140.0, question="How long is the muon?", measured=182.0, revised=None,
                event="sim:nu:seed=0:voxel=0.6:index=1"):
    """An answer of the VLM brain as JSON: a typed claim from the tool (the muon's measured length)
    and the model's own text (its first draft says ``said`` cm; ``revised``: the final draft's
    text, else the same), with the prompt it wrote it from."""
    first = f"The muon track is {said:g} cm long, a MIP-like track from the vertex."
    final = revised or first
    steps = [{"index": 1, "node": "observe", "call": {
                 "tool": "reconstruct", "arguments": {"event": event}, "ok": True, "purpose": "action", "event": event,
                 "output": {"particles": [{"type": "muon", "length_cm": measured}, {"type": "proton", "length_cm": 4.0}]}}},
             {"index": 2, "node": "compose", "text": f"The muon is {measured} cm long. The VLM explains: {first}",
              "free_text": {"text": first, "author": "vlm", "label": "The VLM explains:",
                            "prompt": PROMPT.format(q=question)}}]
    if revised:
        steps.append({"index": 4, "node": "compose", "text": f"The muon is {measured} cm long. {final}",
                      "free_text": {"text": final, "author": "vlm", "prompt": PROMPT.format(q=question)}})
    final_said = said if not revised else measured
    return {"question": question, "event": event, "brain": "vlm", "thread_id": None,
            "text": f"The longest track is a muon of {measured} cm. The VLM explains: {final}",
            "claims": [{"claim": {"kind": "track_length", "subject": "muon", "value": measured, "unit": "cm",
                                  "qualifier": "longest", "tool": "reconstruct"}, "verdict": "supported",
                        "tool": "reconstruct"},
                       {"claim": {"kind": "track_length", "subject": "muon", "value": final_said, "unit": "cm",
                                  "source": "text", "text": f"muon track is {final_said:g} cm", "start": 4},
                        "verdict": "supported" if final_said == measured else "contradicted", "tool": "reconstruct"}],
            "steps": steps}


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
    a1, a2 = store.record_answer(_vlm_answer(140.0)), store.record_answer(_vlm_answer(182.0))
    a3 = store.record_answer(_vlm_answer(150.0, question="Where is the vertex?"))
    f_fix = store.add({"answer_id": a1, "verdict": "down",
                       "corrections": [{"claim": 0, "of": "first_draft", "value": 182, "unit": "cm"}]})
    f_rank = store.add({"answer_id": a2, "better_than": a1, "author": "kt"})
    f_up = store.add({"answer_id": a2, "verdict": "up"})
    f_down = store.add({"answer_id": a1, "verdict": "down"})
    f_lone = store.add({"answer_id": a3, "verdict": "up"})
    f_comment = store.add({"answer_id": a3, "comment": "fine"})
    rep = export(store, tmp_path / "p.jsonl", fmt="dpo", mark_exported=True)
    pairs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rep.pairs_by_kind == {"model_correction": 1, "ranking": 1, "verdict": 1} and rep.lines == 3 == len(pairs)
    by = {p["kind"]: p for p in pairs}
    assert by["model_correction"]["chosen"].startswith("The muon track is 182 cm long")
    assert by["model_correction"]["rejected"].startswith("The muon track is 140 cm long")
    assert by["model_correction"]["prompt"] == PROMPT.format(q="How long is the muon?")
    assert "182 cm" in by["ranking"]["chosen"] and "140 cm" in by["ranking"]["rejected"]
    assert (by["verdict"]["feedback_id"], by["verdict"]["rejected_feedback_id"]) == (f_up, f_down)
    assert all("tools" not in p and "The VLM explains" not in p["chosen"] + p["rejected"] for p in pairs)
    assert sum(rep.skipped.values()) == 2 and rep.tool_errors == 0
    status = {i: store.get(i).status for i in (f_fix, f_rank, f_up, f_down, f_lone, f_comment)}
    assert [status[i] for i in (f_fix, f_rank, f_up, f_down)] == ["exported"] * 4
    assert status[f_lone] == status[f_comment] == "new" and rep.marked == 4
    rep = export(store, tmp_path / "all.jsonl", fmt="jsonl", status="new")
    lines = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert rep.lines == 2 and [x["feedback"]["id"] for x in lines] == [f_lone, f_comment]
    assert lines[0]["answer"]["tools"][0]["tool"] == "reconstruct" and lines[0]["answer"]["claims"][0]["claim"]["value"] == 182.0
    assert lines[0]["answer"]["model_texts"][0]["prompt"] == PROMPT.format(q="Where is the vertex?")


def test_a_miscopied_length_in_the_models_text_is_a_model_error_and_a_dpo_pair(store, tmp_path):
    """Observations: muon 182 cm; the VLM's text says 140 cm. Corrected through the answer's claim
    table or the first draft's: blame 'model', and a pair of the model's own text."""
    aid = store.record_answer(_vlm_answer(140.0))
    rec = store.answer(aid)
    assert [m.text for m in rec.model_texts] == ["The muon track is 140 cm long, a MIP-like track from the vertex."]
    first = rec.model_texts[0].claims
    row = next(i for i, c in enumerate(first) if c["claim"]["kind"] == "track_length")
    assert first[row]["verdict"] == "contradicted" and first[row]["evidence"]["length_cm"] == 182.0
    f1 = store.add({"answer_id": aid, "verdict": "down", "author": "kt",
                    "corrections": [{"claim": row, "of": "first_draft", "value": 1.82, "unit": "m"}]})
    f2 = store.add({"answer_id": aid, "corrections": [{"claim": 1, "value": 182, "unit": "cm"}]})   # the text's claim
    assert [c.blame for c in store.get(f1).corrections] == ["model"] == [c.blame for c in store.get(f2).corrections]
    assert store.get(f1).corrections[0].observed == "supported"
    # an expert value the observations contradict too (the tool was off as well): no pair
    f3 = store.add({"answer_id": aid, "corrections": [{"claim": row, "of": "first_draft", "value": 100, "unit": "cm"}]})
    assert [(c.blame, c.observed) for c in store.get(f3).corrections] == [("model", "contradicted")]
    rep = export(store, tmp_path / "p.jsonl", fmt="dpo")
    pairs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rep.pairs_by_kind == {"model_correction": 2} and rep.tool_errors == 0 and sum(rep.skipped.values()) == 1
    for p in pairs:
        assert p["chosen"] == "The muon track is 182 cm long, a MIP-like track from the vertex."
        assert p["rejected"] == rec.model_texts[0].text and p["prompt"] == rec.model_texts[0].prompt
        assert p["event"] == rec.event and p["question"] == "How long is the muon?"


def test_a_wrong_measurement_faithfully_copied_is_a_tool_error_and_no_pair(store, tmp_path):
    """The typed claim (182 cm, supported by the observations) and the model's faithful copy of it
    are both corrected to the truth: the tool was off; the VLM has nothing to learn."""
    aid = store.record_answer(_vlm_answer(182.0))
    fid = store.add({"answer_id": aid, "verdict": "down", "corrections": [
        {"claim": 0, "value": 150, "unit": "cm"}, {"claim": 0, "of": "first_draft", "value": 150, "unit": "cm"}]})
    assert [c.blame for c in store.get(fid).corrections] == ["tool", "tool"]
    rep = export(store, tmp_path / "p.jsonl", fmt="dpo")
    assert rep.lines == 0 and rep.pairs_by_kind == {} and rep.tool_errors == 2
    assert rep.skipped == {"corrections of tool errors only (kept in the jsonl export)": 1}
    export(store, tmp_path / "all.jsonl", fmt="jsonl")
    line = json.loads((tmp_path / "all.jsonl").read_text())
    assert [c["blame"] for c in line["feedback"]["corrections"]] == ["tool", "tool"]
    # a mark 'right' has no blame; an answer without model text has no first draft to correct
    assert store.get(store.add({"answer_id": aid, "corrections": [{"claim": 1, "mark": "right"}]})).corrections[0].blame is None
    plain = store.record_answer(_answer())
    with pytest.raises(FeedbackInputError, match="no text of a language model"):
        store.add({"answer_id": plain, "corrections": [{"claim": 0, "of": "first_draft", "mark": "wrong"}]})


def test_an_error_fixed_by_the_revision_still_teaches_the_first_draft(store, tmp_path):
    aid = store.record_answer(_vlm_answer(140.0, revised="The muon track is 182 cm long, a MIP-like track."))
    rec = store.answer(aid)
    assert len(rec.model_texts) == 2 and rec.first_draft.text != rec.model_texts[-1].text
    store.add({"answer_id": aid, "corrections": [{"claim": 0, "of": "first_draft", "value": 182, "unit": "cm"}]})
    rep = export(store, tmp_path / "p.jsonl", fmt="dpo")
    pair = json.loads((tmp_path / "p.jsonl").read_text())
    assert rep.pairs_by_kind == {"model_correction": 1} and "140 cm" in pair["rejected"] and "182 cm" in pair["chosen"]


OLD_SCHEMA = ("""CREATE TABLE answers (id VARCHAR(32) NOT NULL PRIMARY KEY, created DATETIME, event TEXT,
    question TEXT, text TEXT, prompt TEXT, claims_json TEXT, event_class VARCHAR(16), probabilities_json TEXT,
    brain VARCHAR(64), thread_id VARCHAR(200), models_json TEXT, latency_s FLOAT, tools_json TEXT)""",
              """CREATE TABLE feedback (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    answer_id VARCHAR(32) REFERENCES answers(id), verdict VARCHAR(8), corrections_json TEXT, chosen TEXT,
    comment TEXT, author VARCHAR(200), better_than VARCHAR(32) REFERENCES answers(id), status VARCHAR(20),
    source VARCHAR(20), created DATETIME, updated DATETIME)""",
              "CREATE TABLE larsight_feedback_meta (key VARCHAR(64) NOT NULL PRIMARY KEY, value TEXT)")


def test_a_database_of_the_previous_schema_opens_and_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for sql in OLD_SCHEMA:
        con.execute(sql)
    claims = json.dumps(_answer()["claims"])
    con.execute("INSERT INTO answers VALUES ('abc', '2026-01-01 10:00:00', 'sim:x', 'How long is the muon?', "
                "'The muon is 45.3 cm.', 'Question: How long', ?, NULL, '{}', 'rules', NULL, '{}', NULL, '[]')", (claims,))
    con.execute("INSERT INTO feedback (answer_id, verdict, corrections_json, comment, author, status, source, created, "
                "updated) VALUES ('abc', 'down', '[{\"claim\": 1, \"mark\": \"wrong\"}]', 'old', 'kt', 'new', 'api', "
                "'2026-01-01 10:00:00', '2026-01-01 10:00:00')")
    con.commit()
    con.close()
    with pytest.raises(FeedbackDatabaseError, match="older larsight.*writable to upgrade"):
        FeedbackStore(path, read_only=True)
    with FeedbackStore(path) as s:
        old = s.get(1)
        assert old.comment == "old" and old.corrections[0].blame is None and old.answer.model_texts == []
        aid = s.record_answer(_vlm_answer(140.0))
        s.add({"answer_id": aid, "corrections": [{"claim": 0, "of": "first_draft", "value": 182, "unit": "cm"}]})
        s.add({"answer_id": "abc", "verdict": "up"})
        rep = export(s, tmp_path / "p.jsonl", fmt="dpo")
        assert rep.pairs_by_kind == {"model_correction": 1} and len(s.list()) == 3
    cols = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(answers)")}
    assert {"model_texts_json", "draft_text", "draft_prompt"} <= cols
    with FeedbackStore(path, read_only=True) as ro:      # upgraded: opens read-only now
        assert ro.get(1).comment == "old"


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
    a1, a2 = store.record_answer(_vlm_answer(140.0)), store.record_answer(_vlm_answer(182.0))
    store.add({"answer_id": a1, "verdict": "down", "comment": "é ✓",
               "corrections": [{"claim": 0, "of": "first_draft", "value": 182, "unit": "cm"}]})
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
    assert [p["kind"] for p in out["sql", "dpo"]] == ["model_correction", "ranking"]
