"""``obliviate report``: the HTML page (rendered in headless Chromium) and its Markdown twin, from a sweep
whose summary files are written by hand, an audit.json and a plain unlearn run folder."""

import argparse
import json
import re
import shutil
import struct
import subprocess

import pytest

from obliviate.errors import ObliviateError
from obliviate.report import write_report
from obliviate.report.collect import collect
from obliviate.sweep import open_index
from obliviate.sweep.runner import harvest, predeclare, run_dir
from obliviate.sweep.select import select

GRID = """
model: tiny-llama
forget: synthetic:forget01
retain: synthetic:retain99
fixed: {method: npo, epochs: 2}
grid: {lr: [1e-3, 2e-3, 3e-3]}
"""
FULL = {"forget_quality": 1e-6, "model_utility": 0.6, "forget_truth_ratio": 0.5}
TABLE = [[FULL, {"forget_quality": 0.01, "model_utility": 0.58}, {"forget_quality": 0.2, "model_utility": 0.55}],
         [FULL, {"forget_quality": 0.05, "model_utility": 0.57}, {"forget_quality": 0.6, "model_utility": 0.50}],
         [FULL, {"forget_quality": 0.02, "model_utility": 0.59}, {"forget_quality": 0.1, "model_utility": 0.40}]]
AUDIT = {"models": {"audited": "runs/p001", "full": "runs/full", "retain": "runs/retain"}, "forget": "synthetic:forget01",
         "views": {"novel_recall_leak": {
             "headline": "leak_rate", "metric_specs": {"leak_rate": {"format": "percent"}, "mean_f1": {}},
             "models": {"audited": {"metrics": {"leak_rate": {"value": 0.125, "ci": [0.05, 0.2]},
                                                "mean_f1": {"value": 0.31, "ci": [0.25, 0.37]}}},
                        "full": {"metrics": {"leak_rate": {"value": 0.8, "ci": [0.7, 0.9]}}}}},
             "base_control": {"skipped": "no base model"}}}


@pytest.fixture()
def sweep(tmp_path):
    g = tmp_path / "grid.yaml"
    g.write_text(GRID)
    out = tmp_path / "sweep"
    grid = predeclare(g, out)
    idx = open_index(out)
    idx.add_points(grid.points, lambda p: run_dir(out, p))
    for p, per in zip(grid.points, TABLE):
        rd = run_dir(out, p)
        for e, vals in enumerate(per):
            d = rd / "eval" / ("initial" if e == 0 else f"epoch-{e}")
            d.mkdir(parents=True)
            (d / "summary.json").write_text(json.dumps(vals))
        (rd / "run.json").write_text(json.dumps({"command": "unlearn", "status": "done",
                                                 "config": {"method": "npo", "train": {"epochs": 2, "lr": 1e-3}}}))
        idx.claim("t", p.id)
        idx.finish(p.id, *harvest(rd))
    idx.close()
    select(out, by="forget_quality", tie_break="model_utility")
    (out / "audit.json").write_text(json.dumps(AUDIT))
    return out


def test_collect_and_markdown(sweep, tmp_path):
    data = collect([sweep])
    sel = [p for p in data.points if p.selected]
    assert [p.name for p in sel] == ["p001"] and sel[0].epoch == 2 and sel[0].rank == 1
    # Pareto front at the last epoch, by hand: p1 (FQ 0.6) and p0 (MU 0.55); p2 is dominated by p0
    assert sorted(p.name for p in data.points if p.pareto) == ["p000", "p001"]
    rows = data.audits[0]["rows"]
    assert {(r["model"], r["metric"]) for r in rows} == {("audited", "leak_rate"), ("audited", "mean_f1"),
                                                         ("full", "leak_rate")}
    html_path, md_path = write_report([sweep], tmp_path / "r.html")
    md = md_path.read_text()
    assert "| 1 | **p001** (selected) | 2 | 0.6 | 0.5 |" in md
    assert "| novel_recall_leak | **leak_rate** | 12.50 % [5.00, 20.00] | 80.00 % [70.00, 90.00] |" in md
    page = html_path.read_text()
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    with pytest.raises(ObliviateError, match="neither a sweep folder"):
        collect([tmp_path])


def test_report_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "eval" / "epoch-1").mkdir(parents=True)
    (run / "eval" / "epoch-1" / "summary.json").write_text(json.dumps({"forget_quality": 0.3, "model_utility": 0.5}))
    (run / "run.json").write_text(json.dumps({"command": "unlearn", "status": "done",
                                              "config": {"method": "npo", "train": {"lr": 1e-5, "epochs": 1}}}))
    from obliviate.cli import report as _cli

    ap = argparse.ArgumentParser()
    _cli.add_parser(ap.add_subparsers())
    args = ap.parse_args(["report", str(run), "--out", str(tmp_path / "one.html")])
    assert args.func(args) == 0
    assert "forget_quality" in (tmp_path / "one.md").read_text()


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_renders_in_headless_chromium(sweep, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; make setup does it as root)")
    html_path, _ = write_report([sweep], tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
              "--enable-logging=stderr", "--v=0", "--window-size=1200,1600"]
    url = html_path.resolve().as_uri()
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert re.search(r'<svg id="scatter"[^>]*>', page)
    assert page.count('class="point') == 3 and page.count('class="point pareto selected"') == 1
    assert 'class="pareto"' in page and page.count('class="curves"') == 2
    assert page.count("<tr class=") == 3 and 'class="audit"' in page and "12.50 % [5.00, 20.00]" in page
    r = subprocess.run(common + [f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    assert _png_size(shot) == (1200, 1600)
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few kB
    for log in (dom.stderr, r.stderr):
        bad = [l for l in log.splitlines() if "CONSOLE" in l or "Uncaught" in l]
        assert not bad, bad


# ------------------------------------------------------------------------------------------ meta-evaluation
def _metaeval_folder(tmp_path):
    """A meta-eval folder written by hand: forget_Q_A_Prob separates the pools perfectly (positives 0.9, 0.7;
    negatives 0.2, 0.3), mia_loss does not (positives 0.6, 0.5; negatives 0.7, 0.4)."""
    from obliviate.metaeval.scores import meta_table

    vals = {"P1": ("positive", 0.9, 0.6), "P2": ("positive", 0.7, 0.5), "N1": ("negative", 0.2, 0.7),
            "N2": ("negative", 0.3, 0.4)}
    models = [{"name": n, "role": r, "summary": {"forget_Q_A_Prob": p, "mia_loss": a},
               "relearned": {"forget_Q_A_Prob": p + 0.1, "mia_loss": a}, "quantized": {"forget_Q_A_Prob": p, "mia_loss": a}}
              for n, (r, p, a) in vals.items()]
    d = tmp_path / "meta"
    d.mkdir()
    rows = meta_table(models, retain="N1", n_boot=50)
    (d / "table.json").write_text(json.dumps({"metrics": rows, "models": models, "retain_control": "N1", "n_boot": 50}))
    (d / "run.json").write_text(json.dumps({"command": "meta-eval", "status": "done",
                                            "config": {"pools": {"model": "tiny-llama", "data": "synthetic",
                                                                 "split": "forget10"}}}))
    return d, rows


def _cx(svg, cls):
    return [float(x) for x in re.findall(rf'<circle class="model {cls}" cx="([0-9.]+)"', svg)]


def test_the_report_plots_a_meta_evaluation(tmp_path):
    from obliviate.report.html import faithfulness_robustness_svg, knowledge_strips_svg

    d, rows = _metaeval_folder(tmp_path)
    assert [r["faithfulness"] for r in rows] == [1.0, 0.5]  # Prob: 4 of 4 pairs; mia_loss: 0.6 > 0.4, 0.5 > 0.4
    data = collect([d])
    assert len(data.metaevals) == 1 and not data.points
    me = data.metaevals[0]
    strips = knowledge_strips_svg(me)
    rows_svg = strips.split('<text x="182"')  # one chunk per metric row (its label), in table order
    assert len(rows_svg) == 3
    prob, mia = rows_svg[1], rows_svg[2]
    # faithful: every positive right of every negative; not faithful: interleaved
    assert min(_cx(prob, "positive")) > max(_cx(prob, "negative"))
    assert not min(_cx(mia, "positive")) > max(_cx(mia, "negative"))
    assert prob.count('class="cut"') == 1  # the cut (threshold 0.3) is drawn
    fr = faithfulness_robustness_svg(me)
    assert fr.count('class="metric"') == 2 and "forget_Q_A_Prob" in fr
    html_path, md_path = write_report([d], tmp_path / "r.html")
    page, md = html_path.read_text(), md_path.read_text()
    assert 'class="me-fr"' in page and 'class="me-strips"' in page and 'class="metaeval"' in page
    assert "| forget_Q_A_Prob | 1.000 [1.000, 1.000] |" in md


def test_an_unfinished_meta_evaluation_is_refused_by_the_report(tmp_path):
    d, _ = _metaeval_folder(tmp_path)
    (d / "table.json").unlink()
    with pytest.raises(ObliviateError, match="without table.json"):
        collect([d])


# ------------------------------------------------------------------------------------------ aggregates
MIA = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")


def test_a_runs_aggregates_are_formed_from_its_retain_eval_and_its_epoch_0(tmp_path):
    """By hand: memorisation = HM(1 - 0.5 x 4) = 0.5; each MIA AUC 0.6 against the retain model's 0.5:
    s = 1 - 0.1 / 0.5 = 0.8, privacy 0.8; utility = model utility 0.3 / the target's (epoch 0) 0.6 = 0.5;
    aggregate = HM(0.5, 0.8, 0.5) = 3 / 5.25 = 0.5714."""
    retain = tmp_path / "retain-eval"
    retain.mkdir()
    (retain / "summary.json").write_text(json.dumps({k: 0.5 for k in MIA}))
    run = tmp_path / "run"
    for d, vals in (("initial", {"model_utility": 0.6}),
                    ("epoch-1", {"forget_quality": 0.3, "model_utility": 0.3, "extraction_strength": 0.5,
                                 "exact_memorization": 0.5, "forget_Q_A_PARA_Prob": 0.5,
                                 "forget_Truth_Ratio_prob_mean": 0.5, **{k: 0.6 for k in MIA}})):
        (run / "eval" / d).mkdir(parents=True)
        (run / "eval" / d / "summary.json").write_text(json.dumps(vals))
    (run / "run.json").write_text(json.dumps({"command": "unlearn", "status": "done", "config": {
        "method": "npo", "train": {"lr": 1e-5, "epochs": 1}, "eval": {"retain_eval": str(retain)}}}))
    p = collect([run]).points[0]
    assert p.aggregates == pytest.approx({"memorisation_score": 0.5, "privacy_score": 0.8, "utility_score": 0.5,
                                          "openunlearning_aggregate": 3 / 5.25})
    _, md = write_report([run], tmp_path / "r.html")
    assert "| memorisation_score | privacy_score | utility_score | openunlearning_aggregate |" in md.read_text()
    assert "| 0.5 | 0.8 | 0.5 | 0.5714 |" in md.read_text()
    # the retain eval gone: privacy (and the aggregate) cannot be formed, and say nothing else
    shutil.rmtree(retain)
    p = collect([run]).points[0]
    assert p.aggregates["privacy_score"] is None and p.aggregates["openunlearning_aggregate"] is None
    assert p.aggregates["memorisation_score"] == pytest.approx(0.5)


def test_the_report_shows_eval_folders_with_their_aggregates(tmp_path):
    ev = tmp_path / "eval-npo"
    ev.mkdir()
    summary = {"forget_quality": 0.25, "model_utility": 0.5, "forget_fluency": 0.75, "memorisation_score": 0.4,
               "privacy_score": 0.9, "utility_score": 0.6, "openunlearning_aggregate": 0.55, "missing": {}}
    (ev / "summary.json").write_text(json.dumps(summary))
    (ev / "run.json").write_text(json.dumps({"command": "eval", "status": "done",
                                             "config": {"model": "runs/npo", "benchmark": "tofu"}}))
    html_path, md_path = write_report([ev], tmp_path / "r.html")
    md = md_path.read_text()
    assert "## Evaluations" in md and "| forget_fluency | memorisation_score |" in md
    assert f"| {ev} | runs/npo | 0.25 | 0.5 | – | – | – | 0.75 | 0.4 | 0.9 | 0.6 | 0.55 |" in md
    assert 'class="evals tofu"' in html_path.read_text()
