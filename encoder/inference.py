"""Inference API of the encoder for the tools layer: a trained checkpoint in, physics out.

    from larsight.encoder import load_model
    model = load_model()                        # DEFAULT_CHECKPOINT, or load_model(path)
    preds = model.predict(events, batch_size=8) # list[EventPrediction], one per event
    preds[0].semantic        # (N,) class index per input point, in input order
    preds[0].vertex          # (3,) cm
    emb = model.embed(events)                   # (B, D) pooled embeddings (retrieval)

Events can be on any voxel grid. Events finer than the model's grid (e.g. 0.3 cm events
for a 0.6 cm model) are re-voxelised first the way the simulator voxelises: the points of
one model voxel merge into one point at the voxel's corner coordinate (the ``Volume``
convention, ``origin + index * voxel``) carrying their summed energy, so the model sees the
inputs it was trained on. Every per-point output is then broadcast back to each input point
(``EventPrediction.voxel`` says which merged point an input point belongs to), so per-point
arrays always have one row per input point, in input order. Events on the model's grid or a
coarser one are used as they are.

Grouping heads (particle / interaction) are decoded by ``encoder.heads.cluster_embeddings``
on the merged points; the vertex is the head's softmax-weighted vote, with a confidence (the
share of vote weight within ``VERTEX_CONFIDENCE_RADIUS_CM`` of the vertex) and the weighted
RMS spread of the votes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from larsight.events.model import EVENT_CLASSES, PID_CLASSES, SEMANTIC_CLASSES, Event

from .backbone import PointEncoder
from .checkpoint import CheckpointError, load_weights
from .data import batch_from_arrays, encoder_inputs, to_device
from .heads import TASKS, cluster_embeddings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "encoder_tiny" / "model.safetensors"
"""The shipped multi-task checkpoint (tiny encoder with every head)."""

TRAIN_HINT = ("train it with `larsight finetune --task all --mode full --init "
              "checkpoints/encoder_tiny_pretrained/encoder.safetensors --n-events all --steps 1500 "
              "--run-dir checkpoints/encoder_tiny` (writes checkpoints/encoder_tiny/model.safetensors; "
              "see checkpoints/README.md)")

VERTEX_CONFIDENCE_RADIUS_CM = 3.0


@dataclass
class EventPrediction:
    """Everything the encoder says about one event (numpy arrays; N = input points).

    Fields of heads the checkpoint does not have are None.
    """

    n_points: int
    voxel: np.ndarray
    """(N,) int64: index of the merged model-grid point each input point belongs to."""
    embedding: np.ndarray
    """(D,) float32 pooled event embedding."""
    tokens: np.ndarray
    """(T, D) float32 event tokens, zero-padded to the model's ``n_event_tokens``."""
    token_mask: np.ndarray
    """(T,) bool, True for real tokens."""
    token_coords: np.ndarray
    """(T, 3) float32 token positions, cm."""
    semantic_probs: Optional[np.ndarray] = None
    """(N, 5) float32 over ``SEMANTIC_CLASSES``; rows sum to 1."""
    semantic: Optional[np.ndarray] = None
    """(N,) int64 argmax of ``semantic_probs``."""
    pid_probs: Optional[np.ndarray] = None
    """(N, 6) float32 over ``PID_CLASSES``; rows sum to 1."""
    pid: Optional[np.ndarray] = None
    """(N,) int64 argmax of ``pid_probs``."""
    particle: Optional[np.ndarray] = None
    """(N,) int64 particle instance ids 0..K-1 (clustering of the grouping embedding)."""
    interaction: Optional[np.ndarray] = None
    """(N,) int64 interaction ids 0..K-1."""
    vertex: Optional[np.ndarray] = None
    """(3,) float64 interaction vertex, cm."""
    vertex_confidence: Optional[float] = None
    """Share (0..1) of the vote weight within ``VERTEX_CONFIDENCE_RADIUS_CM`` of ``vertex``."""
    vertex_spread_cm: Optional[float] = None
    """Weighted RMS distance of the votes from ``vertex``, cm."""
    event_probs: Optional[np.ndarray] = None
    """(3,) float32 over ``EVENT_CLASSES`` (nue_cc, numu_cc, nc); sums to 1."""
    extra: dict[str, Any] = field(default_factory=dict)

    semantic_classes: ClassVar[tuple[str, ...]] = SEMANTIC_CLASSES
    pid_classes: ClassVar[tuple[str, ...]] = PID_CLASSES
    event_classes: ClassVar[tuple[str, ...]] = EVENT_CLASSES

    @property
    def event_class(self) -> Optional[str]:
        """The most probable event class (None without an event head or for an empty event)."""
        if self.event_probs is None or not np.isfinite(self.event_probs).all():
            return None
        return EVENT_CLASSES[int(np.argmax(self.event_probs))]

    @property
    def n_particles(self) -> Optional[int]:
        return None if self.particle is None else int(len(np.unique(self.particle)))

    @property
    def n_interactions(self) -> Optional[int]:
        return None if self.interaction is None else int(len(np.unique(self.interaction)))


def to_model_grid(points: np.ndarray, energy: np.ndarray, volume, voxel_size_cm: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge points onto a grid of ``voxel_size_cm`` if the event's grid is finer.

    Returns (points (M, 3) float32, energy (M,) float32, inverse (N,) int64) with
    ``inverse[i]`` the merged point of input point ``i``. Merged points sit at the voxel
    corner (``volume.origin + index * voxel_size_cm``) and carry the summed energy.
    """
    points = np.asarray(points, dtype=np.float32)
    energy = np.asarray(energy, dtype=np.float32)
    n = len(points)
    if volume is None or float(volume.voxel_size_cm) >= voxel_size_cm * (1 - 1e-6) or n == 0:
        return points, energy, np.arange(n, dtype=np.int64)
    lower = np.asarray(volume.lower_cm, dtype=np.float64)
    idx = np.floor((points.astype(np.float64) - lower) / voxel_size_cm + 1e-3).astype(np.int64)
    idx -= idx.min(0)
    ext = idx.max(0) + 1
    key = (idx[:, 0] * ext[1] + idx[:, 1]) * ext[2] + idx[:, 2]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    grid = np.floor((points[first].astype(np.float64) - lower) / voxel_size_cm + 1e-3)
    merged = (lower + grid * voxel_size_cm).astype(np.float32)
    summed = np.bincount(inverse, weights=energy.astype(np.float64), minlength=len(first))
    return merged, summed.astype(np.float32), inverse


class EncoderModel:
    """A loaded encoder with its task heads, in eval mode, ready for ``predict`` / ``embed``."""

    def __init__(self, encoder: PointEncoder, heads: Optional[dict[str, nn.Module]] = None,
                 manifest: Optional[dict[str, Any]] = None, path: Optional[str | Path] = None,
                 device: Any = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.encoder = encoder.to(self.device).eval()
        heads = dict(heads or {})
        unknown = [t for t in heads if t not in TASKS]
        if unknown:
            raise CheckpointError(f"{path or 'model'}: unknown head(s) {unknown}; known {TASKS}")
        self.heads = {t: h.to(self.device).eval() for t, h in heads.items()}
        self.manifest = dict(manifest or {})
        self.path = Path(path) if path is not None else None

    # ------------------------------------------------------------------ properties
    @property
    def config(self):
        return self.encoder.config

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.heads)

    @property
    def voxel_size_cm(self) -> float:
        return float(self.config.voxel_size_cm)

    @property
    def embedding_dim(self) -> int:
        return int(self.config.token_dim)

    def __repr__(self) -> str:
        return (f"EncoderModel({self.path or 'in memory'}, {self.config.name} encoder, "
                f"{self.voxel_size_cm} cm grid, heads={list(self.heads)}, device={self.device})")

    # ------------------------------------------------------------------ batching
    def _prepare(self, events: Sequence[Event]):
        """Merged inputs of a chunk of non-empty events, and each event's inverse map."""
        parts, inverses = [], []
        for ev in events:
            volume = ev.meta.volume
            p, e, inv = to_model_grid(ev.points, ev.energy, volume, self.voxel_size_cm)
            parts.append(batch_from_arrays([p], [e], volume, self.voxel_size_cm))
            inverses.append(inv)
        counts = torch.tensor([int(b["offset"][-1]) for b in parts], dtype=torch.long)
        batch = {k: torch.cat([b[k] for b in parts]) for k in ("coords", "grid", "feat")}
        batch["offset"] = torch.cumsum(counts, 0)
        batch["batch"] = torch.repeat_interleave(torch.arange(len(parts)), counts)
        return to_device(batch, self.device), inverses

    @torch.no_grad()
    def forward_events(self, events: Sequence[Event], heads: Iterable[str] = ()
                       ) -> tuple[Any, dict[str, dict[str, torch.Tensor]]]:
        """One forward pass over a chunk of events, for callers that need the raw outputs
        (retrieval feeds the event tokens to the Q-Former projector).

        Every event needs at least one point; the events are merged onto this model's grid as
        in ``predict``. Returns ``(output, head_outputs)``: the backbone's ``EncoderOutput``
        (``pooled`` (B, D), ``event_tokens`` (B, T, D), ``event_token_mask`` (B, T),
        ``event_token_coords`` (B, T, 3) cm, per-point features) and, for each name in
        ``heads`` that this model has, that head's raw output (e.g. ``{"event": {"logits":
        (B, 3)}}``); a head the checkpoint lacks is left out. Unknown head names raise
        ValueError."""
        evs, _ = self._as_list(events)
        heads = list(heads)
        unknown = [t for t in heads if t not in TASKS]
        if unknown:
            raise ValueError(f"EncoderModel.forward_events: unknown head(s) {unknown}; known {TASKS}")
        empty = [i for i, e in enumerate(evs) if len(e) == 0]
        if empty:
            raise ValueError(f"EncoderModel.forward_events: event {empty[0]} has no points")
        if not evs:
            raise ValueError("EncoderModel.forward_events: no events given")
        batch, _ = self._prepare(evs)
        out = self.encoder(encoder_inputs(batch))
        return out, {t: self.heads[t](out, batch) for t in heads if t in self.heads}

    @staticmethod
    def _as_list(events: Event | Iterable[Event]) -> tuple[list[Event], bool]:
        if isinstance(events, Event):
            return [events], True
        evs = list(events)
        bad = [i for i, e in enumerate(evs) if not isinstance(e, Event)]
        if bad:
            raise TypeError(f"EncoderModel: expected events.Event objects; item {bad[0]} is "
                            f"{type(evs[bad[0]]).__name__}")
        return evs, False

    # ------------------------------------------------------------------ embed
    @torch.no_grad()
    def embed(self, events: Event | Iterable[Event], batch_size: int = 16) -> np.ndarray:
        """(B, D) float32 pooled embeddings (a row of NaN for an event without points)."""
        evs, _ = self._as_list(events)
        out = np.full((len(evs), self.embedding_dim), np.nan, dtype=np.float32)
        keep = [i for i, e in enumerate(evs) if len(e) > 0]
        for s in range(0, len(keep), max(1, batch_size)):
            rows = keep[s:s + batch_size]
            batch, _ = self._prepare([evs[i] for i in rows])
            pooled = self.encoder(encoder_inputs(batch)).pooled
            out[rows] = pooled.float().cpu().numpy()
        return out

    @torch.no_grad()
    def event_tokens(self, events: Event | Iterable[Event]) -> dict[str, torch.Tensor]:
        """The Q-Former's inputs for a batch: ``tokens`` (B, T, D), ``mask`` (B, T) bool and
        ``coords`` (B, T, 3) cm, on this model's device. An event without points gets an
        all-False mask row."""
        evs, _ = self._as_list(events)
        keep = [i for i, e in enumerate(evs) if len(e) > 0]
        d = self.embedding_dim
        if not keep:
            z = torch.zeros(len(evs), 1, d, device=self.device)
            return {"tokens": z, "mask": torch.zeros(len(evs), 1, dtype=torch.bool,
                                                     device=self.device),
                    "coords": torch.zeros(len(evs), 1, 3, device=self.device)}
        batch, _ = self._prepare([evs[i] for i in keep])
        out = self.encoder(encoder_inputs(batch))
        width = out.event_tokens.shape[1]
        tokens = torch.zeros(len(evs), width, d, device=self.device)
        mask = torch.zeros(len(evs), width, dtype=torch.bool, device=self.device)
        coords = torch.zeros(len(evs), width, 3, device=self.device)
        rows = torch.tensor(keep, device=self.device)
        tokens[rows] = out.event_tokens.float()
        mask[rows] = out.event_token_mask
        coords[rows] = out.event_token_coords.float()
        return {"tokens": tokens, "mask": mask, "coords": coords}

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(self, events: Event | Iterable[Event], batch_size: int = 8,
                progress: bool = False) -> list[EventPrediction]:
        """One ``EventPrediction`` per event (a list even for a single event)."""
        evs, _ = self._as_list(events)
        preds: list[Optional[EventPrediction]] = [None] * len(evs)
        keep = [i for i, e in enumerate(evs) if len(e) > 0]
        for i, e in enumerate(evs):
            if len(e) == 0:
                preds[i] = self._empty_prediction()
        starts = range(0, len(keep), max(1, batch_size))
        for s in tqdm(starts, desc="predict", unit="batch", disable=not progress, leave=False):
            rows = keep[s:s + batch_size]
            for i, p in zip(rows, self._predict_chunk([evs[i] for i in rows])):
                preds[i] = p
        return preds  # type: ignore[return-value]

    def _predict_chunk(self, evs: Sequence[Event]) -> list[EventPrediction]:
        batch, inverses = self._prepare(evs)
        out = self.encoder(encoder_inputs(batch))
        raw = {t: h(out, batch) for t, h in self.heads.items()}
        splits = batch["offset"][:-1].cpu()

        def per_event(t: torch.Tensor) -> list[np.ndarray]:
            return [x.numpy() for x in torch.tensor_split(t.float().cpu(), splits)]

        sem = per_event(raw["semantic"]["logits"].softmax(1)) if "semantic" in raw else None
        pid = per_event(raw["pid"]["logits"].softmax(1)) if "pid" in raw else None
        grouping = {t: per_event(raw[t]["embedding"]) for t in ("particle", "interaction") if t in raw}
        coords = per_event(batch["coords"])
        if "vertex" in raw:
            vtx = raw["vertex"]["vertex"].double().cpu().numpy()
            votes = per_event(raw["vertex"]["votes"])
            weights = per_event(raw["vertex"]["weight"])
        event_probs = (raw["event"]["logits"].softmax(1).float().cpu().numpy()
                       if "event" in raw else None)
        width = self.config.n_event_tokens or out.event_tokens.shape[1]
        tokens = out.event_tokens.float().cpu().numpy()
        tmask = out.event_token_mask.cpu().numpy()
        tcoords = out.event_token_coords.float().cpu().numpy()
        pooled = out.pooled.float().cpu().numpy()

        preds = []
        for b, (ev, inv) in enumerate(zip(evs, inverses)):
            t = min(width, tokens.shape[1])
            tok = np.zeros((width, tokens.shape[2]), dtype=np.float32)
            tm = np.zeros(width, dtype=bool)
            tc = np.zeros((width, 3), dtype=np.float32)
            tok[:t], tm[:t], tc[:t] = tokens[b, :t], tmask[b, :t], tcoords[b, :t]
            p = EventPrediction(n_points=len(ev), voxel=inv, embedding=pooled[b], tokens=tok,
                                token_mask=tm, token_coords=tc)
            if sem is not None:
                probs = sem[b][inv]
                p.semantic_probs, p.semantic = probs, probs.argmax(1).astype(np.int64)
            if pid is not None:
                probs = pid[b][inv]
                p.pid_probs, p.pid = probs, probs.argmax(1).astype(np.int64)
            for task, emb in grouping.items():
                head = self.heads[task]
                labels = cluster_embeddings(coords[b].astype(np.float64), emb[b].astype(np.float64),
                                            head.radius_cm, head.delta_d)
                setattr(p, task, labels[inv])
            if "vertex" in raw:
                v = vtx[b]
                d = np.linalg.norm(votes[b].astype(np.float64) - v, axis=1)
                w = weights[b].astype(np.float64)
                w = w / max(w.sum(), 1e-12)
                p.vertex = v
                p.vertex_confidence = float(w[d < VERTEX_CONFIDENCE_RADIUS_CM].sum())
                p.vertex_spread_cm = float(np.sqrt((w * d ** 2).sum()))
            if event_probs is not None:
                p.event_probs = event_probs[b]
            preds.append(p)
        return preds

    def _empty_prediction(self) -> EventPrediction:
        width = self.config.n_event_tokens or 1
        d = self.embedding_dim
        p = EventPrediction(n_points=0, voxel=np.zeros(0, dtype=np.int64),
                            embedding=np.full(d, np.nan, dtype=np.float32),
                            tokens=np.zeros((width, d), dtype=np.float32),
                            token_mask=np.zeros(width, dtype=bool),
                            token_coords=np.zeros((width, 3), dtype=np.float32))
        if "semantic" in self.heads:
            p.semantic_probs = np.zeros((0, len(SEMANTIC_CLASSES)), dtype=np.float32)
            p.semantic = np.zeros(0, dtype=np.int64)
        if "pid" in self.heads:
            p.pid_probs = np.zeros((0, len(PID_CLASSES)), dtype=np.float32)
            p.pid = np.zeros(0, dtype=np.int64)
        for task in ("particle", "interaction"):
            if task in self.heads:
                setattr(p, task, np.zeros(0, dtype=np.int64))
        if "vertex" in self.heads:
            p.vertex, p.vertex_confidence, p.vertex_spread_cm = np.full(3, np.nan), 0.0, float("nan")
        if "event" in self.heads:
            p.event_probs = np.full(len(EVENT_CLASSES), np.nan, dtype=np.float32)
        return p


def load_model(path: Optional[str | Path] = None, device: Any = None) -> EncoderModel:
    """Load a larsight encoder checkpoint (``DEFAULT_CHECKPOINT`` by default) with every head
    it holds, validated (format, configuration, tensor names and shapes), in eval mode.

    ``path`` may be the ``.safetensors`` file or a run folder holding ``model.safetensors``
    (or ``encoder.safetensors``). Raises FileNotFoundError (saying how to train one) or
    ``CheckpointError``.
    """
    p = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if p.is_dir():
        found = [p / n for n in ("model.safetensors", "encoder.safetensors") if (p / n).exists()]
        if not found:
            raise FileNotFoundError(f"no model.safetensors or encoder.safetensors in {p}; {TRAIN_HINT}")
        p = found[0]
    if not p.exists():
        what = "the default encoder checkpoint" if path is None else "encoder checkpoint"
        raise FileNotFoundError(f"{what} not found: {p}; {TRAIN_HINT}")
    loaded = load_weights(p, map_location="cpu")
    return EncoderModel(loaded.encoder, loaded.heads, loaded.manifest, path=p, device=device)
