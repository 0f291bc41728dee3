"""Two-stage alignment of the encoder to the language model (``larsight align``).

    larsight align --stage 1 --steps 600 --run-dir runs/align1            # LM frozen
    larsight align --stage 2 --init runs/align1/vlm --steps 600 --run-dir runs/align2   # QLoRA

Stage 1 trains the learned queries, the Q-Former and both projections with the language model
frozen: a SigLIP (or CLIP) contrastive loss between the pooled query outputs and the frozen
LM's embedding of a caption of the same event (open_clip's losses), plus the captioning loss
of the caption through the frozen LM, which teaches the projector to speak the LM's language.
Stage 2 adds LoRA adapters to the LM (on the 4-bit NF4 model: QLoRA) and trains them with the
projector on instructions: classification with explanation, question answering and tool-use
traces. Both stages read events from the simulator's ``align`` split (never the ``eval``
split the reports test on) and write text targets with ``qformer.corpus`` from the truth.

A step: simulate ``batch_size`` events, encode them with the frozen encoder, pick one text
per event, one optimizer step. The run folder gets ``loss.csv`` / ``loss.png``, ``state/``
(``--resume``), and ``vlm/`` (projector + adapters + ``vlm.json`` with the exact command,
data seed and final losses), rewritten every ``--ckpt-every`` steps. Runs on one CPU, one GPU
or many through ``accelerate launch``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from tqdm.auto import tqdm

from larsight.encoder import load_model
from larsight.encoder.checkpoint import has_train_state, load_train_state, save_train_state
from larsight.encoder.data import DataSpec, event_stream
from larsight.encoder.training import (LossLog, StopRequest, check_resume_config, command_line,
                                      log_checkpoint, lr_at, positioned, resolve_run_dir)

from . import corpus
from .lm import load_lm
from .projector import EventProjector, EventProjectorConfig
from .vlm import VLM

STAGE2_MIX = {"classify": 0.5, "qa": 0.35, "tool": 0.15}
"""Share of each instruction kind in stage 2 (classification is the headline task)."""


@dataclass
class AlignConfig:
    stage: int = 1
    run_dir: Optional[str] = None
    """Default: ``<runs root>/align<stage>-<UTC time>`` (``encoder.training.resolve_run_dir``)."""
    encoder: Optional[str] = None
    """Encoder checkpoint with heads (default: ``encoder.DEFAULT_CHECKPOINT``)."""
    lm: str = "smollm2-135m-instruct"
    quantization: str = "nf4"
    """'nf4' (4-bit base, QLoRA in stage 2) or 'none' (full-precision base)."""
    init: Optional[str] = None
    """Stage 2: the stage-1 ``vlm/`` folder (projector weights to start from)."""
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    lora_lr: float = 2e-4
    min_lr: float = 1e-5
    warmup: int = 30
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    contrastive: str = "siglip"
    contrastive_weight: float = 1.0
    caption_weight: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    n_queries: int = 16
    qformer_layers: int = 2
    qformer_hidden: int = 256
    prompt: str = "physics"
    """System prompt trained with: 'physics' (with the class definitions, 127 tokens) or 'bare'
    (19 tokens; the cheap choice for stage 1 on a CPU). Saved in the manifest and used at
    inference."""
    max_answer_tokens: Optional[int] = 64
    """Answers (captions, explanations) are cut after this many tokens; None keeps them whole."""
    data_mode: str = "nu"
    voxel_size_cm: Optional[float] = None
    """Grid the alignment events are simulated on (default: the encoder's own grid)."""
    seed: int = 0
    time_limit_min: Optional[float] = None
    log_every: int = 10
    ckpt_every: int = 100
    resume: bool = False
    stop_at: Optional[int] = None
    """Stop (with a checkpoint) at this step; the schedule still runs to ``steps``."""

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"--stage must be 1 or 2, got {self.stage}")
        if self.quantization not in ("nf4", "none"):
            raise ValueError(f"--quantization must be 'nf4' or 'none', got {self.quantization!r}")
        if self.contrastive not in ("siglip", "clip"):
            raise ValueError(f"--contrastive must be 'siglip' or 'clip', got {self.contrastive!r}")
        if self.prompt not in ("physics", "bare"):
            raise ValueError(f"--prompt must be 'physics' or 'bare', got {self.prompt!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1")


# ============================================================================ texts
def stage1_text(facts, rng: np.random.Generator) -> tuple[str, str]:
    """(question, caption) for stage 1: the caption is both the contrastive text and the
    captioning target."""
    caption = corpus.captions(facts, rng, n=1)[0]
    return corpus.CAPTION_PROMPT, caption


def stage2_text(facts, rng: np.random.Generator) -> tuple[str, str, str]:
    """(kind, question, answer) for stage 2, kinds drawn by ``STAGE2_MIX``."""
    kinds = list(STAGE2_MIX)
    kind = kinds[int(rng.choice(len(kinds), p=np.array(list(STAGE2_MIX.values()))))]
    if kind == "classify" and facts.event_class is None:
        kind = "qa"  # particle-gun and rain events have no neutrino class
    if kind == "classify":
        q, a = corpus.classification_target(facts, rng)
        return kind, q, a
    if kind == "qa":
        pairs = corpus.qa_pairs(facts, rng)
        q, a = pairs[int(rng.integers(len(pairs)))]
        return kind, q, a
    traces = corpus.tool_traces(facts, rng)
    t = traces[int(rng.integers(len(traces)))]
    return kind, t["question"], corpus.tool_call_text(t)


def contrastive_loss(kind: str):
    # open_clip pulls in torchvision (seconds to import); only stage 1 needs its losses
    from open_clip.loss import ClipLoss, SigLipLoss

    return SigLipLoss() if kind == "siglip" else ClipLoss()


# ============================================================================ the loop
def build_vlm(cfg: AlignConfig, device) -> VLM:
    encoder = load_model(cfg.encoder, device=device)
    lm, tok = load_lm(cfg.lm, quantization=cfg.quantization, lora=cfg.stage == 2,
                      lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, device=device)
    if cfg.init:
        projector = EventProjector.from_pretrained(Path(cfg.init) / "projector")
        if projector.config.encoder_dim != encoder.embedding_dim:
            raise ValueError(f"--init {cfg.init}: projector expects {projector.config.encoder_dim}-d "
                             f"event tokens, the encoder gives {encoder.embedding_dim}")
    else:
        if cfg.stage == 2:
            print("align --stage 2 without --init: the projector starts from random weights")
        projector = EventProjector(EventProjectorConfig(
            encoder_dim=encoder.embedding_dim, lm_dim=lm.get_input_embeddings().embedding_dim,
            n_queries=cfg.n_queries, num_layers=cfg.qformer_layers, hidden_size=cfg.qformer_hidden))
    projector.to(device)
    enc_path = _repo_relative(encoder.path) if encoder.path else None
    manifest = {"lm": cfg.lm, "quantization": cfg.quantization, "encoder_checkpoint": enc_path}
    return VLM(encoder, projector, lm, tok, physics_prompt=cfg.prompt == "physics",
               manifest=manifest)


def _repo_relative(path) -> str:
    """Paths inside the repository are stored relative to it, so shipped manifests travel."""
    p = Path(path).resolve()
    root = Path(__file__).resolve().parents[1]
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _optimizer(vlm: VLM, cfg: AlignConfig) -> tuple[list[dict], torch.optim.Optimizer, list]:
    """AdamW over the projector (``lr``) and, in stage 2, the LoRA adapters (``lora_lr``)."""
    lora_params = [p for p in vlm.lm.parameters() if p.requires_grad]
    proj_params = [p for p in vlm.projector.parameters() if p.requires_grad]
    groups = [{"params": proj_params, "lr": cfg.lr, "base_lr": cfg.lr}]
    if lora_params:
        groups.append({"params": lora_params, "lr": cfg.lora_lr, "base_lr": cfg.lora_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    return groups, optimizer, lora_params


RESUME_FREE = ("run_dir", "resume", "steps", "time_limit_min", "log_every", "ckpt_every", "stop_at")
"""AlignConfig fields that may change when a run is resumed."""


def _resume(run: Path, cfg: AlignConfig, vlm: VLM, lora_params: list, modules: dict, optimizer,
            rng: np.random.Generator) -> tuple[int, int]:
    """Restore a run's state (and its LoRA adapters from the last ``vlm/adapter``); returns
    (step, stream position)."""
    # the frozen (possibly 4-bit) base never goes into the training state: the adapters are
    # restored from the last saved vlm/adapter, which every checkpoint writes with the state
    if lora_params:
        # peft loads transformers' model classes (seconds); only a stage-2 resume needs it
        from peft import set_peft_model_state_dict

        adapter = run / "vlm" / "adapter" / "adapter_model.safetensors"
        if not adapter.exists():
            raise FileNotFoundError(f"--resume: {adapter} is missing; cannot restore the "
                                    f"LoRA adapters of {run}")
        set_peft_model_state_dict(vlm.lm, load_file(str(adapter)))
    saved = json.loads((run / "state" / "state.json").read_text()).get("extra", {})
    check_resume_config(saved.get("config", {}), asdict(cfg), RESUME_FREE, run)
    st = load_train_state(run / "state", modules=modules, optimizer=optimizer)
    rng.bit_generator.state = st["extra"]["numpy_rng"]
    print(f"resumed {run} at step {st['step']}")
    return st["step"], int(st["extra"]["stream_pos"])


def _stage1_loss(vlm: VLM, projector, accelerator: Accelerator, loss_fn, cfg: AlignConfig, facts,
                 inputs: dict, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """Contrastive loss between events and their captions plus the captioning loss."""
    qa = [stage1_text(f, rng) for f in facts]
    questions, answers = [q for q, _ in qa], [a for _, a in qa]
    proj = projector(inputs["tokens"], inputs["mask"], inputs["coords"])
    with torch.no_grad():
        hidden, tmask = vlm.text_hidden(answers)
    p = accelerator.unwrap_model(projector)
    text = p.embed_text(hidden, tmask)
    con = loss_fn(proj.event_embed, text, p.logit_scale.exp(), p.logit_bias) \
        if cfg.contrastive == "siglip" else loss_fn(proj.event_embed, text, p.logit_scale.exp())
    batch = vlm.assemble(proj.lm_embeds, questions, answers, max_answer_tokens=cfg.max_answer_tokens)
    cap = vlm.lm(**batch).loss
    loss = cfg.contrastive_weight * con + cfg.caption_weight * cap
    return loss, {"contrastive": con.item(), "caption": cap.item()}


def _stage2_loss(vlm: VLM, projector, cfg: AlignConfig, facts, inputs: dict,
                 rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The language-model loss of the answers to drawn instructions."""
    triples = [stage2_text(f, rng) for f in facts]
    questions, answers = [t[1] for t in triples], [t[2] for t in triples]
    proj = projector(inputs["tokens"], inputs["mask"], inputs["coords"])
    batch = vlm.assemble(proj.lm_embeds, questions, answers, max_answer_tokens=cfg.max_answer_tokens)
    return vlm.lm(**batch).loss, {}


def _train_step(cfg: AlignConfig, vlm: VLM, projector, accelerator: Accelerator, optimizer,
                groups: list[dict], loss_fn, stream, rng: np.random.Generator, step: int
                ) -> tuple[int, torch.Tensor, dict[str, float]]:
    """One optimizer step on the next ``batch_size`` events; returns the stream position after
    them, the loss and its parts."""
    events = []
    for _ in range(cfg.batch_size):
        stream_pos, ev = next(stream)
        events.append(ev)
    facts = [corpus.event_facts(ev) for ev in events]
    inputs = vlm.event_inputs(events)
    if cfg.stage == 1:
        loss, parts = _stage1_loss(vlm, projector, accelerator, loss_fn, cfg, facts, inputs, rng)
    else:
        loss, parts = _stage2_loss(vlm, projector, cfg, facts, inputs, rng)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"align: non-finite loss at step {step}: {parts}")
    accelerator.backward(loss)
    if cfg.grad_clip:
        accelerator.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return stream_pos, loss, parts


def _save(run: Path, cfg: AlignConfig, vlm: VLM, command: str, voxel: float, step: int, metrics: dict,
          modules: dict, optimizer, stream_pos: int, rng: np.random.Generator, log: LossLog) -> None:
    """``vlm/`` (projector, adapters, manifest), the resumable state and the loss plot."""
    vlm.save_pretrained(run / "vlm", extra={
        "kind": f"align-stage-{cfg.stage}", "command": command,
        "data": {"modes": cfg.data_mode, "seed": cfg.seed, "split": "align",
                 "voxel_size_cm": voxel},
        "align_config": asdict(cfg), "step": step, "metrics": metrics})
    save_train_state(run / "state", step=step, modules=modules, optimizer=optimizer,
                     extra={"stream_pos": stream_pos, "numpy_rng": rng.bit_generator.state,
                            "config": asdict(cfg)})
    log.plot(("loss", "contrastive", "caption") if cfg.stage == 1 else ("loss",))
    log_checkpoint(run, step, 0, ["vlm", "state"])


def align(cfg: AlignConfig, command: Optional[str] = None) -> dict[str, Any]:
    """Run (or resume) one alignment stage; returns a summary (also in ``vlm/vlm.json``)."""
    accelerator = Accelerator()
    main = accelerator.is_main_process
    run = resolve_run_dir(f"align{cfg.stage}", cfg.run_dir, None, cfg.resume)
    cfg.run_dir = str(run)
    run.mkdir(parents=True, exist_ok=True)
    command = command or command_line()
    torch.manual_seed(cfg.seed)
    vlm = build_vlm(cfg, accelerator.device)
    vlm.projector.train()
    groups, optimizer, lora_params = _optimizer(vlm, cfg)
    projector, optimizer = accelerator.prepare(vlm.projector, optimizer)
    loss_fn = contrastive_loss(cfg.contrastive) if cfg.stage == 1 else None

    step, stream_pos = 0, 0
    rng = np.random.default_rng([cfg.seed, accelerator.process_index, 11])
    state_dir = run / "state"
    modules = {"projector": accelerator.unwrap_model(projector)}
    if cfg.resume and has_train_state(state_dir):
        step, stream_pos = _resume(run, cfg, vlm, lora_params, modules, optimizer, rng)
    voxel = cfg.voxel_size_cm or vlm.encoder.voxel_size_cm
    spec = DataSpec(modes=cfg.data_mode, seed=cfg.seed, voxel_size_cm=voxel)
    # position counts every simulated event (skipped ones too), so --resume restarts exactly
    stream = positioned(event_stream(spec, "align", start=stream_pos, rank=accelerator.process_index,
                                     world=accelerator.num_processes, min_points=0),
                        stream_pos, min_points=8)
    log = LossLog(run, resume_step=step, title=f"align stage {cfg.stage}") if main else None
    n_train = sum(p.numel() for g in groups for p in g["params"])
    if main:
        print(f"align stage {cfg.stage}: {n_train / 1e6:.2f} M trainable parameters, LM {cfg.lm} "
              f"({cfg.quantization}), {cfg.batch_size} events/step on {accelerator.device}")

    pbar = tqdm(total=cfg.steps, initial=step, disable=not main, desc=f"align stage {cfg.stage}",
                unit="step", dynamic_ncols=True)
    t_start = t_last = time.time()
    recent: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    last = min(cfg.steps, cfg.stop_at or cfg.steps)
    with StopRequest(cfg.time_limit_min) as stop:
        while step < last:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, _Sched(g["base_lr"], cfg))
            stream_pos, loss, parts = _train_step(cfg, vlm, projector, accelerator, optimizer, groups,
                                                  loss_fn, stream, rng, step)
            step += 1
            recent.append({"loss": loss.item(), **parts})
            pbar.update(1)
            if step % cfg.log_every == 0 or step == last:
                now = time.time()
                sec = (now - t_last) / max(1, len(recent))
                t_last = now
                metrics = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}
                metrics["sec_per_step"] = sec
                recent = []
                if main:
                    log.add(step=step, **metrics, elapsed_min=(now - t_start) / 60)
                    pbar.set_postfix(loss=f"{metrics['loss']:.3f}", s_step=f"{sec:.2f}")
            why = stop.reason(accelerator)
            if main and (step % cfg.ckpt_every == 0 or step == last or why):
                _save(run, cfg, vlm, command, voxel, step, metrics, modules, optimizer, stream_pos, rng, log)
            if why:
                print(f"stopped at step {step} ({why}); "
                      f"continue with --resume --run-dir {run}")
                break
    pbar.close()
    summary = {"run_dir": str(run), "stage": cfg.stage, "step": step,
               "minutes": (time.time() - t_start) / 60, **metrics}
    if main:
        (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"align stage {cfg.stage} done: step {step}, loss {metrics.get('loss', float('nan')):.3f}; "
              f"weights in {run / 'vlm'}")
    return summary


@dataclass
class _Sched:
    """``lr_at`` reads lr / min_lr / warmup / steps off a config; one per parameter group."""

    lr: float
    cfg: AlignConfig

    def __getattr__(self, name: str):
        return getattr(self.cfg, name)
