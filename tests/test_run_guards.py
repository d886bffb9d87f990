"""Guards around a training run's inputs and output folder (finetune and unlearn): bad settings are refused
before the model loads with the flag named; --overwrite replaces an obliviate output folder (and only one);
run.json never stays "running" after an error or Ctrl-C; --resume refuses a checkpoint beyond --epochs."""

import json

import pytest

import obliviate.train as train_mod
from obliviate.cli import main
from obliviate.errors import ObliviateError
from obliviate.finetune import run_finetune
from obliviate.io import prepare_out_dir
from obliviate.methods import parse_options
from obliviate.robust import RobustConfig
from obliviate.train import TrainConfig
from obliviate.unlearn import default_train_config, run_unlearn

SMALL = dict(epochs=1, lr=1e-3, batch_size=4, progress=False, warmup_ratio=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("flags, named", [
    (["--lr", "nan"], "--lr nan: must be a finite number > 0"),
    (["--lr", "-1"], "--lr -1.0: must be a finite number > 0"),
    (["--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
    (["--grad-accum", "0"], "--grad-accum 0: must be an integer >= 1"),
    (["--lora", "--lora-r", "0"], "--lora-r 0: must be an integer >= 1"),
    (["--epochs", "0"], "--epochs 0: must be an integer >= 1"),
    (["--warmup-ratio", "2"], "--warmup-ratio 2.0: must be between 0 and 1"),
    (["--weight-decay", "-5"], "--weight-decay -5.0: must be a finite number >= 0"),
    (["--sam-rho", "nan"], "--sam-rho nan: must be a finite number"),
    (["--max-length", "0"], "--max-length 0: must be an integer >= 2"),
    (["beta=nan"], "option beta='nan' must be a finite number"),
    (["gamma=inf"], "option gamma='inf' must be a finite number"),
])
def test_bad_settings_are_one_line_errors_before_the_model_loads(tmp_path, capsys, flags, named):
    out = tmp_path / "o"
    code = main(["unlearn", "--model", "no-such-model", "--method", "npo", "--forget", "synthetic:forget01",
                 "--retain", "synthetic:retain99", "--out", str(out), "--quiet", *flags])
    err = capsys.readouterr().err
    assert code == 2 and named in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before the output folder was made (and before the model: no such model)


def test_finetune_validates_its_settings_before_loading(tmp_path):
    with pytest.raises(ObliviateError, match="batch_size 0: must be an integer >= 1"):
        run_finetune("no-such-model", "synthetic:forget01", tmp_path / "f", TrainConfig(**{**SMALL, "batch_size": 0}))
    assert not (tmp_path / "f").exists()


def test_epochs_zero_is_not_replaced_by_the_method_default():
    cfg = default_train_config("npo", epochs=0)
    assert cfg.epochs == 0
    with pytest.raises(ObliviateError, match="epochs 0: must be an integer >= 1"):
        cfg.validate()
    assert default_train_config("npo").epochs == 10 and default_train_config("npo", epochs=3).epochs == 3


def test_robust_settings_must_be_finite():
    for kw, flag in ((dict(sam_rho=float("inf")), "sam_rho"), (dict(smooth_n=2, smooth_sigma=float("nan")),
                                                                  "smooth_sigma"),
                     (dict(grad_penalty=float("nan")), "grad_penalty")):
        with pytest.raises(ObliviateError, match=flag):
            RobustConfig(**kw).validate()


# -- the output folder ---------------------------------------------------------------------------------
def test_overwrite_empties_an_obliviate_folder_and_leaves_others_alone(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "epoch-9").mkdir(parents=True)
    (out / "checkpoints" / "epoch-9" / "state.pt").write_bytes(b"old")
    (out / "model.safetensors").write_bytes(b"old")
    (out / "run.json").write_text(json.dumps({"status": "done"}))
    with pytest.raises(ObliviateError, match="exists and is not empty; pass --overwrite"):
        prepare_out_dir(out)
    prepare_out_dir(out, overwrite=True)
    assert out.is_dir() and list(out.iterdir()) == []  # no old checkpoint can be resumed as this run's

    other = tmp_path / "home"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ObliviateError, match="has no run.json, so it is not an obliviate output folder"):
        prepare_out_dir(other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ObliviateError, match="exists and is not a folder"):
        prepare_out_dir(f, overwrite=True)


def test_a_folder_left_by_a_failed_start_is_reused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "failed"}))
    prepare_out_dir(out)  # the corrected command needs no --overwrite
    (out / "run.json").write_text(json.dumps({"status": "done"}))
    with pytest.raises(ObliviateError, match="not empty"):
        prepare_out_dir(out)


def test_overwrite_of_a_failed_run_cannot_resume_the_old_checkpoint(tmp_path):
    out = tmp_path / "ga"
    run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**{**SMALL, "epochs": 2}))
    assert (out / "checkpoints" / "epoch-1").is_dir()
    run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**SMALL), overwrite=True)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0"]


# -- run.json after an error or Ctrl-C; --resume and --epochs --------------------------------------------
@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt, "interrupted"), (RuntimeError, "failed")])
def test_run_json_says_how_the_run_ended(tmp_path, monkeypatch, capsys, exc, status):
    real = train_mod._save_checkpoint

    def save_then_stop(root, epoch, *a, **kw):  # stops in the second epoch's checkpoint
        real(root, epoch, *a, **kw)
        if epoch == 1:
            raise exc("stopped")

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_stop)
    out = tmp_path / "ft"
    with pytest.raises(exc):
        run_finetune("tiny-llama", "synthetic:forget01", out, TrainConfig(**{**SMALL, "epochs": 3}))
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == status
    # the epoch that finished is in run.json (the one stopped in its checkpoint is not)
    assert [e["epoch"] for e in run["history"]["epochs"]] == [1] and run["history"]["epochs"][0]["mean_loss"] > 0
    if exc is RuntimeError:
        assert run["error"] == "RuntimeError: stopped"  # an ObliviateError keeps its message alone
    else:
        assert "continue with the same command and --resume" in capsys.readouterr().err
        assert run["signal"] == "SIGINT"


def test_resume_refuses_a_checkpoint_beyond_epochs(tmp_path):
    out = tmp_path / "ga"
    run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**{**SMALL, "epochs": 3}))
    with pytest.raises(ObliviateError, match="holds 3 epochs, more than --epochs 1; give --epochs 3 to write the model it holds"):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**SMALL),
                    resume=True)


# -- messages ---------------------------------------------------------------------------------------------
def test_messages_name_what_is_wrong(tmp_path):
    f = tmp_path / "f.jsonl"
    f.write_text('{"question": "q", "answer": null}\n')
    with pytest.raises(ObliviateError, match=r"row 1: field 'answer' is null"):
        run_unlearn("no-such-model", "grad_ascent", str(f), tmp_path / "a", cfg=TrainConfig(**SMALL))
    with pytest.raises(ObliviateError) as e:  # PDU's constraint is on the retain loss: alpha=0 does not help
        run_unlearn("no-such-model", "pdu", "synthetic:forget01", tmp_path / "b", options=["alpha=0"],
                    cfg=TrainConfig(**SMALL))
    assert "needs a retain set" in str(e.value) and "alpha=0" not in str(e.value)
    with pytest.raises(ObliviateError, match="set alpha=0 to drop its retain term"):  # NPO: it does
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "c", cfg=TrainConfig(**SMALL))
    with pytest.raises(ObliviateError, match=r"^--retain-eval .*nope: "):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "d", cfg=TrainConfig(**SMALL),
                    eval_every_epoch=True, retain_eval=str(tmp_path / "nope"))


def test_output_files_get_the_usual_mode_not_the_temp_files_0600(tmp_path):
    from obliviate.io import atomic_write_json, file_mode

    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == file_mode()
    out = tmp_path / "ga"
    run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", out, cfg=TrainConfig(**SMALL))
    for name in ("run.json", "model.safetensors", "config.json"):
        assert (out / name).stat().st_mode & 0o777 == file_mode(), name


def test_inputs_that_would_be_misread_are_refused(tmp_path):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes('{"question": "q", "answer": "a"}\n{"question": "caf\u00e9", "answer": "a"}\n'.encode("latin-1"))
    with pytest.raises(ObliviateError, match=r"latin1.jsonl: not UTF-8 text \(line 2"):
        run_unlearn("no-such-model", "grad_ascent", str(f), tmp_path / "a", cfg=TrainConfig(**SMALL))
    with pytest.raises(ObliviateError, match="method option beta given twice"):
        parse_options(["beta=0.2", "beta=0.3"])
    idk = tmp_path / "idk.jsonl"
    idk.write_text('{"answer": "I do not know."}\n{bad\n')
    with pytest.raises(ObliviateError, match=r"line 2 starts like JSON but is not valid JSON"):
        run_unlearn("no-such-model", "idk_nll", "synthetic:forget01", tmp_path / "b", retain="synthetic:retain99",
                    idk_file=str(idk), cfg=TrainConfig(**SMALL))
    with pytest.raises(ObliviateError, match="idk_file is used by idk_dpo, idk_nll only, not by npo"):
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "c", retain="synthetic:retain99",
                    idk_file=str(idk), cfg=TrainConfig(**SMALL))


@pytest.mark.parametrize("flags, says", [
    (["--smooth-sigma", "0.01"], "--smooth-sigma only applies with --smooth-n N"),
    (["--avg-start", "5"], "--avg-start only applies with --weight-avg"),
    (["--retain-eval", "runs/x"], "--retain-eval only applies with --eval-every-epoch or --select"),
    (["--eval-data", "tofu", "--eval-split", "forget10"],
     "--eval-data, --eval-split only apply with --eval-every-epoch or --select"),
])
def test_a_setting_without_its_switch_is_refused_not_ignored(tmp_path, capsys, flags, says):
    code = main(["unlearn", "--model", "no-such-model", "--method", "grad_ascent", "--forget", "synthetic:forget01",
                 "--out", str(tmp_path / "o"), *flags])
    assert code == 2 and says in capsys.readouterr().err


# -- --overwrite never deletes a run's own input, and refuses a bad --model before emptying anything ----------
def _saved_tiny(path):
    from obliviate.models import load_model, save_model

    model, tok = load_model("tiny-llama")
    save_model(model, tok, path)
    return path


def test_out_holding_the_model_is_refused_and_the_model_kept(tmp_path, capsys):
    m = _saved_tiny(tmp_path / "m")
    (m / "run.json").write_text(json.dumps({"status": "done"}))  # an obliviate output folder (finetune's)
    for argv in (["eval", "--model", str(m), "--data", "synthetic", "--split", "forget01", "--limit", "2"],
                 ["finetune", "--model", str(m), "--data", "synthetic:forget01"],
                 ["unlearn", "--model", str(m), "--method", "grad_ascent", "--forget", "synthetic:forget01"]):
        code = main([*argv, "--out", str(m), "--overwrite"])
        err = capsys.readouterr().err
        assert code == 2 and "is (or holds) the --model" in err, err
    assert (m / "model.safetensors").exists() and (m / "config.json").exists()
    code = main(["eval", "--model", "tiny-llama", "--data", "synthetic", "--split", "forget01", "--limit", "2",
                 "--retain-eval", str(m), "--out", str(m / "sub"), "--overwrite"])  # inside is fine for outputs
    assert "is (or holds)" not in capsys.readouterr().err


def test_out_holding_a_data_file_or_log_is_refused_and_the_file_kept(tmp_path, capsys):
    """--overwrite empties an obliviate folder: a data file, refusal file or log the run reads from inside it
    would be deleted before it is read (it was, for --data and --forget)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "done"}))
    data = out / "d.jsonl"
    data.write_text('{"question": "Q one?", "answer": "A one."}\n{"question": "Q two?", "answer": "A two."}\n')
    idk = out / "idk.jsonl"
    idk.write_text('{"text": "I do not know."}\n')
    main(["eval", "--model", "tiny-llama", "--data", "synthetic", "--split", "forget01", "--limit", "2",
          "--no-generation", "--no-gradnorm", "--out", str(tmp_path / "ev"), "--quiet"])
    (out / "items.jsonl").write_text((tmp_path / "ev" / "items.jsonl").read_text())
    capsys.readouterr()
    for argv, flag in ((["finetune", "--model", "tiny-llama", "--data", str(data)], "--data"),
                       (["unlearn", "--model", "tiny-llama", "--method", "grad_ascent", "--forget", str(data)],
                        "--forget"),
                       (["unlearn", "--model", "tiny-llama", "--method", "idk_nll", "--forget", "synthetic:forget01",
                         "--retain", str(data), "--idk-file", str(idk)], "--retain"),
                       (["unlearn", "--model", "tiny-llama", "--method", "idk_nll", "--forget", "synthetic:forget01",
                         "--retain", "synthetic:retain99", "--idk-file", str(idk)], "--idk-file"),
                       (["eval", "--from-logs", str(out / "items.jsonl")], "--from-logs")):
        code = main([*argv, "--out", str(out), "--overwrite", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and f"is (or holds) the {flag}" in err, (argv, err)
    assert data.exists() and idk.exists() and (out / "items.jsonl").exists()


@pytest.mark.parametrize("flags, says", [
    (["--model", "tiny-lama"], "unknown model 'tiny-lama'"),
    (["--model", "tiny-llama?bogus=1"], "unknown option 'bogus'"),
    (["--model", "tiny-llama", "--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
    (["--model", "tiny-llama", "--style", "bogus"], "--style 'bogus': unknown prompt style"),
])
def test_a_bad_eval_setting_leaves_the_old_run_intact(tmp_path, capsys, flags, says):
    old = tmp_path / "r"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"status": "done"}))
    (old / "summary.json").write_text("{}")
    code = main(["eval", *flags, "--data", "synthetic", "--split", "forget01", "--limit", "2", "--out", str(old),
                 "--overwrite", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, err
    assert (old / "summary.json").exists()


def test_a_failed_eval_leaves_run_json_saying_so(tmp_path, monkeypatch):
    import obliviate.evaluate as ev

    def boom(*a, **kw):
        raise RuntimeError("scoring broke")

    monkeypatch.setattr(ev, "evaluate_tofu", boom)
    with pytest.raises(RuntimeError):
        ev.run_tofu_eval("tiny-llama", tmp_path / "e", data="synthetic", split="forget01", limit=2, utility_limit=2,
                         progress=False)
    run = json.loads((tmp_path / "e" / "run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "RuntimeError: scoring broke"


def test_a_loader_option_given_twice_is_refused(capsys):
    assert main(["data", "inspect", "synthetic:full?n_authors=2&n_authors=3"]) == 2
    assert "option 'n_authors' given twice" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama?seed=1&seed=2", "--data", "synthetic", "--out", "/nonexistent/x"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_generate_refuses_an_empty_question_and_no_new_tokens(capsys):
    assert main(["generate", "--model", "tiny-llama", "  "]) == 2
    assert "question 1 is empty" in capsys.readouterr().err
    assert main(["generate", "--model", "tiny-llama", "--max-new-tokens", "0", "hi"]) == 2
    assert "--max-new-tokens 0: must be an integer >= 1" in capsys.readouterr().err


def test_contradicting_or_inapplicable_flags_are_refused(tmp_path, capsys):
    with pytest.raises(ObliviateError, match="--resume continues the run in --out and --overwrite replaces it"):
        prepare_out_dir(tmp_path / "x", overwrite=True, resume=True)
    logs = tmp_path / "logs.json"
    logs.write_text("{}")
    assert main(["eval", "--from-logs", str(logs), "--limit", "3", "--out", str(tmp_path / "e")]) == 2
    assert "--limit only applies to a model's evaluation; --from-logs recomputes the metrics of existing logs" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--retain-logs", str(logs), "--out", str(tmp_path / "f")]) == 2
    assert "--retain-logs only applies with --from-logs" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()


def test_muse_eval_refuses_the_tofu_only_flags_it_would_ignore(tmp_path, capsys):
    out = tmp_path / "m"
    base = ["eval", "--model", "tiny-llama", "--benchmark", "muse-news", "--out", str(out)]
    assert main(base + ["--split", "forget05"]) == 2
    assert "--split only applies to TOFU, not to --benchmark muse-news" in capsys.readouterr().err
    assert main(base + ["--data", "synthetic", "--utility-limit", "3", "--style", "plain", "--no-generation"]) == 2
    err = capsys.readouterr().err
    assert "--data, --utility-limit, --no-generation, --style only apply to TOFU" in err
    assert not out.exists()


def test_unlearn_checks_its_retain_eval_against_the_evaluated_forget_items_first(tmp_path):
    from obliviate.evaluate import tofu_sets

    forget = tofu_sets("synthetic", "forget01")["forget"][:4]
    path = tmp_path / "retain_items.jsonl"
    path.write_text("".join(json.dumps({"set": "forget", "index": i, "question": it.question}) + "\n"
                            for i, it in enumerate(forget)))
    kw = dict(cfg=TrainConfig(**SMALL), eval_every_epoch=True, retain_eval=str(path))
    with pytest.raises(ObliviateError, match=r"^--retain-eval .*forget item \(index=3.*same data, split and limit"
                                             r".*synthetic, forget01, --eval-limit 3"):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "a", eval_limit=3, **kw)
    with pytest.raises(ObliviateError, match="unknown model 'no-such-model'"):  # the matching limit gets further
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "a", eval_limit=4, **kw)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("select, named", [
    ("max:bogus", "the TOFU evaluation reports no 'bogus'"),
    ("max:forget_Q_A_PARAQ_Prob", "reports no 'forget_Q_A_PARAQ_Prob'"),
    ("mia_reference", "mia_reference needs a reference model's scores"),
    ("privleak", "eval.select privleak needs the retain model's evaluation: eval.retain_eval PATH"),
])
def test_select_keys_the_evaluation_never_reports_are_refused_before_training(tmp_path, select, named):
    with pytest.raises(ObliviateError, match=named.replace("(", r"\(").replace(")", r"\)")):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "s", cfg=TrainConfig(**SMALL),
                    select=select)
    assert not (tmp_path / "s").exists()


def test_eval_target_keeps_the_forget_specs_loader_options():
    from obliviate.unlearn import _eval_target

    assert _eval_target("synthetic:forget10?n_authors=4&seed=3", None, None) == ("synthetic?n_authors=4&seed=3",
                                                                                 "forget10")
    assert _eval_target("tofu:forget05_perturbed", None, None) == ("tofu", "forget05")
    assert _eval_target("synthetic:forget10?n_authors=4", "tofu", None) == ("tofu", "forget10")


def test_a_closed_pipe_on_stdout_ends_quietly(monkeypatch, capsys):
    class Closed:
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr("sys.stdout", Closed())
    assert main(["ls", "methods", "--json"]) == 141
    assert "Traceback" not in capsys.readouterr().err


def test_an_out_folder_that_cannot_be_created_is_a_one_line_error(tmp_path, capsys):
    f = tmp_path / "file.jsonl"
    f.write_text("{}\n")
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--out", str(f / "sub")]) == 2
    assert f"--out {f / 'sub'}: cannot create the folder (Not a directory)" in capsys.readouterr().err


@pytest.mark.parametrize("opts, named", [("hidden_size=100", "hidden_size=100 must be a positive multiple of 8"),
                                         ("hidden_size=0", "hidden_size=0 must be a positive multiple of 8"),
                                         ("num_layers=-1", "num_layers=-1 must be >= 1")])
def test_bad_tiny_llama_sizes_are_named(opts, named):
    from obliviate.models import load_model

    with pytest.raises(ObliviateError, match=named):
        load_model(f"tiny-llama?{opts}")


def test_eval_data_takes_a_family_and_variants_are_checked_before_the_model_loads(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["eval", "--model", "tiny-llama", "--data", "synthetic:forget05?n_authors=4", "--out", str(out)]) == 2
    assert "the split goes in --split: --data 'synthetic?n_authors=4' --split forget05" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--data", "tofu:forget10_perturbed", "--out", str(out)]) == 2
    assert "--data tofu --split forget10" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--data", "muse-news:raw/forget", "--out", str(out)]) == 2
    assert "MUSE is --benchmark muse-news" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--data", "synthetic", "--variants", "foo", "--out", str(out)]) == 2
    assert "unknown --variants entry 'foo'; valid: paraq, jailbreak" in capsys.readouterr().err
    logs = tmp_path / "logs.json"
    logs.write_text("{}")
    assert main(["eval", "--from-logs", str(logs), "--split", "forget05", "--no-generation", "--benchmark", "muse-news",
                 "--out", str(out)]) == 2
    assert "--split, --no-generation, --benchmark only apply to a model's evaluation" in capsys.readouterr().err
    assert not out.exists()


def test_lora_rank_without_lora_is_refused(tmp_path, capsys):
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--lora-r", "4",
                 "--out", str(tmp_path / "f")]) == 2
    assert "--lora-r only applies with --lora" in capsys.readouterr().err
    assert main(["unlearn", "--model", "tiny-llama", "--method", "grad_ascent", "--forget", "synthetic:forget01",
                 "--lora-r", "4", "--out", str(tmp_path / "u")]) == 2
    assert "--lora-r only applies with --lora" in capsys.readouterr().err
    assert not (tmp_path / "f").exists() and not (tmp_path / "u").exists()


def test_flag_errors_name_the_flag_once_and_a_model_file_points_to_its_folder(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["eval", "--model", "tiny-llama", "--data", "synthetic", "--retain-eval", str(missing),
                 "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip() == f"obliviate: error: --retain-eval {missing}: file not found"
    weights = tmp_path / "m" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    assert main(["eval", "--model", str(weights), "--data", "synthetic", "--out", str(tmp_path / "e")]) == 2
    assert f"is a file; give the folder that holds it and its config.json ({weights.parent})" in capsys.readouterr().err


def test_a_retain_set_the_method_would_ignore_is_refused(tmp_path):
    with pytest.raises(ObliviateError, match="retain: method grad_ascent has no retain term .*drop retain"):
        run_unlearn("no-such-model", "grad_ascent", "synthetic:forget01", tmp_path / "a", retain="synthetic:retain99",
                    cfg=TrainConfig(**SMALL))
    with pytest.raises(ObliviateError, match=r"retain: method npo uses no retain set with alpha=0.0; set alpha"):
        run_unlearn("no-such-model", "npo", "synthetic:forget01", tmp_path / "a", retain="synthetic:retain99",
                    options=["alpha=0"], cfg=TrainConfig(**SMALL))
    assert not (tmp_path / "a").exists()


def test_the_existing_folder_message_offers_resume_where_it_can_work(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "x.txt").write_text("x")
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to replace it" in err and "--resume" not in err  # nothing to resume
    (out / "checkpoints").mkdir()
    (out / "run.json").write_text(json.dumps({"status": "interrupted"}))
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--out", str(out)]) == 2
    assert "pass --overwrite to replace it, or --resume to continue the run in it" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--data", "synthetic", "--out", str(out)]) == 2
    assert "--resume" not in capsys.readouterr().err  # eval has none


def test_a_sigterm_leaves_run_json_interrupted_and_the_old_handler_back(tmp_path):
    import os
    import signal

    from obliviate.io import RunRecord

    before = signal.getsignal(signal.SIGTERM)
    from obliviate.io import Terminated

    assert before is signal.SIG_DFL
    rec = RunRecord(tmp_path, "finetune", {"x": 1})
    rec.save()
    with pytest.raises(Terminated):
        with rec.guard():
            os.kill(os.getpid(), signal.SIGTERM)
            import time
            time.sleep(5)  # the handler raises here
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "interrupted" and run["signal"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # a handler of the caller's own (or an inherited SIG_IGN) is left in charge
    seen = []
    signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with RunRecord(tmp_path / "b", "finetune", {}).guard():
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_the_cli_exits_143_on_sigterm_and_130_on_ctrl_c(monkeypatch, capsys):
    import argparse

    import obliviate.cli as cli
    from obliviate.io import Terminated

    for exc, code, text in ((Terminated(), 143, "terminated (SIGTERM)"), (KeyboardInterrupt(), 130, "interrupted")):
        def cmd(args, exc=exc):
            raise exc

        class Parser:
            def parse_args(self, argv):
                return argparse.Namespace(func=cmd)

        monkeypatch.setattr(cli, "build_parser", Parser)
        assert cli.main(["anything"]) == code
        assert f"obliviate: {text}" in capsys.readouterr().err



def test_a_custom_evaluator_without_utility_limit_still_works(tmp_path):
    calls = []

    def my_eval(model, tok, data, split, data_dir, limit, retain_records, formatter, progress):
        calls.append(limit)
        return {"model_utility": 0.5}, []

    run_unlearn("tiny-llama", "grad_ascent", "synthetic:forget01", tmp_path / "u", cfg=TrainConfig(**SMALL),
                eval_every_epoch=True, eval_limit=3, evaluator=my_eval)
    assert calls == [3, 3]  # at the start and after the epoch


def test_bad_model_options_are_refused_before_overwrite_empties_anything(tmp_path, capsys):
    out = tmp_path / "done"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "done"}))
    (out / "model.safetensors").write_bytes(b"weights")
    assert main(["unlearn", "--model", "tiny-llama?hidden_size=12", "--method", "grad_ascent",
                 "--forget", "synthetic:forget01", "--out", str(out), "--overwrite"]) == 2
    assert "hidden_size=12 must be a positive multiple of 8" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == b"weights"


def test_resume_refuses_a_run_whose_process_is_alive_and_notes_a_killed_one(tmp_path, capsys):
    import subprocess
    import sys

    from obliviate.io import check_resume, process_identity

    out = tmp_path / "r"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import time

        for _ in range(50):  # until /proc shows the child
            from obliviate.io import _start_ticks
            if _start_ticks(child.pid) is not None:
                break
            time.sleep(0.05)
        alive = {**process_identity(), "pid": child.pid, "start_ticks": _start_ticks(child.pid)}
        (out / "run.json").write_text(json.dumps({"command": "finetune", "config": {}, "status": "running",
                                                  "process": alive}))
        with pytest.raises(ObliviateError, match=f"still going \\(process {child.pid} on this machine\\)"):
            check_resume(out, "finetune", {})
    finally:
        child.kill()
        child.wait()
    check_resume(out, "finetune", {})  # the process is gone: a note, and the resume goes on
    assert "still says running" in capsys.readouterr().err
    reused = {**alive, "start_ticks": alive["start_ticks"] - 1}  # same pid, another process: not this run
    (out / "run.json").write_text(json.dumps({"command": "finetune", "config": {}, "status": "running",
                                              "process": reused}))
    check_resume(out, "finetune", {})


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "tiny-llama", "--style", "plain", "--system-prompt", "Be brief.", "Hi?"],
    ["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--style", "llama2",
     "--system-prompt", "Be brief."],
    ["unlearn", "--model", "tiny-llama", "--method", "grad_ascent", "--forget", "synthetic:forget01",
     "--style", "plain", "--system-prompt", "Be brief."],
    ["eval", "--model", "tiny-llama", "--data", "synthetic", "--limit", "2", "--style", "plain",
     "--system-prompt", "Be brief."],
])
def test_system_prompt_without_a_chat_template_is_refused(tmp_path, capsys, argv):
    """Only the chat template has a system turn: --style plain / llama2 dropped --system-prompt silently
    (and run.json recorded it as if used)."""
    out = [] if argv[0] == "generate" else ["--out", str(tmp_path / "o")]
    assert main([*argv, *out]) == 2
    assert "--system-prompt only applies with --style chat" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_lora_rank_above_the_hidden_size_is_refused(tmp_path, capsys):
    # tiny-llama's hidden size is 64: rank 65 could not be more expressive than 64, only larger
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--lora", "--lora-r", "65",
                 "--out", str(tmp_path / "f")]) == 2
    assert "--lora-r 65 is larger than the model's hidden size 64" in capsys.readouterr().err
    assert not (tmp_path / "f" / "model.safetensors").exists()


def test_data_dir_that_no_spec_reads_is_refused(tmp_path, capsys):
    # synthetic data is generated and a file is a file: a --data-dir beside them used to be ignored
    cases = [
        ["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--out", str(tmp_path / "f")],
        ["unlearn", "--model", "tiny-llama", "--method", "grad_ascent", "--forget", "synthetic:forget01",
         "--out", str(tmp_path / "u")],
        ["eval", "--model", "tiny-llama", "--data", "synthetic", "--split", "forget01", "--out", str(tmp_path / "e")],
        ["data", "inspect", "synthetic:forget01"],
    ]
    for argv in cases:
        assert main([*argv, "--data-dir", str(tmp_path)]) == 2, argv
        err = capsys.readouterr().err
        assert "--data-dir only applies to data sets read from a local copy (muse-books, muse-news, tofu)" in err
    assert not any((tmp_path / d).exists() for d in "fue")
    # one spec that reads it is enough: here the retain set's TOFU copy would be read from --data-dir
    from obliviate.data import check_data_dir

    check_data_dir(str(tmp_path), ["synthetic:forget01", "tofu:retain90"])


def test_max_length_above_the_models_context_is_refused(tmp_path, capsys):
    # tiny-llama is built for 1024 positions
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--max-length", "2048",
                 "--out", str(tmp_path / "f")]) == 2
    assert "--max-length 2048 is above the model's context of 1024 tokens; give --max-length 1024 or less" in \
        capsys.readouterr().err
    assert main(["unlearn", "--model", "tiny-llama", "--method", "grad_ascent", "--forget", "synthetic:forget01",
                 "--max-length", "2048", "--out", str(tmp_path / "u")]) == 2
    assert "--max-length 2048 is above the model's context of 1024 tokens" in capsys.readouterr().err
    assert not (tmp_path / "f" / "model.safetensors").exists() and not (tmp_path / "u" / "model.safetensors").exists()


@pytest.mark.parametrize("command", [
    ["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01"],
    ["unlearn", "--model", "tiny-llama", "--method", "npo", "--forget", "synthetic:forget01"],
    ["eval", "--model", "tiny-llama", "--data", "synthetic", "--split", "forget01"],
    ["demo"],
])
def test_an_empty_out_is_refused_not_taken_as_the_current_folder(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([*command, "--out", " "])
    assert e.value.code == 2
    assert "argument --out: is empty; give the output folder's path" in capsys.readouterr().err
