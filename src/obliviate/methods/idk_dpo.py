"""IdkDPO (``idk_dpo``): direct preference optimisation with a refusal as the preferred answer.

Papers: Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model", arXiv 2305.18290; applied to unlearning with refusals in TOFU (Maini et al. 2024, arXiv 2401.06121)
and open-unlearning's ``DPO`` with ``IdkDPO`` data.

Formula (plain text): y_w = a refusal answer, y_l = the true forget answer, log pi = summed log-likelihood of
the answer tokens (EOS included);
    L_f = -(2/beta) * mean_i log sigmoid(beta * [(log pi_theta(y_w|x) - log pi_ref(y_w|x))
                                                 - (log pi_theta(y_l|x) - log pi_ref(y_l|x))]);
L = gamma * L_f + alpha * L_r (NLL on retain answers, or KL to the reference).

Defaults (open-unlearning's TOFU setting): beta 0.1, gamma 1, alpha 1, NLL retain, lr 1e-5, 10 epochs.

The reference values log pi_ref(y_w|x) and log pi_ref(y_l|x) depend only on fixed pairs, so both are cached
once before training (no frozen copy in memory).

Deviations: the 2/beta scale follows open-unlearning (DPO's paper uses 1); one refusal is fixed per forget
item for the whole run (open-unlearning redraws it at every load), which is what makes the cache possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.forward import sequence_logprobs
from ..runtime import dist
from .base import Method, option, register


def dpo_loss(win: torch.Tensor, win_ref: torch.Tensor, lose: torch.Tensor, lose_ref: torch.Tensor,
             beta: float) -> torch.Tensor:
    """-(2/beta) mean log sigmoid(beta ((win - win_ref) - (lose - lose_ref))) over pairs."""
    return -(2.0 / beta) * dist.mean(F.logsigmoid(beta * ((win - win_ref) - (lose - lose_ref))))


@dataclass
class IdkDPOConfig:
    beta: float = option(0.1, "inverse temperature of the preference loss")
    gamma: float = option(1.0, "weight of the forget (preference) term")
    alpha: float = option(1.0, "weight of the retain term")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class IdkDPO(Method):
    """DPO preferring a refusal over the true answer, with cached reference log-likelihoods."""

    name = "idk_dpo"
    Config = IdkDPOConfig
    paper = "Rafailov et al. 2023, Direct Preference Optimization; TOFU refusal baseline"
    arxiv = "2305.18290"
    level = "sequence"
    reference = "sequence"
    sequences = ("forget", "idk")
    uses_idk = True
    positive = ("beta",)

    def forget_loss(self, model, batch):
        win, _ = sequence_logprobs(model, batch["idk"])
        lose, _ = sequence_logprobs(model, batch["forget"])
        win_ref = self.refs.sequence.sequence_logprobs("idk", batch["idk"]).to(win.dtype)
        lose_ref = self.refs.sequence.sequence_logprobs("forget", batch["forget"]).to(lose.dtype)
        loss = dpo_loss(win, win_ref, lose, lose_ref, self.cfg.beta)
        return self.cfg.gamma * loss, {"forget": loss.detach().item()}
