"""MUSE pools in the meta-evaluation: the pools file on a MUSE corpus, and `obliviate meta-eval` end to end on
tiny-llama and the embedded news corpus (2 forget, 2 retain, 2 holdout articles; target-style = forget +
retain articles, retrain-style = retain articles, each at 2 epoch counts; both attacks on the retrain-style
models). Values are checked against independent computations from the saved records (rouge_score's own
scorer, the PrivLeak formula), never against the corpus's exact text."""

import json
from pathlib import Path

import pytest

from obliviate.data import load_items
from obliviate.errors import ObliviateError
from obliviate.metaeval.pools import PoolRunner, load_pools
from obliviate.metaeval.scores import KNOWLEDGE, knowledge

from metaeval_cli import cli, write_pools

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Q = "n_forget=2&n_retain=2&n_holdout=2"
POOLS = f"""\
model: tiny-llama
data: synthetic-news?{Q}
max_length: 48
grid: {{lr: [1.0e-2], epochs: [20, 40]}}
train: {{batch_size: 4, warmup_ratio: 0.0, weight_decay: 0.0, seed: 0}}
eval: {{batch_size: 8}}
attacks:
  relearn: {{fraction: 0.5, lr: 3.0e-3, epochs: 2, batch_size: 8}}
  quantize: {{method: simulated}}
"""


def write(tmp_path, text=POOLS, name="pools.yaml"):
    return write_pools(tmp_path, text, name)


# ------------------------------------------------------------------------------------------ pools file
def test_a_muse_corpus_makes_target_and_retrain_pools(tmp_path):
    cfg = load_pools(write(tmp_path))
    assert cfg["benchmark"] == "muse" and cfg["split"] is None and cfg["style"] is None
    by = {m["name"]: m for m in cfg["models"]}
    assert list(by) == ["target_lr0.01_ep20", "target_lr0.01_ep40", "retrain_lr0.01_ep20", "retrain_lr0.01_ep40"]
    assert by["target_lr0.01_ep20"]["data"] == f"synthetic-news:raw/forget?{Q}+synthetic-news:raw/retain1?{Q}"
    assert by["retrain_lr0.01_ep40"]["data"] == f"synthetic-news:raw/retain1?{Q}"
    assert [m["role"] for m in cfg["models"]] == ["positive"] * 2 + ["negative"] * 2
    assert cfg["retain_control"] == "retrain_lr0.01_ep20"
    runner = PoolRunner(cfg, tmp_path / "out")
    assert set(runner.sets) == {"verbmem", "knowmem_forget", "knowmem_retain", "knowmem_forget_icl",
                                "knowmem_retain_icl", "privleak_forget", "privleak_holdout"}
    # the relearning attack trains on the first half of the forget articles, as text
    rel = runner.relearn_items()
    articles = load_items(f"synthetic-news:raw/forget?{Q}")
    assert len(articles) == 2 and [(it.question, it.answer) for it in rel] == [("", articles[0].answer)]


@pytest.mark.parametrize("extra, match", [
    ("split: forget10\n", "split: applies to TOFU pools"),
    ("style: plain\n", "style: applies to TOFU pools"),
    ("positives: [full]\n", "unknown kind 'full'; built-in kinds of MUSE pools: target, retrain"),
])
def test_muse_pools_refuse_tofu_settings(tmp_path, extra, match):
    with pytest.raises(ObliviateError, match=match):
        load_pools(write(tmp_path, POOLS + extra))


def test_muse_pools_refuse_tofu_eval_keys_and_data_specs(tmp_path):
    with pytest.raises(ObliviateError, match="eval.gradnorm: applies to TOFU pools; MUSE pools take limit, batch_size"):
        load_pools(write(tmp_path, POOLS.replace("eval: {batch_size: 8}", "eval: {gradnorm: false}")))
    with pytest.raises(ObliviateError, match="is a data spec; give the family or corpus"):
        load_pools(write(tmp_path, POOLS.replace(f"synthetic-news?{Q}", "synthetic-news:raw/forget")))


def test_the_shipped_news_pools_file_loads():
    import obliviate.metaeval as me

    cfg = load_pools(Path(me.__file__).parent / "pools" / "tiny_news.yaml")
    assert cfg["benchmark"] == "muse" and len(cfg["models"]) == 8
    assert cfg["retain_control"] == "retrain_lr0.01_ep30"


def test_every_meta_evaluable_metric_has_a_registered_direction():
    from obliviate.metrics.keys import direction

    assert [k for k in KNOWLEDGE if direction(k) is None] == []
    # MUSE's forget metrics: lower is better for the unlearned model, higher m = knows the forget articles
    assert direction("verbmem_f") == direction("knowmem_f") == "lower"
    assert knowledge("verbmem_f", 0.7) == 0.7 and knowledge("privleak", -100.0) == 1.0


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metamuse")
    out = tmp / "out"
    assert cli([str(write(tmp)), "--out", str(out), "--quiet", "--n-boot", "50"]) == 0
    return {"out": out, "table": json.loads((out / "table.json").read_text())}


def _records(meta, name, sub=""):
    path = meta["out"] / "evals" / name / sub / "items.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _metric(meta, key):
    return next(r for r in meta["table"]["metrics"] if r["key"] == key)


def test_verbmem_separates_target_style_from_retrain_style_models(meta):
    r = _metric(meta, "verbmem_f")
    assert (r["n_positive"], r["n_negative"]) == (2, 2)
    assert r["faithfulness"] > 0.5, meta["table"]["models"]
    # the AUC by hand: the share of (target, retrain) pairs the target-style model has more VerbMem in
    v = {m["name"]: m["summary"]["verbmem_f"] for m in meta["table"]["models"]}
    pos = [x for n, x in v.items() if n.startswith("target")]
    neg = [x for n, x in v.items() if n.startswith("retrain")]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert r["faithfulness"] == pytest.approx(wins / 4)


def test_every_muse_forget_metric_is_meta_evaluated(meta):
    keys = [r["key"] for r in meta["table"]["metrics"]]
    assert set(keys) == {"verbmem_f", "knowmem_f", "privleak_auc", "privleak"}  # knowmem_r: utility, no orientation
    for r in meta["table"]["metrics"]:
        assert r["faithfulness"] is not None and 0 <= r["faithfulness"] <= 1
    md = (meta["out"] / "table.md").read_text()
    assert "(MUSE)" in md and "| verbmem_f | knowmem_f | knowmem_r | privleak_auc | privleak |" in md


def test_muse_summaries_match_an_independent_computation_from_the_records(meta):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)  # MUSE's: ROUGE-L F1, unstemmed
    models = {m["name"]: m for m in meta["table"]["models"]}
    for name, m in models.items():
        verb = [r for r in _records(meta, name) if r["set"] == "verbmem"]
        assert len(verb) == 2
        want = sum(scorer.score(r["answer"], r["generation"])["rougeL"].fmeasure for r in verb) / len(verb)
        assert m["summary"]["verbmem_f"] == pytest.approx(want, abs=1e-9), name
    # PrivLeak against the retain control (the first retrain-style model): 0 for itself, and MUSE's
    # (AUC_r - AUC_m) / (1 - AUC_r) x 100 in our orientation for every other model
    ref = models["retrain_lr0.01_ep20"]["summary"]["privleak_auc"]
    assert models["retrain_lr0.01_ep20"]["summary"]["privleak"] == 0.0
    for name, m in models.items():
        s = m["summary"]
        assert s["privleak"] == pytest.approx((ref - s["privleak_auc"]) / (1 - ref) * 100, abs=1e-9), name


def test_the_retrain_style_models_are_attacked_and_the_target_style_ones_are_not(meta):
    for m in meta["table"]["models"]:
        attacked = m["role"] == "negative"
        assert (m["relearned"] is not None, m["quantized"] is not None) == (attacked, attacked), m["name"]
        assert (meta["out"] / "evals" / m["name"] / "relearned" / "items.jsonl").exists() == attacked
    r = _metric(meta, "verbmem_f")
    assert r["n_called_unlearned"] >= 1 and r["n_Q"] == r["n_called_unlearned"]
    for f in ("R", "Q", "robustness", "overall"):
        assert r[f] is not None and 0 <= r[f] <= 1, (f, r)
    index = json.loads((meta["out"] / "index.json").read_text())
    assert index["retrain_lr0.01_ep40"]["stages"]["quantize"]["method"] == "simulated"
    assert "(MUSE)" in (meta["out"] / "report.md").read_text()
