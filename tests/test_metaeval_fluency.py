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


# ------------------------------------------------------------------------------------------ obliviate eval
@pytest.fixture(scope="module")
def random_classifier(tmp_path_factory):
    """A tiny randomly initialised BERT classifier saved to a folder: its clean probability differs from text to
    text (no value known by hand; the test computes it independently)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    d = tmp_path_factory.mktemp("random_clf")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]  # + their "##" pieces: every word is spelled out
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters + [f"##{c}" for c in letters] + [
        "the", "author", "was", "born", "in", ".", ",", "is", "of"]
    (d / "vocab.txt").write_text("\n".join(dict.fromkeys(words)) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(str(d))
    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=len(dict.fromkeys(words)), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=2)
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)  # spread the softmax: texts get visibly different probabilities
    model.save_pretrained(str(d))
    return d


def _independent_fluency(folder, texts):
    """Each text alone (no padding, no batching): softmax of the classifier's logits, class 0, mean."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    ps = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt", truncation=True, max_length=32)
            ps.append(torch.softmax(model(**enc).logits[0], dim=-1)[0].item())
    return sum(ps) / len(ps), ps


def test_eval_reports_fluency_and_utility_with_it(tmp_path, random_classifier, capsys):
    import json

    from obliviate.cli import main

    out = tmp_path / "ev"
    assert main(["eval", "--model", "tiny-llama", "--data", "synthetic?n_authors=4", "--limit", "4",
                 "--utility-limit", "2", "--max-new-tokens", "24", "--no-gradnorm", "--quiet",
                 "--fluency-classifier", str(random_classifier), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    gens = [r["generation"] for r in items if r["set"] == "forget"]
    assert len(gens) == 4
    want, per = _independent_fluency(random_classifier, gens)
    assert max(per) - min(per) > 1e-3 or len(set(gens)) == 1  # a classifier that does look at the text
    assert s["forget_fluency"] == pytest.approx(want, abs=1e-5)
    # utility = HM(model utility, fluency) (no target summary: model utility as it is), by hand
    mu, fl = s["model_utility"], s["forget_fluency"]
    assert s["utility_score"] == pytest.approx(2 * mu * fl / (mu + fl))
    assert s["aggregate_notes"]["utility_score"].endswith("forget_fluency)")
    assert s["openunlearning_aggregate"] is None and "privacy_score" in s["missing"]  # no --retain-eval
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["fluency_classifier"] == str(random_classifier) and "fluency_s" in run["timings"]
    assert "forget_fluency" in printed and "utility_score" in printed and "openunlearning_aggregate" in printed


def test_eval_without_a_classifier_leaves_fluency_out_and_says_so():
    from obliviate.metaeval.aggregates import add_aggregates

    s = add_aggregates({"model_utility": 0.5, "missing": {}})
    assert "forget_fluency" not in s and s["utility_score"] == 0.5 and "no fluency" in s["aggregate_notes"]["utility_score"]


@pytest.mark.parametrize("flags, says", [
    (["--fluency-classifier", "no/such/folder"], "--fluency-classifier no/such/folder: no such folder, and not a hub id"),
    (["--no-generation", "--fluency-classifier", "{clf}"],
     "--fluency-classifier scores the greedy forget answers, which --no-generation skips"),
    (["--benchmark", "muse-news", "--fluency-classifier", "{clf}"],
     "--fluency-classifier only applies to TOFU, not to --benchmark muse-news"),
])
def test_bad_fluency_classifier_flags_are_refused_before_anything_runs(tmp_path, classifier, capsys, flags, says):
    from obliviate.cli import main

    clf_dir = tmp_path / "clf"
    clf_dir.mkdir()
    (clf_dir / "config.json").write_text("{}")
    out = tmp_path / "ev"
    argv = ["eval", "--model", "tiny-llama", "--out", str(out)]  # refused before any data is read
    assert main(argv + [f.format(clf=clf_dir) for f in flags]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_a_hub_id_goes_through_transformers_cache_and_a_folder_stays_local(tmp_path, classifier, monkeypatch):
    """No download here: from_pretrained is replaced, and what it is asked for is checked."""
    import transformers

    from obliviate.metaeval.fluency import classifier_kind

    asked = []

    def fake(cls_name):
        def from_pretrained(spec, **kw):
            asked.append((cls_name, spec, kw))
            return classifier[0] if cls_name == "model" else classifier[1]
        return from_pretrained

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", fake("model"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake("tokenizer"))
    monkeypatch.chdir(tmp_path)  # so that "org/name" is no folder here
    assert classifier_kind("madhurjindal/autonlp-Gibberish-Detector-492513457") == "hub"
    load_classifier("madhurjindal/autonlp-Gibberish-Detector-492513457")
    assert asked == [("tokenizer", "madhurjindal/autonlp-Gibberish-Detector-492513457", {}),
                     ("model", "madhurjindal/autonlp-Gibberish-Detector-492513457", {})]
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "config.json").write_text("{}")
    asked.clear()
    load_classifier("local")
    assert [kw for *_, kw in asked] == [{"local_files_only": True}] * 2
