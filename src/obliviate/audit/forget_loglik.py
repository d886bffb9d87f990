"""View 6: how likely the audited model still finds the true forget answers."""

from __future__ import annotations

from ..engine.protocol_scoring import score_answers
from ..registry import AUDITS
from .core import AuditContext, View, item_base


def answer_logprobs(ctx: AuditContext, role: str, items=None) -> list[float]:
    """Length-normalised log-likelihood (mean log p over the answer tokens, EOS included) of each true answer,
    tokenized as the protocol says (jointly with its prompt under open-unlearning / TOFU)."""
    model, _, fmt = ctx.slots[role].get()
    items = ctx.forget if items is None else items
    jobs = [(it.question, [it.answer]) for it in items]
    return [-s[0].avg_nll for s in score_answers(model, fmt, jobs, minkpp=False)]


@AUDITS.register("forget_loglik", headline="mean_logprob", view=6)
class ForgetLoglik(View):
    """Mean length-normalised log-likelihood of the true forget answers; share of items more likely than under full."""

    name = "forget_loglik"
    metrics = {
        "mean_logprob": {"kind": "mean", "field": "logprob", "format": "number"},
        "frac_up_vs_full": {"kind": "mean", "field": "up_vs_full", "format": "percent"},
    }
    headline = "mean_logprob"

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        return [{**item_base(i, it), "logprob": lp} for i, (it, lp) in enumerate(zip(ctx.forget, answer_logprobs(ctx, role)))]

    def finalize(self, ctx, by_role) -> None:
        full = by_role.get("full")
        for role, items in by_role.items():
            for k, it in enumerate(items):
                ref = full[k]["logprob"] if full and role != "full" else None
                it["full_logprob"] = ref
                it["up_vs_full"] = None if ref is None else int(it["logprob"] > ref)
