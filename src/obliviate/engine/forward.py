"""Forward passes that project only the positions we score onto the vocabulary.

The vocabulary projection dominates small models (SmolLM2: 49k x 576; tiny-llama: nearly all of it),
and prompt tokens never need logits. So we run the decoder body once, select the hidden states whose
*next* token is an answer token (``labels[:, t+1] != -100``), and apply the LM head to those rows only.
Some architectures change the LM head's output before returning it (Gemma-2/3 soft-cap it,
``cap * tanh(logits / cap)``; Cohere multiplies by ``logit_scale``; Granite divides by ``logits_scaling``).
:func:`logit_transform` applies the known ones and checks, once per model, that decoder body + head +
transform gives the model's own logits on a short probe; when it does not (an architecture whose extra step
we do not know), :func:`answer_logits` falls back to the model's full forward pass.
"""

from __future__ import annotations

import math
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


_CACHE_KW: dict = {}


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
    labels = batch["labels"]
    target = labels[:, 1:]
    sel = target != -100
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
    rows = torch.arange(labels.size(0), device=labels.device).unsqueeze(1).expand_as(target)[sel]
    return logits.float(), target[sel], rows, hidden_states


def sequence_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: summed log p(answer tokens) and the number of answer tokens (differentiable)."""
    logits, targets, rows, _ = answer_logits(model, batch)
    tok_lp = -torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    n = batch["labels"].size(0)
    sums = torch.zeros(n, device=logits.device, dtype=tok_lp.dtype).index_add(0, rows, tok_lp)
    counts = torch.zeros(n, device=logits.device, dtype=tok_lp.dtype).index_add(0, rows, torch.ones_like(tok_lp))
    return sums, counts
