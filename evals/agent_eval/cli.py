"""``larsight eval agent`` / ``python -m larsight.evals.agent_eval``: run suites with one or more brains
and write the side-by-side report.

    larsight eval agent                                   # vlm and rules, k=3, full suite
    larsight eval agent --brain rules --k 3 --no-report   # one brain into runs/eval_rules
    larsight eval agent --brain vlm,rules --report-only   # the report from finished run folders

Each brain runs into its own resumable folder (``--out-root``/eval_<brain>; a killed run
continues where it stopped when started again with the same options); then
``--report`` (default evals/reports/agent) gets the brains side by side.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional

DEFAULT_SUITE = "evals/suites"
DEFAULT_REPORT = "evals/reports/agent"

NOTES = [
    "Determinism: the `rules` brain is deterministic, and the shipped `vlm` brain scores the tool calls under the "
    "language model and takes the most probable (greedy; its explanation is generated greedily too), so with "
    "temperature 0 repeated trials repeat themselves and pass^k equals pass^1 unless something in the "
    "loop is not deterministic. `--temperature T` (vlm only, evaluation-side) samples the tool from the VLM's "
    "tool probabilities at T, seeded per case and trial, which makes pass^k informative.",
    "Tool results are cached per (tool, arguments, event) within a worker, so the k trials of a case and the "
    "questions about one event run each tool once; the brain itself is asked again in every trial. Latency "
    "percentiles are over the first trial of every turn (models loaded; tools of an event cached once an earlier "
    "case of the same event ran them).",
    "The `openai` brain needs an OpenAI-compatible endpoint (`--base-url`, `--model`); none is reachable from this "
    "machine, so it is tested with a scripted fake chat model (tests/test_eval_agent.py) and not reported here.",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", nargs="+", default=[DEFAULT_SUITE], help="suite files or folders of *.jsonl "
                   f"(default {DEFAULT_SUITE})")
    p.add_argument("--brain", default="vlm,rules", help="comma list of brains: rules, vlm, openai or "
                   "package.module:factory (default vlm,rules)")
    p.add_argument("--k", type=int, default=3, help="trials per case (pass^k; default 3)")
    p.add_argument("--workers", type=int, default=1, help="worker processes per brain (each loads the models)")
    p.add_argument("--out-root", default="runs", help="run folders are OUT_ROOT/eval_<brain> (default runs)")
    p.add_argument("--out", default=None, help="run folder (one brain only; default OUT_ROOT/eval_<brain>)")
    p.add_argument("--report", default=DEFAULT_REPORT, help=f"side-by-side report stem (default {DEFAULT_REPORT})")
    p.add_argument("--no-report", action="store_true", help="only run (each run folder still gets its report.md)")
    p.add_argument("--report-only", action="store_true", help="do not run: write the report from the run folders")
    p.add_argument("--tags", default=None, help="only cases with one of these tags (comma list)")
    p.add_argument("--limit", type=int, default=None, help="only the first N cases")
    p.add_argument("--temperature", type=float, default=0.0, help="vlm brain: sample the tool at this temperature")
    p.add_argument("--vlm", default=None, help="VLM folder for the vlm brain (default: checkpoints/vlm_smollm2)")
    p.add_argument("--policy", choices=("keywords", "actions"), default=None,
                   help="vlm brain: how it chooses (default $LARSIGHT_VLM_POLICY or keywords); actions: the VLM "
                        "emits the action (agent.vlm_actions)")
    p.add_argument("--action-vlm", default=None,
                   help="vlm brain, --policy actions: the action model folder (default $LARSIGHT_ACTION_VLM or "
                        "checkpoints/vlm_actions)")
    p.add_argument("--base-url", default=None, help="openai brain: the endpoint")
    p.add_argument("--model", default=None, help="openai brain: the model name")
    p.add_argument("--no-tool-cache", action="store_true", help="run the tools again in every trial")
    p.add_argument("--fresh", action="store_true", help="discard finished records and start over")
    p.add_argument("--index-root", default="runs/eval_index", help="where index specs of retrieval cases are built")
    p.add_argument("--no-progress", action="store_true")


def run_dir_for(args, brain: str) -> Path:
    if args.out:
        return Path(args.out)
    slug = brain.replace(":", "_").replace(".", "_").replace("/", "_")
    if args.temperature > 0 and brain == "vlm":
        slug += f"_T{args.temperature:g}"
    if brain == "vlm" and (getattr(args, "policy", None) == "actions" or getattr(args, "action_vlm", None)):
        slug += "_actions"
    return Path(args.out_root) / f"eval_{slug}"


def run(args) -> int:
    # imported here, not at the top: `larsight --help` builds this parser and must not pay for
    # the agent's imports (langgraph, the tools: seconds)
    from .report import write_side_by_side
    from .runner import rescored_runs, run_agent_eval

    brains = [b.strip() for b in args.brain.split(",") if b.strip()]
    if not brains:
        raise ValueError("--brain: give at least one brain")
    if args.out and len(brains) > 1:
        raise ValueError("--out takes one brain; use --out-root for several")
    argv = getattr(args, "argv", None)
    command = ("larsight " + " ".join(shlex.quote(a) for a in argv)) if argv else \
        "python -m larsight.evals.agent_eval " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    dirs = []
    for b in brains:
        out = run_dir_for(args, b)
        dirs.append(out)
        if args.report_only:
            continue
        kw = {}
        if b == "vlm" and args.vlm:
            kw["vlm"] = args.vlm
        if b == "vlm" and (args.policy or args.action_vlm):
            kw["policy"] = args.policy or "actions"
            if args.action_vlm:
                kw["action_vlm"] = args.action_vlm
        if b == "openai":
            kw.update(base_url=args.base_url, model_name=args.model)
        s = run_agent_eval(args.suite, brain=b, out=out, k=args.k, workers=args.workers, brain_kw=kw,
                           temperature=args.temperature if b == "vlm" else 0.0, tool_cache=not args.no_tool_cache,
                           tags=args.tags.split(",") if args.tags else None, limit=args.limit,
                           progress=not args.no_progress, fresh=args.fresh, index_root=args.index_root,
                           command=command)
        o = s["overall"]
        print(f"{b}: {o['cases']} cases x k={args.k}: answer accuracy {o['answer_accuracy']}, pass^{args.k} "
              f"{o.get(f'pass^{args.k}')}, tool selection {o['tool_selection']} -> {out}/report.md")
    if not args.no_report:
        suite = " ".join(args.suite)
        # every non-default option that changes what runs or where it lands, so each line
        # regenerates this report and not the default one
        suite_opt = f" --suite {suite}" if suite != DEFAULT_SUITE else ""
        where = (f"{' --out-root ' + str(args.out_root) if str(args.out_root) != 'runs' else ''}"
                 f"{' --report ' + str(args.report) if str(args.report) != str(DEFAULT_REPORT) else ''}")
        cmds = [f"larsight eval agent --suite {suite} --brain {','.join(brains)} --k {args.k}"
                f"{' --workers ' + str(args.workers) if args.workers > 1 else ''}"
                f"{' --temperature ' + format(args.temperature, 'g') if args.temperature else ''}{where}",
                "# or one brain at a time (resumable; e.g. in the background), then the report:"]
        cmds += [f"larsight eval agent{suite_opt} --brain {b} --k {args.k} --no-report --out {d}"
                 for b, d in zip(brains, dirs)]
        cmds += [f"larsight eval agent --brain {','.join(brains)} --report-only{suite_opt}{where}"]
        path = write_side_by_side(rescored_runs(dirs), dirs, args.report, commands=cmds, notes=NOTES)
        print(f"report: {path}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m larsight.evals.agent_eval", description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except ValueError as e:   # SuiteError included: names the file and line
        print(f"agent eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
