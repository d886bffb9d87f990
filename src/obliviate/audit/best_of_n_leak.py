"""View 3: n sampled answers per forget question; leak@k by the unbiased pass@k estimator."""

from __future__ import annotations

from ..registry import AUDITS
from .core import AuditContext, View, item_base
from .judge import judge
from .sampling import sample
from .stats import pass_at_k


@AUDITS.register("best_of_n_leak", headline="prompt_leak", leak=True, view=3)
class BestOfNLeak(View):
    """n sampled answers per forget question: leak@1, leak@4 (unbiased pass@k) and prompt-level leak (any of n)."""

    name = "best_of_n_leak"
    metrics = {
        "leak_at_1": {"kind": "mean", "field": "leak_at_1", "format": "percent"},
        "leak_at_4": {"kind": "mean", "field": "leak_at_4", "format": "percent"},
        "prompt_leak": {"kind": "mean", "field": "prompt_leak", "format": "percent"},
    }
    headline = "prompt_leak"
    leak = True

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        model, tok, fmt = ctx.slots[role].get()
        s = ctx.settings
        prompts = [fmt.prompt_text(it.question) for it in ctx.forget]
        samples = sample(model, tok, prompts, s.n_samples, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                         top_p=s.top_p, seed=s.seed, memory_gb=s.sample_memory_gb)
        out = []
        for i, (it, p, texts) in enumerate(zip(ctx.forget, prompts, samples)):
            verdicts = [judge(it.answer, t, p) for t in texts]
            rec = {**item_base(i, it), "prompt": p, "samples": texts, "n": len(texts),
                   "sample_leaks": [v.leak for v in verdicts], "eligible_units": verdicts[0].eligible}
            if verdicts[0].eligible:  # eligibility depends on the answer and the prompt only
                c = sum(v.leak for v in verdicts)
                rec.update(leaks=c, leak_at_1=pass_at_k(len(texts), c, 1),
                           leak_at_4=pass_at_k(len(texts), c, 4) if len(texts) >= 4 else None,
                           prompt_leak=int(c > 0))
            else:
                rec.update(leaks=None, leak_at_1=None, leak_at_4=None, prompt_leak=None)
            out.append(rec)
        return out
