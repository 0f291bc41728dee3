"""Promote a trained VLM folder into ``checkpoints/`` only after the suites say it is no worse.

    larsight eval agent --brain vlm --policy actions --action-vlm checkpoints/vlm_actions --k 1 --out runs/eval_old
    larsight eval agent --brain vlm --policy actions --action-vlm RUN/vlm --k 1 --out runs/eval_new
    larsight promote RUN/vlm --to checkpoints/vlm_actions --baseline runs/eval_old --candidate-run runs/eval_new

A new adapter never replaces the shipped one silently. ``promote`` checks that the two agent
runs measured what they claim (the candidate run's recorded model digest is the candidate
folder's, the baseline run's is the folder being replaced, when there is one; the same suite),
prints ``larsight eval compare`` of the two, and refuses when a headline metric got worse by
more than the noise: twice the binomial standard error of the baseline's rate over its
cases, ``2 sqrt(p (1 - p) / n)``, or ``--noise``. With ``--force`` it promotes anyway and says
so in the record. The copy is atomic (a new folder renamed into place; the replaced folder is
removed only after), and the promoted folder's ``vlm.json`` gains a ``promoted`` entry with
both runs, their metrics and the decision; ``promotion.md`` beside it holds the comparison.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

from larsight.agent.feedback.versions import folder_digest
from larsight.events.formats.atomic import atomic_open

__all__ = ["Gate", "gate", "promote", "GATED"]

GATED = {"answer_accuracy": +1, "tool_selection": +1, "pass^1": +1, "contradiction_rate": -1,
         "answers_with_contradiction": -1}
"""Headline metrics that may not get worse (+1: higher is better, -1: lower is better)."""


class PromotionError(ValueError):
    """A promotion that the evidence does not allow (or that cannot be checked)."""


def _summary(spec: str) -> dict:
    from .compare import load   # the agent's imports (seconds): not when the CLI parser is built

    data, _ = load(spec)
    if "overall" not in data:
        runs = data.get("runs") or {}
        if len(runs) != 1:
            raise PromotionError(f"{spec}: give one agent run (a run folder or its report.json), not {len(runs)} brains")
        data = next(iter(runs.values()))
    return data


def _digests(summary: dict) -> set[str]:
    models = (summary.get("meta") or {}).get("models") or {}
    return {str(v).rsplit("@", 1)[-1] for k, v in models.items() if k in ("vlm", "action_vlm")}


class Gate:
    """The decision: which metrics got worse beyond the noise."""

    def __init__(self, baseline: dict, candidate: dict, noise: Optional[float]):
        self.rows, self.worse = [], []
        n = max(1, int(baseline["overall"].get("cases") or 1))
        for key, sign in GATED.items():
            a, b = baseline["overall"].get(key), candidate["overall"].get(key)
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                continue
            tol = noise if noise is not None else 2 * math.sqrt(max(a * (1 - a), 1.0 / n) / n) if 0 <= a <= 1 else 0.0
            worse = sign * (b - a) < -tol
            self.rows.append({"metric": key, "baseline": a, "candidate": b, "tolerance": round(tol, 4),
                              "worse": worse})
            if worse:
                self.worse.append(key)

    @property
    def passed(self) -> bool:
        return not self.worse


def gate(candidate_dir: Path, dest: Path, baseline_run: str, candidate_run: str,
         noise: Optional[float] = None) -> tuple[Gate, dict, dict]:
    """Check the two runs against the folders and compare them (raises ``PromotionError``)."""
    base = _summary(baseline_run)
    cand = _summary(candidate_run)
    want = folder_digest(candidate_dir)
    if want is None:
        raise PromotionError(f"{candidate_dir}: no weights (*/*.safetensors) to promote")
    if want not in _digests(cand):
        raise PromotionError(f"{candidate_run} did not measure {candidate_dir} (its models: "
                             f"{(cand.get('meta') or {}).get('models')}); rerun the evaluation with it")
    old = folder_digest(dest) if dest.is_dir() else None
    if old is not None and old not in _digests(base):
        raise PromotionError(f"{baseline_run} did not measure the folder being replaced, {dest} "
                             f"(its models: {(base.get('meta') or {}).get('models')})")
    ha, hb = (base.get("meta") or {}).get("suite_hash"), (cand.get("meta") or {}).get("suite_hash")
    if ha != hb:
        raise PromotionError(f"the two runs used different suites ({ha} vs {hb}); compare on the same one")
    return Gate(base, cand, noise), base, cand


def _copy_into_place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("state", "*.tmp"))
    old = dest.with_name(f".{dest.name}.old-{_dt.datetime.now().strftime('%Y%m%d%H%M%S')}")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)


def promote(candidate_dir: str, dest: str, baseline_run: str, candidate_run: str, noise: Optional[float] = None,
            force: bool = False, dry_run: bool = False) -> dict:
    """Gate, compare, and (when allowed) copy ``candidate_dir`` to ``dest``; returns the record."""
    src, dst = Path(candidate_dir), Path(dest)
    if not (src / "vlm.json").is_file():
        raise PromotionError(f"{src}: not a VLM folder (no vlm.json)")
    if src.resolve() == dst.resolve():
        raise PromotionError("the candidate is already the destination folder")
    from .compare import compare_agent   # the agent's imports: only when promoting

    g, base, cand = gate(src, dst, baseline_run, candidate_run, noise)
    text = compare_agent(base, cand, baseline_run, candidate_run)   # the runs as loaded by the gate
    decision = "promoted" if g.passed else ("promoted with --force" if force else "refused")
    record = {"from": str(src), "to": str(dst), "baseline_run": baseline_run, "candidate_run": candidate_run,
              "gate": g.rows, "decision": decision if not dry_run else f"dry run: would be {decision}",
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if dry_run or decision == "refused":
        return {**record, "comparison": text}
    _copy_into_place(src, dst)
    manifest = json.loads((dst / "vlm.json").read_text())
    manifest["promoted"] = record
    with atomic_open(dst / "vlm.json", "w") as f:
        json.dump(manifest, f, indent=1)
    with atomic_open(dst / "promotion.md", "w") as f:
        f.write(f"# Promotion of `{src}`\n\nDecision: **{decision}**\n\n| metric | baseline | candidate | "
                "tolerance | worse |\n| --- | ---: | ---: | ---: | --- |\n" +
                "".join(f"| {r['metric']} | {r['baseline']:.3f} | {r['candidate']:.3f} | {r['tolerance']:.3f} | "
                        f"{'yes' if r['worse'] else 'no'} |\n" for r in g.rows) + "\n" + text + "\n")
    return {**record, "comparison": text}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("candidate", help="the trained VLM folder (RUN/vlm)")
    p.add_argument("--to", required=True, help="the shipped folder it would replace (e.g. checkpoints/vlm_actions)")
    p.add_argument("--baseline", required=True, help="agent-eval run of the folder being replaced")
    p.add_argument("--candidate-run", required=True, help="agent-eval run of the candidate, same suite")
    p.add_argument("--noise", type=float, default=None,
                   help="allowed drop per metric (default: 2 binomial standard errors of the baseline)")
    p.add_argument("--force", action="store_true", help="promote even when a metric got worse (recorded)")
    p.add_argument("--dry-run", action="store_true", help="only print the comparison and the decision")


def run(args) -> int:
    rec = promote(args.candidate, args.to, args.baseline, args.candidate_run, args.noise, args.force, args.dry_run)
    print(rec["comparison"])
    for r in rec["gate"]:
        print(f"{r['metric']}: {r['baseline']:.3f} -> {r['candidate']:.3f} (tolerance {r['tolerance']:.3f})"
              f"{'  WORSE' if r['worse'] else ''}")
    print(f"decision: {rec['decision']}")
    return 0 if not rec["decision"].endswith("refused") else 1


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="larsight promote", description=__doc__.split("\n")[0])
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except (PromotionError, FileNotFoundError) as e:
        print(f"promote: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
