"""The benchmark dashboard: regenerate every report in ``evals/reports/`` and its index page.

    larsight eval all                          # every report, then evals/reports/README.md
    larsight eval all --only agent,simulator   # some of them (names: see REPORTS)
    larsight eval all --skip encoder,retrieval # all but some (the long ones)
    larsight eval all --index-only             # only the index page, from the reports there
    larsight eval all --quick                  # smoke test of every command (tiny sizes), into
                                               # runs/dashboard_quick/ (never over the real reports)
    larsight eval all --dry-run                # print the commands

Each report is produced by its own module in a subprocess (``python -m larsight.evals.<module> ...``,
output in ``runs/eval_all/<name>.log``), so one failing report does not stop the others; the
commands are those that produced the shipped reports (``REPORTS``). Cold costs on the 2-core
CPU of this project (cached work is reused on a re-run: the encoder grid cells, the
classification predictions, the agent's finished trials): simulator ~3 min, encoder ~75 min
(~1 min cached), encoder speed ~20 min, classification ~60 min (~3 min cached), tools
~5 min (``evals.tools_report``), retrieval ~30 min, agent (vlm and rules, k = 3) ~40 min.

The index page (``README.md``) lists every report with its headline numbers, the command and
seed that produced it (read from the report itself), when it was written, and its main plots.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from larsight.events.formats.atomic import atomic_open

REPO = Path(__file__).resolve().parents[1]
REPORTS_DIR = REPO / "evals" / "reports"
QUICK_DIR = Path("runs") / "dashboard_quick"
LOG_DIR = Path("runs") / "eval_all"


@dataclass
class Report:
    name: str
    title: str
    module: str
    args: list[str]
    quick: Callable[[Path], list[str]]
    md: str                      # report file name in the reports folder
    json: Optional[str] = None
    plots: list[str] = field(default_factory=list)
    minutes: str = ""
    what: str = ""


REPORTS: list[Report] = [
    Report("simulator", "Simulator: speed and physics validation", "larsight.evals.simulator_report",
           ["--seed", "2026", "--n", "200"], lambda q: ["--seed", "2026", "--n", "20", "--out", str(q)],
           "simulator.md", None, ["simulator/ranges_bragg.png", "simulator/event_displays.png"], "3",
           "events/s per mode, CSDA ranges, Bragg peaks, Michel spectrum, showers, conversion gaps"),
    Report("encoder", "Encoder: data efficiency and the shipped checkpoint", "larsight.evals.encoder_report",
           ["--steps-full", "500", "--no-progress"], lambda q: ["--quick", "--no-progress", "--out", str(q)],
           "encoder.md", "encoder.json", ["encoder/data_efficiency.png", "encoder/confusion_semantic.png"], "75",
           "pretrained vs scratch, probe vs full, 10-all events; every head's metrics and targets"),
    Report("encoder_speed", "Encoder inference speed and memory", "larsight.evals.encoder_bench",
           ["--presets", "tiny,small,base", "--sizes", "1000,3000,10000,30000", "--sizes-for", "base=1000,3000",
            "--threads", "2", "--wait-idle", "120"],
           lambda q: ["--quick", "--out", str(q)],
           "encoder_speed.md", None, ["encoder_speed/ms_per_event.png"], "20",
           "ms/event and peak memory per preset and size"),
    Report("classification", "Classification: the VLM paper's tables", "larsight.evals.classification_report", [],
           lambda q: ["--n-events", "60", "--n-speed", "5", "--out", str(q / "classification"),
                      "--work", str(q / "classification_work")],
           "classification.md", "classification.json", ["classification/confusion.png", "classification/roc.png"], "60",
           "nu_e CC / nu_mu CC / NC: VLM vs CNN, ViT, encoder head, zero-shot; coarse voxels; speed and memory"),
    Report("tools", "Tools: reconstruction quality against the simulator truth", "larsight.evals.tools_report",
           ["--no-progress"], lambda q: ["--n", "20", "--no-progress", "--out", str(q)], "tools.md", "tools.json",
           [], "5", "PID, track length and energy resolution, e/gamma separation, Michel tagging, vertex, counts"),
    Report("retrieval", "Retrieval: find_similar quality, latency at 100k events, build rate", "larsight.evals.retrieval_bench",
           ["--n", "100000", "--real", "300", "--build-n", "128", "--ray-actors", "2", "--no-progress"],
           lambda q: ["--quick", "--no-progress", "--out", str(q)], "retrieval_bench.md", "retrieval_bench.json", [],
           "30", "precision@10 event->event and text->event, query latency, index build events/s"),
    Report("agent", "Agent: scripted evaluation suites, vlm and rules brains", "larsight.evals.agent_eval",
           ["--brain", "vlm,rules", "--k", "3", "--workers", "2", "--no-progress"],
           lambda q: ["--brain", "vlm,rules", "--k", "1", "--limit", "20", "--no-progress", "--out-root", str(q),
                      "--report", str(q / "agent")],
           "agent.md", "agent.json", ["agent/accuracy_by_tag.png", "agent/failures_by_cause.png"], "40",
           "answer accuracy per tag, tool selection, trajectories, claims, pass^k, latency"),
    Report("agent_heldout", "Agent on held-out wordings (evals/suites_heldout)", "larsight.evals.agent_eval",
           ["--suite", "evals/suites_heldout", "--brain", "vlm,rules", "--k", "1", "--workers", "2", "--no-progress",
            "--report", "evals/reports/agent_heldout", "--out-root", "runs/heldout"],
           lambda q: ["--suite", "evals/suites_heldout", "--brain", "rules", "--k", "1", "--limit", "10",
                      "--no-progress", "--out-root", str(q), "--report", str(q / "agent_heldout")],
           "agent_heldout.md", "agent_heldout.json", [], "5",
           "the same metrics on 100 questions written after the agent was developed, by a writer who saw "
           "neither the agent's code nor the development suites"),
    Report("fuzz", "Fuzzing: mutated HDF5 and ROOT files through the bounded reader", "larsight.evals.fuzz",
           ["--n", "10000", "--seed", "0", "--workers", "1", "--no-progress"],
           lambda q: ["--n", "40", "--seed", "0", "--no-progress", "--out", str(q / "fuzz.md")],
           "fuzz.md", "fuzz.json", [], "20",
           "clear errors, raw exceptions, hangs, crashes and silently accepted bad data per mutation kind"),
    Report("robustness", "Robustness: every perception metric per simulator knob, coarse grid, real event",
           "larsight.evals.robustness_report", ["--n", "100", "--counts", "--no-progress"],
           lambda q: ["--quick", "--no-progress", "--out", str(q), "--work", str(q / "robustness_work")],
           "robustness.md", "robustness.json", ["robustness/macro_f1_drop.png", "robustness/event_accuracy_drop.png"],
           "6", "macro-F1, per-class F1, ARI, event-class accuracy, vertex and reconstruct counts at both ends of "
           "each knob's range; drop vs in-domain; the real PILArNet-M event"),
]
NAMES = [r.name for r in REPORTS]


# ============================================================================ running
def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _supports(module: str, flag: str) -> bool:
    """Whether ``python -m module --help`` lists ``flag`` (for reports written concurrently)."""
    try:
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120,
                             cwd=REPO)
        return flag in out.stdout
    except Exception:  # noqa: BLE001
        return False


def command_for(r: Report, quick: bool) -> list[str]:
    args = r.quick(QUICK_DIR) if quick else list(r.args)
    if quick and "--quick" in args and not _supports(r.module, "--quick"):
        args = [a for a in args if a != "--quick"]
    return [sys.executable, "-m", r.module, *args]


def run_reports(names: list[str], quick: bool = False, dry_run: bool = False, log_dir: Path = LOG_DIR) -> list[dict]:
    """Run the named reports one after another; returns what happened to each."""
    results = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for r in REPORTS:
        if r.name not in names:
            continue
        if not _available(r.module):
            results.append({"name": r.name, "status": "missing", "note": f"module {r.module} not found"})
            print(f"[{r.name}] skipped: {r.module} is not in this checkout", file=sys.stderr)
            continue
        cmd = command_for(r, quick)
        shown = " ".join(shlex.quote(c) for c in ["python", *cmd[1:]])
        if dry_run:
            print(shown)
            results.append({"name": r.name, "status": "dry-run", "command": shown})
            continue
        log = log_dir / f"{r.name}{'_quick' if quick else ''}.log"
        print(f"[{r.name}] {shown}  (log: {log}; cold ~{r.minutes} min)", file=sys.stderr, flush=True)
        t0 = time.time()
        with open(log, "w") as f:
            rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode
        dt = time.time() - t0
        results.append({"name": r.name, "status": "ok" if rc == 0 else f"failed (exit {rc})", "seconds": round(dt, 1),
                        "command": shown, "log": str(log)})
        print(f"[{r.name}] {'ok' if rc == 0 else f'FAILED (exit {rc}), see {log}'} in {dt / 60:.1f} min",
              file=sys.stderr, flush=True)
    return results


# ============================================================================ index page
def _load_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _written(path: Path) -> str:
    """When a report was written: its last commit's date if the file is committed and
    unchanged (a fresh checkout's file times are the checkout's), else its file time."""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", path.name], cwd=path.parent,
                               capture_output=True, text=True, timeout=10)
        if dirty.returncode == 0 and not dirty.stdout.strip():
            log = subprocess.run(["git", "log", "-1", "--format=%cd",
                                  "--date=format-local:%Y-%m-%d %H:%M", "--", path.name],
                                 cwd=path.parent, capture_output=True, text=True, timeout=10)
            if log.returncode == 0 and log.stdout.strip():
                return log.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return _dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")


def _md_command(text: str) -> Optional[str]:
    for pat in (r"(?:Produced by|Command:|Regenerate:|\*\*command\*\*:)\s*`([^`]+)`", r"```\n([^\n`]+)\n"):
        m = re.search(pat, text)
        if m:
            return m.group(1).strip()
    return None


def _md_seed(text: str, command: Optional[str]) -> Optional[str]:
    if command:
        m = re.search(r"--seed[ =](\d+)", command)
        if m:
            return m.group(1)
    m = re.search(r"\b(?:data )?seed[s]?\b\D{0,12}(\d+)", text)
    return m.group(1) if m else None


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _headline(name: str, md: str, js: Optional[dict]) -> str:
    """The few numbers of a report a reader wants first."""
    try:
        if name == "simulator":
            m = re.search(r"^\| nu \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", md, re.M)
            return f"nu events/s: {m.group(1)} (1 core), {m.group(3)} (2 cores)" if m else ""
        if name == "encoder" and js:
            t = js["checkpoint"]["targets"]
            return "; ".join(f"{x['label']} {_f(x['value'])}{'' if x['met'] else ' (target ' + x['target'] + ')'}"
                             for x in t)
        if name == "classification" and js:
            t = js["table1"]
            return "; ".join(f"{k} acc {_f(t[k]['accuracy'])} / AUC {_f(t[k]['auc'])}" for k in ("vlm", "cnn", "encoder_head")
                             if k in t)
        if name == "retrieval" and js:
            q = js["quality"]
            lat = js["latency"]
            return (f"p@10 same class event->event {_f(q['event_to_event']['aligned']['class_precision'])}, "
                    f"text->event {_f(q['text_to_event']['class']['precision'])}; ANN query p50 "
                    f"{_f(lat['ann']['wall_ms_p50'], 1)} ms at {lat['n_rows']} rows")
        if name == "tools":
            block = md.split("## Headline", 1)[1].split("\n## ", 1)[0] if "## Headline" in md else ""
            rows = [r.strip("|").split("|") for r in block.splitlines() if r.startswith("| ") and "---" not in r]
            return "; ".join(f"{c[0].strip()} {c[1].strip()}" for c in rows[1:6] if len(c) > 1)
        if name.startswith("agent") and js:
            parts = []
            for brain, s in js["runs"].items():
                o = s["overall"]
                k = s.get("k", 1)
                parts.append(f"{brain}: answer acc {_f(o['answer_accuracy'])}, pass^{k} {_f(o.get(f'pass^{k}'))}, "
                             f"tool selection {_f(o['tool_selection'])}, contradicted answers "
                             f"{_f(o['answers_with_contradiction'])}")
            return "; ".join(parts)
        if name == "encoder_speed":
            rows = [r.strip("|").split("|") for r in md.splitlines() if r.startswith("| ") and "---" not in r]
            head = [h.strip() for h in rows[0]]
            want = ("preset", "points/event", "batch", "forward ms/event median", "mem peak MiB")
            return "; ".join(", ".join(f"{h} {c.strip()}" for h, c in zip(head, r) if h in want)
                             for r in rows[1:] if len(r) > 3 and r[2].strip() == "1000" and r[3].strip() == "1")[:300]
        if js and isinstance(js.get("headline"), (str, dict)):
            h = js["headline"]
            return h if isinstance(h, str) else "; ".join(f"{k} {_f(v)}" for k, v in h.items())
    except (KeyError, TypeError, AttributeError):
        return "(headline not found: the report's layout changed)"
    first = next((ln for ln in md.splitlines()[1:] if ln.strip() and not ln.startswith(("#", "!", "|", "-"))), "")
    return first[:200]


def build_index(reports_dir: Path = REPORTS_DIR, runs: Optional[list[dict]] = None) -> Path:
    """Write ``reports_dir/README.md`` from the reports found there."""
    lines = ["# larsight benchmark reports", "",
             "Regenerate everything with `larsight eval all` (`--only NAME,...`, `--skip NAME,...`, `--quick` for a "
             "smoke test, `--index-only` for this page alone); each report below names the command and seed that "
             "produced it. Compare two runs or two report versions with `larsight eval compare A B`.", "",
             "| report | headline | command | seed | written |", "| --- | --- | --- | --- | --- |"]
    plots = []
    for r in REPORTS:
        md_path = reports_dir / r.md
        if not md_path.exists():
            lines.append(f"| {r.title} | not generated yet (`larsight eval all --only {r.name}`) | "
                         f"`{' '.join(['python -m', r.module, *r.args])}` | - | - |")
            continue
        md = md_path.read_text()
        js = _load_json(reports_dir / r.json) if r.json else None
        cmd = None
        if js:
            cmd = ((js.get("meta") or {}).get("command") or js.get("command")
                   or (js.get("settings") or {}).get("command"))
            if r.name.startswith("agent"):
                cmd = (js.get("commands") or [None])[0]
        cmd = cmd or _md_command(md) or f"python -m {r.module} {' '.join(r.args)}"
        if len(cmd) > 140:
            cmd = cmd[:137] + "..."
        seed = None
        if js:
            seed = (js.get("meta") or {}).get("seed") if isinstance(js.get("meta"), dict) else None
            seed = seed if seed is not None else (js.get("settings") or {}).get("seed")
        if seed is None:
            seed = _md_seed(md, cmd)
        if r.name.startswith("agent") and seed is None:
            seed = "suite events: eval split of data seed 0 (simulator seed 2)"
        when = _written(md_path)
        head = _headline(r.name, md, js).replace("|", "/")
        lines.append(f"| [{r.title}]({r.md}) | {head} | `{cmd}` | {seed if seed is not None else '-'} | {when} |")
        for p in r.plots:
            if (reports_dir / p).exists():
                plots.append((r.title, p))
    if runs:
        lines += ["", "Last `larsight eval all` run:", "", "| report | status | minutes |", "| --- | --- | ---: |"]
        lines += [f"| {x['name']} | {x['status']} | {x.get('seconds', 0) / 60:.1f} |" for x in runs]
    if plots:
        lines += ["", "## Plots", ""]
        for title, p in plots:
            lines += [f"**{title}**", "", f"![{title}]({p})", ""]
    path = reports_dir / "README.md"
    with atomic_open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return path


# ============================================================================ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", default=None, help=f"comma list of reports ({', '.join(NAMES)})")
    p.add_argument("--skip", default=None, help="comma list of reports to leave as they are")
    p.add_argument("--quick", action="store_true", help=f"smoke test with tiny sizes into {QUICK_DIR}/")
    p.add_argument("--index-only", action="store_true", help="only write the index page from existing reports")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def _names(spec: Optional[str]) -> list[str]:
    out = [s.strip() for s in (spec or "").split(",") if s.strip()]
    bad = [s for s in out if s not in NAMES]
    if bad:
        raise ValueError(f"unknown report(s) {bad}; the reports are {', '.join(NAMES)}")
    return out


def run(args) -> int:
    names = _names(args.only) or list(NAMES)
    skip = set(_names(args.skip))
    names = [n for n in names if n not in skip]
    results = []
    if not args.index_only:
        results = run_reports(names, quick=args.quick, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    where = REPO / QUICK_DIR if args.quick else REPORTS_DIR
    where.mkdir(parents=True, exist_ok=True)
    path = build_index(where, results or None)
    print(f"index: {path}")
    failed = [r for r in results if r["status"].startswith("failed")]
    return 1 if failed else 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m larsight.evals.dashboard", description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except ValueError as e:
        print(f"eval all: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
