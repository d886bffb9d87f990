"""The generation engine's decoding step for Llama-architecture models, written out on the KV buffer.

Hugging Face's decoder forward is general: at every step it builds a 4D mask through its masking
utilities, wraps the KV buffer in one ``Cache`` layer object per layer, routes every layer through
keyword-argument decorators and returns output dataclasses. None of that changes a number, but it is a
measurable part of a decoding step at small batch sizes (docs/results.md, issue 23). :class:`LlamaStep`
runs the same operations in the same order — the model's own modules (RMSNorm, the q/k/v/o
projections, the MLP), the rotary embedding computed as Hugging Face computes it,
``scaled_dot_product_attention`` called as the engine's GQA function calls it (:mod:`.attention`) —
straight on the generation engine's preallocated buffers: one token per row, written at column ``end``,
attending to columns ``[start, end]`` where the row's mask is 1.

So its hidden states are bitwise those of the Hugging Face forward. :func:`llama_step` checks that
once per model on a probe (random tokens, a window with masked columns) and returns None — the engine
then keeps the Hugging Face forward — for any model where it does not hold or that is not a plain
Llama decoder (another architecture, rotary scaling, an attention implementation other than SDPA).
"""

from __future__ import annotations

import weakref

import torch

from .attention import gqa_attention

_CHECKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaStep:
    """``step(ids [B, 1], pos [B, 1], keys, values, start, end, mask [B, end + 1 - start])`` -> the final
    normed hidden states ``[B, hidden]``. ``keys[l]`` / ``values[l]`` are layer l's buffers
    (``B x kv heads x capacity x head dim``); the new token's key and value go to column ``end``."""

    def __init__(self, model):
        body = model.get_decoder()
        self.embed, self.layers, self.norm = body.embed_tokens, list(body.layers), body.norm
        self.inv_freq = body.rotary_emb.inv_freq
        self.rope_scale = body.rotary_emb.attention_scaling
        self.head_dim = self.layers[0].self_attn.head_dim

    @torch.no_grad()
    def __call__(self, ids, pos, keys, values, start: int, end: int, mask) -> torch.Tensor:
        allowed = mask.bool()[:, None, None, :]

        def attend(l, attn, q, k, v):
            Q = q.shape[2]
            keys[l][:, :, end : end + Q] = k
            values[l][:, :, end : end + Q] = v
            return torch.nn.functional.scaled_dot_product_attention(
                q, keys[l][:, :, start : end + Q], values[l][:, :, start : end + Q], attn_mask=allowed,
                scale=attn.scaling, enable_gqa=attn.num_key_value_groups > 1)

        return self.run(ids, pos, attend)

    @torch.no_grad()
    def run(self, ids, pos, attend) -> torch.Tensor:
        """The layers around an attention function: ``attend(l, attn, q, k, v)`` gets layer ``l``'s rotated
        queries and the new keys and values (``B x heads x Q x head dim``), stores the keys and values where
        its cache keeps them, and returns the attention output (``B x heads x Q x head dim``)."""
        B, Q = ids.shape
        h = self.embed(ids)
        freqs = pos[..., None].float() * self.inv_freq.to(device=h.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scale).to(h.dtype).unsqueeze(1)
        sin = (emb.sin() * self.rope_scale).to(h.dtype).unsqueeze(1)
        for l, layer in enumerate(self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(B, Q, -1, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(B, Q, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(B, Q, -1, self.head_dim).transpose(1, 2)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            o = attend(l, attn, q, k, v)
            h = h + attn.o_proj(o.transpose(1, 2).reshape(B, Q, -1).contiguous())
            x = layer.post_attention_layernorm(h)
            h = h + mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))
        return self.norm(h)[:, -1]


def _plain_llama(model) -> bool:
    body = model.get_decoder() if hasattr(model, "get_decoder") else None
    cfg = getattr(model, "config", None)
    if body is None or cfg is None or type(body).__name__ != "LlamaModel":
        return False
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default" or getattr(cfg, "pretraining_tp", 1) != 1:
        return False
    from .attention import NAME

    return getattr(cfg, "_attn_implementation", None) in ("sdpa", NAME)


def _probe(model, step: LlamaStep) -> bool:
    """Whether ``step`` gives the Hugging Face forward's hidden states bitwise on a random window."""
    from transformers.cache_utils import Cache

    from .forward import cache_kw, kv_layout
    from .generation import _WindowLayer

    p = next(model.parameters())
    body = model.get_decoder()
    heads = kv_layout(model)[2]
    g = torch.Generator().manual_seed(0)
    B, W, cap = 3, 7, 10
    shape = (B, heads, cap, step.head_dim)
    keys = [torch.randn(shape, generator=g).to(p) for _ in step.layers]
    values = [torch.randn(shape, generator=g).to(p) for _ in step.layers]
    mask = torch.ones((B, W + 1), dtype=torch.long, device=p.device)
    mask[0, :2] = 0  # a row whose first columns are not its own
    ids = torch.randint(0, model.get_input_embeddings().weight.shape[0], (B, 1), generator=g).to(p.device)
    pos = torch.tensor([[5], [7], [6]], device=p.device)
    k2, v2 = [t.clone() for t in keys], [t.clone() for t in values]
    try:
        with torch.no_grad(), gqa_attention(model):
            ours = step(ids, pos, keys, values, 0, W, mask)
            cache = Cache(layers=[_WindowLayer(k, v) for k, v in zip(k2, v2)])
            for layer in cache.layers:
                layer.start, layer.end = 0, W
            ref = body(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                       **{cache_kw(body): cache}).last_hidden_state[:, -1]
    except Exception:
        return False
    return torch.equal(ours, ref) and all(torch.equal(a, b) for a, b in zip(keys, k2))


def llama_step(model) -> LlamaStep | None:
    """The written-out decoding step for ``model``, or None where it would not give the Hugging Face
    forward's numbers bitwise (checked once per model object and attention implementation)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    known = _CHECKED.get(model, {})
    if impl not in known:
        ok = _plain_llama(model)
        if ok:
            with gqa_attention(model):  # the implementation the engine runs under
                ok = _probe(model, LlamaStep(model))
        known[impl] = ok
        try:
            _CHECKED[model] = known
        except TypeError:
            pass
    return LlamaStep(model) if known[impl] else None
