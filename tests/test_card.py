"""``obliviate card``: the model card loads with huggingface_hub.ModelCard and its metadata validates (offline)."""

import argparse
import json

import pytest

from obliviate.errors import ObliviateError
from obliviate.report.card import trace_base, write_card

hf = pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed (it comes with transformers)")


@pytest.fixture()
def run(tmp_path):
    # a fine-tuned model (its run.json names the built-in base) and an unlearn run from it, written by hand
    full = tmp_path / "full"
    full.mkdir()
    (full / "run.json").write_text(json.dumps({"command": "finetune", "config": {"model": "smollm2-135m"}}))
    run = tmp_path / "npo"
    (run / "eval" / "epoch-2").mkdir(parents=True)
    (run / "eval" / "epoch-2" / "summary.json").write_text(json.dumps(
        {"forget_quality": 0.42, "model_utility": 0.51, "forget_truth_ratio": 0.63, "privleak": None}))
    (run / "run.json").write_text(json.dumps({
        "command": "unlearn", "status": "done", "seed": 0, "git_commit": "abc123",
        "config": {"model": str(full), "method": "npo", "method_config": {"beta": 0.1, "alpha": 1.0},
                   "forget": "tofu:forget10", "retain": "tofu:retain90", "n_forget": 400, "n_retain": 3600,
                   "train": {"epochs": 2, "lr": 1e-5, "batch_size": 4, "grad_accum": 8, "lora": True, "lora_r": 8},
                   "robust": {"sam_rho": None}, "eval": {"data": "tofu", "split": "forget10", "limit": None}}}))
    return run


def test_card_round_trips_through_model_card(run, tmp_path):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"models": {"audited": str(run)}, "views": {"novel_recall_leak": {
        "headline": "leak_rate", "metric_specs": {"leak_rate": {"format": "percent"}},
        "models": {"audited": {"metrics": {"leak_rate": {"value": 0.1, "ci": [0.05, 0.15]}}}}}}}))
    out = write_card(run, tmp_path / "README.md", audit=audit)
    card = ModelCard.load(out)
    d = card.data
    assert d.license == "apache-2.0"  # SmolLM2's, found through the fine-tune's run.json
    assert d.library_name == "transformers" and d.pipeline_tag == "text-generation" and d.language == "en"
    assert d.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert {"unlearning", "npo", "tofu", "lora"} <= set(d.tags) and d.datasets == ["locuslab/TOFU"]
    # the metadata validates: it rebuilds into ModelCardData, and model-index parses into EvalResults
    again = ModelCardData(**d.to_dict())
    assert again.to_dict() == d.to_dict()
    name, results = model_index_to_eval_results(d.to_dict()["model-index"])
    vals = {r.metric_type: r.metric_value for r in results}
    assert vals == {"forget_quality": 0.42, "model_utility": 0.51, "forget_truth_ratio": 0.63}  # None left out
    body = card.text
    assert "| learning rate | 1e-05 |" in body and "| LoRA | r=8 |" in body
    assert "| novel_recall_leak | leak_rate | 10.00 % [5.00, 15.00] |" in body
    assert "AutoModelForCausalLM.from_pretrained" in body and "@inproceedings{maini2024tofu" in body


def test_card_quotes_the_sweep_and_selection(run, tmp_path):
    from huggingface_hub import ModelCard

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "grid.yaml").write_text("model: m\nforget: tofu:forget10\n")
    (sweep / "grid.json").write_text(json.dumps({"n_points": 4, "grid_hash": "f" * 64, "varying": ["lr", "alpha"]}))
    (sweep / "selection.json").write_text(json.dumps({
        "rule": {"by": "forget_quality", "tie_break": "model_utility", "min": ["model_utility=0.9*full"], "max": [],
                 "epoch": "last"}, "ranking_uses": ["forget_quality", "model_utility"],
        "rank1": {"idx": 2, "epoch": 2}}))
    ap = argparse.ArgumentParser()
    from obliviate.cli import card as _card_cli

    _card_cli.add_parser(ap.add_subparsers())
    args = ap.parse_args(["card", str(run), "--out", str(tmp_path / "c.md"), "--sweep", str(sweep),
                          "--license", "mit"])
    assert args.func(args) == 0
    card = ModelCard.load(tmp_path / "c.md")
    assert card.data.license == "mit"
    assert "f" * 64 in card.text and "rank-1 by `forget_quality`, tie-break `model_utility`" in card.text
    assert "subject to `model_utility=0.9*full`" in card.text and "point p002, epoch 2" in card.text


def test_card_errors(tmp_path):
    with pytest.raises(ObliviateError, match="no run.json"):
        write_card(tmp_path, tmp_path / "x.md")
    assert trace_base("meta-llama/Llama-3.2-1B") == ("meta-llama/Llama-3.2-1B", None, ["meta-llama/Llama-3.2-1B"])


def test_unlearn_card_flag_writes_a_card_next_to_the_model(tmp_path, one_torch_thread):
    import argparse

    from huggingface_hub import ModelCard

    from obliviate.unlearn import add_unlearn_parser

    ap = argparse.ArgumentParser()
    add_unlearn_parser(ap.add_subparsers())
    out = tmp_path / "npo"
    args = ap.parse_args(["unlearn", "--model", "tiny-llama", "--method", "npo", "--forget", "synthetic:forget01",
                          "--retain", "synthetic:retain99", "--out", str(out), "--epochs", "1", "--batch-size", "8",
                          "--quiet", "--card"])
    assert args.func(args) == 0
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "npo" in card.data.tags
    assert card.data.license == "other" and card.data.base_model is None  # tiny-llama: no hub base, no license
