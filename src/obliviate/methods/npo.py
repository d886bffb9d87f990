"""Negative preference optimisation (``npo``).

Paper: Zhang, Lin, Bai, Mei 2024, "Negative Preference Optimization: From Catastrophic Collapse to
Effective Unlearning", arXiv 2404.05868.

Formula (plain text): with sequence log-likelihoods log pi(y|x) = sum over answer tokens (EOS included) of
log p(y_t | x, y_<t),
    L_f = (2/beta) * mean_i log(1 + (pi_theta(y_i|x_i) / pi_ref(y_i|x_i))^beta)
        = -(2/beta) * mean_i log sigmoid(-beta * (log pi_theta(y_i|x_i) - log pi_ref(y_i|x_i)));
L = gamma * L_f + alpha * L_r (L_r: NLL on retain answers, or KL to the reference: ``retain_loss``).

Defaults (the paper's TOFU "NPO-RT" setting, open-unlearning): beta 0.1, gamma 1, alpha 1, NLL retain,
lr 1e-5, 10 epochs, effective batch 32.

The reference: pi_ref(y_i|x_i) depends only on the fixed forget pair (x_i, y_i), so it is computed once,
before training, with the model itself, and looked up by item index (``SequenceCache``): no frozen copy
is kept in memory and no reference forward pass runs during training.

Deviations: none in the formula. MUSE's reference code evaluates this on raw logits instead of
log-likelihoods (a known bug); we use log-likelihoods as the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.forward import sequence_logprobs
from ..runtime import dist
from .base import Method, option, register


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """-(2/beta) mean log sigmoid(-beta (log pi_theta - log pi_ref)) over sequences."""
    return -(2.0 / beta) * dist.mean(F.logsigmoid(-beta * (logp - ref_logp)))


@dataclass
class NPOConfig:
    beta: float = option(0.1, "inverse temperature of the preference loss")
    gamma: float = option(1.0, "weight of the forget term")
    alpha: float = option(1.0, "weight of the retain term")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class NPO(Method):
    """Negative preference optimisation with cached sequence reference log-likelihoods."""

    name = "npo"
    Config = NPOConfig
    paper = "Zhang et al. 2024, Negative Preference Optimization"
    arxiv = "2404.05868"
    level = "sequence"
    reference = "sequence"
    sequences = ("forget",)

    positive = ("beta",)

    def forget_loss(self, model, batch):
        f = batch["forget"]
        logp, _ = sequence_logprobs(model, f)
        ref = self.refs.sequence.sequence_logprobs("forget", f).to(logp.dtype)
        loss = npo_loss(logp, ref, self.cfg.beta)
        return self.cfg.gamma * loss, {"forget": loss.detach().item(),
                                       "log_ratio": (logp - ref).detach().mean().item()}
