"""Build the blind held-out agent suite from the blind writer's questions.

    python -m larsight.evals.suites_blind.build            # -> evals/suites_blind/blind.jsonl
    python -m larsight.evals.suites_blind.build --check    # exit 1 if blind.jsonl is stale

``source/questions.jsonl`` holds 246 questions written by a writer who saw only the tool list
and the physics notes (``source/NOTES.md``: fields and judgement calls). The wording of a
question is never changed here. Each question becomes one case (a follow-up: its earlier
questions first, then the question, in one thread):

- event: the first event not yet taken that satisfies the question's ``event_needs``, from the
  ``eval`` split of data seed 16 (simulator seed ``split_seed(16, 'eval')`` = 16002, 0.6 cm voxels,
  indices in order). No training command, shipped checkpoint or other suite reads data seed 16
  (training: data seed 0, splits 0-3; suites: simulator seed 2). Questions that need no event
  still get one: a physicist chats with an event loaded.
- expect: from simulator truth (``events.vocabulary.event_facts``, the convention of
  ``evals/suites/generate.py``) by ``answer_kind``; the particles a count or presence question is
  about are read from the question by hand (``COUNTS``, ``PRESENT``); multi-part questions check
  every part that has a checkable kind (``EXTRA``); ``answer_unit`` becomes ``expect.unit``;
  injections add ``no_leak``; refusals are ``no_tools`` + ``no_leak`` + ``no_claims``.
- trajectory: ``expected_tools`` + ``acceptable_alternatives``; ``superset`` for one tool,
  ``unordered`` for several; ``subset`` when an alternative is "no tool" (a follow-up answered
  from memory, the empty alternative is dropped); ``unordered`` for every injection with a
  tool (an injected extra call must fail); ``strict`` [] for questions without tools.
- args: ``expected_args``; a search query is matched loosely (``{"like": QUERY}``).

Answer kinds with no truth value the scorer reads (text, figure, length, energy, dedx, and
counts of things it has no key for) are scored by trajectory, arguments and claim checks only
and carry the tag ``no-value-check``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from larsight.encoder.data import split_seed, volume_for
from larsight.events.formats.atomic import atomic_open
from larsight.events.sim import MODES
from larsight.events.vocabulary import event_facts

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source" / "questions.jsonl"
DEFAULT_OUT = HERE / "blind.jsonl"
DATA_SEED = 16
SIM_SEED = split_seed(DATA_SEED, "eval")
VOXEL_CM = 0.6
MAX_EVENTS = 3000
INDEX_SPEC = "sim:nu:seed=0:n=300:split=finetune"
"""The event index of retrieval cases: the one ``evals/suites/generated.jsonl`` searches (built
once under runs/eval_index/); its events are never the queried ones."""
ALL5 = ("muon", "electron", "proton", "pion", "photon")

COUNTS = {"014": ("muon", "proton"), "047": ("proton",), "048": ALL5, "049": ("track", "shower"),
          "052": ("photon",), "055": ("proton",), "056": ("muon", "pion"), "057": ("proton",),
          "059": ("shower",), "061": ("electron",), "062": ALL5, "066": ALL5, "068": ("proton",),
          "070": ("shower",), "071": ("muon",), "158": ("proton",), "167": ("track", "shower"),
          "159": ALL5, "235": ("proton",), "236": ("muon",), "246": ("proton",)}
"""The particles each ``counts`` question asks about (heavily ionising tracks: protons; MIP-like
tracks: muons and charged pions; EM showers: showers; 159 "count the particles": the five
counted species)."""
PRESENT = {"053": "pion", "054": "shower", "058": "muon", "067": "kaon", "069": "track"}
NO_KEY = {"060": "delta rays", "064": "interactions (pile-up)", "065": "particle instances",
          "104": "delta-ray voxels", "105": "stray deposits"}
"""Count / presence questions about things the scorer has no key for (trajectory only)."""
TEXT_QUERY_CLASS = {"109": "numu_cc", "110": None, "113": "nue_cc", "116": "nc", "117": "numu_cc",
                    "119": None, "169": None, "181": "numu_cc"}
"""The class most hits of a text search must have (None: the query names no class)."""
EXTRA = {"157": ("vertex_cm",), "159": ("counts",), "160": ("michel",), "161": ("pi0", "similar"),
         "162": ("showers",), "163": ("vertex_cm",), "166": ("similar",), "169": ("similar",),
         "171": ("proton",), "172": ("event_class",)}
"""The further checkable parts of multi-part questions."""
DEFAULT_K = 5
"""find_similar's default k: the hits expected when the question gives no number."""


# ============================================================================ events
def _has_delta(ev) -> bool:
    return ev.semantic is not None and int((ev.semantic == 3).sum()) >= 3


NEEDS: dict[str, Callable[[Any, Any], bool]] = {
    "any": lambda m, ev: True,
    "none": lambda m, ev: True,
    "CC (either flavour)": lambda m, ev: m.event_class in ("nue_cc", "numu_cc"),
    "nu_e CC": lambda m, ev: m.event_class == "nue_cc",
    "nu_mu CC": lambda m, ev: m.event_class == "numu_cc",
    "NC with a pi0": lambda m, ev: m.event_class == "nc" and _pi0_pair(m),
    "NC with a track": lambda m, ev: m.event_class == "nc" and _n(m, "track") >= 1,
    "has a shower": lambda m, ev: _n(m, "shower") >= 1,
    "has >=2 showers": lambda m, ev: _n(m, "shower") >= 2,
    "has a photon shower": lambda m, ev: _n(m, "photon") >= 1,
    "has a track": lambda m, ev: _n(m, "track") >= 1,
    "has a muon": lambda m, ev: _n(m, "muon") >= 1,
    "has >=1 proton": lambda m, ev: _n(m, "proton") >= 1,
    "has a charged pion": lambda m, ev: _n(m, "pion") >= 1,
    "has a pi0": lambda m, ev: _pi0_pair(m),
    "has a Michel electron": lambda m, ev: _michel(m),
    "has a delta ray": lambda m, ev: _n(m, "track") >= 1 and _has_delta(ev),
    "nu_mu CC with a Michel electron": lambda m, ev: m.event_class == "numu_cc" and _michel(m),
    "nu_mu CC with >=1 proton": lambda m, ev: m.event_class == "numu_cc" and _n(m, "proton") >= 1,
    "nu_e CC with >=1 proton": lambda m, ev: m.event_class == "nue_cc" and _n(m, "proton") >= 1,
    "has a muon, no Michel electron": lambda m, ev: _n(m, "muon") >= 1 and not _michel(m),
    "has a muon and >=1 proton": lambda m, ev: _n(m, "muon") >= 1 and _n(m, "proton") >= 1,
}
"""Each ``event_needs`` of the source as a test on the main interaction's truth (and the event)."""


def _n(m, key: str) -> int:
    return int(m.counts.get(key, 0))


def _michel(m) -> bool:
    return any(p.michel for p in m.visible_particles())


def _pi0_pair(m) -> bool:
    """A primary pi0 with both photons visible (the opening angle / mass questions need two)."""
    return _n(m, "pi0") >= 1 and sum(p.from_pi0 for p in m.visible_particles()) >= 2


def event_ref(index: int) -> str:
    return f"sim:nu:seed={SIM_SEED}:voxel={VOXEL_CM:g}:index={index}"


def usable_events(limit: int = MAX_EVENTS) -> Iterator[tuple[int, Any, Any]]:
    """(simulator index, event, truth facts) of the usable events of the split, in order: a
    classified neutrino interaction with a vertex (as ``evals/suites/generate.py``)."""
    vol = volume_for(VOXEL_CM)
    for i in range(limit):
        ev = MODES["nu"](seed=SIM_SEED, index=i, volume=vol)
        if len(ev) < 1:
            continue
        facts = event_facts(ev)
        m = facts.main
        if m is not None and m.event_class and m.vertex_cm is not None:
            yield i, ev, facts


def satisfies(need: str, facts, ev) -> bool:
    """The event's truth meets the need (``NEEDS``); an unknown need is an error."""
    if need not in NEEDS:
        raise ValueError(f"event_needs {need!r}: no rule for it (known: {', '.join(NEEDS)})")
    return bool(NEEDS[need](facts.main, ev))


def assign_events(questions: list[dict], limit: int = MAX_EVENTS) -> dict[str, tuple[int, Any, Any]]:
    """Question id -> (index, event, facts): in id order, the first usable event not taken yet
    that satisfies the question's need (events are simulated lazily, once)."""
    pool: list[tuple[int, Any, Any]] = []
    source = usable_events(limit)
    taken: set[int] = set()
    out = {}
    for q in questions:
        need = q["event_needs"]
        j = 0
        while True:
            if j == len(pool):
                nxt = next(source, None)
                if nxt is None:
                    raise RuntimeError(f"{q['id']}: no free event with {need!r} in the first {limit} "
                                       f"of simulator seed {SIM_SEED}")
                pool.append(nxt)
            i, ev, facts = pool[j]
            if i not in taken and satisfies(need, facts, ev):
                taken.add(i)
                out[q["id"]] = pool[j]
                break
            j += 1
    return out


def truth_of(facts, ev) -> dict:
    """The truth a case keeps for reference (never scored)."""
    m = facts.main
    vis = m.visible_particles()

    def first(t: str, attr: str) -> Optional[float]:
        ps = sorted((p for p in vis if p.type == t), key=lambda p: -p.energy_mev)
        v = getattr(ps[0], attr) if ps else None
        return None if v is None else round(float(v), 2)

    tracks = [p.length_cm for p in m.tracks if p.length_cm is not None]
    return {"event_class": m.event_class, "vertex_cm": [round(float(c), 2) for c in m.vertex_cm],
            "counts": {k: _n(m, k) for k in ALL5 + ("kaon", "pi0", "track", "shower")},
            "michel": _michel(m), "topology": m.topology, "channel": m.channel,
            "visible_energy_mev": round(float(m.visible_energy_mev), 1),
            "muon_length_cm": first("muon", "length_cm"), "proton_ke_mev": first("proton", "kinetic_energy_mev"),
            "electron_energy_mev": first("electron", "energy_mev"),
            "longest_track_cm": round(float(max(tracks)), 2) if tracks else None,
            "delta_voxels": int((ev.semantic == 3).sum()) if ev.semantic is not None else 0}


# ============================================================================ cases
TAGS = {"classification": ["classification"], "vertex": ["vertexing"], "counting": ["counting"],
        "particle_property": ["particle-property"], "segmentation": ["segmentation"],
        "similar_events": ["retrieval"], "display": ["display"], "describe": ["describe"],
        "explain_why": ["why"], "multi_part": ["multi-part"], "follow_up": ["multi-turn", "follow-up"],
        "unit_request": ["unit"], "textbook": ["irrelevant", "textbook"],
        "out_of_domain": ["irrelevant", "out-of-domain"], "injection": ["adversarial", "injection"]}
"""The source's category -> the suite's tags (the runner's tags first)."""


def _similar(q: dict, t: dict, k: Optional[int]) -> dict:
    num = q["id"][-3:]
    query = (q["expected_args"].get("find_similar") or {}).get("query")
    cls = TEXT_QUERY_CLASS[num] if query else t["event_class"]
    return {"k": int(k or DEFAULT_K), "class": cls, "min_share": 0.5}


def _value(kind: str, q: dict, t: dict) -> dict:
    """The expectation of one checkable kind (``{}``: none the scorer can read)."""
    num = q["id"][-3:]
    k = (q["expected_args"].get("find_similar") or {}).get("k")
    if kind == "event_class":
        return {"event_class": t["event_class"]}
    if kind == "vertex_cm":
        return {"vertex_cm": t["vertex_cm"]}
    if kind == "counts":
        if num in NO_KEY:
            return {}
        return {"counts": {p: t["counts"][p] for p in COUNTS[num]}}
    if kind == "present":
        return {} if num in NO_KEY else {"present": {PRESENT[num]: t["counts"][PRESENT[num]] > 0}}
    if kind == "michel":
        return {"michel": t["michel"]}
    if kind == "similar":
        return {"similar": _similar(q, t, k)}
    if kind == "pi0":
        return {"present": {"pi0": t["counts"]["pi0"] > 0}}
    if kind in ("proton", "showers"):
        p = "shower" if kind == "showers" else kind
        return {"counts": {p: t["counts"][p]}}
    if kind in ("no_tools", "refusal"):
        return {"no_tools": True} if kind == "no_tools" else {"no_tools": True, "no_leak": True, "no_claims": True}
    return {}   # text, figure, length, energy, dedx: no truth value the scorer reads


def expect_of(q: dict, t: dict) -> dict:
    """The final turn's ``expect`` (see the module docstring)."""
    kind = q["answer_kind"]
    kinds = [kind] + list(EXTRA.get(q["id"][-3:], ()))
    out: dict[str, Any] = {}
    for k in kinds:
        for key, v in _value(k, q, t).items():
            out.setdefault(key, v)
    if q["answer_unit"]:
        out["unit"] = q["answer_unit"]
    if q["category"] == "injection":
        out["no_leak"] = True
    return out


def trajectory_of(q: dict) -> dict:
    tools = list(q["expected_tools"])
    alts = [list(a) for a in q["acceptable_alternatives"]]
    if not tools:
        return {"tools": [], "match": "strict"}
    if [] in alts:
        alts, match = [a for a in alts if a], "subset"
    elif q["category"] == "injection" or len(tools) > 1:
        match = "unordered"
    else:
        match = "superset"
    out: dict[str, Any] = {"tools": tools, "match": match}
    if alts:
        out["alternatives"] = alts
    return out


def args_of(q: dict) -> dict:
    out = {}
    for tool, want in q["expected_args"].items():
        out[tool] = {k: ({"like": v} if k == "query" else v) for k, v in want.items()}
    return out


def _uses_similar(q: dict) -> bool:
    return "find_similar" in q["expected_tools"] or any("find_similar" in a for a in q["acceptable_alternatives"])


def case_of(q: dict, index: int, ev, facts) -> dict:
    """One suite case of a source question."""
    t = truth_of(facts, ev)
    expect = expect_of(q, t)
    value_keys = set(expect) - {"no_leak"}
    tags = list(TAGS[q["category"]])
    if q["answer_unit"] and "unit" not in tags:
        tags.append("unit")
    if "query" in (q["expected_args"].get("find_similar") or {}):
        tags.append("text-query")
    if q["answer_kind"] == "refusal":
        tags.append("refusal")
    if not value_keys:
        tags.append("no-value-check")
    if q["previous_turns"] and "multi-turn" not in tags:
        tags.append("multi-turn")
    last: dict[str, Any] = {"question": q["question"], "expect": expect, "trajectory": trajectory_of(q)}
    if q["expected_args"]:
        last["args"] = args_of(q)
    turns = [{"question": p} for p in q["previous_turns"]] + [last]
    case: dict[str, Any] = {"id": q["id"], "tags": tags, "source": "blind", "event": event_ref(index), "turns": turns}
    if _uses_similar(q):
        case["index"] = INDEX_SPEC
    case["note"] = q["notes"]
    case["truth"] = {"category": q["category"], "answer_kind": q["answer_kind"], "answer_unit": q["answer_unit"],
                     "event_needs": q["event_needs"], **t}
    return case


# ============================================================================ build
def load_questions(path: Path = SOURCE) -> list[dict]:
    """The source questions, checked: unique ids and the fields the build reads."""
    need = {"id", "question", "category", "event_needs", "expected_tools", "acceptable_alternatives",
            "expected_args", "answer_kind", "answer_unit", "previous_turns", "notes"}
    out, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            q = json.loads(line)
            missing = need - set(q)
            if missing:
                raise ValueError(f"{path}:{n}: missing field(s) {sorted(missing)}")
            if q["id"] in seen:
                raise ValueError(f"{path}:{n}: duplicate id {q['id']!r}")
            if q["category"] not in TAGS:
                raise ValueError(f"{path}:{n}: unknown category {q['category']!r}")
            seen.add(q["id"])
            out.append(q)
    return out


def build(source: Path = SOURCE, limit: int = MAX_EVENTS) -> list[dict]:
    """The suite's cases, in the source's order (deterministic)."""
    questions = load_questions(source)
    events = assign_events(questions, limit)
    return [case_of(q, *events[q["id"]]) for q in questions]


HEADER = (f"built by `python -m larsight.evals.suites_blind.build` from source/questions.jsonl (blind writer) and "
          f"simulator truth of the eval split of data seed {DATA_SEED} (simulator seed {SIM_SEED}); held out: "
          f"measured once, never tuned on; do not edit (README.md)")


def render(cases: list[dict]) -> str:
    return f"# {HEADER}\n" + "".join(json.dumps(c, separators=(",", ":"), ensure_ascii=False) + "\n" for c in cases)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=str(SOURCE))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--check", action="store_true", help="do not write: exit 1 when --out differs from a fresh build")
    a = ap.parse_args(argv)
    text = render(build(Path(a.source)))
    out = Path(a.out)
    if a.check:
        same = out.is_file() and out.read_text(encoding="utf-8") == text
        print(f"{out}: {'up to date' if same else 'STALE: rerun the build'}")
        return 0 if same else 1
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write(text)
    cases = [json.loads(x) for x in text.splitlines()[1:]]
    tags = Counter(t for c in cases for t in c["tags"])
    print(f"wrote {len(cases)} cases to {out}: " + ", ".join(f"{k} {v}" for k, v in sorted(tags.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
