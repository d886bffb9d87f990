"""``obliviate unlearn``: the run, its guards, per-epoch evaluation with best-epoch selection, the CLI."""

import argparse
import io
import json
import math
from contextlib import redirect_stdout

import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.methods.grad_ascent import GradAscent
from obliviate.models import load_model
from obliviate.refusals import REFUSALS, assign_refusals, load_refusals
from obliviate.registry import METHODS
from obliviate.train import TrainConfig
from obliviate.cli.unlearn import add_parser as add_unlearn_parser
from obliviate.unlearn import default_train_config, metric_direction, prepare_unlearning, run_unlearn

SMALL = dict(epochs=2, lr=1e-3, batch_size=4, progress=False, warmup_ratio=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fingerprint(model) -> float:
    return sum(p.detach().double().sum().item() for p in model.parameters())


def test_npo_run_writes_model_tokenizer_and_run_json(tmp_path):
    out = tmp_path / "npo"
    rec = run_unlearn("tiny-llama", "npo", "synthetic:forget01", out, retain="synthetic:retain99",
                      options=["beta=0.2"], cfg=TrainConfig(**SMALL))
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["command"] == "unlearn"
    assert run["config"]["method_config"] == {"beta": 0.2, "gamma": 1.0, "alpha": 1.0, "retain_loss": "nll"}
    assert run["setup"]["reference"] == "cached sequence log-likelihoods"
    assert "token_reference" not in run["setup"]  # NPO keeps no frozen copy
    assert run["config"]["n_forget"] == 10 and run["config"]["n_retain"] == 390
    assert [e["epoch"] for e in run["history"]["epochs"]] == [1, 2]  # counted from 1, as people read them
    assert {"forget", "retain", "log_ratio"} <= run["history"]["epochs"][-1]["last_logs"].keys()
    assert rec["final_loss"] == run["final_loss"]
    model, _ = load_model(str(out))
    base, _ = load_model("tiny-llama", seed=0)
    assert fingerprint(model) != fingerprint(base)
    assert (out / "checkpoints" / "epoch-1").is_dir()


# -- guards -------------------------------------------------------------------------------------------
def test_unknown_option_lists_the_options_before_loading_the_model(tmp_path):
    with pytest.raises(ObliviateError) as e:
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "x", retain="synthetic:retain99",
                    options=["betta=0.2"])
    msg = str(e.value)
    assert "method npo takes no option 'betta'" in msg
    for opt in ("beta", "gamma", "alpha", "retain_loss"):
        assert opt in msg
    with pytest.raises(ObliviateError, match="method grad_ascent takes no option 'alpha'; its options are: gamma"):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "x", options={"alpha": 1})
    with pytest.raises(ObliviateError, match="option beta='abc' is not a valid float"):
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "x", options=["beta=abc"])
    with pytest.raises(ObliviateError, match="retain_loss='l2'; valid: nll, kl"):
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "x", options=["retain_loss=l2"])
    with pytest.raises(ObliviateError, match="unknown method 'nope'"):
        run_unlearn("no-such-model", "nope", "synthetic:forget01", tmp_path / "x")
    from obliviate.robust import RobustConfig as RC

    with pytest.raises(ObliviateError, match="robust.weight_avg with train.lora would average each adapter's A and B"):
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "wa", retain="synthetic:retain99",
                    cfg=TrainConfig(lora=True), robust=RC(weight_avg=True))
    assert not (tmp_path / "wa").exists()
    with pytest.raises(ObliviateError, match="method rmu trains chosen parameters directly; LoRA"):
        run_unlearn("no-such-model", "rmu", "synthetic:forget01", tmp_path / "x", retain="synthetic:retain99",
                    cfg=TrainConfig(lora=True))
    with pytest.raises(ObliviateError, match="choose one of robust.sam_rho, robust.smooth_n, robust.grad_penalty"):
        from obliviate.robust import RobustConfig

        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "x",
                    robust=RobustConfig(sam_rho=0.01, grad_penalty=0.1))
    assert not (tmp_path / "x").exists()


def test_empty_or_missing_sets_fail_before_loading_the_model(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ObliviateError, match=r"^forget .*empty"):
        run_unlearn("no-such-model", "grad_ascent", str(empty), tmp_path / "a")
    with pytest.raises(ObliviateError, match=r"^retain .*empty"):
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "a", retain=str(empty))
    with pytest.raises(ObliviateError, match="method grad_diff needs a retain set"):
        run_unlearn("no-such-model", "grad_diff", "synthetic:forget01", tmp_path / "a")
    # a method whose retain weight is 0 needs no retain set: it gets as far as loading the model
    with pytest.raises(ObliviateError, match="unknown model 'no-such-model'"):
        run_unlearn("no-such-model", "grad_diff", "synthetic:forget01", tmp_path / "b", options=["alpha=0"])


def test_grad_penalty_with_grad_checkpointing_is_refused_before_loading_the_model(tmp_path):
    from obliviate.robust import RobustConfig

    cfg = TrainConfig(grad_checkpointing=True)
    with pytest.raises(ObliviateError, match="robust.grad_penalty .* train.grad_checkpointing"):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "a", cfg=cfg,
                    robust=RobustConfig(grad_penalty=0.1))


def test_non_finite_loss_stops_keeps_last_good_checkpoint_and_names_step_and_term(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = GradAscent.forget_loss

    def flaky(self, model, batch):
        calls["n"] += 1
        loss, logs = original(self, model, batch)
        if calls["n"] == 5:  # epoch 2 (3 steps per epoch), step 2
            loss = loss * float("nan")
            logs = {"forget": float("nan")}
        return loss, logs

    monkeypatch.setattr(GradAscent, "forget_loss", flaky)
    out = tmp_path / "ga"
    with pytest.raises(ObliviateError) as e:
        run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**{**SMALL, "epochs": 3}))
    msg = str(e.value)
    assert "epoch 2, step 2" in msg and "non-finite term(s): forget" in msg
    assert "epoch-0" in msg and "--resume" in msg
    assert (out / "checkpoints" / "epoch-0" / "state.pt").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and run["failed_at"]["epoch"] == 2 and run["failed_at"]["step"] == 2
    assert not (out / "model.safetensors").exists()


def test_select_needs_retain_eval_for_forget_quality(tmp_path):
    with pytest.raises(ObliviateError, match="needs the retain model's evaluation: eval.retain_eval"):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "s", select="forget_quality")
    with pytest.raises(ObliviateError, match="unknown direction"):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "s", select="nonsense_key")


def test_metric_direction():
    key, score = metric_direction("forget_quality")
    assert key == "forget_quality" and score(0.9) > score(0.1)
    key, score = metric_direction("model_utility")
    assert score(0.5) > score(0.4)
    key, score = metric_direction("forget_Q_A_ROUGE")  # lower is better
    assert score(0.1) > score(0.5)
    key, score = metric_direction("privleak")  # closest to 0
    assert score(-3.0) > score(10.0) and score(3.0) > score(-10.0)
    key, score = metric_direction("min:custom_key")
    assert key == "custom_key" and score(1.0) > score(2.0)
    key, score = metric_direction("max:custom_key")
    assert score(2.0) > score(1.0)


# -- per-epoch evaluation and selection ------------------------------------------------------------------
class FakeEvaluator:
    """Stands in for evaluate_tofu: scripted summaries, and a fingerprint of the weights it saw."""

    def __init__(self, values: dict[str, list[float]]):
        self.values, self.calls, self.prints, self.kwargs = values, 0, [], []

    def __call__(self, model, tokenizer, **kw):
        self.kwargs.append(kw)
        self.prints.append(fingerprint(model))
        summary = {k: v[self.calls] for k, v in self.values.items()}
        self.calls += 1
        return summary, [{"set": "forget", "index": 0, "question": "q", "answer": "a", "avg_nll": 1.0}]


def test_eval_every_epoch_and_select_best_epoch(tmp_path):
    retain_eval = tmp_path / "retain_eval"
    retain_eval.mkdir()
    (retain_eval / "items.jsonl").write_text(json.dumps({"set": "forget", "index": 0, "avg_nll": 1.0}) + "\n")
    # initial, epoch 1, epoch 2, epoch 3: forget quality is best after epoch 2
    ev = FakeEvaluator({"forget_quality": [1e-9, 0.01, 0.5, 0.1], "model_utility": [0.6, 0.5, 0.45, 0.3],
                        "forget_Q_A_ROUGE": [0.9, 0.2, 0.4, 0.6]})
    out = tmp_path / "sel"
    rec = run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**{**SMALL, "epochs": 3}),
                      select="forget_quality", retain_eval=str(retain_eval), evaluator=ev, eval_limit=5)
    assert ev.calls == 4  # at the start and after each epoch
    kw = ev.kwargs[0]
    assert kw["data"] == "synthetic" and kw["split"] == "forget01" and kw["limit"] == 5
    assert kw["retain_records"] == [{"set": "forget", "index": 0, "avg_nll": 1.0}]
    assert rec["selection"] == {"key": "forget_quality", "spec": "forget_quality", "best_epoch": 2,
                                "value": 0.5}
    assert [e["epoch"] for e in rec["evaluations"]] == [0, 1, 2, 3]
    assert rec["history"]["initial"]["forget_quality"] == 1e-9
    assert rec["history"]["epochs"][1]["eval"]["forget_quality"] == 0.5
    for tag in ("initial", "epoch-1", "epoch-2", "epoch-3"):
        assert (out / "eval" / tag / "summary.json").exists() and (out / "eval" / tag / "items.jsonl").exists()
    saved, _ = load_model(str(out))
    assert math.isclose(fingerprint(saved), ev.prints[2], rel_tol=1e-9)  # epoch 2's weights were kept
    assert not math.isclose(ev.prints[2], ev.prints[3], rel_tol=1e-9)

    # a lower-is-better key picks epoch 1
    ev2 = FakeEvaluator({"forget_Q_A_ROUGE": [0.9, 0.2, 0.4, 0.6]})
    rec2 = run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", tmp_path / "sel2",
                       cfg=TrainConfig(**{**SMALL, "epochs": 3}), select="forget_Q_A_ROUGE", evaluator=ev2)
    assert rec2["selection"]["best_epoch"] == 1
    saved2, _ = load_model(str(tmp_path / "sel2"))
    assert math.isclose(fingerprint(saved2), ev2.prints[1], rel_tol=1e-9)


def test_weight_averaging_saves_the_average(tmp_path):
    from obliviate.robust import RobustConfig

    ev = FakeEvaluator({"model_utility": [0.5, 0.5, 0.5]})
    out = tmp_path / "wa"
    rec = run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**SMALL),
                      robust=RobustConfig(weight_avg=True, avg_start=2, avg_every=2), eval_every_epoch=True,
                      evaluator=ev)
    assert rec["weight_averaging"] == {"start": 2, "every": 2, "snapshots": 3}  # steps 2, 4, 6
    assert rec["robust_active"] == ["weight_avg"]
    saved, _ = load_model(str(out))
    assert math.isclose(fingerprint(saved), ev.prints[-1], rel_tol=1e-9)  # eval saw the averaged weights


def test_weight_averaging_that_never_started_says_so(tmp_path, capsys):
    from obliviate.robust import RobustConfig

    rec = run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", tmp_path / "wa", cfg=TrainConfig(**SMALL),
                      robust=RobustConfig(weight_avg=True, avg_start=100))
    assert rec["weight_averaging"]["snapshots"] == 0
    assert "ended before step 100 (--avg-start)" in rec["weight_averaging"]["note"]
    assert "note: --weight-avg: the run ended before step 100" in capsys.readouterr().err


# -- CLI ----------------------------------------------------------------------------------------------------
def _parser():
    ap = argparse.ArgumentParser(prog="obliviate")
    sub = ap.add_subparsers(dest="command", required=True)
    add_unlearn_parser(sub)
    return ap


def test_cli_parser_and_command(tmp_path, capsys):
    args = _parser().parse_args([
        "unlearn", "--model", "tiny-llama", "--method", "npo", "--forget", "synthetic:forget01",
        "--retain", "synthetic:retain99", "--out", str(tmp_path / "cli"), "--epochs", "1", "--lr", "1e-3",
        "--batch-size", "5", "--gamma", "0.5", "--quiet", "--sam-rho", "0.01", "--grad-checkpointing", "beta=0.3",
    ])
    assert args.options == ["beta=0.3"] and args.gamma == 0.5
    assert getattr(args, "robust.sam_rho") == 0.01  # a flag's destination is its field's path
    assert args.func(args) == 0
    run = json.loads((tmp_path / "cli" / "run.json").read_text())
    assert run["config"]["method_config"]["beta"] == 0.3 and run["config"]["method_config"]["gamma"] == 0.5
    assert run["config"]["train"]["batch_size"] == 5 and run["config"]["train"]["warmup_ratio"] == 1.0
    assert run["robust_active"] == ["sam"] and run["config"]["train"]["grad_checkpointing"] is True
    assert "wrote" in capsys.readouterr().out
    bad = _parser().parse_args(["unlearn", "--model", "m", "--method", "grad_ascent", "--forget",
                                "synthetic:forget01", "--out", str(tmp_path / "bad"), "--beta", "0.1"])
    with pytest.raises(ObliviateError, match="method grad_ascent takes no option 'beta'"):
        bad.func(bad)


def test_ls_methods_json_lists_metadata():
    from obliviate.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["ls", "methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(buf.getvalue())}
    expected = {"grad_ascent", "grad_diff", "npo", "simnpo", "idk_nll", "idk_dpo", "rmu", "undial", "wga",
                "satimp", "ce_u", "pdu", "palu"}
    assert expected <= rows.keys()
    for name, r in rows.items():
        assert {"needs_reference", "needs_retain", "level", "paper", "arxiv", "options", "description"} <= r.keys()
    assert rows["npo"]["needs_reference"] is True and rows["npo"]["reference"] == "sequence"
    assert rows["npo"]["level"] == "sequence" and rows["npo"]["arxiv"] == "2404.05868"
    assert rows["simnpo"]["needs_reference"] is False and rows["simnpo"]["options"]["beta"] == 4.5
    assert rows["undial"]["reference"] == "token" and rows["undial"]["needs_retain"] is False
    assert rows["rmu"]["level"] == "representation" and rows["grad_ascent"]["needs_retain"] is False
    assert rows["palu"]["arxiv"] == "2601.03190"
    assert rows["grad_diff"]["reference"] is None and rows["grad_diff"]["reference_with_retain_loss_kl"] == ["token"]
    assert rows["npo"]["reference_with_retain_loss_kl"] == ["sequence", "token"]
    assert rows["grad_ascent"]["reference_with_retain_loss_kl"] is None  # no retain term at all
    assert set(rows) == set(METHODS.names())


def test_default_train_config_follows_the_method():
    assert default_train_config("undial").lr == 1e-4
    c = default_train_config("wga")
    assert c.epochs == 5 and abs(c.warmup_ratio - 0.2) < 1e-12 and c.batch_size == 32
    c = default_train_config("npo", epochs=4, lr=2e-5)
    assert c.epochs == 4 and c.lr == 2e-5 and c.warmup_ratio == 0.25


# -- refusals ----------------------------------------------------------------------------------------------
def test_refusals_own_list_and_files(tmp_path, tofu_dir):
    assert len(REFUSALS) >= 30 and len(set(REFUSALS)) == len(REFUSALS)
    tofu = load_refusals(tofu_dir / "idontknow.jsonl")
    assert len(tofu) >= 90 and all(isinstance(s, str) and s for s in tofu)
    f = tmp_path / "r.jsonl"
    f.write_text('"I do not know."\n{"answer": "No idea."}\nplain line\n\n')
    assert load_refusals(f) == ["I do not know.", "No idea.", "plain line"]
    with pytest.raises(ObliviateError, match="file not found"):
        load_refusals(tmp_path / "nope.jsonl")
    a = assign_refusals(50, list(REFUSALS), seed=1)
    assert a == assign_refusals(50, list(REFUSALS), seed=1) and len(set(a)) > 10


def test_rmu_layer_outside_the_model_is_explained(tmp_path):
    out = tmp_path / "rmu"
    with pytest.raises(ObliviateError, match=r"layer=7 but the model has 2 decoder layers \(valid: 0..1\)"):
        run_unlearn("tiny-llama", "rmu", "synthetic:forget01", out, retain="synthetic:retain99",
                    cfg=TrainConfig(**SMALL))
    assert not out.exists()  # a refusal found after the model loaded leaves --out as it was


def test_palu_k_above_the_vocabulary_is_refused(tmp_path):
    vocab = load_model("tiny-llama")[0].get_output_embeddings().weight.shape[0]
    with pytest.raises(ObliviateError, match=rf"palu: k={vocab + 1} is larger than the vocabulary \({vocab} tokens\)"):
        run_unlearn("tiny-llama", "palu", "synthetic:forget01", tmp_path / "p", retain="synthetic:retain99",
                    options={"k": str(vocab + 1)}, cfg=TrainConfig(**SMALL))


def test_pdu_run_moves_its_dual_variable_once_per_optimiser_step(tmp_path):
    # 10 forget items, micro-batches of 5, 2 accumulated per step: 1 optimiser step per epoch, 2 in all.
    # eta = 0 would keep lambda at lambda_0; with eta > 0 it moves once per step (from the step's mean NLL).
    cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=5, grad_accum=2, progress=False, warmup_ratio=0.0)
    run_unlearn("tiny-llama", "pdu", "synthetic:forget01", tmp_path / "p", retain="synthetic:retain99",
                options=["alpha=1", "dual_step_size=0.01", "eps=0.0", "dual_warmup_epochs=0"], cfg=cfg)
    run = json.loads((tmp_path / "p" / "run.json").read_text())
    lam = run["method_state"]["dual_lambda"]
    # tiny-llama's retain NLL is ~10.8 (random init over a 49k vocabulary): 2 updates of 0.01 * ~10.8
    assert 1.0 + 2 * 0.01 * 10.0 < lam < 1.0 + 2 * 0.01 * 11.5, lam


# -- resume ---------------------------------------------------------------------------------------------------
class Crash(Exception):
    pass


def _crash_after_epoch(monkeypatch, crash_epoch: int):
    """Make the run die right after the per-epoch checkpoint of ``crash_epoch`` (0-based) is written."""
    import obliviate.train as train_mod

    real = train_mod._save_checkpoint

    def save_then_crash(root, epoch, *a, **kw):
        real(root, epoch, *a, **kw)
        if epoch == crash_epoch:
            raise Crash(f"killed after epoch {epoch + 1}")

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_crash)


def _weights(path):
    model, _ = load_model(str(path))
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("grad_accum", [pytest.param(1, marks=pytest.mark.slow), 2])  # 27 s and 12 s
def test_resume_restores_dual_variable_noise_generator_and_weight_average(tmp_path, monkeypatch, grad_accum):
    """An interrupted and resumed run ends with the same weights, lambda and average as an uninterrupted one:
    PDU's lambda, the smoothing generator and the running average are in the checkpoint. With grad_accum 2,
    the 3 micro-batches of an epoch (4 + 4 + 2 items) make 2 optimiser steps, the second from one batch."""
    from obliviate.robust import RobustConfig

    steps: dict = {}

    def run(out, resume=False):
        rec = run_unlearn(
            "tiny-llama", "pdu", "synthetic:forget01", out, retain="synthetic:retain99",
            options=["alpha=1", "dual_step_size=0.05", "eps=0.0", "dual_warmup_epochs=0"],
            cfg=TrainConfig(**{**SMALL, "epochs": 3, "grad_accum": grad_accum}),
            robust=RobustConfig(smooth_n=2, smooth_sigma=1e-2, weight_avg=True, avg_start=1, avg_every=1),
            resume=resume)
        steps[out.name] = rec["history"]["steps_per_epoch"]
        return rec

    whole = run(tmp_path / "whole")
    with monkeypatch.context() as m:
        _crash_after_epoch(m, 0)
        with pytest.raises(Crash):
            run(tmp_path / "cut")
    resumed = run(tmp_path / "cut", resume=True)
    assert [e["epoch"] for e in resumed["history"]["epochs"]] == [1, 2, 3]
    # lambda moved at every step, from the retain NLL; restarting it from lambda_0 would differ
    assert resumed["method_state"]["dual_lambda"] == whole["method_state"]["dual_lambda"] != 1.0
    n_steps = 3 * (3 if grad_accum == 1 else 2)
    assert steps == {"whole": n_steps // 3, "cut": n_steps // 3}
    assert resumed["weight_averaging"] == whole["weight_averaging"] == {"start": 1, "every": 1,
                                                                       "snapshots": n_steps}
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    for n in a:
        assert torch.equal(a[n], b[n]), n


def test_resume_keeps_the_best_epoch_and_evaluations_from_before_the_interruption(tmp_path, monkeypatch):
    def run(out, ev, resume=False):
        return run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out,
                           cfg=TrainConfig(**{**SMALL, "epochs": 3}), select="forget_Q_A_ROUGE", evaluator=ev,
                           resume=resume)

    # initial, epoch 1, epoch 2, epoch 3: epoch 1 is best (lowest)
    whole = run(tmp_path / "whole", FakeEvaluator({"forget_Q_A_ROUGE": [0.9, 0.2, 0.4, 0.6]}))
    with monkeypatch.context() as m:
        _crash_after_epoch(m, 1)  # dies after epoch 2: epoch 1, the best, is only in the checkpoint
        with pytest.raises(Crash):
            run(tmp_path / "cut", FakeEvaluator({"forget_Q_A_ROUGE": [0.9, 0.2, 0.4]}))
    ev = FakeEvaluator({"forget_Q_A_ROUGE": [0.6]})  # the resumed run evaluates epoch 3 only
    resumed = run(tmp_path / "cut", ev, resume=True)
    assert ev.calls == 1
    assert resumed["selection"] == whole["selection"] and whole["selection"]["best_epoch"] == 1
    assert [e["epoch"] for e in resumed["evaluations"]] == [0, 1, 2, 3]
    assert resumed["evaluations"] == whole["evaluations"]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    for n in a:
        assert torch.equal(a[n], b[n]), n


def test_resume_with_other_method_options_is_refused_before_loading_the_model(tmp_path, monkeypatch):
    out = tmp_path / "npo"
    with monkeypatch.context() as m:
        _crash_after_epoch(m, 0)
        with pytest.raises(Crash):
            run_unlearn("tiny-llama", "npo", "synthetic:forget01", out, retain="synthetic:retain99",
                        cfg=TrainConfig(**SMALL))
    import obliviate.models

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(obliviate.models, "load_model", no_load)
    with pytest.raises(ObliviateError, match=r"method_config.beta: 0.1 -> 0.5"):
        run_unlearn("tiny-llama", "npo", "synthetic:forget01", out, retain="synthetic:retain99",
                    options=["beta=0.5"], cfg=TrainConfig(**SMALL), resume=True)
    with pytest.raises(ObliviateError, match="holds an `obliviate unlearn` run, not `finetune`"):
        from obliviate.finetune import run_finetune

        run_finetune("tiny-llama", "synthetic:forget01", out, TrainConfig(**SMALL), resume=True)


@pytest.mark.parametrize("method, option, message", [
    ("npo", "beta=0", "beta=0.0 must be > 0"),
    ("palu", "k=0", "k=0 must be > 0"),
    ("ce_u", "ignore_first=-1", "ignore_first=-1 must be >= 0"),
    ("satimp", "beta2=-1", "beta2=-1.0 must be >= 0"),
    ("wga", "beta=-0.5", "beta=-0.5 must be >= 0"),
    ("undial", "beta=-3", "beta=-3.0 must be >= 0"),
    ("pdu", "eps=-1", "eps=-1.0 must be >= 0"),
    ("rmu", "layer=-1", "layer=-1 must be >= 0"),  # it said 'update_layers [5, 6, 7] must not be above layer -1'
    ("grad_diff", "alpha=-1", "alpha=-1.0 must be >= 0"),
])
def test_out_of_range_method_options_are_refused_before_the_model_loads(tmp_path, method, option, message):
    with pytest.raises(ObliviateError, match=f"method {method}: {message}"):
        run_unlearn("no-such-model", method, "synthetic:forget01", tmp_path / "o", retain="synthetic:retain99",
                    options=[option], cfg=TrainConfig(**SMALL))
    assert not (tmp_path / "o").exists()


def test_ce_u_ignore_first_that_skips_every_answer_token_is_refused(tmp_path, capsys):
    """ignore_first at or above every answer's length would train on nothing (a loss of 0 at every step)."""
    from obliviate.data import load_items
    from obliviate.data.formatting import Formatter
    from obliviate.methods import get_method, make_config

    model, tok = load_model("tiny-llama")
    items = load_items("synthetic:forget01")[:3]
    fmt = Formatter(tok)
    n = [sum(1 for t in fmt.encode(it.question, it.answer).labels if t != -100) for it in items]
    with pytest.raises(ObliviateError, match=rf"ignore_first={max(n)} skips every answer token of the forget set "
                                             rf"\(its longest answer has {max(n)} tokens\); give ignore_first="
                                             rf"{max(n) - 1} or less"):
        prepare_unlearning(model, tok, "ce_u", make_config(get_method("ce_u"), {"ignore_first": max(n)}), items, None)
    assert min(n) < max(n)  # so that a value between them leaves some items without a trained token
    prepare_unlearning(model, tok, "ce_u", make_config(get_method("ce_u"), {"ignore_first": min(n)}), items, None)
    assert f"skips all the answer tokens of {sum(k <= min(n) for k in n)} of the 3 forget items" in \
        capsys.readouterr().err
