"""The typed records of expert feedback: an answer with its context, a verdict, per-claim
corrections, and the checks that a correction fits the claim it corrects.

A correction names a claim of the answer by its position in the answer's claim table
(``claim``: 0 for the first row) and marks it ``right``, ``wrong`` or ``should_be`` a corrected
value or class. ``check_correction`` holds it against the claim's kind: a length takes cm, mm or
m (stored in cm), an energy MeV, GeV or keV (stored in MeV), a shower's start dE/dx MeV/cm or
MIP (stored in MeV/cm), a count a whole number, a vertex three numbers in cm, a class one of
nue_cc / numu_cc / nc, a particle one of the particle names. A value of the wrong unit or type
is refused with a message naming the claim and what it takes.

A correction is of the answer's claim table (``of="answer"``, the default) or of the claims of the
language model's FIRST-DRAFT text (``of="first_draft"``: ``AnswerRecord.model_texts[0].claims``,
what an expert reading the trace marks). When stored it gets its ``blame`` (``blame_of``):

- ``"tool"``: the observations supported the claim (verdict ``supported``: the model stated what
  the tools measured, so the measurement was off), or the claim was rendered by code from the
  tools (a typed claim, ``source`` 'tools');
- ``"model"``: the claim is the model's own words (read from its free text: ``source`` 'text',
  with ``text`` / ``start``; every claim of a first draft) and the observations did not support
  it (``contradicted``: the model mis-copied a measurement; ``unverifiable``: it said what nothing
  measured);
- None for a mark ``right``, or a claim without a verdict.

Only model errors become preference pairs for the VLM (``export``); tool errors are data for the
perception models (the JSON-lines export keeps them). A model error is also checked as corrected
against the observations (``observed``): where they contradict the expert's value too (the model
mis-copied AND the tool was off), the corrected text would teach the VLM to contradict its
evidence, so no pair is made of it.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from larsight.events.vocabulary import CLASS_TEXT, MIP_DEDX

__all__ = ["FeedbackInputError", "Correction", "FeedbackIn", "AnswerRecord", "FeedbackItem",
           "STATUSES", "VERDICTS", "MARKS", "check_correction", "parse_corrected", "answer_id_of",
           "record_from_answer", "PARTICLES", "corrections_from", "ModelText", "blame_of", "Blame",
           "claim_table", "observed_verdict"]

STATUSES = ("new", "reviewed", "exported", "used-in-training")
VERDICTS = ("up", "down")
MARKS = ("right", "wrong", "should_be")
PARTICLES = ("muon", "electron", "photon", "proton", "pion", "kaon", "pi0", "track", "shower", "michel")

Status = Literal["new", "reviewed", "exported", "used-in-training"]
Verdict = Literal["up", "down"]
Mark = Literal["right", "wrong", "should_be"]
Blame = Literal["model", "tool"]
Of = Literal["answer", "first_draft"]

_LENGTH = {"cm": 1.0, "mm": 0.1, "m": 100.0}
_ENERGY = {"mev": 1.0, "gev": 1000.0, "kev": 0.001}
_DEDX = {"mev/cm": 1.0, "mip": MIP_DEDX, "mips": MIP_DEDX}
_UNITS = {"length": (_LENGTH, "cm", "cm, mm or m"), "energy": (_ENERGY, "MeV", "MeV, GeV or keV"),
          "dedx": (_DEDX, "MeV/cm", "MeV/cm or MIP")}
_KIND = {"track_length": "length", "shower_gap": "length", "energy": "energy", "shower_dedx": "dedx",
         "count": "count", "vertex": "vector", "event_class": "class", "present": "particle",
         "absent": "particle", "michel": "presence"}
_LABELS = {"class": tuple(CLASS_TEXT), "particle": PARTICLES + ("present", "absent"),
           "presence": ("present", "absent"), "length": ("attached", "not_attached")}


class FeedbackInputError(ValueError):
    """Feedback that cannot be stored as given (the message says what to change)."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Correction(BaseModel):
    """An expert's mark on one claim of an answer."""

    model_config = ConfigDict(extra="forbid")

    claim: int = Field(ge=0, description="row of the answer's claim table (0 = first)")
    mark: Mark = "should_be"
    value: Optional[Union[float, list[float]]] = Field(None, description="corrected number (or x, y, z)")
    unit: Optional[str] = Field(None, description="unit of value: cm, mm, m, MeV, GeV, keV, MeV/cm, MIP")
    label: Optional[str] = Field(None, description="corrected class or particle (nue_cc, photon, absent, ...)")
    of: Of = Field("answer", description="whose claim table 'claim' indexes: the answer's, or the claims of "
                   "the language model's first-draft text")
    blame: Optional[Blame] = Field(None, description="set when stored (blame_of): 'model' (the model's own "
                                   "words, not backed by the observations) or 'tool' (the observations "
                                   "said so: the tool was off)")
    observed: Optional[Literal["supported", "contradicted", "unverifiable"]] = Field(
        None, description="set when stored, for model errors: the corrected claim checked against the answer's "
        "observations ('contradicted': the tool was off too, and no preference pair is made of it)")

    @field_validator("value")
    @classmethod
    def _finite(cls, v):
        vals = v if isinstance(v, list) else [v] if v is not None else []
        if any(not math.isfinite(x) for x in vals):
            raise ValueError("a corrected value must be a finite number")
        return v


class FeedbackIn(BaseModel):
    """One piece of feedback as it comes in (the chat, ``larsight feedback add``, the API)."""

    model_config = ConfigDict(extra="forbid")

    answer_id: Optional[str] = Field(None, description="an answer already in the store")
    answer: Optional[dict[str, Any]] = Field(None, description="the answer itself (Answer JSON), "
                                             "stored first when answer_id is not given")
    verdict: Optional[Verdict] = None
    corrections: list[Correction] = Field(default_factory=list)
    comment: str = Field("", max_length=20000)
    author: str = Field("", max_length=200)
    better_than: Optional[str] = Field(None, description="id of another answer to the same question "
                                       "that this one is better than (a ranked pair)")
    status: Status = "new"
    source: str = Field("api", max_length=20)


class ModelText(BaseModel):
    """A language model's own text in one draft of an answer, with the prompt it wrote it from and
    its claims checked against the answer's observations (the claim table of that text)."""

    text: str
    author: str = "model"
    prompt: Optional[str] = None
    claims: list[dict[str, Any]] = Field(default_factory=list, description="{claim, verdict, evidence, ...}")


class AnswerRecord(BaseModel):
    """An answer with everything that backs it, as stored."""

    id: str
    created: datetime = Field(default_factory=_utcnow)
    event: Optional[str] = None
    question: str
    text: str
    claims: list[dict[str, Any]] = Field(default_factory=list, description="the claim table: "
                                         "{claim, verdict, evidence, tolerance, tool}")
    tools: list[dict[str, Any]] = Field(default_factory=list, description="tool calls: "
                                        "{tool, arguments, ok, output, error, seconds, purpose}")
    event_class: Optional[str] = None
    class_probabilities: dict[str, float] = Field(default_factory=dict)
    brain: str = ""
    thread_id: Optional[str] = None
    models: dict[str, str] = Field(default_factory=dict, description="versions of the models used")
    model_texts: list[ModelText] = Field(default_factory=list, description="the language model's own text "
                                         "of each draft (first draft first, the final one last)")

    @property
    def first_draft(self) -> Optional[ModelText]:
        return self.model_texts[0] if self.model_texts else None


class FeedbackItem(BaseModel):
    """A stored piece of feedback with its answer."""

    id: int
    answer_id: str
    verdict: Optional[Verdict] = None
    corrections: list[Correction] = Field(default_factory=list)
    comment: str = ""
    author: str = ""
    better_than: Optional[str] = None
    status: Status = "new"
    source: str = ""
    created: datetime
    updated: datetime
    answer: Optional[AnswerRecord] = None


# ============================================================================ answers
def answer_id_of(answer_json: str) -> str:
    """An answer's id: the first 16 hex digits of the SHA-256 of its JSON (so recording the same
    answer twice gives the same id)."""
    return hashlib.sha256(answer_json.encode()).hexdigest()[:16]


def _dump(obj: Any) -> Any:
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj


def record_from_answer(answer: Any, models: Optional[dict[str, str]] = None) -> AnswerRecord:
    """An ``AnswerRecord`` from an ``agent.Answer`` (or its JSON as a dict)."""
    data = _dump(answer)
    if not isinstance(data, dict) or not isinstance(data.get("question"), str) or \
            not isinstance(data.get("text"), str):
        raise FeedbackInputError("an answer needs at least 'question' and 'text' (an agent.Answer or its JSON)")
    if data.get("id") and data.get("tools") is not None:        # already a record
        return AnswerRecord.model_validate({**data, "models": {**data.get("models", {}), **(models or {})}})
    calls = [st["call"] for st in data.get("steps") or [] if isinstance(st, dict) and st.get("call")]
    calls = calls or list(data.get("tools") or [])
    aid = answer_id_of(json.dumps(data, sort_keys=True, default=str))
    return AnswerRecord(
        id=aid, event=data.get("event"), question=data["question"], text=data["text"],
        claims=list(data.get("claims") or []), tools=calls, event_class=data.get("event_class"),
        class_probabilities=data.get("class_probabilities") or {}, brain=str(data.get("brain") or ""),
        thread_id=data.get("thread_id"), models={**(data.get("models") or {}), **(models or {})},
        model_texts=_model_texts(data, calls))


def _model_texts(data: dict, calls: list[dict]) -> list[ModelText]:
    """The model's text of each compose step (``Step.free_text``), its claims checked against the
    answer's tool outputs."""
    from ..evidence import Evidence            # the agent's modules import nothing of feedback
    from ..render import FreeText
    from ..validate import check_claims

    texts = [st["free_text"] for st in data.get("steps") or []
             if isinstance(st, dict) and st.get("node") == "compose" and st.get("free_text")]
    if not texts:
        return []
    evidence = Evidence.from_observations(calls, data.get("event"))
    out = []
    for t in texts:
        free = FreeText.model_validate(t)
        checks = check_claims(free.claims(), evidence)
        out.append(ModelText(text=free.text, author=free.author, prompt=free.prompt,
                             claims=[c.model_dump(mode="json") for c in checks]))
    return out


def claim_table(corr: Correction, answer_claims: list[dict], model_texts: list) -> list[dict]:
    """The claim table a correction indexes (the answer's, or the first draft's)."""
    if corr.of == "answer":
        return answer_claims
    if not model_texts:
        raise FeedbackInputError(f"claim {corr.claim} of the first draft: this answer has no text of a "
                                 f"language model (only code-rendered drafts); correct the answer's claims")
    first = model_texts[0]
    return list(first.claims if isinstance(first, ModelText) else first.get("claims") or [])


def observed_verdict(corr: Correction, check: dict, tools: list[dict], event: Optional[str]) -> Optional[str]:
    """The verdict of the observations (the answer's tool outputs) on the claim as corrected; None
    when the correction gives no value to check (a mark 'wrong', a kind not checked this way)."""
    from ..claims import Claim
    from ..evidence import Evidence
    from ..validate import check_claim

    c = dict(check.get("claim", check))
    kind, label = c.get("kind"), corr.label
    if corr.mark != "should_be":
        return None
    if kind == "vertex" and isinstance(corr.value, list):
        c["value"] = tuple(corr.value)
    elif kind == "event_class" and label:
        c.update(value=label, qualifier=None)
    elif kind in ("present", "absent") and label in ("present", "absent"):
        c["kind"] = label
    elif isinstance(corr.value, (int, float)) and isinstance(c.get("value"), (int, float)):
        c["value"] = float(corr.value)
    else:
        return None
    try:
        claim = Claim.model_validate(c)
    except ValueError:
        return None
    return check_claim(claim, Evidence.from_observations(tools, event)).verdict


def blame_of(corr: Correction, check: dict) -> Optional[str]:
    """'model', 'tool' or None for a checked correction of the claim ``check`` (module docstring)."""
    if corr.mark == "right":
        return None
    verdict = check.get("verdict")
    if verdict is None:
        return None
    if verdict == "supported":
        return "tool"
    claim = check.get("claim", check)
    own = corr.of == "first_draft" or claim.get("source") == "text" or \
        (claim.get("source") is None and bool(claim.get("text")))
    return "model" if own else "tool"


# ============================================================================ corrections
_NUM_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/]*)\s*$")


def parse_corrected(text: str) -> dict[str, Any]:
    """What an expert typed as the corrected value: ``"52 cm"`` -> value + unit, ``"3"`` -> a
    value, ``"(10, 20, 30) cm"`` -> a vector, ``"photon"`` -> a label."""
    text = (text or "").strip()
    if not text:
        return {}
    vec = re.match(r"^\(?\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*\)?\s*([A-Za-z]*)\s*$", text)
    if vec:
        try:
            return {"value": [float(vec.group(i)) for i in (1, 2, 3)], "unit": vec.group(4) or None}
        except ValueError:
            raise FeedbackInputError(f"cannot read {text!r} as a point (x, y, z)") from None
    m = _NUM_UNIT.match(text)
    if m:
        return {"value": float(m.group(1)), "unit": m.group(2) or None}
    return {"label": text}


def _claim_words(claim: dict) -> str:
    c = claim.get("claim", claim)
    if c.get("text"):
        return str(c["text"])[:60]
    value = c.get("value") if c.get("value") is not None else c.get("label") or c.get("vector")
    words = [c.get("kind"), c.get("subject") or c.get("particle"), value, c.get("unit")]
    return " ".join(str(w) for w in words if w not in (None, ""))[:60]


def _check_number(corr: Correction, what: str, where: str) -> Correction:
    table, canonical, names = _UNITS[what]
    if not isinstance(corr.value, (int, float)):
        raise FeedbackInputError(f"{where} is {'an' if what == 'energy' else 'a'} {what}: give one number "
                                 f"with a unit ({names})")
    unit = (corr.unit or "").strip()
    if not unit:
        raise FeedbackInputError(f"{where} is a {what}: give the unit of {corr.value:g} ({names})")
    factor = table.get(unit.lower())
    if factor is None:
        raise FeedbackInputError(f"{where} is a {what}: {unit!r} is not a unit of it (use {names})")
    if corr.value < 0:
        raise FeedbackInputError(f"{where}: a {what} cannot be negative ({corr.value:g} {unit})")
    return corr.model_copy(update={"value": float(corr.value) * factor, "unit": canonical, "label": None})


def _check_label(corr: Correction, what: str, where: str) -> Correction:
    allowed = _LABELS[what]
    label = (corr.label or "").strip().lower().replace(" ", "_")
    aliases = {v.lower().replace(" ", "_"): k for k, v in CLASS_TEXT.items()}
    label = aliases.get(label, label)
    if label not in allowed:
        raise FeedbackInputError(f"{where} is a {what}: {corr.label!r} is not one of {', '.join(allowed)}")
    return corr.model_copy(update={"label": label, "value": None, "unit": None})


def check_correction(corr: Correction, claims: list[dict]) -> Correction:
    """The correction with its value in the claim kind's unit; refuses one that does not fit."""
    if corr.claim >= len(claims):
        raise FeedbackInputError(f"claim {corr.claim} does not exist: the answer has {len(claims)} claim(s) "
                                 f"(0 to {len(claims) - 1})" if claims else
                                 f"claim {corr.claim} does not exist: the answer has no claims")
    claim = claims[corr.claim].get("claim", claims[corr.claim])
    kind = claim.get("kind")
    where = f"claim {corr.claim} ({_claim_words(claims[corr.claim])!r})"
    if corr.mark != "should_be":
        if corr.value is not None or corr.label:
            raise FeedbackInputError(f"{where}: a correction marked {corr.mark!r} takes no value; "
                                     f"use mark 'should_be' to give the right one")
        return corr
    what = _KIND.get(kind)
    if what is None:
        raise FeedbackInputError(f"{where}: claims of kind {kind!r} cannot be corrected")
    if corr.label is not None and corr.value is None:
        if what not in _LABELS or (what == "length" and kind != "shower_gap"):
            raise FeedbackInputError(f"{where} is a {what}: give a number, not {corr.label!r}")
        return _check_label(corr, what, where)
    if corr.value is None:
        raise FeedbackInputError(f"{where}: 'should_be' needs the corrected value or class")
    if what in _UNITS:
        return _check_number(corr, what, where)
    if what == "count":
        v = corr.value
        if not isinstance(v, (int, float)) or v < 0 or float(v) != int(v):
            raise FeedbackInputError(f"{where} is a count: give a whole number >= 0, not {v!r}")
        if corr.unit:
            raise FeedbackInputError(f"{where} is a count: it takes no unit ({corr.unit!r})")
        return corr.model_copy(update={"value": float(int(v)), "label": None})
    if what == "vector":
        if not isinstance(corr.value, list) or len(corr.value) != 3:
            raise FeedbackInputError(f"{where} is a vertex: give three numbers (x, y, z) in cm")
        factor = _LENGTH.get((corr.unit or "cm").lower())
        if factor is None:
            raise FeedbackInputError(f"{where} is a vertex: {corr.unit!r} is not a length unit (use cm, mm or m)")
        return corr.model_copy(update={"value": [x * factor for x in corr.value], "unit": "cm", "label": None})
    raise FeedbackInputError(f"{where} is a {what}: give one of {', '.join(_LABELS[what])}, not a number")


def corrections_from(obj: Any) -> list[dict]:
    """Corrections in the forms a notebook writes: a list of dicts / ``Correction``, or a dict
    ``{claim: "52 cm" | "photon" | "wrong" | "right" | dict}``."""
    if obj is None:
        return []
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            try:
                claim = int(k)
            except (TypeError, ValueError):
                raise FeedbackInputError(f"corrections: {k!r} is not a claim number (0 = the first claim)") from None
            if isinstance(v, dict):
                out.append({"claim": claim, **v})
            elif isinstance(v, str) and v.strip().lower() in ("right", "wrong"):
                out.append({"claim": claim, "mark": v.strip().lower()})
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append({"claim": claim, "value": float(v)})
            elif isinstance(v, (list, tuple)):
                out.append({"claim": claim, "value": [float(x) for x in v]})
            elif isinstance(v, str):
                out.append({"claim": claim, **parse_corrected(v)})
            else:
                raise FeedbackInputError(f"corrections[{k}]: expected 'right', 'wrong', a value or a class, got {v!r}")
        return out
    if isinstance(obj, (list, tuple)):
        return [c.model_dump() if isinstance(c, Correction) else c for c in obj]
    raise FeedbackInputError(f"corrections: expected a list or a dict by claim number, got {type(obj).__name__}")
