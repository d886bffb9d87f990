"""Unlearning on a MUSE-format forget set: MUSE's per-epoch evaluation and selection (--eval-every-epoch, --select),
and the methods that cannot take plain texts refused before the model loads."""

from __future__ import annotations

import json

import pytest

from obliviate.cli import main
from obliviate.data.synthetic_news import write_muse_dir
from obliviate.errors import ObliviateError
from obliviate.metrics.keys import MUSE_HEADLINE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FORGET = "synthetic-news:raw/forget?n_forget=1&n_retain=1&n_holdout=2"


@pytest.fixture()
def no_model_load(monkeypatch):
    """Any model load fails the test: the refusals below must come first."""
    import obliviate.models as models

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(models, "load_model", boom)


@pytest.mark.parametrize("method", ["idk_nll", "idk_dpo", "palu"])
def test_question_methods_are_refused_on_text_items_before_the_model_loads(tmp_path, capsys, method, no_model_load):
    out = tmp_path / "out"
    argv = ["unlearn", "--model", "tiny-llama", "--method", method, "--forget", FORGET, "--out", str(out)]
    if method == "idk_dpo":
        argv += ["--retain", "synthetic-news:raw/retain1?n_forget=1&n_retain=1&n_holdout=2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"method {method} needs a question per item" in err
    assert "the forget set is 1 plain text(s)" in err and not out.exists()


def test_prepare_unlearning_refuses_them_too(tiny):
    from obliviate.data import load_items
    from obliviate.methods import get_method, make_config
    from obliviate.unlearn import prepare_unlearning

    model, tok = tiny
    with pytest.raises(ObliviateError, match="method idk_nll needs a question per item"):
        prepare_unlearning(model, tok, "idk_nll", make_config(get_method("idk_nll"), {}), load_items(FORGET))


def test_muse_per_epoch_flags_are_checked_before_the_model_loads(tmp_path, capsys, no_model_load):
    base = ["unlearn", "--model", "tiny-llama", "--method", "grad_ascent", "--forget", FORGET, "--out",
            str(tmp_path / "o")]
    assert main(base + ["--select", "forget_quality", "--retain-eval", str(tmp_path)]) == 2
    assert "MUSE's evaluation reports no 'forget_quality'" in capsys.readouterr().err
    assert main(base + ["--eval-every-epoch", "--eval-split", "forget10"]) == 2
    assert "--eval-split forget10: MUSE's evaluation of synthetic-news?n_forget=1&n_retain=1&n_holdout=2 has no " \
           "split" in capsys.readouterr().err
    assert main(base + ["--eval-every-epoch", "--eval-data", "synthetic-news:verbmem/forget"]) == 2
    assert "takes a corpus (e.g. synthetic-news)" in capsys.readouterr().err
    (tmp_path / "not-muse").mkdir()
    (tmp_path / "not-muse" / "items.jsonl").write_text(json.dumps({"set": "forget", "index": 0}) + "\n")
    assert main(base + ["--eval-every-epoch", "--retain-eval", str(tmp_path / "not-muse")]) == 2
    assert "no privleak_forget / privleak_holdout records (not a MUSE eval)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_eval_every_epoch_and_select_on_real_muse_files(tmp_path):
    """`unlearn --eval-every-epoch --select verbmem_f` on muse-news files (--data-dir, the real-MUSE code path):
    MUSE's evaluation at the start and after each epoch, the same numbers `obliviate eval --benchmark muse-news`
    gives for the same weights, PrivLeak against the retrain model's own AUC, and the best epoch kept."""
    from obliviate.evaluate import run_muse_eval
    from obliviate.unlearn import default_train_config, run_unlearn

    data = tmp_path / "data"
    write_muse_dir(data, n_forget=1, n_retain=1, n_holdout=2)
    kw = dict(data_dir=str(data), progress=False)  # the per-epoch evaluation's batch size (32): same batches
    retrain = run_muse_eval("tiny-llama?seed=3", tmp_path / "eval-retrain", **kw)  # a random model whose AUC is not 1 (PrivLeak divides by 1 - AUC)
    before = run_muse_eval("tiny-llama", tmp_path / "eval-before", retain_eval=str(tmp_path / "eval-retrain"), **kw)
    cfg = default_train_config("grad_ascent", epochs=2, lr=5e-3, batch_size=4, progress=False)
    out = tmp_path / "ga"
    rec = run_unlearn("tiny-llama", "grad_ascent", "muse-news:raw/forget", out, cfg=cfg, data_dir=str(data),
                      max_length=64, select="verbmem_f", retain_eval=str(tmp_path / "eval-retrain"))
    assert rec["config"]["eval"]["data"] == "muse-news" and rec["config"]["eval"]["split"] is None
    evals = rec["evaluations"]
    assert [e["epoch"] for e in evals] == [0, 1, 2]
    assert all({"verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc"} <= set(e) for e in evals)
    summaries = {tag: json.loads((out / "eval" / tag / "summary.json").read_text())
                 for tag in ("initial", "epoch-1", "epoch-2")}
    for s in summaries.values():
        assert set(MUSE_HEADLINE) <= set(s)
        # MUSE's PrivLeak (AUC_M(u) - AUC_M(r)) / AUC_M(r) x 100, AUC_M = 1 - our privleak_auc
        want = ((1 - s["privleak_auc"]) - (1 - retrain["privleak_auc"])) / (1 - retrain["privleak_auc"]) * 100
        assert s["privleak"] == pytest.approx(want, abs=1e-6)
    for k in MUSE_HEADLINE:  # the initial evaluation is `eval --benchmark muse-news` of the same weights
        assert summaries["initial"][k] == pytest.approx(before[k], abs=1e-6), k
    items = [json.loads(x) for x in (out / "eval" / "epoch-2" / "items.jsonl").read_text().splitlines()]
    assert {r["set"] for r in items} == {"verbmem", "knowmem_forget", "knowmem_retain", "privleak_forget",
                                         "privleak_holdout"}
    v = [evals[1]["verbmem_f"], evals[2]["verbmem_f"]]
    assert rec["selection"]["best_epoch"] == 1 + v.index(min(v)) and rec["selection"]["value"] == min(v)
