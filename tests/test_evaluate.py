import json

import pytest
import torch

from obliviate.cli import main
from obliviate.data import load_items
from obliviate.data.formatting import Formatter
from obliviate.engine.scoring import ScoreRequest, score
from obliviate.errors import ObliviateError
from obliviate.evaluate import evaluate_tofu, run_tofu_eval, tofu_sets
from obliviate.metrics.tofu import tofu_summary


def plain_avg_nll(model, prompt_ids, answer_ids):
    """Independent computation: one plain transformers forward over prompt+answer, full logits."""
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], -1)
    tok_lp = lp.gather(-1, torch.tensor(answer_ids).unsqueeze(-1)).squeeze(-1)
    return -tok_lp.mean().item(), tok_lp, lp


def test_scoring_engine_matches_plain_transformers(tiny):
    model, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:forget10_perturbed")[:9] + load_items("synthetic:world_facts_perturbed")[:5]
    reqs = [ScoreRequest(fmt.prompt_ids(it.question),
                         [fmt.answer_ids(a) for a in [it.answer, *it.perturbed_answers]]) for it in items]
    res = score(model, reqs, batch_tokens=600)  # several batches, mixed prompt and answer lengths
    for it, req, per in zip(items, reqs, res):
        assert len(per) == len(req.answers)
        for ans, s in zip(req.answers, per):
            ref, tok_lp, lp = plain_avg_nll(model, req.prompt_ids, ans)
            assert s.avg_nll == pytest.approx(ref, abs=1e-4)
            assert s.num_tokens == len(ans) and s.nll == pytest.approx(ref * len(ans), abs=1e-3)
            assert s.argmax_hits == (lp.argmax(-1) == torch.tensor(ans)).int().tolist()
            p = lp.exp()
            mu = (p * lp).sum(-1)
            sigma = ((p * lp * lp).sum(-1) - mu**2).sqrt()
            assert s.token_minkpp == pytest.approx(((tok_lp - mu) / sigma).tolist(), rel=5e-3, abs=5e-3)


def test_eval_records_match_plain_chat_formatted_computation(tiny):
    model, tok = tiny
    summary, records = evaluate_tofu(model, tok, data="synthetic", limit=4, generation=False, gradnorm=False,
                                     progress=False, protocol="obliviate")  # separate tokens, as fmt below
    fmt = Formatter(tok)
    for r in records:
        prompt_ids = tok(r["prompt"], add_special_tokens=False).input_ids  # the exact text fed to the model
        ref, _, _ = plain_avg_nll(model, prompt_ids, fmt.answer_ids(r["answer"]))
        assert r["avg_nll"] == pytest.approx(ref, abs=1e-4)
    assert {r["set"] for r in records} == {"forget", "retain", "real_authors", "world_facts", "holdout"}
    required = {"set", "index", "question", "answer", "prompt", "avg_nll", "paraphrased_avg_nll", "perturbed_avg_nll",
                "truth_ratio"}
    assert all(required <= r.keys() for r in records)


def test_forget_quality_against_own_retain_eval_is_one(tiny):
    model, tok = tiny
    summary, records = evaluate_tofu(model, tok, data="synthetic", limit=6, generation=False, gradnorm=False,
                                     progress=False)
    again = tofu_summary(records, retain_records=records)
    assert again["forget_quality"] == 1.0
    assert summary["forget_quality"] is None and "--retain-eval" in summary["missing"]["forget_quality"]


def test_mismatched_retain_items_error(tiny):
    model, tok = tiny
    _, records = evaluate_tofu(model, tok, data="synthetic", limit=6, generation=False, gradnorm=False, progress=False)
    other = [dict(r) for r in records if not (r["set"] == "forget" and r["index"] == 5)]
    with pytest.raises(ObliviateError):
        tofu_summary(records, retain_records=other)


@pytest.mark.slow  # 26 s (pytest --durations, 2-core machine)
def test_eval_cli_end_to_end_with_generation(tmp_path, capsys):
    out = tmp_path / "ev"
    code = main(["eval", "--model", "tiny-llama", "--data", "synthetic", "--limit", "3", "--out", str(out),
                 "--quiet", "--variants", "paraq,jailbreak"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["config"]["benchmark"] == "tofu"
    assert run["seed"] is None and "no random numbers" in run["seed_note"]  # said, not left blank
    assert summary["model_utility"] is not None and summary["forget_Q_A_JB_Prob"] is not None
    assert list(summary)[-2:] == ["n_items", "missing"]  # the non-metric keys close the dict, variants too
    assert all(isinstance(r["generation"], str) for r in items if r["set"] != "holdout")
    assert all("rougeL_recall" in r for r in items if r["set"] != "holdout")
    assert all(r.get("gradnorm", 0) > 0 for r in items if r["set"] in ("forget", "holdout"))
    assert summary["mia_gradnorm"] is not None
    # reuse as the retain eval of itself: forget quality 1, privleak 0
    code = main(["eval", "--model", "tiny-llama", "--data", "synthetic", "--limit", "3", "--out", str(tmp_path / "ev2"),
                 "--quiet", "--retain-eval", str(out), "--no-generation"])
    s2 = json.loads((tmp_path / "ev2" / "summary.json").read_text())
    assert s2["forget_quality"] == 1.0 and s2["privleak"] == pytest.approx(0.0)


def test_from_logs_golden_cli(tofu_logs, tmp_path, capsys):
    code = main(["eval", "--from-logs", str(tofu_logs / "phi_full_wd0.01.json"), "--retain-logs",
                 str(tofu_logs / "phi_retain90_wd0.01.json"), "--out", str(tmp_path / "fl")])
    assert code == 0
    s = json.loads((tmp_path / "fl" / "summary.json").read_text())
    assert round(s["model_utility"], 4) == 0.5221
    assert s["forget_quality"] == pytest.approx(2.194e-16, rel=1e-3)
    assert round(s["forget_quality_ks_statistic"], 4) == 0.3467
    assert (tmp_path / "fl" / "run.json").exists()


def test_bad_inputs(tmp_path, capsys):
    with pytest.raises(ObliviateError, match="unknown TOFU split 'forget11'"):
        tofu_sets("synthetic", "forget11")
    with pytest.raises(ObliviateError, match="file not found|no such|not found"):
        run_tofu_eval("tiny-llama", tmp_path / "x", data="synthetic", retain_eval=str(tmp_path / "missing.jsonl"))
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", "tiny-llama", "--benchmark", "glue", "--out", str(tmp_path / "y")])
    assert e.value.code == 2 and "invalid choice: 'glue'" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path / "z")]) == 2
    assert "eval needs --model" in capsys.readouterr().err


def test_muse_eval_on_fixture(tmp_path, capsys):
    from test_muse_data import muse_dir as _fixture  # noqa: F401  (fixture body reused below)

    from obliviate.evaluate import run_muse_eval
    import test_muse_data as tm

    root = tmp_path / "muse"
    tm._write_jsonl(root / "verbmem" / "forget.jsonl", tm.VERBMEM)
    tm._write_jsonl(root / "knowmem" / "forget_qa.jsonl", tm.KNOWMEM_FORGET)
    tm._write_jsonl(root / "knowmem" / "retain_qa.jsonl", tm.KNOWMEM_FORGET)
    tm._write_jsonl(root / "knowmem" / "forget_qa_icl.jsonl", tm.KNOWMEM_ICL)
    tm._write_jsonl(root / "knowmem" / "retain_qa_icl.jsonl", tm.KNOWMEM_ICL)
    tm._write_jsonl(root / "privleak" / "forget.jsonl", tm._text_rows(["Priv forget text one.", "Priv forget two."]))
    tm._write_jsonl(root / "privleak" / "holdout.jsonl", tm._text_rows(tm.PRIV_HOLDOUT))
    s = run_muse_eval("tiny-llama", tmp_path / "out", corpus="muse-news", data_dir=str(root), progress=False)
    assert {"verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc", "privleak"} <= s.keys()
    assert 0.0 <= s["privleak_auc"] <= 1.0 and s["privleak"] is not None
    items = [json.loads(x) for x in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert {r["set"] for r in items} == {"verbmem", "knowmem_forget", "knowmem_retain", "privleak_forget",
                                         "privleak_holdout"}
    capsys.readouterr()
    assert main(["eval", "--model", "tiny-llama", "--benchmark", "muse-news", "--data-dir", str(root), "--quiet",
                 "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "verbmem_f" in printed and "privleak_auc" in printed  # the MUSE table, printed as TOFU's is


@pytest.mark.slow  # 62 s
def test_full_model_scores_far_below_its_retain_model(tmp_path):
    """Fine-tune tiny-llama on synthetic 'full' and 'retain90' (4 authors; forget10 = 1 author, 10 QA):
    the full model's forget quality against the retain model is far below the retain model's own 1.0."""
    from obliviate.finetune import run_finetune
    from obliviate.models import load_model
    from obliviate.train import TrainConfig

    data = "synthetic?n_authors=4"
    recs = {}
    for name in ("full", "retain90"):
        cfg = TrainConfig(epochs=30, lr=1e-2, batch_size=8, progress=False, checkpoint_every_epoch=False)
        run_finetune("tiny-llama", f"synthetic:{name}?n_authors=4", tmp_path / name, cfg)
        model, tok = load_model(str(tmp_path / name))
        summary, recs[name] = evaluate_tofu(model, tok, data=data, generation=False, gradnorm=False, progress=False)
        recs[name + "_summary"] = summary
    fq_full = tofu_summary(recs["full"], recs["retain90"])["forget_quality"]
    fq_retain = tofu_summary(recs["retain90"], recs["retain90"])["forget_quality"]
    assert fq_retain == 1.0
    assert fq_full < 0.05, fq_full
    assert recs["full_summary"]["forget_Q_A_Prob"] > 100 * recs["retain90_summary"]["forget_Q_A_Prob"]


def test_gradient_norm_matches_autograd_and_keeps_no_grads(tiny_fresh):
    from obliviate.engine.forward import answer_logits
    from obliviate.engine.scoring import gradient_norm

    model, _ = tiny_fresh
    p, a = [1, 2, 3, 4, 5], [10, 11, 12, 2]
    g = gradient_norm(model, p, a)
    ids, labels = torch.tensor([p + a]), torch.tensor([[-100] * 5 + a])
    logits, targets, _, _ = answer_logits(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                                  "labels": labels})
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, targets), list(model.parameters()))
    assert g == pytest.approx(torch.sqrt(sum((x**2).sum() for x in grads)).item(), rel=1e-5)
    assert all(q.grad is None for q in model.parameters())


def test_a_retain_eval_of_other_forget_items_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    forget = tofu_sets("synthetic", "forget10")["forget"][:4]  # what `eval --limit 4` would have recorded
    records = [{"set": "forget", "index": i, "question": it.question} for i, it in enumerate(forget)]
    path = tmp_path / "retain_items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("obliviate.models.load_model", no_load)
    out = tmp_path / "ev"
    with pytest.raises(ObliviateError, match=r"^--retain-eval .*retain_items.jsonl: forget item \(index=3, .*"
                                             r"only in the retain-model records.*same --data, --split and --limit"):
        run_tofu_eval("tiny-llama", out, data="synthetic", limit=3, retain_eval=str(path))
    no_forget = tmp_path / "no_forget.jsonl"
    no_forget.write_text(json.dumps({"set": "holdout", "index": 0, "question": "q"}) + "\n")
    with pytest.raises(ObliviateError, match="retain-model records hold no items of set 'forget'"):
        run_tofu_eval("tiny-llama", out, data="synthetic", limit=4, retain_eval=str(no_forget))
    assert not out.exists()
    with pytest.raises(AssertionError, match="the model was loaded"):  # the same items pass the check
        run_tofu_eval("tiny-llama", out, data="synthetic", limit=4, retain_eval=str(path))


def test_the_printed_table_gives_every_missing_headline_value_its_reason():
    from obliviate.evaluate import format_summary

    text = format_summary({"forget_quality": None, "model_utility": 0.5, "privleak": None,
                           "missing": {"forget_quality": "needs --retain-eval", "privleak": "needs the retain AUC"}})
    assert "  model_utility          0.5" in text
    assert "(forget_quality: needs --retain-eval)" in text and "(privleak: needs the retain AUC)" in text


def test_the_muse_table_has_its_own_headline():
    from obliviate.evaluate import MUSE_HEADLINE, format_summary

    text = format_summary({"verbmem_f": 0.25, "knowmem_f": None, "knowmem_r": 0.5, "privleak_auc": 0.6,
                           "privleak": -20.0, "missing": {"knowmem_f": "no records"}}, MUSE_HEADLINE)
    assert "  verbmem_f              0.25" in text and "  privleak               -20" in text
    assert "(knowmem_f: no records)" in text and "forget_quality" not in text
