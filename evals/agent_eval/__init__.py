"""Scripted agent evaluation: suites as data, a resumable parallel runner, metrics, reports.

    python -m larsight.evals.agent_eval --suite evals/suites --brain vlm,rules --k 3    # = larsight eval agent

Modules, one job each: ``suite`` (case schema, loading), ``scoring`` (one answered case),
``metrics`` (a run's numbers), ``runner`` (asking the agent, records, resume), ``brains``
(brains by name or import path, sampling temperature), ``report`` (markdown, JSON, plots),
``cli`` (the command line). Names are imported lazily (the command line stays light).
"""
from __future__ import annotations

import importlib

_WHERE = {"run_agent_eval": "runner", "rescore_run": "runner", "load_suite": "suite", "Case": "suite",
          "SuiteError": "suite", "score_case": "scoring", "score_turn": "scoring", "summarize": "metrics",
          "pass_hat_k": "metrics"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
