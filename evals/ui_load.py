"""Load check of the chat app: normal sessions asking questions through Gradio's queue, first on
their own (clean), then alongside sessions that abuse the upload (issue 18).

    python -m larsight.evals.ui_load                      # 8 sessions, 60 s clean + 60 s abused, rules brain
    python -m larsight.evals.ui_load --no-abuse --brain vlm --name ui_load_vlm

Starts the app in this process on a free port (``ui.app.build_app`` + ``launch``; uploads up to
``--max-upload-mb``), then runs ``sessions`` threads, each with its own ``gradio_client.Client``
(its own Gradio session, hence its own ``gr.State`` and conversation thread). Each normal
session simulates its own event (mode nu, seed 100 + i), then asks questions from ``QUESTIONS``
in turn, passing its chat history back, until ``seconds`` have passed (the question under way
when time runs out is finished).

Abusive sessions (second phase) repeat, until the phase ends:
- ``corrupt``: upload a file that hangs libhdf5 (``write_hanging_h5``), random bytes named
  ``.h5``, or a truncated file, and load it: the app must answer with a clear message;
- ``oversized``: POST a file over the size limit straight to Gradio's upload route (as a
  hostile client would, skipping gradio_client's own check): the server must refuse it;
- ``slow``: trickle a valid file to the upload route over ``SLOW_UPLOAD_S`` seconds, then
  load it: it must load, and must not hold a worker thread while it trickles.

Checked for every normal answer (a failure counts as an error or as cross-talk, never
silently): the call returns and the answer JSON is there; it is about the session's own event
and thread, and the returned chat holds exactly the session's own questions; at the end each
agent thread holds exactly its session's questions. After the abused phase: CPU of every
thread of the server process and of its reader processes over ``IDLE_WINDOW_S`` of quiet
(a pinned thread shows ~100 %), and what the uploads left on disk.
Latency: seconds from submitting a question to its last streamed update, client side (queue
wait included). Writes ``evals/reports/<name>.json`` and ``.md``. Not a test: timings depend
on the machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import h5py
import httpx
import numpy as np
import psutil

from larsight import events

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# gradio, its client and the app (the agent's models: ~10 s to import) are imported inside the
# functions that run the check, not when a test borrows write_hanging_h5

QUESTIONS = (("class", "Classify this event and explain why."),
             ("vertex", "Where is the vertex?"),
             ("protons", "How many protons are there?"),
             ("particles", "List the particles with their energies."),
             ("describe", "Describe this event."),
             ("general", "What is a Michel electron?"))
ABUSE = {"corrupt": 2, "oversized": 1, "slow": 1}
"""Abusive sessions of each kind in the second phase."""
SLOW_UPLOAD_S = 20.0
IDLE_WINDOW_S = 5.0
MESSAGE_WITHIN_S = 10.0
"""The issue's bound: a corrupt upload gets its message within this many seconds."""
P95_FACTOR = 1.5
"""The issue's bound: normal sessions' p95 under abuse within this factor of the clean p95."""


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


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


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


# ============================================================================ hostile files
def write_hanging_h5(path: Path, seed: int = 3) -> Path:
    """A 5-event file on which libhdf5 spins forever in ``Dataset.__getitem__``: 4 KB zeroed
    8 KB into the global heap that holds 'larsight_order' (its structure still counts)."""
    events.write(path, list(events.sim.simulate("nu", 5, seed=seed)))
    ref = np.dtype([("len", "<u4"), ("addr", "<u8"), ("idx", "<u4")])
    with h5py.File(path, "r") as f:
        _, raw = f["larsight_order"].id.read_direct_chunk((0,))
    heap = int(np.frombuffer(raw[:ref.itemsize], dtype=ref)["addr"][0])
    with open(path, "r+b") as fh:
        fh.seek(heap + 8192)
        fh.write(b"\0" * 4096)
    return path


def hostile_files(folder: Path, max_upload_mb: float) -> dict[str, list[Path]]:
    """The files the abusive sessions upload, by kind (and a good one for the slow upload)."""
    good = folder / "good.h5"
    events.write(good, list(events.sim.simulate("nu", 2, seed=7)))
    junk = folder / "junk.h5"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    cut = folder / "truncated.h5"
    shutil.copy(good, cut)
    os.truncate(cut, good.stat().st_size // 2)
    big = folder / "oversized.h5"
    with open(big, "wb") as fh:
        fh.truncate(int((max_upload_mb + 1) * 2**20))
    return {"corrupt": [write_hanging_h5(folder / "hanging.h5"), junk, cut], "oversized": [big],
            "slow": [good]}


# ============================================================================ sessions
def _normal_session(i: int, url: str, deadline: float, results: list, lock: threading.Lock) -> dict:
    rec = {"session": i, "ref": None, "thread": None, "asked": [], "errors": [], "crosstalk": []}
    try:
        c = _client(url)
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


def _load(c, file_arg) -> str:
    status, _, _ = c.predict(file_arg, 0, "energy", True, "reco", api_name="/load_file")
    return status


def _attack_corrupt(c, url: str, path: Path) -> tuple[bool, str]:
    from gradio_client import handle_file

    status = _load(c, handle_file(str(path)))
    clear = status.startswith("⚠ **Error:**") and path.name in status and "Traceback" not in status
    return clear, status


def _attack_oversized(c, url: str, path: Path) -> tuple[bool, str]:
    with open(path, "rb") as fh:
        r = httpx.post(c.upload_url, files=[("files", (path.name, fh))], timeout=120)
    return r.status_code == 413, f"HTTP {r.status_code}: {r.text[:120]}"


def _slow_body(path: Path, boundary: str, seconds: float):
    data = path.read_bytes()
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"slow.h5\"\r\n"
           f"Content-Type: application/octet-stream\r\n\r\n").encode()
    step = max(1, len(data) // 40)
    for k in range(0, len(data), step):
        time.sleep(seconds / 40)
        yield data[k:k + step]
    yield f"\r\n--{boundary}--\r\n".encode()


def _attack_slow(c, url: str, path: Path) -> tuple[bool, str]:
    boundary = "larsight-slow-upload"
    r = httpx.post(c.upload_url, content=_slow_body(path, boundary, SLOW_UPLOAD_S), timeout=300,
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    if r.status_code != 200:
        return False, f"HTTP {r.status_code}: {r.text[:120]}"
    server_path = r.json()[0]
    status = _load(c, {"path": server_path, "orig_name": "slow.h5", "meta": {"_type": "gradio.FileData"}})
    return "upload slow.h5, event 0 of 2" in status, status


ATTACKS: dict[str, Callable] = {"corrupt": _attack_corrupt, "oversized": _attack_oversized,
                                "slow": _attack_slow}


def _own_copies(files: list[Path], tag: str) -> list[Path]:
    """Copies of ``files`` with ``tag`` appended (HDF5 ignores bytes past its end): another
    content, as another attacker's files would be (Gradio stores an upload by its content)."""
    out = []
    for f in files:
        dst = f.with_name(f"{f.stem}-{tag}{f.suffix}")
        shutil.copyfile(f, dst)
        with open(dst, "ab") as fh:
            fh.write(tag.encode())
        out.append(dst)
    return out


def _abusive_session(kind: str, j: int, url: str, deadline: float, files: list[Path], results: list,
                     lock: threading.Lock) -> None:
    c = _client(url)
    if kind == "corrupt":
        files = _own_copies(files, f"s{j}")
    n = 0
    while time.time() < deadline:
        path = files[(n + j) % len(files)]
        n += 1
        t0 = time.perf_counter()
        try:
            ok, text = ATTACKS[kind](c, url, path)
        except Exception as e:  # noqa: BLE001 - a failure of the attack is recorded, not fatal
            ok, text = False, f"{type(e).__name__}: {e}"
        with lock:
            results.append({"kind": kind, "file": path.name, "latency_s": time.perf_counter() - t0,
                            "ok": ok, "message": " ".join(text.split())[:300]})


def _phase(url: str, sessions: int, seconds: float, abuse: dict[str, int],
           files: dict[str, list[Path]]) -> dict:
    """Normal sessions (and abusive ones, by kind) for ``seconds``."""
    results: list = []
    attacks: list = []
    lock = threading.Lock()
    recs: list = [None] * sessions
    deadline = time.time() + seconds

    def normal(k):
        recs[k] = _normal_session(k, url, deadline, results, lock)

    threads = [threading.Thread(target=normal, args=(k,)) for k in range(sessions)]
    for kind, count in abuse.items():
        threads += [threading.Thread(target=_abusive_session,
                                     args=(kind, j, url, deadline, files[kind], attacks, lock))
                    for j in range(count)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": results, "recs": recs, "attacks": attacks, "wall_s": time.time() - start}


def _merge(phases: list[dict]) -> dict:
    """One phase made of several rounds."""
    return {"results": [x for p in phases for x in p["results"]], "recs": [r for p in phases for r in p["recs"]],
            "attacks": [a for p in phases for a in p["attacks"]], "wall_s": sum(p["wall_s"] for p in phases)}


# ============================================================================ after the abuse
def _idle_cpu(window_s: float = IDLE_WINDOW_S) -> dict:
    """CPU % of every thread of this process and of its child processes over a quiet window."""
    me = psutil.Process()
    kids = me.children(recursive=True)
    t0 = {t.id: t.user_time + t.system_time for t in me.threads()}
    c0 = {}
    for k in kids:
        try:
            c0[k.pid] = sum(k.cpu_times()[:2])
        except psutil.Error:
            pass
    time.sleep(window_s)
    threads = {t.id: 100 * (t.user_time + t.system_time - t0.get(t.id, 0.0)) / window_s for t in me.threads()}
    children = {}
    for k in kids:
        try:
            children[k.pid] = 100 * (sum(k.cpu_times()[:2]) - c0.get(k.pid, 0.0)) / window_s
        except psutil.Error:
            pass
    return {"window_s": window_s, "threads": len(threads),
            "max_thread_cpu_pct": round(max(threads.values(), default=0.0), 1),
            "threads_over_50pct": sum(v > 50 for v in threads.values()),
            "reader_processes": len(children),
            "max_reader_cpu_pct": round(max(children.values(), default=0.0), 1)}


def _disk(kept: Path) -> dict:
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder())
    cached = [p for p in cache.rglob("*") if p.is_file()] if cache.is_dir() else []
    files = [p for p in kept.iterdir() if p.is_file()] if kept.is_dir() else []
    return {"kept_files": len(files), "kept_mb": round(sum(p.stat().st_size for p in files) / 2**20, 2),
            "gradio_cache_files": sum(p.stat().st_size > 0 for p in cached),
            "gradio_cache_mb": round(sum(p.stat().st_size for p in cached) / 2**20, 2),
            "gradio_cache_empty_files": sum(p.stat().st_size == 0 for p in cached)}


# ============================================================================ the check
def _latency(results: list) -> dict:
    lat = [x["latency_s"] for x in results]
    by_kind = {}
    for kind, _ in QUESTIONS:
        xs = [x["latency_s"] for x in results if x["kind"] == kind]
        by_kind[kind] = {"n": len(xs), "p50_s": _pct(xs, 0.5), "p95_s": _pct(xs, 0.95)}
    return {"questions": len(results), "latency_p50_s": _pct(lat, 0.5), "latency_p95_s": _pct(lat, 0.95),
            "latency_max_s": max(lat) if lat else None,
            "latency_mean_s": statistics.fmean(lat) if lat else None, "by_kind": by_kind}


def _summary(ph: dict, bot, history_size: int) -> dict:
    recs = ph["recs"]
    for r in recs:   # server side: each SQLite thread holds exactly its session's questions
        if r["thread"]:
            hist = [h.get("question") for h in bot.history(r["thread"])]
            if hist != r["asked"][-history_size:]:
                r["crosstalk"].append(f"agent thread holds {hist[-3:]!r}, session asked {r['asked'][-3:]!r}")
    out = {"wall_s": round(ph["wall_s"], 1), "per_session": [len(r["asked"]) for r in recs],
           "throughput_per_min": round(len(ph["results"]) / ph["wall_s"] * 60, 1) if ph["wall_s"] else None,
           "errors": [e for r in recs for e in r["errors"]],
           "crosstalk": [e for r in recs for e in r["crosstalk"]],
           "answers_with_contradicted_claim": sum(1 for x in ph["results"] if x["n_contradicted"]),
           **_latency(ph["results"])}
    attacks = {}
    for kind in ABUSE:
        xs = [a for a in ph["attacks"] if a["kind"] == kind]
        if xs:
            lat = [a["latency_s"] for a in xs]
            attacks[kind] = {"n": len(xs), "ok": sum(a["ok"] for a in xs), "p50_s": _pct(lat, 0.5),
                             "p95_s": _pct(lat, 0.95), "max_s": max(lat),
                             "examples": sorted({a["message"][:160] for a in xs})[:3],
                             "failures": [a for a in xs if not a["ok"]][:5]}
    out["attacks"] = attacks
    return out


def run(sessions: int = 8, seconds: float = 60.0, brain: str = "rules", concurrency: int = 4,
        out_dir: str = "evals/reports", name: str = "ui_load", note: str = "", abuse: bool = True,
        max_upload_mb: float = 5.0, rounds: int = 2) -> dict:
    from larsight.agent import Agent
    from larsight.agent.graph import HISTORY_SIZE
    from larsight.ui.app import build_app, launch

    tmp = Path(tempfile.mkdtemp(prefix="larsight-ui-load-"))
    files = hostile_files(tmp, max_upload_mb) if abuse else {}
    bot = Agent(brain, run_dir=tmp / "run", db=tmp / "threads.sqlite")
    demo = build_app(agent=bot, index=tmp / "no-index", run_dir=tmp / "run", concurrency=concurrency,
                     max_upload_mb=max_upload_mb)
    port = _free_port()
    launch(demo, port=port, prevent_thread_lock=True, quiet=True, max_upload_mb=max_upload_mb)
    url = f"http://127.0.0.1:{port}/"
    try:
        t0 = time.perf_counter()   # warm-up: models load once, one question of each kind
        w = _client(url)
        w.predict("nu", 99, 0, "energy", True, "reco", api_name="/simulate")
        for _, q in QUESTIONS:
            w.predict(q, [], api_name="/ask")
        if abuse:                  # and the reader process starts once
            _attack_corrupt(w, url, files["corrupt"][1])
        warm = time.perf_counter() - t0
        print(f"warm-up {warm:.1f} s; {sessions} sessions, {rounds} round(s) of {seconds / rounds:.0f} s "
              f"clean" + (f" then {seconds / rounds:.0f} s with abusive sessions {ABUSE}" if abuse else ""),
              file=sys.stderr)
        raw: dict[str, list] = {"clean": [], "abused": []}
        for _ in range(rounds):     # alternated, so that a drift of the machine's load hits both
            raw["clean"].append(_phase(url, sessions, seconds / rounds, {}, files))
            if abuse:
                raw["abused"].append(_phase(url, sessions, seconds / rounds, ABUSE, files))
        phases = {k: _summary(_merge(v), bot, HISTORY_SIZE) for k, v in raw.items() if v}
        if abuse:
            time.sleep(1.0)
            phases["abused"]["after"] = {**_idle_cpu(), **_disk(demo.larsight_uploads.folder)}
    finally:
        demo.close()

    report = {
        "command": "python -m larsight.evals.ui_load " + shlex.join(sys.argv[1:]),
        "brain": brain, "sessions": sessions, "seconds": seconds, "rounds": rounds, "concurrency": concurrency,
        "max_upload_mb": max_upload_mb, "abusive_sessions": ABUSE if abuse else {},
        "warm_up_s": round(warm, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_threads": os.environ.get("OMP_NUM_THREADS"), "platform": platform.platform()},
        **phases["clean"], "phases": phases, "note": note,
    }
    if abuse:
        report["targets"] = targets(phases)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return report


def targets(phases: dict) -> dict:
    """The issue's targets, each with its measured value and whether it is met."""
    clean, abused = phases["clean"], phases["abused"]
    corrupt = abused["attacks"].get("corrupt", {})
    ratio = (abused["latency_p95_s"] / clean["latency_p95_s"]
             if abused["latency_p95_s"] and clean["latency_p95_s"] else None)
    after = abused["after"]
    return {
        "corrupt_message_max_s": {"value": corrupt.get("max_s"), "bound": MESSAGE_WITHIN_S,
                                  "met": bool(corrupt) and corrupt["max_s"] <= MESSAGE_WITHIN_S
                                  and corrupt["ok"] == corrupt["n"]},
        "p95_ratio": {"value": ratio, "bound": P95_FACTOR, "met": ratio is not None and ratio <= P95_FACTOR},
        "no_thread_pinned": {"value": after["max_thread_cpu_pct"], "bound": 50,
                             "met": after["threads_over_50pct"] == 0 and after["max_reader_cpu_pct"] <= 50},
    }


def _s(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def _phase_rows(r: dict) -> list[str]:
    return [
        f"| questions answered | {r['questions']} in {r['wall_s']:.0f} s ({r['throughput_per_min']} per minute) |",
        f"| per session | {', '.join(map(str, r['per_session']))} |",
        f"| errors | {len(r['errors'])} |",
        f"| cross-talk (answer about another event or thread, foreign messages in a chat or an agent thread) | {len(r['crosstalk'])} |",
        f"| answers with a contradicted claim | {r['answers_with_contradicted_claim']} |",
        f"| latency p50 / p95 / max, s | {_s(r['latency_p50_s'])} / {_s(r['latency_p95_s'])} / {_s(r['latency_max_s'])} |",
    ]


def markdown(r: dict) -> str:
    m = r["machine"]
    phases = r["phases"]
    abused = phases.get("abused")
    title = f"# Chat app load check: {r['sessions']} sessions for {r['seconds']:.0f} s ({r['brain']} brain)"
    if abused:
        title += ", clean and under abuse"
    lines = [
        title, "",
        f"Command: `{r['command'].strip()}`. The app ran in the measuring process (Gradio queue, "
        f"{r['concurrency']} questions at once, uploads up to {r['max_upload_mb']:g} MB); each "
        f"session is its own `gradio_client.Client` (own Gradio session, `gr.State`, conversation "
        f"thread) with its own simulated event, asking questions in turn and passing its chat back. "
        f"Machine: {m['cpus']} CPUs (OMP_NUM_THREADS={m['omp_threads'] or 'unset'}), Python {m['python']}. "
        f"Latency is client side, from submitting a question to its last streamed update (queue "
        f"wait included). Warm-up (model loading, one question of each kind) took "
        f"{r['warm_up_s']:.1f} s and is not counted."
        + (f" The clean and the abused phases alternated in {r['rounds']} rounds of "
           f"{r['seconds'] / r['rounds']:.0f} s each, so that a change of the machine's load hits both."
           if abused else "")
        + (f" {r['note']}" if r.get("note") else ""),
        "",
    ]
    if not abused:
        lines += ["| metric | value |", "| --- | --- |", *_phase_rows(phases["clean"])]
    else:
        lines += _abuse_md(r)
    lines += ["", "Normal sessions, by question kind:", "",
              "| question kind | n | p50 s | p95 s |" + (" under abuse: n | p50 s | p95 s |" if abused else ""),
              "| --- | --- | --- | --- |" + (" --- | --- | --- |" if abused else "")]
    for k, v in phases["clean"]["by_kind"].items():
        row = f"| {k} | {v['n']} | {_s(v['p50_s'])} | {_s(v['p95_s'])} |"
        if abused:
            a = abused["by_kind"][k]
            row += f" {a['n']} | {_s(a['p50_s'])} | {_s(a['p95_s'])} |"
        lines.append(row)
    problems = [e for ph in phases.values() for e in ph["errors"] + ph["crosstalk"]]
    if problems:
        lines += ["", "Problems:", ""] + [f"- {e}" for e in problems[:30]]
    return "\n".join(lines) + "\n"


def _abuse_md(r: dict) -> list[str]:
    clean, abused = r["phases"]["clean"], r["phases"]["abused"]
    c_rows, a_rows = _phase_rows(clean), _phase_rows(abused)
    lines = ["Normal sessions, clean and alongside the abusive sessions "
             f"({', '.join(f'{n} {k}' for k, n in r['abusive_sessions'].items())}):", "",
             "| metric | clean | under abuse |", "| --- | --- | --- |"]
    for c, a in zip(c_rows, a_rows):
        head, cv = c.strip("| ").split(" | ", 1)
        _, av = a.strip("| ").split(" | ", 1)
        lines.append(f"| {head} | {cv} | {av} |")
    lines += ["", "Abusive requests (latency from the request to the app's answer):", "",
              "| kind | requests | handled as expected | p50 / p95 / max, s | what the app said |",
              "| --- | --- | --- | --- | --- |"]
    for kind, a in abused["attacks"].items():
        said = "; ".join(a["examples"]).replace("|", "\\|")
        lines.append(f"| {kind} | {a['n']} | {a['ok']} | {_s(a['p50_s'])} / {_s(a['p95_s'])} / "
                     f"{_s(a['max_s'])} | {said} |")
    after = abused["after"]
    lines += ["", f"After the abused phase, {after['window_s']:.0f} s of quiet: the busiest of the server "
              f"process's {after['threads']} threads used {after['max_thread_cpu_pct']:.1f} % of a CPU "
              f"({after['threads_over_50pct']} over 50 %); {after['reader_processes']} reader process(es) "
              f"alive, the busiest at {after['max_reader_cpu_pct']:.1f} %. Kept uploads: "
              f"{after['kept_files']} file(s), {after['kept_mb']} MB; Gradio's upload cache: "
              f"{after['gradio_cache_files']} file(s), {after['gradio_cache_mb']} MB (and "
              f"{after['gradio_cache_empty_files']} empty temporary file(s): Gradio leaves one behind for "
              f"some refused oversized uploads; the folder is shared by every Gradio app on the machine)."]
    t = r["targets"]
    lines += ["", "| target | measured | met |", "| --- | --- | --- |",
              f"| a corrupt upload gets a clear message within {MESSAGE_WITHIN_S:g} s | slowest "
              f"{_s(t['corrupt_message_max_s']['value'])} s | {'yes' if t['corrupt_message_max_s']['met'] else 'no'} |",
              f"| normal sessions' p95 within {P95_FACTOR:g}x of the clean p95 | "
              f"{_s(t['p95_ratio']['value'])}x | {'yes' if t['p95_ratio']['met'] else 'no'} |",
              f"| no thread left pinned | busiest thread {t['no_thread_pinned']['value']:.1f} % | "
              f"{'yes' if t['no_thread_pinned']['met'] else 'no'} |"]
    fails = [f for a in abused["attacks"].values() for f in a["failures"]]
    if fails:
        lines += ["", "Abusive requests not handled as expected:", ""]
        lines += [f"- {f['kind']} {f['file']} ({f['latency_s']:.1f} s): {f['message']}" for f in fails[:10]]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0, help="length of each phase (clean, abused)")
    p.add_argument("--rounds", type=int, default=2, help="the phases alternate this many times")
    p.add_argument("--brain", default="rules", choices=["rules", "vlm"])
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-upload-mb", type=float, default=5.0)
    p.add_argument("--no-abuse", action="store_true", help="the clean phase only")
    p.add_argument("--out", default="evals/reports")
    p.add_argument("--name", default="ui_load")
    p.add_argument("--note", default="", help="a sentence about the machine, added to the report")
    a = p.parse_args(argv)
    r = run(a.sessions, a.seconds, a.brain, a.concurrency, a.out, a.name, a.note, not a.no_abuse,
            a.max_upload_mb, a.rounds)
    bad = [e for ph in r["phases"].values() for e in ph["errors"] + ph["crosstalk"]]
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
