"""How fast the feedback database answers review and export at the scale of a long run of shifts:
100k feedback items on 100k answers, each answer with its full context.

    python -m larsight.evals.feedback_bench                 # 100k items -> evals/reports/feedback_bench.md
    python -m larsight.evals.feedback_bench --n 5000 --out /tmp/fb.md

The database is filled through ``FeedbackStore.add_many`` (validation included, batches of
``BATCH`` per transaction) with synthetic but realistic items: questions of the agent suites, a
reconstruct and a classify call per answer (about 1 kB of tool output), 2-5 claims, the VLM's own
text with its prompt (mis-copying the muon's length in 70 % of answers), and feedback of every
kind (corrections of a number, a class, a count or the VLM's first draft, thumbs, rankings,
comments; a quarter of the items reviewed). Then, each timed ``--repeats`` times (the median is reported):
``list`` (the 50 newest, the 50 newest of one status, the counts by status), ``show`` (one
item), ``export`` as DPO pairs and as JSON lines of all items, and the same verbs through the
``larsight`` command (whose Python start-up and imports are timed on their own with
``larsight feedback list --help``). The target is under 2 s for list and export.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import sqlalchemy

from larsight.agent.feedback import FeedbackStore, export, record_from_answer
from larsight.events.formats.atomic import atomic_open
from larsight.events.vocabulary import CLASS_TEXT

from .report_common import git_commit, rel

__all__ = ["build", "run", "main", "BATCH"]

BATCH = 5000
QUESTIONS = ("Classify this event and explain why.", "Where is the vertex?", "How many protons are there?",
             "How long is the muon track?", "Does the shower start at the vertex?",
             "List the particles with their energies.", "Is there a Michel electron?")
CLASSES = ("nue_cc", "numu_cc", "nc")
TARGET_S = 2.0
EXPLAIN_CONTEXT = ("reconstruct: particles with PID, length, energy and start dE/dx; classify_event: class "
                   "probabilities; find_vertex: the vertex. Explain from these observations only: the class with "
                   "its reasons, the particles seen, why not the other classes.")


def _answer(rng: random.Random, i: int, question: str, event: str) -> dict:
    cls, length, n_p = rng.choice(CLASSES), round(rng.uniform(5, 300), 1), rng.randint(0, 4)
    vertex = [round(rng.uniform(50, 700), 1) for _ in range(3)]
    said = length if rng.random() < 0.3 else round(length * rng.uniform(0.5, 0.9), 1)   # the VLM mis-copies
    particles = [{"id": 0, "type": "muon", "length_cm": length, "energy_mev": 300.0, "dedx_start_mev_cm": 2.1}] + [
                 {"id": k, "type": rng.choice(("muon", "proton", "pion", "electron", "photon")),
                  "length_cm": round(rng.uniform(1, 300), 1), "energy_mev": round(rng.uniform(20, 900), 1),
                  "dedx_start_mev_cm": round(rng.uniform(1.5, 9), 2)} for k in range(1, 4)]
    return {"question": question, "event": event, "brain": "vlm", "thread_id": f"ui-{i:08x}",
            "text": (f"This is a {CLASS_TEXT[cls]} event. The longest track is a muon of {length} cm. "
                     f"There are {n_p} protons. The vertex is at ({vertex[0]}, {vertex[1]}, {vertex[2]}) cm."),
            "claims": [{"claim": {"kind": "event_class", "subject": "event", "value": cls}, "verdict": "supported",
                        "evidence": {"p": 0.8}, "tool": "classify_event"},
                       {"claim": {"kind": "track_length", "subject": "muon", "value": length, "unit": "cm",
                                  "qualifier": "longest"}, "verdict": "supported", "tool": "reconstruct"},
                       {"claim": {"kind": "count", "subject": "proton", "value": float(n_p), "unit": "count"},
                        "verdict": "contradicted", "tool": "reconstruct"},
                       {"claim": {"kind": "vertex", "subject": "vertex", "value": vertex, "unit": "cm"},
                        "verdict": "supported", "tool": "find_vertex"}],
            "steps": [{"index": 0, "node": "compose", "text": "", "free_text": {
                          "text": f"The muon track is {said} cm long and there are {n_p} protons.", "author": "vlm",
                          "prompt": f"Observations:\nevent {event}\n{EXPLAIN_CONTEXT}\nQuestion: {question}"}},
                      {"index": 1, "node": "observe", "call": {
                          "tool": "reconstruct", "arguments": {"event": event}, "ok": True, "seconds": 0.4,
                          "output": {"particles": particles, "vertex_cm": vertex, "topology": f"1mu {n_p}p 0pi"}}},
                      {"index": 3, "node": "observe", "call": {
                          "tool": "classify_event", "arguments": {"event": event}, "ok": True, "seconds": 0.2,
                          "output": {"probabilities": {c: round(rng.random(), 3) for c in CLASSES}}}}],
            "models": {"brain": "vlm", "encoder": "encoder_tiny@daa273e0f9fa", "vlm": "vlm_smollm2@0123456789ab"}}


def _feedback(rng: random.Random, i: int, answer: dict, previous: Optional[str]) -> dict:
    roll = rng.random()
    item: dict = {"answer": answer, "author": f"shifter{rng.randint(1, 40)}",
                  "status": "reviewed" if rng.random() < 0.25 else "new"}
    if roll < 0.55:
        item.update(verdict="down", corrections=[
            {"claim": 1, "mark": "should_be", "value": round(rng.uniform(5, 300), 1), "unit": "cm"},
            {"claim": 0, "mark": "should_be", "label": rng.choice(CLASSES)},
            {"claim": 2, "mark": rng.choice(("right", "wrong"))},
            {"claim": 0, "of": "first_draft", "mark": "should_be", "unit": "cm",      # the measured length
             "value": answer["claims"][1]["claim"]["value"]}],
            comment="the muon exits the volume")
    elif roll < 0.8:
        item["verdict"] = rng.choice(("up", "down"))
    elif roll < 0.92 and previous is not None:
        item["better_than"] = previous
    else:
        item["comment"] = "ambiguous: a cosmic overlaps the vertex"
    return item


def build(path: Path, n: int, seed: int = 0, progress: Callable[[int], None] = lambda k: None) -> dict:
    """A feedback database of ``n`` items on ``n`` answers at ``path`` (two answers per event and
    question, the second sometimes ranked against the first); returns how long it took."""
    rng = random.Random(seed)
    store = FeedbackStore(path)
    t0 = time.perf_counter()
    done, first = 0, None
    while done < n:
        batch = []
        for i in range(done, min(n, done + BATCH)):
            ans = _answer(rng, i, QUESTIONS[(i // 2) % len(QUESTIONS)], f"sim:nu:seed={seed}:voxel=0.6:index={i // 2}")
            batch.append(_feedback(rng, i, ans, first if i % 2 else None))
            first = record_from_answer(ans).id if i % 2 == 0 else None
        done += len(store.add_many(batch, source="bench"))     # one transaction per batch
        progress(done)
    store.close()
    return {"items": n, "seconds": time.perf_counter() - t0}


# ============================================================================ timing
def _median_time(fn: Callable[[], object], repeats: int) -> dict:
    """Wall-clock seconds (median, min, max) and this process's CPU seconds (median): on a shared
    machine the wall clock also counts the waits for a core and the disk."""
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "cpu_s": statistics.median(cpu)}


def _cli(args: list[str]) -> Callable[[], None]:
    def run():
        subprocess.run([sys.executable, "-m", "larsight.ui.cli", *args], check=True, capture_output=True,
                       timeout=600)
    return run


def _query_plans(path: Path) -> list[tuple[str, str]]:
    """SQLite's plan for the list queries: which index answers them."""
    con = sqlite3.connect(path)
    out = []
    for name, sql in (("list (newest)", "SELECT id FROM feedback ORDER BY id DESC LIMIT 50"),
                      ("list --status", "SELECT id FROM feedback WHERE status = 'reviewed' ORDER BY id DESC LIMIT 50"),
                      ("counts", "SELECT status, count(*) FROM feedback GROUP BY status")):
        plan = "; ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql))
        out.append((name, plan))
    con.close()
    return out


def run(db: Path, n: int, repeats: int = 3, rebuild: bool = False, cli: bool = True) -> dict:
    """Build (or reuse) the database of ``n`` items and time review and export on it (and, with
    ``cli``, the same through the ``larsight`` command)."""
    res: dict = {"n": n, "db": str(db)}
    have = 0
    if db.exists() and not rebuild:
        with FeedbackStore(db) as s:
            have = sum(s.counts().values())
    if have != n:
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)
        res["build"] = build(db, n, progress=lambda k: print(f"  {k}/{n} items stored", flush=True))
    res["db_mb"] = db.stat().st_size / 1e6
    out = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
    timings: dict[str, dict] = {}
    store = FeedbackStore(db)
    rng = random.Random(1)
    timings["open the store"] = _median_time(lambda: FeedbackStore(db).close(), repeats)
    timings["list (50 newest)"] = _median_time(lambda: store.list(limit=50), repeats)
    timings["list --status reviewed (50)"] = _median_time(lambda: store.list(status="reviewed", limit=50), repeats)
    timings["counts by status"] = _median_time(store.counts, repeats)
    timings["show one item"] = _median_time(lambda: store.get(rng.randint(1, n)), repeats)
    reports = {}
    for fmt in ("dpo", "jsonl"):
        timings[f"export {fmt} (all items)"] = _median_time(
            lambda fmt=fmt: reports.__setitem__(fmt, export(store, out / f"all.{fmt}.jsonl", fmt=fmt)), repeats)
    store.close()
    res["export"] = {k: {"lines": r.lines, "mb": os.path.getsize(r.path) / 1e6, "pairs_by_kind": r.pairs_by_kind,
                         "tool_errors": r.tool_errors} for k, r in reports.items()}
    commands = {} if not cli else {
        "larsight feedback list --help (start-up only)": ["feedback", "list", "--help"],
        "larsight feedback list": ["feedback", "list", "--db", str(db)],
        "larsight feedback export --format dpo": ["feedback", "export", "--format", "dpo", "--db", str(db),
                                                  "--out", str(out / "cli.dpo.jsonl")]}
    cli_t = {name: _median_time(_cli(args), repeats) for name, args in commands.items()}
    for f in out.iterdir():
        f.unlink()
    out.rmdir()
    res.update(timings=timings, cli=cli_t, plans=_query_plans(db), machine=_machine())
    return res


def _machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg_1_5_15": [round(x, 2) for x in load], "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "sqlalchemy": sqlalchemy.__version__, "commit": git_commit()}


# ============================================================================ report
def _ok(t: float, target: Optional[float]) -> str:
    return "" if target is None else ("✔" if t < target else "✘")


def _reading(res: dict) -> str:
    t, c = res["timings"], res["cli"]
    dpo, js = t["export dpo (all items)"], t["export jsonl (all items)"]
    text = (f"Review (`list`, `show`, the counts) answers in milliseconds from the indexes. The DPO export "
            f"of all {res['n']:,} items takes {dpo['median_s']:.1f} s on the wall clock, of which "
            f"{dpo['cpu_s']:.1f} s is this process's CPU (the database builds each JSON line; the corrected "
            f"answer was written when the item was stored); the rest is waiting for a core and the disk "
            f"on a shared machine. The JSON-lines export copies the full context of every item "
            f"({res['export']['jsonl']['mb']:.0f} MB: every tool output) and takes {js['median_s']:.1f} s "
            f"({js['cpu_s']:.1f} s CPU): it is the archive, not the training input.")
    start = c.get("larsight feedback list --help (start-up only)")
    if start:
        text += (f" Through the command line each verb first pays the `larsight` start-up "
                 f"({start['median_s']:.1f} s here: Python and the imports of the command's layers), "
                 f"which the database does not change.")
    return text


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = ["# Feedback database: review and export at 100k items", "",
             f"{res['n']:,} feedback items on {res['n']:,} answers (each with its event, question, two tool calls "
             f"with their outputs, a 4-row claim table and model versions) in SQLite "
             f"({res['db_mb']:.0f} MB); `python -m larsight.evals.feedback_bench`.", ""]
    if "build" in res:
        b = res["build"]
        lines += [f"Filled through `FeedbackStore.add_many` (validation included, {BATCH} items per transaction) "
                  f"in {b['seconds']:.0f} s: {b['items'] / b['seconds']:.0f} items/s.", ""]
    lines += [f"## In the process (median of the repeats; target < {TARGET_S:g} s for list and export)", "",
              "| operation | median s | min s | max s | CPU s (median) | < 2 s |", "|---|---|---|---|---|---|"]
    for name, t in res["timings"].items():
        target = TARGET_S if name.startswith(("list", "export")) else None
        lines.append(f"| {name} | {t['median_s']:.3f} | {t['min_s']:.3f} | {t['max_s']:.3f} | {t['cpu_s']:.3f} "
                     f"| {_ok(t['median_s'], target)} |")
    lines += ["", "| export | lines | file MB | pairs by kind |", "|---|---|---|---|"]
    for fmt, e in res["export"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in e["pairs_by_kind"].items()) or "-"
        lines.append(f"| {fmt} | {e['lines']:,} | {e['mb']:.0f} | {kinds} |")
    lines += ["", "## Through the command line (a new Python process each; the first row is its start-up alone)", "",
              "| command | median s | min s | max s |", "|---|---|---|---|"]
    for name, t in res["cli"].items():
        lines.append(f"| `{name}` | {t['median_s']:.2f} | {t['min_s']:.2f} | {t['max_s']:.2f} |")
    lines += ["", "## Reading", "", _reading(res), "", "## Indexes", "", "`feedback(status, id)`, `feedback(answer_id)`, `feedback(created)`, "
              "`feedback(author)`, `answers(event)`. SQLite's plans for the review queries:", "",
              "| query | plan |", "|---|---|"]
    lines += [f"| {name} | `{plan}` |" for name, plan in res["plans"]]
    lines += ["", "## Machine", "",
              f"{m['cores']} cores ({m['cpu']}), load average {m['load_avg_1_5_15']} at the end (the machine is shared: "
              f"other jobs ran beside this one), Python {m['python']}, SQLite {m['sqlite']}, SQLAlchemy "
              f"{m['sqlalchemy']}, commit {m['commit']}.", ""]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m larsight.evals.feedback_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="feedback items (default 100000)")
    p.add_argument("--db", default=None, help="database file (default: a temporary folder; reused when it "
                   "already holds --n items)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rebuild", action="store_true", help="build the database again even when it exists")
    p.add_argument("--no-cli", action="store_true", help="skip the timings through the `larsight` command")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "reports" / "feedback_bench.md"))
    a = p.parse_args(argv)
    if a.n < 2 or a.repeats < 1:
        p.error("--n must be >= 2 and --repeats >= 1")
    db = Path(a.db) if a.db else Path(tempfile.mkdtemp(prefix="feedback-db-")) / "feedback.sqlite"
    res = run(db, a.n, a.repeats, a.rebuild, cli=not a.no_cli)
    out = Path(a.out)
    with atomic_open(out, "w") as fh:
        fh.write(markdown(res))
    with atomic_open(out.with_suffix(".json"), "w") as fh:
        json.dump(res, fh, indent=1)
    print(markdown(res))
    print(f"wrote {rel(out)} and {rel(out.with_suffix('.json'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
