"""The `larsight` command line. Each verb is a thin wrapper over a function of its layer."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _volume(voxel_size_cm: float | None):
    """The PILArNet-M volume, optionally on a coarser or finer grid of the same extent."""
    from events import PILARNET_VOLUME, Volume

    if voxel_size_cm is None:
        return PILARNET_VOLUME
    extent = PILARNET_VOLUME.size_cm[0]
    n = int(round(extent / voxel_size_cm))
    if n < 1 or abs(n * voxel_size_cm - extent) > 1e-6 * extent:
        raise SystemExit(f"--voxel-size {voxel_size_cm} cm does not divide the {extent:.1f} cm volume")
    return Volume(voxel_size_cm=voxel_size_cm, shape=(n, n, n))


def cmd_simulate(args) -> int:
    from events.sim import simulate_file

    n = simulate_file(args.out, mode=args.mode, n=args.n, seed=args.seed,
                      volume=_volume(args.voxel_size), workers=args.workers, progress=True)
    print(f"wrote {n} {args.mode} events to {args.out}")
    return 0


def cmd_convert(args) -> int:
    from events.formats import convert

    n = convert(args.input, args.output, progress=True)
    print(f"converted {n} events: {args.input} -> {args.output}")
    return 0


def cmd_inspect(args) -> int:
    from events.inspect import inspect

    report = inspect(args.path, out_dir=args.plots, max_events=args.max_events)
    print(report)
    return 0


def cmd_demo(args) -> int:
    from ui.demo import run_demo

    run_demo(Path(args.out), n=args.n, seed=args.seed)
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
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from events import EventError

    try:
        return args.func(args)
    except (EventError, FileNotFoundError, FileExistsError) as err:
        print(f"larsight {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
