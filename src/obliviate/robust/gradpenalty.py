"""Gradient-norm penalty on the forget loss (a first-order stand-in for SAM; Fan et al. 2025, "GP").

Paper: Fan et al. 2025, "Towards LLM Unlearning Resilient to Relearning Attacks", arXiv 2502.05374.

Loss (plain text): L = F + lambda * ||grad_theta F||_2 + R, where F = gamma * L_f and R = alpha * L_r are the
method's weighted forget and retain terms (the paper's methods have gamma 1; with simnpo's gamma 0.125 the
penalty is lambda * 0.125 * ||grad L_f||, relative to the forget term the step uses), and the norm is differentiable
(``create_graph=True``: its gradient is a Hessian-vector product, one double backward). The authors' code
computes the norm with ``.item()``, so the penalty there contributes no gradient (a bug we do not repeat).
There is no paper default for lambda; it is a required value (``--grad-penalty LAMBDA``).

The fused attention kernels (flash / memory-efficient SDPA) have no double backward, so the forget forward
pass runs with PyTorch's math attention backend (slower, same values), and its per-token log-probabilities
come from full logits (``twice_differentiable``) rather than the chunked head, whose backward is not
differentiable again.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..engine.forward import twice_differentiable
from ..methods.base import reusing_references


def grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """||d loss / d params||_2 over all params, differentiable."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    sq = [g.pow(2).sum() for g in grads if g is not None]
    return torch.stack(sq).sum().clamp_min(1e-24).sqrt() if sq else loss * 0.0


class GradPenalty:
    # ||grad|| of this process's share of the loss is not a share of the global batch's ||grad||.
    single_process_only = ("--grad-penalty: the gradient-norm penalty is not linear in the rows, so it cannot "
                           "be split over processes")

    def __init__(self, objective, lam: float):
        self.objective, self.lam = objective, lam

    @reusing_references  # PALU's retain side reads the forget batch's reference again
    def __call__(self, model, batch):
        params = [p for p in model.parameters() if p.requires_grad]
        with sdpa_kernel(SDPBackend.MATH), twice_differentiable():  # differentiable twice
            f, logs = self.objective.forget_loss(model, batch)
        gn = grad_norm(f, params) if torch.isfinite(f) else f
        loss = f + self.lam * gn
        r, rlogs = self.objective.retain_loss(model, batch)
        if r is not None:
            loss = loss + r
        return loss, {**logs, **rlogs, "forget_grad_norm": gn.detach().item()}
