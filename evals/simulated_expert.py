"""A simulated expert: a physicist who knows the simulator truth marks the agent's answers.

    python -m larsight.evals.simulated_expert --events sim:nu:seed=17001:voxel=0.6 --n-events 100 \\
        --questions 4 --db runs/feedback_sim.sqlite --brain vlm --author sim-expert

For each of the first ``--n-events`` usable neutrino events of the spec (events with a classified
interaction and a vertex; referenced as ``sim:nu:seed=S:voxel=CM:index=I``, so the preference stage
re-creates them), the agent answers ``--questions`` questions (classification with its "why",
counts, track lengths, Michel electrons, the vertex; rotating through ``QUESTIONS``). Each typed
claim of the answer (``Answer.claims``) is held against the truth (``events.vocabulary.event_facts``:
the visible-particle counts the evaluation suites score with):

- ``event_class``: the interaction's class (nue_cc / numu_cc / nc);
- ``count`` / ``present`` / ``absent``: the visible count of the species (track / shower too);
- ``michel``: a visible Michel electron at a track end;
- ``track_length``: the longest visible track (``longest``) or the longest track of the species,
  within ``max(LENGTH_TOL_CM, LENGTH_TOL_REL * truth)``; a length of a species the event lacks is wrong;
- ``vertex``: within ``VERTEX_TOL_CM`` (the suites' tolerance).

Other kinds (energies, dE/dx, gaps) are not judged. An expert reads the trace: when the language
model wrote its own text (``Answer.model_texts``, the VLM's "why"), the claims of its FIRST-DRAFT
text are judged too (corrections ``of: first_draft``; the final answer's free-text claims only when
a revision changed that text, so no claim is marked twice). The store gives each correction its
blame (``agent.feedback.blame_of``): 'model' where the model's own words said what the
observations did not, 'tool' where the observations said so (the measurement was off the truth);
only model errors become VLM training pairs. All judged claims right: thumbs up. Else
thumbs down with a correction per wrong claim ("should be" the true value or class, or "wrong"
when there is no true value to give). An answer without a judged claim gets a comment only.
Stored with ``FeedbackStore.record_answer`` + ``add`` (author ``--author``, source
``sim-expert``). Resumable: a (event, question) this author already marked is not asked again.

The split is fixed: feedback comes from TRAINING seeds only (default ``TRAIN_SEED`` 17001);
``HELDOUT_SEEDS`` (17002) are kept for the learning curve's held-out answers and refused here,
and the agent-evaluation suites' events (the ``eval`` split, ``encoder.data.split_seed``) are
never these seeds' events.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from typing import Any, Iterator, Optional

from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from larsight.events.vocabulary import event_facts
from larsight.tools.event_keys import DEFAULT_SIM_VOXEL_CM, EventRef, parse_sim_fields

__all__ = ["judge", "run_simulated_expert", "SimExpertReport", "QUESTIONS", "TRAIN_SEED", "HELDOUT_SEEDS",
           "sim_events", "parse_spec", "main"]

TRAIN_SEED = 17001
HELDOUT_SEEDS = (17002,)
"""Seeds whose events are kept for held-out evaluation (the learning curve); refused here."""
LENGTH_TOL_CM, LENGTH_TOL_REL = 3.0, 0.10
VERTEX_TOL_CM = 3.0
SOURCE = "sim-expert"
QUESTIONS = (
    "Classify this event and explain why.",
    "How many protons are there?",
    "How long is the longest track?",
    "Is there a Michel electron?",
    "What kind of neutrino interaction is this, and why?",
    "How many muons are there?",
    "How long is the muon track?",
    "Where is the interaction vertex?",
    "How many photons are there?",
    "Is there an electron in this event?",
)


class SimExpertReport(BaseModel):
    """What a run marked."""

    events: int = 0
    asked: int = 0
    already_marked: int = 0
    up: int = 0
    down: int = 0
    no_judged_claim: int = 0
    claims_judged: int = 0
    claims_wrong: dict[str, int] = Field(default_factory=dict, description="wrong claims by kind")
    wrong_from_text: int = Field(0, description="wrong claims read from a language model's free text "
                                 "(first draft or final)")
    model_errors: int = Field(0, description="corrections blamed on the model (its words, not the observations)")
    tool_errors: int = Field(0, description="corrections blamed on a tool (the observations were off the truth)")
    feedback_ids: list[int] = Field(default_factory=list)

    def lines(self) -> list[str]:
        wrong = ", ".join(f"{k} {v}" for k, v in sorted(self.claims_wrong.items())) or "none"
        return [f"{self.events} events, {self.asked} answers marked ({self.already_marked} already marked "
                f"by this author, skipped)",
                f"thumbs up {self.up}, thumbs down {self.down}, no claim to judge {self.no_judged_claim}",
                f"claims judged {self.claims_judged}, wrong {sum(self.claims_wrong.values())} ({wrong}; "
                f"{self.wrong_from_text} of them in the language model's own words)",
                f"corrections: {self.model_errors} model error(s) (VLM training pairs), {self.tool_errors} tool "
                f"error(s) (the observations were off the truth; kept for the perception models)"]


# ============================================================================ the events
def parse_spec(spec: str) -> tuple[int, float]:
    """(seed, voxel cm) of ``sim:nu:seed=S[:voxel=CM]``; refuses other specs and held-out seeds."""
    if not spec.startswith("sim:"):
        raise ValueError(f"--events {spec!r}: expected sim:nu:seed=S[:voxel=CM]")
    mode, f = parse_sim_fields(spec[4:], f"--events {spec!r}")
    if mode != "nu" or set(f) - {"seed", "voxel"} or "seed" not in f:
        raise ValueError(f"--events {spec!r}: expected sim:nu:seed=S[:voxel=CM] (neutrino events: the truth "
                         f"has an interaction class)")
    try:
        seed, voxel = int(f["seed"]), float(f.get("voxel", DEFAULT_SIM_VOXEL_CM))
    except ValueError:
        raise ValueError(f"--events {spec!r}: the seed must be an integer and the voxel a number") from None
    if seed in HELDOUT_SEEDS:
        raise ValueError(f"--events {spec!r}: seed {seed} is held out for evaluating the preference-tuned "
                         f"VLM; give a training seed (e.g. {TRAIN_SEED})")
    return seed, voxel


def sim_events(spec: str, n: int) -> Iterator[tuple[str, Any, Any]]:
    """(reference, event, truth of the main interaction) of the first ``n`` usable events of
    ``sim:nu:seed=S[:voxel=CM]``."""
    seed, voxel = parse_spec(spec)
    found, i = 0, 0
    while found < n:
        ref = EventRef("sim:nu", i, seed, voxel)
        ev = ref.load()
        i += 1
        if len(ev) == 0:
            continue
        main = event_facts(ev).main
        if main is None or not main.event_class or main.vertex_cm is None:
            continue
        found += 1
        yield ref.key, ev, main
        if i > 50 * n + 100:
            raise RuntimeError(f"only {found} usable events in the first {i} of {spec}")


# ============================================================================ judging claims
def _true_length(claim, truth) -> Optional[float]:
    if claim.qualifier == "longest" or claim.subject in ("track", None):
        t = truth.longest_track
    else:
        ts = [p for p in truth.of_type(claim.subject) if p.kind == "track" and p.length_cm is not None]
        t = max(ts, key=lambda p: p.length_cm) if ts else None
    return None if t is None or t.length_cm is None else float(t.length_cm)


def _michel(truth) -> bool:
    return bool(truth.counts.get("michel", 0)) or any(p.michel for p in truth.visible_particles())


def _judge_one(c, truth) -> tuple[Optional[bool], Optional[dict]]:
    """(right?, correction) of one claim; (None, None) when the kind is not judged."""
    k = c.kind
    if k == "event_class":
        if c.qualifier == "not":
            return (c.value != truth.event_class, {"mark": "wrong"})
        return (c.value == truth.event_class, {"label": truth.event_class})
    if k in ("count", "present", "absent"):
        if c.subject not in truth.counts and c.subject not in ("track", "shower"):
            return None, None
        n = int(truth.counts.get(c.subject, 0))
        if k == "count":
            return (int(round(c.number or 0)) == n, {"value": float(n)})
        ok = (n > 0) == (k == "present")
        return ok, {"label": "present" if n > 0 else "absent"}
    if k == "michel":
        true = _michel(truth)
        return ((c.qualifier != "absent") == true, {"label": "present" if true else "absent"})
    if k == "track_length" and c.number is not None:
        t = _true_length(c, truth)
        if t is None:
            return False, {"mark": "wrong"}
        return (abs(c.number - t) <= max(LENGTH_TOL_CM, LENGTH_TOL_REL * t), {"value": round(t, 1), "unit": "cm"})
    if k == "vertex" and isinstance(c.value, (tuple, list)) and truth.vertex_cm is not None:
        v = [float(x) for x in truth.vertex_cm]
        return (math.dist(c.value, v) <= VERTEX_TOL_CM, {"value": [round(x, 1) for x in v], "unit": "cm"})
    return None, None


def judge(checks: list, truth) -> tuple[int, list[dict], Counter]:
    """(claims judged, corrections of the wrong ones by claim row, wrong claims by kind) of an
    answer's claim table (``agent.validate.Check`` objects) against the main interaction's truth."""
    judged, corrections, wrong = 0, [], Counter()
    for row, check in enumerate(checks):
        ok, fix = _judge_one(check.claim, truth)
        if ok is None:
            continue
        judged += 1
        if not ok:
            wrong[check.claim.kind] += 1
            corrections.append({"claim": row, **({"mark": "should_be"} | fix)})
    return judged, corrections, wrong


def _comment(checks: list, corrections: list[dict]) -> str:
    """The corrections in words: 'claim 2 (count proton 3): truth 1; first-draft claim 0 (...): ...'."""
    parts = []
    for c in corrections:
        said = checks[c["claim"]].claim.describe()
        true = c.get("label") or c.get("value")
        who = "first-draft claim" if c.get("of") == "first_draft" else "claim"
        parts.append(f"{who} {c['claim']} ({said}): " + ("wrong" if c["mark"] == "wrong" else f"truth {true}"))
    return "; ".join(parts)


# ============================================================================ the run
def run_simulated_expert(events: str, n_events: int, questions: int, db: Any = None, brain: Any = "vlm",
                         author: str = "sim-expert", agent: Any = None, progress: bool = True) -> SimExpertReport:
    """Mark the agent's answers on ``n_events`` events x ``questions`` questions (module docstring)."""
    from larsight.agent import Agent
    from larsight.agent.feedback import FeedbackStore, model_versions

    if n_events < 1 or questions < 1:
        raise ValueError("--n-events and --questions must be >= 1")
    parse_spec(events)      # a bad or held-out spec fails before anything is loaded or written
    agent = agent if agent is not None else Agent(brain)
    store = FeedbackStore(db)
    report = SimExpertReport()
    try:
        done = {(s.event, s.question) for s in store.list(author=author, limit=None)}
        models = model_versions(agent)
        bar = tqdm(total=n_events * questions, desc="simulated expert", unit="answer", disable=not progress)
        for j, (ref, _ev, truth) in enumerate(sim_events(events, n_events)):
            report.events += 1
            for q in range(questions):
                question = QUESTIONS[(j * questions + q) % len(QUESTIONS)]
                bar.update(1)
                if (ref, question) in done:
                    report.already_marked += 1
                    continue
                answer = agent.ask(ref, question)
                report.feedback_ids.append(_mark(store, answer, truth, models, author, report))
        bar.close()
    finally:
        store.close()
    return report


def _judged_tables(rec) -> list[tuple[str, list]]:
    """(whose, claim checks) an expert reads: the answer's claim table (its free-text claims only
    when a revision changed the model's text), then the model's first-draft text's claims."""
    from larsight.agent.validate import Check

    answer = [Check.model_validate(c) for c in rec.claims]
    first = rec.first_draft
    if first is None:
        return [("answer", answer)]
    revised = rec.model_texts[-1].text != first.text
    keep = [c if (c.claim.source == "tools" or revised) else None for c in answer]
    return [("answer", keep), ("first_draft", [Check.model_validate(c) for c in first.claims])]


def _mark(store, answer, truth, models: dict, author: str, report: SimExpertReport) -> int:
    from larsight.agent.feedback import Correction, blame_of, record_from_answer

    rec = record_from_answer(answer, models)
    judged, corrections, comments = 0, [], []
    for whose, checks in _judged_tables(rec):
        rows = [(i, c) for i, c in enumerate(checks) if c is not None]
        n, fixes, wrong = judge([c for _, c in rows], truth)
        fixes = [{**f, "claim": rows[f["claim"]][0], "of": whose} for f in fixes]
        judged += n
        for kind, k in wrong.items():
            report.claims_wrong[kind] = report.claims_wrong.get(kind, 0) + k
        for f in fixes:
            check = checks[f["claim"]]
            report.wrong_from_text += check.claim.source == "text" or whose == "first_draft"
            blame = blame_of(Correction.model_validate(f), check.model_dump(mode="json"))
            report.model_errors += blame == "model"
            report.tool_errors += blame == "tool"
        corrections += fixes
        comments.append(_comment(checks, fixes))
    report.asked += 1
    report.claims_judged += judged
    text = "; ".join(c for c in comments if c) or "all judged claims right"
    item: dict[str, Any] = {"author": author, "comment": "simulated expert (simulator truth): " + text}
    if not judged:
        report.no_judged_claim += 1
        item["comment"] = "simulated expert: no claim of this answer can be judged against the truth"
    elif corrections:
        report.down += 1
        item |= {"verdict": "down", "corrections": corrections}
    else:
        report.up += 1
        item["verdict"] = "up"
    aid = store.record_answer(rec)
    return store.add({"answer_id": aid, **item}, source=SOURCE)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m larsight.evals.simulated_expert",
                                description=__doc__.split("\n")[0])
    p.add_argument("--events", default=f"sim:nu:seed={TRAIN_SEED}:voxel=0.6",
                   help=f"sim:nu:seed=S[:voxel=CM] (training seeds; {HELDOUT_SEEDS} are held out)")
    p.add_argument("--n-events", type=int, default=50)
    p.add_argument("--questions", type=int, default=4, help=f"questions per event (of {len(QUESTIONS)})")
    p.add_argument("--db", default=None, help="feedback database: SQLite file or SQLAlchemy URL "
                   "(default: agent.feedback's default)")
    p.add_argument("--brain", default="vlm", help="rules, vlm or openai")
    p.add_argument("--author", default="sim-expert")
    args = p.parse_args(argv)
    try:
        report = run_simulated_expert(args.events, args.n_events, args.questions, args.db, args.brain, args.author)
    except (ValueError, OSError) as e:
        print(f"simulated expert: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
