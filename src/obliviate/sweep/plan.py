"""``obliviate sweep GRID --dry-run [--gpu-mem 80GB]``: each point's estimated peak memory, and whether it fits
one GPU or needs FSDP / DeepSpeed ZeRO-3.

The estimate, from the model's config (h hidden size, f MLP size, L layers, V vocabulary, kv key/value
heads of size d) and the point's settings (micro-batch b, length s = max_length, LoRA rank r):

* parameters P = V h (x2 if the output embedding is not tied) + L (2 h^2 + 2 h kv d + 3 h f + 2 h) + h;
* weights: 4 P bytes (fp32 master weights; bf16 autocast computes, as obliviate trains on CUDA);
* trainable T = P, or with LoRA on all linear layers T = L r (2h + 2(h + kv d) + 2h + 3(h + f));
  gradients 4 T, AdamW moments 8 T;
* reference: a cached sequence reference (NPO, IdkDPO) holds one float per item (~0); a token-level or live
  reference holds a frozen fp32 copy (4 P), except with LoRA (the base with adapters disabled);
* activations kept for backward, per forward stream (forget, + retain when the method has a retain term,
  + idk), per token: L (6 h + 2 kv d + 5 f) values of ``act_bytes`` (2 under bf16 autocast, 4 on CPU),
  with gradient checkpointing L h + (6 h + 2 kv d + 5 f) (one layer recomputed at a time), plus one chunk of
  logits (the head's log-probabilities run over the answer tokens, taken as half the tokens, 2^23 logits at a
  time: fp32 logits and softmax).

Fits one GPU when the total is at most ``--gpu-mem``; otherwise ZeRO-3 / FSDP shards weights, gradients,
optimizer state and a frozen copy over N GPUs (activations stay per GPU): the smallest N with
(weights + grads + optimizer + reference) / N + activations <= GPU memory is reported. Checked against the
allocations measured on CPU (tests/test_sweep_plan.py, tolerance stated there).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ObliviateError

GB = 1e9
LOGIT_CHUNK = 1 << 23  # engine.forward.CHUNK_ELEMENTS
# Configs of the seeds' models (config.json values; no download): Llama 3.2 1B / 3B, Llama 3.1 8B.
KNOWN_CONFIGS = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama-3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}


def parse_mem(text: str) -> float:
    """``80GB`` / ``80G`` / ``141GiB`` / ``24`` (GB) -> bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(GB|G|GiB|MB|M|MiB)?\s*", str(text), re.I)
    if not m:
        raise ObliviateError(f"--gpu-mem {text!r}: write e.g. 80GB, 141GiB or 24")
    unit = (m.group(2) or "GB").lower()
    mult = {"gb": 1e9, "g": 1e9, "gib": 2**30, "mb": 1e6, "m": 1e6, "mib": 2**20}[unit]
    return float(m.group(1)) * mult


def model_config(spec: str) -> dict:
    """The sizes of a model: a known config name, a built-in, or a local folder's config.json."""
    if spec in KNOWN_CONFIGS:
        return dict(KNOWN_CONFIGS[spec])
    if spec.split("?")[0] == "tiny-llama":
        from ..models import load_model

        model, _ = load_model(spec)
        cfg = model.config
    else:
        from pathlib import Path

        path = spec
        if spec == "smollm2-135m":
            from ..models import smollm2_model_dir

            path = str(smollm2_model_dir())
        if not (Path(path) / "config.json").is_file():
            raise ObliviateError(f"--dry-run: no config.json for model {spec!r}; give a local folder or one of "
                                 f"{', '.join(KNOWN_CONFIGS)}")
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(path)
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "vocab_size", "tie_word_embeddings")
    out = {k: getattr(cfg, k, None) for k in keys}
    out["num_key_value_heads"] = out["num_key_value_heads"] or out["num_attention_heads"]
    out["tie_word_embeddings"] = bool(out["tie_word_embeddings"])
    return out


@dataclass
class Estimate:
    params: int
    trainable: int
    weights: float
    grads: float
    optimizer: float
    reference: float
    activations: float

    @property
    def states(self) -> float:
        return self.weights + self.grads + self.optimizer + self.reference

    @property
    def total(self) -> float:
        return self.states + self.activations

    def shards_needed(self, gpu_mem: float) -> int | None:
        """1 if it fits; else the smallest ZeRO-3 / FSDP world size; None if activations alone do not fit."""
        if self.total <= gpu_mem:
            return 1
        room = gpu_mem - self.activations
        if room <= 0:
            return None
        return max(2, math.ceil(self.states / room))


def estimate(cfg: dict, *, batch_size: int, seq_len: int, lora: bool = False, lora_r: int = 8,
             streams: int = 1, frozen_copy: bool = False, grad_checkpointing: bool = False,
             act_bytes: int = 2) -> Estimate:
    h, f, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    V, a, kv = cfg["vocab_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = h // a
    per_layer = 2 * h * h + 2 * h * kv * d + 3 * h * f + 2 * h
    P = V * h * (1 if cfg.get("tie_word_embeddings") else 2) + L * per_layer + h
    T = L * lora_r * (2 * h + 2 * (h + kv * d) + 2 * h + 3 * (h + f)) if lora else P
    layer_act = 6 * h + 2 * kv * d + 5 * f  # values kept per token by one decoder layer for its backward
    per_token = (L * h + layer_act) if grad_checkpointing else L * layer_act
    tokens = batch_size * seq_len
    # the head's log-probabilities run chunk by chunk (engine/forward.py: at most 2^23 logits at a time):
    # one chunk's fp32 logits, softmax and temporary, not b s V
    # over the answer tokens only (taken as half of the tokens: QA pairs)
    logits = 2 * 4 * min(tokens // 2 * V, LOGIT_CHUNK)
    acts = streams * tokens * per_token * act_bytes + logits
    return Estimate(P, T, 4.0 * P, 4.0 * T, 8.0 * T, 4.0 * P if (frozen_copy and not lora) else 0.0, float(acts))


def point_estimate(cfg: dict, settings: dict, act_bytes: int = 2) -> Estimate:
    from ..methods.base import get_method, make_config
    from ..unlearn import default_train_config

    cls = get_method(settings["method"])
    mcfg = make_config(cls, settings["options"])
    tcfg = default_train_config(settings["method"], **settings["train"])
    kinds = cls.reference_kinds(mcfg)
    run = settings["run"]
    frozen = "token" in kinds or ("sequence" in kinds and run.get("reference") == "live")
    streams = 1 + bool(cls.needs_retain(mcfg)) + bool(getattr(cls, "uses_idk", False))
    return estimate(cfg, batch_size=tcfg.batch_size, seq_len=run.get("max_length", 512), lora=tcfg.lora,
                    lora_r=tcfg.lora_r, streams=streams, frozen_copy=frozen,
                    grad_checkpointing=tcfg.grad_checkpointing, act_bytes=act_bytes)


def plan_grid(grid_or_path, gpu_mem: str | float = "80GB", model: str | None = None) -> dict:
    """Each point's estimate and verdict; ``model`` overrides the grid's (e.g. a known config name)."""
    from .grid import Grid, load_grid

    grid = grid_or_path if isinstance(grid_or_path, Grid) else load_grid(grid_or_path)
    mem = parse_mem(gpu_mem) if isinstance(gpu_mem, str) else float(gpu_mem)
    name = model or grid.top["model"]
    cfg = model_config(name)
    rows = []
    for p in grid.points:
        e = point_estimate(cfg, p.settings)
        n = e.shards_needed(mem)
        rows.append({"point": p.name, "label": p.label(), "estimate": e, "gpus": n,
                     "verdict": "fits 1 GPU" if n == 1 else
                     (f"needs FSDP / ZeRO-3 over >= {n} GPUs" if n else "activations alone exceed one GPU: "
                      "lower batch_size or max_length, or grad_checkpointing: true")})
    return {"model": name, "config": cfg, "gpu_mem": mem, "grid_hash": grid.hash, "points": rows}


def format_plan(plan: dict) -> str:
    g = lambda x: f"{x / GB:8.2f}"  # noqa: E731
    lines = [f"model {plan['model']} ({plan['points'][0]['estimate'].params / 1e9:.2f}B parameters), GPU memory "
             f"{plan['gpu_mem'] / GB:.0f} GB, grid {plan['grid_hash'][:12]}: estimated peak per point (GB)",
             f"{'point':<6}{'weights':>9}{'grads':>9}{'adamw':>9}{'ref':>9}{'activ.':>9}{'total':>9}  verdict  settings"]
    for r in plan["points"]:
        e = r["estimate"]
        lines.append(f"{r['point']:<6}{g(e.weights)} {g(e.grads)} {g(e.optimizer)} {g(e.reference)} "
                     f"{g(e.activations)} {g(e.total)}  {r['verdict']}  {r['label']}")
    return "\n".join(lines)
