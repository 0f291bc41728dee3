"""The VLM brain: the detector-native VLM (``qformer.load_vlm``) chooses the agent's action the
way it was trained (``qformer.corpus.tool_traces``); see ``VLMBrain`` and ``agent.brains``.

torch and ``larsight.qformer.vlm`` (which imports it) are imported inside the methods that run
the model: they take seconds to import, and the agent with another brain never needs them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from larsight.qformer.corpus import CLASSIFY_PROMPT, TOOL_NAMES, tool_call_text
from larsight.qformer.lm import cache_kwargs, output_cache
from larsight.tools.classification import get_vlm

from .compose import compose, general_answer
from .request import request_from_question
from .context import Context, Decision, revision, tool_args
from .intents import intents, is_general, plan, refers_to_event
from .toolset import resolve

__all__ = ["VLMBrain", "TOOL_THRESHOLD"]


TOOL_THRESHOLD = 0.02
"""The VLM calls a tool when the probability that its reply starts a tool call is at least
this (only for questions whose wording names no measurement, see ``VLMBrain.constrain``). The
training corpus answers the same event questions directly (stage-2 'qa' records, 35% of the mix)
more often than through a tool ('tool' records, 15%), which deflates that probability. On 30
held-out events with the four training-style questions it was 0.18-0.95 for event questions
and at most 0.0004 for definitions; on the agent suite's rephrasings the two overlap (0.0005 to
0.995), which is why the question's own intents constrain the choice."""

_SUPPORT = {"classify_event": ("reconstruct",)}
"""Tools whose numbers the answer after the VLM's choice needs (a classification's reasons)."""

_TOOL_INTENTS = {"classify_event": ["classify", "reasons"], "find_vertex": ["vertex"],
                 "segment": ["segment"], "find_similar": ["similar"], "describe": ["describe"],
                 "render": ["render"]}


def shared_vlm(vlm: Any):
    """The loaded VLM; a folder (or None: the shipped one) is loaded through the tools' cache
    (``tools.classification.get_vlm``), so ``classify_event`` uses the same copy."""
    if vlm is not None and not isinstance(vlm, (str, Path)):
        return vlm
    loaded, note = get_vlm(vlm)
    if loaded is None:
        raise RuntimeError(f"the vlm brain has no VLM: {note}")
    return loaded


def vlm_secrets() -> list[str]:
    """What the VLM brains must never repeat: the VLM's system prompt."""
    try:
        from larsight.qformer.vlm import system_prompt   # torch: see the module docstring

        return [system_prompt(True)]
    except Exception:  # noqa: BLE001
        return []


def _vlm_intents(tool: str, question: str) -> list[str]:
    if tool == "reconstruct":
        found = [i for i in intents(question)
                 if i in ("counts", "michel", "length", "dedx", "gap", "energy", "visible_energy")]
        return found or ["counts"]
    found = list(_TOOL_INTENTS.get(tool, []))
    if tool == "segment" and re.search(r"michel", question, re.I):
        found.append("michel")
    return found


class VLMBrain:
    """The detector-native VLM as the planner (see the module docstring).

    ``vlm``: a loaded ``qformer.VLM`` or a folder (default: ``checkpoints/vlm_smollm2``);
    ``explain``: add the VLM's generated explanation to answers that ask why (validated
    like the rest of the answer); ``tool_threshold``: call a tool when the probability that
    the VLM's answer starts a tool call reaches it (``TOOL_THRESHOLD``), else answer without
    one (a definition it was trained on, or a refusal); ``constrain`` (default on): decode the
    action within the tools the question's wording asks for (``asked_tools``; a textbook
    question, or one that refers neither to the event nor to its contents, gets no tool), and
    run the other asked tools after the VLM's pick. Unconstrained,
    the shipped 135M VLM picks the expected tool for only 73% of the agent suite's questions
    (rephrasings it never saw in training get no tool, or the wrong one; evals/reports/agent.md),
    so its free choice is kept for questions whose wording names no measurement."""

    name = "vlm"

    def __init__(self, vlm: Any = None, explain: bool = True, tool_threshold: float = TOOL_THRESHOLD,
                 max_new_tokens: int = 64, constrain: bool = True):
        self._vlm = vlm
        self.constrain = constrain
        self.explain = explain
        self.tool_threshold = tool_threshold
        self.max_new_tokens = max_new_tokens

    @property
    def vlm(self):
        self._vlm = shared_vlm(self._vlm)
        return self._vlm

    def secrets(self) -> list[str]:
        return vlm_secrets()

    # ---------------------------------------------------------------- scoring
    def action_scores(self, event, question: str, candidates: dict[str, str]) -> tuple[dict[str, float], float]:
        """(log-probability of each candidate continuation, probability of a tool call)."""
        import torch   # see the module docstring

        vlm = self.vlm
        with torch.no_grad():
            proj = vlm.project(vlm.event_inputs([event]))
            batch = vlm.assemble(proj.lm_embeds, [question], None)
            n_prompt = batch["inputs_embeds"].shape[1]
            out = vlm.lm(**batch, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)[0]
            names = list(candidates)
            ids = [vlm.answer_ids(candidates[n], end=True) for n in names]
            starts = {t[0] for t in ids}
            p_tool = float(sum(math.exp(float(first[s])) for s in starts))
            scores = {n: float(first[t[0]]) for n, t in zip(names, ids)}
            rest = max(len(t) for t in ids) - 1
            if rest > 0:
                pad = vlm.tokenizer.pad_token_id if vlm.tokenizer.pad_token_id is not None else 0
                mat = torch.full((len(ids), rest + 1), pad, dtype=torch.long)
                valid = torch.zeros(len(ids), rest + 1, dtype=torch.long)
                for j, t in enumerate(ids):
                    mat[j, :len(t)] = torch.tensor(t)
                    valid[j, :len(t)] = 1
                cache = output_cache(out)
                cache.batch_repeat_interleave(len(ids))
                dev = vlm.device
                mat, valid = mat.to(dev), valid.to(dev)
                mask = torch.cat([torch.ones(len(ids), n_prompt, dtype=torch.long, device=dev), valid[:, :-1]], 1)
                logits = vlm.lm(input_ids=mat[:, :-1], attention_mask=mask, **cache_kwargs(vlm.lm, cache),
                                use_cache=False).logits.float()
                lp = torch.log_softmax(logits, dim=-1).gather(-1, mat[:, 1:].unsqueeze(-1)).squeeze(-1)
                tot = (lp * valid[:, 1:]).sum(-1)
                for j, n in enumerate(names):
                    scores[n] += float(tot[j])
        return scores, p_tool

    def asked_tools(self, question: str) -> list[str]:
        """With ``constrain``: the tools the question's wording asks for (``intents.plan`` of its
        intents), the only choices the VLM is given; empty when the wording names no
        measurement (then the VLM chooses among all tools or answers)."""
        return plan(intents(question)) if self.constrain else []

    def choose(self, event, question: str) -> Decision:
        """The VLM's first action for a question (constrained to the tool set or answering)."""
        asked = self.asked_tools(question)
        if self.constrain and not asked and (is_general(question) or not refers_to_event(question)):
            return Decision(action="answer", grounded=False, scores={"answer": 1.0},
                            thought="the question is not about the event: answered without tools")
        choices = tuple(asked) or TOOL_NAMES
        cands = {t: tool_call_text({"tool": t, "arguments": tool_args(t, question)}) for t in choices}
        scores, p_tool = self.action_scores(event, question, cands)
        m = max(scores.values())
        z = sum(math.exp(v - m) for v in scores.values())
        probs = {t: p_tool * math.exp(v - m) / z for t, v in scores.items()}
        probs["answer"] = 1.0 - p_tool
        if p_tool < self.tool_threshold and not asked:
            return Decision(action="answer", grounded=False, scores=probs,
                            thought=f"VLM: answer without a tool (p(tool call) = {p_tool:.3f} < {self.tool_threshold})")
        best = max(choices, key=lambda t: probs[t])
        why = f" among {', '.join(choices)} (asked by the question)" if asked else ""
        return Decision(action="tool", tool=best, arguments=tool_args(best, question), scores=probs,
                        thought=f"VLM: {best} (p = {probs[best]:.2f}){why}")

    # ---------------------------------------------------------------- deciding
    def decide(self, ctx: Context) -> Decision:
        if ctx.feedback:
            return revision(ctx)
        if ctx.event_error:
            return Decision(action="answer", text=f"I could not load the event: `{ctx.event_error}`.",
                            grounded=False, thought="the event cannot be loaded")
        event = resolve(ctx.event) if ctx.event else None
        taken = [o["tool"] for o in ctx.observations if o.get("tool") and o.get("purpose", "action") == "action"]
        if taken:
            first = taken[0]
        else:
            if event is None:
                return Decision(action="answer", text=general_answer(ctx.question), grounded=False,
                                thought="no event: answered without tools")
            d = self.choose(event, ctx.question)
            if d.action == "answer":
                # a definition the VLM was trained on, else a polite refusal: a 135M model's
                # free text is not reliable enough to stand as an answer on its own
                return d.model_copy(update={"text": general_answer(ctx.question)})
            if not ctx.done(d.tool, d.arguments):
                return d
            first = d.tool
        asked = self.asked_tools(ctx.question)
        for tool in (first,) + _SUPPORT.get(first, ()) + tuple(t for t in asked if t != first):
            args = tool_args(tool, ctx.question)
            if not ctx.done(tool, args):
                return Decision(action="tool", tool=tool, arguments=args,
                                thought=f"support for {first}: {tool}" if tool != first else f"VLM: {tool}")
        found = (intents(ctx.question) if asked else []) or _vlm_intents(first, ctx.question)
        obs = ctx.observations + [m for m in ctx.memory if m.get("event") == ctx.event]
        text = compose(request_from_question(ctx.question, found), obs, ctx.evidence())
        if self.explain and event is not None and first in ("classify_event", "describe") and \
                re.search(r"\bwhy\b|\bexplain|\breason|\bdescribe|\bevidence\b", ctx.question, re.I):
            extra = self._generate(event, CLASSIFY_PROMPT if first == "classify_event" else ctx.question)
            extra = strip_class_prefix(extra)
            if extra:
                text = text.explained(extra)   # a Composition (agent.render): free text of the VLM
        return Decision(action="answer", text=text, grounded=True,
                        thought=f"answered from {first} and its support tools")

    def _generate(self, event, question: str) -> str:
        try:
            return self.vlm.explain(event, question, max_new_tokens=self.max_new_tokens).strip()
        except Exception as e:  # noqa: BLE001 - a generation failure leaves the templated answer
            return f"(the VLM could not answer: `{e}`)"


def strip_class_prefix(text: str) -> str:
    """The explanation without its leading 'nu_e CC:' (the classifier's verdict is stated
    already; a disagreeing generated class would only be validated away), cut at its last
    full sentence, as one sentence of ';'-joined clauses: the validator then removes only the
    clauses it contradicts and the rest stays attributed to the VLM."""
    t = re.sub(r"^\s*(nu_e CC|nu_mu CC|NC)\s*:\s*", "", text.strip())
    if t and not t.endswith((".", "!", "?")):
        cut = t.rfind(". ")
        t = t[:cut + 1] if cut > 0 else t + "."
    parts = [p.strip().rstrip(".") for p in re.split(r"(?<=[.!?])\s+(?=[A-Z])", t) if p.strip()]
    parts = [p[:1].lower() + p[1:] if i and not re.match(r"[A-Z]{2}|[A-Z]\d|nu_", p) else p
             for i, p in enumerate(parts)]
    t = "; ".join(parts) + "." if parts else ""
    return t[:1].upper() + t[1:] if t else t
