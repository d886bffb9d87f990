"""The relearning attack (obliviate.relearn): the step loop, the command and the recovery report."""

from __future__ import annotations

import argparse
import json

import pytest

from obliviate.errors import ObliviateError
from obliviate.relearn import recovery_report
from obliviate.cli.relearn import add_parser, run


def _parse(argv):
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    return ap.parse_args(argv)


def _eval(path, **summary):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_recovery_is_after_minus_before_and_excess_subtracts_the_control(tmp_path):
    ub = _eval(tmp_path / "ub", verbmem_f=0.10, knowmem_f=0.05, privleak=-20.0, note="text")
    ua = _eval(tmp_path / "ua", verbmem_f=0.60, knowmem_f=0.25, privleak=-5.0)
    rb = _eval(tmp_path / "rb", verbmem_f=0.12, knowmem_f=0.04, privleak=0.0)
    ra = _eval(tmp_path / "ra", verbmem_f=0.22, knowmem_f=0.09, privleak=1.0)
    argv = ["relearn-report", "--before", str(ub), "--after", str(ua), "--retrain-before", str(rb),
            "--retrain-after", str(ra), "--out", str(tmp_path / "rep")]
    assert run(_parse(argv)) == 0
    rep = json.loads((tmp_path / "rep" / "recovery.json").read_text())
    m = rep["metrics"]
    assert list(m)[:3] == ["verbmem_f", "knowmem_f", "privleak"]  # MUSE's headline order
    assert m["verbmem_f"]["recovery"] == pytest.approx(0.50)
    assert m["verbmem_f"]["control_recovery"] == pytest.approx(0.10)
    assert m["verbmem_f"]["excess"] == pytest.approx(0.40)
    assert m["knowmem_f"]["excess"] == pytest.approx(0.20 - 0.05)
    assert m["privleak"]["recovery"] == pytest.approx(15.0) and m["privleak"]["direction"] == "target"
    assert "note" not in m
    assert "| verbmem_f | 0.1000 | 0.6000 | 0.5000 | 0.1000 | 0.4000 |" in (tmp_path / "rep" / "recovery.md").read_text()


def test_fraction_of_the_gap_to_the_target(tmp_path):
    tg = _eval(tmp_path / "tg", verbmem_f=0.9)
    ub, ua = _eval(tmp_path / "ub", verbmem_f=0.1), _eval(tmp_path / "ua", verbmem_f=0.5)
    rb, ra = _eval(tmp_path / "rb", verbmem_f=0.1), _eval(tmp_path / "ra", verbmem_f=0.3)
    m = recovery_report(ub, ua, tmp_path / "rep", rb, ra, target=tg)["metrics"]["verbmem_f"]
    assert m["fraction"] == pytest.approx(0.4 / 0.8) and m["control_fraction"] == pytest.approx(0.2 / 0.8)
    same = recovery_report(tg, ua, tmp_path / "rep2", target=tg)["metrics"]["verbmem_f"]
    assert same["fraction"] is None  # no gap to close
    assert "n/a" in (tmp_path / "rep2" / "recovery.md").read_text()


def test_report_errors_are_one_line(tmp_path):
    ub = _eval(tmp_path / "ub", verbmem_f=0.1)
    with pytest.raises(ObliviateError, match="no summary.json"):
        recovery_report(ub, tmp_path / "missing", tmp_path / "rep")
    with pytest.raises(ObliviateError, match="go together"):
        recovery_report(ub, ub, tmp_path / "rep", retrain_before=ub)


def test_relearn_command_takes_exactly_n_steps_and_saves_a_model(tmp_path):
    out = tmp_path / "relearned"
    argv = ["relearn", "--model", "tiny-llama", "--data", "synthetic-news:raw/forget?n_forget=2",
            "--steps", "3", "--lr", "1e-3", "--batch-size", "1", "--max-length", "32", "--out", str(out)]
    assert run(_parse(argv)) == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "done" and len(rec["losses"]) == 3
    assert rec["n_rows"] > 3  # 3 steps of batch 1 cycle within an epoch of the chunked corpus
    c = rec["config"]  # text chunks: the prompt format plays no role, the chunk length (max_length) does
    assert (c["protocol"], c["style"], c["system_prompt"], c["date_string"], c["max_length"]) == (None, None, None, None, 32)
    assert (out / "config.json").is_file()
    with pytest.raises(ObliviateError, match="steps 0: must be an integer >= 1"):
        run(_parse(argv[:-2] + ["--steps", "0", "--out", str(tmp_path / "x")]))


def test_relearn_settings_are_a_config_the_command_line_names_by_flag(tmp_path, capsys):
    """RelearnConfig: the flags come from it, an error names the flag on the command line, a run.json repeats the
    run (--config), QA items are formatted under the data's default protocol, and a run.json written before
    relearn took --protocol repeats under the protocol it ran (obliviate's)."""
    from obliviate.cli import main
    from obliviate.config import RelearnConfig

    assert main(["relearn", "--model", "tiny-llama", "--data", "synthetic:forget01", "--steps", "0",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--steps 0: must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["relearn", "--model", "tiny-llama", "--data", "synthetic:forget01", "--lr", "1e-3",
                 "--out", str(tmp_path / "x")]) == 2
    assert "relearn needs --steps" in capsys.readouterr().err

    out = tmp_path / "qa"
    assert main(["relearn", "--model", "tiny-llama", "--data", "synthetic:forget01", "--steps", "2", "--lr", "1e-3",
                 "--batch-size", "2", "--n-items", "3", "--out", str(out)]) == 0
    rec = json.loads((out / "run.json").read_text())
    cfg = rec["config"]
    assert cfg["protocol"] == "open-unlearning" and cfg["n_items"] == 3 and cfg["steps"] == 2
    assert cfg["max_length"] == 512 and cfg["style"] == "chat"  # the protocol's values, resolved
    again = RelearnConfig.from_dict(cfg)
    again.validate()
    assert again.to_dict() == cfg  # the recorded config is complete: it builds the same run

    # --config run.json repeats the run; a flag given on top wins
    out2 = tmp_path / "again"
    assert main(["relearn", "--config", str(out / "run.json"), "--steps", "1", "--out", str(out2)]) == 0
    cfg2 = json.loads((out2 / "run.json").read_text())["config"]
    assert cfg2 == {**cfg, "steps": 1}

    # a run.json from before RelearnConfig (no protocol key) ran under obliviate's format
    old = json.loads((out / "run.json").read_text())
    for k in ("protocol", "date_string"):
        old["config"].pop(k)
    (tmp_path / "old.json").write_text(json.dumps(old))
    from obliviate.config import read_config

    legacy = read_config(RelearnConfig, tmp_path / "old.json", "relearn")
    assert legacy.format.protocol == "obliviate"


def test_relearn_runs_on_the_run_lifecycle(tmp_path, capsys):
    """The --out rules of every run (obliviate.runtime.run.Run): a refusal once the model has loaded leaves --out
    as it was, an existing run needs --overwrite, and --out may not hold the model it relearns."""
    base = ["relearn", "--model", "tiny-llama", "--data", "synthetic-news:raw/forget?n_forget=1", "--steps", "1",
            "--lr", "1e-3", "--batch-size", "1"]
    out = tmp_path / "r"
    with pytest.raises(ObliviateError, match="above the model's context"):
        run(_parse(base + ["--max-length", "1000000", "--out", str(out)]))
    assert not out.exists()
    assert run(_parse(base + ["--max-length", "32", "--out", str(out)])) == 0
    first = json.loads((out / "run.json").read_text())
    assert first["command"] == "relearn" and first["config"]["n_items"] == 1 and first["world_size"] == 1
    with pytest.raises(ObliviateError, match="--overwrite"):
        run(_parse(base + ["--max-length", "32", "--out", str(out)]))
    assert run(_parse(base + ["--max-length", "32", "--out", str(out), "--overwrite"])) == 0
    with pytest.raises(ObliviateError, match="is \\(or holds\\) the --model"):
        run(_parse(["relearn", "--model", str(out), "--data", "synthetic-news:raw/forget?n_forget=1", "--steps", "1",
                    "--max-length", "32", "--out", str(out), "--overwrite"]))
    assert (out / "model.safetensors").is_file()
