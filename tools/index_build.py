"""Building the event index (``tools.retrieval``): locally with a progress bar, or on Ray Data.

    from larsight.tools.index_build import build_index
    build_index(["data/*.h5", "more.root"], "indexes/pilarnet")          # files / globs
    build_index("sim:nu:seed=3:n=1000", "indexes/sim")                    # simulated events
    build_index("sim:nu:seed=0:split=eval:n=300", out)                    # a data split's events
    build_index(more_files, "indexes/pilarnet", append=True)              # add (skips known keys)
    build_index(files, out, ray=True, ray_actors=8)                       # Ray Data actor pool

Sources
-------
Event files (PILArNet-M ``.h5`` / ``.root``, globs allowed; ``file.h5:12`` for one event),
simulation specs ``sim:MODES[:seed=S][:n=N][:start=I][:voxel=CM][:split=SPLIT]`` (``MODES``
comma-separated and cycled event by event as in ``encoder.data``; ``split`` maps the seed
through ``encoder.data.split_seed`` so ``split=eval`` gives the held-out evaluation events;
``voxel`` defaults to 0.6 cm, the encoder's grid), ``EventRef`` objects, or (local builds
only) ``events.Event`` objects whose ``meta`` says where they come from. Events without
points cannot be embedded and are skipped (counted in the report).

Atomicity and appends: see ``tools.index_store``. A rebuild writes a new table and commits it by
replacing ``index.json``; an exception anywhere (a bad file, a crash in a batch, Ctrl-C)
drops the new table and leaves the previous index untouched.

Ray Data (``ray=True``, the optional extra ``pip install 'larsight[ray]'``): the list of event
references becomes a dataset (``ray.data.from_items``), ``map_batches`` runs ``RayEmbedBatch``
(a class: each actor of the pool loads the encoder + projector once, from the VLM folder) and
returns Arrow record batches with the index schema, which the driver streams into the same
atomic table writer. Ray is started locally when no cluster is running (``ray.init()``; set
``RAY_ADDRESS`` to use a cluster). Every actor checks that it loaded the same weights as the
driver (fingerprint), so a cluster node with a different checkpoint fails loudly.
"""
from __future__ import annotations

import html
import itertools
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from larsight.events.formats import count, read
from larsight.events.model import Event
from larsight.events.sim import MODES

from .embedder import EventEmbedder
from .event_keys import DEFAULT_SIM_VOXEL_CM, EventRef, parse_event_ref, parse_sim_fields
from .index_store import (
    ENCODER_VECTOR, MANIFEST_NAME, WRITE_ROWS, IndexModelMismatchError, IndexWrite,
    default_index_path, event_metadata, index_schema, read_manifest, rows_table,
)
from .inputs import parse_ref
from .results import html_table

__all__ = ["build_index", "append_rows", "IndexBuildReport", "expand_sources",
           "parse_sim_spec", "iter_events", "RayEmbedBatch", "embed_rows"]

SourceLike = Union[str, os.PathLike, EventRef, Event]


# ============================================================================ sources
def parse_sim_spec(spec: str) -> list[EventRef]:
    """``sim:MODES[:seed=S][:n=N][:start=I][:voxel=CM][:split=SPLIT]`` -> references."""
    if not spec.startswith("sim:"):
        raise ValueError(f"simulation spec {spec!r} must start with 'sim:'")
    modes_txt, f = parse_sim_fields(spec[4:], f"simulation spec {spec!r}")
    unknown = set(f) - {"seed", "n", "start", "voxel", "split", "index"}
    if unknown:
        raise ValueError(f"simulation spec {spec!r}: unknown field(s) {sorted(unknown)}; "
                         f"expected seed, n, start, voxel, split")
    modes = [m for m in modes_txt.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"simulation spec {spec!r}: mode(s) must be among {sorted(MODES)}")
    if "index" in f:  # a single event's key
        return [parse_event_ref(spec)]
    if "n" not in f:
        raise ValueError(f"simulation spec {spec!r}: say how many events (n=N)")
    try:
        seed, n, start = int(f.get("seed", 0)), int(f["n"]), int(f.get("start", 0))
        voxel = float(f.get("voxel", DEFAULT_SIM_VOXEL_CM))
    except ValueError:
        raise ValueError(f"simulation spec {spec!r}: seed, n and start must be integers, "
                         f"voxel a number") from None
    if n < 0 or start < 0 or seed < 0:
        raise ValueError(f"simulation spec {spec!r}: seed, n and start must be >= 0")
    # encoder.data imports torch (seconds): only a simulation spec needs it
    from larsight.encoder.data import split_seed, volume_for

    if "split" in f:
        seed = split_seed(seed, f["split"])
    volume_for(voxel)  # a voxel size that does not divide the volume fails here
    return [EventRef(f"sim:{modes[i % len(modes)]}", i, seed, voxel)
            for i in range(start, start + n)]


def expand_sources(sources: Union[SourceLike, Sequence[SourceLike]],
                   limit: Optional[int] = None) -> list[Union[EventRef, Event]]:
    """Event references (and in-memory events) of files, globs, ``file:index``, simulation specs."""
    from larsight.events.dataset import expand_paths   # events.dataset imports torch (seconds)

    if isinstance(sources, (str, os.PathLike, EventRef, Event)):
        sources = [sources]
    out: list[Union[EventRef, Event]] = []
    for src in sources:
        if limit is not None and len(out) >= limit:
            break
        if isinstance(src, (EventRef, Event)):
            out.append(src)
            continue
        s = str(src)
        if s.startswith("sim:"):
            out.extend(parse_sim_spec(s))
            continue
        path, index = parse_ref(s)
        if index is not None and path.exists():
            out.append(parse_event_ref(s))
            continue
        files = expand_paths([s])
        if not files:
            raise FileNotFoundError(f"no event files match {s!r}")
        for p in files:
            n = count(p)
            ap = str(Path(p).resolve())
            out.extend(EventRef(ap, i) for i in range(n))
            if limit is not None and len(out) >= limit:
                break
    return out[:limit] if limit is not None else out


def iter_events(refs: Sequence[Union[EventRef, Event]]) -> Iterator[tuple[Optional[EventRef], Event]]:
    """``(ref, event)`` in order; a file's run of consecutive indices from 0 is streamed
    (one open), other events are read by index or simulated one by one."""
    i = 0
    while i < len(refs):
        r = refs[i]
        if isinstance(r, Event):
            yield EventRef.of_event(r), r
            i += 1
            continue
        j = i + 1
        if not r.is_sim:
            while (j < len(refs) and isinstance(refs[j], EventRef)
                   and refs[j].source == r.source and refs[j].index == refs[j - 1].index + 1):
                j += 1
        if r.is_sim or j - i == 1 or r.index != 0:
            for ref in refs[i:j]:
                yield ref, ref.load()
        else:
            it = read(r.source)
            try:
                for ref, ev in zip(refs[i:j], it):
                    yield ref, ev
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        i = j


def embed_rows(embedder: EventEmbedder, items: Sequence[tuple[Optional[EventRef], Event]],
               schema, batch_size: int = 8, min_points: int = 1,
               store_encoder: bool = True):
    """Index rows (a pyarrow table without ``id``s filled) of ``(ref, event)`` pairs; events
    with fewer than ``min_points`` points are dropped. Returns (table, number dropped)."""
    keep = [(r, e) for r, e in items if len(e) >= max(1, min_points)]
    dropped = len(items) - len(keep)
    if not keep:
        return rows_table([], np.zeros((0, embedder.embed_dim)), None, schema), dropped
    enc = embedder.encode([e for _, e in keep], batch_size=batch_size)
    rows = []
    for b, (ref, ev) in enumerate(keep):
        probs = enc["class_probs"][b] if enc["class_probs"] is not None else None
        row = event_metadata(ev, probs)
        if ref is None:  # an in-memory event that does not say where it comes from
            ref = EventRef(f"memory:{id(ev):x}", b)
        row.update(id=0, key=ref.key, source=ref.source, event_index=ref.index, seed=ref.seed,
                   voxel_size_cm=float(ev.meta.volume.voxel_size_cm))
        if ref.is_sim:
            row["mode"] = ref.mode
        rows.append(row)
    return rows_table(rows, enc["vector"], enc["encoder_vector"] if store_encoder else None,
                      schema), dropped


# ============================================================================ Ray Data
class RayEmbedBatch:
    """``map_batches`` callable class: loads the embedder once per actor, turns a batch of
    event references (a pyarrow table of ``EventRef.to_dict`` rows) into index rows."""

    def __init__(self, vlm_dir: str, fingerprint: str, embed_dim: int, encoder_dim: int,
                 batch_size: int = 8, min_points: int = 1, store_encoder: bool = True,
                 threads: int = 1, device: Any = None):
        import torch   # seconds to import: only the Ray worker that builds this needs it

        torch.set_num_threads(max(1, int(threads)))
        self.embedder = EventEmbedder.load(vlm_dir, device=device)
        if self.embedder.fingerprint != fingerprint:
            raise IndexModelMismatchError(
                f"Ray worker loaded {vlm_dir} with fingerprint {self.embedder.fingerprint}, the "
                f"driver's is {fingerprint}: the VLM folder differs between machines or changed "
                f"during the build")
        self.schema = index_schema(embed_dim, encoder_dim if store_encoder else None)
        self.batch_size, self.min_points, self.store_encoder = batch_size, min_points, store_encoder

    def __call__(self, batch):
        refs = [EventRef.from_dict(d) for d in batch.to_pylist()]
        table, _ = embed_rows(self.embedder, list(iter_events(refs)), self.schema,
                              self.batch_size, self.min_points, self.store_encoder)
        return table


def _ray_tables(refs: Sequence[EventRef], embedder: EventEmbedder, schema, batch_size: int,
                min_points: int, store_encoder: bool, actors: int, threads: int) -> Iterator:
    try:
        import ray
    except ImportError:
        raise ImportError("ray=True needs Ray Data: pip install 'larsight[ray]' "
                          "(or pip install 'ray[data]')") from None
    if embedder.vlm_dir is None:
        raise ValueError("ray=True: the workers load the model from a VLM folder; this embedder "
                         "was built in memory (use EventEmbedder.load(folder))")
    bad = [r for r in refs if not isinstance(r, EventRef)]
    if bad:
        raise ValueError("ray=True: in-memory events cannot be shipped to workers; index files "
                         "or simulation specs")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one tqdm bar over events
    n_blocks = max(1, min(len(refs) // max(1, batch_size), 1000))
    ds = ray.data.from_items([r.to_dict() for r in refs], override_num_blocks=n_blocks)
    ds = ds.map_batches(
        RayEmbedBatch, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=max(1, int(actors))),
        num_cpus=max(1, int(threads)),
        fn_constructor_kwargs=dict(vlm_dir=str(embedder.vlm_dir), fingerprint=embedder.fingerprint,
                                   embed_dim=embedder.embed_dim, encoder_dim=embedder.encoder_dim,
                                   batch_size=batch_size, min_points=min_points,
                                   store_encoder=store_encoder, threads=threads))
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield batch.cast(schema) if batch.num_rows else batch


# ============================================================================ the writer
class IndexBuildReport(BaseModel):
    """What ``build_index`` did."""

    path: str
    table: str
    n_events: int = Field(description="events in the index after the build")
    n_added: int = Field(description="events embedded and written by this build")
    n_skipped_empty: int = Field(description="events with too few points (not embedded)")
    n_skipped_duplicate: int = Field(0, description="append: events already in the index")
    seconds: float = Field(description="wall-clock time of the build, s")
    events_per_s: float = Field(description="added events per second of wall-clock time")
    first_rows_s: Optional[float] = Field(None, description="seconds until the first embedded "
                                          "rows came back (model loading, Ray start-up)")
    steady_events_per_s: Optional[float] = Field(None, description="local builds: events per "
                                                 "second after the first rows (start-up excluded)")
    ray: bool
    append: bool
    vector_index: str
    model_fingerprint: str

    def __str__(self) -> str:
        how = "Ray Data" if self.ray else "local"
        return (f"{'appended' if self.append else 'indexed'} {self.n_added} events ({how}, "
                f"{self.events_per_s:.2f} ev/s, {self.seconds:.1f} s) -> {self.path}: "
                f"{self.n_events} events, vector index {self.vector_index}"
                + (f"; skipped {self.n_skipped_empty} empty" if self.n_skipped_empty else "")
                + (f", {self.n_skipped_duplicate} already indexed" if self.n_skipped_duplicate else ""))

    def _repr_html_(self) -> str:
        rows = [("index", self.path), ("events in the index", self.n_events),
                ("events added", self.n_added), ("skipped (too few points)", self.n_skipped_empty),
                ("skipped (already indexed)", self.n_skipped_duplicate),
                ("build time [s]", round(self.seconds, 2)),
                ("rate [events/s]", round(self.events_per_s, 2)),
                ("built on", "Ray Data" if self.ray else "this process"),
                ("vector index", self.vector_index), ("model fingerprint", self.model_fingerprint)]
        return (f"<div style='font-family:monospace'><b>{html.escape(str(self))}</b>"
                f"{html_table('', ['', 'value'], rows)}</div>")


def _source_names(sources) -> list[str]:
    items = [sources] if isinstance(sources, (str, os.PathLike, Event, EventRef)) else list(sources)
    out = []
    for s in items[:50]:
        out.append("<Event>" if isinstance(s, Event) else s.key if isinstance(s, EventRef) else str(s))
    return out + ([f"... {len(items) - 50} more"] if len(items) > 50 else [])


def build_index(sources: Union[SourceLike, Sequence[SourceLike]],
                out: Optional[Union[str, os.PathLike]] = None, *,
                embedder: Optional[Union[EventEmbedder, str, os.PathLike]] = None,
                batch_size: int = 8, progress: bool = True, ray: bool = False,
                append: bool = False, limit: Optional[int] = None, min_points: int = 1,
                store_encoder: bool = True, vector_index: str = "auto",
                ray_actors: int = 1, ray_threads: int = 1,
                device: Any = None, command: Optional[str] = None) -> IndexBuildReport:
    """Embed events into an index folder (default ``default_index_path()``).

    ``sources``: files / globs / ``file:index`` / ``sim:...`` specs / ``EventRef`` / ``Event``
    (see the module docstring). ``embedder``: an ``EventEmbedder`` or a VLM folder (default
    ``checkpoints/vlm_smollm2``). ``append``: add to the existing index (same model required;
    events already indexed, by key, are skipped) instead of replacing it. ``limit``: at most
    this many events. ``vector_index``: 'auto' (HNSW from ``ANN_MIN_ROWS`` rows), 'hnsw' or
    'none'. ``ray``: embed on Ray Data with ``ray_actors`` actors of ``ray_threads`` CPUs.
    Returns an ``IndexBuildReport``; on any error the previous index is left intact.
    """
    _check_build_args(vector_index, batch_size, limit)
    path = Path(out).expanduser() if out is not None else default_index_path()
    refs = expand_sources(sources, limit)
    if not refs:
        raise ValueError(f"build_index: no events in {sources!r}")
    if not isinstance(embedder, EventEmbedder):
        embedder = EventEmbedder.load(embedder, device=device)
    schema = index_schema(embedder.embed_dim, embedder.encoder_dim if store_encoder else None)

    t_start = time.perf_counter()
    t_first, n_first = None, 0
    dropped = 0
    with IndexWrite(path, embedder.model_info(), schema, append=append,
                    has_encoder_vector=store_encoder) as tx:
        writer = tx.writer
        with tqdm(total=len(refs), desc="index" + (" (ray)" if ray else ""), unit="ev",
                  disable=not progress, dynamic_ncols=True) as bar:
            for tbl, n_in, n_dropped in _embedded_tables(
                    refs, embedder, schema, batch_size, min_points, store_encoder,
                    ray, ray_actors, ray_threads):
                dropped += n_dropped
                if t_first is None and tbl.num_rows:
                    t_first, n_first = time.perf_counter(), tbl.num_rows
                writer.add(tbl)
                bar.update(n_in)
        writer.flush()
        added = writer.written
        if ray:  # the workers drop empty events without telling: count them here
            dropped = len(refs) - added - writer.duplicates
        if writer.table is None:
            raise ValueError(f"build_index: none of the {len(refs)} events has at least "
                             f"{max(1, min_points)} point(s); nothing to index")
        n_total, vindex = tx.commit(vector_index=vector_index, build={
            "sources": _source_names(sources), "n_added": added, "n_skipped_empty": dropped,
            "n_skipped_duplicate": writer.duplicates,
            "seconds": round(time.perf_counter() - t_start, 3), "ray": bool(ray),
            "command": command})
        appended = tx.append
    t_end = time.perf_counter()
    seconds = t_end - t_start
    steady = None
    # (a Ray build's first rows come after several batches already ran in parallel: no
    # meaningful steady rate there)
    if not ray and t_first is not None and added > n_first and t_end > t_first:
        steady = round((added - n_first) / (t_end - t_first), 3)
    return IndexBuildReport(
        path=str(path), table=writer.name, n_events=n_total, n_added=added,
        n_skipped_empty=int(dropped), n_skipped_duplicate=writer.duplicates,
        seconds=round(seconds, 3), events_per_s=round(added / max(seconds, 1e-9), 3),
        ray=bool(ray), append=appended, vector_index=vindex,
        model_fingerprint=embedder.fingerprint,
        first_rows_s=round(t_first - t_start, 3) if t_first is not None else None,
        steady_events_per_s=steady)


def _check_build_args(vector_index: str, batch_size: int, limit: Optional[int]) -> None:
    if vector_index not in ("auto", "hnsw", "none"):
        raise ValueError(f"vector_index must be 'auto', 'hnsw' or 'none', got {vector_index!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def _embedded_tables(refs: Sequence[Union[EventRef, Event]], embedder: EventEmbedder, schema,
                     batch_size: int, min_points: int, store_encoder: bool, ray: bool,
                     ray_actors: int, ray_threads: int) -> Iterator[tuple[Any, int, int]]:
    """Per batch: (index rows, events the batch covered, events dropped as too small),
    embedded in this process or on Ray Data (whose workers do not report drops)."""
    if ray:
        for tbl in _ray_tables(refs, embedder, schema, batch_size, min_points, store_encoder,
                               ray_actors, ray_threads):
            yield tbl, tbl.num_rows, 0
        return
    stream = iter_events(refs)
    while True:
        chunk = list(itertools.islice(stream, batch_size))
        if not chunk:
            return
        tbl, dropped = embed_rows(embedder, chunk, schema, batch_size, min_points, store_encoder)
        yield tbl, len(chunk), dropped


def append_rows(out: Union[str, os.PathLike], rows, model: dict, *,
                vector_index: str = "auto", create: bool = False) -> int:
    """Append precomputed rows (a pyarrow table in the index schema, e.g. vectors embedded
    elsewhere) to the index at ``out``, whose model fingerprint must be ``model``'s; with
    ``create`` a missing index is created. Same atomicity as ``build_index``. Returns the
    number of rows in the index."""
    path = Path(out).expanduser()
    if not create and not (path / MANIFEST_NAME).exists():
        read_manifest(path)  # raises IndexNotFoundError with the build hint
    has_enc = ENCODER_VECTOR in rows.schema.names
    schema = index_schema(int(model["embed_dim"]), int(model["encoder_dim"]) if has_enc else None)
    with IndexWrite(path, model, schema, append=True, has_encoder_vector=has_enc) as tx:
        step = max(1, WRITE_ROWS)
        for s in range(0, rows.num_rows, step):
            tx.writer.add(rows.slice(s, step).cast(schema))
        n_total, _ = tx.commit(vector_index=vector_index, build={
            "sources": ["<precomputed rows>"], "n_added": tx.writer.written + tx.writer.buffered,
            "n_skipped_duplicate": tx.writer.duplicates, "ray": False})
    return n_total
