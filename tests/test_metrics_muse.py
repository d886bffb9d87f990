"""MUSE metrics on hand-computed inputs."""

import pytest

from obliviate.metrics.muse import (
    MUSE_RETRAIN_AUC,
    MUSE_RETRAIN_AUC_MUSE_ORIENTATION,
    knowmem,
    muse_summary,
    verbmem,
)

GT = "the cat sat on the mat"
GEN = "the cat on the mat today again"  # LCS 5 of 6 reference / 7 generated tokens


def test_verbmem_is_rougeL_f1_unstemmed_by_default():
    # F1 = 2 * LCS / (m + n) = 10 / 13; a perfect copy scores 1
    assert verbmem([GEN, GT], [GT, GT]) == pytest.approx((10 / 13 + 1.0) / 2)
    assert verbmem([GEN], [GT], variant="recall") == pytest.approx(5 / 6)
    # MUSE does not stem: "running dogs" vs "run dog" share nothing
    assert verbmem(["run dog"], ["running dogs"]) == 0.0
    assert verbmem(["run dog"], ["running dogs"], use_stemmer=True) == 1.0


def test_knowmem_hand_values():
    # "Paris, France" vs answer "Paris": LCS 1, P = 1/2, R = 1 -> F1 2/3
    assert knowmem(["Paris, France"], ["Paris"]) == pytest.approx(2 / 3)
    assert knowmem(["Paris, France"], ["Paris"], variant="recall") == 1.0
    with pytest.raises(ValueError):
        knowmem(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        knowmem(["a"], ["a"], variant="precision")


def test_muse_retrain_auc_orientation():
    assert MUSE_RETRAIN_AUC_MUSE_ORIENTATION == {"news": 0.4772, "books": 0.5393}
    assert MUSE_RETRAIN_AUC["news"] == pytest.approx(0.5228)


def test_muse_summary():
    vm = [{"generation": GEN, "answer": GT}]
    kf = [{"generation": "Paris, France", "answer": "Paris"}]
    # memorised target: forget texts have higher log-probs than holdout texts -> our AUC = 1
    pf = [{"token_logprobs": [-0.1, -0.2, -0.01]}, {"token_logprobs": [-0.3, -0.1, -0.01]}]
    ph = [{"token_logprobs": [-3.0, -2.0, -0.01]}, {"token_logprobs": [-4.0, -1.0, -0.01]}]
    s = muse_summary(verbmem_records=vm, knowmem_forget_records=kf, privleak_forget_records=pf,
                     privleak_holdout_records=ph, corpus="news")
    assert s["verbmem_f"] == pytest.approx(10 / 13)
    assert s["knowmem_f"] == pytest.approx(2 / 3)
    assert s["knowmem_r"] is None and "knowmem_r" in s["missing"]
    assert s["privleak_auc"] == 1.0
    assert s["privleak"] == pytest.approx(-100.0)  # a perfect memoriser, whatever the retrain AUC
    s = muse_summary(privleak_forget_records=ph, privleak_holdout_records=pf, retrain_auc=0.5)
    assert s["privleak_auc"] == 0.0 and s["privleak"] == pytest.approx(100.0)  # over-unlearned
    s = muse_summary(privleak_forget_records=pf, privleak_holdout_records=ph)
    assert s["privleak"] is None and "corpus" in s["missing"]["privleak"]
    s = muse_summary(privleak_forget_records=pf, privleak_holdout_records=ph, retrain_auc=1.0)  # denominator 0
    assert s["privleak"] is None and "denominator 1 - AUC_retain is 0" in s["missing"]["privleak"]
    with pytest.raises(ValueError):
        muse_summary(privleak_forget_records=pf, privleak_holdout_records=ph, corpus="wiki")


def test_registered():
    from obliviate.registry import METRICS

    # read the entries directly: METRICS.get() would import every registering package (torch too)
    get = METRICS._entries.__getitem__

    assert get("verbmem").meta["arxiv"] == "2407.06460"
    assert get("knowmem").meta["keys"] == ("knowmem_f", "knowmem_r")
