"""`larsight feedback add|list|show|mark|export` (issue 19, item 2): scripted review in, the
review table and DPO pairs out; bad input ends in one line and exit code 3, nothing stored."""
import json

import pytest

from larsight.agent.feedback import FeedbackStore
from larsight.ui.cli import main
from larsight.ui.cli_args import EXIT_BAD_INPUT, EXIT_USAGE

from test_feedback_store import PROMPT, _answer, _vlm_answer


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "fb.sqlite"
    monkeypatch.setenv("LARSIGHT_FEEDBACK_DB", str(path))
    return path


def _one_line_error(capsys) -> str:
    out = capsys.readouterr()
    lines = [x for x in out.err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in out.err + out.out, out.err
    return lines[0]


def test_add_list_show_mark_export(db, tmp_path, capsys):
    review = tmp_path / "review.jsonl"
    # the tool measured 182 cm (the truth: 52 cm, the muon exits); the VLM's first draft said 140 cm
    items = [{"answer": _vlm_answer(140.0), "verdict": "down", "comment": "the muon exits at 52 cm",
              "corrections": [{"claim": 0, "mark": "should_be", "value": 52, "unit": "cm"},
                              {"claim": 0, "of": "first_draft", "value": 182, "unit": "cm"}]},
             {"answer": _answer(question="Where is the vertex?"), "verdict": "up", "author": "ms"}]
    review.write_text("\n".join(json.dumps(x) for x in items) + "\n")
    assert main(["feedback", "add", str(review), "--author", "kt"]) == 0
    assert "stored 2 feedback item(s)" in capsys.readouterr().out

    assert main(["feedback", "list"]) == 0
    out = capsys.readouterr().out
    assert "2 new, 0 reviewed" in out and "the muon exits" in out and "Where is the vertex?" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["2", "1"] and rows[0][6] == "ms" and rows[1][6] == "kt"

    assert main(["feedback", "show", "1"]) == 0
    out = capsys.readouterr().out
    assert "Q: How long is the muon?" in out and "reconstruct(" in out
    assert "<- expert: should_be 52.0 cm [tool error]" in out and "<- expert: should_be 182.0 cm [model error]" in out
    assert "first draft (vlm): The muon track is 140 cm long" in out

    assert main(["feedback", "mark", "1", "--status", "reviewed"]) == 0
    assert main(["feedback", "list", "--status", "reviewed", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [x["id"] for x in listed] == [1]

    out_file = tmp_path / "prefs.jsonl"
    assert main(["feedback", "export", "--format", "dpo", "--out", str(out_file), "--mark-exported"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 pair(s) (1 model_correction)" in out and "1 correction(s) of tool errors" in out
    pair = json.loads(out_file.read_text().splitlines()[0])
    assert "182 cm" in pair["chosen"] and "140 cm" in pair["rejected"] and pair["prompt"] == PROMPT.format(
        q="How long is the muon?")
    with FeedbackStore(db) as s:
        assert (s.get(1).status, s.get(2).status) == ("exported", "new")   # 2 gave no pair: not exported

    assert main(["feedback", "export", "--format", "jsonl", "--out", str(tmp_path / "all.jsonl")]) == 0
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 2


def test_add_from_standard_input(db, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([{"answer": _answer(), "verdict": "up"}])))
    assert main(["feedback", "add"]) == 0
    assert "stored 1" in capsys.readouterr().out


@pytest.mark.parametrize("content,words", [
    ('{"answer_id": "nope", "verdict": "up"}', "no answer 'nope'"),
    ('{"answer": ANSWER, "verdict": "up"}\n{"verdict": "up", \n', "line 2: not JSON"),
    ("[1, 2]", "item 1: expected a JSON object"),
    ('{"answer": ANSWER, "corrections": [{"claim": 1, "value": 3, "unit": "GeV"}]}', "is a length"),
    ('{"answer": ANSWER, "verdict": "up"', "not JSON"),
    ("", "empty input"),
])
def test_bad_imports_end_in_one_line_and_store_nothing(db, tmp_path, capsys, content, words):
    f = tmp_path / "in.json"
    f.write_text(content.replace("ANSWER", json.dumps(_answer())))
    assert main(["feedback", "add", str(f)]) == EXIT_BAD_INPUT
    line = _one_line_error(capsys)
    assert line.startswith("larsight feedback add: error:") and words in line, line
    if db.exists():
        with FeedbackStore(db) as s:
            assert s.list(limit=None) == []


def test_other_bad_arguments(db, tmp_path, capsys):
    assert main(["feedback", "list"]) == EXIT_BAD_INPUT
    assert "no feedback database" in _one_line_error(capsys)
    assert main(["feedback", "add", str(tmp_path / "missing.json")]) == EXIT_BAD_INPUT
    assert "no such file" in _one_line_error(capsys)
    (tmp_path / "in.json").write_text(json.dumps({"answer": _answer(), "verdict": "up"}))
    assert main(["feedback", "add", str(tmp_path / "in.json")]) == 0
    capsys.readouterr()
    assert main(["feedback", "show", "42"]) == EXIT_BAD_INPUT
    assert "no feedback #42" in _one_line_error(capsys)
    assert main(["feedback", "mark", "1", "42", "--status", "reviewed"]) == EXIT_BAD_INPUT
    assert "no status was changed" in _one_line_error(capsys)
    assert main(["feedback", "export", "--out", str(tmp_path / "no" / "x.jsonl")]) == EXIT_USAGE
    assert "does not exist" in _one_line_error(capsys)
    with pytest.raises(SystemExit) as ex:
        main(["feedback", "list", "--status", "done"])
    assert ex.value.code == EXIT_USAGE and "invalid choice" in _one_line_error(capsys)
    assert main(["feedback", "list", "--db", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "is a folder" in _one_line_error(capsys)
