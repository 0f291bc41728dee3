"""Image baselines for nu_e CC / nu_mu CC / NC classification: the VLM paper's two-view CNN and a ViT.

    from larsight.evals.baselines import train_baseline, load_baseline, predict_proba
    train_baseline("cnn", steps=600, batch_size=32, lr=2e-3, image_size=128, width_mult=0.5,
                   n_events=2000, run_dir="runs/baseline_cnn")
    model = load_baseline("runs/baseline_cnn")
    p = predict_proba(model, events)                       # (N, 3), columns = EVENT_CLASSES
    p2 = predict_proba(model, events, voxel_scale=2)       # the paper's Table 2 robustness test

    python -m larsight.evals.baselines train --kind vit --steps 600 --n-events 2000 --run-dir runs/baseline_vit
    python -m larsight.evals.baselines bench --kind cnn --image-size 128 --n-events 64

Why these baselines exist: the point-cloud encoder reads events in 3D, while the paper (Sagar et
al., arXiv 2509.08461) classifies 512x512 XZ / YZ energy maps. Training the paper's image models
on the *same* simulated events isolates what the 3D representation buys over 2D projections, and
the voxel_scale=2 test reproduces the paper's finding that an image CNN does not survive coarser
voxels without retraining (it fell to 0.43-0.49 accuracy there).

Inputs (``view_images``): ``events.projections.pixel_maps`` over the full detector volume (as in
the paper: the image frame is the detector, so absolute lengths, e.g. of a muon track, stay
readable), ``log1p`` of the MeV per pixel (deposits span ~0.1 MeV to hundreds of MeV per pixel;
the log keeps a MIP track and a shower core within one order of magnitude). Both views bin z
(the beam axis) along the rows. Training uses a fixed set (``n_events``, imaged once) or fresh
simulated events every step (``n_events=None``), always from the ``finetune`` split of
``encoder.data`` so that no training event can be an ``eval`` event.

``voxel_scale=k`` re-voxelises the event on a k-times coarser 3D grid (``coarsen``) before
projecting, i.e. what a detector with k-times the wire pitch would record; the maps are binned
at the same ``image_size``, so the trained network reads them unchanged (no resampling of the
image is needed: pixel_maps bins at any size). Note the size of the effect depends on the pixel
pitch: at 512 px a pixel is 0.45 cm, finer than a 1.2 cm coarse voxel, so the maps turn into a
sparse lattice of dots (the paper's regime); at 128 px (1.8 cm pixels) the coarse voxels are still
smaller than a pixel and the maps change much less.

Checkpoints: ``run_dir/model.safetensors`` + ``run_dir/model.json`` (format ``larsight-baseline``;
architecture, image settings, exact call, data seed, final loss), both written atomically; the
manifest is also in the safetensors header. ``load_baseline`` rebuilds the model from it and
checks every tensor's name and shape.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from larsight.events.model import EVENT_CLASSES, Event
from larsight.events.projections import coarsen, pixel_maps

KINDS = ("cnn", "vit")
VIEWS = ("xz", "yz")
DEFAULT_IMAGE_SIZE = 128
"""CPU default (1.8 cm pixels over the 230.4 cm volume). The paper used 512 (pass image_size=512)."""
PAPER_IMAGE_SIZE = 512
FORMAT = "larsight-baseline"
FORMAT_VERSION = 1
METADATA_KEY = "larsight_manifest"
WEIGHTS_NAME = "model.safetensors"
MANIFEST_NAME = "model.json"


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


# ============================================================================ checkpoints
class BaselineCheckpointError(ValueError):
    """A baseline checkpoint is missing, malformed or does not fit the model (message says what)."""


def _larsight_version() -> str:
    try:
        from importlib.metadata import version

        return version("larsight")
    except Exception:
        return "0.1.0+local"


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` then rename onto ``path`` (events.formats.atomic: a crash leaves the old file)."""
    from larsight.events.formats.atomic import atomic_path

    with atomic_path(path) as tmp:
        write(tmp)


def save_baseline(run_dir: str | Path, model: nn.Module, manifest: Optional[dict] = None) -> Path:
    """``run_dir/model.safetensors`` + ``model.json``, each written to a temporary name and
    renamed, so an interrupted save never leaves a half-written checkpoint under the real name."""
    from safetensors.torch import save_file

    if getattr(model, "kind", None) not in KINDS:
        raise TypeError(f"save_baseline: expected a TwoViewCNN or TwoViewViT, got {type(model).__name__}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    man = {"format": FORMAT, "format_version": FORMAT_VERSION, "larsight_version": _larsight_version(),
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "model": {"kind": model.kind, "config": dict(model.config)},
           "image": {"size": model.image_size, "views": list(VIEWS), "values": "log1p(MeV per pixel)",
                     "extent": "full detector volume"},
           "classes": list(EVENT_CLASSES), "n_parameters": count_parameters(model),
           **dict(manifest or {})}
    text = json.dumps(man, indent=2, default=str)
    weights = run / WEIGHTS_NAME
    _atomic_write(weights, lambda p: save_file(tensors, str(p), metadata={METADATA_KEY: json.dumps(man, default=str)}))
    _atomic_write(run / MANIFEST_NAME, lambda p: p.write_text(text + "\n"))
    return weights


def _locate(run_dir: str | Path) -> tuple[Path, Path]:
    path = Path(run_dir)
    weights = path if path.suffix == ".safetensors" else path / WEIGHTS_NAME
    if not weights.exists():
        if not path.exists():
            raise FileNotFoundError(f"load_baseline: {path} does not exist")
        raise FileNotFoundError(f"load_baseline: no {weights.name} in {weights.parent} (train one with "
                                f"train_baseline or python -m larsight.evals.baselines train)")
    return weights, weights.with_name(MANIFEST_NAME)


def read_baseline_manifest(run_dir: str | Path) -> dict:
    """The manifest (``model.json``, else the safetensors header), format-checked."""
    from safetensors import safe_open

    weights, side = _locate(run_dir)
    if side.exists():
        man = json.loads(side.read_text())
    else:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        if METADATA_KEY not in meta:
            raise BaselineCheckpointError(f"{weights}: no manifest ({side.name} missing and no header entry)")
        man = json.loads(meta[METADATA_KEY])
    if man.get("format") != FORMAT:
        raise BaselineCheckpointError(f"{weights}: format is {man.get('format')!r}, expected {FORMAT!r} "
                                      f"(an encoder checkpoint? use encoder.checkpoint.load_weights)")
    if int(man.get("format_version", -1)) > FORMAT_VERSION:
        raise BaselineCheckpointError(f"{weights}: format_version {man['format_version']} is newer than "
                                      f"this larsight understands ({FORMAT_VERSION})")
    return man


def load_baseline(run_dir: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model of a run folder (or a ``.safetensors`` path), in eval mode, with its manifest
    as ``model.manifest``. Every tensor is checked by name and shape before loading."""
    from safetensors.torch import load_file

    from larsight.encoder.checkpoint import CheckpointError, load_module_tensors

    weights, _ = _locate(run_dir)
    man = read_baseline_manifest(weights)
    try:
        model = build_model(man["model"]["kind"], **man["model"]["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise BaselineCheckpointError(f"{weights}: cannot build the model from the manifest: {err}") from err
    tensors = load_file(str(weights), device=str(map_location))
    try:
        load_module_tensors(model, tensors, "", str(weights))
    except CheckpointError as err:
        raise BaselineCheckpointError(str(err)) from err
    model.manifest = man
    return model.to(map_location).eval()


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


# ============================================================================ training
@dataclass
class BaselineConfig:
    """Everything a training run depends on; stored verbatim in ``model.json``."""

    kind: str = "cnn"
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: Optional[float] = None
    """Cosine floor; default lr / 10."""
    warmup: Optional[int] = None
    """Linear warmup steps; default 5% of steps (at least 1)."""
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    """Model init, batch order and the data (``encoder.data.split_seed(seed, 'finetune')``)."""
    image_size: int = DEFAULT_IMAGE_SIZE
    n_events: Optional[int] = 2000
    """Fixed training set size (imaged once); None = fresh simulated events every step."""
    voxel_size_cm: float = 0.6
    files: tuple[str, ...] = ()
    """Event files read instead of simulating (must hold neutrino events with a class)."""
    augment: bool = True
    """Random left-right flip of each view: the detector is mirror-symmetric in x and y (the
    beam runs along z, the rows), so a flipped view is an equally likely event."""
    model: dict = field(default_factory=dict)
    """Architecture overrides (TwoViewCNN / TwoViewViT keyword arguments)."""
    run_dir: str = "runs/baseline"
    log_every: int = 1
    workers: int = 0
    """Processes that simulate and image the fixed set (0 = all cores); does not change the data."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"train_baseline: kind must be one of {KINDS}, got {self.kind!r}")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"train_baseline: need steps >= 1, batch_size >= 1, lr > 0; got "
                             f"{self.steps}, {self.batch_size}, {self.lr}")
        if self.n_events is not None and self.n_events < 1:
            raise ValueError(f"train_baseline: n_events must be None or >= 1, got {self.n_events}")
        self.files = tuple(str(f) for f in self.files)
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if self.warmup is None:
            self.warmup = max(1, self.steps // 20)


def _images_of(index: int, seed: int, volume, image_size: int) -> Optional[tuple[np.ndarray, int]]:
    """Worker: one simulated event of the stream -> (float16 images, class), None if empty."""
    from larsight.events.sim import MODES

    ev = MODES["nu"](seed=seed, index=index, volume=volume)
    if len(ev) < 1:
        return None
    return view_images([ev], image_size)[0].numpy().astype(np.float16), int(class_targets([ev])[0])


def training_set(spec, n: int, image_size: int, workers: int = 0,
                 progress: bool = False) -> tuple[Tensor, Tensor]:
    """The first ``n`` non-empty events of the ``finetune`` split as float16 images + targets.

    The same events as ``encoder.data.take(spec, 'finetune', n)`` (simulated events are
    independent given their index, so a process pool may make them in any order); images are
    kept in float16 (log1p values below ~10 need no more) to halve the memory of large sets.
    Event files are read in order in this process.
    """
    from functools import partial

    from tqdm.auto import tqdm

    from larsight.encoder.data import split_seed, take

    if spec.files:
        evs = take(spec, "finetune", n)
        if not evs:
            raise ValueError(f"train_baseline: no events in {list(spec.files)}")
        imgs = torch.cat([view_images(evs[i:i + 256], image_size).half() for i in range(0, len(evs), 256)])
        return imgs, class_targets(evs)
    seed, workers = split_seed(spec.seed, "finetune"), int(workers or os.cpu_count() or 1)
    fn = partial(_images_of, seed=seed, volume=spec.volume, image_size=image_size)
    got: list[tuple[np.ndarray, int]] = []
    bar = tqdm(total=n, desc="simulate + image", disable=not progress, dynamic_ncols=True)
    start = 0
    pool = None
    if workers > 1 and n >= 4 * workers:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        pool = ctx.Pool(workers)
    try:
        while len(got) < n:
            idx = range(start, start + n - len(got))
            start = idx.stop
            results = (pool.imap(fn, idx, chunksize=max(1, min(16, len(idx) // (4 * workers))))
                       if pool is not None else map(fn, idx))
            for r in results:
                if r is not None and len(got) < n:
                    got.append(r)
                    bar.update(1)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        bar.close()
    return (torch.from_numpy(np.stack([g[0] for g in got])),
            torch.tensor([g[1] for g in got], dtype=torch.long))


def _call_string(cfg: BaselineConfig) -> str:
    d = asdict(cfg)
    return "larsight.evals.baselines.train_baseline(" + ", ".join(f"{k}={v!r}" for k, v in d.items()) + ")"


def _flip(x: Tensor, rng: np.random.Generator) -> Tensor:
    flip = torch.from_numpy(rng.random(x.shape[:2]) < 0.5)
    if flip.any():
        x = x.clone()
        x[flip] = x[flip].flip(-1)
    return x


def train_baseline(kind: str = "cnn", steps: int = 600, batch_size: int = 32, lr: float = 2e-3,
                   seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE, run_dir: str | Path = "runs/baseline",
                   n_events: Optional[int] = 2000, progress: bool = True, *, width_mult: Optional[float] = None,
                   model: Optional[dict] = None, command: Optional[str] = None, **options: Any) -> dict[str, Any]:
    """Train a baseline (nanoGPT-style: one readable loop) and save it in ``run_dir``.

    Data: the ``finetune`` split (never ``eval``) of ``encoder.data`` with base seed ``seed``;
    ``n_events`` events imaged once (cheap steps, the CPU recipe), or ``None`` for fresh events
    every step (no overfitting, but simulation dominates the cost on a CPU). AdamW (no decay on
    biases / norms), linear warmup then cosine decay, gradient clipping, cross-entropy.
    ``width_mult`` (CNN) and ``model`` (any architecture keyword) shape the network; other
    ``options`` are ``BaselineConfig`` fields. Returns the manifest (also ``model.json``).
    """
    from tqdm.auto import tqdm

    from larsight.encoder.data import DataSpec, event_stream, split_seed
    from larsight.encoder.pretrain import LossLog, lr_at, param_groups

    arch = dict(model or {})
    if width_mult is not None:
        if kind != "cnn":
            raise ValueError(f"train_baseline: width_mult applies to kind='cnn' only (got kind={kind!r}); "
                             f"shape the ViT with model={{'width': ..., 'layers': ...}}")
        arch["width_mult"] = float(width_mult)
    cfg = BaselineConfig(kind=kind, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                         image_size=image_size, n_events=n_events, model=arch, run_dir=str(run_dir),
                         **options)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 7])
    net = build_model(cfg.kind, image_size=cfg.image_size, **cfg.model)
    net.train()

    spec = DataSpec(modes=("nu",), seed=cfg.seed, voxel_size_cm=cfg.voxel_size_cm, files=cfg.files)
    t0 = time.perf_counter()
    if cfg.n_events is not None:
        images, targets = training_set(spec, cfg.n_events, cfg.image_size, cfg.workers, progress)
        class_counts = {c: int((targets == k).sum()) for k, c in enumerate(EVENT_CLASSES)}
        stream = None
    else:
        stream = event_stream(spec, "finetune")
        class_counts = None
    data_seconds = time.perf_counter() - t0

    def next_batch() -> tuple[Tensor, Tensor]:
        if stream is None:
            idx = torch.from_numpy(rng.choice(len(targets), size=cfg.batch_size,
                                              replace=len(targets) < cfg.batch_size))
            x, y = images[idx].float(), targets[idx]
        else:
            evs_ = [next(stream) for _ in range(cfg.batch_size)]
            x, y = view_images(evs_, cfg.image_size), class_targets(evs_)
        return (_flip(x, rng) if cfg.augment else x), y

    opt = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    log = LossLog(run, title=f"{cfg.kind} baseline")
    losses: list[float] = []
    correct = seen = 0
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"train {cfg.kind}", disable=not progress, dynamic_ncols=True)
    for step in bar:
        lr_now = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr_now
        x, y = next_batch()
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()

        losses.append(loss.item())
        correct += int((logits.argmax(-1) == y).sum())
        seen += len(y)
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.add(step=step, loss=losses[-1], lr=lr_now, train_acc=correct / seen)
            correct = seen = 0
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr_now:.2e}")
    train_seconds = time.perf_counter() - t0
    net.eval()
    try:
        log.plot(("loss",))
    except Exception:  # a plot is a nicety; never lose a trained model over matplotlib
        pass

    tail = losses[-min(len(losses), 20):]
    manifest = {
        "command": command or _call_string(cfg),
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "config": asdict(cfg),
        "data": {**spec.to_dict(), "split": "finetune", "data_seed": split_seed(cfg.seed, "finetune"),
                 "n_events": cfg.n_events, "class_counts": class_counts},
        "final_loss": losses[-1], "final_loss_mean20": float(np.mean(tail)),
        "train_seconds": round(train_seconds, 2), "data_seconds": round(data_seconds, 2),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    save_baseline(run, net, manifest)
    return read_baseline_manifest(run)


# ============================================================================ command line
def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m larsight.evals.baselines", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train a two-view CNN or ViT baseline")
    tr.add_argument("--kind", choices=KINDS, default="cnn")
    tr.add_argument("--steps", type=int, default=600)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    tr.add_argument("--n-events", default="2000", help="fixed training set size, or 'all' (fresh events)")
    tr.add_argument("--width-mult", type=float, help="CNN width multiplier (default 1.0)")
    tr.add_argument("--model", default="{}", help="JSON architecture overrides, e.g. '{\"layers\": 4}'")
    tr.add_argument("--run-dir", required=True)
    tr.add_argument("--files", nargs="+", default=[], help="neutrino event files instead of simulation")
    tr.add_argument("--threads", type=int, help="torch CPU threads")
    be = sub.add_parser("bench", help="CPU/GPU inference ms per event")
    be.add_argument("--kind", choices=KINDS, default="cnn")
    be.add_argument("--run-dir", help="a trained baseline (default: random weights, default size)")
    be.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    be.add_argument("--width-mult", type=float, default=1.0)
    be.add_argument("--n-events", type=int, default=64)
    be.add_argument("--batch-size", type=int, default=32)
    be.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cmd == "train":
        n = None if args.n_events == "all" else int(args.n_events)
        man = train_baseline(args.kind, args.steps, args.batch_size, args.lr, args.seed, args.image_size,
                             args.run_dir, n, width_mult=args.width_mult, model=json.loads(args.model),
                             files=tuple(args.files),
                             command="python -m larsight.evals.baselines " + " ".join(
                                 shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
        print(f"{args.run_dir}: {man['n_parameters']:,} parameters, final loss {man['final_loss']:.4f} "
              f"(mean of last 20: {man['final_loss_mean20']:.4f}), {man['train_seconds']:.0f} s")
        return 0
    from larsight.encoder.data import DataSpec, take

    if args.run_dir:
        model = load_baseline(args.run_dir)
    elif args.kind == "cnn":
        model = TwoViewCNN(width_mult=args.width_mult, image_size=args.image_size).eval()
    else:
        model = TwoViewViT(image_size=args.image_size).eval()
    evs = take(DataSpec(seed=0), "eval", args.n_events)
    r = time_inference(model, evs, batch_size=args.batch_size)
    print(json.dumps({"kind": model.kind, "n_parameters": count_parameters(model), **r}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
