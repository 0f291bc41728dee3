"""Retrieval benchmark: query latency at 100k indexed events, index build rate (local and Ray
Data) and retrieval quality (precision@10 for same event class and same topology,
event-to-event and text-to-event).

    python -m larsight.evals.retrieval_bench --n 100000 --real 300 --vlm runs/align1/vlm
    python -m larsight.evals.retrieval_bench --quick            # smoke test, writes under the temp dir
    python -m larsight.evals.retrieval_bench --ray-only         # redo the Ray build rate only

Writes ``<out>/retrieval_bench.json`` and ``<out>/retrieval_bench.md`` (default
``evals/reports``; atomic writes).

What is measured
----------------
* Quality (``retrieval_quality``, reusable: the tools report calls it): ``--real`` held-out
  simulated neutrino events (the eval split of ``--seed``: ``encoder.data`` never trains on
  it) are embedded with the VLM (``EventEmbedder``). Event-to-event: every event queries the
  others (itself excluded); precision@k = share of its k nearest (cosine, exact) with the same
  truth class / the same truth topology string, averaged over queries. Text-to-event: fixed
  phrasings per class (``CLASS_QUERIES``) and per frequent topology (``topology_queries``)
  query the events; precision@k = share of the k nearest with that class / topology. Chance
  levels (a random ranking) are given beside each number, and the encoder's own pooled
  embedding as an event-to-event baseline. Search is exact here (numpy over the same unit
  vectors the index stores), so quality numbers do not depend on the ANN index.
* Build rate: ``build_index`` from a ``sim:`` spec, so both include simulating the events:
  locally in this process (the ``--real`` held-out events, which the quality numbers then
  use) and on Ray Data (``--build-n`` other events, a local Ray instance with ``--ray-actors``
  actors, measured last; ``--ray-only`` measures it again into an existing report). Wall
  clock events per second (and CPU seconds for the local build).
* Latency at ``--n`` rows: the ``--real`` rows plus synthetic rows up to ``--n`` (each a real
  row's metadata with its energy and size jittered, and its vector perturbed: unit vector of
  ``v + N(0, s^2 I)`` with s chosen so the cosine to the parent is ~0.8, so that the index
  sees clustered, realistic-looking data rather than uniform noise). The HNSW vector index
  (IVF_HNSW_SQ, ``tools.retrieval.ANN_MIN_ROWS``) is built at commit. Queries: the real
  events' vectors, through ``EventIndex.search`` (ANN with exact re-ranking, and exact with
  ``bypass_vector_index``), with and without a metadata filter, and end to end through
  ``find_similar`` by event key. Wall-clock and process CPU milliseconds per query (p50 / p95)
  and the ANN's recall@k against the exact search.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa
import torch

from larsight.events.formats.atomic import atomic_open
from larsight.tools.index_build import append_rows, build_index
from larsight.tools.retrieval import ENCODER_VECTOR, VECTOR, EventEmbedder, EventIndex, find_similar

from .retrieval_quality import CLASS_QUERIES, precision_at_k, retrieval_quality, topk_indices, topology_queries

__all__ = ["run", "main", "markdown", "write_report", "synthetic_rows", "bench_latency", "bench_ray_build",
           "retrieval_quality", "precision_at_k", "topk_indices", "topology_queries", "CLASS_QUERIES"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "evals" / "reports"

# ============================================================================ timing
class _Timer:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_ms = (time.perf_counter() - self.w) * 1e3
        self.cpu_ms = (time.process_time() - self.c) * 1e3
        return False


def _stats(wall: list[float], cpu: list[float]) -> dict[str, float]:
    w, c = np.asarray(wall), np.asarray(cpu)
    return {"n": int(len(w)), "wall_ms_p50": round(float(np.median(w)), 2),
            "wall_ms_p95": round(float(np.percentile(w, 95)), 2),
            "cpu_ms_p50": round(float(np.median(c)), 2),
            "cpu_ms_p95": round(float(np.percentile(c, 95)), 2)}


def _load_avg() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def synthetic_rows(real, n: int, rng: np.random.Generator, cos: float = 0.8, start: int = 0):
    """``n`` synthetic index rows derived from the real rows (pyarrow table): metadata of a
    random real row (energy and size jittered by +-20 %), vector = unit(v + noise) at cosine
    ~``cos`` to the parent's, keys ``synthetic:<start + i>``."""
    parent = rng.integers(0, real.num_rows, n)
    tbl = real.take(pa.array(parent))
    V = np.stack(tbl.column(VECTOR).to_numpy(zero_copy_only=False)).astype(np.float32)
    d = V.shape[1]
    sigma = np.sqrt((1.0 / cos ** 2 - 1.0) / d)
    V = V + rng.normal(0.0, sigma, V.shape).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    jit = rng.uniform(0.8, 1.2, n)
    cols = {name: tbl.column(name) for name in tbl.schema.names}
    cols["id"] = pa.array(np.zeros(n, dtype=np.int64))
    cols["key"] = pa.array([f"synthetic:{start + i}" for i in range(n)])
    cols["source"] = pa.array(["synthetic"] * n)
    cols["event_index"] = pa.array(np.arange(start, start + n, dtype=np.int64))
    cols["class_source"] = pa.array(["synthetic"] * n)
    cols["visible_energy_mev"] = pa.array(
        (tbl.column("visible_energy_mev").to_numpy(zero_copy_only=False) * jit).astype(np.float32))
    cols["n_points"] = pa.array(np.maximum(
        1, tbl.column("n_points").to_numpy(zero_copy_only=False) * jit).astype(np.int32))
    cols[VECTOR] = pa.FixedSizeListArray.from_arrays(pa.array(V.ravel()), d)
    if ENCODER_VECTOR in cols:
        cols[ENCODER_VECTOR] = pa.nulls(n, tbl.schema.field(ENCODER_VECTOR).type)
    return pa.Table.from_pydict(cols, schema=tbl.schema)


def bench_latency(index_path: Path, query_vectors: np.ndarray, query_keys: Sequence[str],
                  k: int = 10, filt: str = "event_class = 'nue_cc' AND visible_energy_mev > 500",
                  repeats: int = 1) -> dict[str, Any]:
    """Per-query wall / CPU ms of the index search (ANN and exact, with and without ``filt``)
    and of ``find_similar`` by key, and the ANN's recall@k against exact search."""
    idx = EventIndex.open(index_path)
    res: dict[str, Any] = {"n_rows": idx.n_events, "vector_index": idx.manifest.get("vector_index"),
                           "k": k, "filter": filt, "n_queries": int(len(query_vectors))}
    for v in query_vectors[:3]:  # warm-up: open files, load the vector index into memory
        idx.search(v, k)
        idx.search(v, k, exact=True)
    recalls = []
    for name, kw in (("ann", {}), ("exact", {"exact": True}), ("ann_filtered", {"where": filt}),
                     ("exact_filtered", {"where": filt, "exact": True})):
        wall, cpu = [], []
        for _ in range(repeats):
            for i, v in enumerate(query_vectors):
                with _Timer() as t:
                    rows = idx.search(v, k, **kw)
                wall.append(t.wall_ms)
                cpu.append(t.cpu_ms)
                if name == "ann":
                    exact = idx.search(v, k, exact=True)
                    a, b = {r["id"] for r in rows}, {r["id"] for r in exact}
                    recalls.append(len(a & b) / max(len(b), 1))
        res[name] = _stats(wall, cpu)
    res["ann_recall_at_k"] = round(float(np.mean(recalls)), 4)
    wall, cpu = [], []
    for key in query_keys:
        with _Timer() as t:
            find_similar(key, k=k, index=index_path)
        wall.append(t.wall_ms)
        cpu.append(t.cpu_ms)
    res["find_similar_by_key"] = _stats(wall, cpu)
    return res


# ============================================================================ main
def _default_vlm() -> Path:
    """The shipped VLM, else the stage-1 run folder (for a preliminary number)."""
    for cand in (REPO / "checkpoints" / "vlm_smollm2", REPO / "runs" / "align1" / "vlm"):
        if (cand / "vlm.json").exists():
            return cand
    return REPO / "checkpoints" / "vlm_smollm2"


def bench_ray_build(spec: str, vlm: str, work: Path, *, actors: int = 2, threads: int = 1,
                    batch_size: int = 8, num_cpus: Optional[int] = None,
                    progress: bool = False) -> dict[str, Any]:
    """Build rate of ``build_index(spec, ray=True)`` on a local Ray instance started here
    (its start-up time is reported apart). A failed start is reported, not raised."""
    try:
        import ray  # an optional extra (larsight[ray]): the bench reports its absence
    except ImportError as err:
        return {"skipped": f"ray not installed ({err}); pip install 'larsight[ray]'"}

    with _Timer() as t0:
        try:
            ray.init(num_cpus=num_cpus or max(1, actors * threads), include_dashboard=False,
                     log_to_driver=False)
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception on time-outs
            with contextlib.suppress(Exception):
                ray.shutdown()
            return {"skipped": f"Ray did not start: {type(err).__name__}: {err}"}
    try:
        with _Timer() as t:
            r = build_index(spec, work / "build_ray", embedder=vlm, batch_size=batch_size,
                            progress=progress, ray=True, ray_actors=actors, ray_threads=threads)
    finally:
        ray.shutdown()
    return {"spec": spec, "n": r.n_added, "actors": actors,
            "ray_init_s": round(t0.wall_ms / 1e3, 1), "wall_s": round(t.wall_ms / 1e3, 1),
            "events_per_s_wall": round(r.n_added / (t.wall_ms / 1e3), 3),
            "events_per_s_wall_per_actor": round(r.n_added / (t.wall_ms / 1e3) / actors, 3),
            "first_rows_s": r.first_rows_s, "steady_events_per_s_wall": r.steady_events_per_s,
            "what": f"simulation + embedding in {actors} Ray Data actor(s), writes in the "
                    f"driver (actor start-up included, Ray start-up not)"}


def run(args) -> dict[str, Any]:
    """Every measurement the options ask for, as the report's JSON-ready dict."""
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="larsight-retrieval-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": "python -m larsight.evals.retrieval_bench " + " ".join(shlex.quote(a) for a in args.argv),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "load_avg_start": _load_avg()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("argv",)},
    }
    emb = EventEmbedder.load(args.vlm, device="cpu")
    report["model"] = emb.model_info()
    print(f"model: {emb}", flush=True)

    real_dir, spec = bench_local_build(args, emb, work, report)
    real = EventIndex.open(real_dir).to_arrow().sort_by("id")
    enc = {"vector": np.stack(real.column(VECTOR).to_numpy(zero_copy_only=False)),
           "encoder_vector": np.stack(real.column(ENCODER_VECTOR).to_numpy(zero_copy_only=False)),
           "event_class": real.column("event_class").to_pylist(),
           "topology": real.column("topology").to_pylist()}
    if not args.no_quality:
        report["quality"] = retrieval_quality(emb, encoded=enc, k=args.k, text=not args.no_text)
        report["quality"]["events"] = spec
        print("quality:", json.dumps({k: report["quality"][k] for k in
                                      ("event_to_event", "text_to_event")})[:2000], flush=True)
    bench_at_scale(args, emb, work, real, enc, report)
    if not args.no_ray and args.build_n:
        report["build_ray_sim"] = bench_ray_build(
            f"sim:nu:seed={args.seed + 1000}:n={args.build_n}", args.vlm, work,
            actors=args.ray_actors, threads=args.threads, batch_size=args.batch_size,
            num_cpus=args.ray_cpus, progress=not args.no_progress)
        print(f"ray build: {report['build_ray_sim']}", flush=True)
    report["machine"]["load_avg_end"] = _load_avg()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        report["work_dir"] = str(work)
    return report




def bench_local_build(args, emb, work: Path, report: dict) -> tuple[Path, str]:
    """The eval split's events, simulated and embedded by a local index build (the local
    build-rate measurement); returns the index folder and its event spec."""
    spec = f"sim:nu:seed={args.seed}:split=eval:n={args.real}"
    real_dir = work / "real"
    with _Timer() as t:
        rep = build_index(spec, real_dir, embedder=emb, batch_size=args.batch_size,
                          progress=not args.no_progress, min_points=8, vector_index="none")
    report["build_local_sim"] = {
        "spec": spec, "n": rep.n_added, "wall_s": round(t.wall_ms / 1e3, 1),
        "cpu_s": round(t.cpu_ms / 1e3, 1),
        "events_per_s_wall": round(rep.n_added / (t.wall_ms / 1e3), 3),
        "events_per_cpu_s": round(rep.n_added / max(t.cpu_ms / 1e3, 1e-9), 3),
        "first_rows_s": rep.first_rows_s, "steady_events_per_s_wall": rep.steady_events_per_s,
        "what": "simulation + embedding + writes, one process"}
    print(f"local build: {rep}", flush=True)

    return real_dir, spec


def bench_at_scale(args, emb, work: Path, real, enc: dict, report: dict) -> None:
    """The held-out rows plus synthetic ones up to ``--n`` rows, then query latency there (by
    vector, by key and by text)."""
    big = work / "big"
    shutil.rmtree(big, ignore_errors=True)
    rng = np.random.default_rng(args.seed)
    n_syn = max(0, args.n - real.num_rows)
    with _Timer() as t:
        append_rows(big, real, report["model"], create=True, vector_index="none")
        chunk = 20_000
        for s in range(0, n_syn, chunk):
            m = min(chunk, n_syn - s)
            rows = synthetic_rows(real, m, rng, start=s)
            last = s + m >= n_syn
            append_rows(big, rows, report["model"], vector_index=args.vector_index if last else "none")
    idx = EventIndex.open(big)
    report["fill"] = {"n_rows": idx.n_events, "n_real": real.num_rows, "n_synthetic": n_syn,
                      "vector_index": idx.manifest.get("vector_index"),
                      "wall_s": round(t.wall_ms / 1e3, 1), "cpu_s": round(t.cpu_ms / 1e3, 1)}
    print(f"filled {idx}", flush=True)
    nq = min(args.queries, real.num_rows)
    qv = enc["vector"][:nq]
    qkeys = real.column("key").to_pylist()[:nq]
    report["latency"] = bench_latency(big, qv, qkeys, k=args.k)
    if not args.no_text:
        texts = [q for qs in CLASS_QUERIES.values() for q in qs]
        find_similar(texts[0], k=args.k, index=big, embedder=emb)  # loads the LM once
        wall, cpu = [], []
        for q in texts:
            with _Timer() as t:
                find_similar(q, k=args.k, index=big, embedder=emb)
            wall.append(t.wall_ms)
            cpu.append(t.cpu_ms)
        report["latency"]["find_similar_by_text"] = _stats(wall, cpu)


def _fmt(x, nd=3):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def markdown(rep: dict[str, Any]) -> str:
    L = ["# Retrieval benchmark (find_similar, LanceDB event index)", "",
         f"Command: `{rep['command']}`", "",
         f"Model: VLM `{rep['model'].get('vlm_dir')}` ({rep['model'].get('vlm_kind')}, step "
         f"{rep['model'].get('vlm_step')}), fingerprint `{rep['model'].get('fingerprint')}`, "
         f"{rep['model'].get('embed_dim')}-d aligned vectors, language model "
         f"`{rep['model'].get('lm')}` ({rep['model'].get('quantization')}).", "",
         f"Machine: {rep['machine']['platform']}, {rep['machine']['cpus']} CPUs, "
         f"{rep['machine']['torch_threads']} torch thread(s); load average at start "
         f"{rep['machine'].get('load_avg_start')}, at end {rep['machine'].get('load_avg_end')}.", ""]
    L += ["How to read: wall-clock numbers depend on what else the machine runs (its load "
          "average is given above); CPU ms / CPU s are the CPU time of the benchmark process "
          "(LanceDB's threads included), i.e. what the work costs on an otherwise idle core. "
          "Ray actors' CPU time is not counted. Quality numbers use exact cosine search over "
          "the stored vectors, so they do not depend on the ANN index.", ""]
    if rep.get("notes"):
        L += [rep["notes"], ""]
    q = rep.get("quality")
    if q:
        k = q["k"]
        e2e = q["event_to_event"]
        L += [f"## Retrieval quality (precision@{k}, {q['n_events']} held-out events)", "",
              f"Held-out simulated neutrino events (eval split), classes {q['class_counts']}, "
              f"{q['n_topologies']} distinct topologies. Exact cosine search.", "",
              f"| query | space | same class | same topology |", "|---|---|---|---|"]
        for name in ("aligned", "encoder"):
            if name in e2e:
                L.append(f"| event -> event | {name} | {e2e[name]['class_precision']:.3f} | "
                         f"{e2e[name]['topology_precision']:.3f} |")
        L.append(f"| event -> event | chance | {e2e['chance']['class_precision']:.3f} | "
                 f"{e2e['chance']['topology_precision']:.3f} |")
        t2e = q.get("text_to_event", {})
        if "class" in t2e:
            tp = t2e.get("topology", {})
            L.append(f"| text -> event | aligned | {t2e['class']['precision']:.3f} | "
                     f"{_fmt(tp.get('precision'))} |")
            L.append(f"| text -> event | chance | {t2e['class']['chance']:.3f} | "
                     f"{_fmt(tp.get('chance'))} |")
            L += ["", "Text-to-event by class: " + ", ".join(
                f"{c} {p:.2f}" for c, p in t2e["class"]["by_class"].items())]
            if tp:
                L += ["Text-to-event by topology: " + ", ".join(
                    f"`{t}` {p:.2f}" for t, p in tp["by_topology"].items())]
        L += ["", "Event-to-event (aligned) by class: " + ", ".join(
            f"{c} {p:.2f}" for c, p in e2e.get("aligned", {}).get("class_precision_by_class", {}).items()),
              ""]
    L += ["## Index build rate", "",
          "| build | events | wall s | events/s (wall) | first rows after s | events/s after "
          "the first rows | CPU s (this process) | what |", "|---|---|---|---|---|---|---|---|"]
    for name in ("build_local_sim", "build_ray_sim"):
        b = rep.get(name)
        if not b or "skipped" in b:
            if b:
                L.append(f"| {name} | skipped: {b['skipped']} | | | | | | |")
            continue
        L.append(f"| {name} | {b['n']} | {b['wall_s']} | {b['events_per_s_wall']} | "
                 f"{_fmt(b.get('first_rows_s'))} | {_fmt(b.get('steady_events_per_s_wall'))} | "
                 f"{b.get('cpu_s', '-')} | {b['what']} |")
    lat = rep.get("latency")
    if lat:
        f = rep["fill"]
        L += ["", f"## Query latency at {lat['n_rows']} indexed events", "",
              f"{f['n_real']} real rows + {f['n_synthetic']} synthetic rows (perturbed copies of "
              f"the real vectors with jittered metadata, see the module docstring); vector index "
              f"{f['vector_index']} (fill + index build {f['wall_s']} s wall, {f['cpu_s']} s CPU). "
              f"k = {lat['k']}; filter `{lat['filter']}`. ANN recall@{lat['k']} against exact: "
              f"{lat['ann_recall_at_k']:.3f}.", "",
              "| query | n | wall ms p50 | wall ms p95 | CPU ms p50 | CPU ms p95 |",
              "|---|---|---|---|---|---|"]
        for name in ("ann", "ann_filtered", "exact", "exact_filtered", "find_similar_by_key",
                     "find_similar_by_text"):
            s = lat.get(name)
            if s:
                L.append(f"| {name} | {s['n']} | {s['wall_ms_p50']} | {s['wall_ms_p95']} | "
                         f"{s['cpu_ms_p50']} | {s['cpu_ms_p95']} |")
    return "\n".join(L) + "\n"


def write_report(rep: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "retrieval_bench.json", out / "retrieval_bench.md"
    with atomic_open(js, "w") as fh:
        fh.write(json.dumps(rep, indent=2, default=str) + "\n")
    with atomic_open(md, "w") as fh:
        fh.write(markdown(rep))
    return js, md


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m larsight.evals.retrieval_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=None, help="rows in the latency index (100000)")
    p.add_argument("--real", type=int, default=None,
                   help="held-out simulated events embedded (300)")
    p.add_argument("--build-n", type=int, default=None, help="events of the Ray build (64)")
    p.add_argument("--queries", type=int, default=None, help="latency queries (100)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="data seed (its eval split)")
    p.add_argument("--vlm", default=None, help="VLM folder (default: checkpoints/vlm_smollm2, "
                   "else runs/align1/vlm)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--vector-index", choices=["auto", "hnsw", "none"], default="auto")
    p.add_argument("--ray-actors", type=int, default=None,
                   help="embedding actors of the Ray build (2)")
    p.add_argument("--ray-cpus", type=int, default=None, help="ray.init(num_cpus=...)")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--ray-only", action="store_true",
                   help="only measure the Ray build again, updating the report in --out")
    p.add_argument("--no-text", action="store_true", help="skip text queries (no LM load)")
    p.add_argument("--no-quality", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch indexes")
    p.add_argument("--notes", default=None, help="a paragraph added to the report")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, temp output")
    p.add_argument("--out", default=None, help=f"report folder (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    args.argv = argv
    sizes = dict(n=2000, real=24, build_n=4, queries=10, ray_actors=1) if args.quick else \
        dict(n=100_000, real=300, build_n=64, queries=100, ray_actors=2)
    for name, value in sizes.items():  # explicit options win over the --quick sizes
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.vlm = str(args.vlm or _default_vlm())
    out = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / "larsight-retrieval-quick"
                                           if args.quick else DEFAULT_OUT)
    if args.ray_only:  # measure the Ray build again and update an existing report
        rep = json.loads((out / "retrieval_bench.json").read_text())
        work = Path(tempfile.mkdtemp(prefix="larsight-retrieval-bench-"))
        try:
            rep["build_ray_sim"] = bench_ray_build(
                f"sim:nu:seed={args.seed + 1000}:n={args.build_n}", args.vlm, work,
                actors=args.ray_actors, threads=args.threads, batch_size=args.batch_size,
                num_cpus=args.ray_cpus, progress=not args.no_progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rep["build_ray_sim"]["command"] = ("python -m larsight.evals.retrieval_bench "
                                           + " ".join(shlex.quote(a) for a in argv))
        rep["build_ray_sim"]["load_avg"] = _load_avg()
        print(f"ray build: {rep['build_ray_sim']}", flush=True)
        js, md = write_report(rep, out)
        print(f"wrote {js} and {md}")
        return 0
    rep = run(args)
    if args.notes:
        rep["notes"] = args.notes
    js, md = write_report(rep, out)
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
