"""``larsight demo``: the main job on simulated events.

Simulates ``n`` neutrino events, writes them to ``out/events.h5`` (PILArNet-M schema), writes an
interactive HTML event display (coloured by semantic class) and a PNG per event, and prints one
summary line per event. With ``ask`` (``larsight demo --ask``, what ``make demo`` runs) the agent
then answers a few questions about the first ``ask_events`` events with the default brain
(``agent.brains.default_brain_name``: the shipped VLM when its checkpoint exists): the class
with its reasons, the vertex, the particle content and, when an event index exists, the
similar events. Each answer is printed with its validation table (every claim checked against
the tools' measurements) beside the simulator truth, and all answers are written to
``out/agent_answers.md`` and ``out/agent_answers.jsonl``.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from larsight.events.display import plot_event, render_png, save_html
from larsight.events.formats import write
from larsight.events.formats.atomic import atomic_open
from larsight.events.model import Event
from larsight.events.sim import simulate
from larsight.events.vocabulary import NoTruthError, event_facts
from larsight.tools.index_store import default_index_path

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


DEMO_QUESTIONS = (
    "Classify this event and explain why.",
    "Where is the vertex?",
    "List the particles with their energies.",
)
SIMILAR_QUESTION = "Find 5 events like this one and tell me what they share."


def run_demo(out: Path, n: int = 4, seed: int = 2026, mode: str = "nu", html: bool = True,
             png: bool = True, stream=None, ask: bool = False, ask_events: int = 2,
             brain: Optional[str] = None, questions: Optional[list[str]] = None) -> list[dict]:
    """Simulate ``n`` events, write ``out/events.h5``, ``out/event_<i>.html`` / ``.png`` and print
    a summary table (to ``stream``, default stdout). With ``ask``, the agent answers
    ``questions`` (default ``DEMO_QUESTIONS``, plus ``SIMILAR_QUESTION`` when an event index
    exists) about the first ``ask_events`` events with ``brain`` (default: the default brain).
    Returns the table rows."""
    stream = stream or sys.stdout
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evs = list(tqdm(simulate(mode, n, seed=seed), total=n, desc=f"simulate {mode}", unit="ev"))

    h5 = out / "events.h5"
    write(h5, evs)

    rows = []
    for i, ev in enumerate(tqdm(evs, desc="displays", unit="ev")):
        if html:
            save_html(plot_event(ev, color_by="semantic", height=700), out / f"event_{i}.html")
        if png:
            render_png(ev, out / f"event_{i}.png", color_by="semantic")
        rows.append(summary_row(i, ev))
    print(format_table(rows), file=stream)
    files = ["events.h5"] + (["event_<i>.html"] if html else []) + (["event_<i>.png"] if png else [])
    print(f"wrote {len(evs)} events and their displays to {out.resolve()}/: {', '.join(files)}"
          + (" (open the .html files in a browser)" if html else ""), file=stream)
    if ask:
        ask_agent(evs[:max(0, ask_events)], out, brain=brain, questions=questions, stream=stream,
                  h5=h5)
    return rows


def _index_exists() -> bool:
    return (default_index_path() / "index.json").exists()


def truth_line(event: Event) -> str:
    """The simulator truth a reader compares the answers with."""
    inter = next((x for x in event.interactions if x.event_class), None)
    bits = [f"class {event.event_class or '-'}"]
    if inter is not None:
        v = inter.vertex_cm
        bits.append(f"vertex ({v[0]:.1f}, {v[1]:.1f}, {v[2]:.1f}) cm")
    try:
        main = event_facts(event).main
    except NoTruthError:   # an event without truth tables: no topology to show
        main = None
    if main is not None:
        bits.append(f"visible topology {main.topology}")
    return "truth: " + ", ".join(bits)


def ask_agent(evs: list[Event], out: Path, brain: Optional[str] = None, questions: Optional[list[str]] = None,
              stream=None, h5: Optional[Path] = None) -> list:
    """Ask the agent the demo questions about ``evs``; print every answer with its validation
    table; write ``out/agent_answers.md`` / ``.jsonl``. Returns the answers."""
    # the agent (LangGraph and the models: seconds to import) only when asked for
    from larsight.agent import Agent
    from larsight.agent.brains import default_brain_name

    stream = stream or sys.stdout
    qs = list(questions or DEMO_QUESTIONS)
    if questions is None and _index_exists():
        qs.append(SIMILAR_QUESTION)
    name = brain or default_brain_name()
    print(f"\n== agent ({name} brain): {len(qs)} questions about {len(evs)} events ==", file=stream)
    bot = Agent(name, run_dir=Path(out) / "agent_run")
    answers, md = [], [f"# Agent answers ({name} brain)\n"]
    for i, ev in enumerate(evs):
        ref = f"{h5}:{i}" if h5 is not None and Path(h5).exists() else ev
        head = f"event {i}: {truth_line(ev)}"
        print(f"\n-- {head}", file=stream)
        md.append(f"## {head}\n")
        for q in qs:
            a = bot.ask(ref, q)
            answers.append(a)
            print(str(a), file=stream)
            print(file=stream)
            md += [f"**Q:** {q}\n", f"**A:** {a.text}\n",
                   f"_tools: {', '.join(a.trajectory) or 'none'}; {a.latency_s:.2f} s; "
                   f"{a.n_supported} supported, {a.n_contradicted} contradicted, {a.n_unverifiable} unverifiable"
                   + (f"; revised {a.revisions} time(s), first draft: {a.drafts[0]}" if a.revisions and a.drafts else "")
                   + "_\n",
                   "```\n" + a.table() + "\n```\n"]
    n_claims = sum(len(a.claims) for a in answers)
    summary = (f"{len(answers)} answers, {n_claims} claims: {sum(a.n_supported for a in answers)} supported, "
               f"{sum(a.n_contradicted for a in answers)} contradicted, "
               f"{sum(a.n_unverifiable for a in answers)} unverifiable; "
               f"median latency {sorted(a.latency_s for a in answers)[len(answers) // 2]:.2f} s" if answers else "no answers")
    print(summary, file=stream)
    md.append(f"\n{summary}\n")
    with atomic_open(Path(out) / "agent_answers.md", "w", encoding="utf-8") as fh:
        fh.write("\n".join(md))
    with atomic_open(Path(out) / "agent_answers.jsonl", "w", encoding="utf-8") as fh:
        for a in answers:
            fh.write(json.dumps(a.model_dump(mode="json", exclude={"steps"}) | {"trajectory": a.trajectory}) + "\n")
    print(f"wrote the answers to {(Path(out) / 'agent_answers.md').resolve()}", file=stream)
    return answers
