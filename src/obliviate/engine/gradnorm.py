"""Per-sample gradient norms of a whole batch, without forming any per-sample gradient ("ghost norms").

The GradNorm membership-inference statistic of a sample is ``||grad_theta L_i||_2``, with ``L_i`` the
average negative log-likelihood of the sample's answer tokens and theta every trainable parameter. The
plain way is one forward and one backward pass per sample (:func:`.scoring.gradient_norm`). Here one
batched forward and one backward pass *with respect to activations only* give every sample's norm:

* linear layer ``y_t = W x_t (+ b)`` at positions t of sample i: ``grad W = sum_t g_t x_t^T``, so
  ``||grad W||^2 = sum_{t,s} (g_t . g_s)(x_t . x_s) = <X X^T, G G^T>`` (two T x T Gram matrices), and
  ``grad b = sum_t g_t``;
* RMSNorm ``y_t = w * xhat_t``: ``grad w = sum_t g_t * xhat_t``;
* input embedding: ``grad E[v] = sum_{t: id_t = v} e_t`` (``e_t`` the gradient of the input embedding at
  t), so ``||grad E||^2 = sum_{t,s: id_t = id_s} e_t . e_s``;
* output embedding (LM head, applied at the answer positions s with inputs ``h_s`` and logit gradients
  ``q_s``): ``||grad H||^2 = <h h^T, q q^T>``; when it is tied to the input embedding, the shared matrix
  gets ``H + grad E`` and the cross term ``2 <H, grad E> = 2 sum_{s,t} q_s[id_t] (h_s . e_t)`` is added.
  Like ``nn.Embedding``, positions holding the embedding's ``padding_idx`` send it no gradient (SmolLM2
  declares ``<|im_end|>`` as its pad token, so the lookups of that row never count).

Samples are right-padded in the batch: padded positions come after every real token, so under the causal
mask they influence nothing and their gradients are exactly zero. No weight gradient is computed (the
backward pass skips the weight-gradient products, about a third of a training step's work). Models with
a trainable parameter outside these module types fall back to the per-sample loop.

Memory: a linear layer's input Gram matrix is taken in the forward hook, so the input itself is not kept
(q/k/v and gate/up projections share one); the LM head runs one sample at a time outside autograd, with
the analytic logit gradient ``q = (softmax - onehot) / n``, so no tokens x vocabulary graph exists. What
remains is the decoder's own saved activations, bounded by ``batch_tokens``.
"""

from __future__ import annotations

import torch

from ..data.formatting import Encoded, collate
from .forward import logit_transform
from .scoring import gradient_norm


def _is_rmsnorm(module) -> bool:
    return type(module).__name__.endswith("RMSNorm") and isinstance(getattr(module, "weight", None), torch.nn.Parameter) \
        and (hasattr(module, "variance_epsilon") or hasattr(module, "eps")) and \
        len([p for p in module.parameters(recurse=False)]) == 1


def _plan(model):
    """(linear modules, rmsnorm modules, embedding, head, tied) or None when some trainable parameter is
    not covered by the ghost-norm rules."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if body is None or not isinstance(head, torch.nn.Linear) or not isinstance(emb, torch.nn.Embedding):
        return None
    fn, ok = logit_transform(model)
    if fn is not None or not ok:  # the ghost LM-head rule assumes logits = head(h)
        return None
    tied = head.weight is emb.weight
    covered: set[int] = {id(emb.weight), id(head.weight)}
    if head.bias is not None:
        covered.add(id(head.bias))
    linears, norms = [], []
    for m in body.modules():
        if m is emb:
            continue
        if isinstance(m, torch.nn.Linear):
            linears.append(m)
            covered.update(id(p) for p in m.parameters(recurse=False))
        elif _is_rmsnorm(m):
            norms.append(m)
            covered.add(id(m.weight))
    for p in model.parameters():
        if p.requires_grad and id(p) not in covered:
            return None
    return linears, norms, emb, head, tied


def gradient_norms(model, pairs: list[tuple[list[int], list[int]]], batch_tokens: int = 256) -> list[float]:
    """GradNorm of every (prompt ids, answer ids) pair: ``||grad of the pair's average answer NLL||_2``
    over the model's trainable parameters — the same value as :func:`.scoring.gradient_norm`.

    ``batch_tokens`` bounds the padded tokens of one batch; the activations kept for the backward pass
    grow with it (about 1 MB per token for SmolLM2-135M), the speed gain flattens out above ~256."""
    empty = [i for i, (_, a) in enumerate(pairs) if not a]
    if empty:
        raise ValueError(f"gradient_norms: pair {empty[0]} has no answer tokens; the average answer NLL (and its "
                         f"gradient) is undefined ({len(empty)} such pair(s))")
    plan = _plan(model)
    if plan is None:
        return [gradient_norm(model, p, a) for p, a in pairs]
    out: list[float] = [0.0] * len(pairs)
    # The batched path reads the answer's logits at positions len(prompt) - 1 ...: a pair without a prompt
    # (its first answer token is never predicted) goes through the plain backward.
    odd = [i for i, (p, a) in enumerate(pairs) if not p]
    for i in odd:
        out[i] = gradient_norm(model, *pairs[i])
    odd_set = set(odd)
    order = sorted((i for i in range(len(pairs)) if i not in odd_set),
                   key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    s = 0
    while s < len(order):
        longest = len(pairs[order[s]][0]) + len(pairs[order[s]][1])
        n = max(1, batch_tokens // max(longest, 1))  # rows of the longest length fit the token budget
        chunk = order[s : s + n]
        for j, v in zip(chunk, _ghost_batch(model, plan, [pairs[j] for j in chunk])):
            out[j] = v
        s += n
    return out


def _ghost_batch(model, plan, pairs) -> list[float]:
    linears, norms, emb, head, tied = plan
    device = emb.weight.device
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    B = len(pairs)
    lens = [len(p) + len(a) for p, a in pairs]
    # Right padding; the pad id is irrelevant: padded positions are masked and never read back.
    batch = collate([Encoded(p + a, [-100] * len(p) + a, len(p)) for p, a in pairs], pad_id=0)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    sq = torch.zeros(B, dtype=torch.float64, device=device)
    handles = []
    last = {"x": None, "gram": None}  # q/k/v (and gate/up) projections read the same input: one Gram matrix

    def linear_hook(module, inputs, output):
        w_on = id(module.weight) in trainable
        b_on = module.bias is not None and id(module.bias) in trainable
        if not (output.requires_grad and (w_on or b_on)):
            return
        gram = None
        if w_on:
            x = inputs[0]
            if last["x"] is not x:  # the input's Gram matrix is taken now: the input itself is not kept
                xf = x.detach().float()
                last["x"], last["gram"] = x, xf @ xf.transpose(1, 2)
            gram = last["gram"]

        def on_grad(g):
            nonlocal sq
            g = g.detach().float()
            if gram is not None:
                sq = sq + (gram * (g @ g.transpose(1, 2))).sum((1, 2)).double()
            if b_on:
                sq = sq + g.sum(1).double().square().sum(-1)
        output.register_hook(on_grad)

    def norm_hook(module, inputs, output):
        if id(module.weight) not in trainable or not output.requires_grad:
            return
        x = inputs[0]  # kept by autograd for the norm's own backward anyway
        eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps")

        def on_grad(g):
            nonlocal sq
            xf = x.detach().float()
            xhat = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
            sq = sq + (g.detach().float() * xhat).sum(1).double().square().sum(-1)
        output.register_hook(on_grad)

    for m in linears:
        handles.append(m.register_forward_hook(linear_hook))
    for m in norms:
        handles.append(m.register_forward_hook(norm_hook))
    head_on = id(head.weight) in trainable
    emb_on = id(emb.weight) in trainable  # the same flag as head_on when the two are tied
    hb_on = head.bias is not None and id(head.bias) in trainable
    saved = [(p, p.requires_grad) for p in model.parameters()]
    extra = torch.zeros(B, dtype=torch.float64, device=device)
    cross = []  # per sample: (LM-head inputs h, logit gradients at the sample's own token ids), tied case
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        with torch.enable_grad():
            x0 = emb(ids).detach().requires_grad_(True)
            hid = model.get_decoder()(inputs_embeds=x0, attention_mask=mask, use_cache=False).last_hidden_state
            last["x"] = last["gram"] = None
            # The LM head, one sample at a time and without autograd: the gradient of the mean answer NLL
            # w.r.t. the logits is q = (softmax - onehot) / n, so no [tokens x vocab] graph is ever kept.
            hid_grad = torch.zeros_like(hid)
            for r, (p, a) in enumerate(pairs):
                sl = slice(len(p) - 1, len(p) + len(a) - 1)  # positions predicting the answer tokens
                h = hid[r, sl].detach()
                q = torch.softmax(head(h).float(), dim=-1)
                q[torch.arange(len(a), device=device), torch.tensor(a, device=device)] -= 1
                q /= len(a)
                hid_grad[r, sl] = (q.to(head.weight.dtype) @ head.weight).to(hid.dtype)
                hf = h.float()
                if head_on:
                    extra[r] += ((hf @ hf.T) * (q @ q.T)).sum().double()
                if hb_on:
                    extra[r] += q.sum(0).double().square().sum()
                if tied and emb_on:
                    cross.append((hf, q[:, ids[r, : lens[r]]]))
                del q
            hid.backward(hid_grad)
    finally:
        for hd in handles:
            hd.remove()
        for p, flag in saved:
            p.requires_grad_(flag)
        last["x"] = last["gram"] = None
    e = x0.grad.detach().float()  # [B, T, d]: gradient of the input embeddings
    for r in range(B):
        if not emb_on:
            break
        er, idr = e[r, : lens[r]], ids[r, : lens[r]]
        if emb.padding_idx is not None:  # nn.Embedding never sends gradient to its padding row
            er = er * (idr != emb.padding_idx).unsqueeze(1)
        same = idr.unsqueeze(0) == idr.unsqueeze(1)
        extra[r] += ((er @ er.T) * same).sum().double()
        if tied:  # the shared matrix gets grad H + grad E: cross term 2 <grad H, grad E>
            hr, qr = cross[r]
            extra[r] += 2 * (qr * (hr @ er.T)).sum().double()
    return (sq + extra).clamp_min(0).sqrt().tolist()


# --------------------------------------------------------------------------------------------------------
# open-unlearning's GradNorm statistic (the `open-unlearning`, `tofu` and `muse` protocols)

def tensor_mean_gradient_norm(model, prompt_ids: list[int], answer_ids: list[int], *, drop_eos: bool = True,
                              train_mode: bool = True, eos_mask_id: int | None = None) -> float:
    """open-unlearning's GradNorm statistic of one (prompt, answer) pair:

        g = (1/|P|) sum_{W in P} ||grad_W L||_2,   L = -(1/T) sum_t log p(y_t | x, y_<t)

    P = the parameter tensors that receive a gradient, the mean NLL L over the answer tokens *without* the
    final EOS (``drop_eos``), the model in train mode (``train_mode``; dropout on where the model has any).
    Source: open-unlearning src/evals/metrics/mia/gradnorm.py:21-32 (``model.train()``, ``-mean(lps)``, a
    stack of per-tensor ``norm(p=2)`` then ``.mean()``) and src/evals/metrics/utils.py:129-131 (the last
    labelled position, EOS, dropped). ``eos_mask_id``: open-unlearning's pad=eos mask (``input_ids != eos``,
    the protocol's ``pad_mask="eos"``), else every token attended. obliviate's own statistic (:func:`gradient_norms`) is the global L2 norm
    over all parameters of the loss with EOS, in eval mode. One forward and backward per pair; each tensor's
    norm is taken as soon as its gradient is complete and the gradient dropped."""
    from .forward import answer_logits

    a = answer_ids[:-1] if drop_eos else answer_ids
    if not a:
        raise ValueError("tensor_mean_gradient_norm: no answer token besides EOS; the mean NLL is undefined")
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + answer_ids], device=device)
    labels = torch.tensor([[-100] * len(prompt_ids) + a + [-100] * (len(answer_ids) - len(a))], device=device)
    mask = torch.ones_like(ids) if eos_mask_id is None else (ids != eos_mask_id).long()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    norms: list[torch.Tensor] = []

    def take(p):
        norms.append(p.grad.detach().double().norm(2))
        p.grad = None

    was_training = model.training
    model.zero_grad(set_to_none=True)
    handles = [p.register_post_accumulate_grad_hook(take) for p in model.parameters() if p.requires_grad]
    try:
        model.train(train_mode)
        with torch.enable_grad():
            logits, targets, _, _ = answer_logits(model, batch)
            torch.nn.functional.cross_entropy(logits.float(), targets).backward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return torch.stack(norms).mean().item()


GRADNORM_STATISTICS = ("global", "mean_tensor")


def protocol_gradient_norms(model, pairs: list[tuple[list[int], list[int]]], statistic: str = "global", *,
                            eos_mask_id: int | None = None) -> list[float]:
    """GradNorm of every pair under a protocol's statistic: ``global`` (:func:`gradient_norms`, batched ghost
    norms) or ``mean_tensor`` (:func:`tensor_mean_gradient_norm`, open-unlearning's; ``eos_mask_id`` for its
    pad=eos mask)."""
    if statistic == "global":
        return gradient_norms(model, pairs)
    if statistic == "mean_tensor":
        return [tensor_mean_gradient_norm(model, p, a, eos_mask_id=eos_mask_id) for p, a in pairs]
    raise ValueError(f"GradNorm statistic must be one of {', '.join(GRADNORM_STATISTICS)}, got {statistic!r}")
