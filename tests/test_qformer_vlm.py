"""The VLM assembled from a micro encoder, the projector and a tiny random Llama that uses
SmolLM2's real tokenizer and chat template: prompt assembly, constrained classification,
stage-1 and stage-2 steps that lower their loss, save/load, and `larsight align` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from larsight.encoder.backbone import PointEncoder
from larsight.encoder.checkpoint import save_weights
from larsight.encoder.config import EncoderConfig
from larsight.encoder.data import DataSpec, take
from larsight.events.model import EVENT_CLASSES
from larsight.qformer.corpus import CLASS_TEXT, CLASSIFY_PROMPT
from larsight.qformer.vlm import load_vlm

from helpers.vlm import MICRO, make_vlm, save_tiny_lm

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory, smollm2_dir):
    """A 2-layer random Llama with the bundled SmolLM2 tokenizer (the real chat template)."""
    return save_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), smollm2_dir)


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    enc = PointEncoder(EncoderConfig.preset("tiny", **MICRO))
    path = tmp_path_factory.mktemp("enc") / "encoder.safetensors"
    save_weights(path, enc, manifest={"kind": "test"})
    return path


@pytest.fixture(scope="module")
def events():
    return take(DataSpec(modes="nu", seed=5), "eval", 4, min_points=8)


def test_prompt_assembly_puts_events_and_labels_in_place(tiny_lm_dir, encoder_ckpt, events):
    vlm = make_vlm(tiny_lm_dir, encoder_ckpt)
    inputs = vlm.event_inputs(events[:2])
    proj = vlm.project(inputs)
    batch = vlm.assemble(proj.lm_embeds, ["What is this?", "Classify it."], ["NC", "nu_e CC: a shower"])
    emb, labels, attn = batch["inputs_embeds"], batch["labels"], batch["attention_mask"]
    assert emb.shape[:2] == labels.shape == attn.shape
    before, after = vlm.prompt_ids("What is this?")
    # the event queries sit right after the prompt's first part
    assert torch.allclose(emb[0, len(before):len(before) + 4], proj.lm_embeds[0], atol=1e-6)
    ans = vlm.answer_ids("NC")
    n = len(before) + 4 + len(after)
    assert labels[0, n:n + len(ans)].tolist() == ans
    assert (labels[0, :n] == -100).all() and (labels[0, n + len(ans):] == -100).all()
    assert attn[0].sum() == n + len(ans)
    # the prompt really is the language model's chat template, with the system prompt
    text = vlm.tokenizer.decode(before)
    assert "<|im_start|>system" in text and "larsight" in text and "<|im_start|>user" in text
    assert vlm.tokenizer.decode(after).rstrip().endswith("<|im_start|>assistant")


def test_long_answers_are_cut_and_the_bare_prompt_is_shorter(tiny_lm_dir, encoder_ckpt, events):
    vlm = make_vlm(tiny_lm_dir, encoder_ckpt)
    proj = vlm.project(vlm.event_inputs(events[:1]))
    long = "a muon track " * 40
    full = vlm.assemble(proj.lm_embeds, ["Describe."], [long])
    cut = vlm.assemble(proj.lm_embeds, ["Describe."], [long], max_answer_tokens=10)
    assert int((cut["labels"] != -100).sum()) == 10
    assert int((full["labels"] != -100).sum()) == len(vlm.answer_ids(long))
    bare = vlm.assemble(proj.lm_embeds, ["Describe."], [long], physics=False)
    assert bare["attention_mask"].sum() < full["attention_mask"].sum() - 50


def test_classify_is_a_distribution_over_exactly_three_classes(tiny_lm_dir, encoder_ckpt, events):
    vlm = make_vlm(tiny_lm_dir, encoder_ckpt)
    probs = vlm.classify(events[0])
    assert set(probs) == set(EVENT_CLASSES)
    assert abs(sum(probs.values()) - 1) < 1e-6 and all(0 <= p <= 1 for p in probs.values())
    many = vlm.classify(events[:3])
    assert len(many) == 3 and all(set(p) == set(EVENT_CLASSES) for p in many)
    # same events, same answer, batched or not
    assert np.allclose([many[0][c] for c in EVENT_CLASSES], [probs[c] for c in EVENT_CLASSES],
                       atol=1e-4)
    # the ablation switch changes the prompt, hence the scores
    bare = vlm.class_scores(events[:1], physics=False)
    assert not np.allclose(bare, vlm.class_scores(events[:1], physics=True))
    with pytest.raises(ValueError, match="no points"):
        vlm.classify(events[0].select(np.zeros(len(events[0]), dtype=bool)))


def test_cached_class_scores_equal_the_plain_computation(tiny_lm_dir, encoder_ckpt, events):
    """The fast path (cached system prefix, one prompt pass, batched class continuations) is
    an exact rewrite of scoring every class text with the whole prompt."""
    vlm = make_vlm(tiny_lm_dir, encoder_ckpt)
    for physics in (True, False):
        fast = vlm.class_scores(events[:3], physics=physics)
        assert fast.shape == (3, len(EVENT_CLASSES))
        assert np.allclose(fast, vlm.class_scores_full(events[:3], physics=physics), atol=1e-4)
    # the cached prefix is dropped when the model goes back to training
    vlm.class_scores(events[:1])
    assert vlm._system_kv
    vlm.train()
    assert not vlm._system_kv


def test_merged_nf4_inference_is_the_trained_function(tiny_lm_dir, encoder_ckpt, events, tmp_path):
    """load_vlm's default inference path (NF4 base dequantised once, LoRA merged) gives the
    scores of the NF4 + adapter model it was trained as, and text embeddings still come from
    the base with the adapters off."""
    vlm = make_vlm(tiny_lm_dir, encoder_ckpt, quantization="nf4", lora=True)
    with torch.no_grad():
        for n, p in vlm.lm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    vlm.save_pretrained(tmp_path / "vlm")
    slow = load_vlm(tmp_path / "vlm", device="cpu", merge=False)
    # On CPUs with AVX512-BF16, bitsandbytes repacks NF4 weights for inference with bf16
    # block scales (about 0.4 % off); the reference here is the exact NF4 function
    for m in slow.lm.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
    fast = load_vlm(tmp_path / "vlm", device="cpu")
    assert not any("Linear4bit" in type(m).__name__ for m in fast.lm.modules())
    assert np.allclose(fast.class_scores(events[:2]), slow.class_scores(events[:2]), atol=1e-3)
    text = ["a long muon track", "an electron shower"]
    assert np.allclose(fast.embed_text(text), slow.embed_text(text), atol=1e-4)
    # the adapters are merged back after the text pass: classification is unchanged
    assert np.allclose(fast.class_scores(events[:2]), slow.class_scores(events[:2]), atol=1e-3)
    with pytest.raises(ValueError, match="trainable"):
        load_vlm(tmp_path / "vlm", device="cpu", merge=True, trainable=True)


def _steps_lower_loss(vlm, params, events, answers, steps=6, lr=3e-3):
    opt = torch.optim.AdamW(params, lr=lr)
    inputs = vlm.event_inputs(events)
    questions = [CLASSIFY_PROMPT] * len(events)
    losses = []
    for _ in range(steps):
        loss = vlm.lm_loss(inputs, questions, answers)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


ANSWERS = ["nu_mu CC: a long track.", "NC: only hadrons."]


def test_stage1_step_trains_only_the_projector(smollm2_dir, encoder_ckpt, events):
    """Through the real (frozen) SmolLM2: only the projector moves, and the captioning loss
    of a fixed batch drops."""
    vlm = make_vlm(smollm2_dir, encoder_ckpt, lora=False, lm_dim=576)
    assert not any(p.requires_grad for p in vlm.lm.parameters())
    lm_before = {k: v.clone() for k, v in vlm.lm.state_dict().items()}
    losses = _steps_lower_loss(vlm, list(vlm.projector.parameters()), events[:2], ANSWERS)
    assert losses[-1] < losses[0] - 0.2, losses
    assert all(torch.equal(v, vlm.lm.state_dict()[k]) for k, v in lm_before.items())


def test_stage2_qlora_step_lowers_the_loss(smollm2_dir, encoder_ckpt, events):
    """NF4 SmolLM2 + LoRA (QLoRA) on the CPU: only LoRA weights train, and the loss drops."""
    vlm = make_vlm(smollm2_dir, encoder_ckpt, quantization="nf4", lora=True, lm_dim=576)
    trainable = [n for n, p in vlm.lm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    lora = [p for p in vlm.lm.parameters() if p.requires_grad]
    losses = _steps_lower_loss(vlm, lora + list(vlm.projector.parameters()), events[:2], ANSWERS)
    assert losses[-1] < losses[0] - 0.2, losses


def test_save_and_load_round_trip(tiny_lm_dir, encoder_ckpt, events, tmp_path):
    vlm = make_vlm(tiny_lm_dir, encoder_ckpt, quantization="none", lora=True)
    with torch.no_grad():  # make the adapters non-trivial, so a lost adapter would show
        for n, p in vlm.lm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    ref = vlm.class_scores(events[:2])
    vlm.save_pretrained(tmp_path / "vlm")
    manifest = json.loads((tmp_path / "vlm" / "vlm.json").read_text())
    assert manifest["has_adapter"] and (tmp_path / "vlm" / "adapter").is_dir()
    again = load_vlm(tmp_path / "vlm", device="cpu")
    assert np.allclose(again.class_scores(events[:2]), ref, atol=1e-4)
    # saving over an existing folder replaces it whole
    vlm.save_pretrained(tmp_path / "vlm")
    assert not list(tmp_path.glob(".vlm.*"))


def test_load_vlm_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="vlm.json"):
        load_vlm(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "vlm.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a larsight VLM"):
        load_vlm(tmp_path / "bad")


def test_align_cli_stage1_then_stage2_and_resume(tiny_lm_dir, encoder_ckpt, tmp_path):
    from larsight.ui.cli import main

    run1, run2 = tmp_path / "a1", tmp_path / "a2"
    common = ["--encoder", str(encoder_ckpt), "--lm", str(tiny_lm_dir), "--batch-size", "2",
              "--n-queries", "4", "--ckpt-every", "2"]
    assert main(["align", "--stage", "1", "--steps", "2", "--quantization", "none",
                 "--prompt", "bare", "--run-dir", str(run1)] + common) == 0
    m1 = json.loads((run1 / "vlm" / "vlm.json").read_text())
    assert m1["physics_prompt"] is False and m1["align_config"]["max_answer_tokens"] == 64
    assert m1["step"] == 2 and m1["kind"] == "align-stage-1" and "align --stage 1" in m1["command"]
    assert (run1 / "loss.csv").exists()
    assert main(["align", "--stage", "2", "--steps", "2", "--init", str(run1 / "vlm"),
                 "--run-dir", str(run2)] + common) == 0
    assert main(["align", "--stage", "2", "--steps", "4", "--init", str(run1 / "vlm"),
                 "--run-dir", str(run2), "--resume"] + common) == 0
    m2 = json.loads((run2 / "vlm" / "vlm.json").read_text())
    assert m2["step"] == 4 and m2["has_adapter"]
    rows = (run2 / "loss.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step") and len(rows) >= 2
    vlm = load_vlm(run2 / "vlm", device="cpu")
    ev = take(DataSpec(modes="nu", seed=5), "eval", 1, min_points=8)[0]
    assert set(vlm.classify(ev)) == set(EVENT_CLASSES)


def test_shipped_vlm_loads_and_classifies(smollm2_dir, lm_cache, monkeypatch, events):
    """checkpoints/vlm_smollm2 (the projector + QLoRA adapters) resolves its encoder and the
    bundled language model from its manifest and gives a class distribution."""
    from larsight.qformer.vlm import DEFAULT_VLM_DIR

    if not (DEFAULT_VLM_DIR / "vlm.json").exists():
        pytest.skip("no shipped VLM in this checkout")
    monkeypatch.setenv("LARSIGHT_CACHE", str(lm_cache))
    vlm = load_vlm()
    assert vlm.manifest["kind"] == "align-stage-2" and vlm.manifest["has_adapter"]
    probs = vlm.classify(events[:2])
    for p in probs:
        assert set(p) == set(EVENT_CLASSES) and abs(sum(p.values()) - 1) < 1e-6
    assert vlm.embed_text(["a long muon track"]).shape == (1, vlm.projector.config.embed_dim)
