"""`larsight ask` exit codes (issue 18, item 6): 0 only when the question about the event was
answered; 3 when the event cannot be read (past the end, corrupt, hanging, empty); 4 when no
answer could be given (empty question, the back-end failed)."""
import json
import os
import subprocess
import sys
import time

import pytest

from larsight import events
from larsight.agent import Answer
from larsight.events.formats import write
from larsight.ui import cli_inputs
from larsight.ui.cli import main
from larsight.ui.cli_args import EXIT_BAD_INPUT, EXIT_NO_ANSWER


@pytest.fixture(scope="module")
def nu_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ask") / "nu.h5"
    write(path, list(events.sim.simulate("nu", 3, seed=3)))
    return path


def test_an_answered_question_exits_0(nu_file, tmp_path, capsys):
    rc = main(["ask", f"{nu_file}:1", "Where is the vertex?", "--brain", "rules", "--json",
               "--db", str(tmp_path / "t.sqlite")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    answer = json.loads(out.out)
    assert answer["event"] == f"{nu_file}:1" and answer["stop_reason"] is None
    assert [s["call"]["tool"] for s in answer["steps"] if s.get("call")] == ["find_vertex"]


def test_a_failed_back_end_exits_4_after_printing_what_it_said(nu_file, monkeypatch, capsys):
    class FailingAgent:
        def __init__(self, *a, **k):
            pass

        def stream(self, event, question, thread_id=None):
            yield Answer(question=question, event="e", text="The reasoning back-end failed: `Boom`.",
                         stop_reason="brain error")

    monkeypatch.setattr("larsight.agent.Agent", FailingAgent)
    assert main(["ask", str(nu_file), "Classify this event."]) == EXIT_NO_ANSWER
    out = capsys.readouterr()
    assert "back-end failed" in out.out
    assert out.err.count("\n") == 1 and "no answer" not in out.out and "brain error" in out.err


def test_a_hanging_file_ends_in_exit_3_within_the_bound(hanging_h5, monkeypatch, capsys):
    monkeypatch.setattr(cli_inputs, "READ_TIMEOUT_S", 3.0)
    t0 = time.monotonic()
    assert main(["ask", f"{hanging_h5}:0", "Where is the vertex?", "--brain", "rules"]) == EXIT_BAD_INPUT
    assert time.monotonic() - t0 < 60     # the reader's start-up is not part of the 3 s
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt.h5" in err and "Traceback" not in err


@pytest.mark.parametrize("verb", ["convert", "inspect"])
def test_convert_and_inspect_of_a_hanging_file_end_in_exit_3(hanging_h5, tmp_path, verb):
    # a subprocess, so that a regression to an in-process read fails on the timeout, not hangs
    args = [str(hanging_h5), str(tmp_path / "out.root")] if verb == "convert" else [str(hanging_h5)]
    r = subprocess.run([sys.executable, "-m", "larsight.ui.cli", verb, *args], capture_output=True,
                       text=True, timeout=180, env={**os.environ, "LARSIGHT_READ_TIMEOUT_S": "3"})
    assert r.returncode == EXIT_BAD_INPUT, r.stderr
    last = r.stderr.strip().splitlines()[-1]      # after the progress bar, one error line
    assert "corrupt.h5" in last and "within" in last and "Traceback" not in r.stderr
    assert not (tmp_path / "out.root").exists()
