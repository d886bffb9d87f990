"""UNDIAL (``undial``): self-distillation to the reference with the true token's logit lowered.

Paper: Dong, Lin, Belinkov, Ma, Shen 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust
Unlearning in Large Language Models" (NAACL 2025), arXiv 2402.10052.

Formula (plain text): at each answer position t with true token y_t and reference logits z_ref,t,
    q_t = softmax(z_ref,t - beta * onehot(y_t)),   L_f = mean over answer tokens of CE(q_t, p_theta,t)
          = -mean_t sum_v q_t,v log p_theta,t,v;
L = gamma * L_f + alpha * L_r.

Defaults (the paper / open-unlearning TOFU config): beta 10 (swept 3/10/30), gamma 1, alpha 0 (no retain
term), lr 1e-4, 10 epochs. Reference: one frozen copy, or with LoRA the base model (adapters disabled).

Deviations: only answer tokens enter the loss (open-unlearning indexes the one-hot with -100 labels and
averages over prompt and padding positions too: both bugs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.forward import answer_logits
from ..runtime import dist
from .base import Method, option, register


def undial_loss(logits: torch.Tensor, ref_logits: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean over rows of CE(softmax(ref_logits - beta e_target), softmax(logits)); logits [N, V], targets [N]."""
    adjusted = ref_logits.float().clone()
    adjusted[torch.arange(targets.numel(), device=targets.device), targets] -= beta
    q = F.softmax(adjusted, dim=-1)
    return -dist.mean((q * F.log_softmax(logits.float(), dim=-1)).sum(-1))


@dataclass
class UNDIALConfig:
    beta: float = option(10.0, "how far the true token's reference logit is lowered")
    gamma: float = option(1.0, "weight of the forget (distillation) term")
    alpha: float = option(0.0, "weight of the retain term (0: none)")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class UNDIAL(Method):
    """Distil the reference's logits with the true token lowered by beta (answer tokens only)."""

    name = "undial"
    Config = UNDIALConfig
    paper = "Dong et al. 2025, UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning"
    arxiv = "2402.10052"
    level = "token"
    non_negative = ("beta",)
    reference = "token"
    train_defaults = {"epochs": 10, "lr": 1e-4}

    def forget_loss(self, model, batch):
        f = batch["forget"]
        logits, targets, _, _ = answer_logits(model, f)
        ref = self.refs.token.answer_logits(model, f)
        loss = undial_loss(logits, ref, targets, self.cfg.beta)
        return self.cfg.gamma * loss, {"forget": loss.detach().item()}
