"""The pools file, the 4-bit attack, and `obliviate meta-eval` end to end on tiny-llama pools.

One module-scoped run (interrupted, then resumed) serves the resume, faithfulness and control tests:
synthetic authors (n_authors=4: forget10 = 1 author, 10 items; retain90 = 30 items), tiny-llama fine-tuned
at lr 3e-3 for 10 epochs, no generation (ROUGE and model utility are not needed here), no GradNorm.
"""

import json

import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.metaeval import pools as pools_mod
from obliviate.metaeval.pools import load_pools
from obliviate.metaeval.quantize import nf4_round_trip, quantize_4bit
from obliviate.metaeval.scores import knowledge

from metaeval_cli import cli, write_pools

POOLS = """\
model: tiny-llama
data: synthetic?n_authors=4
grid: {lr: [3.0e-3], epochs: [10]}
train: {batch_size: 8, seed: 0}
eval: {utility_limit: 5, generation: false, gradnorm: false}
attacks:
  relearn: {fraction: 0.5, lr: 3.0e-3, epochs: 1}
  quantize: {method: auto}
"""


def write(tmp_path, text=POOLS, name="pools.yaml"):
    return write_pools(tmp_path, text, name)


# ------------------------------------------------------------------------------------------ pools file
def test_pools_defaults_build_open_unlearnings_four_control_kinds(tmp_path):
    cfg = load_pools(write(tmp_path))
    by = {m["name"]: m for m in cfg["models"]}
    assert list(by) == ["full_lr0.003_ep10", "para_lr0.003_ep10", "retain_lr0.003_ep10", "pert_lr0.003_ep10"]
    assert by["full_lr0.003_ep10"]["data"] == "synthetic:full?n_authors=4"
    assert by["para_lr0.003_ep10"]["data"] == ("synthetic:retain90?n_authors=4+"
                                               "synthetic:forget10?n_authors=4&answers=paraphrased")
    assert by["pert_lr0.003_ep10"]["data"] == ("synthetic:retain90?n_authors=4+"
                                               "synthetic:forget10?n_authors=4&answers=perturbed")
    assert [m["role"] for m in cfg["models"]] == ["positive", "positive", "negative", "negative"]
    assert cfg["retain_control"] == "retain_lr0.003_ep10"
    assert cfg["attacks"]["relearn"]["epochs"] == 1 and cfg["attacks"]["quantize"]["block_size"] == 64


def test_grid_and_named_kinds(tmp_path):
    cfg = load_pools(write(tmp_path, POOLS.replace("epochs: [10]", "epochs: [2, 4]")
                           + "positives: [full]\nnegatives: [{mine: 'synthetic:retain95?n_authors=4'}]\n"))
    assert [m["name"] for m in cfg["models"]] == ["full_lr0.003_ep2", "full_lr0.003_ep4", "mine_lr0.003_ep2",
                                                  "mine_lr0.003_ep4"]
    assert cfg["retain_control"] is None  # no `retain` kind: R needs retain_control


@pytest.mark.parametrize("extra, match", [
    ("colour: red\n", "unknown key 'colour'"),
    ("positives: [fulll]\n", "unknown kind 'fulll'"),
    ("retain_control: nosuch\n", "retain_control: 'nosuch' is not a pool model"),
    ("negatives: [{bad: 'synthetic:nosplit'}]\n", "nosplit"),
])
def test_pools_file_errors_name_the_key(tmp_path, extra, match):
    with pytest.raises(ObliviateError, match=match):
        load_pools(write(tmp_path, POOLS + extra))


def test_pools_file_errors_in_sections(tmp_path):
    with pytest.raises(ObliviateError, match="attacks.relearn.fraction"):
        load_pools(write(tmp_path, POOLS.replace("fraction: 0.5", "fraction: 2")))
    with pytest.raises(ObliviateError, match="quantize method 'int3'"):
        load_pools(write(tmp_path, POOLS.replace("method: auto", "method: int3")))
    with pytest.raises(ObliviateError, match="eval: unknown key 'limt'"):
        load_pools(write(tmp_path, POOLS.replace("utility_limit: 5", "limt: 5")))
    with pytest.raises(ObliviateError, match="not found"):
        load_pools(tmp_path / "none.yaml")


# ------------------------------------------------------------------------------------------ 4-bit attack
def test_simulated_nf4_equals_bitsandbytes_bit_for_bit():
    F = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(0)
    for shape in [(64, 128), (33, 70), (5,)]:
        w = torch.randn(*shape) * 0.02
        q, st = F.quantize_4bit(w.contiguous(), blocksize=64, quant_type="nf4")
        assert torch.equal(nf4_round_trip(w, 64), F.dequantize_4bit(q, st).view_as(w))


def test_nf4_round_trip_by_hand():
    # one block, absmax 2: 1.0 scales to 0.5, nearest NF4 value 0.4407 (0.0593 away; 0.5626 is 0.0626 away)
    # -> 0.8814; -2 -> -1 -> -2; 0 -> 0; 0.3 -> 0.15 -> 0.1609 -> 0.3219
    w = torch.tensor([1.0, -2.0, 0.0, 0.3])
    out = nf4_round_trip(w, block_size=4)
    assert out.tolist() == pytest.approx([0.44070982933044434 * 2, -2.0, 0.0, 0.16093020141124725 * 2])


def test_quantize_4bit_leaves_the_head_alone():
    from obliviate.models import load_model

    net, _ = load_model("tiny-llama", dtype=torch.float32)
    head = net.lm_head.weight.detach().clone()
    q = net.model.layers[0].self_attn.q_proj.weight.detach().clone()
    info = quantize_4bit(net, method="simulated")
    assert info["method"] == "simulated" and info["layers"] == 7 * len(net.model.layers)
    assert torch.equal(net.lm_head.weight, head)
    assert torch.equal(net.model.layers[0].self_attn.q_proj.weight, nf4_round_trip(q))
    assert not torch.equal(net.model.layers[0].self_attn.q_proj.weight, q)


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    """The meta-eval run, interrupted at the third evaluation (para's), then resumed."""
    tmp = tmp_path_factory.mktemp("metaeval")
    pools, out = write(tmp), tmp / "out"
    calls = {"eval": 0}
    real_eval = pools_mod.PoolRunner._eval

    def eval_then_stop(self, m):
        calls["eval"] += 1
        if calls["eval"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C, after the retain control's and full's stages
        return real_eval(self, m)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools_mod.PoolRunner, "_eval", eval_then_stop)
        with pytest.raises(KeyboardInterrupt):
            cli([str(pools), "--out", str(out), "--quiet", "--n-boot", "100"])
    first = json.loads((out / "run.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name in
              ("model.safetensors", "items.jsonl")}
    assert cli([str(pools), "--out", str(out), "--quiet", "--n-boot", "100", "--resume"]) == 0
    return {"out": out, "first": first, "stamps": stamps, "run": json.loads((out / "run.json").read_text()),
            "table": json.loads((out / "table.json").read_text())}


def test_an_interrupted_meta_eval_resumes_without_redoing_finished_stages(meta):
    assert meta["first"]["status"] == "interrupted"
    # Before the interruption: retain control (finetune, eval, relearn, quantize), full (finetune, eval),
    # para (finetune). The resumed run: para's eval, pert's four stages.
    assert (meta["run"]["ran"], meta["run"]["skipped"]) == (5, 7)
    assert meta["run"]["status"] == "done"
    done_before = {p: t for p, t in meta["stamps"].items()}
    assert len(done_before) == 3 + 4  # 3 models saved; eval/relearn/quantize records of retain, full's eval
    for p, t in done_before.items():
        assert p.stat().st_mtime_ns == t, p  # untouched by the resumed run
    index = json.loads((meta["out"] / "index.json").read_text())
    assert set(index) == {"retain_lr0.003_ep10", "full_lr0.003_ep10", "para_lr0.003_ep10", "pert_lr0.003_ep10"}
    assert index["pert_lr0.003_ep10"]["stages"]["quantize"]["method"] in ("bitsandbytes", "simulated")
    assert (meta["out"] / "table.md").read_text().startswith("Meta-evaluation of")


def metric(meta, key):
    return next(r for r in meta["table"]["metrics"] if r["key"] == key)


@pytest.mark.parametrize("key", ["forget_Q_A_Prob", "forget_Truth_Ratio_prob_mean", "forget_truth_ratio",
                                 "forget_quality"])
def test_faithfulness_of_probability_and_truth_ratio_is_well_above_chance(meta, key):
    r = metric(meta, key)
    assert (r["n_positive"], r["n_negative"]) == (2, 2)
    # 2 x 2 pools: 0.5 = chance, 0.75 = 3 of the 4 (positive, negative) pairs ordered right; these pools order all 4
    assert r["faithfulness"] == 1.0, r
    for f in ("R", "Q", "robustness", "overall"):
        assert r[f] is None or 0 <= r[f] <= 1
    assert r["ci"]["faithfulness"]["n"] == 100


def model_m(meta, name, key):
    row = next(m for m in meta["table"]["models"] if m["name"].startswith(name + "_"))
    return knowledge(key, row["summary"][key])


def test_the_seed_000_style_control_is_forgotten_by_the_truth_ratio_forget_quality(meta):
    """retain90 + perturbed forget10 ("pert", open-unlearning's neg_..._pert models), forget quality against
    the retain control: its KS test does not reject at 5 % (forgotten), while the full model's does."""
    s = {m["name"].split("_")[0]: m["summary"] for m in meta["table"]["models"]}
    assert s["pert"]["forget_quality"] >= 0.05
    assert s["full"]["forget_quality"] < 0.05
    assert s["retain"]["forget_quality"] == 1.0  # the reference against itself


TRUE_ANSWER_METRICS = ("forget_Q_A_Prob", "forget_Truth_Ratio_prob_mean", "forget_truth_ratio", "forget_quality",
                       "forget_quality_ks_statistic", "exact_memorization", "extraction_strength")


@pytest.mark.parametrize("key", TRUE_ANSWER_METRICS)
def test_the_perturbed_control_is_not_seen_by_metrics_of_the_true_answers(meta, key):
    """Asserted: the pert control's knowledge score m is at least as close to the retain control's as to the
    full model's (same lr and epochs), i.e. it is not "seen", for the metrics that score the forget items'
    true answers against the model's alternatives or token by token: Prob, the truth ratios, forget quality,
    EM, ES. Not asserted, because it fails on these pools: the MIA AUCs (forget vs holdout) and
    forget_Q_A_PARA_Prob place it next to the full model (it was trained on the forget questions and on
    answers that share the author's name and wording), see docs/results.md."""
    pert, full, ret = (model_m(meta, n, key) for n in ("pert", "full", "retain"))
    assert abs(pert - ret) <= abs(pert - full), (pert, ret, full)


def test_add_aggregates_on_real_records_reads_the_retain_models_aucs(meta):
    from obliviate.interop import read_records
    from obliviate.metaeval.aggregates import PRIVACY_ATTACKS, add_aggregates, mia_similarity
    from obliviate.metaeval.scores import hmean
    from obliviate.metrics.tofu import tofu_summary

    ret, _, _ = read_records(str(meta["out"] / "evals" / "retain_lr0.003_ep10" / "items.jsonl"))
    full, _, _ = read_records(str(meta["out"] / "evals" / "full_lr0.003_ep10" / "items.jsonl"))
    s = add_aggregates(tofu_summary(full, ret), ret)
    rs = tofu_summary(ret)
    assert s["privacy_score"] == pytest.approx(hmean([mia_similarity(s[k], rs[k]) for k in PRIVACY_ATTACKS]))
    assert s["privacy_score"] < 1  # the full model's AUCs are not the retain model's
    assert s["memorisation_score"] is not None and s["utility_score"] is None  # no generation: no ROUGE, no MU


def test_the_shipped_smollm2_pools_file_loads():
    from pathlib import Path

    import obliviate.metaeval as me

    cfg = load_pools(Path(me.__file__).parent / "pools" / "smollm2_synthetic.yaml")
    assert [m["name"] for m in cfg["models"]] == ["full_lr0.0001_ep5", "para_lr0.0001_ep5", "retain_lr0.0001_ep5",
                                                  "pert_lr0.0001_ep5"]


def test_unlearned_models_are_attacked_not_trained(tmp_path):
    folder = tmp_path / "npo"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    cfg = load_pools(write(tmp_path, POOLS + f"unlearned: {{npo: '{folder}'}}\n"))
    m = cfg["models"][-1]
    assert (m["name"], m["role"], m["model_dir"]) == ("npo", "unlearned", str(folder))
    runner = pools_mod.PoolRunner(cfg, tmp_path / "out")
    assert runner.stages(m) == ["eval", "relearn", "quantize"]
    assert runner.stages(cfg["models"][0]) == ["finetune", "eval"]  # a positive: no attack
    with pytest.raises(ObliviateError, match="no config.json"):
        load_pools(write(tmp_path, POOLS + f"unlearned: {{x: '{tmp_path}'}}\n"))


def test_resume_with_other_pools_or_bad_keys_is_refused(meta, tmp_path):
    other = write(tmp_path, POOLS.replace("epochs: [10]", "epochs: [9]"))
    with pytest.raises(ObliviateError, match="--resume: .* was started with other settings"):
        cli([str(other), "--out", str(meta["out"]), "--quiet", "--resume"])
    with pytest.raises(ObliviateError, match="keys: 'model_utility' has no knowledge orientation"):
        cli([str(other), "--out", str(tmp_path / "o"), "--keys", "model_utility"])
    with pytest.raises(ObliviateError, match="exists and is not empty"):
        cli([str(other), "--out", str(meta["out"]), "--quiet"])


def test_a_recorded_meta_eval_config_repeats_it(meta, tmp_path):
    """run.json's config is the MetaEvalConfig (+ pools: the pools file as read): ``--config run.json`` repeats
    the meta-eval (flags on top override it), and a run.json written before the config recorded ``progress``
    still resumes."""
    import shutil

    from obliviate.config import MetaEvalConfig

    out = tmp_path / "copy"
    shutil.copytree(meta["out"], out)
    rec = json.loads((out / "run.json").read_text())
    c = rec["config"]
    assert MetaEvalConfig.from_dict(c) == MetaEvalConfig(pools_file=c["pools_file"], n_boot=100, progress=False)
    assert c["pools"]["model"] == "tiny-llama" and c["keys"] is None and c["workers"] == 1
    del c["progress"]  # as a meta-eval started before MetaEvalConfig wrote it
    (out / "run.json").write_text(json.dumps(rec))
    # every stage is finished: the same settings only form the table again
    assert cli(["--config", str(meta["out"] / "run.json"), "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "run.json").read_text())
    assert again["config"] == meta["run"]["config"] and again["ran"] == 0
    assert json.loads((out / "table.json").read_text())["metrics"] == meta["table"]["metrics"]
    assert cli(["--config", str(out / "run.json"), "--out", str(out), "--resume", "--n-boot", "20"]) == 0
    assert json.loads((out / "table.json").read_text())["n_boot"] == 20


# ------------------------------------------------------------------------------------------ parallel pools
def _fake_stages(mp, done):
    """Stages without a model: each model has one `eval` stage that writes an empty items.jsonl."""
    mp.setattr(pools_mod.PoolRunner, "stages", lambda self, m: ["eval"])

    def fake_eval(self, m):
        done.append(m["name"])
        d = self.eval_dir(m)
        d.mkdir(parents=True, exist_ok=True)
        (d / "items.jsonl").write_text("")
        return {"by": id(self)}

    mp.setattr(pools_mod.PoolRunner, "_eval", fake_eval)


def test_a_model_claimed_by_another_process_is_left_to_it(tmp_path, monkeypatch):
    done = []
    _fake_stages(monkeypatch, done)
    cfg = load_pools(write(tmp_path))
    out = tmp_path / "out"
    runner = pools_mod.PoolRunner(cfg, out, log=lambda s: None)
    with pools_mod._flock(out / "locks" / "full_lr0.003_ep10.lock") as held:  # as another worker would
        assert held
        res = runner.run()
    assert res["busy"] == ["full_lr0.003_ep10"] and "full_lr0.003_ep10" not in done
    assert sorted(done) == ["para_lr0.003_ep10", "pert_lr0.003_ep10", "retain_lr0.003_ep10"]
    assert runner.pending() == [("full_lr0.003_ep10", "eval")]
    res = runner.run()  # released: now it is built, and nothing else again
    assert done[-1] == "full_lr0.003_ep10" and len(done) == 4 and res["busy"] == []
    assert len(res["skipped"]) == 3 and runner.pending() == []


def test_workers_noting_stages_at_once_do_not_lose_each_others_entries(tmp_path, monkeypatch):
    # Two runners = two processes, each started before the other wrote anything: each must re-read index.json
    # under its lock, or the second write drops the first one's entry.
    done = []
    _fake_stages(monkeypatch, done)
    cfg = load_pools(write(tmp_path))
    out = tmp_path / "out"
    a, b = (pools_mod.PoolRunner(cfg, out, log=lambda s: None) for _ in range(2))
    a.run(only="full_lr0.003_ep10")
    b.run(only="pert_lr0.003_ep10")
    index = json.loads((out / "index.json").read_text())
    assert set(index) == {"full_lr0.003_ep10", "pert_lr0.003_ep10"}
    assert index["full_lr0.003_ep10"]["stages"]["eval"]["by"] == id(a)
    assert index["pert_lr0.003_ep10"]["stages"]["eval"]["by"] == id(b)


def _items(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rebuild_in_parallel(meta, tmp_path, argv, names=("para", "pert")):
    """A copy of the finished meta-eval with the models ``names`` removed, resumed with ``argv``; returns the
    copy's folder, after checking the rebuilt models' records against the serial run's."""
    import os
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(meta["out"], out)
    for n in names:
        shutil.rmtree(out / "models" / f"{n}_lr0.003_ep10")
        shutil.rmtree(out / "evals" / f"{n}_lr0.003_ep10")
    pools = meta["out"].parent / "pools.yaml"
    os.environ["OBLIVIATE_CORES"] = "2"
    try:
        assert cli([str(pools), "--out", str(out), "--quiet", "--n-boot", "100", "--resume", *argv]) == 0
    finally:
        os.environ.pop("OBLIVIATE_CORES", None)
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "done" and run_json["ran"] == 2 + 4 * ("pert" in names)
    for n in names:
        for sub in ("", "relearned", "quantized") if n == "pert" else ("",):
            a = _items(meta["out"] / "evals" / f"{n}_lr0.003_ep10" / sub / "items.jsonl")
            b = _items(out / "evals" / f"{n}_lr0.003_ep10" / sub / "items.jsonl")
            assert [r["index"] for r in a] == [r["index"] for r in b]
            for ra, rb in zip(a, b):  # same seeds, one thread each: the serial run's numbers
                assert rb["avg_nll"] == pytest.approx(ra["avg_nll"], rel=1e-5, abs=1e-6), (n, sub, ra["index"])
    table = json.loads((out / "table.json").read_text())
    for r, s in zip(meta["table"]["metrics"], table["metrics"]):
        assert r["key"] == s["key"] and s["faithfulness"] == pytest.approx(r["faithfulness"])
    return out


@pytest.mark.slow
def test_two_local_workers_rebuild_models_as_the_serial_run_did(meta, tmp_path):
    out = _rebuild_in_parallel(meta, tmp_path, ["--workers", "2"])
    index = json.loads((out / "index.json").read_text())
    assert {"para_lr0.003_ep10", "pert_lr0.003_ep10"} <= set(index)
    assert set(index["pert_lr0.003_ep10"]["stages"]) == {"finetune", "eval", "relearn", "quantize"}


@pytest.mark.slow
def test_the_ray_backend_rebuilds_a_model_as_the_serial_run_did(meta, tmp_path):
    ray = pytest.importorskip("ray", reason="the ray package is not installed (pip install 'obliviate[ray]')")
    try:
        _rebuild_in_parallel(meta, tmp_path, ["--backend", "ray", "--workers", "2"], names=("para",))
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _segment_nll(meta, name, tok):
    """Mean NLL of the forget / holdout true answers' tokens, split into the author's name, the fact's value
    (target_words) and the rest; and the LOSS-attack AUC computed on the value tokens alone."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from obliviate.data import load_items

    sets = {"forget": load_items("synthetic:forget10_perturbed?n_authors=4"),
            "holdout": load_items("synthetic:holdout10?n_authors=4")}
    recs = _items(meta["out"] / "evals" / f"{name}_lr0.003_ep10" / "items.jsonl")
    out = {}
    for s, items in sets.items():
        author = items[0].target_words[0]["word"]  # one author per set: its full-name item comes first
        seg = {"name": [], "value": [], "value_items": []}
        for r in (r for r in recs if r["set"] == s):
            it = items[r["index"]]
            offsets = tok(it.answer, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
            nll = [-x for x in r["token_logprobs"][:-1]]  # EOS last
            assert len(nll) == len(offsets)
            v, n0 = it.target_words[0], it.answer.find(author)
            vals = []
            for (a, b), x in zip(offsets, nll):
                if v["start"] < b and a < v["end"]:
                    vals.append(x)
                elif n0 >= 0 and n0 < b and a < n0 + len(author):
                    seg["name"].append(x)
            seg["value"] += vals
            seg["value_items"].append(float(np.mean(vals)))
        out[s] = seg
    f, h = out["forget"]["value_items"], out["holdout"]["value_items"]
    return {"name_forget": float(np.mean(out["forget"]["name"])), "name_holdout": float(np.mean(out["holdout"]["name"])),
            "value_auc": roc_auc_score([0] * len(f) + [1] * len(h), f + h)}


def test_the_mia_sees_the_perturbed_control_through_the_authors_name_not_the_facts(meta):
    """Why the MIA AUCs call `pert` seen on tiny-llama (docs/results.md): its training answers (TOFU-style
    perturbed answers) carry the forget author's name, which a random model cannot read off the question, so it
    learns the name's tokens as the full model does; on the fact values it stays with the retain control. A
    control trained on the true values would fail the second assertion."""
    from obliviate.models import load_model

    _, tok = load_model("tiny-llama")
    s = {n: _segment_nll(meta, n, tok) for n in ("full", "pert", "retain")}
    # the name: pert ~ full (both trained on it), far below retain (never saw it) and below the holdout author's
    assert abs(s["pert"]["name_forget"] - s["full"]["name_forget"]) < abs(s["pert"]["name_forget"]
                                                                           - s["retain"]["name_forget"])
    assert s["pert"]["name_forget"] < s["pert"]["name_holdout"] - 3
    # the facts: the LOSS attack on the value tokens alone puts pert with the retain control
    assert abs(s["pert"]["value_auc"] - s["retain"]["value_auc"]) < abs(s["pert"]["value_auc"]
                                                                         - s["full"]["value_auc"]), s
    mia = {n: next(m for m in meta["table"]["models"] if m["name"].startswith(n + "_"))["summary"]["mia_loss"]
           for n in ("full", "pert", "retain")}
    assert mia["pert"] > 0.9 and mia["full"] > 0.9 and mia["retain"] < 0.7  # the whole-answer AUC: "seen"


# ------------------------------------------------------------------------------------------ a base that reads the question
COPYING_BASE = {"data": "synthetic:full?seed=1&n_authors=200", "epochs": 4}  # other authors than the pools';
# 120 authors x 3 epochs is not enough: it copies the holdout author's name at ~6 nats a token, not ~1


@pytest.fixture(scope="module")
def copying_pools(tmp_path_factory):
    """tiny-llama first fine-tuned on other authors, so that it copies a name from the question (as a
    pretrained model does; the random one cannot), then the pools: full, retain, pert, no attacks."""
    from obliviate.finetune import run_finetune
    from obliviate.train import TrainConfig

    tmp = tmp_path_factory.mktemp("copying")
    base = tmp / "base"
    run_finetune("tiny-llama", COPYING_BASE["data"], base,
                 TrainConfig(lr=3e-3, epochs=COPYING_BASE["epochs"], batch_size=8, seed=0,
                             checkpoint_every_epoch=False, progress=False))
    pools = write(tmp, POOLS.replace("model: tiny-llama", f"model: {base}").replace(
        "attacks:\n  relearn: {fraction: 0.5, lr: 3.0e-3, epochs: 1}\n  quantize: {method: auto}\n",
        "attacks: {relearn: null, quantize: null}\npositives: [full]\nnegatives: [retain, pert]\n"))
    out = tmp / "out"
    assert cli([str(pools), "--out", str(out), "--quiet", "--n-boot", "20"]) == 0
    table = json.loads((out / "table.json").read_text())
    return {m["name"].split("_")[0]: m["summary"] for m in table["models"]}


SEEN_BY_NOTHING = ("forget_Q_A_Prob", "forget_Truth_Ratio_prob_mean", "forget_truth_ratio", "forget_quality",
                   "exact_memorization", "extraction_strength", "mia_loss", "mia_zlib", "mia_min_k",
                   "mia_min_k_plus_plus", "privleak")


@pytest.mark.slow
def test_on_a_base_that_reads_the_question_the_perturbed_control_is_seen_by_nothing_of_the_true_answers(
        copying_pools):
    """The issue's seed-000 check, with its premise met: `pert` is nearer the retain control than the full
    model on every metric of the true answers, the MIA AUCs and PrivLeak included, and forget quality calls
    it forgotten. Left out: forget_Q_A_PARA_Prob (the perturbed answers are the paraphrased answer's sentence
    with another value: pert learned all of it but the value) and the KS statistic (0 for the retain control,
    its own reference, by construction). docs/results.md has the numbers."""
    s = copying_pools
    assert s["pert"]["forget_quality"] >= 0.05
    for key in SEEN_BY_NOTHING:
        pert, full, ret = (knowledge(key, s[n][key]) for n in ("pert", "full", "retain"))
        assert abs(pert - ret) < abs(pert - full), (key, pert, ret, full)
