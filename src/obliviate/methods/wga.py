"""Weighted gradient ascent (``wga``): gradient ascent with each token weighted by its own probability.

Paper: Wang, Zhou, Zhou, Shin, Han, Weinberger 2025, "Rethinking LLM Unlearning Objectives: A Gradient
Perspective and Go Beyond" (ICLR 2025), arXiv 2502.19301.

Formula (plain text): p_t = p_theta(y_t | x, y_<t) at each forget answer token;
    L_f = mean over answer tokens of stopgrad(p_t^beta) * log p_t;
L = gamma * L_f + alpha * L_r (NLL on retain answers, or KL to the reference).

Defaults (open-unlearning's TOFU config): beta 1, gamma 1, alpha 1, NLL retain, lr 1e-5, 5 epochs.

Deviations: none (token mean over the batch's answer tokens, as the reference code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runtime import dist
from .base import Method, option, register, token_logprobs


def wga_loss(token_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """mean_t stopgrad(p_t^beta) log p_t over answer tokens (token_logp = log p_t)."""
    w = token_logp.detach().exp().pow(beta)
    return dist.mean(w * token_logp)


@dataclass
class WGAConfig:
    beta: float = option(1.0, "exponent of the probability weight")
    gamma: float = option(1.0, "weight of the forget term")
    alpha: float = option(1.0, "weight of the retain term")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class WGA(Method):
    """Gradient ascent with tokens weighted by stopgrad(p^beta)."""

    name = "wga"
    Config = WGAConfig
    paper = "Wang et al. 2025, Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond"
    arxiv = "2502.19301"
    level = "token"
    non_negative = ("beta",)
    train_defaults = {"epochs": 5, "lr": 1e-5}

    def forget_loss(self, model, batch):
        lp, _ = token_logprobs(model, batch["forget"])
        loss = wga_loss(lp, self.cfg.beta)
        return self.cfg.gamma * loss, {"forget": loss.detach().item()}
