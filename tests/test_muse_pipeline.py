"""MUSE end to end on tiny-llama and the embedded news corpus, in memory: a target model (forget + retain
articles) memorises the forget articles more than its retrain model (retain only); NPO lowers that; a
relearning attack brings more back on the unlearned model than it teaches the retrain model.

KnowMem is not asserted: a 3M-parameter random model memorises text but does not learn to answer questions
about it from articles alone (its KnowMem is 0 for every model here). VerbMem is asserted for target vs
retrain only: after NPO the tiny model's greedy text is degenerate and its ROUGE against one article is
noise (function words), so NPO and the attack are checked on the forget texts' mean token NLL (what
PrivLeak's Min-K% scores rank)."""

from __future__ import annotations

import copy

import pytest
import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter, collate
from obliviate.data.text import encode_items
from obliviate.engine.forward import sequence_logprobs
from obliviate.engine.generation import generate
from obliviate.methods import get_method, make_config
from obliviate.metrics.muse import verbmem
from obliviate.relearn import relearn_model
from obliviate.robust import wrap_step
from obliviate.train import EncodedBatches, TrainConfig, train
from obliviate.unlearn import prepare_unlearning

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Q = "?n_forget=1&n_retain=1&n_holdout=1"
CHUNK = 48
GEN = 24


@pytest.fixture(scope="module")
def news(tiny):
    _, tok = tiny
    fmt = Formatter(tok, max_length=CHUNK)
    forget_items = load_items(f"synthetic-news:raw/forget{Q}")
    retain_items = load_items(f"synthetic-news:raw/retain1{Q}")
    return {"fmt": fmt, "forget_items": forget_items, "retain_items": retain_items,
            "forget": encode_items(fmt, forget_items), "retain": encode_items(fmt, retain_items),
            "verb": load_items(f"synthetic-news:verbmem/forget{Q}")}


def _fit(tiny, rows, steps=30, lr=1e-2):
    model, tok = tiny
    model = copy.deepcopy(model)
    relearn_model(model, EncodedBatches(rows, len(rows), tok.pad_token_id, 0), steps, lr)
    return model


@pytest.fixture(scope="module")
def target(tiny, news):
    return _fit(tiny, news["forget"] + news["retain"])


@pytest.fixture(scope="module")
def retrain(tiny, news):
    return _fit(tiny, news["retain"])


@pytest.fixture(scope="module")
def npo(tiny, target, news):
    _, tok = tiny
    net = copy.deepcopy(target)
    tc = TrainConfig(epochs=20, lr=1e-2, batch_size=8, progress=False, checkpoint_every_epoch=False,
                     warmup_ratio=0.0, weight_decay=0.0)
    mcfg = make_config(get_method("npo"), {})
    prep = prepare_unlearning(net, tok, "npo", mcfg, news["forget_items"], news["retain_items"], formatter=news["fmt"],
                              tcfg=tc)
    train(prep.model, prep.batches, wrap_step(prep.objective, None), tc)
    prep.model.eval()
    return prep.model


def _verbmem(model, tok, news) -> float:
    verb = news["verb"]
    gens = generate(model, tok, [v.question for v in verb], max_new_tokens=GEN, batch_size=4)
    gts = [tok.decode(tok(v.answer, add_special_tokens=False).input_ids[:GEN]) for v in verb]
    return verbmem(gens, gts)


def _forget_nll(model, tok, news) -> float:
    batch = collate(news["forget"], tok.pad_token_id)
    with torch.no_grad():
        sums, counts = sequence_logprobs(model, batch)
    return -(sums.sum() / counts.sum()).item()


def test_text_rows_are_muse_chunks(tiny, news):
    _, tok = tiny
    assert all(len(e) == CHUNK for e in news["forget"])
    assert all(e.input_ids[0] == tok.bos_token_id and e.labels[1:] == e.input_ids[1:] for e in news["forget"])


def test_target_memorises_the_forget_articles_more_than_retrain(tiny, news, target, retrain):
    _, tok = tiny
    assert _forget_nll(target, tok, news) < _forget_nll(retrain, tok, news) - 1.0
    assert _verbmem(target, tok, news) > _verbmem(retrain, tok, news) + 0.1


def test_npo_raises_the_forget_nll(tiny, news, target, npo):
    _, tok = tiny
    nll_npo = _forget_nll(npo, tok, news)
    assert nll_npo > _forget_nll(target, tok, news) + 1.0


def test_relearning_brings_back_more_on_the_unlearned_model_than_on_retrain(tiny, news, target, retrain, npo):
    _, tok = tiny
    nll_target = _forget_nll(target, tok, news)
    nll_npo, nll_retrain = _forget_nll(npo, tok, news), _forget_nll(retrain, tok, news)
    # the attack: a few steps on the forget text, the same for the unlearned and the retrain model
    attacked = copy.deepcopy(npo)
    relearn_model(attacked, EncodedBatches(news["forget"], 4, tok.pad_token_id, 0), 3, 2e-3)
    control = copy.deepcopy(retrain)
    relearn_model(control, EncodedBatches(news["forget"], 4, tok.pad_token_id, 0), 3, 2e-3)
    # recovery as the fraction of the gap to the target that the attack closes: the retrain model starts
    # further away (NPO on a tiny model does not reach the retrain model's NLL), so absolute nats would
    # favour it (measured: NPO 4.7 -> 3.6 nats, retrain 9.1 -> 7.5, target ~2)
    frac_npo = (nll_npo - _forget_nll(attacked, tok, news)) / (nll_npo - nll_target)
    frac_retrain = (nll_retrain - _forget_nll(control, tok, news)) / (nll_retrain - nll_target)
    assert frac_npo > frac_retrain + 0.1


def test_muse_eval_on_the_written_corpus_uses_the_retrain_models_own_auc(tmp_path):
    from obliviate.data.synthetic_news import write_muse_dir
    from obliviate.evaluate import run_muse_eval

    write_muse_dir(tmp_path / "data", n_forget=4, n_retain=2, n_holdout=4)
    kw = dict(data_dir=str(tmp_path / "data"), progress=False, batch_size=8)
    r = run_muse_eval("tiny-llama?seed=1", tmp_path / "eval-retrain", **kw)
    u = run_muse_eval("tiny-llama", tmp_path / "eval-u", retain_eval=str(tmp_path / "eval-retrain"), **kw)
    assert {"verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc", "privleak"} <= set(u)
    assert 0 < r["privleak_auc"] < 1  # (random tiny models: a fixed, non-degenerate draw)
    # MUSE's (AUC_M(u) - AUC_M(r)) / AUC_M(r) x 100 with AUC_M = 1 - our privleak_auc (metrics/mia.py)
    want = ((1 - u["privleak_auc"]) - (1 - r["privleak_auc"])) / (1 - r["privleak_auc"]) * 100
    assert u["privleak"] == pytest.approx(want, abs=0.01)
