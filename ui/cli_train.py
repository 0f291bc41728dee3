"""The training and evaluation verbs of ``larsight``: shards, pretrain, finetune, align, eval encoder.

Each verb is an ``add_<verb>(sub)`` function that adds its parser (registered in
``larsight.ui.cli.VERBS``) and a ``cmd_<verb>(args)`` that checks the paths it was given before
any model is built, then calls its layer. The layers are imported inside ``cmd_*``, after
those checks: they pull in torch (seconds to import), which ``larsight --help``, the other verbs
and a refused argument must not pay for.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from larsight.ui.cli_args import BadInputError, count, fraction, nonneg, positive, voxel_size, whole
from larsight.ui.cli_inputs import check_inputs, output_dir

__all__ = ["add_shards", "add_pretrain", "add_finetune", "add_align", "add_eval_encoder", "cmd_shards",
           "cmd_pretrain", "cmd_finetune", "cmd_align", "cmd_eval", "n_events"]

PRESETS = ["tiny", "small", "base"]


def n_events(value: str) -> int | None:
    """A number of events >= 1, or 'all'."""
    if value.lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1 (or 'all')")
    return n


def _existing(path: str | None, what: str) -> None:
    if path is not None and not Path(path).expanduser().exists():
        raise BadInputError(f"{what} {path}: no such file or folder")


def _shard_folder(path: str | None) -> None:
    if path is not None and not (Path(path).expanduser() / "shards.json").exists():
        raise BadInputError(f"--data {path}: not a shard folder (no shards.json); write one "
                            f"with `larsight shards --out {path}`")


def _run_options(p, command: str, ckpt_every: int) -> None:
    """The options every long-running training verb shares (run folder, stopping, resuming)."""
    p.add_argument("--run-dir", default=None,
                   help=f"run folder (default: $LARSIGHT_RUNS or ~/.cache/larsight/runs, "
                        f"then {command}-NAME or {command}-<UTC time>)")
    p.add_argument("--name", default=None, help=f"run folder name under the runs root ({command}-NAME)")
    p.add_argument("--time-limit", type=positive(), default=None,
                   help="stop after MINUTES of training (with a checkpoint)")
    p.add_argument("--ckpt-every", type=count(), default=ckpt_every, help="checkpoint every N steps")
    p.add_argument("--stop-at", type=count(), default=None,
                   help="stop (with a checkpoint) at this step; the schedule still runs to --steps")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from the run folder's state (default: the newest "
                        f"{command}-* run when neither --run-dir nor --name is given)")


def _check_run_dir(args) -> None:
    if args.run_dir is not None:
        output_dir(args.run_dir, "--run-dir")


# ============================================================================ shards
def cmd_shards(args) -> int:
    output_dir(args.out, "--out")
    knobs = None
    if args.knob:
        from larsight.events.sim import knobs as K   # light: numpy + the medium constants

        knobs = dict(K.parse_setting(t) for t in args.knob)

    from larsight.encoder.shards import ShardSpec, write_shards

    spec = ShardSpec(modes=args.mode, n=args.n, seed=args.seed, split=args.split,
                     shard_size=args.shard_size, voxel_size_cm=args.voxel_size,
                     randomize=args.randomize, knobs=knobs or {})
    man = write_shards(spec, args.out, workers=args.workers,
                       command="larsight " + " ".join(shlex.quote(a) for a in args.argv))
    w = man["last_write"]
    rate = f", {w['events_per_s']:.1f} events/s" if w["events_per_s"] else ""
    print(f"{man['n_events']} events in {len(man['shards'])} shards -> {args.out} "
          f"({w['events']} written now in {w['seconds']:.1f} s{rate})")
    return 0


def add_shards(sub) -> None:
    sh = sub.add_parser("shards", help="pre-simulate training events into shard files once "
                        "(pretrain / finetune --data DIR stream them)")
    sh.add_argument("--mode", default="nu", help="nu, mpv, mpr or a comma list cycled per event")
    sh.add_argument("--n", type=count(), required=True, help="number of events")
    sh.add_argument("--seed", type=whole(), default=0, help="data seed (of --split)")
    sh.add_argument("--split", choices=["pretrain", "finetune", "align", "eval"], default="pretrain",
                    help="simulator stream: split seeds never coincide, so training shards never "
                         "hold held-out events")
    sh.add_argument("--shard-size", type=count(), default=500, help="events per shard file")
    sh.add_argument("--out", required=True, help="shard folder (rerun to finish an interrupted one)")
    sh.add_argument("--voxel-size", type=voxel_size(), default=0.3, help="cm (the model's grid)")
    sh.add_argument("--randomize", action="store_true", help="draw simulator knobs per event")
    sh.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="fix one simulator knob (repeatable)")
    sh.add_argument("--workers", type=count(), default=1, help="processes writing shards")
    sh.set_defaults(func=cmd_shards)


# ============================================================================ pretrain
def cmd_pretrain(args) -> int:
    files = tuple(check_inputs(args.files)) if args.files else ()
    _shard_folder(args.data)
    if args.data and files:
        raise BadInputError("give either --data (a shard folder) or --files, not both")
    _check_run_dir(args)

    from larsight.encoder.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        objective=args.objective, preset=args.preset, run_dir=args.run_dir, name=args.name,
        data=args.data, workers=args.workers, stop_at=args.stop_at, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
        time_limit_min=args.time_limit, data_mode=args.data_mode, seed=args.seed,
        voxel_size_cm=args.voxel_size, files=files, log_every=args.log_every,
        ckpt_every=args.ckpt_every, resume=args.resume, n_local=args.n_local,
        mask_ratio=args.mask_ratio, mpm_mask_ratio=args.mpm_mask_ratio, mpm_cell=args.mpm_cell)
    pretrain(cfg)
    return 0


def add_pretrain(sub) -> None:
    pt = sub.add_parser("pretrain", help="self-supervised pretraining of the point encoder "
                        "(no labels; runs under `accelerate launch` on many GPUs)")
    pt.add_argument("--objective", choices=["distill", "mpm"], default="distill",
                    help="self-distillation (student / EMA teacher) or masked point modelling")
    pt.add_argument("--preset", choices=PRESETS, default="tiny")
    pt.add_argument("--steps", type=count(), default=2000)
    pt.add_argument("--batch-size", type=count(), default=8, help="events per process per step")
    pt.add_argument("--lr", type=positive(), default=1e-3)
    pt.add_argument("--warmup", type=count(0), default=100)
    pt.add_argument("--data-mode", default="nu,mpv,mpr",
                    help="simulator modes, comma-separated, cycled event by event")
    pt.add_argument("--seed", type=whole(), default=0, help="data seed (pretraining split)")
    pt.add_argument("--voxel-size", type=voxel_size(), default=None, help="cm (default: the preset's)")
    pt.add_argument("--files", nargs="+", help="event files / globs instead of simulated events")
    pt.add_argument("--data", default=None, help="shard folder (`larsight shards`) to stream")
    pt.add_argument("--workers", type=count(0), default=2, help="processes reading --data shards")
    pt.add_argument("--log-every", type=count(), default=10)
    _run_options(pt, "pretrain", 200)
    pt.add_argument("--n-local", type=count(0), default=4, help="distill: local crops per event")
    pt.add_argument("--mask-ratio", type=fraction(), default=0.4, help="distill: student mask ratio")
    pt.add_argument("--mpm-mask-ratio", type=fraction(), default=0.6, help="mpm: masked cell share")
    pt.add_argument("--mpm-cell", type=count(), default=4, help="mpm: cell edge in voxels")
    pt.set_defaults(func=cmd_pretrain)


# ============================================================================ finetune
def cmd_finetune(args) -> int:
    if args.init != "scratch":
        _existing(args.init, "--init")
    files = tuple(check_inputs(args.files)) if args.files else ()
    eval_files = tuple(check_inputs(args.eval_files, "--eval-files")) if args.eval_files else ()
    _shard_folder(args.data)
    _check_run_dir(args)

    from larsight.encoder.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(
        task=args.task, mode=args.mode, init=args.init, preset=args.preset, head=args.head,
        n_events=args.n_events, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        data_mode=args.data_mode, seed=args.seed, voxel_size_cm=args.voxel_size,
        files=files, eval_files=eval_files, n_eval=args.n_eval, run_dir=args.run_dir,
        task_weights=args.task_weights, name=args.name, data=args.data, workers=args.workers,
        loss=args.loss, focal_gamma=args.focal_gamma, time_limit_min=args.time_limit,
        log_every=args.log_every,
        ckpt_every=args.ckpt_every, resume=args.resume, stop_at=args.stop_at)
    result = finetune(cfg)
    if not result["main_process"]:  # under `accelerate launch`, the main process reports
        return 0
    if not result["complete"]:
        print(f"finetune stopped at step {result['steps']} of {cfg.steps} -> {cfg.run_dir}")
        return 0
    per_task = result["metrics"] if cfg.multi else {cfg.task: result["metrics"]}
    summary = {t: {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
               for t, m in per_task.items()}
    print(f"finetune {cfg.task} ({cfg.mode}) on {result['n_events']} events -> {cfg.run_dir}")
    print(json.dumps(summary if cfg.multi else summary[cfg.task], indent=2))
    return 0


def add_finetune(sub) -> None:
    ft = sub.add_parser("finetune", help="train task heads on the encoder (probe or full); "
                        "several tasks train jointly into one checkpoint")
    ft.add_argument("--task", required=True,
                    help="semantic, particle, interaction, vertex, pid or event; a comma list "
                         "(e.g. semantic,particle,vertex,pid,event) or 'all' for multi-task")
    ft.add_argument("--task-weights", default=None,
                    help="multi-task loss weights, e.g. semantic=1,vertex=2 "
                         "(default: encoder.finetune.DEFAULT_TASK_WEIGHTS)")
    ft.add_argument("--mode", choices=["probe", "full"], default="probe",
                    help="probe: frozen encoder (linear probe); full: fine-tune everything")
    ft.add_argument("--init", default="scratch",
                    help="pretrained encoder .safetensors, or 'scratch'")
    ft.add_argument("--preset", choices=PRESETS, default="tiny",
                    help="encoder preset with --init scratch")
    ft.add_argument("--head", choices=["linear", "mlp"], default=None,
                    help="default: linear for probe, mlp for full")
    ft.add_argument("--n-events", type=n_events, default=100,
                    help="fine-tuning set size (10, 100, 1000...) or 'all' (fresh events)")
    ft.add_argument("--steps", type=count(), default=300)
    ft.add_argument("--batch-size", type=count(), default=8)
    ft.add_argument("--lr", type=positive(), default=3e-3)
    ft.add_argument("--data-mode", default=None,
                    help="simulator modes (default: nu; mpr for --task interaction)")
    ft.add_argument("--seed", type=whole(), default=0)
    ft.add_argument("--voxel-size", type=voxel_size(), default=None)
    ft.add_argument("--files", nargs="+", help="fine-tuning event files instead of simulation")
    ft.add_argument("--eval-files", nargs="+", help="held-out event files for the evaluation")
    ft.add_argument("--n-eval", type=count(), default=200,
                    help="held-out events evaluated at the end (per data group)")
    ft.add_argument("--data", default=None, help="shard folder (`larsight shards`) to train on")
    ft.add_argument("--workers", type=count(0), default=2, help="processes reading --data shards")
    ft.add_argument("--log-every", type=count(), default=10, help="loss.csv row every N steps")
    ft.add_argument("--loss", choices=["balanced", "focal", "ce"], default="balanced",
                    help="classification heads: class-balanced cross-entropy (weights from the "
                         "shards' label counts with --data), focal, or plain cross-entropy")
    ft.add_argument("--focal-gamma", type=nonneg(), default=2.0, help="--loss focal: gamma")
    _run_options(ft, "finetune", 100)
    ft.set_defaults(func=cmd_finetune)


# ============================================================================ align
def cmd_align(args) -> int:
    _existing(args.encoder, "--encoder")
    _existing(args.init, "--init")
    if args.stage == "actions":
        return _cmd_align_actions(args)
    if args.stage == "prefs":
        from larsight.ui.cli_prefs import cmd_align_prefs   # DPO from expert feedback

        _check_run_dir(args)
        return cmd_align_prefs(args)
    _check_run_dir(args)

    from larsight.encoder.training import resolve_run_dir

    run_dir = str(resolve_run_dir(f"align{args.stage}", args.run_dir, args.name, args.resume))

    from larsight.qformer.align import AlignConfig, align

    cfg = AlignConfig(stage=args.stage, run_dir=run_dir, encoder=args.encoder, lm=args.lm,
                      quantization=args.quantization, init=args.init, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, lora_lr=args.lora_lr,
                      warmup=args.warmup, contrastive=args.contrastive, n_queries=args.n_queries,
                      prompt=args.prompt, max_answer_tokens=args.max_answer_tokens or None,
                      data_mode=args.data_mode, seed=args.seed, time_limit_min=args.time_limit,
                      ckpt_every=args.ckpt_every, resume=args.resume, voxel_size_cm=args.voxel_size,
                      stop_at=args.stop_at)
    align(cfg, command="larsight " + " ".join(shlex.quote(a) for a in args.argv))
    return 0


def _cmd_align_actions(args) -> int:
    _check_run_dir(args)
    from larsight.agent.actions import action_json_schema, parse_action
    from larsight.encoder.training import resolve_run_dir

    run_dir = str(resolve_run_dir("align_actions", args.run_dir, args.name, args.resume))
    from larsight.qformer.align_actions import ActionsConfig, align_actions

    cfg = ActionsConfig(run_dir=run_dir, init=args.init, steps=args.steps, batch_size=args.batch_size,
                        lr=args.lora_lr, warmup=args.warmup, eval_n=args.eval_n, seed=args.seed,
                        time_limit_min=args.time_limit, ckpt_every=args.ckpt_every, resume=args.resume,
                        explain_fraction=args.explain_fraction)
    from larsight.agent.vlm_actions import explanation_verdicts

    align_actions(cfg, action_json_schema(), parse=lambda t: parse_action(t).model_dump(),
                  command="larsight " + " ".join(shlex.quote(a) for a in args.argv), check=explanation_verdicts)
    return 0


def _stage(text: str):
    return text if text in ("actions", "prefs") else int(text)


def add_align(sub) -> None:
    al = sub.add_parser("align", help="align the encoder to the language model: stage 1 "
                        "(LM frozen: contrastive + captioning) or stage 2 (QLoRA instructions)")
    al.add_argument("--stage", type=_stage, choices=[1, 2, "actions", "prefs"], required=True,
                    help="1, 2, or actions: QLoRA on the agent's action corpus (qformer/align_actions.py; "
                         "--init a stage-2 VLM folder, default the shipped one); prefs: DPO on the adapters from "
                         "expert feedback (qformer/align_prefs.py; --feedback)")
    al.add_argument("--eval-n", type=count(0), default=120,
                    help="--stage actions: held-out-template examples decoded before and after training")
    al.add_argument("--explain-fraction", type=nonneg(hi=1.0), default=0.0,
                    help="--stage actions: share of each batch from the grounded-explanation corpus "
                         "(qformer/corpus/explanations.py); > 0 also evaluates eval_n/2 held-out explanations "
                         "with the validator (first-draft contradiction rate)")
    al.add_argument("--feedback", default=None,
                    help="--stage prefs: expert feedback to train on with DPO (qformer/align_prefs.py): a "
                         "`larsight feedback export --format dpo` file, a feedback database file or a SQLAlchemy URL")
    al.add_argument("--beta", type=positive(), default=0.1, help="--stage prefs: DPO beta")
    al.add_argument("--eval-fraction", type=nonneg(hi=0.9), default=0.1,
                    help="--stage prefs: share of answers held out for the before/after evaluation")
    al.add_argument("--limit", type=count(), default=None, help="--stage prefs: use the first N usable pairs")
    al.add_argument("--encoder", default=None, help="encoder checkpoint (default: the shipped one)")
    al.add_argument("--lm", default="smollm2-135m-instruct",
                    help="language model: the bundled default or a local HF model directory")
    al.add_argument("--quantization", choices=["nf4", "none"], default="nf4",
                    help="nf4: 4-bit base (QLoRA in stage 2); none: full precision")
    al.add_argument("--init", default=None, help="stage 2: the stage-1 RUN_DIR/vlm folder")
    al.add_argument("--steps", type=count(), default=600)
    al.add_argument("--batch-size", type=count(), default=8)
    al.add_argument("--lr", type=positive(), default=1e-3, help="projector learning rate")
    al.add_argument("--lora-lr", type=positive(), default=2e-4)
    al.add_argument("--warmup", type=count(0), default=30)
    al.add_argument("--contrastive", choices=["siglip", "clip"], default="siglip")
    al.add_argument("--n-queries", type=count(), default=16)
    al.add_argument("--prompt", choices=["physics", "bare"], default="physics",
                    help="system prompt to train with (bare: 19 tokens instead of 127; cheap "
                         "stage 1 on a CPU); the VLM then uses it at inference")
    al.add_argument("--max-answer-tokens", type=count(0), default=64,
                    help="cut captions / answers after N tokens (0: keep whole)")
    al.add_argument("--data-mode", default="nu")
    al.add_argument("--voxel-size", type=voxel_size(), default=None,
                    help="cm grid of the simulated alignment events (default: the encoder's)")
    al.add_argument("--seed", type=whole(), default=0, help="data seed (the align split)")
    _run_options(al, "align<STAGE>", 100)
    al.set_defaults(func=cmd_align)


# ============================================================================ eval encoder
def cmd_eval(args) -> int:
    _existing(args.checkpoint, "checkpoint")
    files = check_inputs(args.files) if args.files else ()
    if args.out is not None:
        output_dir(args.out)

    from larsight.encoder.evaluate import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, tasks=args.task, n=args.n, seed=args.seed,
                              data_mode=args.data_mode, files=files, out_dir=args.out)
    print((Path(res["out_dir"]) / "report.md").read_text())
    print(f"report and plots in {res['out_dir']}")
    return 0


def add_eval_encoder(ev_sub) -> None:
    ee = ev_sub.add_parser("encoder", help="metrics of an encoder checkpoint's task heads")
    ee.add_argument("checkpoint", help="model.safetensors written by `larsight finetune`")
    ee.add_argument("--task", nargs="+", default=None, help="heads to evaluate (default: all)")
    ee.add_argument("--n", type=count(), default=200, help="held-out simulated events")
    ee.add_argument("--seed", type=whole(), default=0, help="data seed (its eval split is used)")
    ee.add_argument("--data-mode", default=None)
    ee.add_argument("--files", nargs="+", help="evaluate on these files (e.g. PILArNet-M .h5)")
    ee.add_argument("--out", default=None, help="report folder (default: next to the checkpoint)")
    ee.set_defaults(func=cmd_eval)

