"""Fluency (metaeval/fluency.py) with a classifier built here whose softmax is known by hand, and the utility
score it enters (metaeval/aggregates.py)."""

import math

import pytest

from obliviate.errors import ObliviateError
from obliviate.metaeval.aggregates import aggregates, utility_score
from obliviate.metaeval.fluency import classifier_fluency, load_classifier, records_fluency


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A 1-layer BERT classifier whose head ignores the text (weight 0) and has bias (log 3, 0): every text
    gets softmax (3/4, 1/4)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    d = tmp_path_factory.mktemp("clf")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "author", "was",
                                            "born", "in", "paris", "."]) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(str(d))
    cfg = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                     max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([math.log(3.0), 0.0]))
    model.save_pretrained(str(d))
    return load_classifier(d)


def test_fluency_is_the_mean_clean_probability(classifier):
    model, tok = classifier
    texts = ["the author was born in paris .", "zzz qqq", "", "the " * 100]  # unknown words, empty, > 32 tokens
    mean, per = classifier_fluency(texts, model, tok, batch_size=3)
    assert per == pytest.approx([0.75] * 4, abs=1e-6) and mean == pytest.approx(0.75, abs=1e-6)
    assert classifier_fluency(texts, model, tok, class_id=1)[0] == pytest.approx(0.25, abs=1e-6)
    assert classifier_fluency([], model, tok) == (None, [])
    with pytest.raises(ObliviateError, match="class_id 2 but the classifier has 2 labels"):
        classifier_fluency(texts, model, tok, class_id=2)


def test_records_fluency_needs_every_forget_generation(classifier):
    model, tok = classifier
    recs = [{"set": "forget", "generation": "the author"}, {"set": "retain", "generation": None},
            {"set": "forget", "generation": "paris"}]
    assert records_fluency(recs, model, tok)[0] == pytest.approx(0.75, abs=1e-6)
    recs[0]["generation"] = None
    assert records_fluency(recs, model, tok) == (None, "1 of 2 forget items lack a generation")


def test_load_classifier_refuses_a_folder_without_config(tmp_path):
    with pytest.raises(ObliviateError, match="no config.json"):
        load_classifier(tmp_path)


def test_utility_is_the_harmonic_mean_with_fluency():
    # model utility 0.45 / target 0.6 = 0.75; fluency 0.5 -> HM = 2 / (4/3 + 2) = 0.6
    s = {"model_utility": 0.45, "forget_fluency": 0.5}
    u, why, note = utility_score(s, {"model_utility": 0.6})
    assert u == pytest.approx(0.6) and why is None and note.startswith("HM(model_utility / the target")
    u, _, note = utility_score({"model_utility": 0.45}, {"model_utility": 0.6})
    assert u == pytest.approx(0.75) and "no fluency" in note
    assert aggregates(s, None, {"model_utility": 0.6})["utility_score"] == pytest.approx(0.6)
