"""View 1: greedy answers to the forget questions, judged for facts of the true answer the prompt did not give."""

from __future__ import annotations

from ..registry import AUDITS
from .core import AuditContext, View, item_base
from .judge import judge

LEAK_METRICS = {
    "question_leak": {"kind": "mean", "field": "leak", "format": "percent"},
    "unit_leak": {"kind": "ratio", "num": "leaked_units", "den": "eligible_units", "format": "percent"},
}


@AUDITS.register("novel_recall_leak", headline="question_leak", leak=True, view=1)
class NovelRecallLeak(View):
    """Greedy answers to the forget questions: share of questions (and of eligible fact units) that leak."""

    name = "novel_recall_leak"
    metrics = LEAK_METRICS
    headline = "question_leak"
    leak = True

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        _, _, fmt = ctx.slots[role].get()
        prompts = [fmt.prompt_text(it.question) for it in ctx.forget]
        gens = ctx.greedy(role, prompts, [it.question for it in ctx.forget])
        out = []
        for i, (it, p, g) in enumerate(zip(ctx.forget, prompts, gens)):
            out.append({**item_base(i, it), "prompt": p, "generation": g, **judge(it.answer, g, p).record()})
        return out
