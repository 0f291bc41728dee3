"""The openai brain on the whole dev suite against a local `transformers serve`, resumable.

    nohup nice -n 10 python -m larsight.evals.openai_dev > ~/.cache/larsight/runs/openai_dev.log 2>&1 &
    python -m larsight.evals.openai_dev --status          # cases finished so far, and an estimate

Starts `transformers serve` on 127.0.0.1 with the bundled SmolLM2-135M-Instruct folder
(``qformer.lm.ensure_hf_dir``; float32, one torch thread, ``--port``), waits until it lists its
model, then runs ``python -m larsight.evals.agent_eval --suite evals/suites --brain openai --k 1``
into ``--out`` (default ``~/.cache/larsight/runs/openai_dev``, outside the work tree) with the
settings that keep a 135M model on a CPU bounded (``SETTINGS``: tools described in the prompt
and calls read from the reply text, 64 reply tokens, stop sequences, greedy decoding, one
request at a time, 300 s per request, no retry). The runner keeps one record per finished case
in ``OUT/records.jsonl``: started again with the same options, a killed run continues where it
stopped. The server is stopped when the run ends (or fails). When the run is complete, the
report beside the vlm and rules brains:

    larsight eval agent --brain openai --report-only --out ~/.cache/larsight/runs/openai_dev \\
        --suite evals/suites --no-report      # prints the summary; OUT/report.md has the tables
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path.home() / ".cache" / "larsight" / "runs" / "openai_dev"
SETTINGS = {"LARSIGHT_OPENAI_TOOL_FORMAT": "text", "LARSIGHT_OPENAI_MAX_TOKENS": "64",
            "LARSIGHT_OPENAI_TIMEOUT": "300", "LARSIGHT_OPENAI_MAX_RETRIES": "0",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
"""Environment of the server and the runner (the openai brain reads the LARSIGHT_OPENAI_* ones)."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _models(url: str) -> Optional[list]:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
            return [m["id"] for m in json.load(r)["data"]]
    except (OSError, ValueError, KeyError):
        return None


def start_server(port: int, log: Path, wait_s: float = 600) -> subprocess.Popen:
    """`transformers serve` on 127.0.0.1:``port``, up and listing its model, or RuntimeError."""
    from larsight.qformer.lm import ensure_hf_dir

    if not _port_free(port):
        raise RuntimeError(f"port {port} is in use; choose another with --port")
    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe), "serve", str(ensure_hf_dir()), "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu", "--dtype", "float32"]
    fh = open(log, "a")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **SETTINGS},
                            start_new_session=True)
    deadline = time.monotonic() + wait_s
    while _models(f"http://127.0.0.1:{port}/v1") is None:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with code {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"transformers serve did not answer within {wait_s:.0f} s; see {log}")
        time.sleep(2)
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and the model process it spawned (its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def status(out: Path, n_cases: int) -> str:
    """One line: finished cases, mean wall time per case, and the time left at that pace."""
    path = out / "records.jsonl"
    if not path.exists():
        return f"{out}: no finished case yet"
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not recs:
        return f"{out}: no finished case yet"
    per = sum(r.get("wall_s", 0.0) for r in recs) / len(recs)
    left = max(n_cases - len(recs), 0) * per
    return (f"{out}: {len(recs)}/{n_cases} cases finished, {per:.0f} s per case on average, "
            f"about {left / 3600:.1f} h left at that pace")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m larsight.evals.openai_dev", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"run folder (default {DEFAULT_OUT})")
    ap.add_argument("--suite", default="evals/suites", help="suite files or folder (default: the dev suite)")
    ap.add_argument("--port", type=int, default=18790)
    ap.add_argument("--limit", type=int, default=None, help="only the first N cases (a trial run)")
    ap.add_argument("--status", action="store_true", help="print progress of the run folder and exit")
    args = ap.parse_args(argv)
    out = Path(args.out).expanduser()
    if args.status:
        from larsight.evals.agent_eval.suite import load_suite

        print(status(out, len(load_suite(args.suite))))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    proc = start_server(args.port, out.parent / f"{out.name}.serve.log")
    try:
        cmd = [sys.executable, "-m", "larsight.evals.agent_eval", "--suite", args.suite, "--brain", "openai",
               "--base-url", f"http://127.0.0.1:{args.port}/v1", "--k", "1", "--workers", "1",
               "--out", str(out), "--no-report", "--no-progress",
               "--index-root", str(out.parent / "eval_index")]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        print("running:", " ".join(cmd), flush=True)
        return subprocess.run(cmd, cwd=REPO, env={**os.environ, **SETTINGS}).returncode
    finally:
        stop_server(proc)


if __name__ == "__main__":
    sys.exit(main())
