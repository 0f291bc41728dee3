"""Task heads on the encoder's outputs, with their losses and decoders.

Every head maps an ``EncoderOutput`` plus the batch (``encoder.data.make_batch``) to raw
predictions, has a ``loss`` against the batch's truth and a ``decode`` to physics answers::

    head = build_head("semantic", in_channels=48, token_dim=128, kind="linear")
    pred = head(encoder(inputs), batch)            # {"logits": (N, 5)}
    loss = head.loss(pred, batch)                  # class-weighted cross-entropy
    out = head.decode(pred, batch)                 # {"semantic": (N,) int}

Tasks (``TASKS``):

- ``semantic``: 5 classes per point (shower, track, Michel, delta, low energy).
- ``pid``: particle ID per point (photon, electron, muon, pion, proton, kaon; -1 ignored);
  ``decode`` also gives the per-instance majority vote when instance labels are known.
- ``particle`` / ``interaction``: grouping. A per-point embedding trained with the
  discriminative loss (points of one instance pulled within ``delta_v`` of their mean, means
  of different instances pushed ``2 * delta_d`` apart); decoded by connecting points that are
  spatial neighbours (``radius_cm``) with embeddings closer than ``delta_d``, then merging
  connected pieces whose mean embeddings are closer than ``delta_d`` (so a photon shower's
  disconnected fragments join). scipy's KD-tree and connected components; no sklearn.
- ``vertex``: every point votes for the vertex with an offset (``coords + scale * offset``)
  and a confidence logit; the event's vertex is the softmax-weighted mean of the votes
  (``weight``: each vote's share of its event, summing to 1 per event).
- ``event``: event class (nue_cc / numu_cc / nc) from the pooled event embedding.

``kind``: ``linear`` (a linear probe) or ``mlp`` (one hidden layer). ``spec()`` is the JSON
that rebuilds a head (stored in checkpoint manifests).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch import Tensor, nn

from larsight.events.model import EVENT_CLASSES, PID_CLASSES, SEMANTIC_CLASSES

TASKS = ("semantic", "particle", "interaction", "vertex", "pid", "event")

DEFAULT_DATA_MODE = {"semantic": "nu", "particle": "nu", "pid": "nu", "vertex": "nu",
                     "event": "nu", "interaction": "mpr"}
"""Simulator mode each task trains and is scored on ('interaction' needs several interactions
per event)."""


def _proj(in_channels: int, out_channels: int, kind: str, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_channels, out_channels)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_channels, hidden), nn.LayerNorm(hidden), nn.GELU(),
                             nn.Linear(hidden, out_channels))
    raise ValueError(f"head kind must be 'linear' or 'mlp', got {kind!r}")


def class_weights(labels: Tensor | np.ndarray, n_classes: int, power: float = 0.5,
                  max_weight: float = 20.0) -> Tensor:
    """Inverse-frequency weights ``count^-power`` (mean 1 over present classes, capped);
    classes absent from ``labels`` get weight 0 (they cannot be learned anyway)."""
    y = torch.as_tensor(labels).long().flatten()
    counts = torch.bincount(y[y >= 0], minlength=n_classes)[:n_classes]
    return class_weights_from_counts(counts, power, max_weight)


def class_weights_from_counts(counts: Tensor | np.ndarray | Sequence[int], power: float = 0.5,
                              max_weight: float = 20.0) -> Tensor:
    """``class_weights`` from per-class counts (e.g. a shard manifest's label counts)."""
    counts = torch.as_tensor(np.asarray(counts)).double()
    w = torch.where(counts > 0, counts.clamp(min=1) ** -power, torch.zeros_like(counts))
    present = counts > 0
    if present.any():
        w = w / w[present].mean()
    return w.clamp(max=max_weight).float()


LOSS_KINDS = ("balanced", "focal", "ce")


def classification_loss(logits: Tensor, y: Tensor, class_weight: Tensor, kind: str = "balanced",
                        gamma: float = 2.0) -> Tensor:
    """Mean loss over labelled rows (``y >= 0``): 'balanced' = cross-entropy weighted by
    ``class_weight``; 'ce' = unweighted; 'focal' = ``-(1 - p_t)^gamma log p_t`` (Lin et al.
    2017), which down-weights easy points so rare classes (Michel, delta) count."""
    if kind == "balanced":
        return F.cross_entropy(logits, y, weight=class_weight, ignore_index=-1)
    if kind == "ce":
        return F.cross_entropy(logits, y, ignore_index=-1)
    if kind != "focal":
        raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")
    ok = y >= 0
    logp = F.log_softmax(logits[ok].float(), dim=-1).gather(1, y[ok][:, None])[:, 0]
    return (-(1 - logp.exp()).pow(gamma) * logp).mean()


def _loss_spec(loss: str, focal_gamma: float) -> dict[str, Any]:
    """The loss settings a head's spec records (none for the default, so older specs match)."""
    if loss not in LOSS_KINDS:
        raise ValueError(f"loss must be one of {LOSS_KINDS}, got {loss!r}")
    return {} if loss == "balanced" else {"loss": loss, "focal_gamma": float(focal_gamma)}


class Head(nn.Module):
    task: str = ""

    def __init__(self, **spec: Any):
        super().__init__()
        self._spec = {"task": self.task, **spec}

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)


# ============================================================================ classification
class PointClassHead(Head):
    """Per-point classification (semantic segmentation, per-point PID)."""

    def __init__(self, task: str, in_channels: int, n_classes: int, kind: str = "linear",
                 hidden: int = 128, class_weight: Optional[Sequence[float]] = None,
                 loss: str = "balanced", focal_gamma: float = 2.0, **_: Any):
        self.task = task
        super().__init__(in_channels=in_channels, n_classes=n_classes, kind=kind, hidden=hidden,
                         **_loss_spec(loss, focal_gamma))
        self.loss_kind, self.focal_gamma = loss, float(focal_gamma)
        self.target = "semantic" if task == "semantic" else "pid"
        self.proj = _proj(in_channels, n_classes, kind, hidden)
        self.register_buffer("class_weight", torch.ones(n_classes) if class_weight is None
                             else torch.as_tensor(class_weight, dtype=torch.float32))

    def forward(self, out, batch) -> dict[str, Tensor]:
        return {"logits": self.proj(out.point_features)}

    def loss(self, pred, batch) -> Tensor:
        y = batch[self.target]
        if not bool((y >= 0).any()):
            return pred["logits"].sum() * 0.0
        return classification_loss(pred["logits"], y, self.class_weight, self.loss_kind, self.focal_gamma)

    @torch.no_grad()
    def decode(self, pred, batch) -> dict[str, Tensor]:
        label = pred["logits"].argmax(1)
        out = {self.target: label}
        if self.task == "pid" and "particle" in batch:
            out["pid_instance"] = _majority(label, batch["particle"], batch["batch"])
        return out


def _majority(label: Tensor, instance: Tensor, batch: Tensor) -> Tensor:
    """Each point gets the most common ``label`` of its (event, instance); -1 instances keep theirs."""
    out = label.clone()
    ok = instance >= 0
    if not bool(ok.any()):
        return out
    key = torch.stack([batch[ok], instance[ok]], 1)
    _, inv = torch.unique(key, dim=0, return_inverse=True)
    n_cls = int(label.max()) + 1
    votes = torch.zeros(int(inv.max()) + 1, n_cls, device=label.device)
    votes.index_put_((inv, label[ok]), torch.ones_like(inv, dtype=votes.dtype), accumulate=True)
    out[ok] = votes.argmax(1)[inv]
    return out


class EventClassHead(Head):
    """Event class from the pooled event embedding."""

    task = "event"

    def __init__(self, token_dim: int, n_classes: int = len(EVENT_CLASSES), kind: str = "linear",
                 hidden: int = 128, class_weight: Optional[Sequence[float]] = None,
                 loss: str = "balanced", focal_gamma: float = 2.0, **_: Any):
        super().__init__(token_dim=token_dim, n_classes=n_classes, kind=kind, hidden=hidden,
                         **_loss_spec(loss, focal_gamma))
        self.loss_kind, self.focal_gamma = loss, float(focal_gamma)
        self.proj = _proj(token_dim, n_classes, kind, hidden)
        self.register_buffer("class_weight", torch.ones(n_classes) if class_weight is None
                             else torch.as_tensor(class_weight, dtype=torch.float32))

    def forward(self, out, batch) -> dict[str, Tensor]:
        return {"logits": self.proj(out.pooled)}

    def loss(self, pred, batch) -> Tensor:
        y = batch["event_class"]
        if not bool((y >= 0).any()):
            return pred["logits"].sum() * 0.0
        return classification_loss(pred["logits"], y, self.class_weight, self.loss_kind, self.focal_gamma)

    @torch.no_grad()
    def decode(self, pred, batch) -> dict[str, Tensor]:
        return {"event_class": pred["logits"].argmax(1),
                "event_probs": pred["logits"].softmax(1)}


# ============================================================================ grouping
class GroupingHead(Head):
    """Instance embeddings (``particle`` or ``interaction``) with the discriminative loss."""

    def __init__(self, task: str, in_channels: int, embed_dim: int = 8, kind: str = "linear",
                 hidden: int = 128, delta_v: float = 0.5, delta_d: float = 1.5,
                 radius_cm: float = 1.5, **_: Any):
        self.task = task
        super().__init__(in_channels=in_channels, embed_dim=embed_dim, kind=kind, hidden=hidden,
                         delta_v=delta_v, delta_d=delta_d, radius_cm=radius_cm)
        self.proj = _proj(in_channels, embed_dim, kind, hidden)
        self.delta_v, self.delta_d, self.radius_cm = delta_v, delta_d, radius_cm

    def forward(self, out, batch) -> dict[str, Tensor]:
        return {"embedding": self.proj(out.point_features)}

    def loss(self, pred, batch) -> Tensor:
        return discriminative_loss(pred["embedding"], batch[self.task], batch["batch"],
                                   self.delta_v, self.delta_d)

    @torch.no_grad()
    def decode(self, pred, batch) -> dict[str, Tensor]:
        emb = pred["embedding"].float().cpu().numpy()
        coords = batch["coords"].float().cpu().numpy()
        ev = batch["batch"].cpu().numpy()
        labels = np.empty(len(emb), dtype=np.int64)
        for b in np.unique(ev):
            idx = np.flatnonzero(ev == b)
            labels[idx] = cluster_embeddings(coords[idx], emb[idx], self.radius_cm, self.delta_d)
        return {self.task: torch.from_numpy(labels)}


def discriminative_loss(emb: Tensor, instance: Tensor, batch: Tensor, delta_v: float = 0.5,
                        delta_d: float = 1.5, reg: float = 1e-3) -> Tensor:
    """De Brabandere et al. (2017) pull / push / regularisation terms, instances per event
    (points with ``instance < 0`` are ignored)."""
    ok = instance >= 0
    if not bool(ok.any()):
        return emb.sum() * 0.0
    e, b = emb[ok], batch[ok]
    key = torch.stack([b, instance[ok]], 1)
    uniq, inv = torch.unique(key, dim=0, return_inverse=True)
    n = uniq.shape[0]
    counts = torch.bincount(inv, minlength=n).to(e.dtype)
    means = torch.zeros(n, e.shape[1], dtype=e.dtype, device=e.device).index_add_(0, inv, e)
    means = means / counts[:, None]
    pull = F.relu((e - means[inv]).norm(dim=1) - delta_v) ** 2
    l_var = (torch.zeros(n, dtype=e.dtype, device=e.device).index_add_(0, inv, pull) / counts).mean()
    same_event = uniq[:, 0][:, None] == uniq[:, 0][None, :]
    pair = same_event & ~torch.eye(n, dtype=torch.bool, device=e.device)
    if bool(pair.any()):
        d = torch.cdist(means, means)
        l_dist = (F.relu(2 * delta_d - d[pair]) ** 2).mean()
    else:
        l_dist = e.sum() * 0.0
    return l_var + l_dist + reg * means.norm(dim=1).mean()


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    g = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def cluster_embeddings(coords: np.ndarray, emb: np.ndarray, radius_cm: float,
                       threshold: float) -> np.ndarray:
    """Instance labels 0..K-1 of one event's points (see the module docstring)."""
    n = len(coords)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(coords).query_pairs(radius_cm, output_type="ndarray")
    if len(pairs):
        close = np.linalg.norm(emb[pairs[:, 0]] - emb[pairs[:, 1]], axis=1) < threshold
        pairs = pairs[close]
    piece = _components(n, pairs[:, 0], pairs[:, 1]) if len(pairs) else np.arange(n)
    k = int(piece.max()) + 1
    means = np.zeros((k, emb.shape[1]))
    np.add.at(means, piece, emb)
    means /= np.bincount(piece, minlength=k)[:, None]
    if k > 1:
        mp = cKDTree(means).query_pairs(threshold, output_type="ndarray")
        if len(mp):
            piece = _components(k, mp[:, 0], mp[:, 1])[piece]
    return np.unique(piece, return_inverse=True)[1].astype(np.int64)


# ============================================================================ vertex
class VertexHead(Head):
    """Per-point offset votes + confidences -> one vertex per event (cm)."""

    task = "vertex"

    def __init__(self, in_channels: int, kind: str = "linear", hidden: int = 128,
                 scale_cm: float = 50.0, **_: Any):
        super().__init__(in_channels=in_channels, kind=kind, hidden=hidden, scale_cm=scale_cm)
        self.proj = _proj(in_channels, 4, kind, hidden)
        self.scale_cm = scale_cm

    def forward(self, out, batch) -> dict[str, Tensor]:
        raw = self.proj(out.point_features)
        votes = batch["coords"] + self.scale_cm * raw[:, :3]
        b = batch["batch"]
        n_ev = batch["offset"].numel()
        logit = raw[:, 3]
        peak = torch.full((n_ev,), -torch.inf, device=logit.device, dtype=logit.dtype)
        peak = peak.scatter_reduce(0, b, logit.detach(), "amax", include_self=True)
        w = torch.exp(logit - peak[b])
        norm = torch.zeros(n_ev, device=w.device, dtype=w.dtype).index_add_(0, b, w)
        vertex = torch.zeros(n_ev, 3, device=w.device, dtype=w.dtype).index_add_(0, b, w[:, None] * votes)
        return {"votes": votes, "vertex": vertex / norm[:, None], "weight": w / norm[b]}

    def loss(self, pred, batch) -> Tensor:
        truth = batch["vertex"]
        ok = torch.isfinite(truth).all(1)
        if not bool(ok.any()):
            return pred["vertex"].sum() * 0.0
        s = self.scale_cm
        point_ok = ok[batch["batch"]]
        per_point = F.smooth_l1_loss(pred["votes"][point_ok] / s,
                                     truth[batch["batch"]][point_ok] / s, beta=0.05)
        per_event = F.smooth_l1_loss(pred["vertex"][ok] / s, truth[ok] / s, beta=0.02)
        return per_point + per_event

    @torch.no_grad()
    def decode(self, pred, batch) -> dict[str, Tensor]:
        return {"vertex": pred["vertex"]}


# ============================================================================ factory
def build_head(task: str, in_channels: Optional[int] = None, token_dim: Optional[int] = None,
               kind: str = "linear", **kw: Any) -> Head:
    """A head for ``task`` (one of ``TASKS``); ``spec()`` round-trips through this."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    if task == "event":
        dim = token_dim or kw.pop("token_dim", None)
        return EventClassHead(token_dim=int(dim), kind=kind, **kw)
    if in_channels is None:
        raise ValueError(f"build_head({task!r}): in_channels is required")
    if task == "semantic":
        kw.setdefault("n_classes", len(SEMANTIC_CLASSES))
        return PointClassHead("semantic", in_channels, kind=kind, **kw)
    if task == "pid":
        kw.setdefault("n_classes", len(PID_CLASSES))
        return PointClassHead("pid", in_channels, kind=kind, **kw)
    if task in ("particle", "interaction"):
        return GroupingHead(task, in_channels, kind=kind, **kw)
    return VertexHead(in_channels, kind=kind, **kw)


def head_for(task: str, config, kind: str = "linear", **kw: Any) -> Head:
    """``build_head`` sized for an ``EncoderConfig``."""
    return build_head(task, in_channels=config.out_channels, token_dim=config.token_dim,
                      kind=kind, **kw)


TARGET_OF_TASK = {"semantic": "semantic", "pid": "pid", "particle": "particle",
                  "interaction": "interaction", "vertex": "vertex", "event": "event_class"}
N_CLASSES = {"semantic": len(SEMANTIC_CLASSES), "pid": len(PID_CLASSES), "event": len(EVENT_CLASSES)}
