"""TOFU metrics (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121).

Pure functions of the per-item records (see ``docs/metrics.md`` for the record contract). Notation:
A = mean NLL over the answer tokens incl. EOS (``avg_nll``); p_norm = exp(-A).

Per item
- truth ratio   tr = p_w / p_c, p_w = exp(-mean_j A(perturbed_j)) (geometric mean of the perturbed
  answers' p_norm), p_c = p_norm(paraphrased answer) on forget/retain, p_norm(answer) on real
  authors/world facts. Computed as exp(A_c - mean_j A_j).
- normalised probability (real authors, world facts) p_c / (p_c + sum_j p_j), all length-normalised.

Aggregates (open-unlearning's key names)
- ``<set>_Q_A_Prob`` mean_i p_norm(answer_i); ``<set>_Q_A_PARA_Prob`` mean_i p_norm(paraphrased_i);
  ``<set>_Q_A_PERT_Prob`` mean_i mean_j p_norm(perturbed_ij) (arithmetic mean over j, as
  open-unlearning aggregates its per-item probability lists).
- ``<set>_Q_A_ROUGE`` mean ROUGE-L recall of the greedy answer.
- ``forget_truth_ratio`` mean min(tr, 1/tr) (1 = paraphrased and perturbed answers equally likely);
  ``forget_Truth_Ratio_prob_mean`` mean p_c / (p_c + p_w) = mean 1 / (1 + tr).
- ``retain_Truth_Ratio``, ``ra_Truth_Ratio``, ``wf_Truth_Ratio`` mean max(0, 1 - tr).
- ``model_utility`` harmonic mean of the 9 values retain_Q_A_Prob, retain_Q_A_ROUGE,
  retain_Truth_Ratio, ra_Q_A_Prob_normalised, ra_Q_A_ROUGE, ra_Truth_Ratio, wf_Q_A_Prob_normalised,
  wf_Q_A_ROUGE, wf_Truth_Ratio (TOFU's aggregate_eval_stat.py and open-unlearning's model_utility config:
  the real-author / world-fact probability entering MU is the normalised one).
- ``forget_quality`` p-value of scipy.stats.ks_2samp(tr_model_forget, tr_retain_model_forget).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import ObliviateError
from ..registry import METRICS
from .memorization import record_memorization
from .mia import PRIVLEAK_UNDEFINED, mia_summary, privleak
from .rouge import rouge_scores

__all__ = [
    "SETS",
    "SET_PREFIX",
    "MODEL_UTILITY_KEYS",
    "truth_ratio",
    "log_truth_ratio",
    "record_truth_ratio",
    "length_normalised_probability",
    "normalised_probability",
    "truth_ratio_closer_to_1",
    "truth_ratio_true_better",
    "truth_ratio_prob_mean",
    "forget_quality",
    "model_utility",
    "annotate_records",
    "tofu_summary",
]

SETS = ("forget", "retain", "real_authors", "world_facts", "holdout")
SET_PREFIX = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}
MODEL_UTILITY_KEYS = (
    "retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio",
)
RETAIN_EVAL_HINT = (
    "needs the retain model's records of the same forget items: pass --retain-eval PATH "
    "(the items.jsonl of the retain model's evaluation; --retain-logs for --from-logs)"
)


# --------------------------------------------------------------------------------------- per item
def log_truth_ratio(correct_avg_nll: float, perturbed_avg_nll: Sequence[float]) -> float:
    """log tr = A_c - mean_j A_j (log p_w - log p_c with p_w the geometric mean of the perturbed p_norm)."""
    pert = [float(a) for a in perturbed_avg_nll]
    if not pert:
        raise ValueError("truth ratio needs at least one perturbed answer")
    return float(correct_avg_nll) - float(np.mean(pert))


def truth_ratio(correct_avg_nll: float, perturbed_avg_nll: Sequence[float]) -> float:
    """tr = p_w / p_c with p_w = exp(-mean_j A_j), p_c = exp(-A_c); i.e. tr = exp(A_c - mean_j A_j).

    ``correct_avg_nll`` is the paraphrased answer's A on forget/retain and the answer's A on real
    authors/world facts. Example: A_c = 1.0, perturbed [2.0, 3.0] -> exp(-2.5) / exp(-1.0).
    tr < 1: the model prefers the correct answer; tr ~ 1: it cannot tell them apart.
    """
    return math.exp(log_truth_ratio(correct_avg_nll, perturbed_avg_nll))


def _correct_nll(record: Mapping) -> float | None:
    """A_c of the truth ratio for this record's set.

    forget/retain: the paraphrased answer. real_authors/world_facts: the answer -- but a
    ``paraphrased_avg_nll`` on those sets is used when present: TOFU's own configuration sets the
    "paraphrased answer" key to the answer for these sets, so that field *is* the answer, scored in a
    separate pass (in the original TOFU logs it differs from avg_gt_loss on 2 of 100 real-author
    items by up to 0.05 nats, from batch padding). Using it reproduces TOFU's logged numbers exactly;
    our own engine leaves it None there, so the answer's A is used.
    """
    para = record.get("paraphrased_avg_nll")
    if record.get("set") in ("real_authors", "world_facts"):
        return float(para) if para is not None else _opt_float(record.get("avg_nll"))
    return None if para is None else float(para)


def record_truth_ratio(record: Mapping) -> float | None:
    """log tr of one record, from its NLLs; else from a ``truth_ratio`` already on it; else None."""
    c = _correct_nll(record)
    pert = record.get("perturbed_avg_nll") or []
    if c is not None and len(pert) > 0:
        return log_truth_ratio(c, pert)
    tr = record.get("truth_ratio")
    if tr is not None:
        with np.errstate(divide="ignore"):
            return float(np.log(float(tr)))
    return None


def length_normalised_probability(avg_nll: float) -> float:
    """p_norm(y|x) = exp(-A(y|x)), A = mean NLL over the answer tokens incl. EOS."""
    return math.exp(-float(avg_nll))


def normalised_probability(avg_nll: float, perturbed_avg_nll: Sequence[float]) -> float:
    """p_c / (p_c + sum_j p_j) with p = exp(-A), computed as 1 / (1 + sum_j exp(A_c - A_j)).

    TOFU's probability for real authors / world facts (open-unlearning adds 1e-10 to the
    denominator; we do not need it in this form).
    """
    pert = np.asarray(perturbed_avg_nll, dtype=float)
    if pert.size == 0:
        raise ValueError("normalised probability needs at least one perturbed answer")
    with np.errstate(over="ignore"):
        return float(1.0 / (1.0 + np.exp(float(avg_nll) - pert).sum()))


# ------------------------------------------------------------------------------------- aggregates
def truth_ratio_closer_to_1(truth_ratios: Iterable[float]) -> float:
    """Forget-set truth ratio: mean_i min(tr_i, 1/tr_i) (open-unlearning's ``closer_to_1_better``)."""
    with np.errstate(divide="ignore"):
        d = np.log(np.asarray(list(truth_ratios), dtype=float))
    return float(np.mean(np.exp(-np.abs(d))))


def truth_ratio_true_better(truth_ratios: Iterable[float]) -> float:
    """Retain / real-author / world-fact truth ratio: mean_i max(0, 1 - tr_i)."""
    tr = np.asarray(list(truth_ratios), dtype=float)
    return float(np.mean(np.maximum(0.0, 1.0 - tr)))


def truth_ratio_prob_mean(truth_ratios: Iterable[float]) -> float:
    """mean_i p_c / (p_c + p_w) = mean_i 1 / (1 + tr_i) (open-unlearning's ``prob_mean`` aggregator)."""
    tr = np.asarray(list(truth_ratios), dtype=float)
    return float(np.mean(1.0 / (1.0 + tr)))


def forget_quality(tr_model: Sequence[float], tr_retain: Sequence[float]) -> tuple[float, float]:
    """(p-value, KS statistic) of the two-sided ``scipy.stats.ks_2samp(tr_model, tr_retain)``.

    ``tr_model``: truth ratios of the evaluated model on the forget items; ``tr_retain``: those of the
    retain model (never trained on them) on the same items. High p-value = indistinguishable from
    the retain model. TOFU passes 1/tr and open-unlearning 1/(tr + 1e-10); the KS test depends only on
    the ordering of the pooled sample, which a monotone map preserves, so all three agree.
    Identical samples -> (1.0, 0.0).
    """
    from scipy.stats import ks_2samp

    a = np.asarray(tr_model, dtype=float)
    b = np.asarray(tr_retain, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("forget_quality needs at least one truth ratio on each side")
    res = ks_2samp(a, b)
    return float(res.pvalue), float(res.statistic)


def model_utility(values: Sequence[float] | Mapping[str, float]) -> float:
    """scipy.stats.hmean(values): n / sum_i (1 / v_i); 0 if any value is 0 (TOFU uses 9 values).

    A mapping is reduced to its values. Values must be >= 0 and not None.
    """
    from scipy.stats import hmean

    vals = list(values.values()) if isinstance(values, Mapping) else list(values)
    if not vals:
        raise ValueError("model_utility needs at least one value")
    if any(v is None for v in vals):
        raise ValueError("model_utility got a None value")
    arr = np.asarray(vals, dtype=float)
    if np.any(arr < 0) or np.any(np.isnan(arr)):
        raise ValueError(f"model_utility needs values >= 0, got {vals}")
    if np.any(arr == 0):
        return 0.0
    return float(hmean(arr))


# ------------------------------------------------------------------------------------- records
def annotate_records(records: list[dict]) -> list[dict]:
    """Fill the derived per-item fields **in place** and return ``records``.

    - ``truth_ratio`` (float) where the NLLs allow it (recomputed from the NLLs if already present);
    - ``rouge1_recall``, ``rougeL_recall``, ``rougeL_f1`` where missing and ``generation`` and
      ``answer`` are present (rouge-score, stemmed, ground truth = ``answer``).
    """
    for r in records:
        if r.get("set") in SET_PREFIX:
            d = record_truth_ratio(r)
            if d is not None:
                r["truth_ratio"] = _exp(d)
        if r.get("rougeL_recall") is None and r.get("generation") is not None and r.get("answer") is not None:
            r.update(rouge_scores(r["generation"], r["answer"]))
    return records


def _opt_float(x):
    return None if x is None else float(x)


def _by_set(records: Sequence[Mapping], what: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ObliviateError(f"{what}: item {i} is a {type(r).__name__}, expected an object")
        s = r.get("set")
        if s is None:
            raise ObliviateError(f"{what}: item {i} has no 'set' field; valid sets: {', '.join(SETS)}")
        out.setdefault(s, []).append(r)
    return out


def _mean_of(items: Sequence[Mapping], fn, need: str):
    """(mean, None) if every item yields a value, else (None, reason)."""
    vals = [fn(r) for r in items]
    n_missing = sum(v is None for v in vals)
    if n_missing:
        return None, f"{n_missing} of {len(vals)} items lack {need}"
    return float(np.mean(vals)), None


def _item_key(r: Mapping):
    return (r.get("index"), r.get("question"))


def _forget_truth_ratios(items: Sequence[Mapping], who: str) -> dict:
    out: dict = {}
    for r in items:
        key = _item_key(r)
        if key in out:
            raise ObliviateError(
                f"{who}: forget item (index={key[0]!r}, question={key[1]!r}) appears twice; "
                "each (index, question) must be unique"
            )
        out[key] = record_truth_ratio(r)
    return out


def _sort_key(k):
    idx, q = k
    return (0, idx, "") if isinstance(idx, int) else (1, 0, str(idx)), str(q)


def _match_forget(model_tr: dict, retain_tr: dict) -> list:
    """The common (index, question) keys, sorted; ObliviateError naming the first mismatch otherwise."""
    if model_tr.keys() == retain_tr.keys():
        return sorted(model_tr, key=_sort_key)
    only_model = sorted((k for k in model_tr if k not in retain_tr), key=_sort_key)
    only_retain = sorted((k for k in retain_tr if k not in model_tr), key=_sort_key)
    if only_model:
        k, where, other = only_model[0], "the evaluated records", "the retain-model records"
    else:
        k, where, other = only_retain[0], "the retain-model records", "the evaluated records"
    raise ObliviateError(
        f"forget item (index={k[0]!r}, question={k[1]!r}) is in {where} but not in {other} "
        f"({len(only_model)} forget items only in the evaluated records, {len(only_retain)} only in the "
        "retain-model records); forget quality compares the two models on the same forget items"
    )


def check_retain_forget_items(forget_items: Sequence, retain_records: Sequence[Mapping]) -> None:
    """Before an evaluation runs: the retain model's records hold exactly the forget items (anything with a
    ``question``, in evaluation order: their records' ``(index, question)`` keys) that :func:`tofu_summary`
    will compare with, or the ``ObliviateError`` it would raise at the end."""
    forget_keys = [(i, it.question) for i, it in enumerate(forget_items)]
    retain_by_set = _by_set(list(retain_records), "retain-model records")
    if not retain_by_set.get("forget"):
        raise ObliviateError("the retain-model records hold no items of set 'forget'; forget quality needs the "
                             "retain model evaluated on the same forget items")
    theirs = _forget_truth_ratios(retain_by_set["forget"], "retain-model records")
    _match_forget(dict.fromkeys(forget_keys), theirs)


def _exp(d: float) -> float:
    return math.inf if d > 709.0 else math.exp(d)


def tofu_summary(
    records: Sequence[Mapping],
    retain_records: Sequence[Mapping] | None = None,
    *,
    retain_mia_auc: float | None = None,
    min_k_count: str = "ceil",
    es_floor: bool = False,
) -> dict:
    """All TOFU, memorisation and MIA aggregates of one model's per-item records.

    ``retain_records``: the *retain model's* records (at least its forget set; its holdout set too for
    PrivLeak), matched to ``records`` by (index, question) -- an ``ObliviateError`` names the first
    item in one set and not the other. ``retain_mia_auc`` (our AUC orientation) replaces the retain
    model's Min-K AUC for PrivLeak when its records are not at hand. ``min_k_count`` and ``es_floor`` are
    the protocol's definition choices (:mod:`obliviate.protocols`; defaults: obliviate's).

    The input is not modified (derived fields are computed on copies; call ``annotate_records`` to
    fill them in place). Returns a flat dict whose every metric key is always present: a float, or
    None when its inputs are absent, with the reason in ``summary["missing"][key]``. Two non-metric
    keys: ``n_items`` ({set: count}) and ``missing``. Key order is fixed (see docs/metrics.md).
    """
    recs = annotate_records([dict(r) for r in records])
    by_set = _by_set(recs, "records")
    out: dict = {}
    missing: dict[str, str] = {}

    def put(key, value, reason=None):
        out[key] = value
        if value is None:
            missing[key] = reason or "inputs absent"

    def p_norm(field):
        return lambda r: None if r.get(field) is None else length_normalised_probability(r[field])

    def pert_prob(r):
        pert = r.get("perturbed_avg_nll") or []
        return float(np.mean(np.exp(-np.asarray(pert, dtype=float)))) if len(pert) else None

    def rouge(r):
        return _opt_float(r.get("rougeL_recall"))

    trs: dict[str, list | None] = {}
    for set_name, prefix in SET_PREFIX.items():
        items = by_set.get(set_name, [])
        absent = f"no records of set {set_name!r}"
        if not items:
            keys = [f"{prefix}_Q_A_Prob"]
            keys += [f"{prefix}_Q_A_Prob_normalised"] if prefix in ("ra", "wf") else [f"{prefix}_Q_A_PARA_Prob"]
            keys += [f"{prefix}_Q_A_PERT_Prob", f"{prefix}_Q_A_ROUGE"]
            keys += ["forget_truth_ratio", "forget_Truth_Ratio_prob_mean"] if prefix == "forget" else [f"{prefix}_Truth_Ratio"]
            for k in keys:
                put(k, None, absent)
            trs[set_name] = None
            continue

        put(f"{prefix}_Q_A_Prob", *_mean_of(items, p_norm("avg_nll"), "avg_nll"))
        if prefix in ("ra", "wf"):
            put(
                f"{prefix}_Q_A_Prob_normalised",
                *_mean_of(
                    items,
                    lambda r: None if r.get("avg_nll") is None or not r.get("perturbed_avg_nll")
                    else normalised_probability(r["avg_nll"], r["perturbed_avg_nll"]),
                    "avg_nll and perturbed_avg_nll",
                ),
            )
        else:
            put(f"{prefix}_Q_A_PARA_Prob", *_mean_of(items, p_norm("paraphrased_avg_nll"), "paraphrased_avg_nll"))
        put(f"{prefix}_Q_A_PERT_Prob", *_mean_of(items, pert_prob, "perturbed_avg_nll"))
        put(f"{prefix}_Q_A_ROUGE", *_mean_of(items, rouge, "a generation (rougeL_recall)"))

        d = [record_truth_ratio(r) for r in items]
        n_missing = sum(x is None for x in d)
        need = "paraphrased_avg_nll and perturbed_avg_nll" if prefix in ("forget", "retain") else "perturbed_avg_nll"
        reason = f"{n_missing} of {len(d)} items lack {need} (or a truth_ratio)"
        if n_missing:
            trs[set_name] = None
        else:
            trs[set_name] = [_exp(x) for x in d]
        t = trs[set_name]
        if prefix == "forget":
            put("forget_truth_ratio", None if t is None else truth_ratio_closer_to_1(t), reason)
            put("forget_Truth_Ratio_prob_mean", None if t is None else truth_ratio_prob_mean(t), reason)
        else:
            put(f"{prefix}_Truth_Ratio", None if t is None else truth_ratio_true_better(t), reason)

    # model utility
    absent_mu = [k for k in MODEL_UTILITY_KEYS if out.get(k) is None]
    if absent_mu:
        put("model_utility", None, f"needs all of {', '.join(MODEL_UTILITY_KEYS)}; None: {', '.join(absent_mu)}")
    else:
        put("model_utility", model_utility([out[k] for k in MODEL_UTILITY_KEYS]))

    # forget quality
    forget_items = by_set.get("forget", [])
    if retain_records is None:
        put("forget_quality", None, RETAIN_EVAL_HINT)
        put("forget_quality_ks_statistic", None, RETAIN_EVAL_HINT)
        retain_by_set: dict = {}
    else:
        retain_by_set = _by_set(list(retain_records), "retain-model records")
        if not forget_items:
            put("forget_quality", None, "no records of set 'forget'")
            put("forget_quality_ks_statistic", None, "no records of set 'forget'")
        else:
            if not retain_by_set.get("forget"):
                raise ObliviateError(
                    "the retain-model records hold no items of set 'forget'; forget quality needs the "
                    "retain model evaluated on the same forget items"
                )
            m = _forget_truth_ratios(forget_items, "records")
            r = _forget_truth_ratios(retain_by_set["forget"], "retain-model records")
            keys = _match_forget(m, r)
            nm = sum(m[k] is None for k in keys)
            nr = sum(r[k] is None for k in keys)
            if nm or nr:
                why = (f"{nm} evaluated and {nr} retain-model forget items lack "
                       "paraphrased_avg_nll and perturbed_avg_nll (or a truth_ratio)")
                put("forget_quality", None, why)
                put("forget_quality_ks_statistic", None, why)
            else:
                pv, ks = forget_quality([_exp(m[k]) for k in keys], [_exp(r[k]) for k in keys])
                put("forget_quality", pv)
                put("forget_quality_ks_statistic", ks)

    # memorisation on the forget set
    for which in ("extraction_strength", "exact_memorization"):
        if not forget_items:
            put(which, None, "no records of set 'forget'")
        else:
            put(which, *_mean_of(forget_items, lambda r, w=which: record_memorization(r, w, es_floor=es_floor),
                                 "argmax_hits (or a per-item value)"))

    # membership inference: forget vs holdout
    mia_vals, mia_missing = mia_summary(forget_items, by_set.get("holdout", []), min_k_count=min_k_count)
    for k, v in mia_vals.items():
        put(k, v, mia_missing.get(k))

    # PrivLeak vs the retain model's Min-K AUC
    auc_retrain, why = retain_mia_auc, None
    if auc_retrain is None:
        if retain_records is None:
            why = ("needs the retain model's mia_min_k AUC: pass --retain-eval PATH (its forget and holdout "
                   "records; --retain-logs for --from-logs)")
        else:
            rv, rm = mia_summary(retain_by_set.get("forget", []), retain_by_set.get("holdout", []),
                                 min_k_count=min_k_count)
            auc_retrain = rv["mia_min_k"]
            if auc_retrain is None:
                why = "retain-model records: " + rm["mia_min_k"]
    if out["mia_min_k"] is None:
        put("privleak", None, "mia_min_k is None: " + missing["mia_min_k"])
    elif auc_retrain is None:
        put("privleak", None, why)
    elif float(auc_retrain) == 1.0:
        put("privleak", None, PRIVLEAK_UNDEFINED)
    else:
        put("privleak", privleak(out["mia_min_k"], auc_retrain))

    out["n_items"] = {s: len(v) for s, v in by_set.items()}
    out["missing"] = missing
    return out


# --------------------------------------------------------------------------------------- registry
_TOFU = dict(paper="Maini et al. 2024, TOFU", arxiv="2401.06121")

METRICS.register(
    "probability", higher_is_better=None, sets=("forget", "retain", "real_authors", "world_facts"),
    aggregation="mean over items of exp(-avg NLL); PERT: mean over items of the mean over perturbed answers",
    keys=("forget_Q_A_Prob", "forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob", "retain_Q_A_Prob",
          "retain_Q_A_PARA_Prob", "retain_Q_A_PERT_Prob", "ra_Q_A_Prob", "ra_Q_A_PERT_Prob",
          "wf_Q_A_Prob", "wf_Q_A_PERT_Prob"),
    description="Length-normalised answer probability (forget: lower = more forgotten; retain: higher = better)",
    **_TOFU,
)(length_normalised_probability)
METRICS.register(
    "probability_normalised", higher_is_better=True, sets=("real_authors", "world_facts"),
    aggregation="mean over items of p_c / (p_c + sum_j p_j)", keys=("ra_Q_A_Prob_normalised", "wf_Q_A_Prob_normalised"),
    description="Probability of the answer normalised against its perturbed answers (enters model utility)",
    **_TOFU,
)(normalised_probability)
METRICS.register(
    "rouge", higher_is_better=None, sets=("forget", "retain", "real_authors", "world_facts"),
    aggregation="mean over items of ROUGE-L recall (rouge-score, stemmed) of the greedy answer",
    keys=("forget_Q_A_ROUGE", "retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE"),
    description="ROUGE-L recall of the greedy answer vs the ground truth (forget: lower = more forgotten)",
    **_TOFU,
)(rouge_scores)
METRICS.register(
    "forget_truth_ratio", higher_is_better=True, sets=("forget",),
    aggregation="mean over forget items of min(tr, 1/tr)", keys=("forget_truth_ratio",),
    description="Forget-set truth ratio: 1 = paraphrased and perturbed answers equally likely",
    **_TOFU,
)(truth_ratio_closer_to_1)
METRICS.register(
    "forget_Truth_Ratio_prob_mean", higher_is_better=None, sets=("forget",),
    aggregation="mean over forget items of p_c / (p_c + p_w) = 1 / (1 + tr)", keys=("forget_Truth_Ratio_prob_mean",),
    description="Forget-set truth ratio as the mean probability mass on the paraphrased answer (0.5 = no preference)",
    **_TOFU,
)(truth_ratio_prob_mean)
METRICS.register(
    "truth_ratio", higher_is_better=True, sets=("retain", "real_authors", "world_facts"),
    aggregation="mean over items of max(0, 1 - tr)", keys=("retain_Truth_Ratio", "ra_Truth_Ratio", "wf_Truth_Ratio"),
    description="Truth ratio tr = p_w / p_c per item; retain/ra/wf report mean max(0, 1 - tr)",
    **_TOFU,
)(truth_ratio)
METRICS.register(
    "forget_quality", higher_is_better=True, sets=("forget",), needs_retain=True,
    aggregation="p-value of the two-sided KS test between the forget truth ratios of the model and of the retain model",
    keys=("forget_quality", "forget_quality_ks_statistic"),
    description="Forget quality: KS-test p-value, truth ratios vs the retain model's (1 = indistinguishable)",
    **_TOFU,
)(forget_quality)
METRICS.register(
    "model_utility", higher_is_better=True, sets=("retain", "real_authors", "world_facts"),
    aggregation="harmonic mean of " + ", ".join(MODEL_UTILITY_KEYS) + " (0 if any is 0)",
    keys=("model_utility",),
    description="Model utility: harmonic mean of 9 retain / real-author / world-fact values",
    **_TOFU,
)(model_utility)
