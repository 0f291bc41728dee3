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

The space
---------
Events and texts are compared in the VLM's stage-1 aligned event-text space (cosine similarity
of unit vectors): an event's vector is ``VLM.embed`` (frozen encoder -> Q-Former projector ->
``event_head``), a text's is ``VLM.embed_text`` (language-model hidden states -> ``text_head``).
``EventEmbedder`` loads only the encoder and the projector of a VLM folder (``vlm.json`` names
the encoder checkpoint); the language model loads lazily, the first time a text query arrives.
The encoder's own pooled embedding is stored too (``encoder_vector``) for encoder-only studies.

The index
---------
A folder (default ``$LARSIGHT_INDEX``, else ``$XDG_DATA_HOME/larsight/index``, i.e.
``~/.local/share/larsight/index``) holding::

    index.json     manifest: format, the live table and its version, number of events, the
                   model that produced the vectors (VLM folder, encoder checkpoint, language
                   model, and a fingerprint of the encoder + projector weights), build history
    lance/         an embedded LanceDB database, one table ``events_<stamp>`` with a row per
                   event (columns: ``INDEX_COLUMNS`` and the vectors)

One row per event: ``id``, ``key`` (``/abs/file.h5:12`` or ``sim:nu:seed=3:voxel=0.6:index=12``,
enough to get the event back), ``source`` / ``event_index`` / ``mode`` / ``seed`` /
``voxel_size_cm``, the event class (truth when the event carries it, else the encoder event
head's prediction; ``class_source`` says which), ``visible_energy_mev`` (deposited energy),
``n_points``, the ``topology`` string and particle counts (``qformer.corpus.event_facts`` /
``topology_string`` conventions; null when the event carries no truth), neutrino energy and
channel (truth), ``vector`` (aligned space) and ``encoder_vector``. Filters are SQL over these
columns, e.g. ``"event_class = 'nue_cc' AND visible_energy_mev > 500"``.

Model identity: queries embed with the model recorded in the manifest and refuse any other
(``IndexModelMismatchError``): vectors of two models are not comparable. The fingerprint hashes
the weights themselves, so a VLM folder retrained in place is caught too.

Atomicity: a build writes a new table and commits by atomically replacing ``index.json``
(then drops the old table); a crash at any point leaves the previous index as it was. An
append adds rows to the live table as new versions and commits the new version in the
manifest; readers always open the manifest's version, so a crashed append is invisible and the
next append rolls it back. One writer at a time (a lock file guards it).

Scale: tables of at least ``ANN_MIN_ROWS`` rows get an HNSW vector index (IVF_HNSW_SQ, with
exact re-ranking of the candidates); smaller ones are searched exactly. The Ray Data build
(``ray=True``) embeds on an actor pool and streams rows back to the writer, so millions of
events can be embedded on a cluster; see ``tools.index_build``.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence, Union

import numpy as np
from pydantic import BaseModel, Field

from larsight.events.model import EVENT_CLASSES, Event, EventError

__all__ = [
    "find_similar", "build_index", "EventIndex", "EventEmbedder", "EventRef", "SimilarEvent",
    "SimilarResult", "IndexNotFoundError", "IndexModelMismatchError", "default_index_path",
    "parse_event_ref", "event_metadata", "INDEX_ENV", "INDEX_COLUMNS",
]

INDEX_FORMAT = "larsight-index"
INDEX_FORMAT_VERSION = 1
INDEX_ENV = "LARSIGHT_INDEX"
MANIFEST_NAME = "index.json"
DB_DIR = "lance"
TABLE_PREFIX = "events_"
VECTOR = "vector"
ENCODER_VECTOR = "encoder_vector"
DEFAULT_SIM_VOXEL_CM = 0.6
"""Grid of simulated events when a spec does not say (the encoder's and the VLM's training grid)."""
ANN_MIN_ROWS = 50_000
"""From this many rows, builds add an HNSW vector index (below, exact search is fast enough)."""
EVENT_FILE_SUFFIXES = (".h5", ".hdf5", ".root")

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


# ============================================================================ event references
_SIM_KEY = re.compile(r"^sim:(?P<body>.+)$")


@dataclass(frozen=True)
class EventRef:
    """Where one event comes from: a file and an index, or a simulator mode, seed and index.
    Small and picklable (it is what a Ray build ships to its workers)."""

    source: str
    """Absolute file path, or ``sim:<mode>``."""
    index: int
    seed: Optional[int] = None
    voxel_size_cm: Optional[float] = None

    @property
    def is_sim(self) -> bool:
        return self.source.startswith("sim:")

    @property
    def mode(self) -> Optional[str]:
        return self.source[4:] if self.is_sim else None

    @property
    def key(self) -> str:
        if self.is_sim:
            vs = self.voxel_size_cm if self.voxel_size_cm is not None else DEFAULT_SIM_VOXEL_CM
            return f"sim:{self.mode}:seed={self.seed}:voxel={vs:g}:index={self.index}"
        return f"{self.source}:{self.index}"

    def load(self) -> Event:
        """The event: read from its file, or simulated again (events are reproducible)."""
        if self.is_sim:
            from larsight.events.sim import MODES

            from larsight.encoder.data import volume_for

            if self.mode not in MODES:
                raise ValueError(f"{self.key}: unknown simulator mode {self.mode!r}; "
                                 f"known {sorted(MODES)}")
            vs = self.voxel_size_cm if self.voxel_size_cm is not None else DEFAULT_SIM_VOXEL_CM
            vs = round(float(vs), 6)  # a float32 round trip must not change the grid
            return MODES[self.mode](seed=int(self.seed or 0), index=int(self.index),
                                    volume=volume_for(vs))
        from larsight.events.formats import read

        if not Path(self.source).exists():
            from .inputs import EventFileNotFoundError

            raise EventFileNotFoundError(f"event file not found: {self.source} (it held event "
                                         f"{self.key} when it was indexed)")
        return read(self.source, int(self.index))

    def to_dict(self) -> dict:
        return {"source": self.source, "index": int(self.index), "seed": self.seed,
                "voxel_size_cm": self.voxel_size_cm}

    @classmethod
    def from_dict(cls, d: dict) -> "EventRef":
        seed, vs = d.get("seed"), d.get("voxel_size_cm")
        ok = lambda v: v is not None and not (isinstance(v, float) and np.isnan(v))
        return cls(str(d["source"]), int(d["index"]), int(seed) if ok(seed) else None,
                   float(vs) if ok(vs) else None)

    @classmethod
    def of_event(cls, event: Event) -> Optional["EventRef"]:
        """The reference an event's ``meta`` records (file + index, or simulator + seed)."""
        m = event.meta
        if m.source is not None and m.index is not None:
            return cls(str(Path(m.source).resolve()), int(m.index))
        gen = m.generator or ""
        mode = re.search(r"\((\w+)\)", gen)
        if gen.startswith("larsight.sim") and mode and m.seed is not None and m.event_id is not None:
            return cls(f"sim:{mode.group(1)}", int(m.event_id), int(m.seed),
                       float(m.volume.voxel_size_cm))
        return None


def _parse_sim_fields(body: str, what: str) -> tuple[str, dict[str, str]]:
    parts = body.split(":")
    modes, fields = parts[0], {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what}: expected NAME=VALUE after the mode, got {part!r}")
        fields[name.strip()] = value.strip()
    return modes, fields


def parse_event_ref(text: Union[str, os.PathLike, tuple]) -> EventRef:
    """The ``EventRef`` (what an index row points at) of ``FILE:INDEX``, ``(FILE, INDEX)``,
    ``FILE`` (a one-event file) or ``sim:MODE:seed=S[:voxel=CM]:index=I``.

    Unlike ``tools.inputs.parse_ref``, which only splits ``"path:index"`` into its parts, this
    checks the file and resolves the index (absolute path, index counted from the start).
    File references follow the tools' convention (``tools.inputs``): a missing file raises
    ``EventFileNotFoundError``, an index the file does not have or a several-event file
    without an index ``ToolInputError``; negative indices count from the end."""
    from .inputs import ToolInputError, checked_index
    from .inputs import parse_ref as split_path_index

    if isinstance(text, tuple):
        if len(text) != 2 or isinstance(text[1], bool) or not isinstance(text[1], (int, np.integer)):
            raise ToolInputError(f"event reference {text!r}: expected (path, integer index)")
        path, index = Path(os.fspath(text[0])).expanduser(), int(text[1])
    else:
        s = str(os.fspath(text)).strip()
        m = _SIM_KEY.match(s)
        if m:
            mode, f = _parse_sim_fields(m.group("body"), f"event reference {s!r}")
            unknown = set(f) - {"seed", "voxel", "index"}
            if unknown or "index" not in f or "," in mode:
                raise ValueError(f"event reference {s!r}: expected "
                                 f"sim:MODE:seed=S[:voxel=CM]:index=I")
            try:
                return EventRef(f"sim:{mode}", int(f["index"]), int(f.get("seed", 0)),
                                float(f.get("voxel", DEFAULT_SIM_VOXEL_CM)))
            except ValueError:
                raise ValueError(f"event reference {s!r}: seed and index must be integers, "
                                 f"voxel a number (sim:MODE:seed=S[:voxel=CM]:index=I)") from None
        path, index = split_path_index(s)
    index, _ = checked_index(path, index)
    return EventRef(str(path.resolve()), index)



def _looks_like_ref(s: str) -> bool:
    """A query string that names an event (rather than a text to search for)."""
    s = s.strip()
    if not s or "\n" in s:
        return False
    if _SIM_KEY.match(s) and ":index=" in s and " " not in s:
        return True
    p = Path(re.sub(r":-?\d+$", "", s)).expanduser()
    if p.is_file():
        return True
    head, sep, _ = s.rpartition(":")
    if sep and head and not re.search(r"\s", s) and (
            Path(head).expanduser().is_file() or Path(head).suffix.lower() in EVENT_FILE_SUFFIXES):
        return True        # 'file.h5:<not an integer>': a bad reference, not a text
    # a missing event file is an error (not a text query) when it looks like one
    return not re.search(r"\s", s) and p.suffix.lower() in EVENT_FILE_SUFFIXES


# ============================================================================ metadata
def event_metadata(event: Event, predicted_probs: Optional[np.ndarray] = None) -> dict[str, Any]:
    """The index's metadata columns of one event (without id / key / source columns).

    Truth (class, topology, counts, neutrino energy) comes from the event's own tables or
    per-point labels through ``qformer.corpus.event_facts``; ``predicted_probs`` (the encoder
    event head, over ``EVENT_CLASSES``) fills the class of events without truth."""
    from larsight.qformer.corpus import NoTruthError, event_facts, topology_string

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
    import pyarrow as pa

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
    import pyarrow as pa

    cols = {}
    for f in schema:
        if f.name == VECTOR:
            v = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(rows), -1)
            cols[f.name] = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])
        elif f.name == ENCODER_VECTOR:
            if encoder_vectors is None:
                cols[f.name] = pa.nulls(len(rows), f.type)
            else:
                v = np.ascontiguousarray(encoder_vectors, dtype=np.float32).reshape(len(rows), -1)
                cols[f.name] = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])
        else:
            cols[f.name] = pa.array([r.get(f.name) for r in rows], type=f.type)
    return pa.Table.from_pydict(cols, schema=schema)


# ============================================================================ the embedder
def weights_fingerprint(*modules) -> str:
    """sha256 (first 16 hex digits) over the names, shapes, dtypes and bytes of the modules'
    tensors: the identity of the weights that produce an index's vectors."""
    import torch

    h = hashlib.sha256()
    for mod in modules:
        for name, t in sorted(mod.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class EventEmbedder:
    """The event side of a VLM (frozen encoder + projector) and, loaded on first use, its text
    side (the language model), for retrieval.

        emb = EventEmbedder.load("checkpoints/vlm_smollm2")   # no language model loaded
        emb.embed(events)               # (B, D) unit vectors, = VLM.embed
        emb.embed_text(["nu_e CC"])     # loads the LM once, then (B, D) unit vectors
    """

    def __init__(self, encoder, projector, *, manifest: Optional[dict] = None,
                 vlm_dir: Optional[Union[str, Path]] = None, vlm=None):
        """``encoder``: an ``encoder.EncoderModel``; ``projector``: a
        ``qformer.projector.EventProjector``; ``manifest``: the VLM manifest (``lm``,
        ``quantization``, ``physics_prompt``, ``encoder_checkpoint``...). ``vlm`` optionally
        gives an already loaded ``qformer.VLM`` for text queries."""
        if projector.config.encoder_dim != encoder.embedding_dim:
            raise ValueError(f"EventEmbedder: projector expects encoder width "
                             f"{projector.config.encoder_dim}, the encoder has {encoder.embedding_dim}")
        self.encoder = encoder
        self.projector = projector.to(encoder.device).eval()
        self.manifest = dict(manifest or {})
        self.vlm_dir = Path(vlm_dir).resolve() if vlm_dir is not None else None
        self._vlm = vlm
        self._fingerprint: Optional[str] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, vlm_dir: Optional[Union[str, Path]] = None, device: Any = None) -> "EventEmbedder":
        """Encoder + projector of a saved VLM folder (default ``checkpoints/vlm_smollm2``);
        the language model is not loaded."""
        from larsight.encoder import load_model
        from larsight.qformer.projector import EventProjector
        from larsight.qformer.vlm import DEFAULT_VLM_DIR, MANIFEST, _resolve

        folder = Path(vlm_dir) if vlm_dir is not None else DEFAULT_VLM_DIR
        mpath = folder / MANIFEST
        if not mpath.exists():
            raise FileNotFoundError(
                f"{folder}: no {MANIFEST}; retrieval embeds with a trained VLM: train one with "
                f"`larsight align --stage 1` (see qformer/align.py) or pass its folder "
                f"(--vlm / vlm=)")
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != "larsight-vlm":
            raise ValueError(f"{mpath}: not a larsight VLM manifest")
        if "encoder_checkpoint" not in manifest:
            raise ValueError(f"{mpath}: names no encoder_checkpoint")
        encoder = load_model(_resolve(manifest["encoder_checkpoint"], folder), device=device)
        projector = EventProjector.from_pretrained(folder / "projector")
        return cls(encoder, projector, manifest=manifest, vlm_dir=folder)

    @classmethod
    def from_vlm(cls, vlm) -> "EventEmbedder":
        """Share the parts of a loaded ``qformer.VLM`` (its language model serves text queries)."""
        return cls(vlm.encoder, vlm.projector, manifest=vlm.manifest, vlm=vlm)

    # ------------------------------------------------------------------ identity
    @property
    def device(self):
        return self.encoder.device

    @property
    def embed_dim(self) -> int:
        return int(self.projector.config.embed_dim)

    @property
    def encoder_dim(self) -> int:
        return int(self.encoder.embedding_dim)

    @property
    def fingerprint(self) -> str:
        """Hash of the weights that make event vectors (encoder backbone + projector)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.encoder.encoder, self.projector)
        return self._fingerprint

    @property
    def lm_name(self) -> Optional[str]:
        return self.manifest.get("lm")

    def model_info(self) -> dict[str, Any]:
        """What the index manifest records about the model."""
        m = self.manifest
        return {"fingerprint": self.fingerprint,
                "vlm_dir": str(self.vlm_dir) if self.vlm_dir is not None else None,
                "encoder_checkpoint": str(self.encoder.path) if self.encoder.path else
                m.get("encoder_checkpoint"),
                "lm": m.get("lm"), "quantization": m.get("quantization", "none"),
                "vlm_kind": m.get("kind"), "vlm_step": m.get("step"),
                "embed_dim": self.embed_dim, "encoder_dim": self.encoder_dim}

    def __repr__(self) -> str:
        return (f"EventEmbedder({self.vlm_dir or 'in memory'}, embed_dim={self.embed_dim}, "
                f"fingerprint={self.fingerprint}, lm={'loaded' if self._vlm else 'not loaded'})")

    # ------------------------------------------------------------------ events
    def encode(self, events: Sequence[Event], batch_size: int = 8) -> dict[str, Optional[np.ndarray]]:
        """One encoder pass per batch: ``vector`` (B, D) aligned unit vectors (= ``VLM.embed``),
        ``encoder_vector`` (B, E) pooled encoder embeddings, ``class_probs`` (B, 3) from the
        encoder's event head (None without one). Every event needs at least one point."""
        import torch

        evs = list(events)
        for i, e in enumerate(evs):
            if not isinstance(e, Event):
                raise TypeError(f"EventEmbedder: item {i} is {type(e).__name__}, not an events.Event")
            if len(e) == 0:
                raise ValueError(f"EventEmbedder: event {i} has no points")
        has_head = "event" in self.encoder.heads
        vec, enc, probs = [], [], []
        with torch.no_grad():
            for s in range(0, len(evs), max(1, int(batch_size))):
                chunk = evs[s:s + batch_size]
                # one encoder pass (re-voxelised onto its grid) for the event tokens, the
                # pooled embedding and the event head
                out, heads = self.encoder.forward_events(chunk, heads=("event",))
                proj = self.projector(out.event_tokens.float(), out.event_token_mask,
                                      out.event_token_coords.float())
                vec.append(proj.event_embed.float().cpu().numpy())
                enc.append(out.pooled.float().cpu().numpy())
                if has_head:
                    probs.append(heads["event"]["logits"].softmax(1).float().cpu().numpy())
        empty = lambda d: np.zeros((0, d), dtype=np.float32)
        return {"vector": np.concatenate(vec) if vec else empty(self.embed_dim),
                "encoder_vector": np.concatenate(enc) if enc else empty(self.encoder_dim),
                "class_probs": (np.concatenate(probs) if probs else empty(len(EVENT_CLASSES)))
                if has_head else None}

    def embed(self, events: Union[Event, Iterable[Event]], batch_size: int = 8) -> np.ndarray:
        """(B, D) unit vectors of events in the aligned space."""
        evs = [events] if isinstance(events, Event) else list(events)
        return self.encode(evs, batch_size)["vector"]

    # ------------------------------------------------------------------ texts
    @property
    def vlm(self):
        """The full VLM (the language model loads here, once)."""
        with self._lock:
            if self._vlm is None:
                from larsight.qformer.lm import load_lm
                from larsight.qformer.vlm import VLM

                lm_name = self.manifest.get("lm")
                if not lm_name:
                    raise ValueError("EventEmbedder: the VLM manifest names no language model "
                                     "('lm'), so text queries are not possible")
                lm, tok = load_lm(lm_name, quantization=self.manifest.get("quantization", "none"),
                                  lora=False, device=self.device)
                self._vlm = VLM(self.encoder, self.projector, lm, tok,
                                physics_prompt=self.manifest.get("physics_prompt", True),
                                manifest=self.manifest)
            return self._vlm

    def embed_text(self, texts: Union[str, Sequence[str]], batch_size: int = 32) -> np.ndarray:
        """(B, D) unit vectors of texts in the aligned space (loads the LM on first use)."""
        return self.vlm.embed_text(texts, batch_size=batch_size)


_EMBEDDERS: dict[tuple, EventEmbedder] = {}


def cached_embedder(vlm_dir: Union[str, Path], device: Any = None) -> EventEmbedder:
    """``EventEmbedder.load`` once per folder (and manifest / weight file times) per process."""
    folder = Path(vlm_dir).resolve()
    stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0
                  for p in (folder / "vlm.json", folder / "projector" / "model.safetensors"))
    key = (str(folder), stamp, str(device))
    if key not in _EMBEDDERS:
        _EMBEDDERS.clear()  # one model per process is the normal case; do not pile them up
        _EMBEDDERS[key] = EventEmbedder.load(folder, device=device)
    return _EMBEDDERS[key]


# ============================================================================ the index
def _read_manifest(path: Path) -> dict:
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
    from larsight.events.formats.atomic import atomic_open

    with atomic_open(path / MANIFEST_NAME, "w") as f:
        f.write(json.dumps(manifest, indent=2, default=str) + "\n")


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
        from larsight.qformer.corpus import parse_topology, topology_string

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
        manifest = _read_manifest(p)
        import lancedb

        db = lancedb.connect(str(p / DB_DIR))
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
    event: Optional[Event] = None
    ref: Optional[EventRef] = None
    text: Optional[str] = None
    if isinstance(event_or_text, Event):
        event, ref = event_or_text, EventRef.of_event(event_or_text)
    elif isinstance(event_or_text, EventRef):
        ref = event_or_text
    elif isinstance(event_or_text, tuple):
        ref = parse_event_ref(event_or_text)
    elif isinstance(event_or_text, (str, os.PathLike)):
        s = str(event_or_text)
        if not s.strip():
            raise ValueError("find_similar: the query is empty")
        if isinstance(event_or_text, os.PathLike) or _looks_like_ref(s):
            ref = parse_event_ref(s)
        else:
            text = " ".join(s.split())
    else:
        from .inputs import ToolInputError

        raise ToolInputError(f"find_similar: expected an events.Event, 'path:index', a "
                             f"simulated-event key or a text, got {type(event_or_text).__name__}")
    if event is not None:       # a bad event fails before the index is opened
        from .inputs import load_event

        load_event(event, tool="find_similar")

    idx = open_index(index)
    if embedder is None and vlm is not None:
        embedder = cached_embedder(vlm)
    if embedder is not None:
        idx.check_model(embedder)

    t0 = time.perf_counter()
    vector = None
    if text is not None:
        emb = embedder or idx.embedder()
        idx.check_model(emb, text=True)
        vector = emb.embed_text([text])[0]
        label = text
    else:
        # a reference to an indexed event: its stored vector (no model needed); an Event
        # object is always embedded (it may differ from what was indexed)
        row = idx.lookup(ref.key) if (ref is not None and event is None) else None
        if row is not None:
            vector = np.asarray(row[VECTOR], dtype=np.float32)
            t0 = time.perf_counter()
        else:
            if event is None:
                event = ref.load()
            # the tools' checks (an empty or single-point event is refused with the tools'
            # message), naming the event by its reference when it has one
            from .inputs import ToolInputError, load_event

            try:
                load_event(event, tool="find_similar")
            except ToolInputError as err:
                msg = str(err)
                if ref is not None and "the event" in msg:
                    msg = msg.replace("the event", f"event {ref.key}", 1)
                raise ToolInputError(msg) from None
            emb = embedder or idx.embedder()
            vector = emb.embed([event])[0]
        label = ref.key if ref is not None else repr(event)
    embed_ms = (time.perf_counter() - t0) * 1e3

    filt = build_filter(where, event_class=event_class, topology=topology,
                        min_energy_mev=min_energy_mev, max_energy_mev=max_energy_mev, mode=mode,
                        exclude_key=ref.key if (exclude_self and ref is not None) else None)
    t1 = time.perf_counter()
    rows = idx.search(vector, int(k), filt, exact=exact)
    search_ms = (time.perf_counter() - t1) * 1e3
    hits = [SimilarEvent(rank=i + 1, **{f: r.get(f) for f in SimilarEvent.model_fields
                                        if f != "rank" and f in r})
            for i, r in enumerate(rows)]
    return SimilarResult(query=label, query_kind="text" if text is not None else "event", k=int(k),
                         where=filt, index_path=str(idx.path), n_indexed=idx.n_events,
                         model_fingerprint=idx.fingerprint, embed_ms=round(embed_ms, 3),
                         search_ms=round(search_ms, 3), hits=hits)


def build_index(*args, **kwargs):
    """Build (or extend) an event index; see ``tools.index_build.build_index``."""
    from .index_build import build_index as _build

    return _build(*args, **kwargs)


build_index.__doc__ = "Build (or extend) an event index; see ``tools.index_build.build_index``."
