"""sweep, select, report and meta-eval take their options from config dataclasses (config.py), as the training
commands do: the flags are derived (the same names and defaults as the hand-written parsers had), a bad value
is one line naming its flag, and a recorded config repeats the command (``--config``)."""

import json

import pytest

from obliviate.cli import _subparser, build_parser, main
from obliviate.config import (MetaEvalConfig, ReportConfig, SelectConfig, SweepConfig, _walk, given_settings)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the flags of the hand-written parsers these commands had (flag or positional -> default); the dataclass
#: default of each setting, the command-line value of the rest
OLD_FLAGS = {
    "sweep": {"GRID": None, "--out": None, "--workers": 1, "--backend": "local", "--retry-failed": False,
              "--dry-run": False, "--gpu-mem": "80GB", "--quiet": False},
    "select": {"SWEEP": None, "--by": "forget_quality", "--tie-break": None, "--min": [], "--max": [],
               "--epoch": "last", "--json": False},
    "report": {"INPUTS": None, "--out": None, "--audit": [], "--title": "obliviate report"},
    "meta-eval": {"POOLS": None, "--out": None, "--resume": False, "--overwrite": False, "--keys": None,
                  "--n-boot": 1000, "--seed": 0, "--workers": 1, "--backend": "local", "--quiet": False},
}
CLASSES = {"sweep": SweepConfig, "select": SelectConfig, "report": ReportConfig, "meta-eval": MetaEvalConfig}
CHOICES = {("sweep", "--backend"): ("local", "ray"), ("select", "--epoch"): ("last", "best"),
           ("meta-eval", "--backend"): ("local", "ray")}


def _default_of(cls, flag):
    """The dataclass default behind ``flag`` in the old parser's terms (``--quiet``: False = progress True)."""
    for path, f in _walk(cls):
        name = f.metadata.get("flag") or ("--" + f.name.replace("_", "-"))
        if f.metadata.get("positional"):
            name = f.metadata.get("metavar") or f.name.upper()
        if name == flag and f.metadata.get("help"):
            v = getattr(cls(), f.name)
            if f.metadata.get("invert"):
                return not v
            return list(v) if isinstance(v, tuple) else v
    raise KeyError(flag)


@pytest.mark.parametrize("command", list(OLD_FLAGS))
def test_flags_derived_from_the_dataclass_are_the_old_flags_with_their_defaults(command):
    sub = _subparser(build_parser(), command)
    named = {}
    for a in sub._actions:
        for name in (a.option_strings or [a.metavar]):
            named[name] = a
    cls = CLASSES[command]
    for flag, default in OLD_FLAGS[command].items():
        assert flag in named, (command, flag)
        if flag.isupper() or flag.lstrip("-").replace("-", "_") in ("out", "dry_run", "json", "resume", "overwrite"):
            continue  # the required positional (no default), or what this invocation does: still hand-written
        assert _default_of(cls, flag) == default, (command, flag)
        if (command, flag) in CHOICES:
            assert tuple(named[flag].choices) == CHOICES[command, flag]
    # every setting with a help text is a flag (or the positional argument) with that help
    flagged = [(p, f) for p, f in _walk(cls) if f.metadata.get("help")]
    by_dest = {a.dest: a for a in sub._actions}
    for path, f in flagged:
        assert by_dest[path].help == f.metadata["help"], (command, path)
    assert "--config" in named


@pytest.mark.parametrize("command", list(OLD_FLAGS))
def test_help_lists_every_flag(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in [*OLD_FLAGS[command], "--config"]:
        assert flag in text, (command, flag)


def test_the_old_command_lines_give_the_same_settings():
    ap = build_parser()

    def config(cls, argv):
        return cls.from_dict(given_settings(ap.parse_args(argv)))

    s = config(SweepConfig, ["sweep", "g.yaml", "--out", "o", "--workers", "2", "--backend", "ray", "--retry-failed",
                             "--gpu-mem", "40GB", "--quiet"])
    assert s == SweepConfig(grid="g.yaml", workers=2, backend="ray", retry_failed=True, gpu_mem="40GB", progress=False)
    s = config(SelectConfig, ["select", "d", "--by", "min:model_utility", "--tie-break", "forget_quality",
                              "--min", "model_utility=0.9*full", "--min", "forget_quality=0.1", "--max", "x=2",
                              "--epoch", "best", "--json"])
    assert s == SelectConfig(sweep="d", by="min:model_utility", tie_break="forget_quality",
                             min=("model_utility=0.9*full", "forget_quality=0.1"), max=("x=2",), epoch="best")
    r = config(ReportConfig, ["report", "a", "b", "--out", "r.html", "--audit", "x", "--audit", "y", "--title", "T"])
    assert r == ReportConfig(inputs=("a", "b"), audit=("x", "y"), title="T")
    m = config(MetaEvalConfig, ["meta-eval", "p.yaml", "--out", "o", "--keys", "forget_Q_A_Prob,forget_truth_ratio",
                                "--n-boot", "50", "--seed", "3", "--workers", "2", "--backend", "ray", "--quiet"])
    assert m == MetaEvalConfig(pools_file="p.yaml", keys=("forget_Q_A_Prob", "forget_truth_ratio"), n_boot=50,
                               seed=3, workers=2, backend="ray", progress=False)
    assert config(MetaEvalConfig, ["meta-eval", "p.yaml", "--out", "o", "--keys", ""]).keys is None


@pytest.mark.parametrize("argv, line", [
    (["sweep", "g.yaml", "--out", "{out}", "--workers", "0"], "--workers 0: must be an integer >= 1"),
    (["sweep", "g.yaml", "--dry-run", "--gpu-mem", "lots"], "--gpu-mem 'lots': write e.g. 80GB, 141GiB or 24"),
    (["sweep", "--out", "{out}"], "obliviate sweep: give GRID, the grid file (or a --config that sets it)"),
    (["select", "{out}", "--min", "model_utility>0.5"],
     "--min 'model_utility>0.5': write KEY=NUMBER or KEY=FACTOR*full|retain (e.g. model_utility=0.9*full)"),
    (["select", "{out}", "--by", "fq"], "--by 'fq': unknown direction; "),
    (["select", "{out}", "--tie-break", "fq"], "--tie-break 'fq': unknown direction; "),
    (["report", "--out", "{out}/r.html"], "INPUTS is required: a sweep folder, a run folder or an audit.json"),
    (["meta-eval", "p.yaml", "--out", "{out}", "--n-boot", "0"], "--n-boot 0: must be an integer >= 1"),
    (["meta-eval", "p.yaml", "--out", "{out}", "--workers", "-1"], "--workers -1: must be an integer >= 1"),
    (["meta-eval", "p.yaml", "--out", "{out}", "--keys", "model_utility"],
     "--keys: 'model_utility' has no knowledge orientation; valid: "),
])
def test_a_bad_value_is_one_line_naming_its_flag(tmp_path, capsys, argv, line):
    out = tmp_path / "out"
    assert main([a.replace("{out}", str(out)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("obliviate: error: " + line), err
    assert not out.exists()  # refused before anything is written


def test_a_config_file_gives_the_settings_and_flags_override(tmp_path, capsys):
    from obliviate.errors import ObliviateError

    toml = tmp_path / "rule.toml"
    toml.write_text('by = "min:model_utility"\nmin = ["model_utility=0.5"]\nepoch = "best"\n')
    args = build_parser().parse_args(["select", "d", "--config", str(toml), "--epoch", "last"])
    from obliviate.cli._common import build_config

    assert build_config(SelectConfig, args, "select") == SelectConfig(sweep="d", by="min:model_utility",
                                                                      min=("model_utility=0.5",), epoch="last")
    bad = tmp_path / "bad.toml"
    bad.write_text('workerz = 2\n')
    with pytest.raises(ObliviateError, match=r"unknown setting\(s\) workerz \(did you mean workers\?\)"):
        build_config(SweepConfig, build_parser().parse_args(["sweep", "--config", str(bad)]), "sweep")
    ft = tmp_path / "run.json"
    ft.write_text(json.dumps({"command": "sweep", "config": {"grid": "g.yaml"}}))
    assert main(["meta-eval", "--config", str(ft), "--out", str(tmp_path / "m")]) == 2
    assert "a run.json of `obliviate sweep`, not `meta-eval`" in capsys.readouterr().err


def test_the_library_takes_the_config_or_the_old_keywords(tmp_path):
    from test_sweep import _fake_sweep

    from obliviate.report import write_report
    from obliviate.sweep.select import select

    full = {"forget_quality": 1e-5, "model_utility": 0.6}
    out, _ = _fake_sweep(tmp_path, [[full, {"forget_quality": 0.1, "model_utility": 0.5}],
                                    [full, {"forget_quality": 0.3, "model_utility": 0.4}]], epochs=1)
    a = select(out, by="forget_quality", mins=["model_utility=0.45"], write=False)
    b = select(SelectConfig(sweep=str(out), by="forget_quality", min=("model_utility=0.45",)), write=False)
    assert a["rank1"]["idx"] == b["rank1"]["idx"] == 0 and a["config"] == b["config"]
    with pytest.raises(TypeError, match="give the settings in the config"):
        select(SelectConfig(sweep=str(out)), by="model_utility")
    h1, _ = write_report([out], tmp_path / "a.html", title="T")
    h2, _ = write_report(ReportConfig(inputs=(str(out),), title="T"), tmp_path / "b.html")
    assert h1.read_text() == h2.read_text()


def test_select_records_its_rule_and_a_recorded_rule_selects_again(tmp_path, capsys):
    from test_sweep import _fake_sweep

    full = {"forget_quality": 1e-5, "model_utility": 0.6}
    table = [[full, {"forget_quality": 0.4, "model_utility": 0.57}, {"forget_quality": 0.3, "model_utility": 0.56}],
             [full, {"forget_quality": 0.1, "model_utility": 0.59}, {"forget_quality": 0.9, "model_utility": 0.40}]]
    out, _ = _fake_sweep(tmp_path, table)
    assert main(["select", str(out), "--by", "forget_quality", "--min", "model_utility=0.9*full", "--epoch", "best",
                 "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    rec = json.loads((out / "selection.json").read_text())
    assert rec["command"] == "select" and rec["config"] == {
        "sweep": str(out), "by": "forget_quality", "tie_break": None, "min": ["model_utility=0.9*full"], "max": [],
        "epoch": "best"}
    assert main(["select", "--config", str(out / "selection.json"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["ranking"] == first["ranking"] and again["config"] == first["config"]
    assert (first["rank1"]["idx"], first["rank1"]["epoch"]) == (0, 1)
    # a flag on top of the recorded rule
    assert main(["select", "--config", str(out / "selection.json"), "--epoch", "last", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["epoch"] == "last"


# 1 point x 1 epoch of NPO on tiny-llama, evaluated on 2 items without generation
TINY_GRID = """
model: tiny-llama
forget: synthetic:forget01
retain: synthetic:retain99
fixed:
  method: npo
  epochs: 1
  batch_size: 4
  warmup_ratio: 0
  eval_limit: 2
  eval_generation: false
  eval_gradnorm: false
grid:
  lr: [1e-3]
"""


def test_a_recorded_sweep_config_repeats_the_sweep(tmp_path, capsys):
    from obliviate.sweep import open_index

    grid = tmp_path / "grid.yaml"
    grid.write_text(TINY_GRID)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["sweep", str(grid), "--out", str(a), "--quiet"]) == 0
    rec = json.loads((a / "sweep.json").read_text())
    assert rec["command"] == "sweep" and rec["config"] == {
        "grid": str(grid), "workers": 1, "backend": "local", "retry_failed": False, "gpu_mem": "80GB",
        "progress": False}
    assert main(["sweep", "--config", str(a / "sweep.json"), "--out", str(b)]) == 0
    again = json.loads((b / "sweep.json").read_text())
    assert again["config"] == rec["config"] and again["grid_hash"] == rec["grid_hash"]

    def final(out):
        idx = open_index(out)
        try:
            pts, m = idx.points(), idx.metrics()
        finally:
            idx.close()
        return [m[p["id"]][p["final_epoch"]]["forget_Q_A_Prob"] for p in pts]

    assert final(a) == pytest.approx(final(b), rel=1e-4)
    # the same command on a finished sweep only reads its index
    assert main(["sweep", "--config", str(a / "sweep.json"), "--out", str(a)]) == 0
    assert "1 done, 0 failed" in capsys.readouterr().out


def test_the_older_keyword_forms_and_an_audit_only_report(tmp_path, capsys):
    """run_sweep(grid_path=..., out=...), select(sweep_dir=...), write_report(inputs=..., out=...): the keyword
    forms docs/architecture.md promises (the first setting by its name or an alias); an audit alone makes a
    report, from the library and from the command line."""
    from test_report import AUDIT
    from test_sweep import _fake_sweep

    from obliviate.report import write_report
    from obliviate.sweep.runner import run_sweep
    from obliviate.sweep.select import select

    full = {"forget_quality": 1e-5, "model_utility": 0.6}
    out, _ = _fake_sweep(tmp_path, [[full, {"forget_quality": 0.1, "model_utility": 0.5}]], epochs=1)
    res = run_sweep(grid_path=str(tmp_path / "grid.yaml"), out=str(out), progress=False)  # every point done
    assert res["counts"]["done"] == 1
    assert run_sweep(grid=str(tmp_path / "grid.yaml"), out=out, progress=False)["grid_hash"] == res["grid_hash"]
    assert run_sweep(str(tmp_path / "grid.yaml"), out=out, progress=False)["grid_hash"] == res["grid_hash"]
    with pytest.raises(TypeError, match="grid given twice"):
        run_sweep("a.yaml", grid_path="b.yaml", out=out)
    assert select(sweep_dir=out, write=False)["rank1"]["idx"] == 0
    assert select(sweep=str(out), by="model_utility", write=False)["config"]["by"] == "model_utility"
    h, _ = write_report(inputs=[out], out=tmp_path / "k.html", title="K")
    assert "K" in h.read_text()
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps(AUDIT))
    h, md = write_report([], tmp_path / "a.html", audits=[audit])
    assert "leak_rate" in md.read_text()
    assert main(["report", "--audit", str(audit), "--out", str(tmp_path / "c.html")]) == 0
    capsys.readouterr()
    with pytest.raises(Exception, match="inputs.*is required"):
        write_report([], tmp_path / "none.html")


def test_a_selection_json_written_before_recorded_configs_gives_its_rule(tmp_path, capsys):
    from test_sweep import _fake_sweep

    full = {"forget_quality": 1e-5, "model_utility": 0.6}
    out, _ = _fake_sweep(tmp_path, [[full, {"forget_quality": 0.1, "model_utility": 0.5}],
                                    [full, {"forget_quality": 0.3, "model_utility": 0.4}]], epochs=1)
    old = tmp_path / "old-selection.json"  # the layout before `command` / `config` (no ranking needed to read it)
    old.write_text(json.dumps({"sweep": str(out), "grid_hash": "ab" * 32, "n_points": 2, "n_done": 2,
                               "rule": {"by": "model_utility", "tie_break": None, "min": [], "max": [],
                                        "epoch": "last", "then": "grid order (predeclared)"},
                               "blind": True, "rank1": None, "ranking": [], "unranked": [], "pareto_front": []}))
    assert main(["select", "--config", str(old), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["config"]["by"] == "model_utility" and rec["rank1"]["idx"] == 0
    assert main(["select", "--config", str(old), "--by", "forget_quality", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rank1"]["idx"] == 1


def test_recorded_paths_are_absolute_and_a_changed_grid_is_refused(tmp_path, monkeypatch, capsys):
    from test_sweep import _fake_sweep

    from obliviate.sweep.runner import run_sweep
    from obliviate.sweep.select import select

    full = {"forget_quality": 1e-5, "model_utility": 0.6}
    out, _ = _fake_sweep(tmp_path, [[full, {"forget_quality": 0.1, "model_utility": 0.5}]], epochs=1)
    monkeypatch.chdir(tmp_path)
    run_sweep("grid.yaml", "out", progress=False)  # relative, as typed
    select("out", write=True)
    rec = json.loads((out / "sweep.json").read_text())
    assert rec["config"]["grid"] == str(tmp_path / "grid.yaml")
    sel = json.loads((out / "selection.json").read_text())
    assert sel["config"]["sweep"] == sel["sweep"] == str(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "grid.yaml").write_text("not: the grid\n")  # the same relative name holds another file
    monkeypatch.chdir(elsewhere)
    assert main(["sweep", "--config", str(out / "sweep.json"), "--out", str(out), "--quiet"]) == 0
    assert "1 done, 0 failed" in capsys.readouterr().out
    assert main(["select", "--config", str(out / "selection.json"), "--json"]) == 0
    capsys.readouterr()
    # the recorded grid file changed since: one line, before anything runs (--dry-run too)
    (tmp_path / "grid.yaml").write_text((tmp_path / "grid.yaml").read_text().replace("epochs: 2", "epochs: 3"))
    assert main(["sweep", "--config", str(out / "sweep.json"), "--out", str(tmp_path / "new"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not the recorded sweep's grid" in err and rec["grid_hash"][:12] in err and "\n" not in err
    assert not (tmp_path / "new").exists()


def test_progress_turns_a_recorded_quiet_back_on():
    ap = build_parser()
    for argv, path in ((["sweep", "g.yaml", "--quiet", "--progress"], "progress"),
                       (["meta-eval", "p.yaml", "--out", "o", "--progress"], "progress"),
                       (["unlearn", "--out", "o", "--progress"], "train.progress")):
        args = ap.parse_args(argv)
        assert getattr(args, path) is True
    args = ap.parse_args(["sweep", "g.yaml", "--quiet"])
    assert args.progress is False
    # a bad value is still named by --quiet (the counterpart does not take over the setting's flag)
    assert _subparser(ap, "sweep").get_default("config_flags")["progress"] == "--quiet"
