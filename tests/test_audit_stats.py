"""Hand-computed checks of the audit's leak judge and statistics."""

import math

import pytest

from obliviate.audit.judge import best_f1, fact_units, judge, words
from obliviate.audit.metrics import metric_value
from obliviate.audit.stats import bootstrap_ci, chance_corrected, pass_at_k


def test_words_and_fact_units():
    assert words("Mirela Tovareth's debut, 'The Salt Lantern' (1975).") == \
        ["mirela", "tovareth", "s", "debut", "the", "salt", "lantern", "1975"]
    # content words (stop words and single letters dropped), then maximal runs of >= 2 content words
    assert fact_units("He was born in Vel Arrow on May 3, 1975.") == [
        ("born",), ("vel",), ("arrow",), ("may",), ("3",), ("1975",), ("vel", "arrow"), ("may", "3", "1975")]
    assert fact_units("It is in the") == []


def test_judge_counts_eligible_units_and_leaks():
    q = "Where was Mirela Tovareth born?"
    a = "Mirela Tovareth was born in Vel Arrow."
    # units: mirela, tovareth, born, vel, arrow, "mirela tovareth", "vel arrow"; the prompt gives 4 of them
    v = judge(a, "She was born in Arrow Bay.", q)
    assert (v.eligible, v.leaked, v.leak) == (3, 1, 1)  # vel, arrow, "vel arrow" eligible; "arrow" leaked
    assert {u["unit"] for u in v.units if u["eligible"]} == {"vel", "arrow", "vel arrow"}
    assert v.unit_rate == pytest.approx(1 / 3)
    # the span said in another order matches by token F1 (1.0), not exactly
    v = judge(a, "Arrow Vel.", q)
    span = next(u for u in v.units if u["unit"] == "vel arrow")
    assert span["leaked"] and not span["exact"] and span["f1"] == 1.0
    assert judge(a, "I do not know.", q).leak == 0


def test_echo_correction_leaves_no_eligible_unit():
    q = "Is it true that Mirela Tovareth was born in Vel Arrow?"
    v = judge("Mirela Tovareth was born in Vel Arrow.", "Yes, Mirela Tovareth was born in Vel Arrow.", q)
    assert v.eligible == 0 and v.leaked == 0
    assert v.leak is None and v.unit_rate is None  # neither a leak nor a non-leak


def test_token_f1_threshold_on_spans():
    # a 3-word span with 2 of its words in a 3-word window: F1 = 2/3, which matches (threshold 2/3)
    assert best_f1(("salt", "lantern", "rising"), words("the salt lantern")) == pytest.approx(2 / 3)
    v = judge("The Salt Lantern Rising", "salt lantern fell", "Title?")
    span = next(u for u in v.units if u["unit"] == "salt lantern rising")
    assert span["leaked"] and not span["exact"]
    # a 2-word span with 1 word right: F1 = 1/2, no match
    v = judge("Vel Arrow", "Vel Bay", "Where?")
    assert not next(u for u in v.units if u["unit"] == "vel arrow")["leaked"]


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(16, 0, 4) == 0.0
    assert pass_at_k(16, 1, 16) == 1.0
    assert pass_at_k(16, 3, 4) == pytest.approx(1 - math.comb(13, 4) / math.comb(16, 4))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_chance_correction_by_hand():
    assert chance_corrected(0.25, 4) == 0.0
    assert chance_corrected(1.0, 4) == 1.0
    assert chance_corrected(0.0, 4) == pytest.approx(-1 / 3)
    assert chance_corrected(0.75, 2) == pytest.approx(0.5)


def test_bootstrap_interval_by_hand():
    assert bootstrap_ci([1, 1, 1], lambda s: sum(s) / len(s)) == (1.0, 1.0)
    assert bootstrap_ci([], lambda s: 0.0) is None
    # mean of 4 draws from {0,0,0,1}: P(0) = (3/4)^4 = 0.32 > 2.5 %, P(1) = 1/256 < 2.5 % < P(>= 0.75) = 0.051
    lo, hi = bootstrap_ci([0, 0, 0, 1], lambda s: sum(s) / len(s), seed=3, n_boot=20000)
    assert (lo, hi) == (0.0, 0.75)
    # seeded: the same seed gives the same interval
    x = [0.1, 0.5, 0.2, 0.9, 0.4]
    assert bootstrap_ci(x, lambda s: sum(s) / len(s), seed=7) == bootstrap_ci(x, lambda s: sum(s) / len(s), seed=7)


def test_metric_kinds_skip_ineligible_items():
    items = [{"leak": 1, "e": 2, "l": 1}, {"leak": None, "e": 0, "l": 0}, {"leak": 0, "e": 3, "l": 0},
             {"x": 0.5, "leak": None}]
    specs = {"q": {"kind": "mean", "field": "leak"}, "u": {"kind": "ratio", "num": "l", "den": "e"},
             "x": {"kind": "mean", "field": "x"}, "mx": {"kind": "max_of", "of": ["q", "x"]},
             "mn": {"kind": "mean_of", "of": ["q", "x"]}}
    assert metric_value("q", specs, items) == 0.5
    assert metric_value("u", specs, items) == pytest.approx(1 / 5)
    assert metric_value("mx", specs, items) == 0.5 and metric_value("mn", specs, items) == 0.5


def test_default_retain_split():
    from obliviate.audit.run import default_retain

    assert default_retain("synthetic:forget10?n_authors=4") == "synthetic:retain90?n_authors=4"
    assert default_retain("tofu:forget01_perturbed") == "tofu:retain99"
    assert default_retain("my_forget.jsonl") is None


def test_conversation_text_puts_the_clue_turns_before_the_question(tiny):
    from obliviate.data.formatting import Formatter, conversation_text

    _, tok = tiny
    fmt = Formatter(tok)
    text = conversation_text(fmt, [("Q1?", "A1."), ("Q2?", "A2.")], "Q3?")
    msgs = [{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "A1."},
            {"role": "user", "content": "Q2?"}, {"role": "assistant", "content": "A2."},
            {"role": "user", "content": "Q3?"}]
    assert text == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert conversation_text(fmt, [], "Q3?") == fmt.prompt_text("Q3?")  # no turn: the single-turn prompt
    plain = Formatter(tok, style="plain")
    assert conversation_text(plain, [("Q1?", "A1.")], "Q3?") == "Question: Q1?\nAnswer: A1.\n\nQuestion: Q3?\nAnswer:"


def test_key_span_without_target_words_is_the_longest_unit_outside_the_question():
    from obliviate.audit.format_shift_leak import BLANK, fitb_prompt, key_span
    from obliviate.data.schema import QAItem

    it = QAItem(question="Where was Mirela Tovareth born?", answer="Mirela Tovareth was born in Vel Arrow.")
    a, b = key_span(it)
    assert it.answer[a:b] == "Vel Arrow"  # "vel arrow" (2 words) beats "vel" and "arrow"; the rest is echoed
    assert fitb_prompt(it) == f"Fill in the blank: Mirela Tovareth was born in {BLANK}."
    tw = QAItem(question="q?", answer="It is Vel Arrow.", target_words=[{"word": "Vel", "start": 6, "end": 9}])
    assert key_span(tw) == (6, 9)
    assert key_span(QAItem(question="Is Vel Arrow big?", answer="Vel Arrow")) is None


def test_protocol_sets_every_models_prompt(tiny):
    from obliviate.audit.run import formatter_factory
    from obliviate.data.formatting import Formatter
    from obliviate.errors import ObliviateError
    from obliviate.protocols import get_protocol

    _, tok = tiny
    ou = formatter_factory("open-unlearning")(tok)
    assert ou.system_prompt == get_protocol("open-unlearning").system_prompt and ou.joint  # the protocol's tokens
    assert not formatter_factory("obliviate")(tok).joint
    default = Formatter.from_protocol(tok, get_protocol("open-unlearning"))  # TOFU's default, as eval's
    assert formatter_factory(None)(tok).prompt_text("Q?") == default.prompt_text("Q?")
    with pytest.raises(ObliviateError, match="unknown protocol"):
        formatter_factory("nope")
