"""The embedded synthetic TOFU-format data set (obliviate.data.synthetic)."""

from __future__ import annotations

import pytest

from obliviate.data import load_items
from obliviate.data.synthetic import FACTS_PER_AUTHOR, N_PERTURBED, generate_authors
from obliviate.data.tofu import TOFU_CONFIGS
from obliviate.errors import ObliviateError
from obliviate.registry import DATASETS


def _dicts(items):
    return [it.to_dict() for it in items]


def _entities(items):
    return {it.entity for it in items}


def _names(n_authors=40, seed=0):
    return {a.entity: a.name for a in generate_authors(seed, n_authors)}


def test_registered_with_tofu_configs():
    entry = DATASETS.get("synthetic")
    assert entry.meta["configs"] == TOFU_CONFIGS
    for config in TOFU_CONFIGS:
        assert load_items(f"synthetic:{config}"), config


def test_deterministic_from_seed():
    a = load_items("synthetic:full", seed=0)
    b = load_items("synthetic:full", seed=0)
    c = load_items("synthetic:full", seed=1)
    assert _dicts(a) == _dicts(b)
    assert _dicts(a) != _dicts(c)
    # the perturbed answers are seeded as well
    assert _dicts(load_items("synthetic:forget10_perturbed", seed=3)) == _dicts(
        load_items("synthetic:forget10_perturbed", seed=3)
    )


def test_full_shape_and_distinct_names():
    items = load_items("synthetic:full")
    assert len(items) == 40 * FACTS_PER_AUTHOR
    assert len(_entities(items)) == 40
    names = list(_names(40).values())  # 40 full + 4 holdout authors
    assert len(names) == 44 and len(set(names)) == 44
    # every question is distinct, every non-name question names its author
    assert len({it.question for it in items}) == len(items)
    by_entity = _names(40)
    for it in items:
        assert it.entity.startswith("synthetic-author-")
        name = by_entity[it.entity]
        assert name in it.question or name in it.answer


def test_forget10_perturbed_fields():
    items = load_items("synthetic:forget10_perturbed")
    assert len(items) == 4 * FACTS_PER_AUTHOR
    for it in items:
        assert it.paraphrased_question and it.paraphrased_question != it.question
        assert it.paraphrased_answer and it.paraphrased_answer != it.answer
        assert len(it.perturbed_answers) == N_PERTURBED == 5
        assert len(set(it.perturbed_answers)) == 5
        assert it.answer not in it.perturbed_answers
        assert it.paraphrased_answer not in it.perturbed_answers
        value = it.target_words[0]["word"]
        assert value in it.paraphrased_answer
        assert all(value not in p for p in it.perturbed_answers)
    assert _dicts(items) == _dicts(load_items("synthetic:forget10"))


def test_every_item_carries_eval_fields():
    for it in load_items("synthetic:full") + load_items("synthetic:holdout10"):
        assert it.paraphrased_question and it.paraphrased_answer
        assert len(it.perturbed_answers) == 5


@pytest.mark.parametrize("pct,forget_authors", [("01", 1), ("05", 2), ("10", 4)])
def test_forget_retain_split(pct, forget_authors):
    retain_name = {"01": "retain99", "05": "retain95", "10": "retain90"}[pct]
    full = load_items("synthetic:full")
    forget = load_items(f"synthetic:forget{pct}")
    retain = load_items(f"synthetic:{retain_name}")
    names = _names(40)
    assert len(_entities(forget)) == forget_authors
    assert len(forget) == forget_authors * FACTS_PER_AUTHOR
    # the LAST authors are forgotten
    assert _entities(forget) == {f"synthetic-author-{i:02d}" for i in range(40 - forget_authors, 40)}
    # disjoint authors (by id and by full name), and together exactly `full`, in order
    assert not (_entities(forget) & _entities(retain))
    forget_names = {names[e] for e in _entities(forget)}
    assert not any(n in it.question or n in it.answer for it in retain for n in forget_names)
    assert _dicts(retain) + _dicts(forget) == _dicts(full)


def test_holdout_authors_never_in_full():
    full = load_items("synthetic:full")
    names = _names(40)
    full_names = {names[e] for e in _entities(full)}
    prev = []
    for pct, k in (("01", 1), ("05", 2), ("10", 4)):
        holdout = load_items(f"synthetic:holdout{pct}")
        assert len(_entities(holdout)) == k and len(holdout) == k * FACTS_PER_AUTHOR
        assert not (_entities(holdout) & _entities(full))
        hold_names = {names[e] for e in _entities(holdout)}
        assert not (hold_names & full_names)
        assert not any(n in it.question or n in it.answer for it in full for n in hold_names)
        assert _dicts(holdout)[: len(prev)] == prev  # holdout01 < holdout05 < holdout10
        prev = _dicts(holdout)


def test_retain_perturbed_matches_forget10_size():
    rp = load_items("synthetic:retain_perturbed")
    retain90 = load_items("synthetic:retain90")
    assert len(rp) == len(load_items("synthetic:forget10"))
    assert _dicts(rp) == _dicts(retain90[: len(rp)])
    assert all(len(it.perturbed_answers) == 5 for it in rp)


def test_other_n_authors():
    items = load_items("synthetic:full", n_authors=100)
    assert len(_entities(items)) == 100
    assert len(_entities(load_items("synthetic:forget05", n_authors=100))) == 5
    assert len(_entities(load_items("synthetic:holdout10", n_authors=100))) == 10
    with pytest.raises(ObliviateError, match="n_authors"):
        load_items("synthetic:full", n_authors=1)
    with pytest.raises(ObliviateError, match="n_authors"):
        load_items("synthetic:full", n_authors="many")


def test_target_word_spans():
    for it in load_items("synthetic:full") + load_items("synthetic:holdout10"):
        assert it.target_words and len(it.target_words) == 1
        span = it.target_words[0]
        assert 0 <= span["start"] < span["end"] <= len(it.answer)
        assert it.answer[span["start"]:span["end"]] == span["word"]
    name_items = [it for it in load_items("synthetic:full") if it.question.startswith("What is the full name")]
    names = _names(40)
    assert len(name_items) == 40
    assert all(it.target_words[0]["word"] == names[it.entity] for it in name_items)


@pytest.mark.parametrize("family", ["real_authors", "world_facts"])
def test_real_world_sets(family):
    items = load_items(f"synthetic:{family}_perturbed")
    assert len(items) >= 40
    assert _dicts(items) == _dicts(load_items(f"synthetic:{family}"))
    assert _dicts(items) == _dicts(load_items(f"synthetic:{family}", seed=7, n_authors=12))  # seed-independent
    assert len({it.question for it in items}) == len(items)
    for it in items:
        assert len(it.perturbed_answers) == 3
        assert len(set(it.perturbed_answers)) == 3
        assert it.answer not in it.perturbed_answers
        assert len(it.answer.split()) <= 4


def test_unknown_config_lists_valid_configs():
    with pytest.raises(ObliviateError) as e:
        load_items("synthetic:forget20")
    msg = str(e.value)
    assert "forget20" in msg
    for config in ("full", "forget10", "retain90", "holdout01", "world_facts"):
        assert config in msg
