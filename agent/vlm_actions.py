"""The VLM brain that chooses the action by generation (``make_brain("vlm", policy="actions")``).

The VLM reads the conversation (up to two earlier turns and the tools they ran), the file's
metadata (untrusted data), the question and the event tokens, and writes an action of the
grammar of ``agent.actions`` under constrained decoding (``qformer.action_decoder``: xgrammar
masks every token that would leave the JSON schema of the grammar and the tools' argument
schemas), so the action is a valid one by construction: tool calls with their arguments (units,
which particle, what quantity, k, a text query, a class filter, a view), an answer without
tools, or a refusal. No keyword rule takes part in the choice (``agent.intents`` is the rules
brain's). With ``constrained=False`` the model writes freely; a reply that does not parse or names
an unknown tool or a bad argument is shown to the model as a rejected attempt ("Rejected: ...")
and it tries again, at most ``max_retries`` times; the trace's thought lists every attempt. A call
the graph rejects (``invalid_action`` observation) is retried the same way.

The calls run one per graph step, in order, each once (a call whose tool already ran on the
event with the same tool arguments, this turn or earlier in the thread, is not repeated). The
answer is then composed from the measurements (``agent.compose``) for what the calls asked (the
``quantity`` of reconstruct and segment, the tools), in the units the action asked for. A
classification with reasons adds a generated explanation: when the action model was trained
with explanations (``explain_fraction`` > 0 in its ``vlm.json``: ``larsight align --stage actions
--explain-fraction F``), the ACTION model writes it from the observations
(``qformer.corpus.explain_schema.explain_prompt``: the measurements as text, the question) and
the event tokens, by free greedy decoding; the prompt is kept with the text
(``agent.render.FreeText.prompt``) and named in the plan step's thought. Otherwise the
classifying VLM explains the event alone, as before. The validator reads the claims of either
text and the revision loop removes contradicted ones.

The action model is a VLM folder trained by ``larsight align --stage actions`` (``action_vlm``,
``$LARSIGHT_ACTION_VLM``, else ``checkpoints/vlm_actions`` when shipped, else the shipped
stage-2 VLM, which was never trained on the grammar).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

from larsight.qformer.corpus import CLASSIFY_PROMPT
from larsight.qformer.corpus.action_schema import action_prompt
from larsight.qformer.corpus.explain_schema import explain_prompt, whole_sentences

from .actions import Action, ActionError, CallAction, RefuseAction, action_json_schema, canonical, parse_action
from .compose import compose, general_answer
from .request import request_from_action
from .context import Context, Decision, revision
from .evidence import Evidence
from .render import FreeText
from .toolset import TOOLS, resolve
from .vlm_brain import shared_vlm, strip_class_prefix, vlm_secrets

__all__ = ["ActionVLMBrain", "ACTION_VLM_DIR", "REFUSALS", "action_intents", "explanation_verdicts",
           "trained_with_explanations"]

ACTION_VLM_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "vlm_actions"

REFUSALS = {
    "off_topic": ("I answer questions about liquid-argon TPC events and their physics (class, vertex, "
                  "particles, energies, similar events); this request is outside that, so I ran no tool."),
    "injection": ("I only answer questions about the event and its physics; the request holds instructions "
                  "to change what I do, which I do not follow, so no tool was run."),
}

_TOOL_INTENT = {"classify_event": "classify", "find_vertex": "vertex", "find_similar": "similar",
                "describe": "describe", "render": "render"}


def action_intents(action: CallAction) -> list[str]:
    """What the answer reports (``agent.compose`` sections) for the calls of an action: the
    tool's section, or the ``quantity`` a reconstruct or segment call asks for."""
    out: list[str] = []
    for c in action.calls:
        if c.tool == "reconstruct":
            it = c.arguments.get("quantity", "counts")
        elif c.tool == "segment":
            it = "visible_energy" if c.arguments.get("quantity") == "visible_energy" else "segment"
        else:
            it = _TOOL_INTENT[c.tool]
        if it not in out:
            out.append(it)
    if "reasons" in out and "classify" not in out:
        out.insert(0, "classify")
    return out


def explanation_verdicts(text: str, evidence: dict) -> list[str]:
    """The validator's verdict on every claim of ``text`` against measurements given as
    ``Evidence`` JSON (the explanation evaluation of ``larsight align --stage actions``)."""
    from .validate import validate

    return [c.verdict for c in validate(text, Evidence.model_validate(evidence)).checks]


def trained_with_explanations(model: Any) -> bool:
    """The action model's manifest says it was trained on grounded explanations."""
    manifest = getattr(model, "manifest", None) or {}
    f = manifest.get("explain_fraction", (manifest.get("actions_config") or {}).get("explain_fraction"))
    try:
        return float(f or 0.0) > 0.0
    except (TypeError, ValueError):
        return False


def _tool_args(tool: str, arguments: dict) -> dict:
    return {k: v for k, v in arguments.items() if k not in TOOLS[tool].presentation}


class ActionVLMBrain:
    """The VLM chooses the action by constrained generation (see the module docstring)."""

    name = "vlm"

    def __init__(self, action_vlm: Any = None, vlm: Any = None, constrained: bool = True, max_retries: int = 2,
                 explain: bool = True, max_new_tokens: int = 64, cache_size: int = 128,
                 explain_tokens: int = 96):
        self._action_vlm = action_vlm or os.environ.get("LARSIGHT_ACTION_VLM") or \
            (ACTION_VLM_DIR if (ACTION_VLM_DIR / "vlm.json").exists() else None)
        self._vlm = vlm
        self.constrained = constrained
        self.max_retries = int(max_retries)
        self.explain = explain
        self.max_new_tokens = max_new_tokens
        self._decoder = None
        self._explainer = None
        self.explain_tokens = int(explain_tokens)
        self._cache: "OrderedDict[tuple, tuple[Optional[Action], list[str]]]" = OrderedDict()
        self._cache_size = cache_size

    # ---------------------------------------------------------------- models
    @property
    def decoder(self):
        """The constrained decoder over the action model (loaded at the first question)."""
        if self._decoder is None:
            from larsight.qformer.action_decoder import ActionDecoder   # torch: seconds to import
            from larsight.qformer.vlm import load_vlm

            m = self._action_vlm
            model = m if m is not None and not isinstance(m, (str, Path)) else load_vlm(m)
            self._decoder = ActionDecoder(model, action_json_schema() if self.constrained else None)
        return self._decoder

    @property
    def vlm(self):
        """The classifying VLM (the tools' copy) for generated explanations."""
        self._vlm = shared_vlm(self._vlm)
        return self._vlm

    def secrets(self) -> list[str]:
        return vlm_secrets()

    # ---------------------------------------------------------------- the action
    def prompt(self, ctx: Context, event: Any, rejected: list[str]) -> str:
        history = [(h.get("question") or "", list(h.get("tools") or [])) for h in ctx.history[-2:]]
        meta = getattr(event, "meta", None)
        bits = []
        if meta is not None and getattr(meta, "generator", None):
            bits.append(f"generator: {meta.generator}")
        if meta is not None and getattr(meta, "source", None):
            bits.append(f"source: {Path(str(meta.source)).name}")
        return action_prompt(ctx.question, history, "; ".join(bits) or None, rejected)

    def choose(self, ctx: Context, event: Any, rejected: tuple[str, ...] = ()) -> tuple[Optional[Action], list[str]]:
        """The action for the question (``None`` when no valid one came within the retries) and
        the log of attempts. Cached per (event, question, earlier turns, rejections)."""
        key = (ctx.event, ctx.question, tuple((h.get("question"), tuple(h.get("tools") or []))
                                              for h in ctx.history[-2:]), rejected)
        if key in self._cache:
            return self._cache[key]
        errors, log, action = list(rejected), [], None
        for attempt in range(self.max_retries + 1):
            text = self.decoder.generate(event, self.prompt(ctx, event, errors))
            try:
                action = parse_action(text)
                log.append(f"attempt {attempt + 1}: {canonical(action)}")
                break
            except ActionError as e:
                errors.append(str(e))
                log.append(f"attempt {attempt + 1} rejected: {e}")
        self._cache[key] = (action, log)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return action, log

    # ---------------------------------------------------------------- deciding
    def _done(self, ctx: Context, tool: str, arguments: dict) -> bool:
        """The tool ran on this event with the same tool arguments (presentation ones aside)."""
        want = _tool_args(tool, arguments)
        for o in ctx.observations + [m for m in ctx.memory if m.get("ok")]:
            if o.get("tool") != tool or o.get("event") not in (None, ctx.event):
                continue
            if o.get("error_kind") == "invalid_action":
                continue
            if _tool_args(tool, {k: v for k, v in (o.get("arguments") or {}).items() if k != "event"}) == want:
                return True
        return False

    def decide(self, ctx: Context) -> Decision:
        if ctx.feedback:
            return revision(ctx)
        if ctx.event_error:
            return Decision(action="answer", text=f"I could not load the event: `{ctx.event_error}`.",
                            grounded=False, thought="the event cannot be loaded")
        if ctx.event is None:
            return Decision(action="answer", text=general_answer(ctx.question), grounded=False,
                            thought="no event: answered without tools (the action model reads event tokens)")
        event = resolve(ctx.event)
        rejected = tuple(o.get("error") for o in ctx.observations
                         if o.get("error_kind") == "invalid_action" and o.get("purpose", "action") == "action")
        if len(rejected) > self.max_retries:
            return Decision(action="answer", grounded=False, thought="; ".join(rejected),
                            text="I could not form a valid analysis action for this question; please rephrase it.")
        action, log = self.choose(ctx, event, rejected)
        how = "constrained" if self.constrained else "free"
        thought = f"VLM action ({how} decoding): " + "; ".join(log)
        if action is None:
            return Decision(action="answer", grounded=False, thought=thought,
                            text="I could not form a valid analysis action for this question; please rephrase it.")
        if isinstance(action, RefuseAction):
            return Decision(action="refuse", text=REFUSALS[action.reason], grounded=False, thought=thought)
        if not isinstance(action, CallAction):
            return Decision(action="answer", text=general_answer(ctx.question), grounded=False, thought=thought)
        for i, c in enumerate(action.calls):
            if not self._done(ctx, c.tool, c.arguments):
                return Decision(action="tool", tool=c.tool, arguments=dict(c.arguments),
                                thought=f"{thought} -> call {i + 1} of {len(action.calls)}: {c.tool}")
        return self._answer(ctx, event, action, thought)

    def _answer(self, ctx: Context, event: Any, action: CallAction, thought: str) -> Decision:
        found = action_intents(action)
        obs = ctx.observations + [m for m in ctx.memory if m.get("event") == ctx.event]
        comp = compose(request_from_action(action, found), obs, ctx.evidence())
        how = ""
        if self.explain and "reasons" in found:
            if trained_with_explanations(getattr(self.decoder, "vlm", None)):
                extra, prompt = self._explain_observed(ctx, event)
                if extra:
                    comp = comp.model_copy(update={"free": FreeText(text=extra, label="The VLM explains:", author="vlm",
                                                                    prompt=prompt)})
                n = prompt.count("\n") - 2
                how = f"; explanation written by the action model from {n} lines of observations (explain_prompt)"
            else:
                extra = self._generate(event)
                if extra:
                    comp = comp.explained(extra)
        return Decision(action="answer", text=comp, grounded=True,
                        thought=f"{thought} -> answered {', '.join(found)} from the measurements{how}")

    def _explain_observed(self, ctx: Context, event: Any) -> tuple[str, str]:
        """The action model's explanation from the observations and the event tokens, and its prompt."""
        prompt = explain_prompt(ctx.question, ctx.evidence())
        try:
            if self._explainer is None:
                from larsight.qformer.action_decoder import ActionDecoder

                self._explainer = ActionDecoder(self.decoder.vlm, None, max_new_tokens=self.explain_tokens)
            return whole_sentences(self._explainer.generate(event, prompt)), prompt
        except Exception as e:  # noqa: BLE001 - a generation failure leaves the composed answer
            return f"(the VLM could not answer: `{e}`)", prompt

    def _generate(self, event: Any) -> str:
        try:
            return strip_class_prefix(self.vlm.explain(event, CLASSIFY_PROMPT,
                                                        max_new_tokens=self.max_new_tokens).strip())
        except Exception as e:  # noqa: BLE001 - a generation failure leaves the composed answer
            return f"(the VLM could not answer: `{e}`)"
