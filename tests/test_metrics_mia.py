"""MIA scores, AUC orientation and PrivLeak's sign, on hand-computed inputs."""

import math
import zlib

import pytest

from obliviate.metrics.mia import (
    MIA_ATTACKS,
    gradnorm_score,
    loss_score,
    mia_auc,
    mia_summary,
    min_k_plus_plus_score,
    min_k_score,
    privleak,
    record_score,
    reference_score,
    zlib_score,
)

EOS = -0.01  # the record contract puts EOS last; Min-K drops it


def test_min_k_T5():
    # T = 5, k = 0.4 -> ceil(2.0) = 2 lowest log-probs: -5 and -4 -> score 4.5
    assert min_k_score([-1.0, -2.0, -3.0, -4.0, -5.0, EOS]) == pytest.approx(4.5)
    assert min_k_score([-1.0, -2.0, -3.0, -4.0, -5.0], includes_eos=False) == pytest.approx(4.5)


def test_min_k_uses_ceil_and_guards_small_T():
    # T = 3: 0.4 * 3 = 1.2 -> ceil = 2 tokens (-3, -2) -> 2.5 (open-unlearning's max(1, floor) takes 1 -> 3.0)
    assert min_k_score([-1.0, -2.0, -3.0, EOS]) == pytest.approx(2.5)
    # T = 1: a single token
    assert min_k_score([-7.0, EOS]) == pytest.approx(7.0)
    # T = 0 (only EOS) -> None
    assert min_k_score([EOS]) is None
    assert min_k_score([]) is None
    assert min_k_score([], includes_eos=False) is None
    # float noise: 0.7 * 10 = 7.000000000000001 must still mean 7 tokens
    lp = [-float(i) for i in range(1, 11)]
    assert min_k_score(lp, k=0.7, includes_eos=False) == pytest.approx(sum(range(4, 11)) / 7)
    with pytest.raises(ValueError):
        min_k_score([-1.0, -2.0], k=0.0, includes_eos=False)


def test_min_k_plus_plus_same_rule_on_z_values():
    assert min_k_plus_plus_score([0.5, -1.0, -2.0, 1.0, 0.0, 3.0]) == pytest.approx(1.5)  # lowest 2 of 5: -2, -1


def test_loss_zlib_reference_gradnorm():
    assert loss_score(1.25) == 1.25
    assert len(zlib.compress(b"hello")) == 13
    assert zlib_score(2.6, "hello") == pytest.approx(2.6 / 13)
    assert reference_score(0.5, 2.0) == pytest.approx(-1.5)
    assert gradnorm_score(3.0) == 3.0


def test_record_score_prefers_imported_scores_and_reports_missing():
    r = {"avg_nll": 1.0, "answer": "hello", "token_logprobs": [-1.0, -3.0, EOS]}
    assert record_score(r, "loss") == 1.0
    assert record_score(r, "zlib") == pytest.approx(1.0 / 13)
    assert record_score(r, "min_k") == pytest.approx(3.0)  # T = 2, ceil(0.8) = 1 token
    assert record_score(r, "reference") is None and record_score(r, "gradnorm") is None
    assert record_score({**r, "mia_scores": {"min_k": 9.0}}, "min_k") == 9.0
    with pytest.raises(ValueError):
        record_score(r, "nope")


def test_auc_orientation():
    # memorised: forget items have low loss (low score), holdout high -> AUC 1
    assert mia_auc([0.1, 0.2], [0.8, 0.9]) == 1.0
    # over-unlearned: forget looks less member-like than unseen data -> AUC 0
    assert mia_auc([0.8, 0.9], [0.1, 0.2]) == 0.0
    # P(holdout > forget): pairs (0.3>0.1, 0.3<0.5, 0.9>0.1, 0.9>0.5) -> 3/4
    assert mia_auc([0.1, 0.5], [0.3, 0.9]) == pytest.approx(0.75)
    assert mia_auc([0.5], [0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mia_auc([], [0.5])


def test_auc_ranks_infinite_scores_at_the_ends():
    inf = float("inf")
    # pairs (holdout > forget): 0.5 > inf no, 0.5 > 0.2 yes, -inf > inf no, -inf > 0.2 no -> 1/4
    assert mia_auc([inf, 0.2], [0.5, -inf]) == pytest.approx(0.25)
    # two infinite scores tie: (inf vs inf) counts a half, (inf > 0.1) one -> 1.5 / 2
    assert mia_auc([inf, 0.1], [inf]) == pytest.approx(0.75)
    assert mia_auc([-inf], [inf]) == 1.0


def test_privleak_sign_convention():
    assert privleak(0.5, 0.5) == 0.0  # like the retrained model
    assert privleak(0.62, 0.62) == 0.0
    assert privleak(1.0, 0.5) == pytest.approx(-100.0)  # perfect memoriser
    assert privleak(1.0, 0.4) == pytest.approx(-100.0)  # ... whatever the retrain AUC
    assert privleak(0.3, 0.5) == pytest.approx(40.0)  # over-unlearned: > 0
    assert privleak(0.75, 0.5) == pytest.approx(-50.0)
    # the same number as MUSE's formula on MUSE-oriented AUCs (AUC_M = 1 - ours)
    for model, retrain in [(1.0, 0.5), (0.9, 0.45), (0.2, 0.6), (0.5, 0.5228)]:
        m, r = 1 - model, 1 - retrain
        assert privleak(model, retrain) == pytest.approx((m - r) / r * 100)
    # (retrain - model) / retrain would say -150 here: wrong denominator
    assert privleak(1.0, 0.4) != pytest.approx((0.4 - 1.0) / 0.4 * 100)
    assert math.isnan(privleak(0.9, 1.0))


def test_mia_summary_values_and_missing():
    forget = [{"avg_nll": 0.5, "answer": "a", "ref_avg_nll": 1.0}, {"avg_nll": 1.0, "answer": "b", "ref_avg_nll": 2.0}]
    holdout = [{"avg_nll": 2.0, "answer": "c", "ref_avg_nll": 1.5}, {"avg_nll": 0.7, "answer": "d"}]
    vals, missing = mia_summary(forget, holdout)
    assert set(vals) == {f"mia_{a}" for a in MIA_ATTACKS}
    assert vals["mia_loss"] == pytest.approx(0.75)
    assert vals["mia_reference"] is None and "1 of 2 holdout" in missing["mia_reference"]
    assert vals["mia_min_k"] is None and "token_logprobs" in missing["mia_min_k"]
    vals, missing = mia_summary(forget, [])
    assert all(v is None for v in vals.values()) and "holdout" in missing["mia_loss"]


def test_mia_metrics_registered():
    from obliviate.registry import METRICS

    # read the entries directly: METRICS.get() would import every registering package (torch too)
    get = METRICS._entries.__getitem__

    for a in MIA_ATTACKS:
        meta = get(f"mia_{a}").meta
        assert meta["sets"] == ("forget", "holdout") and meta["arxiv"]
    assert get("privleak").meta["ideal"] == 0.0
