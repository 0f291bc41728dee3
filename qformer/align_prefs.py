"""The preference stage of ``larsight align``: DPO on the VLM's LoRA adapters from expert feedback.

    larsight align --stage prefs --feedback feedback.sqlite --init checkpoints/vlm_smollm2 --steps 200

Pairs come from ``larsight feedback export --format dpo`` (or straight from a feedback database,
exported into the run folder first): they are the VLM's OWN text, never the whole answer (most of
an answer is rendered by code from the tools' typed claims). ``model_correction`` pairs: the
first-draft text with the expert's model-blamed corrections applied is *chosen*, the first draft
as written *rejected* (``ranking`` / ``verdict`` pairs: two first drafts from one prompt).
Corrections that blame a tool are not trained on (the VLM copied the measurement faithfully);
the manifest counts them (``feedback.tool_errors_left_out``) beside the pairs of each kind
(``feedback.pairs_by_kind``). Whole-answer pairs of older exports (kind ``correction``) are
skipped and counted.

The VLM sees each pair's prompt as it saw it when it wrote the first draft: the event's projected
tokens, then the stored prompt (``explain_prompt(question, Evidence)`` of the observations,
recorded with the draft); a pair without one gets the prompt rebuilt from its ``tools``
(``build_prompt``, given by the caller), else its question. The event comes back from its
reference (``load_event``); a pair whose event cannot be loaded is skipped and counted.

The loss is written here, not taken from TRL's ``DPOTrainer``: the trainer tokenises the prompt
text and calls ``model(input_ids=...)``, while our prompts begin with projected event embeddings
spliced into the sequence (``VLM.assemble`` builds ``inputs_embeds``), which its collator and
concatenated forward do not build. Per pair, with summed answer-token log-probabilities under the
policy (``pi``) and the initial adapters (``ref``):

    loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

The reference log-probabilities are computed once, before training, and stored in the run folder
(``prepared/``, with the pairs, their split and the event tokens), so ``--resume`` neither
recomputes them nor reads the feedback again. A held-out share of the pairs (``eval_fraction``,
split by answer id) is scored before and after training (``eval.json``): preference accuracy
(``pi_c > pi_r``), the mean log-probability margin, and the mean DPO reward margin
(``beta * ((pi_c - ref_c) - (pi_r - ref_r))``, 0 before training by definition).

The base is the NF4 language model dequantised once (as in ``align_actions``), the adapters
trainable, the projector frozen. Output goes to the run folder only (``vlm/``, ``kind:
align-prefs``): it never replaces the folder it started from.

This module stays in the qformer layer: reading the feedback database, rebuilding prompts from
tool outputs and loading events by reference belong to higher layers and are passed in
(``PrefsIO``; ``larsight.ui.cli_prefs`` wires the agent's).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from larsight.encoder.checkpoint import has_train_state, load_train_state, save_train_state
from larsight.encoder.shards import sha256
from larsight.encoder.training import LossLog, StopRequest, check_resume_config, command_line, lr_at
from larsight.events.formats.atomic import atomic_open

from .vlm import DEFAULT_VLM_DIR, VLM, load_vlm

__all__ = ["PrefsConfig", "PrefsIO", "PrefsInputError", "align_prefs", "dpo_loss", "read_pairs",
           "sequence_logps", "split_by_answer", "is_sqlite"]

PREPARED = "prepared"
EVAL_TRAIN_PAIRS = 64
"""Training pairs also scored before / after (how well the stage fits what it saw)."""


class PrefsInputError(ValueError):
    """Feedback that cannot be trained on as given (the message names the file, line or field)."""


@dataclass
class PrefsConfig:
    run_dir: str
    """The run folder (``larsight align --stage prefs``: ``<runs root>/align_prefs-<name or time>``)."""
    feedback: str
    """A DPO JSON-lines file (``larsight feedback export --format dpo``), a SQLite feedback database
    or a SQLAlchemy URL."""
    init: Optional[str] = None
    """The VLM folder to start from (default: the shipped ``checkpoints/vlm_smollm2``)."""
    beta: float = 0.1
    steps: int = 200
    batch_size: int = 4
    """Pairs per optimiser step (run one pair at a time, gradients accumulated: exact)."""
    lr: float = 5e-5
    min_lr: float = 1e-6
    warmup: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_fraction: float = 0.1
    limit: Optional[int] = None
    """Use the first N usable pairs only."""
    max_answer_tokens: int = 256
    seed: int = 0
    time_limit_min: Optional[float] = None
    stop_at: Optional[int] = None
    """Stop (with a checkpoint) at this step; the schedule still runs to ``steps``."""
    log_every: int = 10
    ckpt_every: int = 50
    resume: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise PrefsInputError("--steps and --batch-size must be >= 1")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise PrefsInputError(f"--beta must be a positive number, got {self.beta}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise PrefsInputError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")
        if self.limit is not None and self.limit < 1:
            raise PrefsInputError(f"--limit must be >= 1, got {self.limit}")
        if self.max_answer_tokens < 1:
            raise PrefsInputError(f"max_answer_tokens must be >= 1, got {self.max_answer_tokens}")


RESUME_FREE = ("run_dir", "resume", "steps", "time_limit_min", "stop_at", "log_every", "ckpt_every", "feedback")
"""PrefsConfig fields that may change when a run is resumed (the pairs are read from ``prepared/``)."""


@dataclass
class PrefsIO:
    """What the higher layers provide (``larsight.ui.cli_prefs.agent_io`` wires the agent's)."""

    load_event: Callable[[str], Any]
    """An event reference -> ``events.Event`` (raises when it cannot be loaded)."""
    build_prompt: Optional[Callable[[str, list], str]] = None
    """(question, the answer's tool calls) -> the VLM's user turn, for pairs without a stored prompt."""
    export_db: Optional[Callable[[str, Path], dict]] = None
    """(database URL or SQLite path, out file) -> export report: writes DPO pairs to ``out``."""
    prompt_name: str = field(default="stored prompt")


WHOLE_ANSWER_KINDS = ("correction",)
"""Pair kinds of older exports whose texts are whole answers (code-rendered): skipped."""


# ============================================================================ reading the feedback
def is_sqlite(path: Path) -> bool:
    """True for a SQLite database file (its 16-byte header)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _check_line(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise PrefsInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("chosen", "rejected"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise PrefsInputError(f"{where}: '{key}' must be a non-empty string")
    if not isinstance(obj.get("question"), str) and not isinstance(obj.get("prompt"), str):
        raise PrefsInputError(f"{where}: needs 'question' (or 'prompt'), the text the answer was given")
    if obj.get("tools") is not None and not isinstance(obj["tools"], list):
        raise PrefsInputError(f"{where}: 'tools' must be a list of tool calls")
    return obj


def read_pairs(path: str | os.PathLike) -> list[dict]:
    """The pairs of a DPO JSON-lines file (blank lines ignored); a malformed line raises
    ``PrefsInputError`` naming the file and the line."""
    path = Path(path)
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise PrefsInputError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            pairs.append(_check_line(obj, where))
    return pairs


def _feedback_file(cfg: PrefsConfig, io: PrefsIO, run: Path) -> tuple[Path, dict]:
    """The DPO file to read and how the manifest names the source."""
    src = cfg.feedback
    path = Path(src).expanduser()
    if "://" not in src and not path.exists():
        raise PrefsInputError(f"--feedback {src}: no such file (give a DPO .jsonl export, a feedback "
                              f"database file or a SQLAlchemy URL)")
    if "://" in src or is_sqlite(path):
        if io.export_db is None:
            raise PrefsInputError(f"--feedback {src}: a database, but no exporter was given")
        out = run / "feedback.dpo.jsonl"
        report = io.export_db(src, out)
        return out, {"type": "database", "source": src if "://" in src else str(path.resolve()),
                     "export": report, "export_sha256": sha256(out)}
    if path.is_dir():
        raise PrefsInputError(f"--feedback {src}: a folder; give a DPO .jsonl file or a database")
    return path, {"type": "file", "source": str(path.resolve()), "sha256": sha256(path)}


def split_by_answer(answer_ids: list[str], fraction: float, seed: int) -> set[str]:
    """The answer ids held out: the ``round(fraction * n)`` ids (at least one when ``fraction > 0``
    and there are two or more, never all) with the smallest seeded hashes, so an answer's pairs
    are all on one side and the split does not depend on the order of the file."""
    ids = sorted(set(answer_ids))
    if fraction <= 0 or len(ids) < 2:
        return set()
    n = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    key = lambda a: hashlib.sha256(f"{seed}:{a}".encode()).hexdigest()  # noqa: E731
    return set(sorted(ids, key=key)[:n])


# ============================================================================ the loss
def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-pair loss, per-pair reward margin) of DPO on summed log-probabilities."""
    margin = beta * ((pi_c - ref_c) - (pi_r - ref_r))
    return -F.logsigmoid(margin), margin


def sequence_logps(vlm: VLM, tokens: torch.Tensor, prompts: list[str], answers: list[str],
                   max_answer_tokens: Optional[int] = None) -> torch.Tensor:
    """(B,) summed log-probabilities of ``answers`` (their end token included) after the event
    ``tokens`` (B, Q, H) and ``prompts``; logits are computed only from the first answer position."""
    batch = vlm.assemble(tokens, prompts, answers, max_answer_tokens=max_answer_tokens)
    labels = batch.pop("labels")
    first = int((labels != -100).float().argmax(-1).min())         # first answer token of any row
    keep = labels.shape[1] - first + 1
    logits = vlm.lm(**batch, logits_to_keep=keep).logits.float()    # positions first-1 .. L-1
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, first:]
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (target != -100)).sum(-1)


def _answer_ids(vlm: VLM, text: str, cap: int) -> list[int]:
    return vlm.answer_ids(text)[:cap]


# ============================================================================ preparing the pairs
def _load_trainable(folder: Optional[str | Path]) -> VLM:
    """The VLM with its LoRA adapters trainable on the dequantised base, the projector frozen."""
    vlm = load_vlm(folder, merge=True)
    if not vlm.manifest.get("has_adapter"):
        raise PrefsInputError(f"{folder or DEFAULT_VLM_DIR}: the preference stage trains LoRA adapters; "
                              f"start from a stage-2 VLM folder that has them")
    vlm.lm.unmerge_adapter()
    for name, p in vlm.lm.named_parameters():
        p.requires_grad_("lora_" in name)
    vlm.projector.requires_grad_(False)
    return vlm


def _usable(raw: list[dict], cfg: PrefsConfig, io: PrefsIO, vlm: VLM) -> tuple[list[dict], dict, dict]:
    """(pairs with their prompt and event index, events by reference, skipped by reason)."""
    skipped: dict[str, int] = {}
    events: dict[str, Any] = {}
    bad_refs: set[str] = set()
    pairs = []
    skip = lambda why: skipped.__setitem__(why, skipped.get(why, 0) + 1)  # noqa: E731
    for n, p in enumerate(raw):
        if cfg.limit is not None and len(pairs) >= cfg.limit:
            break
        if p.get("kind") in WHOLE_ANSWER_KINDS:
            skip("whole-answer pair of an older export (not the VLM's own text; re-export)")
            continue
        ref = p.get("event")
        if not isinstance(ref, str) or not ref.strip():
            skip("no event reference")
            continue
        if ref not in events and ref not in bad_refs:
            try:
                events[ref] = io.load_event(ref)
            except Exception:  # noqa: BLE001 - an event that cannot be loaded skips its pairs
                bad_refs.add(ref)
        if ref in bad_refs:
            skip("event cannot be loaded")
            continue
        cap = cfg.max_answer_tokens
        if _answer_ids(vlm, p["chosen"], cap) == _answer_ids(vlm, p["rejected"], cap):
            skip(f"chosen equals rejected in the first {cfg.max_answer_tokens} tokens")
            continue
        question = p.get("question") or p.get("prompt")
        prompt = p.get("prompt") if isinstance(p.get("prompt"), str) and p["prompt"].strip() else \
            io.build_prompt(question, p.get("tools") or []) if io.build_prompt else question
        fids = [int(x) for x in (p.get("feedback_id"), p.get("rejected_feedback_id")) if x is not None]
        pairs.append({"line": n + 1, "event": ref, "prompt": prompt, "chosen": p["chosen"], "rejected": p["rejected"],
                      "kind": p.get("kind", ""), "answer_id": str(p.get("answer_id") or f"line{n + 1}"),
                      "feedback_ids": fids})
    return pairs, events, skipped


@torch.no_grad()
def _event_tokens(vlm: VLM, events: dict[str, Any], refs: list[str]) -> torch.Tensor:
    """(E, Q, H) projected tokens of the events, in ``refs`` order."""
    out = []
    for i in range(0, len(refs), 8):
        evs = [events[r] for r in refs[i:i + 8]]
        out.append(vlm.project(vlm.event_inputs(evs)).lm_embeds.detach().float().cpu())
    return torch.cat(out)


@torch.no_grad()
def _logps(vlm: VLM, tokens: torch.Tensor, pairs: list[dict], cap: int, desc: str = "") -> torch.Tensor:
    """(N, 2) summed log-probabilities (chosen, rejected) of ``pairs``, in eval mode."""
    was = vlm.lm.training
    vlm.lm.eval()
    rows = []
    for p in tqdm(pairs, desc=desc, unit="pair", disable=not desc, leave=False):
        t = tokens[p["token_row"]][None].expand(2, -1, -1).to(vlm.device)
        rows.append(sequence_logps(vlm, t, [p["prompt"]] * 2, [p["chosen"], p["rejected"]], cap).float().cpu())
    vlm.lm.train(was)
    return torch.stack(rows) if rows else torch.zeros(0, 2)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: Any) -> None:
    with atomic_open(path) as fh:
        fh.write(json.dumps(data, indent=2, default=str) + "\n")


def _prepare(cfg: PrefsConfig, io: PrefsIO, vlm: VLM, run: Path) -> dict:
    """Read, filter and split the pairs, project their events, score them under the initial
    adapters; everything into ``run/prepared`` (what ``--resume`` reads instead)."""
    path, source = _feedback_file(cfg, io, run)
    raw = read_pairs(path)
    pairs, events, skipped = _usable(raw, cfg, io, vlm)
    if not pairs:
        why = "; ".join(f"{v} {k}" for k, v in skipped.items()) or "the file has no pairs"
        raise PrefsInputError(f"--feedback {cfg.feedback}: no usable preference pairs ({len(raw)} read; {why})")
    refs = sorted({p["event"] for p in pairs})
    row_of = {r: i for i, r in enumerate(refs)}
    held = split_by_answer([p["answer_id"] for p in pairs], cfg.eval_fraction, cfg.seed)
    for p in pairs:
        p["token_row"] = row_of[p["event"]]
        p["split"] = "eval" if p["answer_id"] in held else "train"
    if not any(p["split"] == "train" for p in pairs):
        raise PrefsInputError("no training pairs left after holding out the evaluation share")
    tokens = _event_tokens(vlm, events, refs)
    ref = _logps(vlm, tokens, pairs, cfg.max_answer_tokens, desc="reference log-probs")
    folder = run / PREPARED
    folder.mkdir(parents=True, exist_ok=True)
    _save_tensors(folder / "tensors.safetensors", {"event_tokens": tokens, "reference_logps": ref})
    fids = sorted({f for p in pairs for f in p["feedback_ids"]})
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p["kind"] or "unnamed"] = kinds.get(p["kind"] or "unnamed", 0) + 1
    report = source.get("export") or {}
    source.update(pairs_read=len(raw), pairs_used=len(pairs), pairs_by_kind=kinds, skipped=skipped,
                  tool_errors_left_out=report.get("tool_errors") if source["type"] == "database" else None,
                  feedback_ids=fids, n_feedback=len(fids), prompt=io.prompt_name)
    prepared = {"source": source, "events": refs, "pairs": pairs}
    _write_json(folder / "pairs.json", prepared)
    return prepared


def _load_prepared(run: Path) -> tuple[dict, torch.Tensor, torch.Tensor]:
    prepared = json.loads((run / PREPARED / "pairs.json").read_text())
    t = load_file(str(run / PREPARED / "tensors.safetensors"))
    return prepared, t["event_tokens"], t["reference_logps"]


# ============================================================================ evaluation
def evaluate_pairs(vlm: VLM, tokens: torch.Tensor, ref: torch.Tensor, pairs: list[dict], idx: list[int],
                   beta: float, cap: int) -> dict[str, Any]:
    """Preference accuracy (policy prefers chosen: ``pi_c > pi_r``), mean log-probability margin,
    mean DPO reward margin, reward accuracy (reward margin > 0) and DPO loss on ``pairs[idx]``."""
    if not idx:
        return {"n": 0}
    pi = _logps(vlm, tokens, [pairs[i] for i in idx], cap)
    r = ref[idx]
    loss, reward = dpo_loss(pi[:, 0], pi[:, 1], r[:, 0], r[:, 1], beta)
    return {"n": len(idx), "preference_accuracy": float((pi[:, 0] > pi[:, 1]).float().mean()),
            "mean_logp_margin": float((pi[:, 0] - pi[:, 1]).mean()),
            "mean_reward_margin": float(reward.mean()), "reward_accuracy": float((reward > 0).float().mean()),
            "dpo_loss": float(loss.mean())}


def _evaluate(vlm: VLM, tokens, ref, pairs: list[dict], cfg: PrefsConfig) -> dict[str, Any]:
    ev = [i for i, p in enumerate(pairs) if p["split"] == "eval"]
    tr = [i for i, p in enumerate(pairs) if p["split"] == "train"][:EVAL_TRAIN_PAIRS]
    return {"heldout": evaluate_pairs(vlm, tokens, ref, pairs, ev, cfg.beta, cfg.max_answer_tokens),
            "train": evaluate_pairs(vlm, tokens, ref, pairs, tr, cfg.beta, cfg.max_answer_tokens)}


# ============================================================================ training
def _batch(step: int, n_train: int, batch_size: int, seed: int) -> list[int]:
    """Positions into the training pairs for ``step``: epochs of seeded permutations, so the
    sequence is a function of the step alone (``--resume`` continues it exactly)."""
    out = []
    for k in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(k, n_train)
        out.append(int(np.random.default_rng([seed, 29, epoch]).permutation(n_train)[pos]))
    return out


def _step(vlm: VLM, tokens, ref, pairs: list[dict], train_idx: list[int], chosen: list[int],
          cfg: PrefsConfig) -> dict[str, float]:
    """One optimiser step's gradients (pairs one at a time, loss / batch size each)."""
    losses, margins = [], []
    for j in chosen:
        i = train_idx[j]
        p = pairs[i]
        t = tokens[p["token_row"]][None].expand(2, -1, -1).to(vlm.device)
        pi = sequence_logps(vlm, t, [p["prompt"]] * 2, [p["chosen"], p["rejected"]], cfg.max_answer_tokens)
        r = ref[i].to(pi.device)
        loss, margin = dpo_loss(pi[0], pi[1], r[0], r[1], cfg.beta)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"align prefs: non-finite loss on pair {p['line']} (answer {p['answer_id']})")
        (loss / len(chosen)).backward()
        losses.append(loss.item())
        margins.append(margin.item())
    return {"loss": float(np.mean(losses)), "reward_margin": float(np.mean(margins)),
            "reward_accuracy": float(np.mean([m > 0 for m in margins]))}


def _save(run: Path, cfg: PrefsConfig, vlm: VLM, command: str, step: int, metrics: dict, optimizer,
          source: dict, evals: dict, log: Optional[LossLog]) -> None:
    src = {k: v for k, v in source.items() if k != "feedback_ids"}
    vlm.save_pretrained(run / "vlm", extra={
        "kind": "align-prefs", "command": command, "init": str(cfg.init or DEFAULT_VLM_DIR),
        "feedback": {**src, "feedback_ids": source.get("feedback_ids", [])},
        "beta": cfg.beta, "steps": cfg.steps, "step": step, "prefs_config": asdict(cfg),
        "metrics": metrics, "eval": evals})
    save_train_state(run / "state", step=step, modules={"projector": vlm.projector}, optimizer=optimizer,
                     extra={"config": asdict(cfg)})
    if log is not None:
        log.plot(("loss",))


def _check_run(run: Path, cfg: PrefsConfig) -> None:
    init = Path(cfg.init).expanduser().resolve() if cfg.init else DEFAULT_VLM_DIR.resolve()
    out = (run / "vlm").resolve()
    if out == init or init in out.parents or out in init.parents:
        raise PrefsInputError(f"--run-dir {run}: its vlm/ folder would overwrite the --init VLM {init}; "
                              f"the preference stage writes a new adapter version only into its run folder")


def _resume(run: Path, cfg: PrefsConfig, vlm: VLM, optimizer) -> int:
    from peft import set_peft_model_state_dict

    saved = json.loads((run / "state" / "state.json").read_text()).get("extra", {})
    check_resume_config(saved.get("config", {}), asdict(cfg), RESUME_FREE, run)
    set_peft_model_state_dict(vlm.lm, load_file(str(run / "vlm" / "adapter" / "adapter_model.safetensors")))
    st = load_train_state(run / "state", modules={"projector": vlm.projector}, optimizer=optimizer)
    print(f"resumed {run} at step {st['step']}")
    return int(st["step"])


def align_prefs(cfg: PrefsConfig, io: PrefsIO, command: Optional[str] = None) -> dict[str, Any]:
    """Run (or resume) the preference stage; returns a summary (also ``summary.json``)."""
    run = Path(cfg.run_dir)
    _check_run(run, cfg)
    run.mkdir(parents=True, exist_ok=True)
    command = command or command_line()
    torch.manual_seed(cfg.seed)
    vlm = _load_trainable(cfg.init)
    params = [p for p in vlm.lm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": params, "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    resuming = cfg.resume and has_train_state(run / "state")
    step = _resume(run, cfg, vlm, optimizer) if resuming else 0
    if not resuming:
        _prepare(cfg, io, vlm, run)
    prepared, tokens, ref = _load_prepared(run)
    pairs, source = prepared["pairs"], prepared["source"]
    train_idx = [i for i, p in enumerate(pairs) if p["split"] == "train"]
    evals = json.loads((run / "eval.json").read_text()) if resuming and (run / "eval.json").exists() else {}
    if "before" not in evals:
        evals["before"] = _evaluate(vlm, tokens, ref, pairs, cfg)
        _write_json(run / "eval.json", evals)
    print(f"align prefs: {len(train_idx)} training pairs, {len(pairs) - len(train_idx)} held out, "
          f"{len(source.get('feedback_ids', []))} feedback items, {sum(p.numel() for p in params) / 1e6:.2f} M "
          f"trainable parameters")
    step, metrics = _train(cfg, vlm, tokens, ref, pairs, train_idx, optimizer, params, step,
                           lambda s, m, lg: _save(run, cfg, vlm, command, s, m, optimizer, source, evals, lg), run)
    evals["after"] = {**_evaluate(vlm, tokens, ref, pairs, cfg), "step": step}
    _write_json(run / "eval.json", evals)
    _save(run, cfg, vlm, command, step, metrics, optimizer, source, evals, None)
    h0, h1 = evals["before"]["heldout"], evals["after"]["heldout"]
    if h0.get("n"):
        print(f"held-out preference accuracy {h0['preference_accuracy']:.3f} -> {h1['preference_accuracy']:.3f}, "
              f"reward margin {h0['mean_reward_margin']:.3f} -> {h1['mean_reward_margin']:.3f} ({h0['n']} pairs)")
    summary = {"run_dir": str(run), "stage": "prefs", "step": step, "pairs": len(pairs),
               "train_pairs": len(train_idx), "heldout_pairs": h0.get("n", 0),
               "feedback": {k: source.get(k) for k in ("pairs_by_kind", "tool_errors_left_out", "skipped")}, **metrics,
               **{f"heldout_{k}_{when}": evals[when]["heldout"].get(k) for when in ("before", "after")
                  for k in ("preference_accuracy", "mean_reward_margin")}}
    _write_json(run / "summary.json", summary)
    return summary


def _train(cfg: PrefsConfig, vlm: VLM, tokens, ref, pairs, train_idx, optimizer, params, step: int,
           save: Callable[[int, dict, Optional[LossLog]], None], run: Path) -> tuple[int, dict]:
    log = LossLog(run, resume_step=step, title="align: prefs (DPO)")
    vlm.lm.train()
    end = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
    pbar = tqdm(total=cfg.steps, initial=step, desc="align prefs", unit="step", dynamic_ncols=True)
    t_start = t_last = time.time()
    recent: list[dict] = []
    metrics: dict[str, float] = {}
    with StopRequest(cfg.time_limit_min) as stop:
        while step < end:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, cfg)
            m = _step(vlm, tokens, ref, pairs, train_idx, _batch(step, len(train_idx), cfg.batch_size, cfg.seed), cfg)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            recent.append(m)
            pbar.update(1)
            if step % cfg.log_every == 0 or step == end:
                now = time.time()
                metrics = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}
                metrics["sec_per_step"] = (now - t_last) / len(recent)
                t_last, recent = now, []
                log.add(step=step, **metrics, elapsed_min=(now - t_start) / 60)
                pbar.set_postfix(loss=f"{metrics['loss']:.3f}", margin=f"{metrics['reward_margin']:.3f}")
            why = stop.reason() or ("--stop-at" if step == cfg.stop_at and step < cfg.steps else None)
            if step % cfg.ckpt_every == 0 or step == end or why:
                save(step, metrics, log)
            if why:
                print(f"stopped at step {step} ({why}); continue with --resume --run-dir {run}")
                break
    pbar.close()
    vlm.lm.eval()
    return step, metrics
