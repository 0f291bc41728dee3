"""The `openai` brain against real HTTP servers, through `larsight ask`: `transformers serve`
answering /v1/chat/completions with the bundled SmolLM2 (the whole loop: a tool call parsed
from the server's reply, its observation, a validated answer), and servers that answer garbage,
never answer, or are not there (one clear line and exit code 4 within a bounded time)."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.processes import stop

pytest.importorskip("langchain_openai", reason="the openai brain's extra")

REPO = Path(__file__).resolve().parents[1]
EVENT = "sim:nu:seed=2:voxel=0.6:index=99"    # a fixed key: the prompt, hence the greedy reply, is fixed
EXIT_NO_ANSWER = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(base_url: str, question: str, tmp_path, env: dict, timeout: float, *extra: str):
    cmd = [sys.executable, "-m", "larsight.ui.cli", "ask", "--brain", "openai", "--base-url", base_url,
           "--db", str(tmp_path / "threads.sqlite"), "--run-dir", str(tmp_path / "run"), *extra, EVENT, question]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "garbage"

    def log_message(self, *a):   # keep the test output clean
        pass

    def do_GET(self):
        self._reply(json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.mode == "silent":
            time.sleep(30)
        self._reply(b"<html>definitely not a chat completion</html>")

    def _reply(self, body: bytes):
        try:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def fake_server():
    servers = []

    def start(mode: str) -> str:
        handler = type("H", (_Handler,), {"mode": mode})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("mode, words", [
    ("garbage", "not an OpenAI chat completion"),
    ("silent", "did not answer within 2 s"),
    ("down", "cannot reach the model server"),
])
def test_bad_servers_give_one_clear_error_not_a_hang(mode, words, fake_server, tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/v1" if mode == "down" else fake_server(mode)
    env = {"LARSIGHT_OPENAI_TIMEOUT": "2", "LARSIGHT_OPENAI_MAX_RETRIES": "0"}
    p, took = _ask(url, "Where is the vertex?", tmp_path, env, timeout=240)
    assert p.returncode == EXIT_NO_ANSWER, p.stdout[-800:] + p.stderr[-800:]
    err = [line for line in p.stderr.splitlines() if line.startswith("larsight ask: error:")]
    assert len(err) == 1 and words in err[0] and url in err[0], p.stderr[-1200:]
    assert "Traceback" not in p.stderr


@pytest.fixture
def transformers_server(smollm2_dir, tmp_path):
    """`transformers serve` on 127.0.0.1 with the converted SmolLM2 folder (float32: bf16 matmuls
    are several times slower on CPUs without bf16 units)."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        pytest.skip("the `transformers` command is not installed")
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([exe, "serve", str(smollm2_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", "--dtype", "float32", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "transformers serve did not start within 300 s"
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc, log)


def test_ask_through_transformers_serve(transformers_server, tmp_path):
    # SmolLM2's chat template has no tools and transformers serve parses no tool calls for
    # Llama-family models: the text tool format (the tools in the prompt, calls in the reply)
    env = {"LARSIGHT_OPENAI_TOOL_FORMAT": "text", "LARSIGHT_OPENAI_MAX_TOKENS": "96",
           "LARSIGHT_OPENAI_TIMEOUT": "600", "LARSIGHT_OPENAI_MAX_RETRIES": "0"}
    p, _ = _ask(transformers_server, "What is the difference between a track and a shower?", tmp_path, env,
                1800, "--json")
    assert p.returncode == 0, p.stdout[-1500:] + p.stderr[-1500:]
    a = json.loads(p.stdout)
    assert a["brain"] == "openai" and a["stop_reason"] is None and a["text"].strip()
    reasons = [s for s in a["steps"] if s["node"] == "plan"]
    # the model (no name given: the server's only model) chose a tool in its reply's text ...
    assert any(s["decision"] == "tool" and s["text"].startswith("model (tool call written as text)")
               for s in reasons), [s["text"] for s in reasons]
    # ... the tool ran and its observation went back to the model, which then answered ...
    calls = [s["call"] for s in a["steps"] if s.get("call") and s["call"]["purpose"] == "action"]
    assert calls and all(c["ok"] for c in calls) and calls[0]["tool"] in {s["tool"] for s in reasons}
    assert reasons[-1]["decision"] == "answer" and reasons[-1]["text"] == "model answered"
    # ... and every claim of the answer was checked against the measurements
    assert any(s["node"] == "validate" for s in a["steps"])
    assert all(c["verdict"] in ("supported", "contradicted", "unverifiable") for c in a["claims"])


def test_tool_calls_written_as_text_are_parsed():
    """Servers without a tool-call parser return the call in the reply's text."""
    from larsight.agent.brains import parse_text_tool_calls as parse

    assert parse('<tool_call>{"name": "find_vertex", "arguments": {}}</tool_call>') == [
        {"name": "find_vertex", "args": {}, "id": None}]
    assert parse('```json\n{"tool": "find_similar", "arguments": "{\\"k\\": 3}"}\n```')[0]["args"] == {"k": 3}
    assert parse('<tool_call>{"name": "render", "arguments": {"view": "xz"}}')[0]["args"] == {"view": "xz"}
    # a name cut short or arguments that are not JSON: the one tool it names, default arguments
    assert parse('<tool_call>{"name": "classify", "arguments": {...}}</tool_call>')[0]["name"] == "classify_event"
    assert parse('<tool_call>{"name": "find", "arguments": {}}</tool_call>') == []      # find_vertex or find_similar?
    assert parse('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>') == []
    assert parse("The vertex is at (1.0, 2.0, 3.0) cm.") == []


class _Recording(http.server.BaseHTTPRequestHandler):
    """A chat server that records each request body and answers with ``reply`` as the text."""
    reply = ""
    bodies: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.bodies.append(json.loads(self.rfile.read(int(self.headers.get("content-length") or 0))))
        body = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "fake",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": self.reply}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("fmt, reply, action, text", [
    ("text", '<tool_call>{"name": "reconstruct", "arguments": {}}</tool_call>', "tool", None),
    ("text", '<tool_call>{"name": "find_vertex", "arguments": {}}', "tool", None),   # cut at the stop
    ("text", "The reconstruction finds 2 protons.\n<tool_output>", "answer", "The reconstruction finds 2 protons."),
    ("auto", "The reconstruction finds 2 protons.", "answer", "The reconstruction finds 2 protons."),
])
def test_text_mode_sends_stop_sequences_and_reads_the_cut_reply(fmt, reply, action, text):
    """In text mode every request carries the stop sequences (a small model's reply ends at its
    first call or where it starts inventing a tool result) and the reply is read as cut; the
    native mode sends none (a server that parses tool calls needs the closing tag)."""
    from larsight.agent.brains import TEXT_STOP, OpenAIBrain
    from larsight.agent.context import Context

    handler = type("R", (_Recording,), {"reply": reply, "bodies": []})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        brain = OpenAIBrain(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", model_name="fake",
                            tool_format=fmt, max_tokens=64, timeout=10, max_retries=0)
        d = brain.decide(Context(question="How many protons are there?", event=EVENT))
    finally:
        srv.shutdown()
        srv.server_close()
    body = handler.bodies[-1]
    assert body.get("stop") == (list(TEXT_STOP) if fmt == "text" else None)
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 64 and body["temperature"] == 0.0
    assert d.action == action
    if action == "tool":
        assert d.tool in ("reconstruct", "find_vertex")
    else:
        assert d.text == text
