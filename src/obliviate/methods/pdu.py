"""PDU (``pdu``): constrained entropic unlearning, solved primal-dual.

Paper: Entesari, Hatami, Khaziev, Ramakrishna, Fazlyab 2025, "Constrained Entropic Unlearning: A
Primal-Dual Framework for Large Language Models", arXiv 2506.05314.

Problem: min L_f subject to L_r <= eps, with the logit-margin flattening loss
    L_f = mean over forget answer tokens t of (max_v z_t,v - mean_v z_t,v)^2      (softmax-free)
and L_r the mean NLL over retain answer tokens. Lagrangian step:
    L = gamma * L_f + lambda * (L_r - eps),
then dual ascent after each step: lambda <- max(0, lambda + eta * (L_r - eps)).

Defaults (open-unlearning's TOFU run): lambda_0 (``alpha``) 100, eta (``dual_step_size``) 5, eps 0.3,
gamma 1, lr 1e-5, 10 epochs, dual warm-up 5 epochs.

Dual warm-up (``dual_warmup_epochs``): lambda stays at lambda_0 until that many epochs are done. In
open-unlearning (src/trainer/unlearn/pdu.py:25,59 and :143-145) the dual updates are enabled by the
callback at the end of epoch ``dual_warmup_epochs``; its TOFU script uses 5, its MUSE script 3
(community/methods/PDU/run.sh:15,82; configs/trainer/PDU.yaml:10 has 5). Here the epochs done are counted
from the forget items seen (each forget item once per epoch), so the rule holds with any batch size or
gradient accumulation: a step updates lambda only when the items seen *before* it cover
``dual_warmup_epochs`` epochs.

The dual update runs once per optimiser step, with L_r the mean retain NLL of that step's micro-batches
(``on_step_end``; with ``--grad-accum G`` every micro-batch of a step uses the same lambda, and eta is not
multiplied by G).

Deviations: the flattening loss is taken over answer tokens only (open-unlearning's first PDU code averages
over every position, prompt and padding included; its later code masks the *unshifted* logits with
``labels != -100``, one position off, and updates lambda at every loss call, i.e. per micro-batch).
Lambda is logged each step, written to run.json and kept in the per-epoch checkpoint, so ``--resume``
continues with the lambda the run had reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.forward import answer_logits
from ..runtime import dist
from .base import Method, nll_token_mean, option, register


def pdu_forget_loss(logits: torch.Tensor) -> torch.Tensor:
    """mean over rows of (max_v z_v - mean_v z_v)^2; logits [N, V]."""
    z = logits.float()
    return dist.mean((z.max(dim=-1).values - z.mean(dim=-1)).pow(2))


def dual_update(lam: float, eta: float, retain: float, eps: float) -> float:
    """Projected dual ascent: max(0, lambda + eta * (L_r - eps))."""
    return max(0.0, lam + eta * (retain - eps))


@dataclass
class PDUConfig:
    gamma: float = option(1.0, "weight of the forget (flattening) term")
    alpha: float = option(100.0, "initial dual variable lambda_0 on the retain constraint")
    dual_step_size: float = option(5.0, "eta: dual ascent step size (0: fixed lambda)")
    eps: float = option(0.3, "retain NLL bound of the constraint L_r <= eps")
    dual_warmup_epochs: int = option(5, "epochs before the first dual update (open-unlearning: 5 on TOFU, 3 on MUSE)")


@register
class PDU(Method):
    """Logit-margin flattening on forget answers under a retain-NLL constraint (primal-dual)."""

    name = "pdu"
    Config = PDUConfig
    paper = "Entesari et al. 2025, Constrained Entropic Unlearning: A Primal-Dual Framework for LLMs"
    arxiv = "2506.05314"
    level = "token"
    non_negative = ("dual_step_size", "eps", "dual_warmup_epochs")

    @classmethod
    def needs_retain(cls, cfg):
        return cfg.alpha != 0 or cfg.dual_step_size != 0

    def __init__(self, cfg, refs=None, seed: int = 0):
        super().__init__(cfg, refs, seed)
        self.lam = float(cfg.alpha)
        self._retain_seen: list[float] = []  # finite retain NLLs since the last optimiser step
        self._n_forget: int | None = None  # forget items per epoch (check_forget)
        self._items_seen = 0  # forget items of the finished optimiser steps
        self._step_items: set[int] = set()  # forget item indices of the current step

    def check_forget(self, forget: list) -> None:
        self._n_forget = len(forget)

    def _warm(self) -> bool:
        """True once the items of the finished steps cover ``dual_warmup_epochs`` epochs."""
        w = self.cfg.dual_warmup_epochs
        return w <= 0 or (self._n_forget is not None and self._items_seen >= w * self._n_forget)

    def extra_state(self):
        return {"dual_lambda": self.lam}

    def state_dict(self) -> dict:
        return {"lambda": self.lam, "retain_seen": list(self._retain_seen), "items_seen": self._items_seen}

    def load_state_dict(self, state: dict) -> None:
        if "lambda" in state:  # a checkpoint of this method (not of another one resumed into this folder)
            self.lam = float(state["lambda"])
            self._retain_seen = list(state.get("retain_seen", []))
            self._items_seen = int(state.get("items_seen", 0))

    def forget_loss(self, model, batch):
        logits, _, _, _ = answer_logits(model, batch["forget"])
        if "index" in batch["forget"]:  # a set: a wrapper that evaluates the loss twice counts the items once
            self._step_items.update(int(i) for i in batch["forget"]["index"].tolist())
        loss = pdu_forget_loss(logits)
        return self.cfg.gamma * loss, {"forget": loss.detach().item()}

    def retain_loss(self, model, batch):
        if not self.needs_retain(self.cfg):
            return None, {}
        r = nll_token_mean(model, batch["retain"])
        lam = self.lam
        term = lam * (r - self.cfg.eps)
        rv = r.detach().item()
        if torch.isfinite(r):
            self._retain_seen.append(rv)
        return term, {"retain": rv, "lambda": lam}

    def on_step_end(self, step: int) -> None:
        """Dual ascent with the mean retain NLL of the step's micro-batches, once the warm-up is over."""
        if self._retain_seen and self._warm():
            mean_r = sum(self._retain_seen) / len(self._retain_seen)
            # each process saw its share of the global retain NLL times N (dist.mean): their mean is the NLL
            mean_r = dist.all_reduce_sum(torch.tensor([mean_r], dtype=torch.float64)).item() / dist.world_size()
            self.lam = dual_update(self.lam, self.cfg.dual_step_size, mean_r, self.cfg.eps)
        self._retain_seen.clear()
        self._items_seen += len(self._step_items)
        self._step_items.clear()
