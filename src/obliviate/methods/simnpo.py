"""SimNPO (``simnpo``): reference-free, length-normalised NPO with a margin.

Paper: Fan, Liu, Lin, Jia, Zhang, Mei, Liu 2024, "Simplicity Prevails: Rethinking Negative Preference
Optimization for LLM Unlearning", arXiv 2410.07163.

Formula (plain text): A(y|x) = -(1/|y|) log pi_theta(y|x) (mean NLL over answer tokens, EOS included);
    L_f = -(2/beta) * mean_i log sigmoid(beta * A(y_i|x_i) - delta)
(the paper writes -(2/beta) log sigmoid(-(beta/|y|) log pi_theta(y|x) - gamma); its margin gamma is our
``delta``); L = gamma * L_f + alpha * L_r.

Defaults (TOFU, as in open-unlearning's SimNPO config and the issue; the paper's own per-benchmark table
could not be checked offline): beta 4.5, delta 0, forget weight gamma 0.125, alpha 1, NLL retain,
lr 1e-5, 10 epochs.

Deviations: the reference code (and open-unlearning) computes log sigmoid(beta * (A - delta)), so its
``delta`` equals the paper's margin divided by beta; we follow the paper (identical for delta = 0).
REFERENCE.md writes log sigmoid(-beta A - delta), a sign slip: minimising that would *raise* the forget
likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.forward import sequence_logprobs
from ..runtime import dist
from .base import Method, option, register


def simnpo_loss(avg_nll: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """-(2/beta) mean log sigmoid(beta * A - delta) over sequences."""
    return -(2.0 / beta) * dist.mean(F.logsigmoid(beta * avg_nll - delta))


@dataclass
class SimNPOConfig:
    beta: float = option(4.5, "inverse temperature")
    delta: float = option(0.0, "reward margin (the paper's gamma)")
    gamma: float = option(0.125, "weight of the forget term")
    alpha: float = option(1.0, "weight of the retain term")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class SimNPO(Method):
    """Reference-free, length-normalised NPO with a reward margin."""

    name = "simnpo"
    Config = SimNPOConfig
    paper = "Fan et al. 2024, Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning"
    arxiv = "2410.07163"
    level = "sequence"

    positive = ("beta",)

    def forget_loss(self, model, batch):
        f = batch["forget"]
        logp, n = sequence_logprobs(model, f)
        avg_nll = -logp / n
        loss = simnpo_loss(avg_nll, self.cfg.beta, self.cfg.delta)
        return self.cfg.gamma * loss, {"forget": loss.detach().item(), "avg_nll": avg_nll.detach().mean().item()}
