"""Gradient ascent (``grad_ascent``): raise the NLL of the forget answers.

Paper: Jang et al. 2023, "Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
arXiv 2210.01504; the TOFU baseline "Grad. Ascent" (Maini et al. 2024, arXiv 2401.06121).

Formula (plain text): A(y|x) = (1/|y|) sum_t -log p_theta(y_t | x, y_<t) over the answer tokens (EOS
included); L = gamma * L_f with L_f = -mean_i A(y_i|x_i) over the forget batch.

Defaults (TOFU): lr 1e-5, 10 epochs, effective batch 32, gamma 1; no retain term.

Deviations: TOFU and open-unlearning negate the Hugging Face loss, i.e. the mean NLL over all answer tokens
of the batch (long answers weigh more); we average per sequence first (REFERENCE.md's -A(y|x)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.forward import sequence_logprobs
from ..runtime import dist
from .base import Method, option, register


def grad_ascent_loss(seq_nll: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """-mean_i S_i / |y_i| (S = summed NLL of a sequence, |y| its number of answer tokens)."""
    return -dist.mean(seq_nll / lengths)


@dataclass
class GradAscentConfig:
    gamma: float = option(1.0, "weight of the forget term")


def ascent_forget_term(model, forget: dict, gamma: float):
    """gamma * L_f with L_f = -mean_i A(y_i|x_i) on the forget batch; shared by grad_ascent and grad_diff."""
    logp, n = sequence_logprobs(model, forget)
    loss = grad_ascent_loss(-logp, n)
    return gamma * loss, {"forget": loss.detach().item()}


@register
class GradAscent(Method):
    """Gradient ascent on the forget answers' NLL (no retain term)."""

    name = "grad_ascent"
    Config = GradAscentConfig
    paper = "Jang et al. 2023, Knowledge Unlearning for Mitigating Privacy Risks in Language Models"
    arxiv = "2210.01504"
    level = "token"
    retain_term = False

    def forget_loss(self, model, batch):
        return ascent_forget_term(model, batch["forget"], self.cfg.gamma)
