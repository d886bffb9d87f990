"""TOFU metrics on tiny inputs whose expected values are worked out by hand in each test."""

import copy
import math

import pytest

from obliviate.errors import ObliviateError
from obliviate.metrics import tofu
from obliviate.metrics.rouge import rouge_scores
from obliviate.metrics.tofu import (
    MODEL_UTILITY_KEYS,
    annotate_records,
    forget_quality,
    model_utility,
    normalised_probability,
    tofu_summary,
    truth_ratio,
    truth_ratio_closer_to_1,
    truth_ratio_prob_mean,
    truth_ratio_true_better,
)

e = math.exp


# ------------------------------------------------------------------------------------- per item
def test_truth_ratio_hand_value():
    # p_w = exp(-mean(2, 3)) = exp(-2.5), p_c = exp(-1.0)
    assert truth_ratio(1.0, [2.0, 3.0]) == pytest.approx(e(-2.5) / e(-1.0), rel=1e-12)
    assert truth_ratio(2.0, [2.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        truth_ratio(1.0, [])


def test_truth_ratio_aggregates_hand_values():
    trs = [0.25, 2.0, 1.0]
    assert truth_ratio_closer_to_1(trs) == pytest.approx((0.25 + 0.5 + 1.0) / 3)
    assert truth_ratio_true_better(trs) == pytest.approx((0.75 + 0.0 + 0.0) / 3)
    assert truth_ratio_prob_mean(trs) == pytest.approx((1 / 1.25 + 1 / 3 + 1 / 2) / 3)
    # tr = 0 (p_w vanishing) and tr = inf stay finite in the forget aggregate
    assert truth_ratio_closer_to_1([0.0, math.inf]) == 0.0


def test_normalised_probability_hand_value():
    # p_c / (p_c + p_1 + p_2) with p = exp(-A)
    want = e(-1.0) / (e(-1.0) + e(-2.0) + e(-3.0))
    assert normalised_probability(1.0, [2.0, 3.0]) == pytest.approx(want, rel=1e-12)


def test_model_utility_hmean_and_zero():
    assert model_utility([0.5, 1.0]) == pytest.approx(2 / (2 + 1))
    assert model_utility([1, 1, 1, 1, 1, 1, 1, 1, 0.25]) == pytest.approx(9 / (8 + 4))
    assert model_utility([0.5, 0.0, 1.0]) == 0.0
    assert model_utility({"a": 0.5, "b": 0.5}) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        model_utility([0.5, None])


def test_forget_quality_identical_and_disjoint():
    pv, ks = forget_quality([0.3, 0.7, 1.2, 2.0], [0.3, 0.7, 1.2, 2.0])
    assert pv == pytest.approx(1.0) and ks == 0.0
    # fully separated samples of 3 and 3: D = 1, exact two-sided p = 2 / C(6, 3) = 0.1
    pv, ks = forget_quality([1.0, 2.0, 3.0], [10.0, 11.0, 12.0])
    assert ks == 1.0 and pv == pytest.approx(0.1)
    # the KS test sees only the ordering: 1/tr (TOFU's form) gives the same answer
    a, b = [0.2, 0.9, 1.5, 3.0], [0.5, 0.6, 4.0, 8.0]
    assert forget_quality(a, b) == pytest.approx(forget_quality([1 / x for x in a], [1 / x for x in b]))


def test_rouge_hand_values():
    # gt: the cat sat on the mat (6 tokens); gen: the cat on the mat today again (7 tokens)
    # LCS = "the cat on the mat" = 5 -> recall 5/6, F1 = 2 * 5 / (6 + 7) = 10/13; unigram overlap 5/6
    s = rouge_scores("the cat on the mat today again", "the cat sat on the mat")
    assert s["rougeL_recall"] == pytest.approx(5 / 6)
    assert s["rougeL_f1"] == pytest.approx(10 / 13)
    assert s["rouge1_recall"] == pytest.approx(5 / 6)
    # stemming: "running dogs" vs "run dog" match only when stemmed
    assert rouge_scores("run dog", "running dogs")["rougeL_recall"] == 1.0
    assert rouge_scores("run dog", "running dogs", use_stemmer=False)["rougeL_recall"] == 0.0


# ------------------------------------------------------------------------------------- summary
def _records():
    """Two forget, two retain, one real-author, two world-fact and two holdout items."""
    return [
        dict(set="forget", index=0, question="q0", answer="alpha beta", avg_nll=0.5,
             paraphrased_avg_nll=1.0, perturbed_avg_nll=[2.0, 3.0], generation="alpha beta",
             token_logprobs=[-0.1, -0.2, -0.05], argmax_hits=[1, 1, 1]),
        dict(set="forget", index=1, question="q1", answer="delta epsilon", avg_nll=1.0,
             paraphrased_avg_nll=2.0, perturbed_avg_nll=[1.0, 1.0], generation="gamma",
             token_logprobs=[-0.3, -0.4, -0.05], argmax_hits=[0, 1, 0]),
        dict(set="retain", index=0, question="r0", answer="one two", avg_nll=0.2,
             paraphrased_avg_nll=1.0, perturbed_avg_nll=[2.0], generation="one two"),
        dict(set="retain", index=1, question="r1", answer="three four", avg_nll=0.4,
             paraphrased_avg_nll=1.0, perturbed_avg_nll=[0.5], generation="three"),
        dict(set="real_authors", index=0, question="a0", answer="Jane Austen", avg_nll=1.0,
             paraphrased_avg_nll=None, perturbed_avg_nll=[2.0, 3.0], generation="It was Jane Austen."),
        dict(set="world_facts", index=0, question="w0", answer="Paris", avg_nll=2.0,
             perturbed_avg_nll=[1.0], generation="Paris"),
        dict(set="world_facts", index=1, question="w1", answer="Nile", avg_nll=1.0,
             perturbed_avg_nll=[3.0], generation="Amazon"),
        dict(set="holdout", index=0, question="h0", answer="x", avg_nll=2.0,
             token_logprobs=[-2.0, -3.0, -0.1]),
        dict(set="holdout", index=1, question="h1", answer="y", avg_nll=0.7,
             token_logprobs=[-0.2, -0.25, -0.1]),
    ]


def test_tofu_summary_hand_values():
    recs = _records()
    before = copy.deepcopy(recs)
    s = tofu_summary(recs, retain_mia_auc=0.5)
    assert recs == before  # the input is not modified

    # forget: tr0 = exp(1.0 - 2.5), tr1 = exp(2.0 - 1.0)
    tr0, tr1 = e(-1.5), e(1.0)
    assert s["forget_Q_A_Prob"] == pytest.approx((e(-0.5) + e(-1.0)) / 2)
    assert s["forget_Q_A_PARA_Prob"] == pytest.approx((e(-1.0) + e(-2.0)) / 2)
    assert s["forget_Q_A_PERT_Prob"] == pytest.approx(((e(-2.0) + e(-3.0)) / 2 + e(-1.0)) / 2)
    assert s["forget_Q_A_ROUGE"] == pytest.approx((1.0 + 0.0) / 2)
    assert s["forget_truth_ratio"] == pytest.approx((tr0 + 1 / tr1) / 2)
    assert s["forget_Truth_Ratio_prob_mean"] == pytest.approx((1 / (1 + tr0) + 1 / (1 + tr1)) / 2)

    # retain: tr = exp(1 - 2) and exp(1 - 0.5); the second is > 1 so contributes 0
    assert s["retain_Q_A_Prob"] == pytest.approx((e(-0.2) + e(-0.4)) / 2)
    assert s["retain_Q_A_ROUGE"] == pytest.approx((1.0 + 0.5) / 2)  # "three" recalls 1 of 2 tokens
    assert s["retain_Truth_Ratio"] == pytest.approx((1 - e(-1.0) + 0.0) / 2)

    # real authors: p_c from the answer (no paraphrase); ROUGE recall 1 ("jane austen" inside)
    ra_norm = e(-1.0) / (e(-1.0) + e(-2.0) + e(-3.0))
    assert s["ra_Q_A_Prob"] == pytest.approx(e(-1.0))
    assert s["ra_Q_A_Prob_normalised"] == pytest.approx(ra_norm)
    assert s["ra_Q_A_PERT_Prob"] == pytest.approx((e(-2.0) + e(-3.0)) / 2)
    assert s["ra_Q_A_ROUGE"] == 1.0
    assert s["ra_Truth_Ratio"] == pytest.approx(1 - e(-1.5))

    # world facts: tr = exp(2 - 1) -> 0 and exp(1 - 3) -> 1 - e^-2
    wf_norm = (e(-2.0) / (e(-2.0) + e(-1.0)) + e(-1.0) / (e(-1.0) + e(-3.0))) / 2
    assert s["wf_Q_A_Prob_normalised"] == pytest.approx(wf_norm)
    assert s["wf_Q_A_ROUGE"] == pytest.approx(0.5)
    assert s["wf_Truth_Ratio"] == pytest.approx((0 + 1 - e(-2.0)) / 2)

    nine = [(e(-0.2) + e(-0.4)) / 2, 0.75, (1 - e(-1.0)) / 2, ra_norm, 1.0, 1 - e(-1.5),
            wf_norm, 0.5, (1 - e(-2.0)) / 2]
    assert [s[k] for k in MODEL_UTILITY_KEYS] == pytest.approx(nine)
    assert s["model_utility"] == pytest.approx(9 / sum(1 / v for v in nine))

    # memorisation (EOS = last hit excluded): ES (1 + 0) / 2 ... f1 hits [0, 1] -> ES 1/2, EM 1/2
    assert s["extraction_strength"] == pytest.approx((1.0 + 0.5) / 2)
    assert s["exact_memorization"] == pytest.approx((1.0 + 0.5) / 2)

    # MIA, forget = 0 / holdout = 1. loss: forget [0.5, 1.0], holdout [2.0, 0.7] -> 3 of 4 pairs
    assert s["mia_loss"] == pytest.approx(0.75)
    # min-k (T = 2 without EOS, ceil(0.8) = 1 token): forget 0.2, 0.4; holdout 3.0, 0.25 -> 3 of 4
    assert s["mia_min_k"] == pytest.approx(0.75)
    assert s["privleak"] == pytest.approx((0.5 - 0.75) / (1 - 0.5) * 100)  # -50
    for k in ("mia_min_k_plus_plus", "mia_reference", "mia_gradnorm"):
        assert s[k] is None and k in s["missing"]
    assert s["n_items"] == {"forget": 2, "retain": 2, "real_authors": 1, "world_facts": 2, "holdout": 2}


def test_forget_quality_without_retain_records_is_none_with_a_note():
    s = tofu_summary(_records())
    assert s["forget_quality"] is None and s["forget_quality_ks_statistic"] is None
    assert "--retain-eval PATH" in s["missing"]["forget_quality"]
    assert "privleak" in s["missing"]


def test_forget_quality_with_retain_records_hand_value():
    retain_model = [
        dict(set="forget", index=1, question="q1", avg_nll=3.0, paraphrased_avg_nll=6.0, perturbed_avg_nll=[1.0]),
        dict(set="forget", index=0, question="q0", avg_nll=3.0, paraphrased_avg_nll=5.0, perturbed_avg_nll=[1.0]),
    ]
    s = tofu_summary(_records(), retain_model)
    # model tr: e^-1.5, e^1; retain tr: e^4, e^5 -> fully separated, D = 1, exact p = 2 / C(4, 2) = 1/3
    assert s["forget_quality_ks_statistic"] == 1.0
    assert s["forget_quality"] == pytest.approx(1 / 3)
    same = [r for r in _records() if r["set"] == "forget"]
    assert tofu_summary(_records(), same)["forget_quality"] == pytest.approx(1.0)


def test_mismatched_retain_items_raise_naming_the_item():
    retain_model = [r for r in _records() if r["set"] == "forget"]
    retain_model[1] = dict(retain_model[1], question="another question")
    with pytest.raises(ObliviateError, match=r"index=1, question='q1'"):
        tofu_summary(_records(), retain_model)
    with pytest.raises(ObliviateError, match="index=0"):
        tofu_summary(_records(), retain_model[1:] + [dict(retain_model[0], index=7)])
    with pytest.raises(ObliviateError, match="no items of set 'forget'"):
        tofu_summary(_records(), [r for r in _records() if r["set"] == "retain"])


def test_absent_sets_and_fields_are_none_with_reasons():
    forget_only = [r for r in _records() if r["set"] == "forget"]
    forget_only[0] = dict(forget_only[0], generation=None)
    s = tofu_summary(forget_only)
    assert s["forget_Q_A_Prob"] is not None
    assert s["forget_Q_A_ROUGE"] is None and "1 of 2 items" in s["missing"]["forget_Q_A_ROUGE"]
    assert s["retain_Q_A_Prob"] is None and "no records of set 'retain'" in s["missing"]["retain_Q_A_Prob"]
    assert s["model_utility"] is None and "retain_Q_A_Prob" in s["missing"]["model_utility"]
    assert s["mia_loss"] is None and "holdout" in s["missing"]["mia_loss"]


def test_record_without_set_is_a_user_error():
    with pytest.raises(ObliviateError, match="item 0 has no 'set'"):
        tofu_summary([{"index": 0, "avg_nll": 1.0}])


def test_annotate_records_fills_truth_ratio_and_rouge_in_place():
    recs = _records()
    out = annotate_records(recs)
    assert out is recs
    assert recs[0]["truth_ratio"] == pytest.approx(e(-1.5))
    assert recs[0]["rougeL_recall"] == 1.0 and recs[1]["rougeL_recall"] == 0.0
    assert "rougeL_f1" in recs[4] and "truth_ratio" not in recs[7]  # holdout: no truth ratio


def test_logged_truth_ratio_used_when_nlls_absent():
    # a record carrying only a truth_ratio (imported logs) still enters the aggregates
    recs = [dict(set="forget", index=0, question="q", avg_nll=1.0, truth_ratio=0.5),
            dict(set="forget", index=1, question="r", avg_nll=1.0, truth_ratio=4.0)]
    s = tofu_summary(recs)
    assert s["forget_truth_ratio"] == pytest.approx((0.5 + 0.25) / 2)


def test_metrics_registered_with_metadata():
    from obliviate.registry import METRICS

    # read the entries directly: METRICS.get() would import every registering package (torch too)
    get = METRICS._entries.__getitem__

    for name in ("forget_quality", "model_utility", "forget_truth_ratio", "truth_ratio", "probability",
                 "probability_normalised", "rouge", "forget_Truth_Ratio_prob_mean"):
        meta = get(name).meta
        assert {"higher_is_better", "aggregation", "sets", "arxiv", "description"} <= meta.keys(), name
        assert meta["arxiv"] == "2401.06121"
    assert tofu.SET_PREFIX["real_authors"] == "ra"


def test_privleak_is_missing_with_a_reason_when_the_retain_auc_is_one():
    s = tofu_summary(_records(), retain_mia_auc=1.0)  # not NaN (invalid JSON in summary.json)
    assert s["privleak"] is None and "Min-K AUC is 1.0" in s["missing"]["privleak"]
    assert tofu_summary(_records(), retain_mia_auc=0.5)["privleak"] is not None
