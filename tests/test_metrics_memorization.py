"""Exact memorisation and extraction strength (EOS, the last entry, excluded)."""

import pytest

from obliviate.metrics.memorization import exact_memorization, extraction_strength, record_memorization


def test_extraction_strength_cases():
    # hits over 4 answer tokens, then the EOS entry (its value must not matter)
    assert extraction_strength([1, 1, 1, 1, 1]) == 1.0  # all hits
    assert extraction_strength([1, 1, 1, 1, 0]) == 1.0  # a missed EOS is ignored
    assert extraction_strength([1, 1, 1, 0, 1]) == 0.0  # last answer token wrong: no suffix matches
    assert extraction_strength([0, 0, 1, 1, 1]) == 0.5  # last 2 of 4: k* = 2, 1 - 2/4
    assert extraction_strength([1, 0, 1, 1, 1]) == 0.5
    assert extraction_strength([0, 0, 0, 1, 1]) == 0.25


def test_extraction_strength_no_match_is_zero_not_one_over_T():
    # open-unlearning's loop ends at k = T - 1 and reports 1/T = 0.25 here
    assert extraction_strength([0, 0, 0, 0, 1]) == 0.0
    assert extraction_strength([0, 0, 0, 0], includes_eos=False) == 0.0


def test_exact_memorization():
    assert exact_memorization([1, 0, 1, 1, 0]) == pytest.approx(0.75)  # EOS (0) excluded
    assert exact_memorization([1, 0, 1, 1], includes_eos=False) == pytest.approx(0.75)
    assert exact_memorization([0, 0, 0, 0, 1]) == 0.0
    assert exact_memorization([True, True, False]) == pytest.approx(1.0)


def test_empty_answer_is_none_and_bad_input_raises():
    assert exact_memorization([1]) is None and extraction_strength([1]) is None  # only EOS
    with pytest.raises(ValueError):
        exact_memorization([1, 2, 1])
    with pytest.raises(ValueError):
        extraction_strength([[1, 0]])


def test_record_memorization():
    assert record_memorization({"argmax_hits": [0, 1, 1, 0]}, "extraction_strength") == pytest.approx(2 / 3)
    assert record_memorization({"argmax_hits": [0, 1, 1, 0]}, "exact_memorization") == pytest.approx(2 / 3)
    assert record_memorization({"extraction_strength": 0.2}, "extraction_strength") == 0.2  # imported value
    assert record_memorization({}, "exact_memorization") is None


def test_registered():
    from obliviate.registry import METRICS

    # read the entries directly: METRICS.get() would import every registering package (torch too)
    get = METRICS._entries.__getitem__

    assert get("extraction_strength").meta["higher_is_better"] is False
    assert get("exact_memorization").meta["sets"] == ("forget",)
