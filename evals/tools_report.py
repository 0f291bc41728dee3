"""Reconstruction quality of the analysis tools against the simulator truth (issue 5).

    python -m larsight.evals.tools_report                 # 1,000 held-out events, about 5 min on one core
    python -m larsight.evals.tools_report --n 200 --seed 0
    python -m larsight.evals.tools_report --split finetune --out runs/tools_tune   # a tuning slice

writes ``evals/reports/tools.md``, ``tools.json`` and plots in ``evals/reports/tools/``.

Events: the first ``--n`` events of the ``eval`` split of ``DataSpec(modes="nu", seed=--seed)``
(``encoder.data``: simulator seed ``1000 * seed + 2``), which no training command reads. Every
event goes through ``tools.reconstruct`` and ``tools.find_vertex`` (the shipped encoder), exactly
what the agent calls; nothing is cached between runs, so the numbers always reflect the code.

Truth: ``qformer.corpus.event_facts`` (the same facts the training corpus and the agent
evaluation use): the visible primary-level particles of the main interaction, their counts,
topology string and vertex.

Matching (``match``): a reconstructed particle is paired with the truth particle that owns most
of its points (per-point ``particle`` labels), greedily by the number of shared points, one to
one, when the shared points are at least ``MATCH_FRACTION`` (half) of the reconstructed
particle's points. Unpaired visible reconstructed particles are classified by what their points
are: a piece of an already paired truth particle ("split"), a truth particle below the
visibility thresholds ("invisible truth"), a secondary (Michel, delta ray, low-energy deposit,
another interaction: "secondary"), or nothing in majority ("mixed").

Modules: ``tools_records`` (matching, per-event records), ``tools_metrics`` (the numbers),
``tools_report_md`` (plots and markdown); this one runs the tools and writes the files.

Sections: PID accuracy and confusion (paired visible truth particles), track length and
kinetic-energy resolution for muons and protons (stopping, contained truth tracks), shower
energy resolution, e/gamma separation by the trunk dE/dx at the cut the tools use, Michel
tagging efficiency and purity, the vertex distance distribution, topology and per-particle
count accuracy, and the retrieval numbers of ``evals/reports/retrieval_bench.json``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from larsight.encoder.data import DataSpec, split_seed, take
from larsight.events.formats.atomic import atomic_open
from larsight.qformer.corpus import event_facts
from larsight.tools import engine, find_vertex, reconstruct
from larsight.tools.reconstruction import PHOTON_DEDX_MEV_CM

from .report_common import REPO
from .tools_metrics import RETRIEVAL_JSON, retrieval_section, summarise
from .tools_records import COUNT_KEYS, EventRecord, RecoView, compare
from .tools_report_md import _f, markdown, plots

OUT_DIR = REPO / "evals" / "reports"
DEFAULT_N = 1000


def events_path_for(out: Path) -> Path:
    """Where the per-event records go: beside a report written elsewhere, but under runs/ (not
    tracked) for the shipped report, whose 1000 records would add a megabyte to git per rerun."""
    return REPO / "runs" / "tools_report" / "events.jsonl" if Path(out).resolve() == OUT_DIR.resolve() \
        else Path(out) / "tools_events.jsonl"


def write(m: dict, records: Sequence[EventRecord], settings: dict, out: Path, retrieval: Optional[dict],
          make_plots: bool = True) -> dict:
    """Write ``tools.md``, ``tools.json`` (metrics), the per-event records (JSON lines, see
    ``events_path_for``) and the plots under ``out`` (atomically)."""
    def default(x):
        return x.tolist() if isinstance(x, np.ndarray) else str(x)

    out.mkdir(parents=True, exist_ok=True)
    figs = plots(records, m, out / "tools") if make_plots else []
    events_path = events_path_for(out)
    events_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(events_path, "w") as fh:
        for r in records:
            fh.write(json.dumps(asdict(r), default=default) + "\n")
    doc = {"settings": {**settings, "per_event_records": str(events_path)}, "metrics": m,
           "retrieval": retrieval}
    with atomic_open(out / "tools.json", "w") as fh:
        json.dump(doc, fh, indent=1, default=default)
    with atomic_open(out / "tools.md", "w") as fh:
        fh.write(markdown(m, settings, figs, retrieval))
    return doc


def run(n: int = DEFAULT_N, seed: int = 0, split: str = "eval", out: Path = OUT_DIR, progress: bool = True,
        model=None, make_plots: bool = True, notes: str = "", command: Optional[str] = None,
        retrieval_json: Path = RETRIEVAL_JSON) -> dict:
    spec = DataSpec(modes="nu", seed=seed)
    evs = take(spec, split, n)
    m_obj = engine.get_model(model)
    records = []
    for i, ev in enumerate(tqdm(evs, desc="tools report", unit="ev", disable=not progress, dynamic_ncols=True)):
        t0 = time.process_time()
        reco = reconstruct(ev, m_obj)
        vtx = find_vertex(ev, m_obj)
        dt = time.process_time() - t0
        rec = compare(i, ev, event_facts(ev), RecoView.from_tools(reco, vtx))
        rec.seconds = round(dt, 4)
        records.append(rec)
        engine.clear_cache()
    metrics = summarise(records, PHOTON_DEDX_MEV_CM)
    settings = {"command": command or "python -m larsight.evals.tools_report " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]), "n": n, "seed": seed, "split": split,
        "sim_seed": split_seed(seed, split), "voxel_cm": spec.voxel_size_cm, "model": engine.model_name(m_obj),
        "date": time.strftime("%Y-%m-%d %H:%M"), "notes": notes}
    retrieval = retrieval_section(retrieval_json)
    write(metrics, records, settings, Path(out), retrieval, make_plots=make_plots)
    return {"settings": settings, "metrics": metrics, "records": records}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=DEFAULT_N, help=f"events (default {DEFAULT_N})")
    ap.add_argument("--seed", type=int, default=0, help="DataSpec seed (default 0)")
    ap.add_argument("--split", default="eval", help="data split (default eval: held out; "
                                                      "use another, e.g. finetune, to tune)")
    ap.add_argument("--out", default=str(OUT_DIR), help="folder for tools.md / tools.json / tools/")
    ap.add_argument("--notes", default="", help="free text added to the report")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    cmd = "python -m larsight.evals.tools_report " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    res = run(n=a.n, seed=a.seed, split=a.split, out=Path(a.out), progress=not a.no_progress,
              make_plots=not a.no_plots, notes=a.notes, command=cmd.strip())
    m = res["metrics"]
    c = m["counts"]
    print(f"vertex within 3 cm {_f(m['vertex']['within_3cm'], pct=True)} (median {_f(m['vertex']['median_cm'], 2)} cm); "
          + ", ".join(f"{k} {_f(c['per_type'][k]['exact'], pct=True)}" for k in COUNT_KEYS)
          + f"; all five {_f(c['all_five_exact'], pct=True)}; topology {_f(c['topology_exact'], pct=True)}; "
          f"PID {_f(m['pid']['accuracy'], pct=True)}")
    print(f"wrote {Path(a.out) / 'tools.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
