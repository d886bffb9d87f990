"""Meta-evaluation scores and OpenUnlearning aggregates against values computed by hand."""

import random

import pytest

from obliviate.errors import ObliviateError
from obliviate.metaeval.aggregates import aggregates, mia_similarity
from obliviate.metaeval.scores import (auc, bootstrap, hmean, knowledge, meta_scores, meta_table, quant_ratio,
                                       relearn_ratio, threshold)

# forget_Q_A_Prob (knowledge score m = value) of a hand-built pool:
#   positives 0.9 0.7 0.5 | negatives 0.6, 0.2 (the retain control), 0.3 | unlearned 0.1, 0.8
ROWS = [  # name, role, before, after relearning, after quantization
    ("P1", "positive", 0.9, None, None), ("P2", "positive", 0.7, None, None), ("P3", "positive", 0.5, None, None),
    ("N1", "negative", 0.6, 0.9, 0.9), ("retain", "negative", 0.2, 0.4, 0.1), ("N3", "negative", 0.3, 0.7, 0.6),
    ("U1", "unlearned", 0.1, 0.15, 0.4), ("U2", "unlearned", 0.8, 0.9, 0.9),
]


def table(key="forget_Q_A_Prob", f=lambda m: m):
    def s(v):
        return None if v is None else {key: f(v)}
    return [{"name": n, "role": r, "summary": s(b), "relearned": s(a), "quantized": s(q)} for n, r, b, a, q in ROWS]


# By hand. AUC: P1 and P2 beat all 3 negatives, P3 (0.5) beats 0.2 and 0.3: 8 of 9 pairs.
# Threshold (forgotten iff m <= t), Youden J = negatives<=t/3 - positives<=t/3 over t in the pool values:
#   0.2: 1/3, 0.3: 2/3, 0.5: 1/3, 0.6: 2/3, 0.7: 1/3, 0.9: 0 -> max 2/3, smallest t = 0.3.
# Called unlearned (negatives and unlearned with m <= 0.3): retain 0.2, N3 0.3, U1 0.1 (not N1 0.6, U2 0.8).
# Relearning, Δ_retain = 0.4 - 0.2 = 0.2: retain 0.2/0.2 -> 1; N3 Δ 0.4 -> 0.5; U1 Δ 0.05 -> min(4, 1) = 1.
#   R = 2.5 / 3.
# Quantization: retain 0.2 -> 0.1 recovered nothing -> 1; N3 0.3/0.6 = 0.5; U1 0.1/0.4 = 0.25. Q = 1.75 / 3.
# Robustness HM(5/6, 7/12) = 35/51; overall HM(8/9, 35/51) = 560/723.
EXPECTED = {"faithfulness": 8 / 9, "threshold": 0.3, "R": 2.5 / 3, "Q": 1.75 / 3, "robustness": 35 / 51,
            "overall": 560 / 723, "n_positive": 3, "n_negative": 3, "n_called_unlearned": 3, "n_R": 3, "n_Q": 3}


def check(s, expected=EXPECTED):
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, abs=1e-12), k


def test_meta_scores_match_the_hand_computed_values():
    check(meta_scores(table(), "forget_Q_A_Prob", retain="retain"))


def test_a_forgotten_is_higher_metric_is_oriented_as_one_minus_value():
    # forget_truth_ratio: 1 = forgotten; its values 1 - m must give the very same scores.
    s = meta_scores(table("forget_truth_ratio", lambda m: 1 - m), "forget_truth_ratio", retain="retain")
    check(s, {k: v for k, v in EXPECTED.items() if k != "threshold"})
    assert s["threshold"] == pytest.approx(0.3)  # in m, as every threshold: 1 - 0.7 up to rounding
    # privleak: -100 = the target model; m = -privleak / 100
    check(meta_scores(table("privleak", lambda m: -100 * m), "privleak", retain="retain"))


def test_orientation_of_each_kind():
    assert knowledge("forget_Q_A_ROUGE", 0.25) == 0.25
    assert knowledge("forget_quality", 0.25) == 0.75
    assert knowledge("privleak", -40.0) == pytest.approx(0.4)
    assert knowledge("mia_min_k", 0.9) == 0.9
    assert knowledge("forget_Q_A_Prob", None) is None
    with pytest.raises(ObliviateError, match="model_utility"):
        knowledge("model_utility", 0.5)


def test_auc_agrees_with_sklearn_on_random_scores_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = random.Random(3)
    pos = [rng.choice([0.1, 0.2, 0.3, 0.4, 0.5]) for _ in range(7)]
    neg = [rng.choice([0.0, 0.1, 0.2, 0.3]) for _ in range(5)]
    assert auc(pos, neg) == pytest.approx(roc_auc_score([1] * 7 + [0] * 5, pos + neg))


def test_threshold_prefers_the_strictest_of_equally_good_cuts():
    assert threshold([0.9, 0.7, 0.5], [0.6, 0.2, 0.3]) == 0.3
    assert threshold([1.0], [0.0]) == 0.0


def test_ratios_edge_cases():
    assert relearn_ratio(0.2, 0.2, 0.1, 0.5) == 1.0  # the attack recovered nothing
    assert relearn_ratio(0.2, 0.6, 0.3, 0.3) == 0.0  # the retain control gained nothing, the model did
    assert relearn_ratio(0.2, 0.6, 0.3, 0.4) == pytest.approx(0.25)
    assert quant_ratio(0.5, 0.4) == 1.0
    assert quant_ratio(0.0, 0.4) == 0.0
    assert quant_ratio(0.3, 0.4) == pytest.approx(0.75)
    assert hmean([0.5, 1.0]) == pytest.approx(2 / 3)
    assert hmean([0.0, 1.0]) == 0.0
    assert hmean([None, 1.0]) is None


def test_missing_attacks_and_pools_say_why():
    t = table()
    for r in t:
        r["quantized"] = None
    s = meta_scores(t, "forget_Q_A_Prob", retain="retain")
    assert s["R"] == pytest.approx(2.5 / 3) and s["Q"] is None and s["robustness"] is None
    assert "quantized" in s["why"]["Q"] and s["overall"] is None
    s = meta_scores(table(), "forget_Q_A_Prob")  # no retain control: no R
    assert s["R"] is None and "retain" in s["why"]["R"]
    s = meta_scores([r for r in table() if r["role"] != "positive"], "forget_Q_A_Prob")
    assert s["faithfulness"] is None and "0 positives" in s["why"]["faithfulness"]
    with pytest.raises(ObliviateError, match="'nosuch' is not a model"):
        meta_scores(table(), "forget_Q_A_Prob", retain="nosuch")
    with pytest.raises(ObliviateError, match="role 'control'"):
        meta_scores([{"name": "x", "role": "control", "summary": {}}], "forget_Q_A_Prob")


def test_bootstrap_is_seeded_and_brackets_a_perfect_separation():
    a = bootstrap(table(), "forget_Q_A_Prob", "retain", n_boot=200, seed=1)
    assert a == bootstrap(table(), "forget_Q_A_Prob", "retain", n_boot=200, seed=1)
    assert a != bootstrap(table(), "forget_Q_A_Prob", "retain", n_boot=200, seed=2)
    for f, ci in a.items():
        assert ci["n"] > 0 and 0 <= ci["lo"] <= ci["hi"] <= 1, f
    # every positive above every negative: each resample separates perfectly
    t = [r for r in table() if r["name"] not in ("P3", "N1")]
    assert bootstrap(t, "forget_Q_A_Prob", "retain", n_boot=50)["faithfulness"] == {"lo": 1.0, "hi": 1.0, "n": 50}


def test_meta_table_picks_the_keys_present():
    rows = meta_table(table(), retain="retain", n_boot=20)
    assert [r["key"] for r in rows] == ["forget_Q_A_Prob"]
    check(rows[0])
    assert set(rows[0]["ci"]) == {"faithfulness", "R", "Q", "robustness", "overall"}


# ---------------------------------------------------------------------------------------- aggregates
SUMMARY = {"extraction_strength": 0.2, "exact_memorization": 0.5, "forget_Q_A_PARA_Prob": 0.4,
           "forget_Truth_Ratio_prob_mean": 0.6, "mia_loss": 0.9, "mia_zlib": 0.6, "mia_min_k": 0.5,
           "mia_min_k_plus_plus": 0.7, "model_utility": 0.45}
RETAIN = {"mia_loss": 0.5, "mia_zlib": 0.5, "mia_min_k": 0.5, "mia_min_k_plus_plus": 0.5, "model_utility": 0.5}


def test_aggregates_match_the_hand_computed_values():
    # memorisation: 1 - v = 0.8, 0.5, 0.6, 0.4 -> HM = 4 / (5/4 + 2 + 5/3 + 5/2) = 48/89
    # privacy: |AUC - 0.5| / 0.5 = 0.8, 0.2, 0, 0.4 -> s = 0.2, 0.8, 1, 0.6 -> HM = 4 / (5 + 5/4 + 1 + 5/3) = 48/107
    # utility: 0.45 / 0.6 = 0.75; aggregate HM(48/89, 48/107, 3/4) = 3 / (89/48 + 107/48 + 4/3) = 144/260
    a = aggregates(SUMMARY, RETAIN, {"model_utility": 0.6})
    assert a["memorisation_score"] == pytest.approx(48 / 89)
    assert a["privacy_score"] == pytest.approx(48 / 107)
    assert a["utility_score"] == pytest.approx(0.75)
    assert a["openunlearning_aggregate"] == pytest.approx(144 / 260)
    assert a["missing"] == {} and a["notes"]["utility_score"].startswith("model_utility / the target")


def test_aggregates_without_references_say_what_is_missing():
    a = aggregates(SUMMARY)
    assert a["privacy_score"] is None and "retain model" in a["missing"]["privacy_score"]
    assert a["utility_score"] == 0.45 and "not normalised" in a["notes"]["utility_score"]
    assert a["openunlearning_aggregate"] is None and "privacy_score" in a["missing"]["openunlearning_aggregate"]
    a = aggregates({**SUMMARY, "exact_memorization": None}, {**RETAIN, "mia_zlib": None})
    assert a["memorisation_score"] is None and a["missing"]["memorisation_score"] == "needs exact_memorization"
    assert "the retain model's mia_zlib" in a["missing"]["privacy_score"]


def test_mia_similarity():
    assert mia_similarity(0.5, 0.5) == 1.0
    assert mia_similarity(0.75, 0.5) == pytest.approx(0.5)
    assert mia_similarity(0.0, 0.4) == 0.0  # off by 100 %


def test_aggregate_keys_have_a_direction():
    from obliviate.metaeval.aggregates import AGGREGATE_KEYS
    from obliviate.metrics.keys import direction

    assert [direction(k) for k in AGGREGATE_KEYS] == ["higher"] * 4


def test_add_aggregates_keeps_the_summary_layout():
    from obliviate.metaeval.aggregates import add_aggregates

    s = {**SUMMARY, "n_items": {"forget": 3}, "missing": {"privleak": "why"}}
    out = add_aggregates(s)  # no retain records: privacy missing, with its reason next to privleak's
    keys = list(out)
    assert keys[:len(SUMMARY)] == list(SUMMARY)
    assert keys[len(SUMMARY):len(SUMMARY) + 4] == ["memorisation_score", "privacy_score", "utility_score",
                                                    "openunlearning_aggregate"]
    assert keys[-3:] == ["n_items", "missing", "aggregate_notes"]
    assert out["memorisation_score"] == pytest.approx(48 / 89)
    assert set(out["missing"]) == {"privleak", "privacy_score", "openunlearning_aggregate"}
    assert "missing" in s and "memorisation_score" not in s  # the input is left as it was
