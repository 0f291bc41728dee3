"""The embedder of the event index: events and texts as unit vectors of the VLM's aligned
event-text space (cosine similarity), and the fingerprint that identifies the weights.

    from larsight.tools.embedder import EventEmbedder
    emb = EventEmbedder.load("checkpoints/vlm_smollm2")   # encoder + projector only
    emb.embed(events)               # (B, D) unit vectors, = VLM.embed
    emb.embed_text(["nu_e CC"])     # loads the language model once, then (B, D) unit vectors

An event's vector is ``VLM.embed`` (frozen encoder -> Q-Former projector -> ``event_head``),
a text's is ``VLM.embed_text`` (language-model hidden states -> ``text_head``). ``load``
reads only the encoder and the projector of a VLM folder (``vlm.json`` names the encoder
checkpoint); the language model loads lazily, the first time a text query arrives.

torch and the modules that import it (``larsight.encoder``, ``larsight.qformer.projector`` /
``.vlm``) are imported inside the functions that need them: they take seconds to import,
and ``import larsight.tools.retrieval`` (a search by stored vectors) needs none of them.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from larsight.events.model import EVENT_CLASSES, Event
from larsight.qformer.lm import load_lm

__all__ = ["EventEmbedder", "cached_embedder", "weights_fingerprint"]


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
                from larsight.qformer.vlm import VLM   # torch (see the module docstring)

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
