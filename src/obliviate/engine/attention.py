"""Grouped-query attention without repeated keys and values, for the evaluation engines.

Models with fewer key/value heads than query heads (SmolLM2-135M: 9 query heads, 3 KV heads; Llama 3,
Qwen 2, Mistral) share each KV head among ``groups`` query heads. Hugging Face's ``sdpa`` attention
function copies K and V ``groups`` times (``repeat_kv``) whenever the attention mask is not None, which is
always the case with padded batches (scoring, prefill, GradNorm); only single-token decoding avoids it.
PyTorch's ``scaled_dot_product_attention(..., enable_gqa=True)`` (torch >= 2.5) reads each KV head for its
group of query heads directly. On this CPU the scoring engine's attention call (48 answer rows x 40 query
tokens x 110 keys, 9/3 heads of 64) takes 16 ms instead of 41 ms, and the outputs are bitwise identical:
the same products summed in the same order, only without the copy.

The function is registered under :data:`NAME` through transformers' ``AttentionInterface`` (and the
``sdpa`` mask builder under the same name in ``AttentionMaskInterface``), and :func:`gqa_attention`
switches a model to it for the duration of a ``with`` block: no environment variable, no global change
to the model outside the engines. Models whose attention is not ``sdpa``, without grouped heads, or on a
torch without ``enable_gqa`` are left as they are; calls the function does not cover (no mask, a position
bias, soft-capping) go to Hugging Face's own ``sdpa`` function.
"""

from __future__ import annotations

import contextlib
import functools

import torch

NAME = "obliviate_sdpa_gqa"
_REGISTERED = False


def _supports_enable_gqa() -> bool:
    """Whether this torch's SDPA takes ``enable_gqa`` (torch >= 2.5), asked by calling it once."""
    q, k = torch.zeros(1, 2, 1, 2), torch.zeros(1, 1, 1, 2)
    try:
        torch.nn.functional.scaled_dot_product_attention(q, k, k, attn_mask=torch.ones(1, 1, 1, 1, dtype=torch.bool),
                                                         enable_gqa=True)
    except (TypeError, RuntimeError):
        return False
    return True


def sdpa_gqa_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                               scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """``sdpa`` attention with ``enable_gqa=True`` when a mask is given (Hugging Face's function repeats K/V
    then); same signature and output layout (``[batch, q_len, heads, dim]``, no weights)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if (groups <= 1 or attention_mask is None or kwargs.get("position_bias") is not None
            or kwargs.get("softcap") is not None or kwargs.get("output_attentions", False)
            or query.shape[1] != key.shape[1] * groups):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    # With a mask the causal structure is in the mask (Hugging Face passes is_causal=False then too).
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=False,
        enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def register() -> bool:
    """Register :data:`NAME` with transformers (once); False when this torch has no ``enable_gqa``."""
    global _REGISTERED
    if not _REGISTERED:
        if not _supports_enable_gqa():
            return False
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, sdpa_gqa_attention_forward)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _REGISTERED = True
    return True


def _uses_gqa(model) -> bool:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    heads = getattr(cfg, "num_attention_heads", None)
    kv = getattr(cfg, "num_key_value_heads", None)
    return bool(heads and kv and kv < heads)


@contextlib.contextmanager
def gqa_attention(model):
    """Within the block, ``model`` runs its ``sdpa`` attention through :func:`sdpa_gqa_attention_forward`
    (a no-op for other attention implementations, models without grouped heads, or torch < 2.5)."""
    cfg = getattr(model, "config", None)
    switch = (cfg is not None and getattr(cfg, "_attn_implementation", None) == "sdpa" and _uses_gqa(model)
              and register())
    if not switch:
        yield model
        return
    cfg._attn_implementation = NAME
    try:
        yield model
    finally:
        cfg._attn_implementation = "sdpa"


def uses_gqa_attention(fn):
    """Decorator: ``fn(model, ...)`` runs under :func:`gqa_attention` of its first argument."""

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        with gqa_attention(model):
            return fn(model, *args, **kwargs)

    return wrapper
