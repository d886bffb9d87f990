"""Forward passes that project only the positions we score onto the vocabulary.

The vocabulary projection dominates small models (SmolLM2: 49k x 576; tiny-llama: nearly all of it),
and prompt tokens never need logits. So we run the decoder body once, select the hidden states whose
*next* token is an answer token (``labels[:, t+1] != -100``), and apply the LM head to those rows only.
Some architectures change the LM head's output before returning it (Gemma-2/3 soft-cap it,
``cap * tanh(logits / cap)``; Cohere multiplies by ``logit_scale``; Granite divides by ``logits_scaling``).
:func:`logit_transform` applies the known ones and checks, once per model, that decoder body + head +
transform gives the model's own logits on a short probe; when it does not (an architecture whose extra step
we do not know), :func:`answer_logits` falls back to the model's full forward pass.

Most losses need only log p(y_t) of each answer token, not the whole distribution (NLL, gradient ascent,
NPO, SimNPO, IdkDPO, WGA, SatImp, the reference caches). :func:`answer_token_logprobs` gives those without
ever holding the [answer tokens x vocabulary] logits of the whole batch (``linear_logprobs``): the head runs
on ``chunk`` rows at a time, and since d log p(y) / d z = onehot(y) - softmax(z), the gradient with respect
to the hidden state, ``(onehot - p) @ W``, is formed in the forward pass (an [N, hidden] tensor) and only
scaled in backward. When the head's weight is trained too (all weights, tied embeddings), backward
recomputes each chunk's logits for ``grad W = sum_t g_t (onehot - p_t) h_t^T``. Memory: one chunk's logits
(<= 32 MB) instead of the logits, their log-softmax and two gradients of that size (4 x 30 MB for a batch of 8
synthetic answers on SmolLM2, 4 x 0.3 GB for 32 TOFU answers). Compute: the same number of head products
when the head is frozen (LoRA), one more chunked product when it is trained. The backward is not
differentiable again, so :func:`twice_differentiable` (used by the gradient-norm penalty) switches to the
plain path; so does a head with module hooks (they would be bypassed). Backward recomputes logits under the
autocast state of the forward pass, so the softmax it rebuilds is the one the log-sum-exp came from.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from typing import Callable

import torch

_TRANSFORMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _body_and_head(model):
    body = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return body, head


def _known_transform(model) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The post-head step HF's ``forward`` takes for this model's config (None: the identity)."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    steps = []
    scale = getattr(model, "logit_scale", None)  # Cohere keeps it on the model (from config.logit_scale)
    if scale is None and getattr(cfg, "model_type", "").startswith("cohere"):
        scale = getattr(cfg, "logit_scale", None)
    if isinstance(scale, (int, float)) and scale != 1:
        steps.append(lambda x, s=float(scale): x * s)
    div = getattr(cfg, "logits_scaling", None)  # Granite
    if isinstance(div, (int, float)) and div != 1:
        steps.append(lambda x, d=float(div): x / d)
    cap = getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logits_soft_cap", None)
    if isinstance(cap, (int, float)) and math.isfinite(cap) and cap > 0:
        steps.append(lambda x, c=float(cap): torch.tanh(x / c) * c)
    if not steps:
        return None

    def apply(x):
        for f in steps:
            x = f(x)
        return x

    return apply


def _probe_matches(model, body, head, fn) -> bool:
    """Whether body + head + ``fn`` reproduces ``model(...).logits`` on a 6-token input (eval mode)."""
    p = next(model.parameters())
    vocab = head.weight.shape[0] if hasattr(head, "weight") else 2
    ids = (torch.arange(6, device=p.device) * 7 % max(vocab, 1)).unsqueeze(0)
    mask = torch.ones_like(ids)
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            full = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            ours = head(body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state)
            ours = (fn(ours) if fn is not None else ours).float()
    except Exception:
        return False
    finally:
        for m, t in modes:
            m.train(t)
    if ours.shape != full.shape:
        return False
    tol = 1e-3 * max(1.0, full.abs().max().item())
    return bool((ours - full).abs().max().item() <= tol)


def logit_transform(model):
    """``(fn, ok)``: the post-head function (None for the identity) and whether body + head + fn gives the
    model's own logits. Checked once per model object."""
    got = _TRANSFORMS.get(model)
    if got is None:
        body, head = _body_and_head(model)
        if body is None or head is None:
            got = (None, False)
        else:
            fn = _known_transform(model)
            got = (fn, _probe_matches(model, body, head, fn))
        try:
            _TRANSFORMS[model] = got
        except TypeError:  # not weak-referenceable: check again next time
            pass
    return got


def head_logits(model) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """hidden states -> the model's logits (the LM head plus its post-head step), or None when the
    body + head shortcut cannot reproduce the model's logits."""
    fn, ok = logit_transform(model)
    if not ok:
        return None
    head = model.get_output_embeddings()
    return head if fn is None else (lambda h: fn(head(h)))


def kv_layout(model) -> tuple[int, int, int, int]:
    """``(layers, query heads, key/value heads, head dim)`` of a decoder, from its config: the shape of the
    key/value buffers the engines allocate."""
    cfg = model.config
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    return cfg.num_hidden_layers, heads, kv, getattr(cfg, "head_dim", None) or cfg.hidden_size // heads


_CACHE_KW: dict = {}


def context_length(model) -> int | None:
    """The number of positions the model was built for (``max_position_embeddings``, GPT-2's ``n_positions``);
    None when its config names none."""
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def cache_kw(body) -> str:
    """The keyword a decoder body takes its KV cache under: ``cache`` (transformers >= 5.2x; ``past_key_values``
    is deprecated there and goes in 5.40) or ``past_key_values`` (earlier releases)."""
    t = type(body)
    if t not in _CACHE_KW:
        import inspect

        try:
            params = inspect.signature(body.forward).parameters
        except (TypeError, ValueError):
            params = {}
        _CACHE_KW[t] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KW[t]


def out_cache(out):
    """The KV cache a forward with ``use_cache=True`` returned (``cache`` or, before, ``past_key_values``)."""
    c = out.get("cache") if hasattr(out, "get") else getattr(out, "cache", None)
    return c if c is not None else out.past_key_values


def answer_logits(model, batch: dict, output_hidden_states: bool = False):
    """Logits at the answer positions of a right- or left-padded batch.

    Returns ``(logits [N, V], targets [N], rows [N], hidden_states or None)`` where N is the number of
    answer tokens in the batch, ordered row by row and position by position; ``rows`` says which
    sequence each token belongs to.
    """
    sel, targets, rows = _answer_positions(batch)
    body, _ = _body_and_head(model)
    head = head_logits(model)
    hidden_states = None
    if head is not None:
        out = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   output_hidden_states=output_hidden_states, use_cache=False)
        h = out.last_hidden_state[:, :-1][sel]
        logits = head(h)
        if output_hidden_states:
            hidden_states = out.hidden_states
    else:  # no usual decoder/head split, or a post-head step we do not know: full logits, then select
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states=output_hidden_states, use_cache=False)
        logits = out.logits[:, :-1][sel]
        if output_hidden_states:
            hidden_states = out.hidden_states
    return logits.float(), targets, rows, hidden_states


def _answer_positions(batch: dict):
    """``(sel [B, T-1], targets [N], rows [N])``: the positions whose next token is an answer token, that
    token, and the sequence each belongs to (row by row, position by position)."""
    labels = batch["labels"]
    target = labels[:, 1:]
    sel = target != -100
    rows = torch.arange(labels.size(0), device=labels.device).unsqueeze(1).expand_as(target)[sel]
    return sel, target[sel], rows


# ------------------------------------------------------------------------------- per-token log-probabilities
_STATE = threading.local()
CHUNK_ELEMENTS = 1 << 23  # logits per chunk: 8M floats = 32 MB


@contextlib.contextmanager
def twice_differentiable():
    """Inside, :func:`answer_token_logprobs` builds an ordinary autograd graph (logits, log-softmax), which
    supports a double backward (``create_graph=True``); the chunked path's backward does not."""
    old = getattr(_STATE, "plain", False)
    _STATE.plain = True
    try:
        yield
    finally:
        _STATE.plain = old


def _chunk_rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(vocab, 1))


def _autocast_state(dev: str):
    """``(device type, enabled, dtype)`` of autocast for ``dev`` now; None where autocast does not know it."""
    try:
        return dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)
    except (RuntimeError, ValueError, TypeError):
        return None


class _LinearLogprob(torch.autograd.Function):
    """log softmax(h W^T + b)[target] per row, a chunk of rows at a time (see the module docstring)."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, rows_per_chunk):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        ctx.autocast = _autocast_state(h.device.type)  # backward recomputes logits under the same state
        out = torch.empty(h.shape[0], device=h.device, dtype=torch.float32)
        lse = torch.empty_like(out)
        dh = torch.empty(h.shape, device=h.device, dtype=torch.float32) if need_h else None
        for s in range(0, h.shape[0], rows_per_chunk):
            e = min(s + rows_per_chunk, h.shape[0])
            z = torch.nn.functional.linear(h[s:e], weight, bias).float()
            t = targets[s:e]
            lse[s:e] = torch.logsumexp(z, dim=-1)
            out[s:e] = z.gather(1, t.unsqueeze(1)).squeeze(1) - lse[s:e]
            if need_h:  # (onehot - softmax) @ W, for grad_h = g * that
                dh[s:e] = _onehot_minus_softmax_(z, lse[s:e], t).to(weight.dtype) @ weight
        ctx.rows_per_chunk, ctx.h_dtype = rows_per_chunk, h.dtype
        ctx.save_for_backward(h if (need_w or need_b) else None, weight, bias, targets, lse, dh)
        return out

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative through this node is wanted
            raise RuntimeError("the chunked log-probabilities (obliviate.engine.forward.linear_logprobs) cannot be "
                               "differentiated twice; compute the loss inside engine.forward.twice_differentiable()")
        h, weight, bias, targets, lse, dh = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        g = g.float()
        gh = (dh * g.unsqueeze(1)).to(ctx.h_dtype) if need_h else None
        gw = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if need_w else None
        gb = torch.zeros(bias.shape, device=bias.device, dtype=torch.float32) if need_b else None
        if need_w or need_b:
            n = ctx.rows_per_chunk
            dev, enabled, dtype = ctx.autocast or (None, None, None)
            with torch.autocast(dev, dtype=dtype, enabled=enabled) if dev else contextlib.nullcontext():
                gw, gb = _head_grads(h, weight, bias, targets, lse, g, n, gw, gb)
        return (gh, gw.to(weight.dtype) if gw is not None else None,
                gb.to(bias.dtype) if gb is not None else None, None, None)


def _onehot_minus_softmax_(z: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d log softmax(z)[target] / dz = onehot(target) - softmax(z), computed in place in ``z``."""
    q = z.sub_(lse.unsqueeze(1)).exp_().neg_()
    return q.scatter_add_(1, targets.unsqueeze(1), torch.ones_like(q[:, :1]))


def _head_grads(h, weight, bias, targets, lse, g, n, gw, gb):
    """Accumulate grad W = sum_t g_t (onehot - p_t) h_t^T and grad b = sum_t g_t (onehot - p_t), chunk by
    chunk, recomputing each chunk's logits (under the forward pass's autocast state, restored by the caller)."""
    for s in range(0, h.shape[0], n):
        e = min(s + n, h.shape[0])
        z = torch.nn.functional.linear(h[s:e], weight, bias).float()
        q = _onehot_minus_softmax_(z, lse[s:e], targets[s:e]).mul_(g[s:e].unsqueeze(1))  # d loss / d z
        if gw is not None:
            gw.addmm_(q.t(), h[s:e].float())
        if gb is not None:
            gb.add_(q.sum(0))
    return gw, gb


def linear_logprobs(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    targets: torch.Tensor, rows_per_chunk: int | None = None) -> torch.Tensor:
    """``log_softmax(h @ weight.T + bias)[i, targets[i]]`` for each row i of ``h`` (float32, [N]), without
    materialising the [N, vocab] logits at once; differentiable once with respect to h, weight and bias.
    The logits are computed in float32 whatever the inputs' dtype (float64 inputs too, like
    :func:`answer_logits`' ``.float()``); gradients come back in the inputs' dtypes."""
    n = _chunk_rows(weight.shape[0]) if rows_per_chunk is None else rows_per_chunk
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"rows_per_chunk must be an integer >= 1, got {rows_per_chunk!r}")
    if h.shape[0] == 0:  # empty, but attached to the graph: weight and bias get zero gradients
        zero = weight.sum() * 0 + (bias.sum() * 0 if bias is not None else 0)
        return (h.sum(-1) + zero).float()
    return _LinearLogprob.apply(h, weight, bias, targets, n)


def _plain_head(model):
    """The LM head as an ``nn.Linear`` whose output is the model's logits (no post-head step) and that
    :func:`linear_logprobs` may bypass, else None. Reading ``head.weight`` directly skips the module's call,
    so a head with hooks (accelerate's device-placement hook, a weight-norm pre-hook, a user's logit bias),
    an instance-level ``forward``, or any global module hook keeps the plain path."""
    fn, ok = logit_transform(model)
    head = model.get_output_embeddings() if ok else None
    if fn is not None or type(head) is not torch.nn.Linear:
        return None
    mod = torch.nn.modules.module
    if (head._forward_hooks or head._forward_pre_hooks or "forward" in vars(head)
            or mod._global_forward_hooks or mod._global_forward_pre_hooks):
        return None
    return head


def answer_token_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p of each answer token of a batch: ``(logprobs [N] float32, targets [N], rows [N])``, ordered
    as in :func:`answer_logits`. The head runs chunk by chunk (:func:`linear_logprobs`) when it is a plain
    linear layer; otherwise (a post-head step, a wrapped head, or inside :func:`twice_differentiable`) this
    is ``-cross_entropy`` of :func:`answer_logits`."""
    head = None if getattr(_STATE, "plain", False) else _plain_head(model)
    if head is None:
        logits, targets, rows, _ = answer_logits(model, batch)
        return -torch.nn.functional.cross_entropy(logits, targets, reduction="none"), targets, rows
    sel, targets, rows = _answer_positions(batch)
    body, _ = _body_and_head(model)
    out = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    h = out.last_hidden_state[:, :-1][sel]
    return linear_logprobs(h, head.weight, head.bias, targets), targets, rows


def sequence_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: summed log p(answer tokens) and the number of answer tokens (differentiable)."""
    tok_lp, _, rows = answer_token_logprobs(model, batch)
    n = batch["labels"].size(0)
    sums = torch.zeros(n, device=tok_lp.device, dtype=tok_lp.dtype).index_add(0, rows, tok_lp)
    counts = torch.zeros(n, device=tok_lp.device, dtype=tok_lp.dtype).index_add(0, rows, torch.ones_like(tok_lp))
    return sums, counts
