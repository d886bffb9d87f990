"""``--config FILE``: a finished run's run.json (or TOML / YAML with its keys) repeats the run; flags override."""

import json

import pytest

from obliviate.cli import main

BASE = ["unlearn", "--model", "tiny-llama", "--method", "npo", "--forget", "synthetic:forget01", "--retain",
        "synthetic:retain99", "--epochs", "2", "--lr", "1e-3", "--batch-size", "3", "--seed", "4", "--quiet",
        "--alpha", "0.5", "beta=0.2"]


def _run(path):
    return json.loads((path / "run.json").read_text())


def test_a_run_json_as_config_reproduces_the_run_and_flags_override(tmp_path, capsys):
    assert main([*BASE, "--out", str(tmp_path / "a")]) == 0
    a = _run(tmp_path / "a")
    assert main(["unlearn", "--config", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "b")]) == 0
    b = _run(tmp_path / "b")
    assert b["final_loss"] == a["final_loss"] and b["config"] == a["config"]
    # a flag overrides one setting and keeps the rest
    assert main(["unlearn", "--config", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "c"),
                 "--epochs", "1", "beta=0.3"]) == 0
    c = _run(tmp_path / "c")["config"]
    assert c["train"]["epochs"] == 1 and c["method_config"]["beta"] == 0.3 and c["method_config"]["alpha"] == 0.5
    assert c["train"]["lr"] == 1e-3 and c["train"]["seed"] == 4 and c["retain"] == "synthetic:retain99"


def test_toml_and_yaml_configs_and_their_errors(tmp_path, capsys):
    toml = tmp_path / "npo.toml"
    toml.write_text('model = "tiny-llama"\nmethod = "npo"\nforget = "synthetic:forget01"\n'
                    'retain = "synthetic:retain99"\n[train]\nepochs = 1\nlr = 1e-3\nbatch_size = 5\n'
                    '[method_config]\nbeta = 0.25\n')
    assert main(["unlearn", "--config", str(toml), "--out", str(tmp_path / "t"), "--quiet"]) == 0
    c = _run(tmp_path / "t")["config"]
    assert c["method_config"]["beta"] == 0.25 and c["train"]["batch_size"] == 5 and c["train"]["epochs"] == 1
    yml = tmp_path / "bad.yaml"
    yml.write_text("model: tiny-llama\nmethod: npo\nforget: synthetic:forget01\ntrain:\n  epoch: 1\n")
    assert main(["unlearn", "--config", str(yml), "--out", str(tmp_path / "y")]) == 2
    assert "unknown setting(s) train.epoch (did you mean train.epochs?)" in capsys.readouterr().err
    ft = tmp_path / "ft.json"
    ft.write_text(json.dumps({"command": "finetune", "config": {}}))
    assert main(["unlearn", "--config", str(ft), "--out", str(tmp_path / "f")]) == 2
    assert "a run.json of `obliviate finetune`, not `unlearn`" in capsys.readouterr().err
    assert main(["unlearn", "--method", "npo", "--forget", "synthetic:forget01", "--out", str(tmp_path / "m")]) == 2
    assert "unlearn needs --model (or a --config that sets it)" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() and not (tmp_path / "m").exists()


def test_finetune_repeats_from_its_run_json(tmp_path, capsys):
    assert main(["finetune", "--model", "tiny-llama", "--data", "synthetic:forget01", "--epochs", "1", "--lr", "1e-3",
                 "--batch-size", "4", "--seed", "2", "--quiet", "--out", str(tmp_path / "a")]) == 0
    assert main(["finetune", "--config", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "b")]) == 0
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert b["final_loss"] == a["final_loss"] and b["config"] == a["config"]
    assert main(["finetune", "--out", str(tmp_path / "d")]) == 2
    assert "finetune needs --model (or a --config that sets it)" in capsys.readouterr().err


def test_training_flags_are_derived_from_train_config():
    from dataclasses import fields

    from obliviate.cli import build_parser
    from obliviate.config import TrainConfig

    ap = build_parser()
    ft = ap.parse_args(["finetune", "--model", "m", "--data", "d", "--out", "o"])
    un = ap.parse_args(["unlearn", "--out", "o"])
    flagged = [f for f in fields(TrainConfig) if f.metadata.get("help")]
    assert {f.name for f in flagged} >= {"epochs", "lr", "batch_size", "seed", "lora", "grad_checkpointing"}
    for f in flagged:
        want = None if f.name == "lora_r" else f.default  # --lora-r: None, refused without --lora
        assert getattr(ft, f.name) == want, f.name
        assert getattr(un, f.name) == (False if isinstance(f.default, bool) else None), f.name  # the method's
    sub = next(a for a in ap._actions if a.choices and "finetune" in a.choices).choices["finetune"]
    helps = {a.dest: a.help for a in sub._actions}
    assert all(helps[f.name] == f.metadata["help"] for f in flagged)
