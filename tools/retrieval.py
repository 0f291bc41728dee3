"""Retrieval: "find events like this" and text-to-event search over an on-disk event index.

    from larsight.tools import find_similar
    res = find_similar("run7.h5:12", k=10)                          # an event (file:index)
    res = find_similar(event, k=10, event_class="nue_cc", min_energy_mev=500)
    res = find_similar("nu_e CC with a gap before the shower", k=10,  # text-to-event
                       where="visible_energy_mev > 500 AND n_protons >= 1")
    res.hits[0].similarity, res.hits[0].topology, res.hits[0].load()   # the event itself

    from larsight.tools.retrieval import build_index, EventIndex, EventEmbedder
    build_index(["data/*.h5"], "indexes/pilarnet")                 # progress bar; atomic
    build_index("sim:nu:seed=3:n=1000", "indexes/sim", ray=True)    # same build on Ray Data
    EventIndex.open("indexes/sim")                                  # summary, counts, search

Command line: ``larsight index build DATA... --out INDEX`` (``--simulate nu --n 1000``,
``--ray``), ``larsight index search INDEX --text "..."`` / ``--event FILE:IDX``.

This module is the search (``EventIndex``, ``find_similar`` and its results) and the one
import for the whole retrieval API; the other jobs have their own modules:

- ``tools.event_keys``: the event-key grammar (``EventRef``, ``parse_event_ref``);
- ``tools.index_store``: the index folder, its LanceDB schema, manifest and atomic writes;
- ``tools.embedder``: the VLM's aligned event-text space (``EventEmbedder``);
- ``tools.index_build``: building and extending an index (locally or on Ray Data).

Events and texts are compared by cosine similarity of unit vectors in the VLM's stage-1
aligned event-text space. Filters are SQL over ``INDEX_COLUMNS``, e.g. ``"event_class =
'nue_cc' AND visible_energy_mev > 500"``.

Model identity: queries embed with the model recorded in the manifest and refuse any other
(``IndexModelMismatchError``): vectors of two models are not comparable. The fingerprint hashes
the weights themselves, so a VLM folder retrained in place is caught too.
"""
from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
from pydantic import BaseModel, Field

from larsight.events.model import EVENT_CLASSES, Event
from larsight.events.vocabulary import parse_topology, topology_string

from .embedder import EventEmbedder, cached_embedder
from .event_keys import EventRef, looks_like_ref, parse_event_ref
from .index_build import build_index
from .index_store import (
    BUILD_HINT, ENCODER_VECTOR, INDEX_COLUMNS, INDEX_ENV, MANIFEST_NAME, VECTOR,
    IndexModelMismatchError, IndexNotFoundError, connect, default_index_path, event_metadata,
    read_manifest,
)
from .inputs import ToolInputError, load_event

__all__ = [
    "find_similar", "build_index", "EventIndex", "EventEmbedder", "EventRef", "SimilarEvent",
    "SimilarResult", "IndexNotFoundError", "IndexModelMismatchError", "default_index_path",
    "parse_event_ref", "event_metadata", "open_index", "build_filter", "INDEX_ENV",
    "INDEX_COLUMNS", "VECTOR", "ENCODER_VECTOR",
]


# ============================================================================ the search
def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def build_filter(where: Optional[str] = None, *, event_class: Optional[str] = None,
                 topology: Optional[str] = None, min_energy_mev: Optional[float] = None,
                 max_energy_mev: Optional[float] = None, mode: Optional[str] = None,
                 exclude_key: Optional[str] = None) -> Optional[str]:
    """One SQL filter from ``where`` and keyword filters (combined with AND)."""
    parts = []
    if where and str(where).strip():
        parts.append(f"({where})")
    if event_class is not None:
        classes = [event_class] if isinstance(event_class, str) else list(event_class)
        bad = [c for c in classes if c not in EVENT_CLASSES]
        if bad:
            raise ValueError(f"event_class {bad[0]!r}: expected one of {list(EVENT_CLASSES)}")
        parts.append("event_class IN (" + ", ".join(_sql_str(c) for c in classes) + ")")
    if topology is not None:
        try:  # normalise ("1mu 2p" -> "1mu 2p 0pi")
            topo = topology_string(parse_topology(topology))
        except Exception:
            topo = " ".join(str(topology).split())
        parts.append(f"topology = {_sql_str(topo)}")
    if min_energy_mev is not None:
        parts.append(f"visible_energy_mev >= {float(min_energy_mev)!r}")
    if max_energy_mev is not None:
        parts.append(f"visible_energy_mev <= {float(max_energy_mev)!r}")
    if mode is not None:
        parts.append(f"mode = {_sql_str(mode)}")
    if exclude_key is not None:
        parts.append(f"key != {_sql_str(exclude_key)}")
    return " AND ".join(parts) if parts else None


class EventIndex:
    """An opened event index (read side): ``search``, ``lookup``, ``count``, summaries."""

    META_COLUMNS = tuple(INDEX_COLUMNS)

    def __init__(self, path: Path, manifest: dict, table):
        self.path = Path(path)
        self.manifest = manifest
        self.table = table

    @classmethod
    def open(cls, path: Optional[Union[str, os.PathLike, "EventIndex"]] = None) -> "EventIndex":
        """The index at ``path`` (default ``default_index_path()``), at its committed version."""
        if isinstance(path, EventIndex):
            return path
        p = Path(path).expanduser() if path is not None else default_index_path()
        manifest = read_manifest(p)
        db = connect(p)
        name = manifest["table"]
        try:
            table = db.open_table(name)
        except Exception as err:
            raise ValueError(f"{p}: the index table {name!r} cannot be opened ({err}); "
                             f"rebuild it: " + BUILD_HINT.format(path=p)) from None
        version = manifest.get("table_version")
        if version is not None and table.version != version:
            table.checkout(int(version))  # a crashed append left newer versions: ignore them
        return cls(p, manifest, table)

    # ------------------------------------------------------------------ facts
    @property
    def n_events(self) -> int:
        return int(self.manifest.get("n_events", 0))

    def __len__(self) -> int:
        return self.n_events

    @property
    def model(self) -> dict:
        return dict(self.manifest.get("model", {}))

    @property
    def fingerprint(self) -> str:
        return str(self.model.get("fingerprint"))

    @property
    def embed_dim(self) -> int:
        return int(self.model.get("embed_dim"))

    def count(self, where: Optional[str] = None) -> int:
        try:
            return int(self.table.count_rows(where) if where else self.table.count_rows())
        except Exception as err:
            raise self._filter_error(where, err) from None

    def class_counts(self) -> dict[str, int]:
        col = self.table.search().select(["event_class"]).limit(None).to_arrow().column(0)
        vals, counts = np.unique(np.array([v if v is not None else "unknown"
                                           for v in col.to_pylist()]), return_counts=True)
        return {str(v): int(c) for v, c in zip(vals, counts)}

    def to_arrow(self, columns: Optional[Sequence[str]] = None, where: Optional[str] = None):
        q = self.table.search()
        if where:
            q = q.where(where)
        if columns is not None:
            q = q.select(list(columns))
        return q.limit(None).to_arrow()

    def __repr__(self) -> str:
        return (f"EventIndex({self.path}, {self.n_events} events, model {self.fingerprint}, "
                f"vector index {self.manifest.get('vector_index', 'none')})")

    def _repr_html_(self) -> str:
        m = self.model
        rows = [("events", self.n_events), ("classes", self.class_counts()),
                ("VLM", m.get("vlm_dir")), ("fingerprint", m.get("fingerprint")),
                ("vector index", self.manifest.get("vector_index", "none")),
                ("updated", self.manifest.get("updated"))]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<b>event index</b> {html.escape(str(self.path))}<table>{body}</table>"

    # ------------------------------------------------------------------ model identity
    def check_model(self, embedder: EventEmbedder, text: bool = False) -> None:
        """Raise ``IndexModelMismatchError`` unless ``embedder`` made this index's vectors
        (and, for text queries, uses the same language model)."""
        m = self.model
        hint = (f"query with the model that built it (VLM {m.get('vlm_dir')}) or rebuild the "
                f"index with this one: `larsight index build ... --vlm {embedder.vlm_dir or 'VLM'} "
                f"--out {self.path}`")
        if embedder.fingerprint != m.get("fingerprint"):
            raise IndexModelMismatchError(
                f"index {self.path} was built with model {m.get('fingerprint')} (VLM "
                f"{m.get('vlm_dir')}, encoder {m.get('encoder_checkpoint')}), but the query model "
                f"is {embedder.fingerprint} (VLM {embedder.vlm_dir or 'in memory'}); vectors of "
                f"different models are not comparable: {hint}")
        if embedder.embed_dim != int(m.get("embed_dim", -1)):
            raise IndexModelMismatchError(f"index {self.path} holds {m.get('embed_dim')}-d vectors, "
                                          f"the model makes {embedder.embed_dim}-d ones: {hint}")
        if text and m.get("lm") and embedder.lm_name and embedder.lm_name != m.get("lm"):
            raise IndexModelMismatchError(
                f"index {self.path} was built with language model {m.get('lm')!r}, the query "
                f"model uses {embedder.lm_name!r}; text vectors would not match: {hint}")

    def embedder(self, device: Any = None) -> EventEmbedder:
        """The model recorded in the manifest (loaded once per process), checked."""
        vlm_dir = self.model.get("vlm_dir")
        if not vlm_dir:
            raise ValueError(f"index {self.path} was built with an in-memory model (no VLM "
                             f"folder recorded); pass embedder= to query it")
        emb = cached_embedder(vlm_dir, device=device)
        self.check_model(emb)
        return emb

    # ------------------------------------------------------------------ queries
    def _filter_error(self, where, err) -> ValueError:
        return ValueError(f"bad filter {where!r}: {str(err).splitlines()[0] if str(err) else err}; "
                          f"columns: {', '.join(INDEX_COLUMNS)}")

    def lookup(self, key: str, vectors: bool = True) -> Optional[dict]:
        """The row of ``key`` (None if the event is not in the index)."""
        cols = list(self.META_COLUMNS) + ([VECTOR] if vectors else [])
        rows = self.table.search().where(f"key = {_sql_str(key)}").select(cols).limit(1).to_list()
        return rows[0] if rows else None

    def search(self, vector: np.ndarray, k: int = 10, where: Optional[str] = None, *,
               exact: bool = False) -> list[dict]:
        """The ``k`` rows nearest to ``vector`` (cosine), best first, each with ``similarity``."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.embed_dim:
            raise ValueError(f"query vector has {v.shape[0]} dimensions, the index {self.embed_dim}")
        if not np.all(np.isfinite(v)):
            raise ValueError("query vector is not finite")
        q = (self.table.search(v, vector_column_name=VECTOR).distance_type("cosine")
             .limit(int(k)).select(list(self.META_COLUMNS) + ["_distance"]))
        if self.manifest.get("vector_index", "none") != "none":
            q = q.bypass_vector_index() if exact else q.ef(max(64, 4 * int(k))).refine_factor(4)
        if where:
            q = q.where(where, prefilter=True)
        try:
            rows = q.to_list()
        except Exception as err:
            if where:
                raise self._filter_error(where, err) from None
            raise
        for r in rows:
            r["similarity"] = 1.0 - float(r.pop("_distance"))
        return rows


_INDEXES: dict[tuple, EventIndex] = {}


def open_index(path: Optional[Union[str, os.PathLike, EventIndex]] = None) -> EventIndex:
    """``EventIndex.open`` with a per-process cache keyed by the manifest's modification time
    (a rebuild or append is picked up by the next query)."""
    if isinstance(path, EventIndex):
        return path
    p = (Path(path).expanduser() if path is not None else default_index_path()).resolve()
    mpath = p / MANIFEST_NAME
    stamp = mpath.stat().st_mtime_ns if mpath.exists() else None
    key = (str(p), stamp)
    if stamp is None or key not in _INDEXES:
        idx = EventIndex.open(p)
        for k in [k for k in _INDEXES if k[0] == str(p)]:
            del _INDEXES[k]
        _INDEXES[key] = idx
    return _INDEXES[key]


# ============================================================================ results
class SimilarEvent(BaseModel):
    """One hit of ``find_similar``."""

    rank: int = Field(description="1 = most similar")
    key: str = Field(description="reference of the event (file:index or sim:...:index=)")
    similarity: float = Field(description="cosine similarity in the aligned event-text space, -1..1")
    event_class: Optional[str] = Field(None, description="nue_cc / numu_cc / nc")
    class_source: str = Field("none", description="'truth', 'predicted' (encoder head) or 'none'")
    predicted_class: Optional[str] = None
    visible_energy_mev: Optional[float] = Field(None, description="deposited energy, MeV")
    n_points: Optional[int] = Field(None, description="voxels")
    topology: Optional[str] = Field(None, description="visible primaries, e.g. '1mu 2p 0pi'")
    nu_energy_mev: Optional[float] = Field(None, description="neutrino energy (truth), MeV")
    channel: Optional[str] = None
    mode: Optional[str] = None
    source: Optional[str] = Field(None, description="event file, or 'sim:<mode>'")
    event_index: Optional[int] = None
    seed: Optional[int] = None
    voxel_size_cm: Optional[float] = None

    def ref(self) -> EventRef:
        return EventRef(self.source or "", int(self.event_index or 0), self.seed,
                        self.voxel_size_cm)

    def load(self) -> Event:
        """The event itself (read from its file or simulated again)."""
        return self.ref().load()


class SimilarResult(BaseModel):
    """What ``find_similar`` found: hits best first, with the query and the search's cost."""

    query: str = Field(description="the text, or the event's reference")
    query_kind: Literal["event", "text"]
    k: int
    where: Optional[str] = Field(None, description="the SQL filter applied")
    index_path: str
    n_indexed: int = Field(description="events in the index")
    model_fingerprint: str
    embed_ms: float = Field(description="time to embed the query, ms (0 when its vector was "
                                        "read from the index)")
    search_ms: float = Field(description="time of the index search, ms")
    hits: list[SimilarEvent]

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def keys(self) -> list[str]:
        return [h.key for h in self.hits]

    def class_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.hits:
            out[h.event_class or "unknown"] = out.get(h.event_class or "unknown", 0) + 1
        return out

    _COLS = (("rank", "#"), ("similarity", "similarity"), ("event_class", "class"),
             ("topology", "topology"), ("visible_energy_mev", "E vis (MeV)"),
             ("n_points", "points"), ("key", "event"))

    def _cells(self, h: SimilarEvent) -> list[str]:
        out = []
        for name, _ in self._COLS:
            v = getattr(h, name)
            if name == "similarity":
                v = f"{v:.3f}"
            elif name == "visible_energy_mev" and v is not None:
                v = f"{v:.0f}"
            elif name == "event_class" and v is not None and h.class_source == "predicted":
                v = f"{v} (pred.)"
            out.append("-" if v is None else str(v))
        return out

    def summary(self) -> str:
        head = (f"{len(self.hits)} events like {self.query_kind} {self.query!r}"
                + (f" where {self.where}" if self.where else "")
                + f" ({self.n_indexed} indexed, search {self.search_ms:.1f} ms)")
        rows = [[t for _, t in self._COLS]] + [self._cells(h) for h in self.hits]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._COLS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join([head] + lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        th = "".join(f"<th>{html.escape(t)}</th>" for _, t in self._COLS)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>"
                                        for c in self._cells(h)) + "</tr>" for h in self.hits)
        cap = (f"{len(self.hits)} events like {html.escape(self.query_kind)} "
               f"<code>{html.escape(self.query)}</code>"
               + (f" where <code>{html.escape(self.where)}</code>" if self.where else "")
               + f" &mdash; {self.n_indexed} indexed, search {self.search_ms:.1f} ms")
        return f"<div><p>{cap}</p><table><tr>{th}</tr>{body}</table></div>"


# ============================================================================ find_similar
QueryLike = Union[Event, EventRef, str, os.PathLike, tuple]


def find_similar(event_or_text: QueryLike, k: int = 10,
                 index: Optional[Union[str, os.PathLike, EventIndex]] = None,
                 where: Optional[str] = None, *, event_class: Optional[str] = None,
                 topology: Optional[str] = None, min_energy_mev: Optional[float] = None,
                 max_energy_mev: Optional[float] = None, mode: Optional[str] = None,
                 exclude_self: bool = False, exact: bool = False,
                 embedder: Optional[EventEmbedder] = None,
                 vlm: Optional[Union[str, os.PathLike]] = None) -> SimilarResult:
    """The ``k`` indexed events most similar to an event or a text.

    ``event_or_text``: an ``events.Event``, ``"path:index"`` or ``(path, index)`` (a path alone
    for a one-event file, as for every tool), a simulated-event key (``sim:nu:seed=3:voxel=0.6:index=12``), or any other string, which is a
    text query ("nu_e CC with a gap before the shower", text-to-event search). An event
    already in the index is looked up by its reference (no model needed); others are embedded.
    ``index``: folder (default ``$LARSIGHT_INDEX`` / ``default_index_path()``).
    Filters: ``where`` (SQL over ``INDEX_COLUMNS``) and/or ``event_class``, ``topology``,
    ``min_energy_mev`` / ``max_energy_mev`` (visible energy), ``mode``. ``exclude_self`` drops
    the query event from its own hits. ``exact`` bypasses an HNSW index (exact search).
    ``embedder`` / ``vlm``: the query model (default: the one recorded in the index; any other
    must be the same weights, else ``IndexModelMismatchError``).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"find_similar: k must be a positive integer, got {k!r}")
    query = _read_query(event_or_text)
    idx = open_index(index)
    if embedder is None and vlm is not None:
        embedder = cached_embedder(vlm)
    if embedder is not None:
        idx.check_model(embedder)
    vector, label, embed_ms = _query_vector(query, idx, embedder)

    ref = query.ref
    filt = build_filter(where, event_class=event_class, topology=topology,
                        min_energy_mev=min_energy_mev, max_energy_mev=max_energy_mev, mode=mode,
                        exclude_key=ref.key if (exclude_self and ref is not None) else None)
    t1 = time.perf_counter()
    rows = idx.search(vector, int(k), filt, exact=exact)
    search_ms = (time.perf_counter() - t1) * 1e3
    hits = [SimilarEvent(rank=i + 1, **{f: r.get(f) for f in SimilarEvent.model_fields
                                        if f != "rank" and f in r})
            for i, r in enumerate(rows)]
    return SimilarResult(query=label, query_kind="text" if query.text is not None else "event",
                         k=int(k), where=filt, index_path=str(idx.path), n_indexed=idx.n_events,
                         model_fingerprint=idx.fingerprint, embed_ms=round(embed_ms, 3),
                         search_ms=round(search_ms, 3), hits=hits)


@dataclass
class _Query:
    """What ``find_similar`` was asked about: an event object (and the reference its meta
    records), a reference alone, or a text."""

    event: Optional[Event] = None
    ref: Optional[EventRef] = None
    text: Optional[str] = None


def _read_query(event_or_text: QueryLike) -> _Query:
    if isinstance(event_or_text, Event):
        load_event(event_or_text, tool="find_similar")  # a bad event fails before the index opens
        return _Query(event=event_or_text, ref=EventRef.of_event(event_or_text))
    if isinstance(event_or_text, EventRef):
        return _Query(ref=event_or_text)
    if isinstance(event_or_text, tuple):
        return _Query(ref=parse_event_ref(event_or_text))
    if isinstance(event_or_text, (str, os.PathLike)):
        s = str(event_or_text)
        if not s.strip():
            raise ValueError("find_similar: the query is empty")
        if isinstance(event_or_text, os.PathLike) or looks_like_ref(s):
            return _Query(ref=parse_event_ref(s))
        return _Query(text=" ".join(s.split()))
    raise ToolInputError(f"find_similar: expected an events.Event, 'path:index', a "
                         f"simulated-event key or a text, got {type(event_or_text).__name__}")


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def _query_vector(query: _Query, idx: EventIndex,
                  embedder: Optional[EventEmbedder]) -> tuple[np.ndarray, str, float]:
    """(the query's vector, its label in the result, ms spent embedding it)."""
    t0 = time.perf_counter()
    if query.text is not None:
        emb = embedder or idx.embedder()
        idx.check_model(emb, text=True)
        return emb.embed_text([query.text])[0], query.text, _ms_since(t0)
    ref, event = query.ref, query.event
    label = ref.key if ref is not None else repr(event)
    # a reference to an indexed event: its stored vector (no model needed); an Event object
    # is always embedded (it may differ from what was indexed)
    row = idx.lookup(ref.key) if (ref is not None and event is None) else None
    if row is not None:
        t0 = time.perf_counter()
        return np.asarray(row[VECTOR], dtype=np.float32), label, _ms_since(t0)
    if event is None:
        event = ref.load()
    _check_event(event, ref)
    emb = embedder or idx.embedder()
    return emb.embed([event])[0], label, _ms_since(t0)


def _check_event(event: Event, ref: Optional[EventRef]) -> None:
    """The tools' checks (an empty or single-point event is refused with the tools'
    message), naming the event by its reference when it has one."""
    try:
        load_event(event, tool="find_similar")
    except ToolInputError as err:
        msg = str(err)
        if ref is not None and "the event" in msg:
            msg = msg.replace("the event", f"event {ref.key}", 1)
        raise ToolInputError(msg) from None
