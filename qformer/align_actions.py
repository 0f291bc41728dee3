"""The action stage of ``larsight align``: QLoRA on the action corpus.

    larsight align --stage actions --init checkpoints/vlm_smollm2 --steps 3000 --name actions0

Starts from a stage-2 VLM folder (projector + adapters) and trains its LoRA adapters on the
action corpus (``qformer.corpus.actions``): the prompt is ``action_schema.action_prompt`` (earlier
turns, file metadata, the question) after the event tokens, the target the canonical action
JSON. With ``explain_fraction`` F > 0 the stage is multi-task: that share of every batch is
explanation examples (``qformer.corpus.explanations``: the observations as text after the event
tokens, ``explain_schema.explain_prompt``; the target a grounded explanation), the rest action
examples, through the same ``vlm.assemble`` (F = 0: the action stage exactly as before). The base
is the NF4-quantised language model, dequantised once to fp32 (the same function QLoRA computes,
without dequantising 135 M weights at every forward on a CPU; ``load_vlm`` builds the same base at
inference) with the adapters trainable; the projector stays frozen.

The action does not depend on the event's content, so the event tokens come from a pool of
``pool`` simulated events of the ``align`` split, projected once. A step draws ``batch_size``
corpus examples (by index: ``--resume`` continues the same sequence) and as many pool events.

The run folder gets ``loss.csv`` / ``loss.png``, ``state/`` (``--resume``), ``vlm/`` (projector
copy + adapters + ``vlm.json``; ``kind: align-actions``), and ``eval.json``: the action accuracy
on ``eval_n`` examples of the HELD-OUT templates, decoded under the action grammar
(``qformer.action_decoder``), before training (the initial adapters) and after; with F > 0 the
evaluation after training adds ``explain``: ``eval_n // 2`` held-out explanation examples
generated greedily and checked by the agent's validator (``check``, passed in like the grammar's
JSON schema, which belongs to the agent's tools): the first-draft contradiction rate
(contradicted claims / claims), the share of texts with a contradicted claim, unverifiable
claims, numbers that appear nowhere in the observations, and claims per text.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from larsight.encoder.checkpoint import has_train_state, load_train_state, save_train_state
from larsight.encoder.data import DataSpec, event_stream
from larsight.encoder.training import LossLog, StopRequest, check_resume_config, command_line, lr_at
from larsight.events.formats.atomic import atomic_open

from .action_decoder import ActionDecoder
from .corpus.actions import action_examples, normalize_action
from .corpus.explain_schema import ungrounded_numbers, whole_sentences
from .corpus.explanations import explanation_examples
from .vlm import DEFAULT_VLM_DIR, VLM, load_vlm

__all__ = ["ActionsConfig", "align_actions", "load_trainable", "evaluate_actions", "evaluate_explanations",
           "explain_count"]


@dataclass
class ActionsConfig:
    run_dir: str
    """The run folder (``larsight align --stage actions`` resolves it with
    ``encoder.training.resolve_run_dir``: ``<runs root>/align_actions-<name or UTC time>``)."""
    init: Optional[str] = None
    """The stage-2 VLM folder to start from (default: the shipped ``checkpoints/vlm_smollm2``)."""
    steps: int = 3000
    batch_size: int = 8
    lr: float = 3e-4
    min_lr: float = 1e-5
    warmup: int = 30
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    pool: int = 32
    """Simulated events whose tokens the examples are paired with."""
    eval_n: int = 120
    """Held-out-template examples decoded before and after training (0: no evaluation)."""
    seed: int = 0
    time_limit_min: Optional[float] = None
    log_every: int = 10
    ckpt_every: int = 100
    resume: bool = False
    explain_fraction: float = 0.0
    """Share of each batch drawn from the explanation corpus (0: actions only, as before)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.pool < 1:
            raise ValueError("--steps, --batch-size and the event pool must be >= 1")
        if not 0.0 <= float(self.explain_fraction) <= 1.0:
            raise ValueError(f"--explain-fraction must be between 0 and 1, got {self.explain_fraction}")
        if self.eval_n < 0:
            raise ValueError(f"eval_n must be >= 0, got {self.eval_n}")


RESUME_FREE = ("run_dir", "resume", "steps", "time_limit_min", "log_every", "ckpt_every", "eval_n")
"""ActionsConfig fields that may change when a run is resumed."""


def load_trainable(folder: Optional[str | Path]) -> VLM:
    """A VLM folder with its LoRA adapters trainable on the dequantised NF4 base (module docstring)."""
    vlm = load_vlm(folder, merge=True)      # the inference model: NF4 base dequantised, adapters merged
    if not vlm.manifest.get("has_adapter"):
        raise ValueError(f"{folder or DEFAULT_VLM_DIR}: the action stage starts from a stage-2 VLM with LoRA adapters")
    vlm.lm.unmerge_adapter()                # the adapters apart again, on the same base
    for name, p in vlm.lm.named_parameters():
        p.requires_grad_("lora_" in name)
    vlm.projector.requires_grad_(False)
    return vlm


def _event_pool(vlm: VLM, n: int, seed: int) -> torch.Tensor:
    """Projected tokens (n, Q, H) of ``n`` events of the align split."""
    spec = DataSpec(modes="nu", seed=seed, voxel_size_cm=vlm.encoder.voxel_size_cm)
    events = []
    for ev in event_stream(spec, "align", min_points=8):
        events.append(ev)
        if len(events) == n:
            break
    with torch.no_grad():
        return torch.cat([vlm.project(vlm.event_inputs(events[i:i + 8])).lm_embeds
                          for i in range(0, len(events), 8)]).detach()


def evaluate_actions(vlm: VLM, schema: Optional[dict], pool: torch.Tensor, n: int, seed: int,
                     parse: Optional[Callable[[str], dict]] = None) -> dict[str, Any]:
    """Action accuracy on ``n`` held-out-template examples, decoded under ``schema``: the share
    whose action (kind, reason, calls with their arguments) equals the target's, the share of the
    right tools alone, and per example kind."""
    if n == 0:
        return {}
    was = vlm.lm.training
    vlm.lm.eval()
    dec = ActionDecoder(vlm, schema, max_new_tokens=96)
    exs = action_examples(n, seed=seed + 1000, split="heldout")
    idx = np.random.default_rng(seed + 7).integers(len(pool), size=n)
    right, tools_right, by_kind, samples = 0, 0, {}, []
    for ex, i in zip(exs, idx):
        text = dec.generate_embeds(pool[int(i)][None], [ex["prompt"]])[0]
        try:
            got = parse(text) if parse else json.loads(text)
        except Exception:  # noqa: BLE001 - an unparsable action is a wrong one
            got = {}
        g, t = normalize_action(got), normalize_action(ex["action"])
        ok = g == t
        tools_ok = g[0] == t[0] and sorted(json.loads(c)["calls"][0]["tool"] for c in g[2]) == \
            sorted(json.loads(c)["calls"][0]["tool"] for c in t[2])
        right += ok
        tools_right += tools_ok
        k = by_kind.setdefault(ex["kind"], [0, 0])
        k[0] += ok
        k[1] += 1
        if len(samples) < 12:
            samples.append({"question": ex["question"], "target": ex["target"], "got": text})
    vlm.lm.train(was)
    return {"n": n, "action_accuracy": right / n, "tool_accuracy": tools_right / n,
            "by_kind": {k: v[0] / v[1] for k, v in sorted(by_kind.items())}, "samples": samples}


def evaluate_explanations(vlm: VLM, pool: torch.Tensor, n: int, seed: int,
                          check: Optional[Callable[[str, dict], list[str]]] = None,
                          max_new_tokens: int = 96) -> dict[str, Any]:
    """Greedy explanations of ``n`` held-out explanation examples, checked against each example's
    measurements: ``check(text, evidence_json)`` gives the verdict of every claim read from the
    text (``agent.vlm_actions.explanation_verdicts``); numbers are checked against the
    observations text. Rates over claims and over texts (module docstring)."""
    if n == 0:
        return {}
    was = vlm.lm.training
    vlm.lm.eval()
    dec = ActionDecoder(vlm, None, max_new_tokens=max_new_tokens)
    exs = explanation_examples(n, seed=seed + 2000, split="heldout")
    idx = np.random.default_rng(seed + 11).integers(len(pool), size=n)
    claims = contradicted = unverifiable = with_contra = numbers = with_ungrounded = 0
    samples = []
    for ex, i in zip(exs, idx):
        text = whole_sentences(dec.generate_embeds(pool[int(i)][None], [ex["prompt"]])[0])
        verdicts = list(check(text, ex["evidence"])) if check else []
        bad_numbers = ungrounded_numbers(text, ex["observations"])
        claims += len(verdicts)
        contradicted += verdicts.count("contradicted")
        unverifiable += verdicts.count("unverifiable")
        with_contra += "contradicted" in verdicts
        numbers += len(bad_numbers)
        with_ungrounded += bool(bad_numbers)
        if len(samples) < 8:
            samples.append({"question": ex["question"], "target": ex["target"], "got": text,
                            "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
                            "ungrounded_numbers": bad_numbers})
    vlm.lm.train(was)
    return {"n": n, "checked": check is not None, "claims": claims,
            "contradiction_rate": contradicted / claims if claims else 0.0,
            "texts_with_contradiction": with_contra / n, "unverifiable": unverifiable,
            "unverifiable_rate": unverifiable / claims if claims else 0.0,
            "ungrounded_numbers": numbers, "texts_with_ungrounded_numbers": with_ungrounded / n,
            "claims_per_text": claims / n, "samples": samples}


def explain_count(step: int, batch_size: int, fraction: float) -> int:
    """Explanation examples in the batch of ``step``: the running total follows the fraction
    exactly (floor), so every step's mix is fixed by its number and ``--resume`` repeats it."""
    if fraction <= 0:
        return 0
    return int(np.floor((step + 1) * batch_size * fraction + 1e-9) - np.floor(step * batch_size * fraction + 1e-9))


def _batch(cfg: "ActionsConfig", step: int, pos: int, epos: int) -> tuple[list[dict], int, int]:
    """The examples of one step (actions, then explanations) and the next corpus positions."""
    k = explain_count(step, cfg.batch_size, cfg.explain_fraction)
    exs = action_examples(cfg.batch_size - k, seed=cfg.seed, split="train", start=pos) if k < cfg.batch_size else []
    if k:
        exs += explanation_examples(k, seed=cfg.seed, split="train", start=epos)
    return exs, pos + cfg.batch_size - k, epos + k


def _loss(vlm: VLM, pool: torch.Tensor, exs: list[dict], rng: np.random.Generator) -> torch.Tensor:
    """Mean token cross-entropy of the batch. Actions (~100 tokens) and explanations (~300) go
    through the model as separate padded sub-batches, so short examples are not padded to the
    longest explanation (3x the compute and memory of a mixed batch); the sum over target tokens
    divided by their count is the loss a joint batch gives."""
    idx = torch.as_tensor(rng.integers(len(pool), size=len(exs)))
    groups = [[i for i, e in enumerate(exs) if ("evidence" in e) == explain] for explain in (False, True)]
    total, tokens = None, 0
    for g in (g for g in groups if g):
        batch = vlm.assemble(pool[idx[g]], [exs[i]["prompt"] for i in g], [exs[i]["target"] for i in g])
        n = int((batch["labels"][:, 1:] != -100).sum())
        part = vlm.lm(**batch).loss * n
        total, tokens = (part, n) if total is None else (total + part, tokens + n)
    return total / max(tokens, 1)


def _write_json(path: Path, data: dict) -> None:
    with atomic_open(path) as fh:
        fh.write(json.dumps(data, indent=2, default=str) + "\n")


def align_actions(cfg: ActionsConfig, schema: Optional[dict], parse: Optional[Callable[[str], dict]] = None,
                  command: Optional[str] = None,
                  check: Optional[Callable[[str, dict], list[str]]] = None) -> dict[str, Any]:
    """Run (or resume) the action stage; returns a summary (also ``summary.json``).
    ``schema``: the action grammar (``agent.actions.action_json_schema()``) the evaluation
    decodes under; ``parse``: the agent's parser (text -> action dict) for that evaluation;
    ``check``: the agent's validator for the explanation evaluation (text, evidence JSON ->
    the verdict of every claim)."""
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    command = command or command_line()
    torch.manual_seed(cfg.seed)
    vlm = load_trainable(cfg.init)
    params = [p for p in vlm.lm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": params, "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([cfg.seed, 23])
    modules = {"projector": vlm.projector}
    step, pos, epos = _resume(run, cfg, vlm, modules, optimizer, rng) if cfg.resume else (0, 0, 0)
    pool = _event_pool(vlm, cfg.pool, cfg.seed)
    evals = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() and step else {}
    if step == 0 and cfg.eval_n:
        evals["before"] = evaluate_actions(vlm, schema, pool, cfg.eval_n, cfg.seed, parse)
        _write_json(run / "eval.json", evals)
        print(f"held-out action accuracy before: {evals['before']['action_accuracy']:.3f}")
    log = LossLog(run, resume_step=step, title="align: actions")
    print(f"align actions: {sum(p.numel() for p in params) / 1e6:.2f} M trainable parameters, "
          f"{cfg.batch_size} examples/step" + (f" ({100 * cfg.explain_fraction:g}% explanations)"
                                               if cfg.explain_fraction else ""))
    vlm.lm.train()
    pbar = tqdm(total=cfg.steps, initial=step, desc="align actions", unit="step", dynamic_ncols=True)
    t_start = t_last = time.time()
    why = None
    recent: list[float] = []
    metrics: dict[str, float] = {}
    with StopRequest(cfg.time_limit_min) as stop:
        while step < cfg.steps:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, cfg)
            exs, pos, epos = _batch(cfg, step, pos, epos)
            loss = _loss(vlm, pool, exs, rng)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"align actions: non-finite loss at step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            recent.append(loss.item())
            pbar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.time()
                metrics = {"loss": float(np.mean(recent)), "sec_per_step": (now - t_last) / len(recent)}
                t_last, recent = now, []
                log.add(step=step, **metrics, elapsed_min=(now - t_start) / 60)
                pbar.set_postfix(loss=f"{metrics['loss']:.3f}")
            why = stop.reason()
            if step % cfg.ckpt_every == 0 or step == cfg.steps or why:
                _save(run, cfg, vlm, command, step, metrics, modules, optimizer, (pos, epos), rng, log)
            if why:
                print(f"stopped at step {step} ({why}); continue with --resume --run-dir {run}")
                break
    pbar.close()
    if cfg.eval_n and why != "signal":   # a person who stopped the run wants it stopped, not evaluated
        _final_eval(run, cfg, vlm, schema, parse, check, pool, evals, step)
    summary = {"run_dir": str(run), "stage": "actions", "step": step, "minutes": (time.time() - t_start) / 60,
               **metrics, **{f"heldout_action_accuracy_{k}": v["action_accuracy"] for k, v in evals.items()}}
    if "explain" in evals.get("after", {}):
        summary["heldout_explain_contradiction_rate_after"] = evals["after"]["explain"]["contradiction_rate"]
    _write_json(run / "summary.json", summary)
    return summary


def _resume(run: Path, cfg: ActionsConfig, vlm: VLM, modules: dict, optimizer,
            rng: np.random.Generator) -> tuple[int, int, int]:
    """The step and corpus positions of a saved run (adapters, optimizer and rng restored);
    (0, 0, 0) when the folder holds no state yet."""
    if not has_train_state(run / "state"):
        return 0, 0, 0
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = json.loads((run / "state" / "state.json").read_text()).get("extra", {})
    check_resume_config(saved.get("config", {}), asdict(cfg), RESUME_FREE, run)
    set_peft_model_state_dict(vlm.lm, load_file(str(run / "vlm" / "adapter" / "adapter_model.safetensors")))
    st = load_train_state(run / "state", modules=modules, optimizer=optimizer)
    rng.bit_generator.state = st["extra"]["numpy_rng"]
    print(f"resumed {run} at step {st['step']}")
    # runs saved before the explanation corpus have no explain_pos
    return st["step"], int(st["extra"]["example_pos"]), int(st["extra"].get("explain_pos", 0))


def _final_eval(run: Path, cfg: ActionsConfig, vlm: VLM, schema, parse, check, pool: torch.Tensor,
                evals: dict, step: int) -> None:
    evals["after"] = evaluate_actions(vlm, schema, pool, cfg.eval_n, cfg.seed, parse)
    evals["after"]["step"] = step
    print(f"held-out action accuracy after {step} steps: {evals['after']['action_accuracy']:.3f}")
    if cfg.explain_fraction > 0 and cfg.eval_n // 2:
        ex = evaluate_explanations(vlm, pool, cfg.eval_n // 2, cfg.seed, check)
        evals["after"]["explain"] = ex
        print(f"held-out explanations: {ex['claims_per_text']:.1f} claims per text, first-draft contradiction "
              f"rate {ex['contradiction_rate']:.3f}, {100 * ex['texts_with_ungrounded_numbers']:.0f}% of texts "
              f"with a number not in the observations")
    _write_json(run / "eval.json", evals)


def _save(run: Path, cfg: ActionsConfig, vlm: VLM, command: str, step: int, metrics: dict, modules: dict,
          optimizer, pos: tuple[int, int], rng: np.random.Generator, log: LossLog) -> None:
    corpus = "qformer.corpus.actions" + (" + qformer.corpus.explanations" if cfg.explain_fraction else "")
    vlm.save_pretrained(run / "vlm", extra={
        "kind": "align-actions", "command": command, "init": str(cfg.init or DEFAULT_VLM_DIR),
        "data": {"corpus": corpus, "seed": cfg.seed, "split": "train", "pool_events": cfg.pool},
        "actions_config": asdict(cfg), "explain_fraction": cfg.explain_fraction, "step": step, "metrics": metrics})
    save_train_state(run / "state", step=step, modules=modules, optimizer=optimizer,
                     extra={"example_pos": pos[0], "explain_pos": pos[1], "numpy_rng": rng.bit_generator.state,
                            "config": asdict(cfg)})
    log.plot(("loss",))
