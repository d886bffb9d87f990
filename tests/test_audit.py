"""The audit on tiny-llama fine-tuned on a small synthetic family: the full model (trained on the forget author)
leaks far more than the retain model (never saw it), and an untrained base model leaks nothing. Also: every
number of audit.md is recomputed from audit.json's per-item records, and the command line."""

import argparse
import json
import math
import re

import pytest
import torch

from obliviate.audit import audit_models
from obliviate.audit.core import Settings
from obliviate.audit.stats import bootstrap_ci
from obliviate.errors import ObliviateError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FORGET = "synthetic:forget10?n_authors=2"  # 1 author, 10 items
RETAIN = "synthetic:retain90?n_authors=2"
FAST = dict(n_samples=4, max_new_tokens=24, n_boot=200)


def _obliviate():
    """The audit's prompts in the format the tiny models are trained in (obliviate's: separate tokens, the
    template's own system prompt); the 2-layer model does not carry single-turn training over to other prompts."""
    from obliviate.audit.run import formatter_factory

    return formatter_factory("obliviate")


def _finetune(spec: str):
    from obliviate.data import load_items
    from obliviate.data.formatting import Formatter
    from obliviate.models import load_model
    from obliviate.train import TRAIN_DTYPE, EncodedBatches, TrainConfig, nll_loss, train

    model, tok = load_model("tiny-llama", dtype=TRAIN_DTYPE)
    fmt = Formatter(tok)  # obliviate's format: the audits below name that protocol (OBLIVIATE)
    enc = [fmt.encode(it.question, it.answer) for it in load_items(spec)]
    cfg = TrainConfig(epochs=40, lr=1e-2, batch_size=10, progress=False, checkpoint_every_epoch=False)
    train(model, EncodedBatches(enc, 10, tok.pad_token_id, 0), nll_loss, cfg)
    model.eval()
    return model, tok


@pytest.fixture(scope="module")
def trained():
    """full (20 items: both authors) and retain (the 10 items of the author that is not forgotten)."""
    from obliviate.models import load_model

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"full": _finetune("synthetic:full?n_authors=2"), "retain": _finetune("synthetic:retain90?n_authors=2"),
                "base": load_model("tiny-llama")}
    finally:
        torch.set_num_threads(n)


def _audit(trained, views, **kw):
    models = {"audited": trained["full"], "full": trained["full"], "retain": trained["retain"], "base": trained["base"]}
    return audit_models(models, FORGET, retain=RETAIN, views=views, settings=Settings(**{**FAST, **kw}),
                        formatter=_obliviate())


def _value(audit, view, role, metric=None):
    res = audit["views"][view]
    return res["models"][role]["metrics"][metric or res["headline"]]["value"]


def test_full_model_leaks_far_more_than_retain_in_recall_and_loglik(trained):
    a = _audit(trained, ["novel_recall_leak", "forget_loglik"])
    full, ret, base = (_value(a, "novel_recall_leak", r) for r in ("full", "retain", "base"))
    assert full >= 0.5 and ret <= 0.2 and full - ret >= 0.4, (full, ret)
    assert base == 0.0
    lp = {r: _value(a, "forget_loglik", r) for r in ("full", "retain", "base")}
    assert lp["full"] > lp["retain"] + 3 and lp["retain"] > lp["base"], lp
    assert a["views"]["forget_loglik"]["models"]["audited"]["metrics"]["mean_logprob"]["delta_vs_full"] == 0.0


def test_full_model_leaks_far_more_than_retain_under_format_shift(trained):
    a = _audit(trained, ["format_shift_leak"])
    full, ret, base = (_value(a, "format_shift_leak", r) for r in ("full", "retain", "base"))
    assert full - ret >= 0.2 and abs(base) <= 0.1, (full, ret, base)
    assert _value(a, "format_shift_leak", "full", "multiple_choice") >= 0.6
    # base_control came along with the leak view and reads the base model's headline
    bc = a["views"]["base_control"]["rows"]["format_shift_leak"]
    assert bc["base"] == base and bc["audited_minus_base"] == pytest.approx(full - base)


def test_full_model_leaks_far_more_than_retain_best_of_n(trained):
    a = _audit(trained, ["best_of_n_leak"], n_samples=8)
    full, ret, base = (_value(a, "best_of_n_leak", r) for r in ("full", "retain", "base"))
    assert full - ret >= 0.3 and base == 0.0, (full, ret, base)
    items = a["views"]["best_of_n_leak"]["models"]["full"]["items"]
    assert all(len(it["samples"]) == 8 for it in items)
    # leak@1 is the share of leaking samples (pass@1 = c / n)
    for it in items:
        if it["leaks"] is not None:
            assert it["leak_at_1"] == pytest.approx(it["leaks"] / 8)


def test_base_control_says_when_the_base_model_is_missing(trained):
    models = {"audited": trained["full"], "full": trained["full"], "retain": trained["retain"]}
    a = audit_models(models, FORGET, views=["forget_loglik", "base_control"], settings=Settings(**FAST),
                     formatter=_obliviate())
    assert "no --base-model" in a["views"]["base_control"]["missing"]
    from obliviate.audit.report import render_md

    assert "Not run: no --base-model given" in render_md(a)


# --- every number of audit.md, recomputed from audit.json alone -------------------------------------------------

def _recompute(spec_name, specs, items):
    """An independent implementation of the metric specs (metrics.py's docstring)."""
    spec = specs[spec_name]
    if spec["kind"] == "mean":
        v = [it[spec["field"]] for it in items if it.get(spec["field"]) is not None]
        return math.fsum(v) / len(v) if v else None
    if spec["kind"] == "ratio":
        rows = [it for it in items if it.get(spec["den"]) is not None]
        d = sum(it[spec["den"]] for it in rows)
        return sum(it[spec["num"]] for it in rows) / d if d else None
    parts = [p for p in (_recompute(m, specs, items) for m in spec["of"]) if p is not None]
    if not parts:
        return None
    return max(parts) if spec["kind"] == "max_of" else sum(parts) / len(parts)


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+", cell)]


def _expect(v, pct):
    return None if v is None else (100 * v if pct else v)


def test_every_number_in_audit_md_is_recomputed_from_the_items(trained, tmp_path):
    from obliviate.io import atomic_write_json, atomic_write_text
    from obliviate.audit.report import render_md

    a = _audit(trained, ["novel_recall_leak", "format_shift_leak", "forget_loglik", "relearn_recovery"],
               relearn_epochs=1)
    atomic_write_json(tmp_path / "audit.json", a)
    atomic_write_text(tmp_path / "audit.md", render_md(a))
    audit = json.loads((tmp_path / "audit.json").read_text())
    md = (tmp_path / "audit.md").read_text()
    roles = [r for r in ("audited", "full", "retain", "base") if r in audit["models"]]
    seed, n_boot = audit["settings"]["seed"], audit["settings"]["n_boot"]
    rows = [line.split("|")[1:-1] for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    table = {(c[0].strip(), c[1].strip().strip("*")): c[2:] for c in rows
             if c[0].strip() in audit["views"] and len(c) == 4 + len(roles)}  # the main table's rows
    checked = 0
    for view, res in audit["views"].items():
        if "models" not in res:
            continue
        specs = res["metric_specs"]
        for metric, spec in specs.items():
            pct = spec.get("format") == "percent"
            cells = table[(view, metric)]
            values = {}
            for k, role in enumerate(roles):
                if role not in res["models"]:  # a view that does not run on this role (relearn: no base)
                    assert cells[k].strip() == "—"
                    values[role] = None
                    continue
                items = res["models"][role]["items"]
                v = _recompute(metric, specs, items)
                values[role] = v
                got = _numbers(cells[k])
                if v is None:
                    assert cells[k].strip() == "n/a"
                    continue
                ci = bootstrap_ci(items, lambda s: _recompute(metric, specs, s), seed=seed, n_boot=n_boot)
                want = [_expect(v, pct), _expect(ci[0], pct), _expect(ci[1], pct)]
                assert got == pytest.approx(want, abs=0.006 if pct else 0.0006), (view, metric, role)
                checked += 1
            for k, ref in enumerate(("full", "retain")):
                cell = cells[len(roles) + k]
                d = None if values["audited"] is None or values.get(ref) is None else values["audited"] - values[ref]
                if d is None:
                    assert cell.strip() == "n/a"
                else:
                    assert _numbers(cell) == pytest.approx([_expect(d, pct)], abs=0.006 if pct else 0.0006)
    assert checked >= 30
    bc = [c for c in rows if c[0].strip() in audit["views"] and len(c) == 4]
    for c in bc:  # base control rows: the base model's headline and audited - base
        res = audit["views"][c[0].strip()]
        pct = res["metric_specs"][c[1].strip()].get("format") == "percent"
        base = _recompute(c[1].strip(), res["metric_specs"], res["models"]["base"]["items"])
        aud = _recompute(c[1].strip(), res["metric_specs"], res["models"]["audited"]["items"])
        assert _numbers(c[2])[0] == pytest.approx(_expect(base, pct), abs=0.006)
        assert _numbers(c[3])[0] == pytest.approx(_expect(aud - base, pct), abs=0.006)


def test_the_command_writes_audit_json_and_md(tmp_path, capsys):
    from obliviate.cli.audit import add_parser, run

    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    out = tmp_path / "audit"
    args = ap.parse_args(["audit", "--model", "tiny-llama", "--full-model", "tiny-llama?seed=1",
                          "--retain-model", "tiny-llama?seed=2", "--forget", FORGET, "--limit", "3",
                          "--views", "novel_recall_leak,forget_loglik", "--max-new-tokens", "8", "--out", str(out)])
    assert run(args) == 0
    audit = json.loads((out / "audit.json").read_text())
    assert list(audit["views"]) == ["novel_recall_leak", "forget_loglik", "base_control"]
    assert audit["n_forget"] == 3
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    assert "| novel_recall_leak | **question_leak** |" in (out / "audit.md").read_text()
    assert "question_leak" in capsys.readouterr().out


def test_the_command_line_names_flags_and_a_run_json_repeats_the_audit(tmp_path, capsys, monkeypatch):
    """AuditConfig: the flags come from it, a bad setting is named by its flag before any model loads, and
    --config run.json repeats an audit (its recorded config is complete: the resolved protocol and every view
    setting), a flag given on top winning."""
    from obliviate.cli import main

    base = ["audit", "--model", "tiny-llama", "--full-model", "tiny-llama?seed=1", "--retain-model",
            "tiny-llama?seed=2", "--forget", FORGET]
    for flags, msg in ((["--n-samples", "0"], "--n-samples 0: must be an integer >= 1"),
                       (["--top-p", "1.5"], "--top-p 1.5: must be in (0, 1]"),
                       (["--quant-bits", "8,3"], "--quant-bits 8,3: must be a non-empty list of 8 and/or 4"),
                       (["--folds", "1"], "--folds 1: must be an integer >= 2"),
                       (["--sample-memory-gb", "0"], "--sample-memory-gb 0"),
                       (["--views", "nope"], "--views nope: unknown view; valid views: novel_recall_leak")):
        assert main(base + flags + ["--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(base[:3] + ["--out", str(tmp_path / "bad")]) == 2
    assert "audit needs --full-model" in capsys.readouterr().err

    out = tmp_path / "a"
    assert main(base + ["--limit", "2", "--views", "forget_loglik", "--n-boot", "50", "--seed", "3",
                        "--out", str(out)]) == 0
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["views"] == ["forget_loglik"] and cfg["settings"]["n_boot"] == 50 and cfg["settings"]["seed"] == 3
    assert cfg["retain"] == "synthetic:retain90?n_authors=2"  # the retain split that goes with --forget
    assert cfg["protocol"]["name"] == "open-unlearning" and cfg["style"] == "chat"  # the default, resolved
    capsys.readouterr()
    out2 = tmp_path / "b"
    assert main(["audit", "--config", str(out / "run.json"), "--n-boot", "60", "--out", str(out2)]) == 0
    cfg2 = json.loads((out2 / "run.json").read_text())["config"]
    assert cfg2 == {**cfg, "settings": {**cfg["settings"], "n_boot": 60}}
    a1, a2 = (json.loads((d / "audit.json").read_text())["views"]["forget_loglik"] for d in (out, out2))
    assert a1["models"]["audited"]["items"] == a2["models"]["audited"]["items"]  # the same audit, repeated


def test_bad_inputs_fail_before_any_model_loads(tmp_path, monkeypatch):
    from obliviate.audit.run import run_audit

    def no_load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("obliviate.models.load_model", no_load)
    with pytest.raises(ObliviateError, match="views nope: unknown view; valid views: novel_recall_leak"):
        run_audit("tiny-llama", "tiny-llama", "tiny-llama", FORGET, tmp_path / "a", views=["nope"])
    with pytest.raises(ObliviateError, match="unknown synthetic config"):
        run_audit("tiny-llama", "tiny-llama", "tiny-llama", "synthetic:nope", tmp_path / "b")
    with pytest.raises(ObliviateError, match="limit 0: must be an integer >= 1"):
        run_audit("tiny-llama", "tiny-llama", "tiny-llama", FORGET, tmp_path / "c", limit=0)
    with pytest.raises(ObliviateError, match="unknown protocol"):
        run_audit("tiny-llama", "tiny-llama", "tiny-llama", FORGET, tmp_path / "d", protocol="nope")
    assert not any((tmp_path / x).exists() for x in "abcd")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep.txt").write_text("x")
    with pytest.raises(ObliviateError, match="exists and is not empty"):
        run_audit("tiny-llama", "tiny-llama", "tiny-llama", FORGET, tmp_path / "e")
    assert (tmp_path / "e" / "keep.txt").read_text() == "x"


def test_audits_are_listed_in_the_registry():
    from obliviate.registry import AUDITS, REGISTRIES

    assert REGISTRIES["audits"] is AUDITS
    assert {"novel_recall_leak", "format_shift_leak", "best_of_n_leak", "forget_loglik", "base_control"} <= set(
        AUDITS.names())


def test_chain_of_clues_and_masked_probe_on_the_trained_models(trained):
    a = _audit(trained, ["chain_of_clues_leak", "masked_probe"])
    clue = {r: _value(a, "chain_of_clues_leak", r) for r in ("full", "retain", "base")}
    # tiny-llama was trained on single-turn chats only: earlier turns confuse it, so it leaks less than in view 1
    assert clue["full"] - clue["retain"] >= 0.2 and clue["base"] == 0.0, clue
    # the clue turns name the author: the name is never an eligible unit of the final answer
    it = a["views"]["chain_of_clues_leak"]["models"]["full"]["items"][1]
    assert it["clues"] == 3 and not any(u["eligible"] for u in it["units"] if "falko" in u["unit"])
    # the logit lens at the last layer is the model's own next token: the full model predicts the key token
    assert _value(a, "masked_probe", "full", "lens_top1_last") >= 0.5
    assert _value(a, "masked_probe", "base", "lens_top1_last") == 0.0


def test_relearn_and_quantization_on_the_trained_models(trained):
    a = _audit(trained, ["relearn_recovery", "quantization_delta"], relearn_epochs=2, relearn_lr=1e-3, quant_bits=(8,))
    rel = a["views"]["relearn_recovery"]["models"]
    assert set(rel) == {"audited", "full", "retain"}  # relearning is measured against the retain model
    for it, r in zip(rel["audited"]["items"], rel["retain"]["items"]):
        assert it["recovery"] == pytest.approx(it["gain"] - r["gain"])
        if None not in (it["leak_after"], it["leak_before"], r["leak_after"], r["leak_before"]):
            assert it["leak_recovery"] == (it["leak_after"] - it["leak_before"]) - (r["leak_after"] - r["leak_before"])
    q = a["views"]["quantization_delta"]["models"]["full"]["metrics"]["logprob_delta_8bit"]["value"]
    assert abs(q) < 0.2, q
    assert any("8-bit: bitsandbytes" in n or "torch dynamic int8" in n for n in a["notes"])


def test_reuse_eval_takes_the_audited_models_greedy_answers(tmp_path):
    from obliviate.audit.run import run_audit
    from obliviate.data import load_items

    forget = load_items(FORGET)[:3]
    ev = tmp_path / "eval"
    ev.mkdir()
    # an eval whose greedy answers are the true answers: every eligible item leaks, which an untrained
    # tiny-llama (regenerating) never does
    (ev / "items.jsonl").write_text("".join(json.dumps({"set": "forget", "index": i, "question": it.question,
                                                        "generation": it.answer}) + "\n" for i, it in enumerate(forget)))
    (ev / "run.json").write_text(json.dumps({"config": {"model": "tiny-llama"}}))
    a = run_audit("tiny-llama", "tiny-llama", "tiny-llama", FORGET, tmp_path / "out", limit=3, reuse_eval=str(ev),
                  views=["novel_recall_leak"], max_new_tokens=4)
    assert _value(a, "novel_recall_leak", "audited") == 1.0
    assert _value(a, "novel_recall_leak", "full") == 0.0
    assert [it["generation"] for it in a["views"]["novel_recall_leak"]["models"]["audited"]["items"]] == \
        [it.answer for it in forget]
    with pytest.raises(ObliviateError, match="that evaluation is of model 'tiny-llama', not --model 'tiny-llama\\?seed=1'"):
        run_audit("tiny-llama?seed=1", "tiny-llama", "tiny-llama", FORGET, tmp_path / "o2", reuse_eval=str(ev))
    with pytest.raises(ObliviateError, match="4 forget question\\(s\\) have no answer there"):
        run_audit("tiny-llama", "tiny-llama", "tiny-llama", FORGET, tmp_path / "o3", limit=7, reuse_eval=str(ev))
