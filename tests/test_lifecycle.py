"""Run lifecycle hardening: --resume with nothing to train or nothing to continue, flags named in errors,
forget/retain overlap."""

import json

import pytest

import obliviate.train as train_mod
from obliviate.cli import main
from obliviate.errors import ObliviateError
from obliviate.finetune import run_finetune
from obliviate.train import TrainConfig

SMALL = dict(epochs=1, lr=1e-3, batch_size=4, progress=False)


def test_a_resume_that_trains_nothing_keeps_the_runs_lr(tmp_path):
    out = tmp_path / "ft"
    run_finetune("tiny-llama", "synthetic:forget01", out, TrainConfig(**SMALL))
    rec = run_finetune("tiny-llama", "synthetic:forget01", out, TrainConfig(**{**SMALL, "lr": 1e-5}), resume=True)
    assert rec["config"]["train"]["lr"] == 1e-3 and rec["resumes"][0]["changed"] == {}
    assert json.loads((out / "run.json").read_text())["config"]["train"]["lr"] == 1e-3


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path, monkeypatch, capsys):
    def killed(*a, **kw):
        raise KeyboardInterrupt

    out = tmp_path / "ft"
    with monkeypatch.context() as m:
        m.setattr(train_mod, "_save_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            run_finetune("tiny-llama", "synthetic:forget01", out, TrainConfig(**SMALL))
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not (out / "checkpoints").exists()
    rec = run_finetune("tiny-llama", "synthetic:forget01", out, TrainConfig(**SMALL), resume=True)
    assert "holds no checkpoint (the run stopped before its first epoch ended); starting from the beginning" \
        in capsys.readouterr().err
    fresh = run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "fresh", TrainConfig(**SMALL))
    assert rec["status"] == "done" and rec["final_loss"] == fresh["final_loss"]
    assert rec["resumes"][0]["from_checkpoint"] is None and rec["resumes"][0]["previous_status"] == "interrupted"
    # other settings are still refused: it must be the same run
    with monkeypatch.context() as m:
        m.setattr(train_mod, "_save_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "k", TrainConfig(**SMALL))
    with pytest.raises(ObliviateError, match="train.batch_size: 4 -> 2"):
        run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "k", TrainConfig(**{**SMALL, "batch_size": 2}),
                     resume=True)


@pytest.mark.parametrize("argv, says", [
    (["--eval-data", "nosuch"], "--eval-data nosuch: unknown dataset 'nosuch'"),
    (["--eval-data", "synthetic:forget01"], "--eval-data synthetic:forget01: takes a TOFU-format family"),
    (["--eval-data", "synthetic", "--eval-split", "forget11"],
     "--eval-data synthetic --eval-split forget11: unknown TOFU split 'forget11'"),
])
def test_eval_data_errors_name_the_flag(tmp_path, capsys, argv, says):
    assert main(["unlearn", "--model", "tiny-llama", "--method", "npo", "--forget", "synthetic:forget01",
                 "--retain", "synthetic:retain99", "--eval-every-epoch", *argv, "--out", str(tmp_path / "o")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_forget_retain_overlap_is_warned_about_with_its_count(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("not a run")  # refused after the data are read: the warning is all that runs
    assert main(["unlearn", "--model", "tiny-llama", "--method", "grad_diff", "--forget", "synthetic:forget05",
                 "--retain", "synthetic:forget01", "--out", str(busy)]) == 2
    from obliviate.data import load_items

    n = len({it.question for it in load_items("synthetic:forget01")})
    err = capsys.readouterr().err
    assert f"warning: {n} of the forget set's {len(load_items('synthetic:forget05'))} questions are also in the " \
           "retain set" in err
    assert main(["unlearn", "--model", "tiny-llama", "--method", "grad_diff", "--forget", "synthetic:forget01",
                 "--retain", "synthetic:retain99", "--out", str(busy)]) == 2
    assert "warning" not in capsys.readouterr().err
