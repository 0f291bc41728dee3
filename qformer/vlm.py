"""The detector-native VLM: point-cloud encoder -> Q-Former projector -> language model.

    from larsight.qformer import load_vlm
    vlm = load_vlm()                               # checkpoints/vlm_smollm2 (shipped)
    vlm.classify(event)        # {"nue_cc": 0.91, "numu_cc": 0.05, "nc": 0.04}
    vlm.explain(event, "Why is this not NC?")      # generated text
    vlm.embed(events)          # (B, D) event vectors in the aligned event-text space
    vlm.embed_text(["nu_e CC with a gap before the shower"])   # (B, D) text vectors

A prompt is the language model's own chat template with the event in the user turn:
``<system> ... <user> Event: [n_queries projected query embeddings] <question> <assistant>``.
The encoder stays frozen (its event tokens are the VLM's view of the event); the projector
trains in both stages; the language model is frozen in stage 1 and gets LoRA adapters
(QLoRA when it is loaded in 4-bit) in stage 2.

Classification is constrained as in Sagar et al. (arXiv 2509.08461): every class's canonical
answer text (``corpus.CLASS_TEXT``) is scored as a continuation of the classification prompt,
and the softmax over the summed log-probabilities is the class distribution, so the answer is
always exactly one of the three classes with probabilities that sum to one.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from transformers.utils import logging as hf_logging

from larsight.encoder import load_model
from larsight.events.model import EVENT_CLASSES, Event
from larsight.events.vocabulary import CLASS_TEXT

from .corpus import CLASSIFY_PROMPT
from .lm import cache_kwargs, load_lm, output_cache
from .projector import EventProjector

# peft asks every model `is_gradient_checkpointing`, which transformers 5.2x renames
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)

EVENT_PLACEHOLDER = "<event>"

SYSTEM_PROMPT = "You are larsight, an assistant that analyses liquid-argon TPC neutrino events."

PHYSICS_DEFINITIONS = (
    " Definitions: nu_e CC events have an electron shower that starts at the interaction vertex"
    " with about 2.1 MeV/cm (one MIP) in its first centimetres; nu_mu CC events have a long,"
    " minimum-ionising muon track from the vertex, often ending in a Michel electron; NC events"
    " have no charged lepton: only hadrons (protons, pions) and photon showers that start"
    " after a gap of centimetres with about 4.2 MeV/cm (two MIPs)."
)
"""Appended to the system prompt unless a caller asks for the bare prompt (prompt ablation)."""

DEFAULT_VLM_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "vlm_smollm2"
MANIFEST = "vlm.json"


def system_prompt(physics: bool = True) -> str:
    return SYSTEM_PROMPT + (PHYSICS_DEFINITIONS if physics else "")


class VLM(nn.Module):
    """Encoder (frozen) + projector + language model, with the inference API."""

    def __init__(self, encoder, projector: EventProjector, lm: nn.Module, tokenizer,
                 *, physics_prompt: bool = True, manifest: Optional[dict] = None):
        super().__init__()
        self.encoder = encoder          # encoder.EncoderModel (not an nn.Module: stays frozen)
        self.projector = projector
        self.lm = lm
        self.tokenizer = tokenizer
        self.physics_prompt = physics_prompt
        self.manifest = dict(manifest or {})
        self._prompt_cache: dict[tuple[str, bool], tuple[list[int], list[int]]] = {}
        self._system_kv: dict[bool, Any] = {}  # key/value cache of the shared system prefix
        self._tree = None  # the class texts' prefix tree (``_class_tree``)
        end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
        self.end_id = end if end is not None else tokenizer.eos_token_id

    def train(self, mode: bool = True) -> "VLM":
        # weights may change while training: the cached prefix goes stale when training starts
        # or ends, not on every ``eval()`` (each ``class_scores`` call makes one)
        if mode or self.training:
            self._system_kv.clear()
        return super().train(mode)

    # ------------------------------------------------------------------ devices
    @property
    def device(self) -> torch.device:
        return next(self.projector.parameters()).device

    def _embed_tokens(self, ids: Tensor) -> Tensor:
        return self.lm.get_input_embeddings()(ids)

    # ------------------------------------------------------------------ prompts
    def prompt_ids(self, question: str, physics: Optional[bool] = None) -> tuple[list[int], list[int]]:
        """Token ids before and after the event slots for one question."""
        physics = self.physics_prompt if physics is None else physics
        key = (question, physics)
        if key not in self._prompt_cache:
            messages = [{"role": "system", "content": system_prompt(physics)},
                        {"role": "user", "content": f"Event: {EVENT_PLACEHOLDER}\n{question}"}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
            before, after = text.split(EVENT_PLACEHOLDER, 1)
            enc = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]
            if len(self._prompt_cache) > 4096:
                self._prompt_cache.clear()
            self._prompt_cache[key] = (enc(before), enc(after))
        return self._prompt_cache[key]

    def answer_ids(self, answer: str, end: bool = True) -> list[int]:
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        return ids + ([self.end_id] if end else [])

    def assemble(self, event_embeds: Tensor, questions: Sequence[str],
                 answers: Optional[Sequence[str]] = None, *, physics: Optional[bool] = None,
                 end: bool = True, max_answer_tokens: Optional[int] = None) -> dict[str, Tensor]:
        """Language-model inputs for a batch: ``inputs_embeds`` (B, L, H), ``attention_mask``
        and, with answers, ``labels`` (-100 everywhere but the answer tokens). Right-padded.
        ``max_answer_tokens`` cuts long answers (training cost grows with every token)."""
        b, q, _ = event_embeds.shape
        if len(questions) != b or (answers is not None and len(answers) != b):
            raise ValueError(f"VLM.assemble: {b} events, {len(questions)} questions, "
                             f"{None if answers is None else len(answers)} answers")
        rows = []
        for i in range(b):
            before, after = self.prompt_ids(questions[i], physics)
            ans = self.answer_ids(answers[i], end) if answers is not None else []
            if max_answer_tokens is not None and len(ans) > max_answer_tokens:
                ans = ans[:max_answer_tokens]
            rows.append((before, after, ans))
        length = max(len(a) + q + len(c) + len(d) for a, c, d in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((b, length), pad, dtype=torch.long)
        labels = torch.full((b, length), -100, dtype=torch.long)
        attn = torch.zeros(b, length, dtype=torch.long)
        is_event = torch.zeros(b, length, dtype=torch.bool)
        for i, (before, after, ans) in enumerate(rows):
            n0, n1 = len(before), len(before) + q
            n2 = n1 + len(after)
            n3 = n2 + len(ans)
            ids[i, :n0] = torch.tensor(before, dtype=torch.long)
            ids[i, n1:n2] = torch.tensor(after, dtype=torch.long)
            if ans:
                ids[i, n2:n3] = torch.tensor(ans, dtype=torch.long)
                labels[i, n2:n3] = ids[i, n2:n3]
            is_event[i, n0:n1] = True
            attn[i, :n3] = 1
        dev = self.device
        ids, labels, attn, is_event = ids.to(dev), labels.to(dev), attn.to(dev), is_event.to(dev)
        text = self._embed_tokens(ids)
        embeds = text.masked_scatter(is_event.unsqueeze(-1),
                                     event_embeds.to(text.dtype).reshape(-1, text.shape[-1]))
        out = {"inputs_embeds": embeds, "attention_mask": attn}
        if answers is not None:
            out["labels"] = labels
        return out

    # ------------------------------------------------------------------ forward pieces
    def event_inputs(self, events: Sequence[Event]) -> dict[str, Tensor]:
        tok = self.encoder.event_tokens(list(events))
        return {k: v.to(self.device) for k, v in tok.items()}

    def project(self, event_inputs: dict[str, Tensor]):
        return self.projector(event_inputs["tokens"], event_inputs["mask"], event_inputs["coords"])

    def lm_loss(self, event_inputs: dict[str, Tensor], questions: Sequence[str],
                answers: Sequence[str], physics: Optional[bool] = None,
                max_answer_tokens: Optional[int] = None) -> Tensor:
        """Mean next-token cross-entropy over the answer tokens."""
        proj = self.project(event_inputs)
        batch = self.assemble(proj.lm_embeds, questions, answers, physics=physics,
                              max_answer_tokens=max_answer_tokens)
        return self.lm(**batch).loss

    def text_hidden(self, texts: Sequence[str], max_length: int = 96) -> tuple[Tensor, Tensor]:
        """Last hidden states of texts through the base language model (adapters off), so the
        text side of the aligned space does not move when stage 2 trains the adapters."""
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                             max_length=max_length, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        ctx = self.lm.disable_adapter() if hasattr(self.lm, "disable_adapter") else contextlib.nullcontext()
        merged = _adapters_merged(self.lm)
        with ctx:  # on merged adapters peft unmerges them for this forward...
            out = self.lm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                          output_hidden_states=True)
        if merged and not _adapters_merged(self.lm):
            self.lm.merge_adapter()  # ...and they are merged back for the fast path
        return out.hidden_states[-1], enc["attention_mask"]

    # ------------------------------------------------------------------ inference API
    def _system_cache(self, physics: Optional[bool], batch: int):
        """A copy of the key/value cache of the tokens before the event slots (system prompt
        and the start of the user turn), expanded to ``batch`` rows. Those ~30 tokens are
        the same for every event and question, so they run once per model, not per event."""
        physics = self.physics_prompt if physics is None else physics
        if physics not in self._system_kv:
            before, _ = self.prompt_ids(CLASSIFY_PROMPT, physics)
            ids = torch.tensor([before], dtype=torch.long, device=self.device)
            self._system_kv[physics] = output_cache(self.lm(input_ids=ids, use_cache=True))
        cache = copy.deepcopy(self._system_kv[physics])
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache

    def _class_tree(self) -> tuple[list[int], list[int], list[int], list[list[tuple[int, int]]]]:
        """The class texts' tokens as a prefix tree, for scoring all classes in one forward.

        Returns ``(tokens, parents, depths, paths)``: one tree node per distinct proper prefix
        of a class text (``nu``, ``nu _``, ... ``NC``), its last token, its parent node (-1:
        the prompt), its depth; ``paths[c]`` lists ``(row, token)``: the logits row that
        predicts each of class ``c``'s tokens (row 0 = the prompt's last position, row
        ``1 + n`` = node ``n``) and that token."""
        if self._tree is None:
            texts = [self.answer_ids(CLASS_TEXT[c] + ":", end=False) for c in EVENT_CLASSES]
            node_of: dict[tuple[int, ...], int] = {}
            tokens, parents, depths, paths = [], [], [], []
            for t in texts:
                path = [(0, t[0])]
                for k in range(1, len(t)):
                    prefix = tuple(t[:k])
                    if prefix not in node_of:
                        node_of[prefix] = len(tokens)
                        tokens.append(t[k - 1])
                        parents.append(node_of.get(prefix[:-1], -1))
                        depths.append(k - 1)
                    path.append((1 + node_of[prefix], t[k]))
                paths.append(path)
            self._tree = (tokens, parents, depths, paths)
        return self._tree

    def _tree_mask(self, n_past: int, n_prompt: int, parents: list[int], dtype) -> Tensor:
        """(1, 1, S, n_past + S) additive mask for ``[prompt suffix, tree nodes]`` after a
        cached prefix of ``n_past`` tokens: the prompt is causal, a node sees the whole prompt,
        itself and its ancestors (never the other classes' tokens)."""
        n_nodes = len(parents)
        s = n_prompt + n_nodes
        allow = torch.zeros(s, n_past + s, dtype=torch.bool)
        allow[:, :n_past + n_prompt] = True
        allow[:n_prompt, n_past:n_past + n_prompt] = torch.ones(n_prompt, n_prompt).tril().bool()
        for n in range(n_nodes):
            a = n
            while a >= 0:
                allow[n_prompt + n, n_past + n_prompt + a] = True
                a = parents[a]
        mask = torch.zeros(s, n_past + s, dtype=dtype)
        mask.masked_fill_(~allow, torch.finfo(dtype).min)
        return mask[None, None].to(self.device)

    def prediction_inputs(self, predictions: Sequence[Any]) -> dict[str, Tensor]:
        """``event_inputs`` from ``encoder.EventPrediction`` objects the tools already computed
        with this VLM's encoder (its ``tokens``, ``token_mask``, ``token_coords``), so the
        encoder does not run a second time for the same event."""
        stack = lambda name, dt: torch.from_numpy(np.stack([getattr(p, name) for p in predictions])
                                                  ).to(device=self.device, dtype=dt)
        return {"tokens": stack("tokens", torch.float32), "mask": stack("token_mask", torch.bool),
                "coords": stack("token_coords", torch.float32)}

    @torch.no_grad()
    def class_scores(self, events: Sequence[Event], physics: Optional[bool] = None,
                     event_inputs: Optional[dict[str, Tensor]] = None) -> np.ndarray:
        """(B, 3) class log-likelihoods in ``EVENT_CLASSES`` order (summed over each class
        text's tokens, ``:`` included so that the text is complete).

        One language-model forward per batch, exact (``class_scores_full`` is the plain
        computation; the tests compare the two): the system prefix comes from a cached
        key/value state (``_system_cache``); the rest of the prompt (event slots, question)
        and the class texts' tokens, laid out as a prefix tree (``_class_tree``: the shared
        ``nu _`` runs once), go through the model together, a tree attention mask keeping each
        class text from seeing the others. ``event_inputs``: the encoder's tokens when the
        caller has them (``prediction_inputs``); else the encoder runs here."""
        self.eval()
        evs = list(events)
        if not evs:
            return np.zeros((0, len(EVENT_CLASSES)))
        proj = self.project(event_inputs if event_inputs is not None else self.event_inputs(evs))
        b = len(evs)
        before, after = self.prompt_ids(CLASSIFY_PROMPT, physics)
        tokens, parents, depths, paths = self._class_tree()
        dev = self.device
        text_ids = torch.tensor([after + tokens], dtype=torch.long, device=dev).expand(b, -1)
        text = self._embed_tokens(text_ids)
        seq = torch.cat([proj.lm_embeds.to(text.dtype), text], dim=1)
        n_past, n_prompt = len(before), proj.lm_embeds.shape[1] + len(after)
        pos = list(range(n_past, n_past + n_prompt)) + [n_past + n_prompt + d for d in depths]
        mask = self._tree_mask(n_past, n_prompt, parents, seq.dtype).expand(b, -1, -1, -1)
        out = self.lm(inputs_embeds=seq, attention_mask=mask,
                      position_ids=torch.tensor([pos], device=dev).expand(b, -1),
                      **cache_kwargs(self.lm, self._system_cache(physics, b)), use_cache=True,
                      logits_to_keep=len(tokens) + 1)
        logp = torch.log_softmax(out.logits.float(), dim=-1)          # (B, 1 + nodes, V)
        scores = torch.stack([sum(logp[:, r, t] for r, t in path) for path in paths], dim=1)
        return scores.cpu().numpy()

    @torch.no_grad()
    def class_scores_full(self, events: Sequence[Event], physics: Optional[bool] = None
                          ) -> np.ndarray:
        """The same log-likelihoods computed the slow, obvious way (every class text with the
        whole prompt, no cache); the tests check ``class_scores`` against it."""
        self.eval()
        evs = list(events)
        proj = self.project(self.event_inputs(evs))
        n_cls = len(EVENT_CLASSES)
        embeds = proj.lm_embeds.repeat_interleave(n_cls, dim=0)
        answers = [CLASS_TEXT[c] + ":" for _ in evs for c in EVENT_CLASSES]
        batch = self.assemble(embeds, [CLASSIFY_PROMPT] * len(answers), answers,
                              physics=physics, end=False)
        labels = batch.pop("labels")
        logits = self.lm(**batch).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = labels[:, 1:]
        picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total = (picked * (target != -100)).sum(-1)
        return total.view(len(evs), n_cls).cpu().numpy()

    def classify(self, event: Event | Iterable[Event], physics: Optional[bool] = None,
                 event_inputs: Optional[dict[str, Tensor]] = None
                 ) -> dict[str, float] | list[dict[str, float]]:
        """{class: probability} over exactly ``EVENT_CLASSES`` (a list for several events).
        ``event_inputs``: see ``class_scores``."""
        single = isinstance(event, Event)
        evs = [event] if single else list(event)
        for e in evs:
            if not isinstance(e, Event):
                raise TypeError(f"VLM.classify: expected events.Event, got {type(e).__name__}")
            if len(e) == 0:
                raise ValueError("VLM.classify: the event has no points")
        scores = self.class_scores(evs, physics, event_inputs)
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        out = [{c: float(p) for c, p in zip(EVENT_CLASSES, row)} for row in probs]
        return out[0] if single else out

    @torch.no_grad()
    def explain(self, event: Event, question: str = CLASSIFY_PROMPT, max_new_tokens: int = 96,
                physics: Optional[bool] = None) -> str:
        """Greedy answer to a question about one event."""
        if not isinstance(event, Event):
            raise TypeError(f"VLM.explain: expected events.Event, got {type(event).__name__}")
        if len(event) == 0:
            raise ValueError("VLM.explain: the event has no points")
        if not str(question).strip():
            raise ValueError("VLM.explain: the question is empty")
        self.eval()
        proj = self.project(self.event_inputs([event]))
        batch = self.assemble(proj.lm_embeds, [question], None, physics=physics)
        out = self.lm.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                               eos_token_id=self.end_id,
                               pad_token_id=self.tokenizer.pad_token_id or self.end_id)
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()

    @torch.no_grad()
    def embed(self, events: Event | Iterable[Event], batch_size: int = 16) -> np.ndarray:
        """(B, embed_dim) unit vectors of events in the aligned space."""
        evs = [events] if isinstance(events, Event) else list(events)
        self.eval()
        out = []
        for s in range(0, len(evs), batch_size):
            out.append(self.project(self.event_inputs(evs[s:s + batch_size])).event_embed.cpu())
        if not out:
            return np.zeros((0, self.projector.config.embed_dim), dtype=np.float32)
        return torch.cat(out).float().numpy()

    @torch.no_grad()
    def embed_text(self, texts: str | Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(B, embed_dim) unit vectors of texts in the aligned space."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if any(not str(t).strip() for t in items):
            raise ValueError("VLM.embed_text: empty text")
        self.eval()
        out = []
        for s in range(0, len(items), batch_size):
            hidden, mask = self.text_hidden(items[s:s + batch_size])
            out.append(self.projector.embed_text(hidden, mask).cpu())
        if not out:
            return np.zeros((0, self.projector.config.embed_dim), dtype=np.float32)
        return torch.cat(out).float().numpy()

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | Path, extra: Optional[dict] = None) -> Path:
        """``folder/projector`` (config.json + model.safetensors), ``folder/adapter`` (peft
        LoRA adapters, when the LM has them) and ``folder/vlm.json``. Written into a temporary
        sibling and swapped in, so an interrupted save leaves the previous one intact."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            self.projector.save_pretrained(tmp / "projector")
            if hasattr(self.lm, "peft_config"):
                self.lm.save_pretrained(tmp / "adapter")
            manifest = dict(self.manifest)
            manifest.update(extra or {})
            manifest.update(format="larsight-vlm", format_version=1,
                            physics_prompt=self.physics_prompt,
                            has_adapter=hasattr(self.lm, "peft_config"))
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
            old = None
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old")
                if old.exists():
                    shutil.rmtree(old)
                os.replace(folder, old)
            os.replace(tmp, folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder


def _adapters_merged(lm: nn.Module) -> bool:
    """True when a peft model's LoRA weights are currently merged into its base layers."""
    return any(getattr(m, "merged", False) for m in lm.modules() if hasattr(m, "lora_A"))


def load_vlm(path: Optional[str | Path] = None, *, quantization: Optional[str] = None,
             device: Any = None, trainable: bool = False, merge: Optional[bool] = None) -> VLM:
    """A saved VLM (default ``checkpoints/vlm_smollm2``): its manifest names the encoder
    checkpoint and the language model; the adapters and projector are read from the folder.

    ``merge`` (default: on unless ``trainable``) is the inference path: the 4-bit NF4 base is
    dequantised once to the compute dtype and the LoRA adapters are merged into it. That is
    the very function QLoRA trained (its forward dequantises the same NF4 blocks before every
    matmul) but without re-dequantising 135 M weights at each forward, which on a CPU costs
    more than the matmuls of a short prompt. Loading the original bf16 weights instead
    (``quantization="none"``) is *not* the same model: the adapters and projector learned on
    the NF4-rounded weights. Memory: the dense base (fp32 on CPU: 0.54 GB for SmolLM2-135M).
    ``merge=False`` keeps the NF4 base and the peft wrapper (the smallest memory)."""
    # transformers draws a "Loading weights" bar per module group: noise in notebooks, the
    # chat app and test logs for a load of a few seconds
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return _load_vlm(path, quantization=quantization, device=device, trainable=trainable, merge=merge)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _load_vlm(path, *, quantization, device, trainable, merge) -> VLM:
    folder = Path(path) if path is not None else DEFAULT_VLM_DIR
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"{folder}: no {MANIFEST}; train a VLM with `larsight align --stage 1` then "
            f"`--stage 2` (see qformer/align.py) or pass the folder of one")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != "larsight-vlm":
        raise ValueError(f"{manifest_path}: not a larsight VLM manifest")
    enc_path = _resolve(manifest["encoder_checkpoint"], folder)
    encoder = load_model(enc_path, device=device)
    projector = EventProjector.from_pretrained(folder / "projector").to(encoder.device)
    quant = quantization or manifest.get("quantization", "none")
    merge = (not trainable) if merge is None else bool(merge)
    if merge and trainable:
        raise ValueError("load_vlm: merge=True folds the adapters into the base; it cannot "
                         "also be trainable")
    lm, tok = load_lm(manifest.get("lm", "smollm2-135m-instruct"), quantization=quant,
                      lora=False, device=encoder.device)
    if merge and quant == "nf4":
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "modules are dequantized in float32": what we asked for
        try:
            lm = lm.dequantize()
        finally:
            hf_logging.set_verbosity(verbosity)
        lm.requires_grad_(False)
    if manifest.get("has_adapter"):
        # peft loads transformers' model classes (seconds); only VLMs with adapters need it
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, str(folder / "adapter"), is_trainable=trainable)
        if merge:
            # merged in place, wrapper kept: ``text_hidden`` still needs the base (adapters off)
            lm.merge_adapter()
    lm.eval()
    return VLM(encoder, projector, lm, tok, physics_prompt=manifest.get("physics_prompt", True),
               manifest=manifest)


def _resolve(p: str, folder: Path) -> Path:
    """Manifest paths are relative to the repository root (or absolute)."""
    path = Path(p)
    if path.is_absolute():
        return path
    root = Path(__file__).resolve().parents[1]
    for cand in (root / path, folder / path):
        if cand.exists():
            return cand
    return root / path
