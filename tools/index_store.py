"""The event index on disk: its LanceDB table schema, its manifest and the atomic write.

An index is a folder (default ``$LARSIGHT_INDEX``, else ``$XDG_DATA_HOME/larsight/index``,
i.e. ``~/.local/share/larsight/index``) holding::

    index.json     manifest: format, the live table and its version, number of events, the
                   model that produced the vectors (VLM folder, encoder checkpoint, language
                   model, and a fingerprint of the encoder + projector weights), build history
    lance/         an embedded LanceDB database, one table ``events_<stamp>`` with a row per
                   event (columns: ``INDEX_COLUMNS`` and the vectors)

One row per event: ``id``, ``key`` (``tools.event_keys``: ``/abs/file.h5:12`` or
``sim:nu:seed=3:voxel=0.6:index=12``, enough to get the event back), ``source`` /
``event_index`` / ``mode`` / ``seed`` / ``voxel_size_cm``, the event class (truth when the
event carries it, else the encoder event head's prediction; ``class_source`` says which),
``visible_energy_mev`` (deposited energy), ``n_points``, the ``topology`` string and particle
counts (``events.vocabulary.event_facts`` / ``topology_string`` conventions; null when the event
carries no truth), neutrino energy and channel (truth), ``vector`` (aligned space) and
``encoder_vector`` (the encoder's pooled embedding, for encoder-only studies).

Atomicity (``IndexWrite``): a build writes a new table and commits by atomically replacing
``index.json`` (then drops the old table); a crash at any point leaves the previous index as
it was. An append adds rows to the live table as new versions and commits the new version in
the manifest; readers always open the manifest's version, so a crashed append is invisible
and the next append rolls it back. One writer at a time (a lock file guards it).

Scale: tables of at least ``ANN_MIN_ROWS`` rows get an HNSW vector index (IVF_HNSW_SQ, with
exact re-ranking of the candidates at search time); smaller ones are searched exactly.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from larsight.events.formats.atomic import atomic_open
from larsight.events.model import EVENT_CLASSES, Event
from larsight.events.vocabulary import NoTruthError, event_facts, topology_string

__all__ = ["IndexWrite", "IndexNotFoundError", "IndexModelMismatchError", "default_index_path",
           "event_metadata", "index_schema", "rows_table", "read_manifest", "write_manifest", "connect",
           "INDEX_ENV", "INDEX_COLUMNS", "INDEX_FORMAT", "INDEX_FORMAT_VERSION", "MANIFEST_NAME",
           "DB_DIR", "TABLE_PREFIX", "VECTOR", "ENCODER_VECTOR", "ANN_MIN_ROWS", "WRITE_ROWS",
           "BUILD_HINT"]

INDEX_FORMAT = "larsight-index"
INDEX_FORMAT_VERSION = 1
INDEX_ENV = "LARSIGHT_INDEX"
MANIFEST_NAME = "index.json"
DB_DIR = "lance"
TABLE_PREFIX = "events_"
VECTOR = "vector"
ENCODER_VECTOR = "encoder_vector"
ANN_MIN_ROWS = 50_000
"""From this many rows, builds add an HNSW vector index (below, exact search is fast enough)."""

INDEX_COLUMNS = {
    "id": "row number in the index",
    "key": "reference that gets the event back (file:index or sim:...:index=)",
    "source": "absolute path of the event file, or 'sim:<mode>' for simulated events",
    "event_index": "position of the event in its file / simulated stream",
    "mode": "simulator mode (nu, mpv, mpr) or the truth's mode; null for foreign files",
    "seed": "simulator seed (simulated events)",
    "voxel_size_cm": "voxel edge of the event, cm",
    "event_class": "nue_cc / numu_cc / nc: truth if known, else the encoder head's prediction",
    "class_source": "'truth', 'predicted' or 'none'",
    "predicted_class": "the encoder event head's class (null without an event head)",
    "predicted_class_prob": "its probability",
    "visible_energy_mev": "deposited energy of all points, MeV",
    "n_points": "number of points (voxels)",
    "topology": "'<lepton> <N>p <N>pi [<N>gamma] [<N>K]' of visible primaries (truth; null without)",
    "n_muons": "visible muons (truth)", "n_electrons": "visible electrons (truth)",
    "n_photons": "visible photon showers (truth)", "n_protons": "visible protons (truth)",
    "n_pions": "visible charged pions (truth)", "n_michel": "visible Michel electrons (truth)",
    "n_interactions": "interactions in the event (truth)",
    "nu_energy_mev": "neutrino energy, MeV (truth)",
    "channel": "QE / MEC / RES / DIS / COH (truth)",
}
"""Metadata columns of the index (besides the vectors), usable in ``where`` filters."""

BUILD_HINT = ("build one with `larsight index build DATA... --out {path}` (event files .h5 / .root "
              "or globs) or `larsight index build --simulate nu --n 1000 --out {path}`, or point "
              f"${INDEX_ENV} / index= at an existing one")


# ============================================================================ errors
class IndexNotFoundError(FileNotFoundError):
    """No index at the path (the message says how to build one)."""


class IndexModelMismatchError(ValueError):
    """The query model is not the model that produced the index's vectors."""


def default_index_path() -> Path:
    """``$LARSIGHT_INDEX``, else ``$XDG_DATA_HOME/larsight/index`` (``~/.local/share/...``)."""
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "larsight" / "index"


# ============================================================================ metadata
def event_metadata(event: Event, predicted_probs: Optional[np.ndarray] = None) -> dict[str, Any]:
    """The index's metadata columns of one event (without id / key / source columns).

    Truth (class, topology, counts, neutrino energy) comes from the event's own tables or
    per-point labels through ``events.vocabulary.event_facts``; ``predicted_probs`` (the encoder
    event head, over ``EVENT_CLASSES``) fills the class of events without truth."""
    row: dict[str, Any] = {
        "event_class": None, "class_source": "none", "predicted_class": None,
        "predicted_class_prob": None, "visible_energy_mev": float(event.total_energy_mev),
        "n_points": len(event), "topology": None, "n_muons": None, "n_electrons": None,
        "n_photons": None, "n_protons": None, "n_pions": None, "n_michel": None,
        "n_interactions": None, "nu_energy_mev": None, "channel": None, "mode": None,
    }
    if predicted_probs is not None and np.all(np.isfinite(predicted_probs)):
        j = int(np.argmax(predicted_probs))
        row["predicted_class"], row["predicted_class_prob"] = EVENT_CLASSES[j], float(predicted_probs[j])
    try:
        facts = event_facts(event)
    except NoTruthError:
        facts = None
    if facts is not None:
        c = facts.total_counts()
        row.update(topology=topology_string(c), n_muons=c["muon"], n_electrons=c["electron"],
                   n_photons=c["photon"], n_protons=c["proton"], n_pions=c["pion"],
                   n_michel=c["michel"], n_interactions=len(facts.interactions), mode=facts.mode)
        main = facts.main
        if main is not None and main.source == "neutrino":
            row["nu_energy_mev"] = main.nu_energy_mev
            row["channel"] = main.channel
    truth = event.event_class or (facts.event_class if facts is not None else None)
    if truth is not None:
        row["event_class"], row["class_source"] = truth, "truth"
    elif row["predicted_class"] is not None:
        row["event_class"], row["class_source"] = row["predicted_class"], "predicted"
    return row


def index_schema(embed_dim: int, encoder_dim: Optional[int] = None):
    """Arrow schema of the index table."""
    s, i64, i32, f32 = pa.string(), pa.int64(), pa.int32(), pa.float32()
    types = {"id": i64, "key": s, "source": s, "event_index": i64, "mode": s, "seed": i64,
             "voxel_size_cm": pa.float64(), "event_class": s, "class_source": s, "predicted_class": s,
             "predicted_class_prob": f32, "visible_energy_mev": f32, "n_points": i32,
             "topology": s, "n_muons": i32, "n_electrons": i32, "n_photons": i32,
             "n_protons": i32, "n_pions": i32, "n_michel": i32, "n_interactions": i32,
             "nu_energy_mev": f32, "channel": s}
    assert set(types) == set(INDEX_COLUMNS)
    fields = [pa.field(n, t, nullable=n not in ("id", "key", "source")) for n, t in types.items()]
    fields.append(pa.field(VECTOR, pa.list_(f32, int(embed_dim)), nullable=False))
    if encoder_dim:
        fields.append(pa.field(ENCODER_VECTOR, pa.list_(f32, int(encoder_dim))))
    return pa.schema(fields)


def rows_table(rows: list[dict], vectors: np.ndarray, encoder_vectors: Optional[np.ndarray],
               schema):
    """A pyarrow table of index rows (metadata dicts + vectors) in ``schema``."""
    def vector_column(vectors: np.ndarray):
        v = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(rows), -1)
        return pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])

    cols = {}
    for f in schema:
        if f.name == VECTOR:
            cols[f.name] = vector_column(vectors)
        elif f.name == ENCODER_VECTOR:
            cols[f.name] = (pa.nulls(len(rows), f.type) if encoder_vectors is None
                            else vector_column(encoder_vectors))
        else:
            cols[f.name] = pa.array([r.get(f.name) for r in rows], type=f.type)
    return pa.Table.from_pydict(cols, schema=schema)


# ============================================================================ the manifest
def read_manifest(path: Path) -> dict:
    """The manifest of the index at ``path``, checked (``IndexNotFoundError`` with the build
    hint when there is none)."""
    mpath = path / MANIFEST_NAME
    if not mpath.exists():
        where = "the default index" if path == default_index_path() else "an index"
        raise IndexNotFoundError(f"no event index at {path} ({where} is a folder with "
                                 f"{MANIFEST_NAME}); " + BUILD_HINT.format(path=path))
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{mpath}: unreadable index manifest ({err})") from None
    if manifest.get("format") != INDEX_FORMAT:
        raise ValueError(f"{mpath}: not a larsight event index manifest")
    if int(manifest.get("format_version", 0)) > INDEX_FORMAT_VERSION:
        raise ValueError(f"{mpath}: index format {manifest.get('format_version')} is newer than "
                         f"this larsight ({INDEX_FORMAT_VERSION}); upgrade larsight")
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    """Atomically replace ``index.json`` (the commit point of every build)."""
    with atomic_open(path / MANIFEST_NAME, "w") as f:
        f.write(json.dumps(manifest, indent=2, default=str) + "\n")


# ============================================================================ writing
WRITE_ROWS = 4096
"""Rows buffered before each table append (few, large fragments keep searches fast)."""


def connect(path: Path):
    """The LanceDB database of the index folder ``path``. lancedb is imported here, on first
    use: it takes ~4 s to import, which every user of the tools that never opens an index
    would otherwise pay."""
    import lancedb

    return lancedb.connect(str(Path(path) / DB_DIR))


@contextlib.contextmanager
def _writer_lock(path: Path):
    import fcntl   # POSIX only: imported where the lock is taken, so reading works anywhere

    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"{path}: another build is writing this index (lock file "
                               f"{path / '.lock'})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _TableWriter:
    """Buffers rows and appends them to a LanceDB table in large chunks; assigns ids; skips
    keys already written."""

    def __init__(self, db, name: str, schema, *, table=None, next_id: int = 0,
                 skip_keys: Optional[set] = None):
        self.db, self.name, self.schema = db, name, schema
        self.table = table
        self.next_id = next_id
        self.skip_keys = skip_keys if skip_keys is not None else set()
        self.buffer: list = []
        self.buffered = 0
        self.written = 0
        self.duplicates = 0

    def add(self, tbl) -> int:
        if tbl.num_rows == 0:
            return 0
        keys = tbl.column("key").to_pylist()
        keep = []
        for i, k in enumerate(keys):
            if k not in self.skip_keys:
                self.skip_keys.add(k)
                keep.append(i)
        self.duplicates += tbl.num_rows - len(keep)
        if len(keep) < tbl.num_rows:
            tbl = tbl.take(pa.array(keep, type=pa.int64()))
        if tbl.num_rows == 0:
            return 0
        ids = pa.array(np.arange(self.next_id, self.next_id + tbl.num_rows), type=pa.int64())
        tbl = tbl.set_column(tbl.schema.get_field_index("id"), "id", ids)
        self.next_id += tbl.num_rows
        self.buffer.append(tbl)
        self.buffered += tbl.num_rows
        if self.buffered >= WRITE_ROWS:
            self.flush()
        return tbl.num_rows

    def flush(self) -> None:
        if not self.buffer:
            return
        data = pa.concat_tables(self.buffer).cast(self.schema)
        if self.table is None:
            self.table = self.db.create_table(self.name, data=data, schema=self.schema)
        else:
            self.table.add(data)
        self.written += data.num_rows
        self.buffer, self.buffered = [], 0


def _drop_table(db, name: str) -> None:
    with contextlib.suppress(Exception):
        db.drop_table(name)


def _table_names(db) -> list[str]:
    names, token = [], None
    while True:  # list_tables pages its answer
        resp = db.list_tables(page_token=token)
        names += list(getattr(resp, "tables", resp) or [])
        token = getattr(resp, "page_token", None)
        if not token:
            return names


def _vector_index(table, n_rows: int, mode: str) -> str:
    """Create the HNSW vector index when asked (``mode`` 'hnsw') or for large tables ('auto')."""
    if mode == "none" or (mode == "auto" and n_rows < ANN_MIN_ROWS) or n_rows < 256:
        return "none"
    from lancedb.index import BTree, Bitmap, HnswSq   # lancedb: ~4 s to import (see connect)

    parts = max(1, int(round(n_rows / 50_000)))  # IVF partitions of ~50k rows, HNSW inside
    table.create_index(VECTOR, config=HnswSq(distance_type="cosine", num_partitions=parts))
    # scalar indexes for the by-key lookup of find_similar and the commonest filters
    table.create_index("key", config=BTree())
    table.create_index("event_class", config=Bitmap())
    table.create_index("visible_energy_mev", config=BTree())
    return "IVF_HNSW_SQ"


class IndexWrite:
    """One write to an index folder: holds the lock; a rebuild writes a new table, an append
    adds versions to the live table; ``commit`` replaces ``index.json`` (the only step that
    readers see). Leaving the block with an exception drops the new table / rolls the live
    table back to its committed version, so the previous index stays as it was."""

    def __init__(self, path: Path, model: dict, schema, *, append: bool, has_encoder_vector: bool):
        self.path, self.model, self.schema = Path(path), model, schema
        self.want_append, self.has_encoder_vector = append, has_encoder_vector
        self.committed = False

    def __enter__(self) -> "IndexWrite":
        self._lock = _writer_lock(self.path)
        self._lock.__enter__()
        try:
            self._open()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _open(self) -> None:
        path = self.path
        self.old = read_manifest(path) if (path / MANIFEST_NAME).exists() else None
        self.db = connect(path)
        live = self.old["table"] if self.old else None
        for name in _table_names(self.db):
            if name.startswith(TABLE_PREFIX) and name != live:
                _drop_table(self.db, name)  # left by a crashed build
        self.append = bool(self.want_append and self.old is not None)
        if self.append:
            old = self.old
            if old["model"].get("fingerprint") != self.model.get("fingerprint"):
                raise IndexModelMismatchError(
                    f"append to {path}: the index was built with model "
                    f"{old['model'].get('fingerprint')} (VLM {old['model'].get('vlm_dir')}), this "
                    f"build uses {self.model.get('fingerprint')}; rebuild without --append instead")
            if bool(old.get("has_encoder_vector", True)) != self.has_encoder_vector:
                raise ValueError(f"append to {path}: store_encoder must match the index "
                                 f"({old.get('has_encoder_vector', True)})")
            table = self.db.open_table(old["table"])
            if table.version != old["table_version"]:
                table.restore(int(old["table_version"]))  # roll back a crashed append
            known = table.search().select(["key", "id"]).limit(None).to_arrow()
            ids = known.column("id").to_numpy()
            self.writer = _TableWriter(self.db, old["table"], self.schema, table=table,
                                       next_id=int(ids.max()) + 1 if len(ids) else 0,
                                       skip_keys=set(known.column("key").to_pylist()))
            self.new_table = None
        else:
            stamp = _dt.datetime.now().strftime("%Y%m%d%H%M%S")
            self.new_table = f"{TABLE_PREFIX}{stamp}_{uuid.uuid4().hex[:8]}"
            self.writer = _TableWriter(self.db, self.new_table, self.schema)

    def commit(self, *, vector_index: str, build: dict) -> tuple[int, str]:
        """Flush, index the vectors, write the manifest. Returns (rows, vector index kind)."""
        w = self.writer
        w.flush()
        if w.table is None:
            raise ValueError("build_index: no event to index (all empty or filtered out)")
        n_total = int(w.table.count_rows())
        vindex = self.old.get("vector_index", "none") if self.append else "none"
        if vindex != "none":
            if w.written:
                w.table.optimize()  # adds the new rows to the existing vector index
        else:
            vindex = _vector_index(w.table, n_total, vector_index)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        build = dict(build, time=now, append=self.append)
        old = self.old if self.append else None
        manifest = {
            "format": INDEX_FORMAT, "format_version": INDEX_FORMAT_VERSION,
            "created": old["created"] if old else now, "updated": now,
            "table": w.name, "table_version": int(w.table.version), "n_events": n_total,
            "has_encoder_vector": self.has_encoder_vector, "vector_index": vindex,
            "model": self.model, "builds": ((old.get("builds", []) if old else []) + [build])[-100:],
        }
        write_manifest(self.path, manifest)  # the commit point
        self.committed = True
        return n_total, vindex

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if not self.committed:
                if self.new_table is not None:
                    _drop_table(self.db, self.new_table)
                elif self.writer.table is not None:  # append: back to the committed version
                    with contextlib.suppress(Exception):
                        self.writer.table.restore(int(self.old["table_version"]))
            elif self.new_table is not None and self.old is not None:
                _drop_table(self.db, self.old["table"])
        finally:
            self._lock.__exit__(None, None, None)
        return False
