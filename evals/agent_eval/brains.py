"""Brains for the agent evaluation: the shipped ones by name, or any factory by import path,
and an optional sampling temperature for the ``vlm`` brain.

``make_eval_brain("rules" | "vlm" | "openai" | "package.module:attr", temperature=0.0, **kw)``:

- ``rules``, ``vlm``, ``openai``: ``agent.brains.make_brain`` (``kw`` goes to the brain: ``vlm``
  folder, ``base_url`` / ``model_name`` for openai);
- ``module:attr``: ``attr`` imported from ``module``; a class or function is called with
  ``kw``, anything else with a ``decide`` method is the brain (tests use fake brains this way,
  also in worker processes, which import it by name).

The shipped ``vlm`` brain is deterministic: it scores the tool calls under the language model
and takes the most probable one (greedy), so repeated trials repeat themselves and pass^k
equals pass^1 up to numerical noise. ``temperature > 0`` makes it sample: among the tools
(when the VLM's probability of a tool call passes its threshold, as in the shipped brain), the
tool is drawn with probability proportional to p(tool)^(1/T); the random stream is seeded by
(case id, trial), so a sampled run is reproducible. This wrapper lives only in the
evaluation; the agent itself is unchanged.
"""
from __future__ import annotations

import hashlib
import importlib
import math
import random
from typing import Any

# agent.brains loads no model at import (torch comes with the VLM, on first use); tool_args is
# the rule brain's argument reader, which the sampled brain must share to call tools alike
from larsight.agent.brains import TOOL_NAMES, Decision, VLMBrain, make_brain
from larsight.agent.context import tool_args

__all__ = ["make_eval_brain", "SampledVLMBrain", "brain_label", "reseed"]


def _import(spec: str) -> Any:
    mod, _, attr = spec.partition(":")
    if not mod or not attr:
        raise ValueError(f"brain {spec!r}: expected rules, vlm, openai or 'package.module:attribute'")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def make_eval_brain(spec: Any, temperature: float = 0.0, **kw) -> Any:
    """A brain for the runner (see the module docstring)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not isinstance(spec, str):
        return make_brain(spec)
    if spec in ("rules", "vlm", "openai"):
        kw = {k: v for k, v in kw.items() if v is not None}
        if spec == "vlm" and temperature > 0:
            return SampledVLMBrain(temperature=temperature, **kw)
        if temperature > 0:
            raise ValueError(f"--temperature applies to the vlm brain only (the {spec} brain "
                             f"{'is deterministic' if spec == 'rules' else 'takes its own temperature'})")
        return make_brain(spec, **kw)
    obj = _import(spec)
    if hasattr(obj, "decide") and not isinstance(obj, type):
        return obj
    return make_brain(obj(**kw))


def brain_label(spec: Any, temperature: float = 0.0) -> str:
    name = spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)
    return f"{name} (T={temperature:g})" if temperature > 0 else str(name)


class SampledVLMBrain(VLMBrain):
    """The vlm brain drawing its tool from the VLM's tool probabilities at ``temperature`` (see
    the module docstring)."""

    name = "vlm"

    def __init__(self, temperature: float = 1.0, **kw):
        super().__init__(**kw)
        self.temperature = float(temperature)
        self.rng = random.Random(0)

    def reseed(self, *key: Any) -> None:
        h = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
        self.rng = random.Random(int.from_bytes(h, "little"))

    def choose(self, event, question: str):
        d = super().choose(event, question)
        if d.action != "tool" or not d.scores:
            return d
        probs = {t: d.scores.get(t, 0.0) for t in TOOL_NAMES}
        logw = {t: math.log(max(p, 1e-300)) / self.temperature for t, p in probs.items()}
        m = max(logw.values())
        w = [math.exp(logw[t] - m) for t in TOOL_NAMES]
        tool = self.rng.choices(list(TOOL_NAMES), weights=w)[0]
        return Decision(action="tool", tool=tool, arguments=tool_args(tool, question), scores=d.scores,
                        thought=f"VLM, sampled at T={self.temperature:g}: {tool} (p = {probs[tool]:.2f})")


def reseed(brain: Any, case_id: str, trial: int) -> None:
    """Seed a sampling brain for one trial (no-op for deterministic brains)."""
    f = getattr(brain, "reseed", None)
    if callable(f):
        f(case_id, trial)
