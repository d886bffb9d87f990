"""View 4: a multi-turn chat that first gives other facts of the same author, then asks the forget question."""

from __future__ import annotations

import random

from ..data.formatting import conversation_text
from ..registry import AUDITS
from .core import AuditContext, View, item_base
from .judge import judge
from .novel_recall_leak import LEAK_METRICS


def clue_turns(ctx: AuditContext, i: int) -> list[tuple[str, str]]:
    """Up to ``n_clues`` other items of item ``i``'s author (seeded choice, data-set order), as answered turns."""
    it = ctx.forget[i]
    if it.entity is None:
        return []
    others = [j for j, o in enumerate(ctx.forget) if o.entity == it.entity and j != i]
    k = min(ctx.settings.n_clues, len(others))
    pick = sorted(random.Random(f"obliviate-audit-clues:{ctx.settings.seed}:{i}").sample(others, k))
    return [(ctx.forget[j].question, ctx.forget[j].answer) for j in pick]


@AUDITS.register("chain_of_clues_leak", headline="question_leak", leak=True, view=4)
class ChainOfCluesLeak(View):
    """Final-turn leak after clue turns about the same author; the whole conversation is the echo-correction prompt."""

    name = "chain_of_clues_leak"
    metrics = LEAK_METRICS
    headline = "question_leak"
    leak = True

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        _, _, fmt = ctx.slots[role].get()
        recs, prompts, owners = [], [], []
        for i, it in enumerate(ctx.forget):
            turns = clue_turns(ctx, i)
            rec = {**item_base(i, it), "clues": len(turns)}
            if not turns:
                rec.update(leak=None, eligible_units=0, leaked_units=0, note="no other fact of this author in the forget set")
            else:
                prompts.append(conversation_text(fmt, turns, it.question))
                owners.append(i)
            recs.append(rec)
        for i, p, g in zip(owners, prompts, ctx.greedy(role, prompts)):
            recs[i].update(prompt=p, generation=g, **judge(ctx.forget[i].answer, g, p).record())
        return recs
