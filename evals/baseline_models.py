"""The image baselines' networks and their inputs: the two-view MobileNetV2-like CNN of the VLM
paper, a ViT on the same maps, the XZ / YZ energy maps they read, and inference (see
``evals.baselines`` for why they exist and how they are trained)."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from larsight.events.model import EVENT_CLASSES, Event
from larsight.events.projections import coarsen, pixel_maps

KINDS = ("cnn", "vit")
VIEWS = ("xz", "yz")
DEFAULT_IMAGE_SIZE = 128
"""CPU default (1.8 cm pixels over the 230.4 cm volume). The paper used 512 (pass image_size=512)."""
PAPER_IMAGE_SIZE = 512


# ============================================================================ images
def view_images(events: Sequence[Event], image_size: int = DEFAULT_IMAGE_SIZE,
                voxel_scale: int = 1) -> Tensor:
    """Float32 ``(B, 2, H, W)``: log1p(MeV per pixel) of the XZ and YZ views of each event.

    One preallocated array is filled view by view so the only per-event Python work is the
    projection itself (a bincount); ``voxel_scale > 1`` adds the 3D re-voxelisation first.
    """
    if isinstance(events, Event):
        events = [events]
    events = list(events)
    if not events:
        raise ValueError("view_images: got an empty list of events (need at least one)")
    image_size, voxel_scale = int(image_size), int(voxel_scale)
    if image_size < 8:
        raise ValueError(f"view_images: image_size must be >= 8, got {image_size}")
    if voxel_scale < 1:
        raise ValueError(f"view_images: voxel_scale must be an integer >= 1, got {voxel_scale}")
    out = np.empty((len(events), len(VIEWS), image_size, image_size), dtype=np.float32)
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise TypeError(f"view_images: item {i} is a {type(ev).__name__}, not an events.Event")
        if voxel_scale > 1:
            ev = coarsen(ev, voxel_scale)
        out[i] = pixel_maps(ev, size=image_size, views=VIEWS, log=True)
    return torch.from_numpy(out)


def class_targets(events: Sequence[Event]) -> Tensor:
    """Index into ``EVENT_CLASSES`` per event; an event without a neutrino class is an error
    (a silent -1 would be dropped by the loss and skew the class balance unnoticed)."""
    out = []
    for i, ev in enumerate(events):
        cls = ev.event_class
        if cls not in EVENT_CLASSES:
            raise ValueError(f"class_targets: event {i} has event_class {cls!r}; training needs one of "
                             f"{EVENT_CLASSES} (simulate with mode 'nu')")
        out.append(EVENT_CLASSES.index(cls))
    return torch.tensor(out, dtype=torch.long)


def _check_images(x: Tensor, who: str) -> None:
    if x.ndim != 4 or x.shape[1] != len(VIEWS):
        raise ValueError(f"{who}: expected images (B, 2, H, W) (XZ and YZ views), got {tuple(x.shape)}")


# ============================================================================ the CNN
def _divisible(v: float, divisor: int = 8) -> int:
    """Channel counts rounded to multiples of 8 (as MobileNetV2 does), never below 90% of ``v``,
    so thin width multipliers still give vector-friendly layer widths."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear projection (1x1), residual when shapes allow.

    The projection has no activation because the narrow bottleneck would lose information
    through a ReLU (the MobileNetV2 argument); the cheap depthwise conv is where the spatial
    work happens, which keeps the tower at ~2.2M parameters.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1))
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   _conv_bn(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.residual else self.block(x)


MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
"""(expansion, channels, repeats, first stride) per stage: MobileNetV2's published layout."""


class MobileNetTower(nn.Module):
    """One view -> a pooled feature vector. Single input channel (an energy map, not RGB).

    ``width_mult`` scales every layer including the last 1x1 (MobileNetV2 keeps 1280 there for
    thin nets; here it scales too, so a thin CPU model is thin end to end).
    """

    def __init__(self, width_mult: float = 1.0, in_channels: int = 1):
        super().__init__()
        c = _divisible(32 * width_mult)
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, stride=2)]
        for t, ch, n, s in MOBILENET_V2_STAGES:
            cout = _divisible(ch * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                c = cout
        self.out_channels = _divisible(1280 * width_mult)
        layers.append(_conv_bn(c, self.out_channels, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x).mean(dim=(2, 3))


class TwoViewCNN(nn.Module):
    """The paper's CNN: a Siamese MobileNetV2-like tower over XZ and YZ, features concatenated,
    then an MLP to 3 logits (nue_cc, numu_cc, nc).

    Shared weights because the two views are the same kind of image (the same physics seen along
    two wire planes): sharing halves the parameters and doubles the examples each filter sees.
    Features are joined only after pooling, because pixel columns of the two views bin different
    axes (x vs y), so there is no meaningful pixel-wise pairing to exploit earlier. The default
    (width 1.0, hidden 448) has ~3.37M parameters, the paper's ~3.4M.
    """

    kind = "cnn"

    def __init__(self, width_mult: float = 1.0, n_classes: int = len(EVENT_CLASSES),
                 image_size: int = DEFAULT_IMAGE_SIZE, hidden: int = 448, dropout: float = 0.2):
        super().__init__()
        if width_mult <= 0 or n_classes < 2 or hidden < 1:
            raise ValueError(f"TwoViewCNN: need width_mult > 0, n_classes >= 2, hidden >= 1; got "
                             f"{width_mult}, {n_classes}, {hidden}")
        self.config = {"width_mult": float(width_mult), "n_classes": int(n_classes),
                       "image_size": int(image_size), "hidden": int(hidden), "dropout": float(dropout)}
        self.image_size = int(image_size)
        self.tower = MobileNetTower(width_mult)
        d = self.tower.out_channels
        self.head = nn.Sequential(nn.Linear(len(VIEWS) * d, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, "TwoViewCNN")
        b, v, h, w = x.shape
        # both views through the tower in one call: one batch of 2B single-channel images
        feats = self.tower(x.reshape(b * v, 1, h, w)).reshape(b, -1)
        return self.head(feats)


# ============================================================================ the ViT
class TwoViewViT(nn.Module):
    """open_clip's ``VisionTransformer`` (random init) shared by both views, embeddings
    concatenated, then an MLP to 3 logits.

    Choice: two single-channel images through one shared ViT rather than one 2-channel image.
    A 2-channel patch would stack an x-bin of the XZ view on a y-bin of the YZ view: only the
    z rows line up, so early fusion would pair unrelated detector regions in every token. Late
    fusion keeps each token a real region of one view and mirrors the Siamese CNN, so the two
    baselines differ in the backbone only. The single energy channel gets its own patch
    embedding (``conv1`` with 1 input channel) instead of repeating the map to RGB: with no
    pretrained weights there is nothing to keep compatible, and repeating only triples the cost
    of the first layer. Defaults (width 192, 6 layers, 3 heads, patch 16 at 128 px = 64 tokens
    per view) give ~3.0M parameters, matched to the CNN.
    """

    kind = "vit"

    def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE, patch_size: int = 16, width: int = 192,
                 layers: int = 6, heads: int = 3, mlp_ratio: float = 4.0, embed_dim: int = 256,
                 hidden: int = 448, n_classes: int = len(EVENT_CLASSES), dropout: float = 0.1):
        super().__init__()
        # open_clip loads its model registry and tokenizer code on import (seconds); only the
        # ViT needs it, so the CNN and the checkpoint readers do without
        from open_clip.transformer import VisionTransformer

        if image_size % patch_size:
            raise ValueError(f"TwoViewViT: image_size {image_size} must be a multiple of patch_size {patch_size}")
        if width % heads:
            raise ValueError(f"TwoViewViT: width {width} must be divisible by heads {heads}")
        self.config = {"image_size": int(image_size), "patch_size": int(patch_size), "width": int(width),
                       "layers": int(layers), "heads": int(heads), "mlp_ratio": float(mlp_ratio),
                       "embed_dim": int(embed_dim), "hidden": int(hidden), "n_classes": int(n_classes),
                       "dropout": float(dropout)}
        self.image_size = int(image_size)
        self.vit = VisionTransformer(image_size=image_size, patch_size=patch_size, width=width,
                                     layers=layers, heads=heads, mlp_ratio=mlp_ratio,
                                     output_dim=embed_dim, pool_type="tok")
        self.vit.conv1 = nn.Conv2d(1, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.head = nn.Sequential(nn.Linear(len(VIEWS) * embed_dim, hidden), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        _check_images(x, "TwoViewViT")
        b, v, h, w = x.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"TwoViewViT: built for {self.image_size}x{self.image_size} images "
                             f"(learned positional embeddings), got {h}x{w}")
        emb = self.vit(x.reshape(b * v, 1, h, w)).reshape(b, -1)
        return self.head(emb)


def build_model(kind: str, **config: Any) -> nn.Module:
    """``TwoViewCNN`` or ``TwoViewViT`` from a config dict (the manifest's ``model.config``)."""
    if kind == "cnn":
        return TwoViewCNN(**config)
    if kind == "vit":
        return TwoViewViT(**config)
    raise ValueError(f"baseline kind must be one of {KINDS}, got {kind!r}")


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ============================================================================ inference
@torch.inference_mode()
def predict_proba(model: nn.Module, events: Sequence[Event], image_size: Optional[int] = None,
                  voxel_scale: int = 1, batch_size: int = 32) -> np.ndarray:
    """Class probabilities ``(N, 3)`` (columns ``EVENT_CLASSES``), rows summing to 1.

    ``image_size`` defaults to the model's training size; the CNN also accepts others (global
    pooling), the ViT does not. The softmax is taken in float64 so rows sum to 1 to ~1e-12.
    """
    events = list(events) if not isinstance(events, Event) else [events]
    if not events:
        raise ValueError("predict_proba: got an empty list of events")
    if batch_size < 1:
        raise ValueError(f"predict_proba: batch_size must be >= 1, got {batch_size}")
    size = int(image_size or getattr(model, "image_size", DEFAULT_IMAGE_SIZE))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(events), batch_size):
            x = view_images(events[i:i + batch_size], size, voxel_scale).to(device)
            out.append(torch.softmax(model(x).double(), dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def time_inference(model: nn.Module, events: Sequence[Event], image_size: Optional[int] = None,
                   batch_size: int = 32, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per event: projection (events -> images), forward pass, and end to end
    (``predict_proba``); best of ``repeats`` for each, after one warm-up call."""
    events = list(events)
    size = int(image_size or model.image_size)
    model.eval()

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1e3 * min(times) / len(events)

    x = view_images(events, size)

    def forward():
        with torch.inference_mode():
            for i in range(0, len(events), batch_size):
                model(x[i:i + batch_size])

    return {"project_ms": best(lambda: view_images(events, size)), "forward_ms": best(forward),
            "end_to_end_ms": best(lambda: predict_proba(model, events, size, batch_size=batch_size)),
            "image_size": size, "batch_size": batch_size, "n_events": len(events),
            "threads": torch.get_num_threads()}
