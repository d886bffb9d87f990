"""SatImp (``satimp``): token-weighted gradient ascent, weight = saturation x importance.

Paper: Yang, Wang, Han et al. 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning"
(ICML 2025), arXiv 2505.11953.

Formula (plain text): p_t = p_theta(y_t | x, y_<t) at each forget answer token;
    L_f = mean over answer tokens of stopgrad(p_t^beta1 * (1 - p_t)^beta2) * log p_t;
L = gamma * L_f + alpha * L_r.

Defaults (open-unlearning's TOFU config): beta1 5, beta2 1, gamma 0.1, alpha 1, NLL retain, lr 1e-5,
5 epochs.

Deviations: none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..runtime import dist
from .base import Method, option, register, token_logprobs


def satimp_loss(token_logp: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """mean_t stopgrad(p_t^beta1 (1 - p_t)^beta2) log p_t over answer tokens."""
    p = token_logp.detach().exp()
    w = p.pow(beta1) * (1.0 - p).pow(beta2)
    return dist.mean(w * token_logp)


@dataclass
class SatImpConfig:
    beta1: float = option(5.0, "exponent of p (saturation)")
    beta2: float = option(1.0, "exponent of 1 - p (importance)")
    gamma: float = option(0.1, "weight of the forget term")
    alpha: float = option(1.0, "weight of the retain term")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class SatImp(Method):
    """Gradient ascent with tokens weighted by stopgrad(p^b1 (1-p)^b2)."""

    name = "satimp"
    Config = SatImpConfig
    paper = "Yang et al. 2025, Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning"
    arxiv = "2505.11953"
    level = "token"
    non_negative = ("beta1", "beta2")
    train_defaults = {"epochs": 5, "lr": 1e-5}

    def forget_loss(self, model, batch):
        lp, _ = token_logprobs(model, batch["forget"])
        loss = satimp_loss(lp, self.cfg.beta1, self.cfg.beta2)
        return self.cfg.gamma * loss, {"forget": loss.detach().item()}
