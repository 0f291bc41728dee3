"""PILArNet-Medium HDF5: read real files as they are, write files that PILArNet loaders read.

Schema (one row per event in every dataset; each row a flat variable-length 1-D array):

- ``point``: float32 rows reshaped to (N, 8): x, y, z in VOXEL INDEX units, voxel value (the
  energy in MeV; loaders use column 3), energy deposit, absolute time, number of electrons, dx.
- ``cluster``: integer rows reshaped to (C, 5) in v1 -- npoints, fragment id, group id (= the
  particle instance), interaction id, semantic type -- or (C, 6) in v2, adding the PID
  (0 photon, 1 electron, 2 muon, 3 pion, 4 proton; -1 none). Points are stored ordered by cluster,
  and per-point labels are each cluster's row repeated ``npoints`` times, so the ``npoints`` of
  an event must add up to its number of points exactly.
- ``cluster_extra`` (v2 only): float32 rows reshaped to (C, 5): column 0 undocumented, then the
  momentum and the vertex x, y, z of the cluster's particle. (v3 files carry a 6th column,
  ``is_primary``; they read like v2 and the flag is ignored.)

What was verified, and where (public code read for ideas only, nothing copied):

- Column meanings of ``point`` and ``cluster``, the (N, 8) / (C, 5) reshape and "points are
  ordered by the cluster they belong to": the PILArNet-Medium README of the PoLAr-MAE repository
  and the dataset card of DeepLearnPhysics/PILArNet-M on Hugging Face (which also says that the
  entries are variable-length 1-D arrays reshaped event by event).
- v1 vs v2: pimm's ``PILArNetH5Dataset.get_data`` (youngsm/lar.fm ``pimm/datasets/pilarnet.py``,
  seanxia8/pimm-data ``src/pimm_data/pilarnet.py``): v1 reshapes ``cluster`` to (-1, 5) and "has no
  cluster_extra dataset"; v2 reshapes it to (-1, 6) and takes columns 0, 2, 3, 4, 5 as size,
  group, interaction, semantic, PID, and ``cluster_extra`` (-1, 5) columns 1-4 as momentum and
  vertex x, y, z; v3 has a 6-wide ``cluster_extra`` (column 5 ``is_primary``). The loaders are
  told the revision by configuration; this reader detects it from the presence of
  ``cluster_extra`` (what the loaders' comment describes) and checks the row widths.
- Energy = column 3 (all loaders threshold and use ``point[:, 3]``); column 5 is the time (the
  PoLAr-MAE ``LArNet`` loader reads columns 0-3 and 5 as x, y, z, e, t); coordinates are voxel
  indices of the 768^3 grid (nanopanda/pimm normalise with centre 384 and 768*sqrt(3)/2).
- PID -1 means none (low-energy deposits): the loaders remap ``pid == -1`` to 5 ("where Kaon
  is") for training; larsight keeps -1.
- Points outside every cluster: real loaders do not handle them (``np.repeat`` of the cluster
  columns must match the points one to one; ``remove_low_energy_scatters`` drops the FIRST cluster,
  so the low-energy-deposit cluster comes first, with group id -1). Such files are rejected here
  with a clear error; larsight writes points without a particle as explicit clusters with group
  id -1, which sort first, as in the real files.
- Dtypes: no loader states them; ``np.repeat(labels, cluster[:, 0])`` needs integer counts, so
  ``cluster`` is an integer type. pimm-data's own test fixture writes ``point`` and
  ``cluster_extra`` as vlen float32 and ``cluster`` as vlen int32; so does this writer. The reader
  accepts any numeric vlen type (integral values required for ``cluster``).

Not verified (assumptions, stated so they can be corrected): the units of ``cluster_extra``
(momentum read as MeV/c, vertex as voxel indices like ``point``), the meaning of its column 0
(written as 0), and the units of the time (kept as it is in ``Event.time_us``) and dx (cm).

larsight additions, ignored by PILArNet readers (they open only the three datasets above): a
file attribute ``larsight_layout`` and per-event datasets ``larsight_meta`` (JSON: volume, event
id, generator, seed, which optional per-point arrays exist), ``larsight_particles`` and
``larsight_interactions`` (JSON lists: PDG codes, processes, parents, momenta, interaction class,
neutrino energy...), ``larsight_order`` (the original position of each stored point; empty when
unchanged), ``larsight_points_cm`` (exact cm coordinates, written only when index * voxel size +
origin would not reproduce the float32 points bit for bit) and, in v1 layout,
``larsight_cluster_pid``. With them a larsight -> HDF5 -> larsight round trip is lossless; a
foreign file without them reads with the PILArNet volume (768^3 voxels of 3 mm at the origin),
``meta.generator = "PILArNet-M"`` and a particle table derived from the clusters.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from larsight.events.formats._common import (
    FORMAT_VERSION, OPTIONAL_ARRAYS, as_event, build_event, check_index, dumps,
    interactions_from, interactions_json, meta_fields, meta_record, momentum_magnitude, parse_json,
    particles_from, particles_json, with_progress,
)
from larsight.events.formats.atomic import atomic_path
from larsight.events.formats.pilarnet_foreign import particles_from_clusters
from larsight.events.model import PILARNET_VOLUME, Event, EventError, EventFileError, Volume

POINT_COLUMNS = ("x", "y", "z", "voxel_value", "energy_deposit", "time", "n_electrons", "dx")
CLUSTER_COLUMNS = {
    "v1": ("npoints", "fragment", "group", "interaction", "semantic"),
    "v2": ("npoints", "fragment", "group", "interaction", "semantic", "pid"),
}
CLUSTER_EXTRA_COLUMNS = ("col0", "momentum", "vertex_x", "vertex_y", "vertex_z")
LAYOUTS = ("v1", "v2")

LARSIGHT_JSON = ("larsight_meta", "larsight_particles", "larsight_interactions")
LARSIGHT_ARRAYS = ("larsight_order", "larsight_points_cm", "larsight_cluster_pid")
CHECKSUMS = "larsight_crc32"
"""(events, datasets) uint32: CRC-32 of each event's row of each per-event dataset, in the order
of the dataset's ``columns`` attribute. HDF5 cannot filter variable-length datasets (no
fletcher32 on them, and their rows live in the global heap, which no filter covers), so this
fixed-size dataset, itself written with fletcher32, carries the checksums of the rows."""

_READ_BLOCK = 32          # events per block read while iterating
_WRITE_EVENTS = 64        # events buffered before a write
_WRITE_VALUES = 4_000_000  # ... or this many point values
_CHUNK = 256              # HDF5 chunk (rows) of the per-event datasets


def _h5py():
    import h5py

    return h5py


# ====================================================================== reading
def _open(path: Path):
    h5py = _h5py()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise EventError(f"{path}: is a directory, not a PILArNet-M HDF5 file")
    try:
        return h5py.File(path, "r")
    except Exception as exc:  # OSError mostly; h5py has raised others on odd files
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise EventError(f"{path}: not a readable HDF5 file (corrupt, truncated or another "
                         f"format): {reason}") from None


class _Info:
    """What a file holds, checked once when it is opened."""

    def __init__(self, f, path: Path):
        h5py = _h5py()
        self.path = path
        if "point" not in f or not isinstance(f["point"], h5py.Dataset):
            found = ", ".join(sorted(f.keys())[:12]) or "nothing"
            raise EventError(f"{path}: not a PILArNet-M file: it has no 'point' dataset "
                             f"(found: {found})")
        self.n = self._check_rows(f, "point")
        self.has_cluster = "cluster" in f
        self.has_extra = "cluster_extra" in f
        for name in ("cluster", "cluster_extra"):
            if name in f:
                self._check_rows(f, name)
        layout = f.attrs.get("larsight_layout")
        if isinstance(layout, bytes):
            layout = layout.decode()
        if layout not in LAYOUTS:
            layout = "v2" if self.has_extra else "v1"
        self.layout = layout
        self.cluster_width = len(CLUSTER_COLUMNS[layout])
        self.larsight = "larsight_meta" in f
        self.larsight_names = [n for n in LARSIGHT_JSON + LARSIGHT_ARRAYS if n in f]
        if self.larsight:
            for name in self.larsight_names:
                self._check_rows(f, name, vlen=name in LARSIGHT_ARRAYS)
        self.checksum_columns: list[str] = []
        if CHECKSUMS in f:
            self._check_checksums(f, f[CHECKSUMS])

    def _check_checksums(self, f, ds) -> None:
        h5py = _h5py()
        columns = ds.attrs.get("columns")
        if isinstance(columns, bytes):
            columns = columns.decode("utf-8", "replace")
        try:
            columns = json.loads(columns) if isinstance(columns, str) else None
        except ValueError:
            columns = None
        if (not isinstance(ds, h5py.Dataset) or not isinstance(columns, list)
                or not all(isinstance(c, str) for c in columns)):
            raise EventError(f"{self.path}: dataset '{CHECKSUMS}' is damaged (no valid "
                             f"'columns' attribute)")
        if ds.ndim != 2 or ds.shape[1] != len(columns) or ds.dtype != np.uint32:
            raise EventError(f"{self.path}: dataset '{CHECKSUMS}' must be ({self.n}, "
                             f"{len(columns)}) uint32, got {ds.shape} {ds.dtype}")
        if ds.shape[0] != self.n:
            raise EventError(f"{self.path}: dataset '{CHECKSUMS}' has {ds.shape[0]} rows but "
                             f"'point' has {self.n}: the datasets do not describe the same events")
        self._check_storage(ds, CHECKSUMS, ds.shape[0])
        absent = [c for c in columns if c not in f]
        if absent:
            raise EventError(f"{self.path}: dataset(s) {', '.join(absent)} are missing (the "
                             f"checksums list them)")
        self.checksum_columns = columns

    def _check_storage(self, ds, name: str, n: int) -> None:
        """Refuse a row count the file cannot hold before anything is allocated for it: every
        row takes stored bytes (a 16-byte heap reference for variable-length rows), so a
        dataset whose chunks are missing or whose extent outgrows the file is forged or cut."""
        h5py = _h5py()
        if n == 0:
            return
        size = self.path.stat().st_size
        layout = ds.id.get_create_plist().get_layout()
        if layout == h5py.h5d.CHUNKED:
            per_chunk = int(ds.chunks[0])
            needed = -(-n // per_chunk)
            stored = int(ds.id.get_num_chunks())
            if stored < needed:
                raise EventError(f"{self.path}: dataset '{name}' declares {n} rows but the file "
                                 f"holds {size / 1024:.0f} KB with data for at most "
                                 f"{stored * per_chunk} of them ({stored} of {needed} chunks)")
        elif layout == h5py.h5d.CONTIGUOUS and ds.size * ds.dtype.itemsize > size:
            raise EventError(f"{self.path}: dataset '{name}' declares {n} rows "
                             f"({ds.size * ds.dtype.itemsize / 1024:.0f} KB) but the file holds "
                             f"{size / 1024:.0f} KB")

    def _check_rows(self, f, name: str, vlen: bool = True) -> int:
        h5py = _h5py()
        ds = f[name]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise EventError(f"{self.path}: dataset '{name}' must be one row per event "
                             f"(1-D), got {getattr(ds, 'shape', type(ds).__name__)}")
        if vlen:
            base = h5py.check_vlen_dtype(ds.dtype)
            if base is None or base.kind not in "iuf":
                raise EventError(f"{self.path}: dataset '{name}' must hold variable-length numeric "
                                 f"rows, got dtype {ds.dtype}")
        n = len(ds)
        self._check_storage(ds, name, n)
        if hasattr(self, "n") and n != self.n:
            raise EventError(f"{self.path}: dataset '{name}' has {n} rows but 'point' has "
                             f"{self.n}: the datasets do not describe the same events")
        return n


def _rows(f, info: _Info, start: int, stop: int) -> list[dict]:
    """Raw rows of events start..stop-1 (one dict per event)."""
    names = ["point"] + [n for n in ("cluster", "cluster_extra") if n in f]
    names += info.larsight_names if info.larsight else []
    cols = {}
    for name in names + ([CHECKSUMS] if info.checksum_columns else []):
        ds = f[name]
        if name in LARSIGHT_JSON:
            ds = ds.asstr() if _h5py().check_string_dtype(ds.dtype) else ds
        try:
            cols[name] = ds[start:stop]
        except Exception as exc:
            text = " ".join(str(exc).split())
            if any(w in text.lower() for w in ("fletcher32", "checksum", "filter returned failure")):
                raise EventFileError(f"{info.path}: dataset '{name}' fails its HDF5 checksum "
                                     f"(fletcher32) for events {start}..{stop - 1}: the file was "
                                     f"damaged after it was written") from None
            raise EventFileError(f"{info.path}: cannot read dataset '{name}' for events "
                                 f"{start}..{stop - 1} (corrupt or truncated file?): {text}") from None
    rows = [{name: cols[name][k] for name in names} for k in range(stop - start)]
    if info.checksum_columns:
        for k, row in enumerate(rows):
            _verify(row, cols[CHECKSUMS][k], info, start + k)
    return rows


def _row_crc(value) -> int:
    if isinstance(value, str):
        return zlib.crc32(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        return zlib.crc32(value)
    return zlib.crc32(np.ascontiguousarray(value).tobytes())


def _verify(row: dict, crcs: np.ndarray, info: _Info, index: int) -> None:
    for name, expected in zip(info.checksum_columns, crcs):
        if name in row and _row_crc(row[name]) != int(expected):
            raise EventFileError(f"{info.path}: event {index}: dataset '{name}' fails its "
                                 f"checksum ({CHECKSUMS}): the file was damaged after it was "
                                 f"written")


def _as_int(values: np.ndarray, what: str, path, index: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise EventError(f"{path}: event {index}: {what} holds non-integer values")
    return arr.astype(np.int64)


def _point_rows(row: dict, path, index: int) -> np.ndarray:
    """The event's 'point' row as (N, 8)."""
    flat = np.asarray(row["point"])
    if flat.size % 8:
        raise EventError(f"{path}: event {index}: 'point' row has {flat.size} values, not a "
                         f"multiple of 8 (x, y, z, voxel value, energy deposit, time, electrons, dx)")
    return flat.reshape(-1, 8)


def _meta(row: dict, info: _Info, index: int) -> tuple[Optional[dict], dict]:
    """(the larsight_meta record, None in a foreign file; the event's meta fields)."""
    path = info.path
    record = None
    if info.larsight:
        record = parse_json(row.get("larsight_meta"), "larsight_meta", path, index)
        if record is None:  # larsight writes it for every event: an empty row is damage
            raise EventError(f"{path}: event {index}: larsight_meta is empty (a row added or "
                             f"damaged after larsight wrote the file)")
    try:
        meta = meta_fields(record) if record else {"volume": PILARNET_VOLUME, "generator": "PILArNet-M"}
    except EventError as exc:
        raise EventError(f"{path}: event {index}: {exc}") from None
    return record, meta


def _cluster_extra(row: dict, k: int, path, index: int) -> np.ndarray:
    """The 'cluster_extra' row as (k, 5 or 6) for the event's k clusters."""
    ex = np.asarray(row["cluster_extra"], dtype=np.float64)
    if (k == 0 and ex.size) or (k and ex.size not in (5 * k, 6 * k)):
        raise EventError(f"{path}: event {index}: 'cluster_extra' has {ex.size} values "
                         f"for {k} clusters (expected 5 or 6 per cluster)")
    return ex.reshape(k, -1) if k else ex.reshape(0, 5)


def _cluster_labels(row: dict, info: _Info, index: int, n: int,
                    arrays: dict[str, Any]) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Spread the cluster labels over the event's ``n`` points into ``arrays``; return the
    (clusters, cluster_extra) rows, None where the file has no such dataset."""
    if "cluster" not in row:
        return None, None
    path = info.path
    cl_flat = _as_int(row["cluster"], "'cluster'", path, index)
    width = info.cluster_width
    if cl_flat.size % width:
        raise EventError(f"{path}: event {index}: 'cluster' row has {cl_flat.size} values, "
                         f"not a multiple of {width} ({info.layout} layout: "
                         f"{', '.join(CLUSTER_COLUMNS[info.layout])})")
    cl = cl_flat.reshape(-1, width)
    counts = cl[:, 0]
    if np.any(counts < 0):
        raise EventError(f"{path}: event {index}: 'cluster' has a negative number of points")
    if int(counts.sum()) != n:
        raise EventError(f"{path}: event {index}: mismatched point/cluster counts: the "
                         f"clusters cover {int(counts.sum())} points but the event has {n}")
    extra = _cluster_extra(row, len(cl), path, index) if "cluster_extra" in row else None
    arrays["fragment"] = np.repeat(cl[:, 1], counts)
    arrays["particle"] = np.repeat(cl[:, 2], counts)
    arrays["interaction"] = np.repeat(cl[:, 3], counts)
    arrays["semantic"] = np.repeat(cl[:, 4], counts)
    if width == 6:
        arrays["pid"] = np.repeat(cl[:, 5], counts)
    elif info.larsight and "larsight_cluster_pid" in row:
        cpid = _as_int(row["larsight_cluster_pid"], "'larsight_cluster_pid'", path, index)
        if cpid.size != len(cl):
            raise EventError(f"{path}: event {index}: 'larsight_cluster_pid' has {cpid.size} "
                             f"values for {len(cl)} clusters")
        arrays["pid"] = np.repeat(cpid, counts)
    return cl, extra


def _as_written(record: dict, row: dict, arrays: dict[str, Any], n: int, path,
                index: int) -> dict[str, Any]:
    """The arrays as larsight held them: only those it stored, the exact cm points where the
    voxel coordinates could not carry them, and the points in their original order."""
    present = set(record.get("arrays", OPTIONAL_ARRAYS))
    arrays = {k: v for k, v in arrays.items() if k in ("points", "energy") or k in present}
    exact = np.asarray(row.get("larsight_points_cm", ()), dtype=np.float32)
    if exact.size:
        if exact.size != 3 * n:
            raise EventError(f"{path}: event {index}: 'larsight_points_cm' has {exact.size} "
                             f"values for {n} points")
        arrays["points"] = exact.reshape(n, 3)
    order = np.asarray(row.get("larsight_order", ()), dtype=np.int64)
    if order.size:
        if order.size != n or not np.array_equal(np.sort(order), np.arange(n)):
            raise EventError(f"{path}: event {index}: 'larsight_order' is not a permutation "
                             f"of the event's {n} points")
        for name, arr in arrays.items():
            out = np.empty_like(arr)
            out[order] = arr
            arrays[name] = out
    return arrays


def _decode(row: dict, info: _Info, index: int) -> Event:
    path = info.path
    pts = _point_rows(row, path, index)
    n = len(pts)
    record, meta = _meta(row, info, index)
    volume: Volume = meta["volume"]
    arrays: dict[str, Any] = {
        "points": _to_cm(pts[:, :3], volume),
        "energy": pts[:, 3],
        "time_us": pts[:, 5],
        "n_electrons": pts[:, 6],
        "dx_cm": pts[:, 7],
    }
    cl, extra = _cluster_labels(row, info, index, n, arrays)
    if record is not None:
        arrays = _as_written(record, row, arrays, n, path, index)
        particles = particles_from(parse_json(row.get("larsight_particles"), "larsight_particles",
                                              path, index), path, index)
        interactions = interactions_from(parse_json(row.get("larsight_interactions"),
                                                    "larsight_interactions", path, index), path, index)
    else:
        particles = ([] if cl is None
                     else particles_from_clusters(cl, extra, pts[:, 3], volume, path, index))
        interactions = []
    return build_event(path, index, arrays, particles, interactions, meta)


def _inspect(f, path: Path) -> _Info:
    try:
        return _Info(f, path)
    except EventError:
        raise
    except Exception as exc:  # metadata of a damaged file
        raise EventError(f"{path}: cannot read the file's structure (corrupt or truncated "
                         f"file?): {exc}") from None


def _decode_checked(row: dict, info: _Info, index: int) -> Event:
    try:
        return _decode(row, info, index)
    except EventError:
        raise
    except Exception as exc:  # anything unforeseen in a damaged or odd file
        raise EventError(f"{info.path}: event {index}: cannot decode it: {exc!r}") from None


def count(path: Path) -> int:
    with _open(path) as f:
        return _inspect(f, path).n


def read_one(path: Path, index: Any) -> Event:
    with _open(path) as f:
        info = _inspect(f, path)
        i = check_index(path, index, info.n)
        return _decode_checked(_rows(f, info, i, i + 1)[0], info, i)


def read_range(path: Path, start: int, stop: int) -> list[Event]:
    with _open(path) as f:
        info = _inspect(f, path)
        start, stop = max(0, min(start, info.n)), max(0, min(stop, info.n))
        rows = _rows(f, info, start, stop) if stop > start else []
        return [_decode_checked(row, info, start + k) for k, row in enumerate(rows)]


def iterate(path: Path) -> Iterator[Event]:
    """Events one at a time; the file is open only while the iterator runs."""
    with _open(path) as f:
        info = _inspect(f, path)
        for start in range(0, info.n, _READ_BLOCK):
            stop = min(start + _READ_BLOCK, info.n)
            rows = _rows(f, info, start, stop)
            for k, row in enumerate(rows):
                rows[k] = None  # free each raw row once decoded
                yield _decode_checked(row, info, start + k)


# ====================================================================== writing
def _to_cm(idx: np.ndarray, vol: Volume) -> np.ndarray:
    """Voxel coordinates -> float32 cm, the one formula used by the reader and the writer."""
    with np.errstate(all="ignore"):
        return (idx.astype(np.float64) * vol.voxel_size_cm + vol.lower_cm).astype(np.float32)


def _voxel_coordinates(points: np.ndarray, vol: Volume) -> tuple[np.ndarray, bool]:
    """float32 voxel coordinates for ``point`` columns 0-2, and whether they reproduce the cm
    points bit for bit. Integers (exact voxel indices, as in the real files) where they do,
    else the fractional voxel coordinate."""
    with np.errstate(all="ignore"):
        frac = (points.astype(np.float64) - vol.lower_cm) / vol.voxel_size_cm
    whole = np.round(frac)
    idx = np.where(_to_cm(whole, vol) == points, whole, frac).astype(np.float32)
    return idx, bool(np.array_equal(_to_cm(idx, vol), points))


def encode(ev: Event, layout: str = "v2") -> dict[str, Any]:
    """One event as rows of the PILArNet-M datasets plus larsight's extra datasets."""
    n = len(ev)
    vol = ev.meta.volume
    origin = vol.lower_cm
    idx, exact = _voxel_coordinates(ev.points, vol)

    def labels(name):
        arr = getattr(ev, name)
        return np.full(n, -1, np.int64) if arr is None else arr.astype(np.int64)

    group, frag, inter, sem, pid = (labels(k) for k in ("particle", "fragment", "interaction",
                                                       "semantic", "pid"))
    order = np.lexsort((pid, sem, inter, frag, group))  # stable; the group is the primary key
    keys = np.stack([frag, group, inter, sem, pid], axis=1)[order]
    if n:
        starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
        counts = np.diff(np.r_[starts, n])
    else:
        starts = counts = np.zeros(0, np.int64)
    cluster = np.column_stack([counts, keys[starts]]).astype(np.int32).reshape(-1, 6)

    def column(name):
        arr = getattr(ev, name)
        return np.zeros(n, np.float32) if arr is None else arr[order]

    energy = ev.energy[order]
    point = np.column_stack([idx[order], energy, energy, column("time_us"),
                             column("n_electrons"), column("dx_cm")]).astype(np.float32)

    rows: dict[str, Any] = {"point": point.ravel()}
    if layout == "v2":
        rows["cluster"] = cluster.ravel()
        by_id = {p.id: p for p in ev.particles}
        extra = np.zeros((len(cluster), 5), np.float32)
        for r, g in enumerate(cluster[:, 2]):
            p = by_id.get(int(g)) if g >= 0 else None
            if p is not None:
                extra[r, 1] = momentum_magnitude(p)
                extra[r, 2:5] = (np.asarray(p.start_cm) - origin) / vol.voxel_size_cm
        rows["cluster_extra"] = extra.ravel()
    else:
        rows["cluster"] = cluster[:, :5].ravel()
        rows["larsight_cluster_pid"] = cluster[:, 5].copy()
    rows["larsight_meta"] = dumps(meta_record(ev))
    rows["larsight_particles"] = particles_json(ev)
    rows["larsight_interactions"] = interactions_json(ev)
    identity = np.array_equal(order, np.arange(n))
    rows["larsight_order"] = np.zeros(0, np.int32) if identity else order.astype(np.int32)
    rows["larsight_points_cm"] = (np.zeros(0, np.float32) if exact
                                  else ev.points[order].astype(np.float32).ravel())
    return rows


class _Writer:
    def __init__(self, f, layout: str):
        h5py = _h5py()
        self.f = f
        self.n = 0
        vf, vi, st = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.int32), h5py.string_dtype("utf-8")
        names = {"point": vf, "cluster": vi}
        if layout == "v2":
            names["cluster_extra"] = vf
        names.update({"larsight_meta": st, "larsight_particles": st, "larsight_interactions": st,
                      "larsight_order": vi, "larsight_points_cm": vf})
        if layout == "v1":
            names["larsight_cluster_pid"] = vi
        self.ds = {name: f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt,
                                          chunks=(_CHUNK,))
                   for name, dt in names.items()}
        self.columns = list(names)
        self.crc = f.create_dataset(CHECKSUMS, shape=(0, len(names)), maxshape=(None, len(names)),
                                    dtype=np.uint32, chunks=(_CHUNK, len(names)), fletcher32=True)
        self.crc.attrs["columns"] = json.dumps(self.columns)
        self.crc.attrs["description"] = ("CRC-32 (zlib) of each event's row of each dataset in "
                                         "'columns' (little-endian values; UTF-8 for text)")
        f.attrs["larsight_layout"] = layout
        f.attrs["larsight_format_version"] = FORMAT_VERSION
        f.attrs["larsight_description"] = (
            "PILArNet-M schema (point/cluster/cluster_extra) written by larsight; the larsight_* "
            "datasets hold extra truth (JSON per event) and are ignored by PILArNet readers")
        self.buffer: list[dict] = []
        self.values = 0

    def add(self, rows: dict) -> None:
        for name, ds in self.ds.items():
            if name not in LARSIGHT_JSON:  # the bytes the file will hold, as read back
                rows[name] = np.ascontiguousarray(rows[name], dtype=_h5py().check_vlen_dtype(ds.dtype))
        rows[CHECKSUMS] = np.array([_row_crc(rows[name]) for name in self.columns], np.uint32)
        self.buffer.append(rows)
        self.values += rows["point"].size
        if len(self.buffer) >= _WRITE_EVENTS or self.values >= _WRITE_VALUES:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        h5py = _h5py()
        k = len(self.buffer)
        for name, ds in self.ds.items():
            ds.resize((self.n + k,))
            if name in LARSIGHT_JSON:
                ds[self.n:self.n + k] = [rows[name] for rows in self.buffer]
                continue
            # vlen numeric rows through the low-level API: the high-level one turns a block of
            # equal-length rows into a 2-D array and then refuses it
            col = np.empty(k, dtype=ds.dtype)
            for j, rows in enumerate(self.buffer):
                col[j] = rows[name]
            file_space = ds.id.get_space()
            file_space.select_hyperslab((self.n,), (k,))
            ds.id.write(h5py.h5s.create_simple((k,)), file_space, col)
        self.crc.resize((self.n + k, len(self.columns)))
        self.crc[self.n:self.n + k] = np.stack([rows[CHECKSUMS] for rows in self.buffer])
        self.n += k
        self.buffer.clear()
        self.values = 0


def write(path: Path, events: Iterable, *, progress: bool = False, layout: str = "v2",
          total: Optional[int] = None) -> int:
    if layout not in LAYOUTS:
        raise ValueError(f"PILArNet-M layout must be one of {LAYOUTS}, got {layout!r}")
    h5py = _h5py()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            writer = _Writer(f, layout)
            for i, item in enumerate(with_progress(events, progress, total, f"write {path.name}")):
                writer.add(encode(as_event(item, i, path), layout))
            writer.flush()
            n = writer.n
    return n


__all__ = ["count", "read_one", "read_range", "iterate", "write", "encode", "POINT_COLUMNS", "CLUSTER_COLUMNS",
           "CLUSTER_EXTRA_COLUMNS", "LAYOUTS"]
