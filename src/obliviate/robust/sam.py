"""Sharpness-aware unlearning (SAM on the forget loss).

Paper: Fan, Jia, Zhang, Ramakrishna, Hong, Liu 2025, "Towards LLM Unlearning Resilient to Relearning
Attacks: A Sharpness-Aware Minimization Perspective and Beyond" (ICML 2025), arXiv 2502.05374.

Step (plain text): g_f = grad of the forget term at theta; eps = rho * g_f / ||g_f|| (global L2 norm over all
trainable parameters); the update direction is grad L_f(theta + eps) + grad L_r(theta), i.e. the forget
gradient at the perturbed weights and the retain gradient at the clean weights. rho 0.01.

Costs three forward/backward passes per step (forget at theta for the direction, forget at theta + eps,
retain at theta). The direction is taken with ``torch.autograd.grad`` so it never touches accumulated
``.grad`` buffers (safe with gradient accumulation).
"""

from __future__ import annotations

import torch

from ..methods.base import reusing_references


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def sam_perturbation(grads: list[torch.Tensor | None], rho: float) -> list[torch.Tensor | None]:
    """eps_i = rho * g_i / ||g|| with ||g|| the global L2 norm (zero where the norm is zero)."""
    sq = [g.float().pow(2).sum() for g in grads if g is not None]
    if not sq:
        return [None for _ in grads]
    norm = torch.stack(sq).sum().sqrt()
    scale = rho / norm if norm > 0 else torch.zeros_like(norm)
    return [None if g is None else (g * scale).to(g.dtype) for g in grads]


@torch.no_grad()
def perturb(params, deltas) -> list:
    """Add ``deltas`` to ``params`` in place; returns copies of the touched parameters' clean values.

    The weights are put back by copying (:func:`restore`), not by subtracting the delta: ``p + e - e`` is not
    ``p`` in floating point (in bf16 a SAM or smoothing step would otherwise leave ~1 % of the weights changed)."""
    clean = []
    for p, d in zip(params, deltas):
        if d is None:
            clean.append(None)
            continue
        clean.append(p.detach().clone())
        p.add_(d)
    return clean


@torch.no_grad()
def restore(params, clean) -> None:
    for p, c in zip(params, clean):
        if c is not None:
            p.copy_(c)


def retain_at_clean_weights(objective, model, batch, backward, loss: torch.Tensor, logs: dict) -> torch.Tensor:
    """Backward the objective's retain term at the current (unperturbed) weights; add it to ``loss``.

    Shared by the wrappers that perturb weights for the forget term only (SAM, randomized smoothing).
    A non-finite retain term is not back-propagated, so the loop's guard reports it by name."""
    r, rlogs = objective.retain_loss(model, batch)
    if r is None:
        return loss
    if torch.isfinite(r):
        backward(r)
    logs.update(rlogs)
    return loss + r.detach()


class SAM:
    does_backward = True  # train() passes backward=accelerator.backward
    # Its ascent direction is the gradient of this process's rows only (not averaged before the perturbation),
    # so N processes would not take one process's steps (train.check_distributed refuses it).
    single_process_only = ("--sam-rho: SAM perturbs the weights along the forget gradient before the processes' "
                           "gradients are averaged")

    def __init__(self, objective, rho: float = 0.01):
        self.objective, self.rho = objective, rho

    @reusing_references  # the forget loss is taken twice: one reference forward serves both
    def __call__(self, model, batch, backward):
        params = _trainable(model)
        f, logs = self.objective.forget_loss(model, batch)
        if not torch.isfinite(f):
            return f.detach(), {**logs, "sam": "forget loss not finite at the clean weights"}
        grads = list(torch.autograd.grad(f, params, allow_unused=True))
        if not all(torch.isfinite(g).all() for g in grads if g is not None):
            return torch.tensor(float("nan")), {**logs, "sam": "forget-loss gradient not finite at the clean weights"}
        eps = sam_perturbation(grads, self.rho)
        del grads
        clean = perturb(params, eps)
        del eps
        try:
            f_adv, logs_adv = self.objective.forget_loss(model, batch)
            if torch.isfinite(f_adv):
                backward(f_adv)
        finally:
            restore(params, clean)
        loss = f_adv.detach()
        # the method's own terms at the perturbed weights, as it logs them (unweighted), with a _perturbed suffix
        out = {**logs, **{f"{k}_perturbed": v for k, v in logs_adv.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        if torch.isfinite(f_adv):
            loss = retain_at_clean_weights(self.objective, model, batch, backward, loss, out)
        return loss, out
