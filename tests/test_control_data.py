"""Control training sets (meta-evaluation): ``?answers=perturbed|paraphrased`` and ``A+B`` unions."""

import pytest

from obliviate.data import load_items, split_union
from obliviate.errors import ObliviateError


def test_perturbed_control_replaces_each_answer_by_its_first_perturbed_answer():
    true = load_items("synthetic:forget10?n_authors=4")
    neg = load_items("synthetic:forget10?n_authors=4&answers=perturbed")
    assert len(neg) == len(true) > 0
    for t, n in zip(true, neg):
        assert n.question == t.question and n.entity == t.entity
        assert n.answer == t.perturbed_answers[0] != t.answer


def test_paraphrased_control_uses_the_paraphrased_answer():
    true = load_items("synthetic:forget10?n_authors=4")
    pos = load_items("synthetic:forget10?answers=paraphrased&n_authors=4")
    assert [p.answer for p in pos] == [t.paraphrased_answer for t in true]


def test_tofu_forget_split_takes_its_answers_from_the_perturbed_file(tofu_dir):
    true = load_items("tofu:forget01", data_dir=str(tofu_dir))
    neg = load_items("tofu:forget01?answers=perturbed", data_dir=str(tofu_dir))
    pert = load_items("tofu:forget01_perturbed", data_dir=str(tofu_dir))
    assert [n.question for n in neg] == [t.question for t in true]
    assert [n.answer for n in neg] == [p.perturbed_answers[0] for p in pert]


def test_a_union_concatenates_its_parts_in_order():
    a = load_items("synthetic:retain90?n_authors=4")
    b = load_items("synthetic:forget10?n_authors=4&answers=perturbed")
    both = load_items("synthetic:retain90?n_authors=4+synthetic:forget10?n_authors=4&answers=perturbed")
    assert [it.answer for it in both] == [it.answer for it in a + b]
    assert split_union("x.jsonl") == ["x.jsonl"]


def test_bad_control_options_are_one_line_errors(tmp_path):
    with pytest.raises(ObliviateError, match="answers='wrong'; valid: true, perturbed, paraphrased"):
        load_items("synthetic:forget10?answers=wrong")
    with pytest.raises(ObliviateError, match="empty part"):
        load_items("synthetic:forget10+")
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "q?", "answer": "a"}\n')
    with pytest.raises(ObliviateError, match="row 1 has no perturbed answer"):
        load_items(f"synthetic:forget10?n_authors=4+{f}", answers="perturbed")
