"""View 2: the same facts asked in other formats (multiple choice, fill-in-the-blank, true/false, instruction)."""

from __future__ import annotations

import random
import re

from ..engine.protocol_scoring import score_answers
from ..registry import AUDITS
from .core import AuditContext, View, item_base
from .judge import eligible_units, judge
from .stats import chance_corrected

MC_OPTIONS = 4  # the true answer and 3 perturbed answers
LETTERS = "ABCD"
BLANK = "____"


def mc_prompt(question: str, options: list[str]) -> str:
    lines = [question, "Options:"] + [f"{LETTERS[k]}. {o}" for k, o in enumerate(options)]
    return "\n".join(lines + ["Answer with the correct option."])


def tf_prompt(statement: str) -> str:
    return f"True or false? {statement}"


def instruction_prompt(question: str) -> str:
    return f"Instruction: answer in one complete sentence. Task: {question}"


def key_span(it) -> tuple[int, int] | None:
    """Character span of the answer's key fact: the data set's first target word when it has one; otherwise the
    longest fact unit of the answer that the question does not give (ties: the last), found in the answer."""
    if it.target_words:
        return it.target_words[0]["start"], it.target_words[0]["end"]
    units = eligible_units(it.answer, it.question)
    if not units:
        return None
    best = max(enumerate(units), key=lambda e: (len(e[1]), e[0]))[1]
    m = None
    for m in re.finditer(r"\W+".join(re.escape(w) for w in best), it.answer, flags=re.IGNORECASE):
        pass  # the last occurrence
    return (m.start(), m.end()) if m else None


def fitb_prompt(it) -> str | None:
    span = key_span(it)
    if span is None:
        return None
    a, b = span
    return f"Fill in the blank: {it.answer[:a]}{BLANK}{it.answer[b:]}"


@AUDITS.register("format_shift_leak", headline="format_mean", leak=True, view=2)
class FormatShiftLeak(View):
    """Leak when the forget facts are asked as multiple choice, fill-in-the-blank, true/false or an instruction."""

    name = "format_shift_leak"
    metrics = {
        "multiple_choice": {"kind": "mean", "field": "mc_leak", "format": "percent"},
        "fill_in_blank": {"kind": "mean", "field": "fitb_leak", "format": "percent"},
        "true_false": {"kind": "mean", "field": "tf_leak", "format": "percent"},
        "instruction": {"kind": "mean", "field": "instruction_leak", "format": "percent"},
        "format_mean": {"kind": "mean_of", "of": ["multiple_choice", "fill_in_blank", "true_false", "instruction"],
                        "format": "percent"},
        "format_max": {"kind": "max_of", "of": ["multiple_choice", "fill_in_blank", "true_false", "instruction"],
                       "format": "percent"},
    }
    headline = "format_mean"
    leak = True

    def run(self, ctx: AuditContext, role: str) -> list[dict]:
        model, tok, fmt = ctx.slots[role].get()
        seed = ctx.settings.seed
        recs = [item_base(i, it) for i, it in enumerate(ctx.forget)]
        # Scored formats: multiple choice (option log-likelihood) and true/false ("True" vs "False").
        jobs, where = [], []  # (prompt question, options), tokenized as the protocol says (score_answers)
        for i, it in enumerate(ctx.forget):
            rec = recs[i]
            right = it.paraphrased_answer or it.answer  # same wording as the perturbed answers
            if len(it.perturbed_answers) >= MC_OPTIONS - 1:
                opts = [right] + it.perturbed_answers[: MC_OPTIONS - 1]
                random.Random(f"obliviate-audit-mc:{seed}:{i}").shuffle(opts)
                rec.update(mc_options=opts, mc_true=opts.index(right))
                jobs.append((mc_prompt(it.question, opts), opts))
                where.append((i, "mc"))
            else:
                rec.update(mc_leak=None, mc_note=f"fewer than {MC_OPTIONS - 1} perturbed answers")
            if it.perturbed_answers:
                rec["tf_statements"] = [right, it.perturbed_answers[0]]
                for s in rec["tf_statements"]:
                    jobs.append((tf_prompt(s), ["True", "False"]))
                    where.append((i, "tf"))
            else:
                rec.update(tf_leak=None, tf_note="no perturbed answer for the false statement")
        tf_says = {}
        for (i, kind), sc in zip(where, score_answers(model, fmt, jobs, minkpp=False)):
            lp = [-s.avg_nll for s in sc]
            if kind == "mc":
                pick = max(range(len(lp)), key=lambda k: lp[k])
                correct = int(pick == recs[i]["mc_true"])
                recs[i].update(mc_logprobs=lp, mc_pick=pick, mc_correct=correct,
                               mc_leak=chance_corrected(correct, MC_OPTIONS))
            else:
                tf_says.setdefault(i, []).append(lp[0] > lp[1])
        for i, says in tf_says.items():
            correct = [int(says[0]), int(not says[1])]  # the first statement is true, the second false
            acc = sum(correct) / 2
            recs[i].update(tf_says_true=[int(s) for s in says], tf_correct=correct,
                           tf_leak=chance_corrected(acc, 2))
        # Generated formats: fill-in-the-blank and the question as an instruction, judged like novel recall.
        questions, owners = [], []
        for i, it in enumerate(ctx.forget):
            fb = fitb_prompt(it)
            if fb is None:
                recs[i].update(fitb_leak=None, fitb_note="no key span (no fact unit outside the question)")
            else:
                questions.append(fb)
                owners.append((i, "fitb"))
            questions.append(instruction_prompt(it.question))
            owners.append((i, "instruction"))
        prompts = [fmt.prompt_text(q) for q in questions]
        for (i, kind), p, g in zip(owners, prompts, ctx.greedy(role, prompts)):
            v = judge(ctx.forget[i].answer, g, p)
            recs[i].update({f"{kind}_prompt": p, f"{kind}_generation": g, f"{kind}_leak": v.leak,
                            f"{kind}_eligible_units": v.eligible, f"{kind}_leaked_units": v.leaked})
        return recs
