"""What changed between two runs: ``larsight eval compare A B``.

    larsight eval compare runs/eval_vlm runs/eval_vlm_new          # two agent run folders
    larsight eval compare old/agent.json evals/reports/agent.json  # two agent reports (per brain)
    larsight eval compare runs/eval_rules runs/eval_vlm            # two brains on one suite
    larsight eval compare old/tools.json evals/reports/tools.json  # any two report JSONs

Agent runs (a run folder, its ``report.json``, or the side-by-side ``agent.json``, which
holds several brains: brains of the same name are compared): the headline metrics and every
tag's answer accuracy with their differences, then the cases whose outcome changed (passing
in A and failing in B, and the reverse) with the cause of each failure, and the cases found in
only one of them. Any other pair of JSON reports: every numeric value that differs, by path,
largest relative change first, and the paths found in only one.

``A`` and ``B`` may also be git revisions of a report (``HEAD~3:evals/reports/agent.json``).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from larsight.events.formats.atomic import atomic_open

from .agent_eval.runner import rescore_run

REPO = Path(__file__).resolve().parents[1]
HEADLINE = ("answer_accuracy", "pass^1", "pass^3", "tool_selection", "trajectory_match", "argument_correctness",
            "claim_support_rate", "contradiction_rate", "answers_with_contradiction", "irrelevant_without_tools",
            "steps_mean", "tool_calls_mean", "latency_p50_s", "latency_p95_s")
LOWER_IS_BETTER = {"contradiction_rate", "answers_with_contradiction", "steps_mean", "tool_calls_mean",
                   "latency_p50_s", "latency_p95_s"}


def load(spec: str) -> tuple[dict, str]:
    """(JSON, label) of a run folder, a report file, or ``REV:path`` from git."""
    p = Path(spec)
    if p.is_dir():
        if (p / "run.json").exists():
            return rescore_run(p), str(p)
        for name in ("report.json", "agent.json"):
            if (p / name).exists():
                return json.loads((p / name).read_text()), str(p / name)
        raise FileNotFoundError(f"{p}: no run.json, report.json or agent.json in this folder")
    if p.is_file():
        return json.loads(p.read_text()), str(p)
    if ":" in spec:
        out = subprocess.run(["git", "show", spec], cwd=REPO, capture_output=True, text=True)
        if out.returncode == 0:
            return json.loads(out.stdout), spec
    raise FileNotFoundError(f"{spec}: not a run folder, a report file or a git REV:path")


def _agent_runs(d: dict) -> Optional[dict[str, dict]]:
    """Agent summaries by brain name, or None when ``d`` is not an agent report."""
    if isinstance(d.get("runs"), dict) and all(isinstance(v, dict) and "overall" in v for v in d["runs"].values()):
        return d["runs"]
    if "overall" in d and "per_tag" in d:
        return {(d.get("meta") or {}).get("brain", "run"): d}
    return None


def _f(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _delta(a: Any, b: Any, key: str = "") -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool):
        return ""
    d = b - a
    if abs(d) < 1e-12:
        return "="
    better = (d < 0) if key in LOWER_IS_BETTER else (d > 0)
    return f"{d:+.3f} {'better' if better else 'worse'}"


def _rate(passes: list) -> Optional[float]:
    return sum(passes) / len(passes) if passes else None


def compare_agent(a: dict, b: dict, la: str, lb: str, max_cases: int = 40) -> str:
    k = max(a.get("k", 1), b.get("k", 1))
    keys = [h for h in HEADLINE if not h.startswith("pass^")] + [f"pass^{j}" for j in range(1, k + 1)]
    lines = [f"| metric | A | B | change |", "| --- | ---: | ---: | --- |"]
    for key in keys:
        va, vb = a["overall"].get(key), b["overall"].get(key)
        if va is None and vb is None:
            continue
        lines.append(f"| {key} | {_f(va)} | {_f(vb)} | {_delta(va, vb, key)} |")
    for t in sorted(set(a.get("per_tag", {})) | set(b.get("per_tag", {}))):
        va = a.get("per_tag", {}).get(t, {}).get("answer_accuracy")
        vb = b.get("per_tag", {}).get(t, {}).get("answer_accuracy")
        lines.append(f"| answer accuracy, {t} | {_f(va)} | {_f(vb)} | {_delta(va, vb)} |")
    ca = {c: v for c, v in a.get("cases", {}).items() if v.get("passes")}   # cases with finished trials
    cb = {c: v for c, v in b.get("cases", {}).items() if v.get("passes")}
    worse, better, moved = [], [], []
    for cid in sorted(set(ca) & set(cb)):
        ra, rb = _rate(ca[cid].get("passes", [])), _rate(cb[cid].get("passes", []))
        if ra is None or rb is None or ra == rb:
            if ca[cid].get("cause") != cb[cid].get("cause") and ra == rb and ra is not None and ra < 1:
                moved.append(cid)
            continue
        (worse if rb < ra else better).append((cid, ra, rb))
    lines += ["", f"Cases: {len(set(ca) & set(cb))} in both; {len(worse)} got worse, {len(better)} got better, "
              f"{len(moved)} still failing with another cause; {len(set(ca) - set(cb))} only in A, "
              f"{len(set(cb) - set(ca))} only in B.", ""]
    for title, rows in (("Got worse (pass rate A -> B)", worse), ("Got better (pass rate A -> B)", better)):
        if rows:
            lines += [f"**{title}**", "", "| case | tags | A | B | cause in A | cause in B |",
                      "| --- | --- | ---: | ---: | --- | --- |"]
            for cid, ra, rb in rows[:max_cases]:
                lines.append(f"| {cid} | {', '.join(ca[cid].get('tags', []))} | {ra:.2f} | {rb:.2f} | "
                             f"{ca[cid].get('cause') or '-'} | {cb[cid].get('cause') or '-'} |")
            if len(rows) > max_cases:
                lines.append(f"| ... {len(rows) - max_cases} more | | | | | |")
            lines.append("")
    if moved:
        lines += ["**Still failing, other cause**: " + ", ".join(
            f"{c} ({ca[c].get('cause')} -> {cb[c].get('cause')})" for c in moved[:max_cases]), ""]
    fa, fb = a.get("failures", {}), b.get("failures", {})
    if fa or fb:
        lines += ["**Failures by cause (trials)**", "", "| cause | A | B |", "| --- | ---: | ---: |"]
        for c in sorted(set(fa) | set(fb), key=lambda c: -(fb.get(c, {}).get("n", 0))):
            lines.append(f"| {c} | {fa.get(c, {}).get('n', 0)} | {fb.get(c, {}).get('n', 0)} |")
        lines.append("")
    ha, hb = (a.get("meta") or {}).get("suite_hash"), (b.get("meta") or {}).get("suite_hash")
    if ha and hb and ha != hb:
        lines.insert(0, f"Note: the suites differ (fingerprints `{ha}` and `{hb}`); only cases in both are compared.\n")
    return "\n".join(lines)


def _flatten(x: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(x, dict):
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(x, list) and len(x) <= 64:
        for i, v in enumerate(x):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    elif isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        out[prefix] = float(x)
    return out


def compare_generic(a: dict, b: dict, max_rows: int = 80) -> str:
    fa, fb = _flatten(a), _flatten(b)
    rows = []
    for key in set(fa) & set(fb):
        va, vb = fa[key], fb[key]
        if abs(va - vb) > 1e-12:
            rel = abs(vb - va) / max(abs(va), 1e-12)
            rows.append((rel, key, va, vb))
    rows.sort(key=lambda r: (-r[0], r[1]))
    lines = [f"{len(rows)} numeric values differ; {len(set(fa) - set(fb))} only in A, {len(set(fb) - set(fa))} only in B.",
             "", "| value | A | B | change |", "| --- | ---: | ---: | ---: |"]
    for rel, key, va, vb in rows[:max_rows]:
        lines.append(f"| {key} | {va:.4g} | {vb:.4g} | {vb - va:+.4g} ({rel * 100:.1f}%) |")
    if len(rows) > max_rows:
        lines.append(f"| ... {len(rows) - max_rows} more | | | |")
    return "\n".join(lines)


def compare(spec_a: str, spec_b: str) -> str:
    """Markdown saying what changed from A to B (see the module docstring)."""
    a, la = load(spec_a)
    b, lb = load(spec_b)
    out = [f"# Compare", "", f"- A: `{la}`", f"- B: `{lb}`", ""]
    ra, rb = _agent_runs(a), _agent_runs(b)
    if ra is not None and rb is not None:
        pairs = [(n, n) for n in ra if n in rb]
        if not pairs and len(ra) == 1 and len(rb) == 1:
            pairs = [(next(iter(ra)), next(iter(rb)))]
        if not pairs:
            raise ValueError(f"no brain in common: A has {sorted(ra)}, B has {sorted(rb)}")
        for na, nb in pairs:
            out += [f"## {na}" + (f" vs {nb}" if nb != na else ""), "", compare_agent(ra[na], rb[nb], la, lb), ""]
        return "\n".join(out)
    if (ra is None) != (rb is None):
        raise ValueError("one of the two is an agent report and the other is not")
    out.append(compare_generic(a, b))
    return "\n".join(out) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="run folder, report JSON, or git REV:path")
    p.add_argument("b", help="run folder, report JSON, or git REV:path")
    p.add_argument("--out", default=None, help="also write the comparison to this markdown file")


def run(args) -> int:
    text = compare(args.a, args.b)
    print(text)
    if args.out:
        with atomic_open(args.out, "w") as f:
            f.write(text)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m larsight.evals.compare", description=__doc__.split("\n")[0])
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except (ValueError, FileNotFoundError) as e:
        print(f"eval compare: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
