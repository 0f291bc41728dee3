"""``larsight demo``: the main job on simulated events.

Until the agent exists this simulates ``n`` neutrino events, writes them to ``out/events.h5``
(PILArNet-M schema), writes an interactive HTML event display (coloured by semantic class) and
a PNG per event, and prints one summary line per event.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Optional

from events.model import Event

_SHORT = {13: "mu", 11: "e", 2212: "p", 211: "pi", 111: "pi0", 22: "gamma", 321: "K", 2112: "n"}
_INVISIBLE = {12, 14, 16, 2112}
_ORDER = ("mu", "e", "p", "pi", "pi0", "gamma", "K")


def particle_content(event: Event) -> str:
    """Primary final-state particles of the event's interactions, e.g. ``'1mu 2p 1pi0'``.

    Neutrinos and neutrons are left out (invisible); charged pions of either sign are ``pi``."""
    counts: Counter = Counter()
    for p in event.particles:
        if p.parent != -1 or abs(p.pdg) in _INVISIBLE or p.pdg == 0:
            continue
        counts[_SHORT.get(abs(p.pdg), f"pdg{p.pdg}")] += 1
    keys = [k for k in _ORDER if counts[k]] + sorted(k for k in counts if k not in _ORDER)
    return " ".join(f"{counts[k]}{k}" for k in keys) or "-"


def summary_row(i: int, event: Event) -> dict:
    inter = next((x for x in event.interactions if x.event_class), None) or \
        (event.interactions[0] if event.interactions else None)
    return {
        "event": i,
        "class": event.event_class or "-",
        "channel": (f"{inter.current} {inter.channel}" if inter and inter.current else
                    (inter.channel if inter and inter.channel else "-")),
        "E_nu [MeV]": f"{inter.nu_energy_mev:.0f}" if inter and inter.nu_energy_mev else "-",
        "points": str(len(event)),
        "E_vis [MeV]": f"{event.total_energy_mev:.1f}",
        "particles": particle_content(event),
    }


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no events)"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    head = "  ".join(k.ljust(widths[k]) for k in keys)
    rule = "  ".join("-" * widths[k] for k in keys)
    body = ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(line.rstrip() for line in [head, rule, *body])


def run_demo(out: Path, n: int = 4, seed: int = 2026, mode: str = "nu", html: bool = True,
             png: bool = True, stream=None) -> list[dict]:
    """Simulate ``n`` events, write ``out/events.h5``, ``out/event_<i>.html`` / ``.png`` and print
    a summary table (to ``stream``, default stdout). Returns the table rows."""
    from tqdm.auto import tqdm

    from events.display import plot_event, render_png, save_html
    from events.sim import simulate

    stream = stream or sys.stdout
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evs = list(tqdm(simulate(mode, n, seed=seed), total=n, desc=f"simulate {mode}", unit="ev"))

    h5: Optional[Path] = out / "events.h5"
    try:
        from events.formats import write
    except ImportError:
        write = None
    if write is not None:
        write(h5, evs)
    else:
        h5 = None
        print("note: events.formats.write is not available yet; events.h5 not written", file=stream)

    rows = []
    for i, ev in enumerate(tqdm(evs, desc="displays", unit="ev")):
        if html:
            save_html(plot_event(ev, color_by="semantic", height=700), out / f"event_{i}.html")
        if png:
            render_png(ev, out / f"event_{i}.png", color_by="semantic")
        rows.append(summary_row(i, ev))
    print(format_table(rows), file=stream)
    files = (["events.h5"] if h5 is not None else []) + (["event_<i>.html"] if html else []) \
        + (["event_<i>.png"] if png else [])
    print(f"wrote {len(evs)} events and their displays to {out.resolve()}/: {', '.join(files)}"
          + (" (open the .html files in a browser)" if html else ""), file=stream)
    return rows
