"""``obliviate sweep`` / ``select``: the predeclared grid, the index, a SIGKILLed and resumed sweep, blind
selection against an independent ranking, the Ray backend."""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate.errors import ObliviateError
from obliviate.sweep import load_grid, open_index, parse_grid, run_sweep
from obliviate.sweep.grid import canonical_json, sha256_json
from obliviate.sweep.runner import threads_per_worker
from obliviate.sweep.select import pareto_front, select

SRC = Path(__file__).resolve().parents[1] / "src"
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 3 points x 2 epochs of NPO on tiny-llama; the evaluation without generation (fast, deterministic)
GRID = """
model: tiny-llama
forget: synthetic:forget01
retain: synthetic:retain99
retain_model: tiny-llama?seed=1
fixed:
  method: npo
  epochs: 2
  batch_size: 4
  warmup_ratio: 0
  eval_limit: 4
  eval_generation: false
  eval_gradnorm: false
grid:
  lr: [1e-3, 3e-4, 1e-4]
"""
BY = "forget_Q_A_Prob"  # continuous on 4 items (forget quality takes a few values only)


def _write(tmp_path, text=GRID, name="grid.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _final_metrics(out):
    idx = open_index(out)
    try:
        pts, m = idx.points(), idx.metrics()
    finally:
        idx.close()
    return {p["id"]: m[p["id"]][p["final_epoch"]] for p in pts}


# ------------------------------------------------------------------------------------------- grid
def test_grid_expands_product_and_union_and_hash_is_canonical(tmp_path):
    g = parse_grid({"model": "m", "forget": "synthetic:forget01", "retain": "synthetic:retain99",
                    "fixed": {"epochs": 2, "lora": True},
                    "grid": [{"method": "npo", "lr": ["1e-5", 2e-5], "beta": [0.1, 0.2]},
                             {"method": "grad_diff", "sam_rho": 0.01}]})
    assert len(g.points) == 5
    s = g.points[1].settings
    assert s["method"] == "npo" and s["train"] == {"epochs": 2, "lora": True, "lr": 1e-5}
    assert s["options"] == {"beta": 0.2} and s["robust"] == {}
    assert g.points[4].settings["robust"] == {"sam_rho": 0.01}
    assert g.varying == ["beta", "lr", "method"]
    # the hash is sha256 of the canonical JSON of what was declared, independent of key order
    import hashlib

    body = {"top": g.top, "points": [{"idx": p.idx, "id": p.id, "settings": p.settings} for p in g.points]}
    assert g.hash == hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert g.points[0].id == sha256_json(g.points[0].settings)[:12]
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


@pytest.mark.parametrize("doc, msg", [
    ({"forget": "f", "grid": {"method": "npo"}}, "model: is required"),
    ({"model": "m", "forget": "f", "fixed": {"method": "npo"}, "grid": {"betta": [1]}}, "takes no option 'betta'"),
    ({"model": "m", "forget": "f", "fixed": {"method": "npo"}, "grid": {"eval_limit": [1, 2]}}, "same for every point"),
    ({"model": "m", "forget": "f", "fixed": {"method": "npo", "lr": 1}, "grid": {"lr": [1]}}, "both in fixed"),
    ({"model": "m", "forget": "f", "fixed": {"method": "npo"}, "grid": {"lr": ["fast"]}}, "lr='fast' must be a number"),
    ({"model": "m", "forget": "f", "grid": {"method": ["npo", "npo"]}}, "same settings"),
    ({"model": "m", "forget": "f", "fixed": {"method": "npo", "progress": False}}, "set by the sweep"),
    ({"model": "m", "forget": "f", "fixd": {}}, "unknown top-level key 'fixd'"),
])
def test_grid_errors_are_one_line(doc, msg):
    with pytest.raises(ObliviateError, match=msg):
        parse_grid(doc, "g.yaml")


def test_threads_never_oversubscribe():
    for cores in (1, 2, 16):
        for n in (1, 2, 3, 8):
            t = threads_per_worker(n, cores)
            assert t >= 1 and (n * t <= cores or t == 1)


# ------------------------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep-a")
    out = tmp / "out"
    res = run_sweep(_write(tmp), out, progress=False)
    assert res["counts"]["done"] == 3
    return out


def _independent_rank1(out, key=BY):
    """Rank the points from their run folders' summary files, by hand: lower forget_Q_A_Prob is better,
    then grid order."""
    rows = []
    for rd in sorted((out / "runs").iterdir()):
        s = json.loads((rd / "eval" / "epoch-2" / "summary.json").read_text())
        rows.append((s[key], int(rd.name[1:]), rd.name))
    return min(rows)[2]


def test_sweep_shares_work_and_predeclares(uninterrupted):
    out = uninterrupted
    rec = json.loads((out / "grid.json").read_text())
    assert rec["grid_hash"] == load_grid(out / "grid.yaml").hash and rec["n_points"] == 3
    runs = [json.loads((out / "runs" / f"p00{i}" / "run.json").read_text()) for i in range(3)]
    # the reference log-likelihoods: computed by the first point, read by the others
    assert [r["setup"]["reference_cache_reused"] for r in runs] == [False, True, True]
    assert len(list((out / "shared" / "reference-cache").rglob("*.pt"))) == 1
    # the retain model's evaluation: once, used by every point
    assert all(r["config"]["eval"]["retain_eval"] == str(out / "shared" / "retain-eval") for r in runs)
    # the evaluation before unlearning: once, identical in every run
    init = [json.loads((out / "runs" / f"p00{i}" / "eval" / "initial" / "summary.json").read_text()) for i in range(3)]
    assert init[0] == init[1] == init[2]
    assert all(r["status"] == "done" for r in runs)
    # the grid file may not change under a sweep folder
    other = out.parent / "other.yaml"
    other.write_text(GRID.replace("1e-4]", "2e-4]"))
    with pytest.raises(ObliviateError, match="another grid"):
        run_sweep(other, out, progress=False)


def test_sigkill_anywhere_then_resume_matches_uninterrupted(uninterrupted, tmp_path):
    grid = _write(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OBLIVIATE_CORES="1")
    code = f"from obliviate.sweep import run_sweep; run_sweep({str(grid)!r}, {str(out)!r}, progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # kill when point 1 has its first epoch checkpoint: point 0 done, point 1 half-finished, point 2 not started
    target = out / "runs" / "p001" / "checkpoints" / "epoch-0"
    t0 = time.time()
    while not target.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() - t0 < 600
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    idx = open_index(out)
    st = {p["idx"]: p["status"] for p in idx.points()}
    idx.close()
    assert st[0] == "done" and st[1] == "running" and st[2] == "pending"
    p0_started = json.loads((out / "runs" / "p000" / "run.json").read_text())["started_at"]
    # and point 2 as if a kill had come before its first checkpoint: a run.json saying running, no checkpoint
    p2 = out / "runs" / "p002"
    p2.mkdir(parents=True)
    (p2 / "run.json").write_text(json.dumps({"command": "unlearn", "status": "running", "config": {}}))
    (p2 / "eval" / "initial").mkdir(parents=True)
    (p2 / "eval" / "initial" / "stale.json").write_text("{}")

    res = run_sweep(grid, out, progress=False)  # the same command again
    assert res["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    idx = open_index(out)
    pts, events = idx.points(), idx.events()
    idx.close()
    assert [p["completions"] for p in pts] == [1, 1, 1]  # every point done exactly once
    claimed = {p["id"]: sum(1 for e in events if e[0] == p["id"] and e[1] == "claimed") for p in pts}
    assert [claimed[p["id"]] for p in pts] == [1, 2, 1]  # point 0 not rerun; point 1 taken again
    assert json.loads((out / "runs" / "p000" / "run.json").read_text())["started_at"] == p0_started
    r1 = json.loads((out / "runs" / "p001" / "run.json").read_text())
    assert r1["resumes"][0]["from_checkpoint"] == "epoch-0"  # resumed from its checkpoint, not restarted
    assert not (p2 / "eval" / "initial" / "stale.json").exists()  # started again in an emptied folder
    assert "resumes" not in json.loads((p2 / "run.json").read_text())
    done = [e[3].split(";")[0] for e in events if e[1] == "done"]
    assert sorted(done) == ["resumed", "started", "started"]

    # same results as the uninterrupted sweep, the same rank-1, and rank-1 = an independent ranking
    a, b = _final_metrics(uninterrupted), _final_metrics(out)
    assert a.keys() == b.keys()
    for pid in a:
        for k in ("forget_Q_A_Prob", "forget_truth_ratio", "retain_Q_A_Prob"):
            assert math.isclose(a[pid][k], b[pid][k], rel_tol=1e-4), (pid, k)
    sa, sb = select(uninterrupted, by=BY, write=False), select(out, by=BY)
    assert sa["rank1"]["id"] == sb["rank1"]["id"]
    assert sb["rank1"]["name"] == _independent_rank1(out) == _independent_rank1(uninterrupted)
    assert sb["ranking_uses"] == [BY] and sb["blind"] and sb["grid_hash"] == load_grid(grid).hash
    assert json.loads((out / "selection.json").read_text())["rank1"]["id"] == sb["rank1"]["id"]


# ------------------------------------------------------------------------------------------- select
def _fake_sweep(tmp_path, table, epochs=2):
    """A sweep folder whose runs' summary files are written by hand (``table[i][e]`` = point i, epoch e)."""
    from obliviate.sweep.runner import harvest, predeclare, run_dir

    lrs = ", ".join(str(1e-3 * (i + 1)) for i in range(len(table)))
    grid = _write(tmp_path, GRID.replace("[1e-3, 3e-4, 1e-4]", f"[{lrs}]"))
    out = tmp_path / "out"
    g = predeclare(grid, out)
    idx = open_index(out)
    idx.add_points(g.points, lambda p: run_dir(out, p))
    for p, per_epoch in zip(g.points, table):
        rd = run_dir(out, p)
        for e, vals in enumerate(per_epoch):
            tag = "initial" if e == 0 else f"epoch-{e}"
            (rd / "eval" / tag).mkdir(parents=True)
            (rd / "eval" / tag / "summary.json").write_text(json.dumps(vals))
        (rd / "run.json").write_text(json.dumps({"status": "done", "config": {"train": {"epochs": epochs}}}))
        assert idx.claim("test", p.id) == p.id
        idx.finish(p.id, *harvest(rd))
    idx.close()
    return out, g


def test_select_rank1_equals_an_independent_ranking_of_summary_files(tmp_path):
    full = {"forget_quality": 1e-5, "model_utility": 0.60}
    table = [  # per point: initial, epoch 1, epoch 2 (the last)
        [full, {"forget_quality": 0.02, "model_utility": 0.58}, {"forget_quality": 0.30, "model_utility": 0.50}],
        [full, {"forget_quality": 0.40, "model_utility": 0.57}, {"forget_quality": 0.30, "model_utility": 0.56}],
        [full, {"forget_quality": 0.10, "model_utility": 0.59}, {"forget_quality": 0.90, "model_utility": 0.40}],
        [full, {"forget_quality": 0.05, "model_utility": 0.60}, {"forget_quality": 0.20, "model_utility": 0.58}],
    ]
    out, g = _fake_sweep(tmp_path, table)
    # independent: last epoch, MU >= 0.9 * 0.60 = 0.54, by FQ desc then MU desc then grid order
    last = [(i, t[2]) for i, t in enumerate(table) if t[2]["model_utility"] >= 0.9 * 0.60]
    expect = sorted(last, key=lambda r: (-r[1]["forget_quality"], -r[1]["model_utility"], r[0]))
    rec = select(out, by="forget_quality", tie_break="model_utility", mins=["model_utility=0.9*full"])
    assert [r["idx"] for r in rec["ranking"]] == [i for i, _ in expect] == [1, 3]
    assert rec["rank1"]["idx"] == 1 and rec["rank1"]["epoch"] == 2  # FQ ties with p0; MU breaks it (p0 is out)
    assert {u["idx"] for u in rec["unranked"]} == {0, 2}
    assert rec["ranking_uses"] == ["forget_quality", "model_utility"] and rec["filters_use"] == ["model_utility"]
    assert rec["grid_hash"] == g.hash
    # Pareto front of FQ vs MU over every point's last epoch, by hand: p2 (best FQ), p3 (best MU), p1
    assert set(rec["pareto_front"]) == {g.points[i].id for i in (1, 2, 3)}
    # best epoch: p1 epoch 1 (FQ 0.40) beats p3's best (0.20) ... and p2 epoch 2 (0.9) fails the bound
    best = select(out, by="forget_quality", mins=["model_utility=0.54"], epoch="best", write=False)
    assert (best["rank1"]["idx"], best["rank1"]["epoch"]) == (1, 1)
    assert "saved model holds epoch 2" in best["note"]
    # a lower-is-better key, no bound: p2's last epoch has the lowest MU
    low = select(out, by="min:model_utility", write=False)
    assert low["rank1"]["idx"] == 2
    with pytest.raises(ObliviateError, match="KEY=NUMBER"):
        select(out, mins=["model_utility>0.5"])


def test_pareto_front_by_hand():
    rows = [{"id": i, "values": {"forget_quality": a, "model_utility": b}}
            for i, (a, b) in enumerate([(0.1, 0.5), (0.2, 0.4), (0.05, 0.45), (0.2, 0.4), (None, 0.9)])]
    assert pareto_front(rows) == [0, 1, 3]


def test_select_cli(tmp_path, capsys):
    from obliviate.cli import select as _select_cli

    full = {"forget_quality": 1e-5, "model_utility": 0.6}
    out, _ = _fake_sweep(tmp_path, [[full, {"forget_quality": 0.1, "model_utility": 0.5}],
                                    [full, {"forget_quality": 0.3, "model_utility": 0.5}]], epochs=1)
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    _select_cli.add_parser(sub)
    args = ap.parse_args(["select", str(out), "--by", "forget_quality"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "rank-1 (blind, by forget_quality" in text and "p001 epoch 1" in text


# ------------------------------------------------------------------------------------------- ray
def test_ray_backend_gives_the_same_index_as_local(uninterrupted, tmp_path):
    ray = pytest.importorskip("ray", reason="the ray package is not installed (pip install 'obliviate[ray]')")
    grid = _write(tmp_path, GRID.replace("[1e-3, 3e-4, 1e-4]", "[1e-3, 3e-4]"))
    out = tmp_path / "out"
    os.environ["OBLIVIATE_CORES"] = "1"
    try:
        res = run_sweep(grid, out, backend="ray", progress=False)
    finally:
        os.environ.pop("OBLIVIATE_CORES", None)
        if ray.is_initialized():
            ray.shutdown()
    assert res["counts"]["done"] == 2
    idx = open_index(out)
    pts, events = idx.points(), idx.events()
    idx.close()
    assert all(p["worker"].startswith("ray:") and p["completions"] == 1 for p in pts)
    a, b = _final_metrics(uninterrupted), _final_metrics(out)
    for pid in b:  # point ids are hashes of the settings: the same points as in the local sweep
        assert a[pid].keys() == b[pid].keys()
        for k, v in b[pid].items():
            assert math.isclose(a[pid][k], v, rel_tol=1e-4, abs_tol=1e-12), (pid, k)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["p000", "p001"]


def test_local_workers_share_the_cores(tmp_path, monkeypatch):
    grid = _write(tmp_path, GRID.replace("[1e-3, 3e-4, 1e-4]", "[1e-3, 3e-4]").replace("epochs: 2", "epochs: 1"))
    monkeypatch.setenv("OBLIVIATE_CORES", "2")
    res = run_sweep(grid, tmp_path / "out", workers=2, progress=False)
    assert res["counts"]["done"] == 2
    idx = open_index(tmp_path / "out")
    pts, events = idx.points(), idx.events()
    idx.close()
    assert all(p["worker"].startswith("local-") and p["completions"] == 1 for p in pts)
    # 2 workers on 2 cores: one torch thread each
    assert [e[3] for e in events if e[1] == "done"] == ["started; 1 torch threads"] * 2
