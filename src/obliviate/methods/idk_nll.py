"""IdkNLL (``idk_nll``): teach the model to refuse the forget questions.

Paper: the TOFU baseline "Preference Optimization" with its NLL variant (Maini et al. 2024, "TOFU: A Task
of Fictitious Unlearning for LLMs", arXiv 2401.06121; open-unlearning's ``IdkNLL``).

Formula (plain text): L = gamma * L_f + alpha * L_r; L_f = mean NLL over the answer tokens of
(forget question, refusal answer) pairs; L_r = NLL on retain answers (or KL to the reference).

Refusals: obliviate's own list (``obliviate.refusals``), or a file (``--idk-file``, e.g. TOFU's
``idontknow.jsonl``). Each forget item is paired with one refusal drawn with the run's seed.

Defaults (TOFU / open-unlearning): gamma 1, alpha 1, NLL retain, lr 1e-5, 10 epochs, effective batch 32.

Deviations: open-unlearning draws a new refusal each time an item is loaded; we fix one refusal per item
for the whole run (the same pairing that lets IdkDPO cache its reference values).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method, nll_token_mean, option, register


@dataclass
class IdkNLLConfig:
    gamma: float = option(1.0, "weight of the refusal NLL term")
    alpha: float = option(1.0, "weight of the retain term")
    retain_loss: str = option("nll", "retain term: nll or kl (KL to the frozen reference)")


@register
class IdkNLL(Method):
    """NLL on (forget question, refusal answer) pairs + retain NLL."""

    name = "idk_nll"
    Config = IdkNLLConfig
    paper = "Maini et al. 2024, TOFU: A Task of Fictitious Unlearning for LLMs (refusal baseline)"
    arxiv = "2401.06121"
    level = "token"
    uses_idk = True

    def forget_loss(self, model, batch):
        loss = nll_token_mean(model, batch["idk"])
        return self.cfg.gamma * loss, {"idk_nll": loss.detach().item()}
