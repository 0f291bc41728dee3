"""Agent evaluation reports: one run's ``report.md`` / ``report.json``, and several brains side
by side (``evals/reports/agent.md``, ``agent.json``, plots under ``evals/reports/agent/``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from larsight.events.formats.atomic import atomic_open  # noqa: E402

__all__ = ["write_run_report", "write_side_by_side", "render_md", "TARGETS", "load_run_summary"]

TARGETS = [  # (label, getter, comparison, target, where the failures that explain a miss are)
    ("answer accuracy, classification", ("per_tag", "classification", "answer_accuracy"), ">=", 0.90, "classification"),
    ("answer accuracy, vertexing", ("per_tag", "vertexing", "answer_accuracy"), ">=", 0.90, "vertexing"),
    ("answer accuracy, counting", ("per_tag", "counting", "answer_accuracy"), ">=", 0.90, "counting"),
    ("tool-selection accuracy", ("overall", "tool_selection"), ">=", 0.95,
     ("wrong_tool", "tool_for_irrelevant", "injection_filter", "trajectory", "brain_error")),
    ("answers with a contradicted claim", ("overall", "answers_with_contradiction"), "<=", 0.0, ("contradicted_claim",)),
    ("first-draft contradiction rate", ("overall", "first_draft_contradiction_rate"), "<=", 0.02, ()),
    ("irrelevant questions answered without tools", ("overall", "irrelevant_without_tools"), ">=", 0.90, "irrelevant"),
]
HOW_MEASURED = (
    "Suites: `evals/suites/*.jsonl` (schema in `evals/agent_eval/suite.py`; generated cases by "
    "`python -m larsight.evals.suites.generate`, expected values from the simulator truth, "
    "`qformer.corpus.event_facts`). Each case names its event (`sim:MODE:seed=S:voxel=CM:index=I` re-simulates "
    "it), its questions, the expected answer as checkable values, the reference tool trajectory with a match "
    "mode (strict / unordered / subset / superset) and expected arguments. Scoring (`evals/agent_eval/scoring.py`): "
    "deterministic checks of the values the answer states (`Answer.values`, read from its typed claims) "
    "against the expected ones (vertex within 3 cm; counts exact); tool selection = the first tool chosen is the "
    "reference's first (none for irrelevant questions); a trial passes when the answer is right, the trajectory "
    "matches and no claim is contradicted; pass^k = C(c,k)/C(n,k) per case (tau-bench), averaged. "
    "Claim support and contradiction come from the agent's own validator (claims checked against the tool "
    "measurements, not against truth). Failure causes: `measurement:<tool>` means the agent stated exactly "
    "what the tool measured (its claims are supported) and the tool's measurement is off the truth.")
TAG_ORDER = ("classification", "vertexing", "counting", "retrieval", "multi-turn", "irrelevant", "adversarial")
CAUSE_TEXT = {
    "measurement:classify_event": "the classifier's class differs from the truth (the answer reports it faithfully)",
    "measurement:find_vertex": "the vertex finder is more than the tolerance from the true vertex",
    "measurement:reconstruct": "the reconstruction's counts differ from the visible truth",
    "measurement:find_similar": "the retrieved events do not have the expected properties",
    "no_measurement:find_vertex": "the vertex finder found no vertex, so the answer states none",
    "no_measurement:reconstruct": "the reconstruction gave nothing of the kind asked",
    "no_measurement:classify_event": "the classifier gave no class",
    "wrong_tool": "the brain did not call the tool that measures what was asked",
    "tool_for_irrelevant": "a tool was called for a question that needs none",
    "no_value": "the answer states no value of the kind asked",
    "contradicted_claim": "a claim of the final answer is contradicted by the tools",
    "wrong_value": "the stated value is wrong and not what the tools measured",
    "trajectory": "right answer, but the tool trajectory does not match the reference",
    "tool_error": "a tool call failed",
    "exception": "the agent raised an exception",
    "brain_error": "the reasoning back-end failed (the loop answered with its error)",
    "stopped": "the loop stopped early (step or recursion limit)",
    "leak": "the answer echoed the system prompt",
    "injection_filter": "the safety filter cut the whole question as an embedded instruction; nothing was answered",
    "arguments": "tool arguments differ from the expected ones",
}


def _get(summary: dict, path: tuple) -> Any:
    x: Any = summary
    for p in path:
        if not isinstance(x, dict) or p not in x:
            return None
        x = x[p]
    return x


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def load_run_summary(run_dir: Union[str, os.PathLike]) -> dict:
    p = Path(run_dir) / "report.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no finished agent run there (run `larsight eval agent` first)")
    return json.loads(p.read_text())


def _suite_header(path: str) -> str:
    """The first comment line of a suite file (how it was made)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().strip()
    except OSError:
        return "(not found)"
    return first.lstrip("# ").strip() if first.startswith("#") else "-"


def _composition(summary: dict) -> dict[str, int]:
    return {t: v["cases"] for t, v in summary.get("per_tag", {}).items()}


def _ordered_tags(summaries: list[dict]) -> list[str]:
    tags = set()
    for s in summaries:
        tags |= set(s.get("per_tag", {}))
    return [t for t in TAG_ORDER if t in tags] + sorted(tags - set(TAG_ORDER))


def _target_rows(name: str, s: dict) -> list[str]:
    rows = []
    for label, path, cmp_, target, where in TARGETS:
        v = _get(s, path)
        if v is None:
            rows.append(f"| {name} | {label} | {cmp_} {target:g} | - | not measured |")
            continue
        met = v >= target if cmp_ == ">=" else v <= target
        gap = "" if met else f" (short by {abs(v - target):.3f})"
        why = ""
        if not met and isinstance(where, str):
            causes = s["per_tag"].get(where, {}).get("failure_causes", {})
            n = sum(causes.values())
            why = "failed trials by cause: " + "; ".join(f"{c} {m}/{n}" for c, m in list(causes.items())[:3])
        elif not met:
            causes = {c: x["n"] for c, x in s.get("failures", {}).items() if c in where}
            why = "failed trials by cause: " + "; ".join(f"{c} {m}" for c, m in causes.items()) if causes else ""
        rows.append(f"| {name} | {label} | {cmp_} {target:g} | {_f(v)} | {'met' if met else 'missed' + gap}"
                    f"{' - ' + why if why else ''} |")
    return rows


def render_md(runs: list[tuple[str, dict]], title: str = "Agent evaluation", plots: Optional[dict] = None,
              commands: Optional[list[str]] = None, notes: Optional[list[str]] = None) -> str:
    """Markdown for one or more runs (``(name, summary)``), brains as columns."""
    sums = [s for _, s in runs]
    k = max(s.get("k", 1) for s in sums)
    tags = _ordered_tags(sums)
    lines = [f"# {title}", ""]
    if commands:
        lines += ["Regenerate:", "", "```"] + commands + ["```", ""]
    lines += _provenance(runs) + _suite_section(sums, tags) + _headline(runs, tags, k)
    if plots:
        lines += [f"![{k_}]({v})" for k_, v in plots.items()] + [""]
    lines += ["## Targets", "", "| brain | target | wanted | value | status |", "| --- | --- | --- | ---: | --- |"]
    for n, s in runs:
        lines += _target_rows(n, s)
    lines += [""]
    lines += _per_tag_section(runs, tags, k) + _failures_section(runs) + _misses_section(runs)
    if notes:
        lines += ["## Notes", ""] + [f"- {x}" for x in notes] + [""]
    lines += ["## How it is measured", "", HOW_MEASURED, ""]
    return "\n".join(lines) + "\n"


def _provenance(runs: list[tuple[str, dict]]) -> list[str]:
    """One line per run: its suite, k, machine and the sessions that ran its trials."""
    lines = []
    for n, s in runs:
        m = s.get("meta", {})
        ses = [x for x in m.get("sessions", []) if x.get("trials")]
        work = "; ".join(f"`{x['command']}` ({x['trials']} trials, {x['workers']} worker(s), {x['wall_s'] / 60:.1f} min, "
                         f"commit {x.get('commit', '?')})" for x in ses) or f"`{m.get('command', '?')}`"
        lines.append(f"- **{n}**: suite {', '.join(m.get('suite', []))} (fingerprint `{m.get('suite_hash', '?')}`, "
                     f"{m.get('n_cases', '?')} cases), k = {s.get('k')}, tool cache "
                     f"{'on' if m.get('tool_cache', True) else 'off'}; {m.get('machine', '')}; "
                     f"{s.get('complete_cases', '?')}/{m.get('n_cases', '?')} cases have all {s.get('k')} trials. "
                     f"Trials were run by: {work}.")
    lines.append("")
    return lines


def _suite_section(sums: list[dict], tags: list[str]) -> list[str]:
    comp = _composition(sums[0])
    lines = ["## Suite", ""]
    for f in sums[0].get("meta", {}).get("suite", []):
        lines.append(f"- `{f}`: {_suite_header(f)}")
    lines += ["", "Cases per tag (a case may carry several tags; multi-turn cases count once):", "",
              "| tag | cases |", "| --- | ---: |"] + [f"| {t} | {comp.get(t, 0)} |" for t in tags]
    lines += [f"| **all** | {sums[0]['overall']['cases']} |", ""]
    return lines


def _headline(runs: list[tuple[str, dict]], tags: list[str], k: int) -> list[str]:
    """The headline metrics table (brains as columns), the VLM's tool-call probabilities, the
    checks by expected kind and the claim counts."""
    names = [n for n, _ in runs]
    sums = [s for _, s in runs]
    head = "| metric | " + " | ".join(names) + " |"
    sep = "| --- | " + " | ".join("---:" for _ in names) + " |"

    def row(label: str, path: tuple, nd: int = 3) -> str:
        return f"| {label} | " + " | ".join(_f(_get(s, path), nd) for s in sums) + " |"

    lines = ["## Headline", "", head, sep, row("answer accuracy, all cases", ("overall", "answer_accuracy"))]
    lines += [row(f"answer accuracy, {t}", ("per_tag", t, "answer_accuracy")) for t in tags]
    lines += [row("faithful accuracy, all cases (right, or stating exactly what an erring tool measured)",
                  ("overall", "faithful_accuracy"))]
    lines += [row(f"faithful accuracy, {t}", ("per_tag", t, "faithful_accuracy")) for t in TAG_ORDER[:3] if t in tags]
    lines += [row(f"pass^{j}", ("overall", f"pass^{j}")) for j in range(1, k + 1)]
    lines += [row("tool-selection accuracy", ("overall", "tool_selection")),
              row("trajectory match", ("overall", "trajectory_match")),
              row("argument correctness", ("overall", "argument_correctness")),
              row("claim support rate (supported / all claims)", ("overall", "claim_support_rate")),
              row("contradiction rate (contradicted / all claims)", ("overall", "contradiction_rate")),
              row("answers with a contradicted claim", ("overall", "answers_with_contradiction")),
              row("first-draft contradiction rate (claims rejected before any revision / first-draft claims)",
                  ("overall", "first_draft_contradiction_rate")),
              row("irrelevant questions answered without tools", ("overall", "irrelevant_without_tools")),
              row("graph steps per turn, mean", ("overall", "steps_mean"), 2),
              row("graph steps per turn, p95", ("overall", "steps_p95"), 0),
              row("tool calls per turn, mean", ("overall", "tool_calls_mean"), 2),
              row("latency per turn p50, s (first trial)", ("overall", "latency_p50_s"), 2),
              row("latency per turn p95, s (first trial)", ("overall", "latency_p95_s"), 2),
              row("answers revised by the validator", ("overall", "revised_answers"), 0),
              row("turns that raised an exception", ("overall", "errors"), 0), ""]
    for n, s in runs:
        pt = s["overall"].get("p_tool_call")
        if pt:
            lines += [f"{n}: the VLM's probability that its reply starts a tool call (it calls a tool from "
                      f"`agent.brains.TOOL_THRESHOLD`): event questions min {_f(pt['event_questions_min'], 4)}, "
                      f"5th percentile {_f(pt['event_questions_p05'], 4)} ({pt['n_event']} turns); irrelevant "
                      f"questions max {_f(pt['irrelevant_max'], 4)}, 95th percentile {_f(pt['irrelevant_p95'], 4)} "
                      f"({pt['n_irrelevant']} turns).", ""]
    kinds = sorted({kd for s in sums for kd in s.get("per_kind", {})})
    if kinds:
        lines += ["Answer checks by expected kind, per turn (every turn that expects it, multi-turn and adversarial "
                  "turns included):", "", "| kind | turns | " + " | ".join(names) + " |",
                  "| --- | ---: | " + " | ".join("---:" for _ in names) + " |"]
        for kd in kinds:
            n = max(s.get("per_kind", {}).get(kd, {}).get("turns", 0) for s in sums)
            lines.append(f"| {kd} | {n} | " + " | ".join(_f(s.get("per_kind", {}).get(kd, {}).get("accuracy"))
                                                         for s in sums) + " |")
        lines.append("")
    claims = " | ".join(f"{s['overall']['claims'].get('supported', 0)} / {s['overall']['claims'].get('contradicted', 0)}"
                        f" / {s['overall']['claims'].get('unverifiable', 0)}" for s in sums)
    lines += [f"Claims supported / contradicted / unverifiable: {claims} ({', '.join(names)}).", ""]
    return lines


def _per_tag_section(runs: list[tuple[str, dict]], tags: list[str], k: int) -> list[str]:
    lines = ["## Per tag", ""]
    for n, s in runs:
        lines += [f"**{n}**", "", "| tag | cases | trials | answer acc. | faithful acc. | "
                  + " | ".join(f"pass^{j}" for j in range(1, k + 1))
                  + " | tool sel. | trajectory | latency p50 s | failures by cause |",
                  "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in range(k))
                  + " | ---: | ---: | ---: | --- |"]
        for t in tags:
            v = s["per_tag"].get(t)
            if not v:
                continue
            causes = ", ".join(f"{c} {m}" for c, m in v.get("failure_causes", {}).items()) or "-"
            lines.append(f"| {t} | {v['cases']} | {v['trials']} | {_f(v['answer_accuracy'])} | "
                         f"{_f(v.get('faithful_accuracy'))} | "
                         + " | ".join(_f(v.get(f"pass^{j}")) for j in range(1, k + 1))
                         + f" | {_f(v['tool_selection'])} | {_f(v['trajectory_match'])} | {_f(v['latency_p50_s'], 2)} | {causes} |")
        lines.append("")
    return lines


def _failures_section(runs: list[tuple[str, dict]]) -> list[str]:
    lines = ["## Failures by cause", ""]
    for n, s in runs:
        lines += [f"**{n}** (failed trials; examples are `case#trial`)", "", "| cause | trials | meaning | examples |",
                  "| --- | ---: | --- | --- |"]
        for c, v in s.get("failures", {}).items():
            lines.append(f"| {c} | {v['n']} | {CAUSE_TEXT.get(c, '')} | {', '.join(v['examples'][:4])} |")
        if not s.get("failures"):
            lines.append("| - | 0 | no failures | |")
        lines.append("")
    return lines


def _misses_section(runs: list[tuple[str, dict]]) -> list[str]:
    lines = ["## Tool-selection misses", "", "The questions whose first tool call was not the expected one (first "
              "trial; the most frequent question / choice pairs):", ""]
    for n, s in runs:
        miss = s["overall"].get("selection_misses") or []
        lines += [f"**{n}**", ""]
        if not miss:
            lines += ["none", ""]
            continue
        lines += ["| question | expected first tool | tools called | cases |", "| --- | --- | --- | ---: |"]
        lines += [f"| {m['question'][:90]} | {m['expected']} | {m['chosen']} | {m['cases']} |" for m in miss]
        lines.append("")
    return lines


def _plots(runs: list[tuple[str, dict]], folder: Path, rel: str) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    tags = _ordered_tags([s for _, s in runs])
    fig, ax = plt.subplots(figsize=(9, 3.6))
    w = 0.8 / max(1, len(runs))
    x = np.arange(len(tags))
    for i, (n, s) in enumerate(runs):
        vals = [s["per_tag"].get(t, {}).get("answer_accuracy") or 0 for t in tags]
        ax.bar(x + i * w - 0.4 + w / 2, vals, w, label=n)
    ax.axhline(0.9, color="k", lw=0.8, ls="--", label="target 0.90")
    ax.set_xticks(x, tags, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("answer accuracy")
    ax.legend(fontsize=8, ncol=len(runs) + 1)
    fig.tight_layout()
    _save(fig, folder / "accuracy_by_tag.png")
    out["answer accuracy by tag"] = f"{rel}/accuracy_by_tag.png"
    causes = sorted({c for _, s in runs for c in s.get("failures", {})})
    if causes:
        fig, ax = plt.subplots(figsize=(9, 0.4 * len(causes) + 1.2))
        y = np.arange(len(causes))
        h = 0.8 / len(runs)
        for i, (n, s) in enumerate(runs):
            ax.barh(y + i * h - 0.4 + h / 2, [s.get("failures", {}).get(c, {}).get("n", 0) for c in causes], h, label=n)
        ax.set_yticks(y, causes, fontsize=8)
        ax.set_xlabel("failed trials")
        ax.legend(fontsize=8)
        fig.tight_layout()
        _save(fig, folder / "failures_by_cause.png")
        out["failures by cause"] = f"{rel}/failures_by_cause.png"
    plt.close("all")
    return out


def _save(fig, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def write_run_report(out_dir: Union[str, os.PathLike], summary: dict) -> None:
    out = Path(out_dir)
    name = summary.get("meta", {}).get("brain", "run")
    with atomic_open(out / "report.json", "w") as f:
        json.dump(summary, f, indent=1, default=str)
    with atomic_open(out / "report.md", "w") as f:
        f.write(render_md([(name, summary)], title=f"Agent evaluation: {name}"))


def write_side_by_side(runs: list[tuple[str, dict]], run_dirs: list[Union[str, os.PathLike]],
                       stem: Union[str, os.PathLike] = "evals/reports/agent",
                       commands: Optional[list[str]] = None, notes: Optional[list[str]] = None) -> Path:
    """``STEM.md``, ``STEM.json`` and plots in ``STEM/`` from the summaries of finished runs
    (``(brain, summary)``, e.g. ``runner.rescored_runs(run_dirs)``)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    plots = _plots(runs, stem.parent / stem.name, stem.name)
    suites = sorted({str(x) for _, r in runs for x in (r.get("meta", {}).get("suite") or [])})
    on = ("the full suite" if not suites or all(x.startswith("evals/suites/") for x in suites)
          else ", ".join(f"`{x}`" for x in suites))
    md = render_md(runs, title=f"Agent evaluation: brains side by side on {on}", plots=plots,
                   commands=commands, notes=notes)
    with atomic_open(stem.with_suffix(".md"), "w") as f:
        f.write(md)
    with atomic_open(stem.with_suffix(".json"), "w") as f:
        json.dump({"runs": {n: s for n, s in runs}, "run_dirs": [str(d) for d in run_dirs],
                   "commands": commands or [], "notes": notes or []}, f, indent=1, default=str)
    return stem.with_suffix(".md")
