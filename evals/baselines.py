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

Modules: ``baseline_models`` (the networks, their images, inference), ``baseline_checkpoint``
(saving and loading); this one trains them and is the command line, and its names are the API.

Checkpoints: ``run_dir/model.safetensors`` + ``run_dir/model.json`` (format ``larsight-baseline``;
architecture, image settings, exact call, data seed, final loss), both written atomically; the
manifest is also in the safetensors header. ``load_baseline`` rebuilds the model from it and
checks every tensor's name and shape.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from larsight.encoder.data import DataSpec, event_stream, split_seed, take
from larsight.encoder.training import LossLog, lr_at, param_groups
from larsight.events.model import EVENT_CLASSES
from larsight.events.sim import MODES

from .baseline_checkpoint import (FORMAT, FORMAT_VERSION, MANIFEST_NAME, METADATA_KEY,
                                  WEIGHTS_NAME, BaselineCheckpointError, load_baseline,
                                  read_baseline_manifest, save_baseline)
from .baseline_models import (DEFAULT_IMAGE_SIZE, KINDS, PAPER_IMAGE_SIZE, VIEWS,
                              MobileNetTower, TwoViewCNN, TwoViewViT, build_model, class_targets,
                              count_parameters, predict_proba, time_inference, view_images)

__all__ = ["train_baseline", "BaselineConfig", "training_set", "load_baseline", "save_baseline",
           "read_baseline_manifest", "BaselineCheckpointError", "predict_proba", "time_inference",
           "view_images", "class_targets", "build_model", "count_parameters", "TwoViewCNN", "TwoViewViT",
           "MobileNetTower", "KINDS", "VIEWS", "DEFAULT_IMAGE_SIZE", "PAPER_IMAGE_SIZE", "FORMAT",
           "FORMAT_VERSION", "METADATA_KEY", "WEIGHTS_NAME", "MANIFEST_NAME"]


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
    next_batch, class_counts = _batch_source(cfg, spec, rng, progress)
    data_seconds = time.perf_counter() - t0
    losses, train_seconds = _fit(net, cfg, next_batch, run, progress)
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


def _batch_source(cfg: BaselineConfig, spec: DataSpec, rng: np.random.Generator,
                  progress: bool) -> tuple[Callable[[], tuple[Tensor, Tensor]], Optional[dict]]:
    """A function returning the next training batch (from the fixed set, imaged once, or from
    fresh events), and the fixed set's class counts."""
    if cfg.n_events is not None:
        images, targets = training_set(spec, cfg.n_events, cfg.image_size, cfg.workers, progress)
        class_counts = {c: int((targets == k).sum()) for k, c in enumerate(EVENT_CLASSES)}
        stream = None
    else:
        stream = event_stream(spec, "finetune")
        class_counts = None

    def next_batch() -> tuple[Tensor, Tensor]:
        if stream is None:
            idx = torch.from_numpy(rng.choice(len(targets), size=cfg.batch_size,
                                              replace=len(targets) < cfg.batch_size))
            x, y = images[idx].float(), targets[idx]
        else:
            evs_ = [next(stream) for _ in range(cfg.batch_size)]
            x, y = view_images(evs_, cfg.image_size), class_targets(evs_)
        return (_flip(x, rng) if cfg.augment else x), y

    return next_batch, class_counts


def _fit(net: nn.Module, cfg: BaselineConfig, next_batch: Callable[[], tuple[Tensor, Tensor]], run: Path,
         progress: bool) -> tuple[list[float], float]:
    """The training loop (AdamW, warmup + cosine, clipping, cross-entropy); returns the losses
    per step and the seconds it took. Leaves ``net`` in eval mode."""
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

    return losses, train_seconds


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

