"""Run a suite through the agent: k trials per case, N worker processes, resumable.

    from larsight.evals.agent_eval import run_agent_eval
    summary = run_agent_eval("evals/suites", brain="rules", out="runs/eval_rules", k=3)

Layout of a run folder ``out``:

- ``run.json``: brain, options, suite files and fingerprint, and every session that added
  trials to the folder (command, workers, wall time, trials; written atomically);
- ``records.jsonl``: one line per finished (case, trial): the case's fingerprint, every
  turn's answer (text, tools with their arguments, stated values, claims and verdicts,
  latency, steps) and its scores (``scoring.score_case``). The only writer is the main
  process; each line is flushed and fsync'ed when its trial finishes, so a killed run loses
  only the trials in flight. On start, a torn last line and records of cases whose definition
  changed since are dropped (the file is rewritten atomically) and finished (case, trial)
  pairs are skipped: a killed run continues where it stopped. Raising ``k`` runs only the
  missing trials;
- ``report.md`` / ``report.json``: this run's metrics (``metrics.summarize``).

Cost: events are simulated once per process (the agent's event registry keeps them by
reference; cases run grouped by event) and each worker caches tool results per (tool,
arguments, event), so the k trials of a case and the cases of one event run every tool once
(``tool_cache=False`` re-runs the tools). The brain is never cached: every trial asks it again.
``workers > 1`` runs cases in spawned processes (each loads its own models: ~1.7 GB with the
VLM); ``workers=1`` runs in this process.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing as mp
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from tqdm.auto import tqdm

from larsight.agent import Agent
from larsight.agent.brains import SYSTEM_PROMPT
from larsight.agent.safety import guard_leak
from larsight.agent.toolset import ToolSet
from larsight.events.formats.atomic import atomic_open
from larsight.tools.index_build import build_index

from .brains import brain_label, make_eval_brain, reseed
from .metrics import summarize
from .report import write_run_report
from .scoring import score_case
from .suite import Case, load_suite, suite_files, suite_hash

__all__ = ["run_agent_eval", "rescore_run", "rescored_runs", "finalize", "Worker", "turn_record", "load_records", "CachingToolSet", "DEFAULT_INDEX_ROOT"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INDEX_ROOT = Path("runs") / "eval_index"
RECORDS = "records.jsonl"


# ============================================================================ tools
class CachingToolSet(ToolSet):
    """The agent's ``ToolSet`` with results cached per (tool, arguments, event); ``render``
    writes a file per call and is never cached."""

    SIZE = 512

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def like(cls, base: ToolSet) -> "CachingToolSet":
        """A caching tool set with the settings of ``base`` (an agent's own tool set)."""
        return cls(base.overrides, run_dir=base.run_dir, index=base.index, tool_kwargs=base.tool_kwargs)

    def call(self, tool, args, event_ref_):
        if tool == "render":
            return super().call(tool, args, event_ref_)
        key = (tool, json.dumps(args.model_dump(mode="json"), sort_keys=True, default=str), event_ref_)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        result = super().call(tool, args, event_ref_)
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > self.SIZE:
                self._cache.popitem(last=False)
        return result


def _secrets(brain) -> list[str]:
    """What an answer must not echo: the brain's own prompts (the vlm brain's system prompt) and
    the openai brain's system prompt."""
    out = []
    f = getattr(brain, "secrets", None)
    if callable(f):
        out += list(f())
    out.append(SYSTEM_PROMPT)
    return list(dict.fromkeys(s for s in out if s))


# ============================================================================ records
def turn_record(answer, question: str, secrets: list[str]) -> dict:
    """The JSON record of one answered turn (what scoring and reports read)."""
    calls = [{"tool": c.tool, "arguments": c.arguments, "ok": c.ok, "error": c.error,
              "error_kind": c.error_kind, "seconds": round(c.seconds, 4)} for c in answer.tool_calls]
    verify = [{"tool": s.call.tool, "ok": s.call.ok} for s in answer.steps
              if s.call is not None and s.call.purpose != "action"]
    hits = None
    for c in answer.tool_calls:
        if c.tool == "find_similar" and c.ok and isinstance(c.output, dict):
            hits = [{"key": h.get("key"), "event_class": h.get("event_class"), "topology": h.get("topology")}
                    for h in c.output.get("hits") or [] if isinstance(h, dict)]
    claims = [{"kind": c.claim.kind, "particle": c.claim.particle, "subject": c.claim.subject,
               "source": c.claim.source, "verdict": c.verdict, "tool": c.tool,
               "text": (c.claim.text or c.claim.describe())[:120]} for c in answer.claims]
    first = answer.first_draft_checks
    text = answer.text or ""
    p_tool = next((round(1.0 - float(st.scores["answer"]), 6) for st in answer.steps
                   if st.scores and "answer" in st.scores), None)
    return {"p_tool": p_tool, "question": question, "event": answer.event, "text": text, "trajectory": answer.trajectory,
            "calls": calls, "verify_calls": verify, "similar_hits": hits,
            "values": json.loads(json.dumps(answer.values, default=list)), "claims": claims,
            "n_claims": len(answer.claims), "n_supported": answer.n_supported,
            "n_contradicted": answer.n_contradicted, "n_unverifiable": answer.n_unverifiable,
            "first_draft": {"n_claims": sum(first.values()), "n_contradicted": first.get("contradicted", 0)},
            "revisions": answer.revisions, "stop": answer.stop_reason, "latency_s": answer.latency_s,
            "n_steps": len(answer.steps), "leak": bool(secrets) and guard_leak(text, secrets) != text,
            "injection_removed": bool(answer.injection_removed)}


def load_records(path: Union[str, os.PathLike], cases: Optional[dict[str, Case]] = None,
                 repair: bool = False) -> dict[tuple[str, int], dict]:
    """Finished records by (case id, trial); with ``cases``, only those of these cases whose
    definition is unchanged (same fingerprint). ``repair``: rewrite the file atomically without
    torn lines and without records of these cases made before they changed (records of other
    cases, e.g. outside a ``--tags`` selection, are kept)."""
    path = Path(path)
    out: dict[tuple[str, int], dict] = {}
    keep: list[str] = []
    if not path.exists():
        return out
    bad = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                key = (str(rec["case"]), int(rec["trial"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                bad += 1
                continue
            if cases is not None and key[0] in cases and rec.get("fp") not in cases[key[0]].fingerprints():
                bad += 1
                continue
            keep.append(line if line.endswith("\n") else line + "\n")
            if cases is None or key[0] in cases:
                out[key] = rec
    if repair and bad:
        with atomic_open(path, "w") as f:
            f.writelines(keep)
    return out


class _Writer:
    """Appends records to records.jsonl, one flushed and fsync'ed line per record."""

    def __init__(self, path: Path):
        self.f = open(path, "a", encoding="utf-8")

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


# ============================================================================ the worker
class Worker:
    """Asks the cases' questions with one brain (one per process)."""

    def __init__(self, brain: Any = "rules", brain_kw: Optional[dict] = None, temperature: float = 0.0,
                 run_dir: Union[str, os.PathLike] = "runs/eval", tool_cache: bool = True,
                 tools: Optional[dict] = None, index_map: Optional[dict[str, str]] = None):
        self.brain = make_eval_brain(brain, temperature=temperature, **(brain_kw or {}))
        self.run_dir = Path(run_dir)
        self.tool_cache = tool_cache
        self.tools = tools
        self.index_map = dict(index_map or {})
        self.agents: dict[Optional[str], Any] = {}
        self.secrets = _secrets(self.brain)

    def agent(self, index: Optional[str]):
        if index not in self.agents:
            db = self.run_dir / "threads" / f"{os.getpid()}.sqlite"
            db.parent.mkdir(parents=True, exist_ok=True)
            folder = self.index_map.get(index, index) if index else None
            bot = Agent(self.brain, tools=self.tools, run_dir=self.run_dir / "tool_files", db=db, index=folder)
            if self.tool_cache:
                bot.toolset = CachingToolSet.like(bot.toolset)
            self.agents[index] = bot
        return self.agents[index]

    def run_trial(self, case: Case, trial: int) -> dict:
        bot = self.agent(case.index)
        reseed(self.brain, case.id, trial)
        multi = len(case.turns) > 1
        tid = f"{case.id}#{trial}#{uuid.uuid4().hex[:8]}" if multi else None
        turns = []
        t0 = time.perf_counter()
        try:
            for turn, event in zip(case.turns, case.events):
                try:
                    answer = bot.ask(event, turn.question, thread_id=tid)
                except Exception as e:  # noqa: BLE001 - a crash is a scored failure, not the end of the run
                    turns.append({"question": turn.question, "error": f"{type(e).__name__}: {e}"[:500],
                                  "trajectory": [], "calls": [], "latency_s": 0.0, "n_steps": 0})
                    break
                turns.append(turn_record(answer, turn.question, self.secrets))
        finally:
            if tid is not None:
                try:
                    bot.forget(tid)
                except Exception:  # noqa: BLE001
                    pass
        score = score_case(case, turns)
        return {"case": case.id, "trial": trial, "fp": case.fingerprint(), "tags": case.tags,
                "brain": getattr(self.brain, "name", type(self.brain).__name__), "turns": turns,
                "score": score, "wall_s": round(time.perf_counter() - t0, 4), "pid": os.getpid(),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def run(self, case: Case, trials: Iterable[int]) -> list[dict]:
        return [self.run_trial(case, t) for t in trials]


_WORKER: Optional[Worker] = None


def _exit_with_parent(parent: int) -> None:
    """A worker whose main process died (killed run) stops instead of running on as an orphan."""
    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            os._exit(0)


def _init_worker(kw: dict) -> None:
    global _WORKER
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch  # heavy: only worker processes set its thread count, and only if it is installed

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    except ImportError:
        pass
    _WORKER = Worker(**kw)


def _task(case_json: dict, trials: list[int]) -> list[dict]:
    assert _WORKER is not None
    return _WORKER.run(Case.model_validate(case_json), trials)


# ============================================================================ indexes
def resolve_indexes(cases: list[Case], root: Union[str, os.PathLike] = DEFAULT_INDEX_ROOT,
                    progress: bool = True, vlm: Optional[str] = None) -> dict[str, str]:
    """Folder of each index the cases name; a ``sim:...`` spec is built once under ``root``
    (``tools.index_build.build_index``) and reused by later runs."""
    out = {}
    for spec in sorted({c.index for c in cases if c.index}):
        if not spec.startswith("sim:"):
            out[spec] = spec
            continue
        slug = hashlib.blake2b(spec.encode(), digest_size=5).hexdigest()
        folder = Path(root) / f"{spec.split(':')[1]}-{slug}"
        marker = folder / "larsight_eval_index.json"
        if not marker.exists():
            print(f"building the event index {spec} -> {folder} (once)", file=sys.stderr)
            build_index(spec, folder, embedder=vlm, progress=progress)
            with atomic_open(marker, "w") as f:
                json.dump({"spec": spec}, f)
        out[spec] = str(folder)
    return out


# ============================================================================ the run
def _git() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except Exception:  # noqa: BLE001
        return "unknown"


def _event_order(cases: list[Case]) -> list[Case]:
    """Cases grouped by event (first appearance order), so each event's tools run once."""
    first: dict[Optional[str], int] = {}
    for i, c in enumerate(cases):
        first.setdefault(c.event, i)
    return sorted(cases, key=lambda c: (first[c.event], cases.index(c)))


def models_of(brain: Any, brain_kw: Optional[dict]) -> dict[str, str]:
    """The model folders a named brain uses, each ``name@sha256[:12]`` of its weights (so a
    run says which adapters it measured: ``larsight promote`` checks it)."""
    from larsight.agent.feedback.versions import ENCODER, VLM, file_digest, folder_digest

    kw = brain_kw or {}
    out = {"encoder": f"{ENCODER.parent.name}@{file_digest(ENCODER) or 'missing'}"}
    if brain != "vlm":
        return out
    folders = {"vlm": Path(kw.get("vlm") or VLM)}
    if (kw.get("policy") or os.environ.get("LARSIGHT_VLM_POLICY")) == "actions":
        from larsight.agent.vlm_actions import ACTION_VLM_DIR

        folders["action_vlm"] = Path(kw.get("action_vlm") or os.environ.get("LARSIGHT_ACTION_VLM") or ACTION_VLM_DIR)
    for name, folder in folders.items():
        out[name] = f"{folder}@{folder_digest(folder) or 'missing'}"
    return out


def run_agent_eval(suite: Union[str, os.PathLike, list], brain: Any = "rules",
                   out: Union[str, os.PathLike] = "runs/eval_rules", k: int = 3, workers: int = 1,
                   brain_kw: Optional[dict] = None, temperature: float = 0.0, tool_cache: bool = True,
                   tags: Optional[list[str]] = None, limit: Optional[int] = None, progress: bool = True,
                   fresh: bool = False, tools: Optional[dict] = None,
                   index_root: Union[str, os.PathLike] = DEFAULT_INDEX_ROOT,
                   command: Optional[str] = None, stop_after: Optional[int] = None) -> dict:
    """Run the suite (see the module docstring); returns the summary (``metrics.summarize``)
    with the run's metadata under ``meta``. ``stop_after``: stop after that many new trials
    (tests of the resume path)."""
    _check_options(k, workers, brain, tools)
    cases = load_suite(suite, tags=tags, limit=limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    label = brain_label(brain, temperature)
    sessions = _earlier_sessions(out, label, fresh)
    if fresh and (out / RECORDS).exists():
        (out / RECORDS).unlink()
    done = load_records(out / RECORDS, {c.id: c for c in cases}, repair=True)
    index_map = resolve_indexes(cases, index_root, progress=progress,
                                vlm=(brain_kw or {}).get("vlm")) if any(c.index for c in cases) else {}
    meta = {"brain": label, "brain_kw": {k_: str(v) for k_, v in (brain_kw or {}).items() if v is not None},
            "temperature": temperature, "k": k, "workers": workers, "tool_cache": tool_cache,
            "suite": [str(p) for p in suite_files(suite)], "suite_hash": suite_hash(cases),
            "n_cases": len(cases), "tags_filter": tags, "limit": limit, "indexes": index_map,
            "command": command or "python -m larsight.evals.agent_eval " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "commit": _git(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "sessions": sessions,
            "models": models_of(brain, brain_kw)}
    with atomic_open(out / "run.json", "w") as f:
        json.dump(meta, f, indent=1)
    todo = [(c, [t for t in range(k) if (c.id, t) not in done]) for c in _event_order(cases)]
    todo = [(c, ts) for c, ts in todo if ts]
    total = sum(len(ts) for _, ts in todo)
    wkw = dict(brain=brain, brain_kw=brain_kw, temperature=temperature, run_dir=out, tool_cache=tool_cache,
               tools=tools, index_map=index_map)
    writer = _Writer(out / RECORDS)
    bar = tqdm(total=len(cases) * k, initial=len(cases) * k - total, desc=f"agent eval ({label})",
               unit="trial", disable=not progress)

    def finished(rec: dict) -> None:
        writer.write(rec)
        done[(rec["case"], rec["trial"])] = rec
        bar.update(1)

    t0 = time.time()
    try:
        if workers == 1:
            n_new = _run_here(Worker(**wkw), todo, finished, stop_after)
        else:
            n_new = _run_in_pool(wkw, workers, todo, finished)
    finally:
        writer.close()
        bar.close()
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    meta["sessions"] = sessions + [{"command": meta["command"], "workers": workers, "started": meta["started"],
                                    "finished": meta["finished"], "wall_s": round(time.time() - t0, 1),
                                    "trials": n_new, "commit": meta["commit"]}]
    with atomic_open(out / "run.json", "w") as f:
        json.dump(meta, f, indent=1)
    return finalize(out, cases, done, k, meta)


def _check_options(k: int, workers: int, brain: Any, tools: Optional[dict]) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and not isinstance(brain, str):
        raise ValueError("workers > 1 needs the brain by name ('rules', 'vlm', 'openai' or 'module:attr')")
    if workers > 1 and tools:
        raise ValueError("workers > 1 cannot take replacement tool functions")


def _earlier_sessions(out: Path, label: str, fresh: bool) -> list[dict]:
    """The sessions recorded in ``out/run.json`` by earlier runs of the same brain (a resumed
    run adds to them); another brain's run folder is refused."""
    run_json = out / "run.json"
    if not run_json.exists() or fresh:
        return []
    prev = json.loads(run_json.read_text())
    if prev.get("brain") != label:
        raise ValueError(f"{out} holds a run of brain {prev.get('brain')!r}, not {label!r}: "
                         f"use another --out or --fresh")
    return list(prev.get("sessions") or [])


def _run_here(worker: Worker, todo: list, finished: Callable[[dict], None], stop_after: Optional[int]) -> int:
    """The trials in this process, in order; returns how many ran."""
    n_new = 0
    for case, trials in todo:
        for t in trials:
            if stop_after is not None and n_new >= stop_after:
                return n_new
            finished(worker.run_trial(case, t))
            n_new += 1
    return n_new


def _run_in_pool(wkw: dict, workers: int, todo: list, finished: Callable[[dict], None]) -> int:
    """The trials in ``workers`` spawned processes, at most two cases in flight per worker;
    returns how many ran."""
    n_new = 0
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(wkw,)) as pool:
        pending: set = set()
        it = iter(todo)
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * workers:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                    break
                pending.add(pool.submit(_task, nxt[0].model_dump(mode="json", by_alias=True), nxt[1]))
            if not pending:
                return n_new
            done_now, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done_now:
                for rec in fut.result():
                    finished(rec)
                    n_new += 1


def finalize(out: Path, cases: list[Case], done: dict[tuple[str, int], dict], k: int, meta: dict) -> dict:
    """Score every finished record again (a change of the scoring rules needs no re-run),
    summarize, and write the run's report; returns the summary."""
    by_id = {c.id: c for c in cases}
    records = [done[key] for key in sorted(done) if key[0] in by_id and key[1] < k]
    for r in records:
        r["score"] = score_case(by_id[r["case"]], r["turns"])
    summary = summarize(records, k)
    summary["meta"] = meta
    cases_out = {}
    for c in cases:
        rs = [done[(c.id, t)] for t in range(k) if (c.id, t) in done]
        cases_out[c.id] = {"tags": c.tags, "passes": [int(r["score"]["passed"]) for r in rs],
                           "cause": next((r["score"]["cause"] for r in rs if not r["score"]["passed"]), None)}
    summary["cases"] = cases_out
    write_run_report(out, summary)
    return summary


def rescore_run(run_dir: Union[str, os.PathLike], suite: Optional[Union[str, os.PathLike, list]] = None) -> dict:
    """The summary of a finished (or partial) run folder, scored again from its records with the
    suite it ran (``run.json``) or ``suite``; rewrites its report."""
    out = Path(run_dir)
    run_json = out / "run.json"
    if not run_json.exists():
        raise FileNotFoundError(f"{out}: no agent run here (no run.json)")
    meta = json.loads(run_json.read_text())
    cases = load_suite(suite or meta["suite"], tags=meta.get("tags_filter"), limit=meta.get("limit"))
    done = load_records(out / RECORDS, {c.id: c for c in cases})
    return finalize(out, cases, done, int(meta["k"]), meta)


def rescored_runs(run_dirs: list[Union[str, os.PathLike]]) -> list[tuple[str, dict]]:
    """``(brain, summary)`` of each run folder, scored again (what the side-by-side report reads)."""
    runs = []
    for d in run_dirs:
        s = rescore_run(d)
        runs.append((s.get("meta", {}).get("brain", Path(d).name), s))
    return runs
