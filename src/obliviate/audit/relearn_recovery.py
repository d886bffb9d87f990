"""View 7: the relearning attack. Fine-tune on K-1 folds of the forget set (split by author), test on the held-out
fold: how much of the forgotten answers comes back, beyond what the retain model gains from the same training."""

from __future__ import annotations

import copy

from ..engine.generation import generate
from ..registry import AUDITS
from ..train import TRAIN_DTYPE, EncodedBatches, TrainConfig, nll_loss, train
from .core import AuditContext, View, item_base
from .forget_loglik import answer_logprobs
from .judge import judge


def folds(ctx: AuditContext) -> tuple[list[int], str]:
    """Fold of each forget item: authors in order of appearance, author ``a`` in fold ``a mod K``; with fewer
    authors than folds, items in fold ``i mod K`` (and the note says so)."""
    K = ctx.settings.folds
    authors = list(dict.fromkeys(it.entity for it in ctx.forget))
    if None not in authors and len(authors) >= K:
        return [authors.index(it.entity) % K for it in ctx.forget], f"{K} folds by author"
    return [i % K for i in range(len(ctx.forget))], (f"{K} folds by item: the forget set has {len(authors)} "
                                                     f"author(s), fewer than {K} folds")


@AUDITS.register("relearn_recovery", headline="recovery", leak=False, view=7)
class RelearnRecovery(View):
    """Gain in held-out answer log-likelihood (and greedy leak) after fine-tuning on the other folds, minus the retain model's."""

    name = "relearn_recovery"
    metrics = {
        "recovery": {"kind": "mean", "field": "recovery", "format": "number"},
        "gain": {"kind": "mean", "field": "gain", "format": "number"},
        "logprob_after": {"kind": "mean", "field": "logprob_after", "format": "number"},
        "leak_recovery": {"kind": "mean", "field": "leak_recovery", "format": "percent"},
        "leak_after": {"kind": "mean", "field": "leak_after", "format": "percent"},
    }
    headline = "recovery"
    roles = ("audited", "full", "retain")

    def skip_reason(self, ctx):
        if ctx.settings.folds < 2 or len(ctx.forget) < ctx.settings.folds:
            return f"needs at least {max(2, ctx.settings.folds)} forget items and --folds >= 2"
        return None

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        s = ctx.settings
        model, tok, fmt = ctx.slots[role].get()
        fold, how = folds(ctx)
        if f"relearn_recovery: {how}" not in ctx.notes:
            ctx.notes.append(f"relearn_recovery: {how}")
        before = answer_logprobs(ctx, role)
        prompts = [fmt.prompt_text(it.question) for it in ctx.forget]
        leak_before = [judge(it.answer, g, p).leak
                       for it, p, g in zip(ctx.forget, prompts, ctx.greedy(role, prompts, [it.question for it in ctx.forget]))]
        after: list[float | None] = [None] * len(ctx.forget)
        leak_after: list[int | None] = [None] * len(ctx.forget)
        for f in range(s.folds):
            train_items = [it for it, k in zip(ctx.forget, fold) if k != f]
            test_idx = [i for i, k in enumerate(fold) if k == f]
            if not train_items or not test_idx:
                continue
            m = copy.deepcopy(model).to(TRAIN_DTYPE)
            enc = [fmt.encode(it.question, it.answer) for it in train_items]
            cfg = TrainConfig(epochs=s.relearn_epochs, lr=s.relearn_lr, batch_size=s.relearn_batch_size, seed=s.seed,
                              progress=False, checkpoint_every_epoch=False)
            train(m, EncodedBatches(enc, s.relearn_batch_size, tok.pad_token_id, s.seed), nll_loss, cfg)
            m.eval()
            held = [ctx.forget[i] for i in test_idx]
            slot = ctx.slots[role]
            saved = slot._model
            slot._model = m
            try:
                lps = answer_logprobs(ctx, role, held)
            finally:
                slot._model = saved
            gens = generate(m, tok, [prompts[i] for i in test_idx], max_new_tokens=s.max_new_tokens,
                            batch_size=s.batch_size)
            for i, lp, g in zip(test_idx, lps, gens):
                after[i] = lp
                leak_after[i] = judge(ctx.forget[i].answer, g, prompts[i]).leak
            del m
        return [{**item_base(i, it), "fold": fold[i], "logprob_before": b, "logprob_after": a,
                 "gain": None if a is None else a - b, "leak_before": lb, "leak_after": la,
                 "leak_gain": None if la is None or lb is None else la - lb}
                for i, (it, b, a, lb, la) in enumerate(zip(ctx.forget, before, after, leak_before, leak_after))]

    def finalize(self, ctx, by_role) -> None:
        ret = by_role.get("retain")
        for role, items in by_role.items():
            for k, it in enumerate(items):
                rg = ret[k]["gain"] if ret else None
                it["retain_gain"] = rg
                it["recovery"] = None if it["gain"] is None or rg is None else it["gain"] - rg
                rl = ret[k]["leak_gain"] if ret else None
                it["retain_leak_gain"] = rl
                it["leak_recovery"] = None if it["leak_gain"] is None or rl is None else it["leak_gain"] - rl
