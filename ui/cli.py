"""The `larsight` command line. Each verb is a thin wrapper over a function of its layer.

Verbs are registered in ``VERBS`` at the end of this module: a verb is one ``add_<verb>(sub)``
function that adds its parser and sets ``func`` (the ``cmd_<verb>`` that runs it), plus one line
in ``VERBS``. The training verbs live in ``larsight.ui.cli_train``.

Failures end in one line on stderr and a documented exit code (``larsight.ui.cli_args``;
listed by ``larsight --help``), never a traceback: bad option values are refused by argparse
(exit 2), the files a verb reads go through the bounded reader for untrusted files
(``larsight.ui.cli_inputs``; exit 3), and ``ask`` exits 4 when no answer could be given.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Optional

from larsight.events.formats import FORMATS
from larsight.events.model import PILARNET_VOLUME, EventError, Volume
from larsight.tools.inputs import ToolInputError
from larsight.ui.cli_args import (EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_INTERNAL, EXIT_INTERRUPTED,
                                  EXIT_USAGE, BadInputError, Bounded, CliError, CliParser,
                                  NoAnswerError, UsageError, count, nonneg, port, positive,
                                  voxel_size, whole)
from larsight.ui.cli_inputs import (check_event_file, check_inputs, output_dir, output_file,
                                    read_event, split_ref)
from larsight.ui.cli_feedback import add_feedback
from larsight.ui.cli_train import (add_align, add_eval_encoder, add_finetune, add_pretrain,
                                   add_shards, cmd_align, cmd_eval, cmd_finetune, cmd_pretrain,
                                   n_events)

# Each cmd_* imports its layer when it runs, after checking its arguments and files: the layers
# pull in torch, transformers and gradio (2-9 s to import), which `larsight --help`, the light
# verbs and a refused argument must not pay for.

__all__ = ["main", "build_parser", "VERBS", "exit_code", "cmd_simulate", "cmd_convert",
           "cmd_inspect", "cmd_demo", "cmd_pretrain", "cmd_finetune", "cmd_eval", "cmd_align",
           "cmd_classify", "cmd_index_build", "cmd_index_search", "cmd_ask", "cmd_ui", "n_events"]

BRAINS = ["rules", "vlm", "openai"]
MAX_GRID = 8192
"""Voxels per axis of the finest grid `--voxel-size` may ask for (10x PILArNet-M's 768)."""
MAX_MESSAGE = 600


def _volume(voxel_size_cm: Optional[float]) -> Volume:
    """The PILArNet-M volume, optionally on a coarser or finer grid of the same extent."""
    if voxel_size_cm is None:
        return PILARNET_VOLUME
    extent = PILARNET_VOLUME.size_cm[0]
    n = round(extent / voxel_size_cm)
    if n < 1 or abs(n * voxel_size_cm - extent) > 1e-6 * extent:
        raise UsageError(f"--voxel-size {voxel_size_cm:g} cm does not divide the {extent:.1f} cm volume")
    if n > MAX_GRID:
        raise UsageError(f"--voxel-size {voxel_size_cm:g} cm makes a grid of {n}^3 voxels; the finest "
                         f"supported is {extent / MAX_GRID:.3g} cm ({MAX_GRID} per axis)")
    return Volume(voxel_size_cm=voxel_size_cm, shape=(n, n, n))


def _existing(path: Optional[str], what: str) -> None:
    if path is not None and not Path(path).expanduser().exists():
        raise BadInputError(f"{what} {path}: no such file or folder")


def _command_line(args) -> str:
    return "larsight " + " ".join(shlex.quote(a) for a in args.argv)


# ============================================================================ data verbs
def cmd_simulate(args) -> int:
    from larsight.events.sim import knobs as K   # light: numpy + the medium constants

    if args.list_knobs:
        print(K.render_text())
        print("\ndefinitions and sources: docs/simulator_knobs.md")
        return 0
    if args.out is None:
        raise UsageError("--out FILE is required (or --list-knobs)")
    fixed = dict(K.parse_setting(t) for t in args.knob) if args.knob else None   # KnobError: exit 2
    if args.randomize and args.voxel_size is not None:   # an explicit grid is not randomised
        fixed = {**(fixed or {}), **K.check_knobs({"voxel_size_cm": args.voxel_size})}
    output_file(args.out, FORMATS)
    volume = _volume(args.voxel_size)

    from larsight.events.sim import simulate_file

    n = simulate_file(args.out, mode=args.mode, n=args.n, seed=args.seed, volume=volume,
                      workers=args.workers, progress=True, randomize=args.randomize, knobs=fixed)
    how = " (knobs randomised per event)" if args.randomize else ""
    print(f"wrote {n} {args.mode} events to {args.out}{how}")
    return 0


def add_simulate(sub) -> None:
    s = sub.add_parser("simulate", help="simulate events and write them to a file (.h5 or .root)")
    s.add_argument("--mode", choices=["nu", "mpv", "mpr"], default="nu")
    s.add_argument("--n", type=count(), default=100, help="number of events")
    s.add_argument("--seed", type=whole(), default=0)
    s.add_argument("--out", default=None, help="output file, .h5 (PILArNet-M schema) or .root")
    s.add_argument("--voxel-size", type=voxel_size(), default=None, help="voxel edge in cm (default 0.3)")
    s.add_argument("--workers", type=count(), default=None, help="processes (default: all cores)")
    s.add_argument("--randomize", action="store_true",
                   help="draw every simulator knob per event from its range (domain "
                        "randomisation; the values go into each event's metadata)")
    s.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="fix one knob (repeatable), e.g. --knob energy_scale=1.05; "
                        "--list-knobs shows names and ranges")
    s.add_argument("--list-knobs", action="store_true", help="print the simulator knobs and exit")
    s.set_defaults(func=cmd_simulate)


def cmd_convert(args) -> int:
    check_event_file(args.input)
    out = output_file(args.output, FORMATS, what="output")
    if out.resolve() == Path(args.input).resolve():
        raise UsageError(f"output {args.output} is the input file: give another name")

    from larsight.events.formats import convert

    n = convert(args.input, args.output, progress=True, untrusted=True)
    print(f"converted {n} events: {args.input} -> {args.output}")
    return 0


def add_convert(sub) -> None:
    c = sub.add_parser("convert", help="convert between PILArNet-M HDF5 and ROOT")
    c.add_argument("input")
    c.add_argument("output")
    c.set_defaults(func=cmd_convert)


def cmd_inspect(args) -> int:
    check_event_file(args.path)
    if args.plots is not None:
        output_dir(args.plots, "--plots")

    from larsight.events.inspect import inspect

    report = inspect(args.path, out_dir=args.plots, max_events=args.max_events)
    print(report)
    return 0


def add_inspect(sub) -> None:
    i = sub.add_parser("inspect", help="summarise an event file and plot its distributions")
    i.add_argument("path")
    i.add_argument("--plots", default=None, help="folder for the plots (default: PATH.inspect/)")
    i.add_argument("--max-events", type=count(), default=None)
    i.set_defaults(func=cmd_inspect)


def cmd_demo(args) -> int:
    from larsight.ui.demo import run_demo

    run_demo(output_dir(args.out), n=args.n, seed=args.seed, ask=args.ask,
             ask_events=args.ask_events, brain=args.brain)
    return 0


def add_demo(sub) -> None:
    d = sub.add_parser("demo", help="the main job on shipped weights and simulated events")
    d.add_argument("--out", default="demo_output")
    d.add_argument("--n", type=count(), default=4)
    d.add_argument("--seed", type=whole(), default=2026)
    d.add_argument("--ask", action="store_true", help="then ask the agent about the events and print "
                   "its answers with their validation tables (what `make demo` runs)")
    d.add_argument("--ask-events", type=count(), default=2, help="events the agent is asked about")
    d.add_argument("--brain", choices=BRAINS, default=None,
                   help="agent brain for --ask (default: vlm when shipped, else rules)")
    d.set_defaults(func=cmd_demo)


# ============================================================================ the VLM and the index
def cmd_classify(args) -> int:
    event = read_event(args.event)
    _existing(args.vlm, "--vlm")

    from larsight.qformer import load_vlm

    vlm = load_vlm(args.vlm)
    probs = vlm.classify(event, physics=not args.no_physics_prompt)
    out = {"event": args.event, "probabilities": probs, "prediction": max(probs, key=probs.get)}
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


def add_classify(sub) -> None:
    cl = sub.add_parser("classify", help="nu_e CC / nu_mu CC / NC probabilities from the VLM")
    cl.add_argument("event", help="FILE or FILE:INDEX (.h5 or .root)")
    cl.add_argument("--vlm", default=None, help="VLM folder (default: checkpoints/vlm_smollm2)")
    cl.add_argument("--explain", action="store_true", help="also generate an explanation")
    cl.add_argument("--no-physics-prompt", action="store_true",
                    help="leave the physics definitions out of the system prompt")
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=cmd_classify)


def _check_sources(sources: list[str]) -> None:
    """Every file source of an index build exists and opens (bounded); globs match a file."""
    for src in sources:
        if src.startswith("sim:"):
            continue
        if any(c in src for c in "*?["):
            check_inputs([src], "DATA")
            continue
        path, _ = split_ref(src)
        check_event_file(path)


def cmd_index_build(args) -> int:
    sources = list(args.data or [])
    if args.simulate:
        spec = f"sim:{args.simulate}:seed={args.seed}:n={args.n}"
        if args.voxel_size is not None:
            spec += f":voxel={args.voxel_size:g}"
        if args.split:
            spec += f":split={args.split}"
        sources.append(spec)
    if not sources:
        raise UsageError("give event files / globs (DATA...) or --simulate MODE --n N")
    _check_sources(sources)
    _existing(args.vlm, "--vlm")
    if args.out is not None:
        output_dir(args.out)
    if args.ray_address:
        os.environ["RAY_ADDRESS"] = args.ray_address

    from larsight.tools.index_build import build_index

    report = build_index(sources, args.out, embedder=args.vlm, batch_size=args.batch_size,
                         progress=not args.no_progress, ray=args.ray, append=args.append,
                         limit=args.limit, vector_index=args.vector_index,
                         ray_actors=args.ray_actors, ray_threads=args.ray_threads,
                         command=_command_line(args))
    print(report)
    return 0


def cmd_index_search(args) -> int:
    if (args.text is None) == (args.event is None):
        raise UsageError("give exactly one of --text TEXT or --event FILE[:INDEX]")
    _existing(args.vlm, "--vlm")

    from larsight.tools.retrieval import find_similar, parse_event_ref

    query = args.text
    if args.event is not None:
        if not args.event.startswith("sim:"):
            read_event(args.event)   # a bad file fails here, bounded, before the index opens
        query = parse_event_ref(args.event)
    res = find_similar(query, k=args.k, index=args.index, where=args.where,
                       event_class=args.event_class, topology=args.topology,
                       min_energy_mev=args.min_energy, max_energy_mev=args.max_energy,
                       exclude_self=args.exclude_self, vlm=args.vlm)
    print(res.model_dump_json(indent=2) if args.json else res.summary())
    return 0


def _add_index_build(ix_sub) -> None:
    ib = ix_sub.add_parser("build", help="embed events into an index (LanceDB folder); "
                           "replaces the index atomically unless --append")
    ib.add_argument("data", nargs="*", help="event files or globs (.h5 / .root), FILE:INDEX, "
                    "or simulation specs sim:MODE:seed=S:n=N")
    ib.add_argument("--out", default=None, help="index folder (default: $LARSIGHT_INDEX or "
                    "~/.local/share/larsight/index)")
    ib.add_argument("--simulate", default=None, metavar="MODE[,MODE...]",
                    help="index simulated events: nu, mpv, mpr or a comma list cycled event by "
                         "event (with --n, --seed)")
    ib.add_argument("--n", type=count(), default=1000, help="--simulate: number of events")
    ib.add_argument("--seed", type=whole(), default=0, help="--simulate: simulator seed")
    ib.add_argument("--split", default=None, choices=["pretrain", "finetune", "eval", "align"],
                    help="--simulate: use this data split's seed (encoder.data.split_seed)")
    ib.add_argument("--voxel-size", type=voxel_size(), default=None, help="--simulate: cm (default 0.6)")
    ib.add_argument("--vlm", default=None, help="VLM folder (default: checkpoints/vlm_smollm2)")
    ib.add_argument("--batch-size", type=count(), default=8)
    ib.add_argument("--limit", type=count(), default=None, help="index at most N events")
    ib.add_argument("--append", action="store_true", help="add to the existing index")
    ib.add_argument("--vector-index", choices=["auto", "hnsw", "none"], default="auto",
                    help="HNSW vector index (auto: from 50k events)")
    ib.add_argument("--ray", action="store_true",
                    help="embed on Ray Data (pip install 'larsight[ray]'; RAY_ADDRESS for a cluster)")
    ib.add_argument("--ray-actors", type=count(), default=1, help="--ray: embedding actors")
    ib.add_argument("--ray-threads", type=count(), default=1, help="--ray: CPUs per actor")
    ib.add_argument("--ray-address", default=None, help="--ray: cluster address")
    ib.add_argument("--no-progress", action="store_true")
    ib.set_defaults(func=cmd_index_build)


def _add_index_search(ix_sub) -> None:
    isr = ix_sub.add_parser("search", help="the events most similar to an event or a text")
    isr.add_argument("index", nargs="?", default=None, help="index folder (default: "
                     "$LARSIGHT_INDEX or ~/.local/share/larsight/index)")
    isr.add_argument("--text", default=None, help="text query, e.g. 'nu_e CC with a gap "
                     "before the shower'")
    isr.add_argument("--event", default=None, help="FILE[:INDEX] or sim:MODE:seed=S:...:index=I")
    isr.add_argument("-k", type=count(), default=10, help="number of events")
    isr.add_argument("--where", default=None,
                     help="SQL filter, e.g. \"event_class = 'nue_cc' AND visible_energy_mev > 500\"")
    isr.add_argument("--event-class", default=None, choices=["nue_cc", "numu_cc", "nc"])
    isr.add_argument("--topology", default=None, help="e.g. '1mu 2p 0pi'")
    isr.add_argument("--min-energy", type=nonneg(), default=None, help="visible energy, MeV")
    isr.add_argument("--max-energy", type=nonneg(), default=None, help="visible energy, MeV")
    isr.add_argument("--exclude-self", action="store_true")
    isr.add_argument("--vlm", default=None, help="query model (default: the index's own)")
    isr.add_argument("--json", action="store_true")
    isr.set_defaults(func=cmd_index_search)


def add_index(sub) -> None:
    ix = sub.add_parser("index", help="the event index behind find_similar: build, search")
    ix_sub = ix.add_subparsers(dest="action", required=True)
    _add_index_build(ix_sub)
    _add_index_search(ix_sub)


# ============================================================================ the agent and the app
def _ask_event(ref: str):
    """What the agent is asked about: a ``sim:`` key (checked by rebuilding it) or the event of
    FILE / FILE:INDEX read through the bounded reader (the agent then uses that copy)."""
    if not ref.startswith("sim:"):
        return read_event(ref)
    from larsight.agent.toolset import UnknownEventError, resolve

    try:
        ev = resolve(ref)
    except UnknownEventError as err:
        raise BadInputError(str(err)) from None
    if len(ev) < 2:
        raise BadInputError(f"event {ref} has {len(ev)} point(s): nothing to ask about")
    return ref


def unanswered(answer) -> Optional[str]:
    """Why an ``Answer`` is not an answer about the event (None when it is one). An answer
    cut short by the step limit still answers from what was measured."""
    stop = answer.stop_reason
    if stop and not stop.startswith("step limit"):
        return f"the agent stopped ({stop}): {' '.join(answer.text.split())[:200]}"
    return None


def cmd_ask(args) -> int:
    if not args.question.strip():
        raise NoAnswerError("the question is empty: ask something about the event")
    event = _ask_event(args.event)
    if args.db is not None:
        output_file(args.db, what="--db")
    if args.run_dir is not None:
        output_dir(args.run_dir, "--run-dir")
    _existing(args.vlm, "--vlm")
    kw = {}
    if args.brain == "vlm" and args.vlm:
        kw["vlm"] = args.vlm
    if args.brain == "openai":
        kw.update(base_url=args.base_url, model_name=args.model)

    from larsight.agent import Agent

    bot = Agent(args.brain, db=args.db, run_dir=args.run_dir, index=args.index, **kw)
    answer = None
    for item in bot.stream(event, args.question, thread_id=args.thread):
        if hasattr(item, "node"):
            if args.steps and not args.json:
                print(item, file=sys.stderr)
        else:
            answer = item
    print(answer.model_dump_json(indent=2) if args.json else answer)
    why = unanswered(answer)
    if why:
        raise NoAnswerError(why)
    return 0


def add_ask(sub) -> None:
    ak = sub.add_parser("ask", help="ask the agent a question about an event; every claim of the "
                        "answer is checked against the tools' measurements")
    ak.add_argument("event", help="FILE or FILE:INDEX (.h5 or .root; FILE alone: event 0)")
    ak.add_argument("question")
    ak.add_argument("--brain", choices=BRAINS, default=None,
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


def cmd_ui(args) -> int:
    if args.db is not None:
        output_file(args.db, what="--db")
    if args.run_dir is not None:
        output_dir(args.run_dir, "--run-dir")

    from larsight.ui.app import build_app, launch, warm_up

    demo = build_app(args.brain, index=args.index, db=args.db, run_dir=args.run_dir,
                     max_upload_mb=args.max_upload_mb, concurrency=args.concurrency,
                     upload_store_mb=args.upload_store_mb)
    if not args.no_warm_up:
        warm_up(demo.larsight_agent)
    print(f"larsight ui: http://{args.host}:{args.port}/ (brain {args.brain}; Ctrl+C stops it)")
    try:
        launch(demo, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)
    except OSError as err:   # the address is taken or cannot be bound
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {err}") from None
    return 0


def add_ui(sub) -> None:
    u = sub.add_parser("ui", help="the Gradio chat with an event display (offline, shipped weights)")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    u.add_argument("--port", type=port(), default=7860)
    u.add_argument("--brain", choices=BRAINS, default="vlm",
                   help="reasoning back-end (vlm: the shipped VLM, loads in the background)")
    u.add_argument("--index", default=None, help="event index for similar events (default: "
                   "$LARSIGHT_INDEX or ~/.local/share/larsight/index)")
    u.add_argument("--db", default=None, help="SQLite file of conversations "
                   "(default: $LARSIGHT_AGENT_DB or ~/.cache/larsight/agent_threads.sqlite)")
    u.add_argument("--run-dir", default=None, help="uploads and tool outputs (default: runs/ui)")
    u.add_argument("--max-upload-mb", type=positive(), default=200, help="largest event file accepted")
    u.add_argument("--upload-store-mb", type=positive(), default=None,
                   help="disk the kept uploads may take; the oldest are deleted first "
                        "(default: 5 x --max-upload-mb)")
    u.add_argument("--concurrency", type=count(), default=4, help="questions answered at once")
    u.add_argument("--no-warm-up", action="store_true", help="load the models on the first question")
    u.set_defaults(func=cmd_ui)


# ============================================================================ mcp
def cmd_mcp(args) -> int:
    try:
        from larsight.ui.mcp_server import serve
    except ImportError as e:
        raise UsageError(f"larsight mcp needs the MCP SDK: pip install 'larsight[mcp]' ({e})") from None
    return serve(args.data, http=args.http, index=args.index, warm=not args.no_warm_up)


def add_mcp(sub) -> None:
    m = sub.add_parser("mcp", help="serve the analysis tools to MCP clients (assistants, agents): "
                       "stdio, or streamable HTTP on 127.0.0.1 with --http")
    m.add_argument("--data", nargs="+", required=True, help="folders of event files the tools may read "
                   "(nothing outside them is opened)")
    m.add_argument("--http", type=port(), default=None, metavar="PORT",
                   help="serve streamable HTTP on http://127.0.0.1:PORT/mcp instead of stdio")
    m.add_argument("--index", default=None, help="event index for find_similar (default: $LARSIGHT_INDEX)")
    m.add_argument("--no-warm-up", action="store_true", help="load the models on the first call")
    m.set_defaults(func=cmd_mcp)


def add_promote(sub) -> None:
    from larsight.evals import promote

    text = ("copy a trained VLM folder into checkpoints/ after two agent-eval runs show it is no worse "
            "(refused otherwise; --dry-run only compares)")
    m = sub.add_parser("promote", help=text, description=text)
    promote.add_arguments(m)
    m.set_defaults(func=lambda args: promote.run(args))


# ============================================================================ eval
_EVAL_VERBS = (
    ("agent", "larsight.evals.agent_eval.cli", "run the agent evaluation suites (evals/suites) with "
     "one or more brains (resumable, k trials per case) and write evals/reports/agent.md"),
    ("all", "larsight.evals.dashboard", "regenerate every report in evals/reports and its index page README.md"),
    ("compare", "larsight.evals.compare", "what changed between two agent runs or two report JSONs"),
)


def _eval_verb(module: str):
    def run(args) -> int:
        return importlib.import_module(module).run(args)
    return run


def add_eval(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate a trained component")
    ev_sub = ev.add_subparsers(dest="target", required=True)
    add_eval_encoder(ev_sub)
    for name, module, text in _EVAL_VERBS:
        ep = ev_sub.add_parser(name, help=text, description=text)
        importlib.import_module(module).add_arguments(ep)
        ep.set_defaults(func=_eval_verb(module))


# ============================================================================ assembly
VERBS = (add_simulate, add_convert, add_inspect, add_demo, add_shards, add_pretrain, add_finetune, add_align,
         add_classify, add_index, add_ask, add_ui, add_eval, add_promote, add_mcp, add_feedback)
"""Where verbs are registered: each adds its parser to the subparsers it is given."""


def _parsers(parser: argparse.ArgumentParser):
    """A parser and every sub-parser under it (each once)."""
    yield parser
    for act in parser._actions:
        if isinstance(act, argparse._SubParsersAction):
            for sub in dict.fromkeys(act.choices.values()):
                yield from _parsers(sub)


def _harden(parser: argparse.ArgumentParser) -> None:
    """Options added with a plain ``int`` / ``float`` type (the eval verbs' parsers live in
    evals/) get a bounded one: no larsight option takes a negative, NaN or infinite value."""
    for p in _parsers(parser):
        for act in p._actions:
            if act.type is int:
                act.type = Bounded(int, 0)
            elif act.type is float:
                act.type = nonneg()


def build_parser() -> CliParser:
    p = CliParser(prog="larsight", description=__doc__.split("\n")[0], epilog=EXIT_CODES_HELP,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for add in VERBS:
        add(sub)
    _harden(p)
    return p


# ============================================================================ main
def exit_code(err: BaseException) -> int:
    """The exit code a failure ends in (see ``larsight --help``)."""
    if isinstance(err, CliError):
        return err.code
    if isinstance(err, (EventError, ToolInputError, OSError)):   # a file given to read
        return EXIT_BAD_INPUT
    if isinstance(err, ValueError):     # a value only the layer could check (CheckpointError, ...)
        return EXIT_USAGE
    return EXIT_INTERNAL


def _message(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if exit_code(err) == EXIT_INTERNAL:
        text = f"{type(err).__name__}: {text}"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " …"


def _verb(args) -> str:
    return " ".join(x for x in (args.command, getattr(args, "action", None),
                                getattr(args, "target", None)) if x)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)   # bad arguments: one line, exit 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"larsight {_verb(args)}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - every failure ends in one line and its exit code
        code = exit_code(err)
        hint = " (a bug: LARSIGHT_DEBUG=1 shows the traceback)" if code == EXIT_INTERNAL else ""
        print(f"larsight {_verb(args)}: error: {_message(err)}{hint}", file=sys.stderr)
        if code == EXIT_INTERNAL and os.environ.get("LARSIGHT_DEBUG"):
            traceback.print_exc()
        return code


if __name__ == "__main__":
    sys.exit(main())
