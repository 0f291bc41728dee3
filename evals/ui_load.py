"""Load check of the chat app: several sessions asking questions at once through Gradio's queue.

    python -m larsight.evals.ui_load                      # 8 sessions, 60 s, rules brain
    python -m larsight.evals.ui_load --sessions 8 --seconds 60 --brain vlm

Starts the app in this process on a free port (``ui.app.build_app`` + ``launch``), then runs
``sessions`` threads, each with its own ``gradio_client.Client`` (its own Gradio session, hence
its own ``gr.State`` and conversation thread). Each session simulates its own event (mode nu,
seed 100 + i), then asks questions from ``QUESTIONS`` in turn, passing its chat history back,
until ``seconds`` have passed (the question under way when time runs out is finished).

Checked for every answer (a failure counts as an error or as cross-talk, never silently):
- the call returns without an exception and the answer JSON is there (errors otherwise);
- cross-talk: the answer is about the session's own event, carries the session's own thread id
  (the same for all its answers) and the returned chat holds exactly the session's own
  questions, in order; at the end the agent's SQLite thread of each session holds exactly that
  session's questions.
Latency: seconds from submitting a question to its last streamed update, per question, on the
client side (queue wait included); p50 / p95 / max overall and per question kind.
Writes ``evals/reports/ui_load.json`` and ``.md``. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

QUESTIONS = (("class", "Classify this event and explain why."),
             ("vertex", "Where is the vertex?"),
             ("protons", "How many protons are there?"),
             ("particles", "List the particles with their energies."),
             ("describe", "Describe this event."),
             ("general", "What is a Michel electron?"))


def _pct(xs: list[float], q: float) -> Optional[float]:
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(math.ceil(q * len(xs))) - 1))
    return xs[k]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_texts(history: list) -> list[str]:
    out = []
    for m in history:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, list):
            c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
        out.append(str(c))
    return out


def _session(i: int, url: str, deadline: float, results: list, lock: threading.Lock) -> dict:
    from gradio_client import Client

    rec = {"session": i, "ref": None, "thread": None, "asked": [], "errors": [], "crosstalk": []}
    try:
        c = Client(url, verbose=False, download_files=False)
        status, _, _ = c.predict("nu", 100 + i, 0, "energy", True, "reco", api_name="/simulate")
        ref = f"sim:nu:seed={100 + i}:voxel=0.6:index=0"
        if ref not in status:
            rec["errors"].append(f"simulate: {status[:200]}")
            return rec
        rec["ref"] = ref
        history: list = []
        n = 0
        while time.time() < deadline:
            kind, q = QUESTIONS[(n + i) % len(QUESTIONS)]
            n += 1
            t0 = time.perf_counter()
            try:
                history, _probs, answer, _ = c.predict(q, history, api_name="/ask")
            except Exception as e:  # noqa: BLE001 - every failure is counted
                rec["errors"].append(f"{kind}: {type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t0
            rec["asked"].append(q)
            if not isinstance(answer, dict) or "thread_id" not in answer:
                rec["errors"].append(f"{kind}: no answer JSON")
                continue
            rec["thread"] = rec["thread"] or answer["thread_id"]
            bad = []
            if answer.get("event") != ref:
                bad.append(f"answer about {answer.get('event')}, not {ref}")
            if answer["thread_id"] != rec["thread"]:
                bad.append(f"thread {answer['thread_id']} != {rec['thread']}")
            if answer.get("question") != q:
                bad.append(f"answer to {answer.get('question')!r}, asked {q!r}")
            if _user_texts(history) != rec["asked"]:
                bad.append(f"chat holds {_user_texts(history)[-3:]!r}, asked {rec['asked'][-3:]!r}")
            rec["crosstalk"] += [f"{kind}: {b}" for b in bad]
            with lock:
                results.append({"session": i, "kind": kind, "latency_s": dt,
                                "tools": answer.get("tools"), "n_contradicted": answer.get("n_contradicted"),
                                "n_claims": len(answer.get("claims") or [])})
    except Exception as e:  # noqa: BLE001
        rec["errors"].append(f"session: {type(e).__name__}: {e}")
    return rec


def run(sessions: int = 8, seconds: float = 60.0, brain: str = "rules", concurrency: int = 4,
        out_dir: str = "evals/reports", name: str = "ui_load", note: str = "") -> dict:
    from larsight.agent import Agent
    from larsight.agent.graph import HISTORY_SIZE
    from larsight.ui.app import build_app, launch

    tmp = Path(tempfile.mkdtemp(prefix="larsight-ui-load-"))
    bot = Agent(brain, run_dir=tmp / "run", db=tmp / "threads.sqlite")
    demo = build_app(agent=bot, index=tmp / "no-index", run_dir=tmp / "run", concurrency=concurrency)
    port = _free_port()
    launch(demo, port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        # warm up (models load once; not part of the measured minute)
        from gradio_client import Client

        t0 = time.perf_counter()
        w = Client(url, verbose=False, download_files=False)
        w.predict("nu", 99, 0, "energy", True, "reco", api_name="/simulate")
        for _, q in QUESTIONS:
            w.predict(q, [], api_name="/ask")
        warm = time.perf_counter() - t0
        print(f"warm-up {warm:.1f} s; {sessions} sessions for {seconds:.0f} s ...", file=sys.stderr)

        results: list = []
        lock = threading.Lock()
        recs: list = [None] * sessions
        start = time.time()
        deadline = start + seconds

        def worker(k):
            recs[k] = _session(k, url, deadline, results, lock)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - start

        # server side: each SQLite thread holds exactly its session's questions (its last
        # HISTORY_SIZE turns: the agent keeps no more)
        for r in recs:
            if r["thread"]:
                hist = [h.get("question") for h in bot.history(r["thread"])]
                if hist != r["asked"][-HISTORY_SIZE:]:
                    r["crosstalk"].append(f"agent thread holds {hist[-3:]!r}, session asked {r['asked'][-3:]!r}")
    finally:
        demo.close()

    lat = [x["latency_s"] for x in results]
    by_kind = {}
    for kind, _ in QUESTIONS:
        xs = [x["latency_s"] for x in results if x["kind"] == kind]
        by_kind[kind] = {"n": len(xs), "p50_s": _pct(xs, 0.5), "p95_s": _pct(xs, 0.95)}
    errors = [e for r in recs for e in r["errors"]]
    crosstalk = [e for r in recs for e in r["crosstalk"]]
    report = {
        "command": "python -m larsight.evals.ui_load " + shlex.join(sys.argv[1:]),
        "brain": brain, "sessions": sessions, "seconds": seconds, "wall_s": round(wall, 1),
        "concurrency": concurrency, "warm_up_s": round(warm, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_threads": os.environ.get("OMP_NUM_THREADS"), "platform": platform.platform()},
        "questions": len(results), "per_session": [len(r["asked"]) for r in recs],
        "throughput_per_min": round(len(results) / wall * 60, 1) if wall else None,
        "latency_p50_s": _pct(lat, 0.5), "latency_p95_s": _pct(lat, 0.95),
        "latency_max_s": max(lat) if lat else None,
        "latency_mean_s": statistics.fmean(lat) if lat else None,
        "by_kind": by_kind, "errors": errors, "crosstalk": crosstalk,
        "answers_with_contradicted_claim": sum(1 for x in results if x["n_contradicted"]),
        "note": note,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return report


def _s(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Chat app load check: {r['sessions']} sessions for {r['seconds']:.0f} s ({r['brain']} brain)",
        "",
        f"Command: `{r['command'].strip()}`. The app ran in the measuring process (Gradio queue, "
        f"{r['concurrency']} questions at once); each session is its own `gradio_client.Client` "
        f"(own Gradio session, `gr.State`, conversation thread) with its own simulated event, asking "
        f"questions in turn and passing its chat back. Machine: {m['cpus']} CPUs"
        f" (OMP_NUM_THREADS={m['omp_threads'] or 'unset'}), Python {m['python']}. Latency is client side, "
        f"from submitting a question to its last streamed update (queue wait included). Warm-up "
        f"(model loading, one question of each kind) took {r['warm_up_s']:.1f} s and is not counted."
        + (f" {r['note']}" if r.get("note") else ""),
        "",
        "| metric | value |", "| --- | --- |",
        f"| questions answered | {r['questions']} in {r['wall_s']:.0f} s ({r['throughput_per_min']} per minute) |",
        f"| per session | {', '.join(map(str, r['per_session']))} |",
        f"| errors | {len(r['errors'])} |",
        f"| cross-talk (answer about another event or thread, foreign messages in a chat or an agent thread) | {len(r['crosstalk'])} |",
        f"| answers with a contradicted claim | {r['answers_with_contradicted_claim']} |",
        f"| latency p50 / p95 / max, s | {_s(r['latency_p50_s'])} / {_s(r['latency_p95_s'])} / {_s(r['latency_max_s'])} |",
        "", "| question kind | n | p50 s | p95 s |", "| --- | --- | --- | --- |",
    ]
    lines += [f"| {k} | {v['n']} | {_s(v['p50_s'])} | {_s(v['p95_s'])} |" for k, v in r["by_kind"].items()]
    if r["errors"] or r["crosstalk"]:
        lines += ["", "Problems:", ""] + [f"- {e}" for e in (r["errors"] + r["crosstalk"])[:30]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--brain", default="rules", choices=["rules", "vlm"])
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--out", default="evals/reports")
    p.add_argument("--name", default="ui_load")
    p.add_argument("--note", default="", help="a sentence about the machine, added to the report")
    a = p.parse_args(argv)
    r = run(a.sessions, a.seconds, a.brain, a.concurrency, a.out, a.name, a.note)
    return 0 if not r["errors"] and not r["crosstalk"] else 1


if __name__ == "__main__":
    sys.exit(main())
