"""CE-U (``ce_u``): cross entropy to the model's own distribution with the true token removed.

Paper: Bo Yang 2025, "CE-U: Cross Entropy Unlearning", arXiv 2503.01224.

Formula (plain text): at each forget answer position t with logits z_t and true token y_t,
    q_t = softmax(stopgrad(z_t) with z_t[y_t] set to -inf),   L_f = mean_t CE(q_t, softmax(z_t))
          = -mean_t sum_v q_t,v log p_theta,t,v,
skipping the first ``ignore_first`` answer tokens of each sequence (the paper's footnote in "Training
Settings"; open-unlearning: ``ignore_first_n_answer_tokens=1``). L = gamma * L_f + alpha * L_r.

Defaults (the paper / open-unlearning): ignore_first 1, gamma 1, alpha 0 (no retain term, no reference),
lr 1e-5, 10 epochs.

Deviations: none in the loss.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.forward import answer_logits
from ..errors import ObliviateError
from ..runtime import dist
from .base import Method, option, register


def position_in_answer(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """0-based position of each answer token inside its own sequence (``rows`` is sorted row by row)."""
    counts = torch.bincount(rows, minlength=n_rows)
    starts = counts.cumsum(0) - counts
    return torch.arange(rows.numel(), device=rows.device) - starts[rows]


def ce_u_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean over rows of CE(softmax(stopgrad(z) with z[target] = -inf), softmax(z)); logits [N, V]."""
    if logits.shape[0] == 0:
        return dist.mean(logits.sum(-1), empty_zero=True)  # 0 (with every process's collective)
    tgt = logits.detach().float().clone()
    tgt[torch.arange(targets.numel(), device=targets.device), targets] = float("-inf")
    q = F.softmax(tgt, dim=-1)
    return -dist.mean((q * F.log_softmax(logits.float(), dim=-1)).sum(-1))


@dataclass
class CEUConfig:
    ignore_first: int = option(1, "answer tokens skipped at the start of each answer")
    gamma: float = option(1.0, "weight of the forget term")
    alpha: float = option(0.0, "weight of the retain term (0: none)")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class CEU(Method):
    """Cross entropy to the model's own distribution with the true token's logit set to -inf."""

    name = "ce_u"
    Config = CEUConfig
    paper = "Yang 2025, CE-U: Cross Entropy Unlearning"
    arxiv = "2503.01224"
    level = "token"
    non_negative = ("ignore_first",)

    def check_forget(self, forget):
        n = [sum(1 for t in e.labels if t != -100) for e in forget]
        skip = self.cfg.ignore_first
        if all(k <= skip for k in n):
            raise ObliviateError(f"method ce_u: ignore_first={skip} skips every answer token of the forget set "
                                 f"(its longest answer has {max(n)} tokens); give ignore_first={max(n) - 1} or less")
        short = sum(1 for k in n if k <= skip)
        if short:
            print(f"note: ce_u ignore_first={skip} skips all the answer tokens of {short} of the {len(n)} forget "
                  "items; they add nothing to the forget term", file=sys.stderr)

    def forget_loss(self, model, batch):
        f = batch["forget"]
        logits, targets, rows, _ = answer_logits(model, f)
        keep = position_in_answer(rows, f["labels"].size(0)) >= self.cfg.ignore_first
        loss = ce_u_loss(logits[keep], targets[keep])
        return self.cfg.gamma * loss, {"forget": loss.detach().item()}
