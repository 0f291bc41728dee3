"""``larsight align --stage prefs``: DPO on the VLM's adapters from expert feedback.

The training itself is ``qformer.align_prefs`` (the qformer layer); this wires in what belongs to
the higher layers: the agent's event references (``agent.toolset.resolve``) and the feedback database
(``agent.feedback``: exported to DPO pairs of the VLM's own text inside the run folder). Each pair
carries the prompt the VLM wrote its first draft from, as stored with the answer; a pair without
one (a hand-written file) gets it rebuilt from its ``tools``
(``qformer.corpus.explain_schema.explain_prompt`` over ``agent.evidence.Evidence``).
"""
from __future__ import annotations

import shlex
from pathlib import Path

from larsight.ui.cli_args import BadInputError

__all__ = ["agent_io", "cmd_align_prefs"]


def agent_io():
    """``qformer.align_prefs.PrefsIO`` with the agent's event resolver, feedback export and prompt."""
    from larsight.agent.evidence import Evidence
    from larsight.agent.feedback import FeedbackStore, export
    from larsight.agent.toolset import resolve
    from larsight.qformer.align_prefs import PrefsIO

    try:
        from larsight.qformer.corpus.explain_schema import explain_prompt
    except ImportError:
        explain_prompt = None

    def build(question: str, tools: list) -> str:
        return explain_prompt(question, Evidence.from_observations(tools))

    def export_db(source: str, out: Path) -> dict:
        store = FeedbackStore(source)
        try:
            return export(store, out, fmt="dpo").model_dump()
        finally:
            store.close()

    return PrefsIO(load_event=resolve, build_prompt=build if explain_prompt else None, export_db=export_db,
                   prompt_name="the stored prompt of the first draft (else explain_prompt of the pair's tools)")


def cmd_align_prefs(args) -> int:
    """The prefs stage of ``larsight align`` (arguments checked before any model loads)."""
    if not args.feedback:
        raise BadInputError("--stage prefs needs --feedback: a DPO .jsonl export, a feedback database file "
                            "or a SQLAlchemy URL")
    if "://" not in args.feedback and not Path(args.feedback).expanduser().exists():
        raise BadInputError(f"--feedback {args.feedback}: no such file")
    from larsight.encoder.training import resolve_run_dir
    from larsight.qformer.align_prefs import PrefsConfig, PrefsInputError, align_prefs

    run_dir = str(resolve_run_dir("align_prefs", args.run_dir, args.name, args.resume))
    try:
        cfg = PrefsConfig(run_dir=run_dir, feedback=args.feedback, init=args.init, beta=args.beta,
                          steps=args.steps, batch_size=args.batch_size, lr=args.lora_lr, warmup=args.warmup,
                          eval_fraction=args.eval_fraction, limit=args.limit, seed=args.seed,
                          time_limit_min=args.time_limit, stop_at=args.stop_at, ckpt_every=args.ckpt_every,
                          resume=args.resume)
        summary = align_prefs(cfg, agent_io(), command="larsight " + " ".join(shlex.quote(a) for a in args.argv))
    except PrefsInputError as e:
        raise BadInputError(str(e)) from None
    print(f"align prefs: step {summary['step']} -> {summary['run_dir']}/vlm (the --init VLM is unchanged; "
          f"compare before promoting: larsight eval compare)")
    fb = summary.get("feedback") or {}
    kinds = ", ".join(f"{n} {k}" for k, n in (fb.get("pairs_by_kind") or {}).items()) or "none"
    left = fb.get("tool_errors_left_out")
    print(f"pairs: {kinds}" + (f"; {left} tool error(s) left out (not the VLM's)" if left else ""))
    return 0
