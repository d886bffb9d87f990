"""MUSE metrics (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation", arXiv 2407.06460).

- VerbMem  = mean_i ROUGE-L(greedy 128-token continuation of prompt_i, gt_i truncated to 128 tokens)
- KnowMem  = mean_i ROUGE-L(greedy answer to question_i after 10 in-context QA pairs, answer_i)
- PrivLeak = (AUC_retrain - AUC_model) / (1 - AUC_retrain) x 100 on Min-K% (k = 0.4) AUCs in our
  orientation (see ``mia.privleak``), = MUSE's (AUC_M - AUC_M,retrain) / AUC_M,retrain x 100.

Which ROUGE-L. MUSE's reference code scores with ``RougeScorer(["rouge1", "rouge2", "rougeL",
"rougeLsum"], use_stemmer=False)`` and logs ``rougeL`` = the F-measure next to ``rougeL_recall``; its
``eval.py`` aggregates ``verbmem_agg_key = knowmem_agg_key = "mean_rougeL"``, i.e. **ROUGE-L F1,
unstemmed**, for both (muse_bench ``eval.py``; the authors' ``verbmem/get_rouge.py`` and
``knowmem/get_rouge_qa.py``, default ``--metric mean_rougeL``). open-unlearning configures both
``forget_verbmem_ROUGE`` and ``forget_knowmem_ROUGE`` with ``rouge_type: rougeL_f1`` but with its stemmed
scorer. We follow MUSE: F1, no stemming, by default; ``variant="recall"`` and ``use_stemmer=True`` are
available for comparisons. MUSE reports x100; we report fractions in [0, 1] (PrivLeak is a percentage
in both).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..registry import METRICS
from .mia import MIN_K_DEFAULT, PRIVLEAK_UNDEFINED, mia_auc, privleak, record_score
from .rouge import rouge_scores

__all__ = [
    "MUSE_RETRAIN_AUC",
    "MUSE_RETRAIN_AUC_MUSE_ORIENTATION",
    "verbmem",
    "knowmem",
    "muse_summary",
]

# MUSE's hard-coded AUCs of the retrained models, key "forget_holdout_Min-40%" of AUC_RETRAIN in
# muse_bench constants.py, in MUSE's orientation (a memorising model ~ 0) ...
MUSE_RETRAIN_AUC_MUSE_ORIENTATION = {"news": 0.4772, "books": 0.5393}
# ... and in ours (forget = 0, holdout = 1; a memorising model ~ 1): 1 - AUC_MUSE.
MUSE_RETRAIN_AUC = {k: 1.0 - v for k, v in MUSE_RETRAIN_AUC_MUSE_ORIENTATION.items()}

_VARIANTS = {"f1": "rougeL_f1", "recall": "rougeL_recall"}


def _mean_rougeL(generations: Sequence[str], references: Sequence[str], variant: str, use_stemmer: bool) -> float:
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {sorted(_VARIANTS)}, got {variant!r}")
    gens, refs = list(generations), list(references)
    if len(gens) != len(refs):
        raise ValueError(f"got {len(gens)} generations for {len(refs)} references")
    if not gens:
        raise ValueError("need at least one generation")
    key = _VARIANTS[variant]
    return float(np.mean([rouge_scores(g, r, use_stemmer=use_stemmer)[key] for g, r in zip(gens, refs)]))


def verbmem(generations: Sequence[str], ground_truths: Sequence[str], *, variant: str = "f1",
            use_stemmer: bool = False) -> float:
    """VerbMem = (1/N) sum_i ROUGE-L_F1(gt_i, generation_i) (MUSE: F1, unstemmed).

    ``generations``: the model's greedy continuations of the forget prompts (without the prompt);
    ``ground_truths``: the true continuations, truncated to the same 128 tokens by the caller.
    """
    return _mean_rougeL(generations, ground_truths, variant, use_stemmer)


def knowmem(generations: Sequence[str], answers: Sequence[str], *, variant: str = "f1",
            use_stemmer: bool = False) -> float:
    """KnowMem = (1/N) sum_i ROUGE-L_F1(answer_i, generation_i) (MUSE: F1, unstemmed).

    ``generations``: greedy answers already cut at the first "\\n\\n" / "\\nQuestion" / "Question:".
    MUSE reports KnowMem on the forget QA (knowmem_f, lower = more forgotten) and on the retain QA
    (knowmem_r, higher = utility kept).
    """
    return _mean_rougeL(generations, answers, variant, use_stemmer)


def _gen_pairs(records: Sequence[Mapping], what: str):
    gens, refs = [], []
    for i, r in enumerate(records):
        g = r.get("generation")
        ref = r.get("answer") if r.get("answer") is not None else r.get("gt")
        if g is None or ref is None:
            return None, f"{what}: item {i} lacks generation or answer"
        gens.append(g)
        refs.append(ref)
    return (gens, refs), None


def muse_summary(
    *,
    verbmem_records: Sequence[Mapping] | None = None,
    knowmem_forget_records: Sequence[Mapping] | None = None,
    knowmem_retain_records: Sequence[Mapping] | None = None,
    privleak_forget_records: Sequence[Mapping] | None = None,
    privleak_holdout_records: Sequence[Mapping] | None = None,
    retrain_auc: float | None = None,
    corpus: str | None = None,
    variant: str = "f1",
    use_stemmer: bool = False,
    k: float = MIN_K_DEFAULT,
    min_k_count: str = "ceil",
) -> dict:
    """MUSE's four numbers, under MUSE's own key names, from per-item records.

    - ``verbmem_f`` from ``verbmem_records`` (``generation`` and ``answer`` = the gt continuation);
    - ``knowmem_f`` / ``knowmem_r`` from the knowmem records (``generation``, ``answer``);
    - ``privleak_auc`` (= mia_min_k, our orientation) from the privleak forget / holdout records
      (``token_logprobs``), and ``privleak`` against ``retrain_auc`` (our orientation), or MUSE's
      hard-coded retrained AUC of ``corpus`` ("news" or "books") converted to our orientation.
      ``min_k_count``: the Min-K% count rule (MUSE's privleak.py:44 is ``int(T * k)``: ``"floor"``).

    Every key is present; None with the reason in ``missing`` when its inputs are absent.
    """
    out: dict = {}
    missing: dict = {}

    def rouge_metric(key, records, fn):
        if not records:
            out[key], missing[key] = None, "no records"
            return
        pairs, why = _gen_pairs(records, key)
        if pairs is None:
            out[key], missing[key] = None, why
            return
        out[key] = fn(*pairs, variant=variant, use_stemmer=use_stemmer)

    rouge_metric("verbmem_f", verbmem_records, verbmem)
    rouge_metric("knowmem_f", knowmem_forget_records, knowmem)
    rouge_metric("knowmem_r", knowmem_retain_records, knowmem)

    auc = None
    if not privleak_forget_records or not privleak_holdout_records:
        missing["privleak_auc"] = "needs privleak forget and holdout records"
    else:
        fs = [record_score(r, "min_k", k, count=min_k_count) for r in privleak_forget_records]
        hs = [record_score(r, "min_k", k, count=min_k_count) for r in privleak_holdout_records]
        if any(s is None for s in fs + hs):
            missing["privleak_auc"] = "some privleak records lack token_logprobs"
        else:
            auc = mia_auc(fs, hs)
    out["privleak_auc"] = auc

    ref = retrain_auc
    if ref is None and corpus is not None:
        if corpus not in MUSE_RETRAIN_AUC:
            raise ValueError(f"corpus must be one of {sorted(MUSE_RETRAIN_AUC)}, got {corpus!r}")
        ref = MUSE_RETRAIN_AUC[corpus]
    if auc is None:
        out["privleak"] = None
        missing["privleak"] = "privleak_auc is None"
    elif ref is None:
        out["privleak"] = None
        missing["privleak"] = "needs the retrained model's AUC: retrain_auc=... or corpus='news'|'books'"
    elif float(ref) == 1.0:
        out["privleak"] = None
        missing["privleak"] = PRIVLEAK_UNDEFINED
    else:
        out["privleak"] = privleak(auc, ref)
    out["missing"] = missing
    return out


_MUSE = dict(paper="Shi et al. 2024, MUSE", arxiv="2407.06460")
METRICS.register(
    "verbmem", higher_is_better=False, sets=("verbmem_forget",), keys=("verbmem_f",),
    aggregation="mean ROUGE-L F1 (unstemmed, as MUSE) of the 128-token greedy continuation vs the true one",
    description="MUSE VerbMem: verbatim regurgitation of the forget texts (lower = more forgotten)",
    **_MUSE,
)(verbmem)
METRICS.register(
    "knowmem", higher_is_better=None, sets=("knowmem_forget", "knowmem_retain"), keys=("knowmem_f", "knowmem_r"),
    aggregation="mean ROUGE-L F1 (unstemmed, as MUSE) of the few-shot greedy answer vs the answer",
    description="MUSE KnowMem: QA about the forget set (knowmem_f, lower better) / retain set (knowmem_r, higher better)",
    **_MUSE,
)(knowmem)
