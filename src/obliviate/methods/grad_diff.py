"""Gradient difference (``grad_diff``): gradient ascent on the forget set, descent on the retain set.

Paper: Liu et al. 2022, "Continual Learning and Private Unlearning" (CoLLAs), arXiv 2203.12817; the TOFU
baseline "Grad. Diff." (Maini et al. 2024, arXiv 2401.06121).

Formula (plain text): L = gamma * L_f + alpha * L_r; L_f = -mean_i A(y_i|x_i) on the forget batch (A = mean
NLL over answer tokens incl. EOS); L_r = mean NLL over the retain batch's answer tokens (``retain_loss=nll``)
or the mean over retain answer tokens of KL(pi_ref || pi_theta) (``retain_loss=kl``, one frozen reference).

Defaults (TOFU / open-unlearning): lr 1e-5, 10 epochs, effective batch 32, gamma 1, alpha 1, NLL retain.

Deviations: the forget term averages per sequence first (TOFU: token mean over the batch); the KL retain
term is taken over answer tokens only (open-unlearning: over every position, prompt and padding included).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method, option, register
from .grad_ascent import ascent_forget_term


@dataclass
class GradDiffConfig:
    gamma: float = option(1.0, "weight of the forget term")
    alpha: float = option(1.0, "weight of the retain term")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class GradDiff(Method):
    """Gradient ascent on forget answers + NLL (or KL to the reference) on retain answers."""

    name = "grad_diff"
    Config = GradDiffConfig
    paper = "Liu et al. 2022, Continual Learning and Private Unlearning"
    arxiv = "2203.12817"
    level = "token"

    def forget_loss(self, model, batch):
        return ascent_forget_term(model, batch["forget"], self.cfg.gamma)
