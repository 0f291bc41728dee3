"""Scoring one answered turn against its case: the answer, the tools, the arguments, the cause.

Works on the JSON record of a turn (``evals.agent_eval.runner.turn_record``), so a run's
records can be scored again without re-running the agent. Deterministic checks only; no
judge model:

- answer: every key of the turn's ``expect`` must hold (``suite`` docstring). Counts the answer
  does not state count as 0 only when it states at least one count (the agent's topology
  sentences omit zero photons); a turn whose answer states no value of an expected kind fails.
- tool selection (BFCL-style): the first tool the brain chose is the reference's first tool
  (or an alternative reference's), or no tool when the reference is empty; in a later turn of a thread, no call also counts
  when the reference's first tool already ran earlier in the thread (its result is in memory).
- trajectory: the match mode of the case (strict / unordered / subset / superset).
- arguments: for each tool with expected arguments, its first call's arguments hold every
  expected key (``"*"``: any non-empty value; ``{"like": TEXT}``: a text with at least half of
  TEXT's content words, for paraphrased search queries).
- unit (``expect.unit``): the answer's text quotes a number in the unit asked for.
- pass: the answer is right, the trajectory matches and no claim of the answer is
  contradicted by the tools (the unit of pass^k).
- a turn whose brain failed (the loop's ``brain error`` stop) is wrong whatever it says.
- cause of a failure, the first that applies: ``exception``, ``brain_error``, ``stopped``, ``leak``,
  ``injection_filter`` (the question was cut away as an embedded instruction and nothing was
  answered), ``tool_for_irrelevant``, ``wrong_tool``, ``tool_error``, ``contradicted_claim``,
  ``no_measurement:<tool>`` (the tool ran and measured nothing of the kind, e.g. no vertex
  found), ``no_value``, ``measurement:<tool>`` (the answer states what the tool measured, and the
  measurement differs from the simulator truth: the tool's error, not the agent's),
  ``unit`` (only the unit asked for is missing), ``wrong_value``, ``trajectory``, ``arguments``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Optional

from .suite import Case, Expect, Trajectory, Turn

__all__ = ["score_turn", "score_case", "trajectory_match", "args_match", "CAUSES"]

CAUSES = ("exception", "brain_error", "stopped", "leak", "injection_filter", "tool_for_irrelevant", "wrong_tool", "tool_error",
          "contradicted_claim", "no_value", "measurement", "unit", "wrong_value", "trajectory", "arguments")

_CLAIM_KINDS = {"event_class": ("event_class",), "class_is": ("event_class",), "vertex_cm": ("vertex",),
                "counts": ("count", "absent", "present"), "present": ("count", "absent", "present"),
                "michel": ("michel",)}
_TOOL_OF = {"event_class": ("classify_event",), "class_is": ("classify_event",), "vertex_cm": ("find_vertex",),
            "counts": ("reconstruct",), "present": ("reconstruct",), "michel": ("reconstruct", "segment"),
            "similar": ("find_similar",)}
"""The tools whose measurement answers each kind (the validator's evidence sources)."""


# ============================================================================ trajectories
def trajectory_match(actual: list[str], ref: Trajectory) -> bool:
    """agentevals-style trajectory match of the tools called against the reference (or one of
    its alternatives)."""
    return any(_match(actual, want, ref.match) for want in ref.references)


def _match(actual: list[str], want: list[str], mode: str) -> bool:
    if mode == "strict":
        return list(actual) == list(want)
    if mode == "unordered":
        return Counter(actual) == Counter(want)
    if mode == "subset":
        return set(actual) <= set(want)
    return set(want) <= set(actual)   # superset


def args_match(calls: list[dict], expected: dict[str, dict]) -> Optional[bool]:
    """Every tool with expected arguments: its first call has them (None: nothing expected)."""
    if not expected:
        return None
    for tool, want in expected.items():
        call = next((c for c in calls if c.get("tool") == tool), None)
        if call is None:
            return False
        got = call.get("arguments") or {}
        for k, v in want.items():
            if v == "*":
                if got.get(k) in (None, "", [], {}):
                    return False
            elif isinstance(v, dict) and set(v) == {"like"}:
                if not text_like(got.get(k), v["like"]):
                    return False
            elif got.get(k) != v:
                return False
    return True


_STOP = frozenset("a an the and or of with to in for me some any events event like that this is are".split())
_NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "single": "1"}


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9_]+", text.lower())
    return {_NUMBER_WORDS.get(w, w[:-1] if len(w) > 3 and w.endswith("s") else w) for w in words if w not in _STOP}


def text_like(got, want: str, share: float = 0.5) -> bool:
    """A paraphrase check for a text argument: ``got`` has at least ``share`` of ``want``'s
    content words (stop words dropped, plurals and number words folded)."""
    if not isinstance(got, str) or not got.strip():
        return False
    need = _content_words(want)
    return not need or len(need & _content_words(got)) >= share * len(need)


_UNIT_FORMS = {"cm": r"cm|centimet(?:re|er)s?", "mm": r"mm|millimet(?:re|er)s?", "m": r"m|met(?:re|er)s?",
               "in": r"inch(?:es)?|in\b(?=\s*(?:[,.;:)]|$))|\"", "X0": r"X[0₀]|radiation lengths?",
               "MeV": r"MeV", "GeV": r"GeV", "keV": r"keV", "J": r"J|joules?", "MeV/cm": r"MeV ?/ ?cm", "MeV/mm": r"MeV ?/ ?mm",
               "keV/cm": r"keV ?/ ?cm", "MeV cm2/g": r"MeV[ ·*]?cm(?:2|\^2|²) ?/ ?g"}
_NUMBER = r"[-+−]?\d[\d,]*(?:\.\d+)?(?:\s*(?:[eE][-+−]?\d+|[x×]\s*10\^?[-+−]?\d+))?"


def states_unit(text: str, unit: str) -> bool:
    """The text quotes a number followed by ``unit`` (or a spelled-out form of it; a closing
    bracket may come between, as in a vertex "(x, y, z) mm")."""
    pat = rf"{_NUMBER}\s*[)\]]?\s*(?:{_UNIT_FORMS[unit]})(?![A-Za-z0-9/²^])"
    return re.search(pat, text or "", flags=0 if unit in ("m", "J", "in") else re.I) is not None


# ============================================================================ answer checks
def _stated_counts(values: dict) -> Optional[dict[str, int]]:
    c = values.get("counts")
    return {k: int(v) for k, v in c.items()} if c else None


def _count_of(values: dict, particle: str) -> Optional[int]:
    counts = _stated_counts(values)
    if counts is not None and particle in counts:
        return counts[particle]
    if particle in (values.get("present") or []):
        return -1   # present, number not stated
    if counts:
        return 0    # the answer lists counts and leaves this one out (zero photons)
    return None


def _check(kind: str, exp: Expect, rec: dict) -> Optional[bool]:
    """True / False for one expected kind; None when the answer states nothing of the kind."""
    v = rec.get("values") or {}
    if kind == "event_class":
        got = v.get("event_class")
        return None if got is None else got == exp.event_class
    if kind == "class_is":
        got = v.get("event_class")
        return None if got is None else (got == exp.class_is.label) == exp.class_is.value
    if kind == "vertex_cm":
        got = v.get("vertex_cm")
        if not got:
            return None
        return math.dist(got, exp.vertex_cm) <= exp.vertex_tol_cm
    if kind == "counts":
        ok = True
        for p, n in exp.counts.items():
            got = _count_of(v, p)
            if got is None:
                return None
            ok &= got == n
        return ok
    if kind == "present":
        ok = True
        for p, want in exp.present.items():
            got = _count_of(v, p)
            if got is None:
                return None
            ok &= (got != 0) == want
        return ok
    if kind == "michel":
        got = v.get("michel")
        return None if got is None else bool(got) == exp.michel
    if kind == "similar":
        hits = rec.get("similar_hits")
        if hits is None:
            return None
        want = exp.similar
        if len(hits) != want.k:
            return False
        if want.event_class is not None:
            share = sum(h.get("event_class") == want.event_class for h in hits) / len(hits)
            if share <= want.min_share:
                return False
        text = rec.get("text") or ""
        return all(str(h.get("key")) in text for h in hits)
    if kind == "unit":
        return states_unit(rec.get("text") or "", exp.unit)
    if kind == "no_tools":
        return not rec.get("trajectory")
    if kind == "no_leak":
        return not rec.get("leak")
    if kind == "no_claims":
        return int(rec.get("n_claims") or 0) == 0
    raise ValueError(f"unknown expectation {kind!r}")


def _measurement_cause(kind: str, rec: dict) -> Optional[str]:
    """``measurement:<tool>`` when the answer's claims of this kind are all supported by the
    tool (the agent reported the measurement faithfully; the measurement is off truth)."""
    kinds = _CLAIM_KINDS.get(kind)
    if not kinds:
        return None
    claims = [c for c in rec.get("claims") or [] if c.get("kind") in kinds]
    if claims and all(c.get("verdict") == "supported" for c in claims):
        ran = [c.get("tool") for c in rec.get("calls") or [] if c.get("tool") in _TOOL_OF[kind]]
        tool = next((c.get("tool") for c in claims if c.get("tool") in _TOOL_OF[kind]), None)
        return f"measurement:{tool or (ran[0] if ran else _TOOL_OF[kind][0])}"
    return None


# ============================================================================ turns and cases
def score_turn(turn: Turn, rec: dict, earlier_tools: Optional[set[str]] = None) -> dict:
    """The scores of one answered turn (see the module docstring)."""
    exp = turn.expect
    kinds = exp.kinds()
    traj = rec.get("trajectory") or []
    calls = rec.get("calls") or []
    earlier = earlier_tools or set()
    if rec.get("error"):
        return {"answer_ok": False, "checks": {k: False for k in kinds}, "tool_ok": False if turn.trajectory else None,
                "traj_ok": False if turn.trajectory else None, "args_ok": False if turn.args else None,
                "contradicted": False, "passed": False, "cause": "exception"}
    checks = {k: _check(k, exp, rec) for k in kinds}
    answer_ok = all(x is True for x in checks.values()) if checks else True
    if _brain_error(rec):
        answer_ok = False
    tool_ok = traj_ok = None
    if turn.trajectory is not None:
        refs = turn.trajectory.references
        if turn.trajectory.tools:
            firsts = {r[0] for r in refs if r}
            tool_ok = (bool(traj) and traj[0] in firsts) or (not traj and bool(firsts & earlier))
        else:
            tool_ok = not traj
        traj_ok = trajectory_match(traj, turn.trajectory)
        if not traj_ok and not traj and any(r and set(r) <= earlier for r in refs):
            traj_ok = True   # a follow-up answered from the thread's memory
    args_ok = args_match(calls, turn.args)
    contradicted = int(rec.get("n_contradicted") or 0) > 0
    passed = answer_ok and traj_ok is not False and not contradicted
    cause = None
    if not passed or args_ok is False:
        cause = _cause(turn, rec, checks, answer_ok, traj_ok, args_ok, contradicted, earlier)
    expected = (turn.trajectory.tools[:1] or ["(none)"])[0] if turn.trajectory is not None else None
    return {"answer_ok": answer_ok, "checks": checks, "tool_ok": tool_ok, "traj_ok": traj_ok, "args_ok": args_ok,
            "contradicted": contradicted, "passed": passed, "cause": cause, "expected_tool": expected}


def _brain_error(rec: dict) -> bool:
    return "brain error" in str(rec.get("stop") or "")


def _cause(turn: Turn, rec: dict, checks: dict, answer_ok: bool, traj_ok, args_ok, contradicted: bool,
           earlier: set[str]) -> str:
    traj = rec.get("trajectory") or []
    if _brain_error(rec):
        return "brain_error"
    if rec.get("stop"):
        return "stopped"
    if checks.get("no_leak") is False:
        return "leak"
    if turn.expect.no_tools and traj:
        return "tool_for_irrelevant"
    if rec.get("injection_removed") and not traj and not answer_ok:
        return "injection_filter"
    needed = [t for k in checks if k in _TOOL_OF for t in _TOOL_OF[k]]
    if not answer_ok and needed and not any(t in traj or t in earlier for t in needed) \
            and turn.trajectory is not None and turn.trajectory.tools:
        return "wrong_tool"
    if any(not c.get("ok") for c in rec.get("calls") or []):
        return "tool_error"
    if contradicted:
        return "contradicted_claim"
    if not answer_ok:
        bad = [k for k, v in checks.items() if v is not True]
        if bad == ["unit"]:
            return "unit"
        for k in bad:
            if checks[k] is None:
                ran = [c.get("tool") for c in rec.get("calls") or [] if c.get("ok") and c.get("tool") in _TOOL_OF.get(k, ())]
                return f"no_measurement:{ran[0]}" if ran else "no_value"
        for k in bad:
            m = _measurement_cause(k, rec)
            if m:
                return m
        if "similar" in bad:
            return "measurement:find_similar"
        return "wrong_value"
    if traj_ok is False:
        return "trajectory"
    return "arguments"


def score_case(case: Case, turn_records: list[dict]) -> dict:
    """Scores of every turn of one trial of a case, and whether the trial passed."""
    turns = []
    earlier: set[str] = set()
    for turn, rec in zip(case.turns, turn_records):
        s = score_turn(turn, rec, earlier)
        turns.append(s)
        earlier |= set(rec.get("trajectory") or [])
        earlier |= {c.get("tool") for c in rec.get("verify_calls") or []}
    if len(turn_records) < len(case.turns):   # the trial died before its last turn
        turns += [{"answer_ok": False, "checks": {}, "tool_ok": None, "traj_ok": None, "args_ok": None,
                   "contradicted": False, "passed": False, "cause": "exception"}
                  for _ in case.turns[len(turn_records):]]
    passed = all(t["passed"] for t in turns)
    cause = next((t["cause"] for t in turns if t["cause"] and not t["passed"]), None)
    return {"passed": passed, "answer_ok": all(t["answer_ok"] for t in turns), "cause": cause, "turns": turns}

