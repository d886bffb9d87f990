"""``--config FILE``: a finished run's run.json (or TOML / YAML with its keys) repeats the run; flags override."""

import json

import pytest

from obliviate.cli import main
from obliviate.errors import ObliviateError

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
    """Every setting with a help text is a flag of its command, with that help; a flag not given leaves its
    setting to the --config file and the dataclass default (unlearn: the method's paper settings)."""
    from obliviate.cli import build_parser
    from obliviate.cli import _subparser
    from obliviate.config import (EvalConfig, FinetuneConfig, TrainConfig, UnlearnConfig, _walk, given_settings)

    ap = build_parser()
    for command, cls in (("finetune", FinetuneConfig), ("unlearn", UnlearnConfig), ("eval", EvalConfig)):
        sub = _subparser(ap, command)
        actions = {a.dest: a for a in sub._actions}
        flagged = [(p, f) for p, f in _walk(cls) if f.metadata.get("help")]
        assert len(flagged) >= 8
        for path, f in flagged:
            assert actions[path].help == f.metadata["help"], (command, path)
            assert actions[path].option_strings[0] == (f.metadata.get("flag") or "--" + f.name.replace("_", "-"))
    ft = ap.parse_args(["finetune", "--model", "m", "--data", "d", "--out", "o"])
    assert given_settings(ft) == {"model": "m", "data": "d"}
    assert FinetuneConfig.from_dict(given_settings(ft)) == FinetuneConfig(model="m", data="d")
    assert FinetuneConfig(model="m", data="d").train == TrainConfig()
    args = ap.parse_args(["unlearn", "--out", "o", "--lr", "0.001", "--lora", "--quiet", "--eval-limit", "3",
                          "--style", "plain", "--sam-rho", "0.01"])
    assert given_settings(args) == {"train": {"lr": 0.001, "lora": True, "progress": False}, "eval": {"limit": 3},
                                    "style": "plain", "robust": {"sam_rho": 0.01}}
    c = UnlearnConfig.from_dict({**given_settings(args), "method": "npo"})
    t = c.train_config()
    assert (t.lr, t.lora, t.progress, t.epochs, t.batch_size) == (0.001, True, False, 10, 32)  # npo's paper epochs


def test_configs_round_trip_through_the_run_json_layout():
    from obliviate.config import (EpochEvalConfig, EvalConfig, FinetuneConfig, FormatConfig, RobustConfig,
                                  TrainConfig, UnlearnConfig)

    u = UnlearnConfig(model="m", method="npo", method_config={"beta": 0.3}, forget="synthetic:forget01",
                      retain="synthetic:retain99", data_dir="d", format=FormatConfig(style="plain", max_length=64),
                      train=TrainConfig(epochs=2, lr=1e-3, lora=True, extra={"x": 1}),
                      robust=RobustConfig(sam_rho=0.02), reference="live", idk_file="i.csv",
                      eval=EpochEvalConfig(every_epoch=True, limit=4, select="forget_quality"))
    d = u.to_dict()
    assert d["style"] == "plain" and d["max_length"] == 64 and "format" not in d  # FormatConfig: flattened
    assert d["train"]["lr"] == 1e-3 and d["eval"]["limit"] == 4 and d["robust"]["sam_rho"] == 0.02
    back = UnlearnConfig.from_dict(json.loads(json.dumps(d)))
    assert back.to_dict() == d and back.train_config() == u.train
    e = EvalConfig(model="m", data="synthetic", variants=("paraq",), generation=False,
                   format=FormatConfig(protocol="open-unlearning", date_string="1 Jan 2020"))
    assert EvalConfig.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    f = FinetuneConfig(model="m", data="synthetic:full", train=TrainConfig(seed=3))
    assert FinetuneConfig.from_dict(f.to_dict()) == f
    # the prompt: None settings are the protocol's; resolved, every one is written out
    r = FormatConfig().resolved()  # no protocol: TOFU's default, open-unlearning's (issue 22)
    assert (r.protocol, r.style, r.system_prompt, r.max_length, r.date_string) == (
        "open-unlearning", "chat", "You are a helpful assistant.", 512, "10 Apr 2025")
    r = FormatConfig(protocol="obliviate").resolved()
    assert (r.protocol, r.style, r.system_prompt, r.max_length) == ("obliviate", "chat", None, 512)
    r = FormatConfig(protocol="open-unlearning", max_length=64).resolved()
    assert (r.style, r.system_prompt, r.max_length) == ("chat", "You are a helpful assistant.", 64)
    assert FormatConfig(protocol="open-unlearning", style="plain").resolved().system_prompt is None  # no system turn
    with pytest.raises(ObliviateError, match=r"unknown setting\(s\) eval.limt \(did you mean eval.limit\?\)"):
        UnlearnConfig.from_dict({"eval": {"limt": 3}})
    # the keyword convenience: fields, a flattened section's fields, dotted paths and the older names
    k = UnlearnConfig.of(model="m", method="npo", forget="f", options=["beta=0.3"], style="plain",
                         eval_limit=4, cfg=TrainConfig(epochs=2), **{"robust.sam_rho": 0.02})
    assert k.method_config == {"beta": "0.3"} and k.format.style == "plain" and k.eval.limit == 4
    assert k.train.epochs == 2 and k.robust.sam_rho == 0.02
    with pytest.raises(TypeError, match="no setting 'stlye'"):
        UnlearnConfig.of(stlye="plain")


def test_library_errors_name_the_field_and_the_command_line_its_flag(tmp_path, capsys):
    from obliviate.config import (ConfigError, EpochEvalConfig, EvalConfig, RobustConfig, TrainConfig,
                                  UnlearnConfig)

    with pytest.raises(ConfigError, match=r"^lr -1.0: must be a finite number > 0$"):
        TrainConfig(lr=-1.0).validate()
    base = dict(model="tiny-llama", method="npo", forget="synthetic:forget01")
    with pytest.raises(ConfigError, match=r"^train.lr -1.0: must be a finite number > 0$"):
        UnlearnConfig(**base, train={"lr": -1.0}).validate()
    with pytest.raises(ConfigError, match=r"^eval.limit 0: must be an integer >= 1$"):
        UnlearnConfig(**base, eval=EpochEvalConfig(every_epoch=True, limit=0)).validate()
    with pytest.raises(ConfigError, match=r"^robust.weight_avg with train.lora would average"):
        UnlearnConfig(**base, train={"lora": True}, robust=RobustConfig(weight_avg=True)).validate()
    with pytest.raises(ConfigError, match=r"^system_prompt only applies with style chat \(style plain has no"):
        EvalConfig.of(model="m", style="plain", system_prompt="s").validate()
    e = ConfigError(("robust.weight_avg", "train.lora"), "{0} with {1}: {x}")  # a value's braces are kept
    assert e.render(lambda f: {"train.lora": "--lora"}.get(f, f)) == "robust.weight_avg with --lora: {x}"
    # the command line names each field by its flag
    unl = ["unlearn", "--model", "no-such-model", "--method", "npo", "--forget", "synthetic:forget01",
           "--out", str(tmp_path / "u")]
    for flags, says in ((["--eval-every-epoch", "--eval-limit", "0"], "--eval-limit 0: must be an integer >= 1"),
                        (["--lora", "--weight-avg"], "--weight-avg with --lora would average"),
                        (["--style", "plain", "--system-prompt", "s"],
                         "--system-prompt only applies with --style chat (--style plain has no system turn)")):
        assert main(unl + flags) == 2
        assert says in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--limit", "0", "--out", str(tmp_path / "e")]) == 2
    assert "--limit 0: must be an integer >= 1" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--pad-mask", "eos", "--benchmark", "muse-news",
                 "--out", str(tmp_path / "e")]) == 2
    assert "--pad-mask only applies to TOFU, not to --benchmark muse-news" in capsys.readouterr().err
    assert not (tmp_path / "u").exists() and not (tmp_path / "e").exists()


EVAL = ["eval", "--model", "tiny-llama", "--data", "synthetic", "--split", "forget01", "--limit", "3",
        "--utility-limit", "2", "--max-new-tokens", "6", "--no-gradnorm", "--quiet", "--protocol", "open-unlearning",
        "--date-string", "1 Jan 2020"]


def test_eval_config_reproduces_an_evaluation_and_flags_override(tmp_path):
    assert main([*EVAL, "--out", str(tmp_path / "a")]) == 0
    assert main(["eval", "--config", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "b")]) == 0
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert b["config"] == a["config"] and b["summary"] == a["summary"]
    assert a["config"]["protocol"]["name"] == "open-unlearning" and a["config"]["date_string"] == "1 Jan 2020"
    assert a["config"]["max_new_tokens"] == 6 and a["config"]["protocol"]["max_new_tokens"] == 6
    items = [(tmp_path / d / "items.jsonl").read_text() for d in ("a", "b")]
    assert items[0] == items[1]
    # what eval writes passes the items.jsonl checks (token lists as long as num_tokens, log-probs <= 0)
    assert main(["eval", "--from-logs", str(tmp_path / "a"), "--out", str(tmp_path / "logs")]) == 0
    # a flag overrides one setting, the rest comes from the file
    assert main(["eval", "--config", str(tmp_path / "a" / "run.json"), "--limit", "2", "--out",
                 str(tmp_path / "c")]) == 0
    c = _run(tmp_path / "c")["config"]
    assert c["limit"] == 2 and {k: v for k, v in c.items() if k != "limit"} == \
        {k: v for k, v in a["config"].items() if k != "limit"}
    assert c_summary_forget(tmp_path / "c") == 2
    toml = tmp_path / "eval.toml"
    toml.write_text('model = "tiny-llama"\ndata = "synthetic"\nsplit = "forget01"\nlimit = 2\nutility_limit = 2\n'
                    'generation = false\ngradnorm = false\nvariants = ["paraq"]\n')
    assert main(["eval", "--config", str(toml), "--quiet", "--out", str(tmp_path / "t")]) == 0
    t = _run(tmp_path / "t")["config"]
    assert t["generation"] is False and t["variants"] == ["paraq"] and t["protocol"]["name"] == "open-unlearning"  # TOFU's default


def c_summary_forget(path):
    return json.loads((path / "summary.json").read_text())["n_items"]["forget"]


def test_a_run_folder_written_before_the_format_settings_existed_still_resumes(tmp_path):
    """run.json written by the code before FormatConfig had no ``protocol`` / ``date_string``; its runs used
    what those settings' legacy values say (obliviate's prompt, 10 Apr 2025), so --resume accepts them."""
    out = tmp_path / "u"
    one = [a if a != "2" else "1" for a in BASE]  # --epochs 1
    assert main([*one, "--protocol", "obliviate", "--out", str(out)]) == 0  # the old code's only format
    rec = _run(out)
    for key in ("protocol", "date_string"):
        del rec["config"][key]
    rec["status"] = "interrupted"
    (out / "run.json").write_text(json.dumps(rec))
    # the default protocol is now open-unlearning's: resuming under it would change the prompts mid-run
    assert main([*BASE, "--resume", "--out", str(out)]) == 2
    assert main([*BASE, "--protocol", "obliviate", "--resume", "--out", str(out)]) == 0
    after = _run(out)
    assert after["status"] == "done" and len(after["history"]["epochs"]) == 2
    assert set(after["resumes"][0]["changed"]) <= {"train.epochs", "train.warmup_ratio"}
    rec["config"]["style"] = "plain"  # a setting that did change is still refused
    rec["status"] = "interrupted"
    (out / "run.json").write_text(json.dumps(rec))
    assert main([*BASE, "--protocol", "obliviate", "--epochs", "3", "--resume", "--out", str(out)]) == 2


def test_run_calls_take_a_config_or_the_keyword_convenience():
    """config_of_call: run_*(config, out) with a config object, or run_*(model, positional..., **settings); a
    call that mixes both or misses a positional setting is a TypeError naming the signature (no model loads)."""
    from obliviate.audit.run import run_audit
    from obliviate.config import AuditConfig, RelearnConfig, config_of_call
    from obliviate.relearn import run_relearn

    cfg, out = config_of_call(RelearnConfig, "m", ("d", "o", 3), {"lr": 0.5}, ("data", "out", "steps"), call="f")
    assert (cfg.model, cfg.data, cfg.steps, cfg.lr, out) == ("m", "d", 3, 0.5, "o")
    same, out2 = config_of_call(RelearnConfig, cfg, ("o2",), {}, ("data", "out", "steps"), call="f")
    assert same is cfg and out2 == "o2"
    a, _ = config_of_call(AuditConfig, "m", ("f", "r", "s"), {"n_samples": 4, "protocol": "tofu"},
                          ("full_model", "retain_model", "forget", "out"), out="x", call="run_audit", required=3)
    assert a.settings.n_samples == 4 and a.format.protocol == "tofu" and a.forget == "s"
    with pytest.raises(TypeError, match=r"run_relearn\(model, data, out, steps, ...\): give data"):
        run_relearn("tiny-llama")
    with pytest.raises(TypeError, match=r"run_audit\(model, full_model, retain_model, forget, out, ...\): give "
                                        r"retain_model, forget"):
        run_audit("m", "f")
    with pytest.raises(TypeError, match=r"run_audit\(config, out\): give the settings in the config"):
        run_audit(AuditConfig(), "out", n_samples=3)
    with pytest.raises(TypeError, match="too many positional"):
        run_relearn("m", "d", "o", 3, 4)
