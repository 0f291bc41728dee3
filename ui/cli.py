"""The `larsight` command line. Each verb is a thin wrapper over a function of its layer."""
from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path


def _volume(voxel_size_cm: float | None):
    """The PILArNet-M volume, optionally on a coarser or finer grid of the same extent."""
    from larsight.events import PILARNET_VOLUME, Volume

    if voxel_size_cm is None:
        return PILARNET_VOLUME
    extent = PILARNET_VOLUME.size_cm[0]
    n = int(round(extent / voxel_size_cm))
    if n < 1 or abs(n * voxel_size_cm - extent) > 1e-6 * extent:
        raise SystemExit(f"--voxel-size {voxel_size_cm} cm does not divide the {extent:.1f} cm volume")
    return Volume(voxel_size_cm=voxel_size_cm, shape=(n, n, n))


def cmd_simulate(args) -> int:
    from larsight.events.sim import simulate_file

    n = simulate_file(args.out, mode=args.mode, n=args.n, seed=args.seed,
                      volume=_volume(args.voxel_size), workers=args.workers, progress=True)
    print(f"wrote {n} {args.mode} events to {args.out}")
    return 0


def cmd_convert(args) -> int:
    from larsight.events.formats import convert

    n = convert(args.input, args.output, progress=True)
    print(f"converted {n} events: {args.input} -> {args.output}")
    return 0


def cmd_inspect(args) -> int:
    from larsight.events.inspect import inspect

    report = inspect(args.path, out_dir=args.plots, max_events=args.max_events)
    print(report)
    return 0


def cmd_demo(args) -> int:
    from larsight.ui.demo import run_demo

    run_demo(Path(args.out), n=args.n, seed=args.seed, ask=args.ask, ask_events=args.ask_events,
             brain=args.brain)
    return 0


def _n_events(value: str) -> int | None:
    if value.lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1 (or 'all')")
    return n


def cmd_pretrain(args) -> int:
    from larsight.encoder.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        objective=args.objective, preset=args.preset, run_dir=args.run_dir, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
        time_limit_min=args.time_limit, data_mode=args.data_mode, seed=args.seed,
        voxel_size_cm=args.voxel_size, files=tuple(args.files or ()), log_every=args.log_every,
        ckpt_every=args.ckpt_every, resume=args.resume, n_local=args.n_local,
        mask_ratio=args.mask_ratio, mpm_mask_ratio=args.mpm_mask_ratio, mpm_cell=args.mpm_cell)
    pretrain(cfg)
    return 0


def cmd_finetune(args) -> int:
    import json

    from larsight.encoder.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(
        task=args.task, mode=args.mode, init=args.init, preset=args.preset, head=args.head,
        n_events=args.n_events, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        data_mode=args.data_mode, seed=args.seed, voxel_size_cm=args.voxel_size,
        files=tuple(args.files or ()), eval_files=tuple(args.eval_files or ()),
        n_eval=args.n_eval, run_dir=args.run_dir, task_weights=args.task_weights)
    result = finetune(cfg)
    per_task = result["metrics"] if cfg.multi else {cfg.task: result["metrics"]}
    summary = {t: {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
               for t, m in per_task.items()}
    print(f"finetune {cfg.task} ({cfg.mode}) on {result['n_events']} events -> {cfg.run_dir}")
    print(json.dumps(summary if cfg.multi else summary[cfg.task], indent=2))
    return 0


def cmd_eval(args) -> int:
    from larsight.encoder.evaluate import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, tasks=args.task, n=args.n, seed=args.seed,
                              data_mode=args.data_mode, files=args.files or (),
                              out_dir=args.out)
    print((Path(res["out_dir"]) / "report.md").read_text())
    print(f"report and plots in {res['out_dir']}")
    return 0


_EVAL_VERBS = (
    ("agent", "larsight.evals.agent_eval.cli", "run the agent evaluation suites (evals/suites) with one or more brains "
     "(resumable, k trials per case) and write evals/reports/agent.md"),
    ("all", "larsight.evals.dashboard", "regenerate every report in evals/reports and its index page README.md"),
    ("compare", "larsight.evals.compare", "what changed between two agent runs or two report JSONs"),
)


def _eval_verb(module: str):
    def run(args) -> int:
        return importlib.import_module(module).run(args)
    return run


def cmd_align(args) -> int:
    from larsight.qformer.align import AlignConfig, align

    cfg = AlignConfig(stage=args.stage, run_dir=args.run_dir or f"runs/align{args.stage}", encoder=args.encoder, lm=args.lm,
                      quantization=args.quantization, init=args.init, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, lora_lr=args.lora_lr,
                      warmup=args.warmup, contrastive=args.contrastive, n_queries=args.n_queries,
                      prompt=args.prompt, max_answer_tokens=args.max_answer_tokens or None,
                      data_mode=args.data_mode, seed=args.seed, time_limit_min=args.time_limit,
                      ckpt_every=args.ckpt_every, resume=args.resume, voxel_size_cm=args.voxel_size)
    align(cfg, command="larsight " + " ".join(shlex.quote(a) for a in args.argv))
    return 0


def _event_ref(ref: str):
    """FILE or FILE:INDEX -> one event (index 0 when none is given)."""
    from larsight.events import read

    path, index = ref, 0
    head, sep, tail = ref.rpartition(":")
    if sep and tail.isdigit():
        path, index = head, int(tail)
    if not Path(path).exists():
        raise FileNotFoundError(f"no such event file: {path}")
    return read(path, index)


def cmd_classify(args) -> int:
    from larsight.qformer import load_vlm

    event = _event_ref(args.event)
    vlm = load_vlm(args.vlm)
    probs = vlm.classify(event, physics=not args.no_physics_prompt)
    out = {"event": args.event, "probabilities": probs,
           "prediction": max(probs, key=probs.get)}
    if args.explain:
        out["explanation"] = vlm.explain(event)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for c, p in sorted(probs.items(), key=lambda kv: -kv[1]):
            print(f"{c:8s} {p:6.3f}")
        if args.explain:
            print(out["explanation"])
    return 0


def cmd_index_build(args) -> int:
    from larsight.tools.index_build import build_index

    sources = list(args.data or [])
    if args.simulate:
        spec = f"sim:{args.simulate}:seed={args.seed}:n={args.n}"
        if args.voxel_size is not None:
            spec += f":voxel={args.voxel_size:g}"
        if args.split:
            spec += f":split={args.split}"
        sources.append(spec)
    if not sources:
        raise ValueError("give event files / globs (DATA...) or --simulate MODE --n N")
    if args.ray_address:
        import os

        os.environ["RAY_ADDRESS"] = args.ray_address
    report = build_index(sources, args.out, embedder=args.vlm, batch_size=args.batch_size,
                         progress=not args.no_progress, ray=args.ray, append=args.append,
                         limit=args.limit, vector_index=args.vector_index,
                         ray_actors=args.ray_actors, ray_threads=args.ray_threads,
                         command="larsight " + " ".join(shlex.quote(a) for a in args.argv))
    print(report)
    return 0


def cmd_index_search(args) -> int:
    from larsight.tools.retrieval import find_similar

    if (args.text is None) == (args.event is None):
        raise ValueError("give exactly one of --text TEXT or --event FILE[:INDEX]")
    query = args.text if args.text is not None else args.event
    if args.event is not None:
        from larsight.tools.retrieval import parse_event_ref

        query = parse_event_ref(args.event)
    res = find_similar(query, k=args.k, index=args.index, where=args.where,
                       event_class=args.event_class, topology=args.topology,
                       min_energy_mev=args.min_energy, max_energy_mev=args.max_energy,
                       exclude_self=args.exclude_self, vlm=args.vlm)
    print(res.model_dump_json(indent=2) if args.json else res.summary())
    return 0


def cmd_ask(args) -> int:
    from larsight.agent import Agent

    ref = args.event
    head, sep, tail = ref.rpartition(":")
    has_index = bool(sep and tail.lstrip("-").isdigit() and not Path(ref).exists())
    path = head if has_index else ref
    if not ref.startswith("sim:"):
        if not Path(path).exists():
            raise FileNotFoundError(f"no such event file: {path}")
        if not has_index:
            ref = f"{path}:0"      # FILE alone: its first event (as `larsight classify`)
    kw = {}
    if args.brain == "vlm" and args.vlm:
        kw["vlm"] = args.vlm
    if args.brain == "openai":
        kw.update(base_url=args.base_url, model_name=args.model)
    bot = Agent(args.brain, db=args.db, run_dir=args.run_dir, index=args.index, **kw)
    answer = None
    for item in bot.stream(ref, args.question, thread_id=args.thread):
        if hasattr(item, "node"):
            if args.steps and not args.json:
                print(item, file=sys.stderr)
        else:
            answer = item
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print(answer)
    return 0


def cmd_ui(args) -> int:
    from larsight.ui.app import build_app, launch, warm_up

    demo = build_app(args.brain, index=args.index, db=args.db, run_dir=args.run_dir,
                     max_upload_mb=args.max_upload_mb, concurrency=args.concurrency)
    if not args.no_warm_up:
        warm_up(demo.larsight_agent)
    print(f"larsight ui: http://{args.host}:{args.port}/ (brain {args.brain}; Ctrl+C stops it)")
    launch(demo, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="larsight", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate events and write them to a file (.h5 or .root)")
    s.add_argument("--mode", choices=["nu", "mpv", "mpr"], default="nu")
    s.add_argument("--n", type=int, default=100, help="number of events")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output file, .h5 (PILArNet-M schema) or .root")
    s.add_argument("--voxel-size", type=float, default=None, help="voxel edge in cm (default 0.3)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.set_defaults(func=cmd_simulate)

    c = sub.add_parser("convert", help="convert between PILArNet-M HDF5 and ROOT")
    c.add_argument("input")
    c.add_argument("output")
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("inspect", help="summarise an event file and plot its distributions")
    i.add_argument("path")
    i.add_argument("--plots", default=None, help="folder for the plots (default: PATH.inspect/)")
    i.add_argument("--max-events", type=int, default=None)
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("demo", help="the main job on shipped weights and simulated events")
    d.add_argument("--out", default="demo_output")
    d.add_argument("--n", type=int, default=4)
    d.add_argument("--seed", type=int, default=2026)
    d.add_argument("--ask", action="store_true", help="then ask the agent about the events and print "
                   "its answers with their validation tables (what `make demo` runs)")
    d.add_argument("--ask-events", type=int, default=2, help="events the agent is asked about")
    d.add_argument("--brain", choices=["rules", "vlm", "openai"], default=None,
                   help="agent brain for --ask (default: vlm when shipped, else rules)")
    d.set_defaults(func=cmd_demo)

    pt = sub.add_parser("pretrain", help="self-supervised pretraining of the point encoder "
                        "(no labels; runs under `accelerate launch` on many GPUs)")
    pt.add_argument("--objective", choices=["distill", "mpm"], default="distill",
                    help="self-distillation (student / EMA teacher) or masked point modelling")
    pt.add_argument("--preset", choices=["tiny", "small", "base"], default="tiny")
    pt.add_argument("--run-dir", default="runs/pretrain", help="checkpoints, loss.csv, loss.png")
    pt.add_argument("--steps", type=int, default=2000)
    pt.add_argument("--batch-size", type=int, default=8, help="events per process per step")
    pt.add_argument("--lr", type=float, default=1e-3)
    pt.add_argument("--warmup", type=int, default=100)
    pt.add_argument("--time-limit", type=float, default=None, help="stop after MINUTES")
    pt.add_argument("--data-mode", default="nu,mpv,mpr",
                    help="simulator modes, comma-separated, cycled event by event")
    pt.add_argument("--seed", type=int, default=0, help="data seed (pretraining split)")
    pt.add_argument("--voxel-size", type=float, default=None, help="cm (default: the preset's)")
    pt.add_argument("--files", nargs="+", help="event files / globs instead of simulated events")
    pt.add_argument("--log-every", type=int, default=10)
    pt.add_argument("--ckpt-every", type=int, default=200)
    pt.add_argument("--resume", action="store_true", help="continue from RUN_DIR/state")
    pt.add_argument("--n-local", type=int, default=4, help="distill: local crops per event")
    pt.add_argument("--mask-ratio", type=float, default=0.4, help="distill: student mask ratio")
    pt.add_argument("--mpm-mask-ratio", type=float, default=0.6, help="mpm: masked cell share")
    pt.add_argument("--mpm-cell", type=int, default=4, help="mpm: cell edge in voxels")
    pt.set_defaults(func=cmd_pretrain)

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
    ft.add_argument("--preset", choices=["tiny", "small", "base"], default="tiny",
                    help="encoder preset with --init scratch")
    ft.add_argument("--head", choices=["linear", "mlp"], default=None,
                    help="default: linear for probe, mlp for full")
    ft.add_argument("--n-events", type=_n_events, default=100,
                    help="fine-tuning set size (10, 100, 1000...) or 'all' (fresh events)")
    ft.add_argument("--steps", type=int, default=300)
    ft.add_argument("--batch-size", type=int, default=8)
    ft.add_argument("--lr", type=float, default=3e-3)
    ft.add_argument("--data-mode", default=None,
                    help="simulator modes (default: nu; mpr for --task interaction)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--voxel-size", type=float, default=None)
    ft.add_argument("--files", nargs="+", help="fine-tuning event files instead of simulation")
    ft.add_argument("--eval-files", nargs="+", help="held-out event files for the evaluation")
    ft.add_argument("--n-eval", type=int, default=200,
                    help="held-out events evaluated at the end (per data group)")
    ft.add_argument("--run-dir", default="runs/finetune")
    ft.set_defaults(func=cmd_finetune)

    al = sub.add_parser("align", help="align the encoder to the language model: stage 1 "
                        "(LM frozen: contrastive + captioning) or stage 2 (QLoRA instructions)")
    al.add_argument("--stage", type=int, choices=[1, 2], required=True)
    al.add_argument("--run-dir", default=None, help="default runs/align<STAGE>")
    al.add_argument("--encoder", default=None, help="encoder checkpoint (default: the shipped one)")
    al.add_argument("--lm", default="smollm2-135m-instruct",
                    help="language model: the bundled default or a local HF model directory")
    al.add_argument("--quantization", choices=["nf4", "none"], default="nf4",
                    help="nf4: 4-bit base (QLoRA in stage 2); none: full precision")
    al.add_argument("--init", default=None, help="stage 2: the stage-1 RUN_DIR/vlm folder")
    al.add_argument("--steps", type=int, default=600)
    al.add_argument("--batch-size", type=int, default=8)
    al.add_argument("--lr", type=float, default=1e-3, help="projector learning rate")
    al.add_argument("--lora-lr", type=float, default=2e-4)
    al.add_argument("--warmup", type=int, default=30)
    al.add_argument("--contrastive", choices=["siglip", "clip"], default="siglip")
    al.add_argument("--n-queries", type=int, default=16)
    al.add_argument("--prompt", choices=["physics", "bare"], default="physics",
                    help="system prompt to train with (bare: 19 tokens instead of 127; cheap "
                         "stage 1 on a CPU); the VLM then uses it at inference")
    al.add_argument("--max-answer-tokens", type=int, default=64,
                    help="cut captions / answers after N tokens (0: keep whole)")
    al.add_argument("--data-mode", default="nu")
    al.add_argument("--voxel-size", type=float, default=None,
                    help="cm grid of the simulated alignment events (default: the encoder's)")
    al.add_argument("--seed", type=int, default=0, help="data seed (the align split)")
    al.add_argument("--time-limit", type=float, default=None, help="stop after MINUTES")
    al.add_argument("--ckpt-every", type=int, default=100)
    al.add_argument("--resume", action="store_true")
    al.set_defaults(func=cmd_align)

    cl = sub.add_parser("classify", help="nu_e CC / nu_mu CC / NC probabilities from the VLM")
    cl.add_argument("event", help="FILE or FILE:INDEX (.h5 or .root)")
    cl.add_argument("--vlm", default=None, help="VLM folder (default: checkpoints/vlm_smollm2)")
    cl.add_argument("--explain", action="store_true", help="also generate an explanation")
    cl.add_argument("--no-physics-prompt", action="store_true",
                    help="leave the physics definitions out of the system prompt")
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=cmd_classify)

    ix = sub.add_parser("index", help="the event index behind find_similar: build, search")
    ix_sub = ix.add_subparsers(dest="action", required=True)
    ib = ix_sub.add_parser("build", help="embed events into an index (LanceDB folder); "
                           "replaces the index atomically unless --append")
    ib.add_argument("data", nargs="*", help="event files or globs (.h5 / .root), FILE:INDEX, "
                    "or simulation specs sim:MODE:seed=S:n=N")
    ib.add_argument("--out", default=None, help="index folder (default: $LARSIGHT_INDEX or "
                    "~/.local/share/larsight/index)")
    ib.add_argument("--simulate", default=None, metavar="MODE[,MODE...]",
                    help="index simulated events: nu, mpv, mpr or a comma list cycled event by "
                         "event (with --n, --seed)")
    ib.add_argument("--n", type=int, default=1000, help="--simulate: number of events")
    ib.add_argument("--seed", type=int, default=0, help="--simulate: simulator seed")
    ib.add_argument("--split", default=None, choices=["pretrain", "finetune", "eval", "align"],
                    help="--simulate: use this data split's seed (encoder.data.split_seed)")
    ib.add_argument("--voxel-size", type=float, default=None, help="--simulate: cm (default 0.6)")
    ib.add_argument("--vlm", default=None, help="VLM folder (default: checkpoints/vlm_smollm2)")
    ib.add_argument("--batch-size", type=int, default=8)
    ib.add_argument("--limit", type=int, default=None, help="index at most N events")
    ib.add_argument("--append", action="store_true", help="add to the existing index")
    ib.add_argument("--vector-index", choices=["auto", "hnsw", "none"], default="auto",
                    help="HNSW vector index (auto: from 50k events)")
    ib.add_argument("--ray", action="store_true",
                    help="embed on Ray Data (pip install 'larsight[ray]'; RAY_ADDRESS for a cluster)")
    ib.add_argument("--ray-actors", type=int, default=1, help="--ray: embedding actors")
    ib.add_argument("--ray-threads", type=int, default=1, help="--ray: CPUs per actor")
    ib.add_argument("--ray-address", default=None, help="--ray: cluster address")
    ib.add_argument("--no-progress", action="store_true")
    ib.set_defaults(func=cmd_index_build)
    isr = ix_sub.add_parser("search", help="the events most similar to an event or a text")
    isr.add_argument("index", nargs="?", default=None, help="index folder (default: "
                     "$LARSIGHT_INDEX or ~/.local/share/larsight/index)")
    isr.add_argument("--text", default=None, help="text query, e.g. 'nu_e CC with a gap "
                     "before the shower'")
    isr.add_argument("--event", default=None, help="FILE[:INDEX] or sim:MODE:seed=S:...:index=I")
    isr.add_argument("-k", type=int, default=10, help="number of events")
    isr.add_argument("--where", default=None,
                     help="SQL filter, e.g. \"event_class = 'nue_cc' AND visible_energy_mev > 500\"")
    isr.add_argument("--event-class", default=None, choices=["nue_cc", "numu_cc", "nc"])
    isr.add_argument("--topology", default=None, help="e.g. '1mu 2p 0pi'")
    isr.add_argument("--min-energy", type=float, default=None, help="visible energy, MeV")
    isr.add_argument("--max-energy", type=float, default=None, help="visible energy, MeV")
    isr.add_argument("--exclude-self", action="store_true")
    isr.add_argument("--vlm", default=None, help="query model (default: the index's own)")
    isr.add_argument("--json", action="store_true")
    isr.set_defaults(func=cmd_index_search)

    ak = sub.add_parser("ask", help="ask the agent a question about an event; every claim of the "
                        "answer is checked against the tools' measurements")
    ak.add_argument("event", help="FILE or FILE:INDEX (.h5 or .root; FILE alone: event 0)")
    ak.add_argument("question")
    ak.add_argument("--brain", choices=["rules", "vlm", "openai"], default=None,
                    help="reasoning back-end (default: $LARSIGHT_BRAIN, else vlm when its "
                         "checkpoint is shipped, else rules)")
    ak.add_argument("--thread", default=None, help="conversation id: later questions with the same "
                    "id see this one (kept in --db)")
    ak.add_argument("--db", default=None, help="SQLite file of conversations "
                    "(default: $LARSIGHT_AGENT_DB or ~/.cache/larsight/agent_threads.sqlite)")
    ak.add_argument("--json", action="store_true", help="the whole Answer as JSON (claims, steps, timings)")
    ak.add_argument("--steps", action="store_true", help="print the reasoning steps as they happen (stderr)")
    ak.add_argument("--run-dir", default=None, help="folder the tools may write into (renders)")
    ak.add_argument("--index", default=None, help="event index for find_similar (default: $LARSIGHT_INDEX)")
    ak.add_argument("--vlm", default=None, help="VLM folder for --brain vlm (default: checkpoints/vlm_smollm2)")
    ak.add_argument("--base-url", default=None, help="--brain openai: the endpoint (vLLM, Ollama, llama.cpp)")
    ak.add_argument("--model", default=None, help="--brain openai: the model name")
    ak.set_defaults(func=cmd_ask)

    u = sub.add_parser("ui", help="the Gradio chat with an event display (offline, shipped weights)")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    u.add_argument("--port", type=int, default=7860)
    u.add_argument("--brain", choices=["rules", "vlm", "openai"], default="vlm",
                   help="reasoning back-end (vlm: the shipped VLM, loads in the background)")
    u.add_argument("--index", default=None, help="event index for similar events (default: "
                   "$LARSIGHT_INDEX or ~/.local/share/larsight/index)")
    u.add_argument("--db", default=None, help="SQLite file of conversations "
                   "(default: $LARSIGHT_AGENT_DB or ~/.cache/larsight/agent_threads.sqlite)")
    u.add_argument("--run-dir", default=None, help="uploads and tool outputs (default: runs/ui)")
    u.add_argument("--max-upload-mb", type=float, default=200, help="largest event file accepted")
    u.add_argument("--concurrency", type=int, default=4, help="questions answered at once")
    u.add_argument("--no-warm-up", action="store_true", help="load the models on the first question")
    u.set_defaults(func=cmd_ui)

    ev = sub.add_parser("eval", help="evaluate a trained component")
    ev_sub = ev.add_subparsers(dest="target", required=True)
    ee = ev_sub.add_parser("encoder", help="metrics of an encoder checkpoint's task heads")
    ee.add_argument("checkpoint", help="model.safetensors written by `larsight finetune`")
    ee.add_argument("--task", nargs="+", default=None, help="heads to evaluate (default: all)")
    ee.add_argument("--n", type=int, default=200, help="held-out simulated events")
    ee.add_argument("--seed", type=int, default=0, help="data seed (its eval split is used)")
    ee.add_argument("--data-mode", default=None)
    ee.add_argument("--files", nargs="+", help="evaluate on these files (e.g. PILArNet-M .h5)")
    ee.add_argument("--out", default=None, help="report folder (default: next to the checkpoint)")
    ee.set_defaults(func=cmd_eval)
    for name, module, text in _EVAL_VERBS:
        ep = ev_sub.add_parser(name, help=text, description=text)
        importlib.import_module(module).add_arguments(ep)
        ep.set_defaults(func=_eval_verb(module))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from larsight.events import EventError

    try:
        return args.func(args)
    except (EventError, FileNotFoundError, FileExistsError) as err:
        print(f"larsight {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # bad options, checkpoint mismatches (CheckpointError)
        if args.command not in ("pretrain", "finetune", "eval", "align", "classify", "index"):
            raise
        print(f"larsight {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
