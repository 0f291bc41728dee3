"""The feedback store on PostgreSQL, the shared lab server case (issue 19: "any SQLAlchemy URL"):
a throw-away server is started from this machine's PostgreSQL binaries (as the ``postgres`` user
when the tests run as root) on a Unix socket, and the store's round trip, its refusals, two
writing processes and both export formats run against it."""
import glob
import json
import multiprocessing as mp
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from larsight.agent.feedback import FeedbackInputError, FeedbackStore, export

from test_feedback_store import _vlm_answer

PORT = 54329


def _pg_bin(name: str):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def pg_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries are missing (initdb, pg_ctl): the SQLite tests cover the store")
    pytest.importorskip("psycopg", reason="psycopg is missing: `pip install -e .[dev]` installs it")
    root = Path(tempfile.mkdtemp(prefix="larsight-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:                      # the server refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, sock = root / "data", root / "sock"
    env = {**os.environ, "LC_ALL": "C"}

    def sh(*cmd):
        subprocess.run([*run_as, *cmd], check=True, capture_output=True, timeout=120, env=env, cwd=root)
    sh("mkdir", "-p", str(sock))
    sh(initdb, "-D", str(data), "-A", "trust", "-U", "larsight", "--no-sync", "-E", "UTF8")
    sh(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
       f"-k {sock} -c listen_addresses='' -p {PORT} -c fsync=off", "start")
    try:
        yield f"postgresql+psycopg://larsight@/postgres?host={sock}&port={PORT}"
    finally:
        sh(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _writer(url, aid, worker, n):
    with FeedbackStore(url) as s:
        for i in range(n):
            s.add({"answer_id": aid, "verdict": "up", "author": f"w{worker}", "comment": str(i)})


def test_the_store_on_postgresql(pg_url, tmp_path):
    with FeedbackStore(pg_url) as s:
        assert s.where.startswith("postgresql+psycopg://larsight@")
        a1, a2 = s.record_answer(_vlm_answer(140.0)), s.record_answer(_vlm_answer(182.0))
        fid = s.add({"answer_id": a1, "verdict": "down", "author": "kt",
                     "corrections": [{"claim": 0, "of": "first_draft", "value": 1.82, "unit": "m"},
                                     {"claim": 0, "value": 52, "unit": "cm"}]})
        s.add({"answer_id": a2, "better_than": a1})
        with pytest.raises(FeedbackInputError, match="is a length"):
            s.add({"answer_id": a1, "corrections": [{"claim": 1, "value": 3, "unit": "MeV"}]})
        with pytest.raises(FeedbackInputError, match="item 2: no answer"):
            s.add_many([{"answer_id": a1, "verdict": "up"}, {"answer_id": "gone", "verdict": "up"}])
        item = s.get(fid)
        assert item.corrections[0].value == pytest.approx(182.0) and item.answer.tools[0]["tool"] == "reconstruct"
        assert [c.blame for c in item.corrections] == ["model", "tool"] and item.answer.first_draft.prompt
        assert [r.id for r in s.list()] == [fid + 1, fid]
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(pg_url, a1, w, 10)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with FeedbackStore(pg_url) as s:                   # "the app restarts"
        assert s.counts()["new"] == 22
        rep = export(s, tmp_path / "p.jsonl", fmt="dpo")
        assert rep.pairs_by_kind == {"model_correction": 1, "ranking": 1} and rep.tool_errors == 1
        pair = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
        assert "182 cm" in pair["chosen"] and "140 cm" in pair["rejected"]
        rep = export(s, tmp_path / "all.jsonl", fmt="jsonl")
        lines = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
        assert rep.lines == 22 and lines[0]["answer"]["tools"][0]["output"]["particles"][0]["length_cm"] == 182.0
        assert lines[0]["feedback"]["corrections"][1]["blame"] == "tool"
