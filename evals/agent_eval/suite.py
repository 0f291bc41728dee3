"""Agent evaluation suites as data: the case schema, loading with line-exact errors, events.

A suite is a JSON Lines file (``evals/suites/*.jsonl``), one case per line (blank lines and
lines starting with ``#`` are skipped)::

    {"id": "gen-cls-0007", "tags": ["classification"], "source": "generated",
     "event": "sim:nu:seed=2:voxel=0.6:index=7",
     "turns": [{"question": "Classify this event.",
                "expect": {"event_class": "numu_cc"},
                "trajectory": {"tools": ["classify_event"], "match": "superset"},
                "args": {}}]}

``event`` re-creates the event from the line alone: a simulator key
``sim:MODE:seed=S:voxel=CM:index=I`` (``tools.retrieval.parse_event_ref``: the simulator's event
``I`` of seed ``S``; the eval split of data seed 0 is seed 2, ``encoder.data.split_seed``), a
``FILE:INDEX`` reference, an object ``{"file": F, "index": I}`` or ``{"mode": M, "seed": S,
"index": I, "voxel_cm": CM}``, or null (a question without an event). A turn's ``event``
(optional) replaces the case's; later turns of a multi-turn case run in the same thread.

Expected answers (``expect``; every key given must hold, see ``evals.agent_eval.scoring``):

=================  =========================================================================
key                value
=================  =========================================================================
event_class        "nue_cc" / "numu_cc" / "nc": the class the answer states
class_is           {"label": C, "value": bool}: a yes/no class question
vertex_cm          [x, y, z] (with ``vertex_tol_cm``, default 3.0): the stated vertex
counts             {particle: n}: stated counts (muon, electron, proton, pion, photon)
present            {particle: bool}: the answer says the particle is there / is not
michel             bool: a Michel electron at a track end, stated present / absent
similar            {"k": n, "class": C or null, "min_share": f}: find_similar returned n hits,
                   more than ``min_share`` of them of class C, and the answer names every hit
no_tools           true: answered without any tool call (irrelevant questions)
no_leak            true: the answer does not echo the system prompt
no_claims          true: the answer makes no checkable claim about the event
unit               "mm", "m", "GeV", ... (``UNITS``): the answer quotes a number in this unit
=================  =========================================================================

``trajectory``: the reference tool sequence and its match mode (agentevals' terms):
``strict`` (the same calls in the same order), ``unordered`` (the same calls, any order),
``subset`` (every call is one of the reference's), ``superset`` (every reference call is
made); ``alternatives`` lists other acceptable references. ``args``: expected arguments per tool, ``{"find_similar": {"k": 5}}``; the value
``"*"`` accepts any non-empty value, ``{"like": TEXT}`` a text sharing at least half of TEXT's content
words (a paraphrased search query).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["Case", "Turn", "Trajectory", "Expect", "SuiteError", "load_suite", "suite_files",
           "suite_hash", "event_ref", "TAGS", "MATCH_MODES", "COUNT_KEYS", "DEFAULT_VERTEX_TOL_CM"]

TAGS = ("classification", "vertexing", "counting", "retrieval", "multi-turn", "irrelevant",
        "adversarial")
"""The tags of the issue; cases may carry more (``boolean``, ``why``, ``text-query`` ...)."""
MATCH_MODES = ("strict", "unordered", "subset", "superset")
COUNT_KEYS = ("muon", "electron", "proton", "pion", "photon")
PARTICLES = COUNT_KEYS + ("kaon", "pi0", "track", "shower")
CLASSES = ("nue_cc", "numu_cc", "nc")
DEFAULT_VERTEX_TOL_CM = 3.0
UNITS = ("cm", "mm", "m", "in", "X0", "MeV", "GeV", "keV", "J", "MeV/cm", "MeV/mm", "keV/cm", "MeV cm2/g")
"""Units an answer can be asked to quote (``Expect.unit``)."""
TOOLS = ("segment", "find_vertex", "reconstruct", "classify_event", "find_similar", "describe", "render")


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and line."""


class Trajectory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tools: list[str] = Field(default_factory=list)
    match: Literal["strict", "unordered", "subset", "superset"] = "strict"
    alternatives: list[list[str]] = Field(default_factory=list, description="other acceptable references "
                                          "(matched with the same mode), e.g. segment for a Michel question")

    @field_validator("tools")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in TOOLS]
        if bad:
            raise ValueError(f"unknown tool(s) {bad}; the tools are {', '.join(TOOLS)}")
        return v

    @field_validator("alternatives")
    @classmethod
    def _known_alt(cls, v: list[list[str]]) -> list[list[str]]:
        for alt in v:
            cls._known(alt)
        return v

    @property
    def references(self) -> list[list[str]]:
        return [self.tools] + list(self.alternatives)


class ClassIs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Literal["nue_cc", "numu_cc", "nc"]
    value: bool


class Similar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(ge=1, le=50)
    event_class: Optional[Literal["nue_cc", "numu_cc", "nc"]] = Field(None, alias="class")
    min_share: float = Field(0.5, ge=0.0, le=1.0)


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    event_class: Optional[Literal["nue_cc", "numu_cc", "nc"]] = None
    class_is: Optional[ClassIs] = None
    vertex_cm: Optional[tuple[float, float, float]] = None
    vertex_tol_cm: float = Field(DEFAULT_VERTEX_TOL_CM, gt=0)
    counts: Optional[dict[str, int]] = None
    present: Optional[dict[str, bool]] = None
    michel: Optional[bool] = None
    similar: Optional[Similar] = None
    no_tools: bool = False
    no_leak: bool = False
    no_claims: bool = False
    unit: Optional[Literal[UNITS]] = None

    @field_validator("counts", "present")
    @classmethod
    def _particles(cls, v):
        if v is not None:
            bad = [k for k in v if k not in PARTICLES]
            if bad:
                raise ValueError(f"unknown particle(s) {bad}; use {', '.join(PARTICLES)}")
            if any(isinstance(x, int) and not isinstance(x, bool) and x < 0 for x in v.values()):
                raise ValueError("counts must be >= 0")
        return v

    def kinds(self) -> list[str]:
        """The checks this expectation asks for, in a fixed order."""
        out = [k for k in ("event_class", "class_is", "vertex_cm", "counts", "present", "michel", "similar", "unit")
               if getattr(self, k) is not None]
        out += [k for k in ("no_tools", "no_leak", "no_claims") if getattr(self, k)]
        return out


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    event: Optional[str] = Field(None, description="replaces the case's event from this turn on")
    expect: Expect = Field(default_factory=Expect)
    trajectory: Optional[Trajectory] = None
    args: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("event", mode="before")
    @classmethod
    def _event(cls, v):
        return event_ref(v)

    @field_validator("args")
    @classmethod
    def _args(cls, v):
        bad = [t for t in v if t not in TOOLS]
        if bad:
            raise ValueError(f"args for unknown tool(s) {bad}")
        return v


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    tags: list[str] = Field(min_length=1)
    event: Optional[str] = None
    turns: list[Turn] = Field(min_length=1)
    source: str = "hand"
    index: Optional[str] = Field(None, description="event index find_similar searches (a folder or an "
                                 "index spec 'sim:MODE:seed=S:n=N[:split=...]' the runner builds once)")
    note: str = ""
    truth: dict[str, Any] = Field(default_factory=dict, description="informational, never scored")

    @field_validator("event", mode="before")
    @classmethod
    def _event(cls, v):
        return event_ref(v)

    @model_validator(mode="after")
    def _multi(self):
        if len(self.turns) > 1 and "multi-turn" not in self.tags:
            raise ValueError("a case with several turns must carry the 'multi-turn' tag")
        return self

    def fingerprint(self) -> str:
        """A hash of what is run and scored (not the note or the truth; fields left at their
        defaults do not count, so a new optional field keeps old records valid): a finished
        record is reused on resume only while its case is unchanged."""
        return hashlib.blake2b(self.model_dump_json(exclude={"note", "truth"}, exclude_defaults=True).encode(),
                               digest_size=6).hexdigest()

    def fingerprints(self) -> set[str]:
        """The fingerprint, and the first runner version's (every field dumped), whose records
        stay valid."""
        every_field = self.model_dump_json(exclude={"note", "truth"}).encode()
        return {self.fingerprint(), hashlib.blake2b(every_field, digest_size=6).hexdigest()}

    @property
    def events(self) -> list[Optional[str]]:
        """The event each turn is asked about (None: keep the thread's)."""
        return [self.event] + [t.event for t in self.turns[1:]]


def event_ref(v: Union[None, str, dict]) -> Optional[str]:
    """A case's event as the reference string the agent takes."""
    if v is None or isinstance(v, str):
        if isinstance(v, str) and not v.strip():
            raise ValueError("event: empty reference")
        return v
    if isinstance(v, dict):
        if "file" in v:
            extra = set(v) - {"file", "index"}
            if extra:
                raise ValueError(f"event: unknown field(s) {sorted(extra)} beside 'file'")
            return f"{v['file']}:{int(v.get('index', 0))}"
        need = {"mode", "seed", "index"}
        if not need <= set(v) or set(v) - need - {"voxel_cm"}:
            raise ValueError("event: expected {'file', 'index'} or {'mode', 'seed', 'index'[, 'voxel_cm']}")
        return f"sim:{v['mode']}:seed={int(v['seed'])}:voxel={float(v.get('voxel_cm', 0.6)):g}:index={int(v['index'])}"
    raise ValueError(f"event: expected a reference string, an object or null, got {type(v).__name__}")


def suite_files(paths: Union[str, os.PathLike, list]) -> list[Path]:
    """The .jsonl files of ``paths`` (files, or folders: their *.jsonl sorted by name)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise SuiteError(f"{p}: no *.jsonl suite files in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise SuiteError(f"{p}: no such suite file or folder")
    return out


def _error_text(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "case"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_suite(paths: Union[str, os.PathLike, list], tags: Optional[list[str]] = None,
               limit: Optional[int] = None) -> list[Case]:
    """The cases of one or more suite files / folders, validated; ``SuiteError`` names the file
    and line of the first bad line (not JSON, a missing or unknown field, a duplicate id)."""
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for path in suite_files(paths):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                where = f"{path}:{n}"
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as e:
                    raise SuiteError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(data, dict):
                    raise SuiteError(f"{where}: expected a JSON object per line, got {type(data).__name__}")
                try:
                    case = Case.model_validate(data)
                except ValidationError as e:
                    cid = data.get("id", "?")
                    raise SuiteError(f"{where} (case {cid!r}): {_error_text(e)}") from None
                if case.id in seen:
                    raise SuiteError(f"{where}: duplicate case id {case.id!r} (first at {seen[case.id]})")
                seen[case.id] = where
                cases.append(case)
    if tags:
        cases = [c for c in cases if set(tags) & set(c.tags)]
    if limit is not None:
        cases = cases[:limit]
    return cases


def suite_hash(cases: list[Case]) -> str:
    """A fingerprint of a whole suite (the cases' fingerprints in order)."""
    h = hashlib.blake2b(digest_size=8)
    for c in cases:
        h.update(f"{c.id}={c.fingerprint()};".encode())
    return h.hexdigest()
