import json

import pytest
import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter, collate
from obliviate.engine.forward import sequence_logprobs
from obliviate.errors import ObliviateError
from obliviate.finetune import run_finetune
from obliviate.models import load_model
from obliviate.train import EncodedBatches, TrainConfig, length_grouped_batches, nll_loss, padding_fraction, train


def mean_pnorm(model, tok, items) -> float:
    from obliviate.protocols import get_protocol

    fmt = Formatter.from_protocol(tok, get_protocol())  # the default protocol's prompts, which run_finetune trains on
    batch = collate([fmt.encode(it.question, it.answer) for it in items], tok.pad_token_id)
    with torch.no_grad():
        s, n = sequence_logprobs(model, batch)
    return (s / n).exp().mean().item()


def test_finetune_tiny_llama_memorises_forget01(tmp_path):
    items = load_items("synthetic:forget01")
    before = mean_pnorm(*load_model("tiny-llama", seed=0), items)
    cfg = TrainConfig(epochs=30, lr=1e-2, batch_size=4, progress=False, checkpoint_every_epoch=False)
    rec = run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "ft", cfg)
    model, tok = load_model(str(tmp_path / "ft"))
    after = mean_pnorm(model, tok, items)
    assert before < 0.01
    assert after > 0.8, after
    run = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert run["status"] == "done" and run["seed"] == 0 and run["config"]["data"] == "synthetic:forget01"
    assert {"torch", "transformers", "python", "allocator"} <= run["versions"].keys()
    assert "git_commit" in run and run["timings"]["total_s"] > 0
    assert run["final_loss"] == rec["final_loss"] < 0.5
    assert (tmp_path / "ft" / "model.safetensors").exists()


def test_resume_continues_from_last_epoch(tmp_path):
    out = tmp_path / "ft"
    cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=4, progress=False)
    run_finetune("tiny-llama", "synthetic:forget01", out, cfg)
    assert (out / "checkpoints" / "epoch-1").exists()
    cfg3 = TrainConfig(epochs=3, lr=1e-3, batch_size=4, progress=False)
    rec = run_finetune("tiny-llama", "synthetic:forget01", out, cfg3, resume=True)
    assert [e["epoch"] for e in rec["history"]["epochs"]] == [1, 2, 3]


def test_resume_uses_the_new_lr_and_refuses_other_changed_settings(tmp_path):
    out = tmp_path / "ft"
    run_finetune("tiny-llama", "synthetic:forget01", out, TrainConfig(epochs=1, lr=1e-3, batch_size=4, progress=False))
    ckpt = torch.load(out / "checkpoints" / "epoch-0" / "state.pt", weights_only=False)["params"]
    # another batch size (or model, data, seed, ...) would not continue the same run: refused, naming the change
    with pytest.raises(ObliviateError, match=r"train.batch_size: 4 -> 2.*only --epochs, --warmup-ratio, --lr"):
        run_finetune("tiny-llama", "synthetic:forget01", out,
                     TrainConfig(epochs=2, lr=1e-3, batch_size=2, progress=False), resume=True)
    # a lowered --lr is what the resumed epoch trains with (the saved optimiser / scheduler carry the old one)
    rec = run_finetune("tiny-llama", "synthetic:forget01", out,
                       TrainConfig(epochs=2, lr=1e-12, batch_size=4, progress=False), resume=True)
    model, _ = load_model(str(out))
    named = dict(model.named_parameters())
    drift = max((named[k].detach() - v).abs().max().item() for k, v in ckpt.items())
    assert drift < 1e-8, drift  # at the old lr (1e-3, half-way down the new schedule) it would be ~1e-3
    assert rec["resumes"][0]["from_checkpoint"] == "epoch-0"
    assert rec["resumes"][0]["changed"] == {"train.epochs": [1, 2], "train.lr": [0.001, 1e-12]}
    assert rec["resumes"][0]["previous_status"] == "done" and rec["first_started_at"]
    assert rec["history"]["config"]["epochs"] == 2 and rec["history"]["config"]["lr"] == 1e-12  # this run's


def test_existing_output_refused_without_overwrite(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep me")
    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(ObliviateError, match="exists and is not empty; pass --overwrite"):
        run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "x", cfg)
    with pytest.raises(ObliviateError, match="--resume: no checkpoint"):
        run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "y", cfg, resume=True)


def test_bad_data_fails_before_model_load(tmp_path):
    with pytest.raises(ObliviateError, match="unknown synthetic config"):
        run_finetune("no-such-model", "synthetic:nope", tmp_path / "z", TrainConfig())


def test_length_grouping_keeps_padding_low():
    import random

    lengths = [random.Random(i).randint(40, 120) for i in range(400)]
    batches = length_grouped_batches(lengths, 8, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(400))
    naive = [list(range(i, min(i + 8, 400))) for i in range(0, 400, 8)]
    assert padding_fraction(lengths, batches) < 0.05 < padding_fraction(lengths, naive)


def test_grad_checkpointing_recomputes_layers_and_trains_to_the_same_weights(monkeypatch):
    """Two AdamW steps with and without gradient checkpointing: each MLP runs twice per step with it (forward,
    then the recomputation in backward), once without, and the trained weights agree."""
    from transformers.models.llama import modeling_llama

    calls = {"n": 0}
    orig = modeling_llama.LlamaMLP.forward

    def counting(self, x):
        calls["n"] += torch.is_grad_enabled()  # training passes only (not the one-time no-grad logit probe)
        return orig(self, x)

    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", counting)
    items = load_items("synthetic:forget01")
    weights, counts = {}, {}
    for gc in (False, True):
        model, tok = load_model("tiny-llama", seed=0, num_layers=3)
        fmt = Formatter(tok)
        batches = EncodedBatches([fmt.encode(it.question, it.answer) for it in items], 2, tok.pad_token_id, seed=0)
        cfg = TrainConfig(epochs=1, lr=1e-2, batch_size=2, progress=False, checkpoint_every_epoch=False,
                          grad_checkpointing=gc, warmup_ratio=0.0)
        calls["n"] = 0
        train(model, batches, nll_loss, cfg)
        counts[gc] = calls["n"]
        weights[gc] = {k: v.clone() for k, v in model.state_dict().items()}
        assert not getattr(model.model, "gradient_checkpointing", False)  # switched off after training
    steps = len(batches)
    assert counts[False] == 3 * steps and counts[True] == 2 * 3 * steps
    init = load_model("tiny-llama", seed=0, num_layers=3)[0].state_dict()
    for k, v in weights[False].items():
        assert not torch.equal(v, init[k]) or "rotary" in k or "norm" in k
        torch.testing.assert_close(weights[True][k], v, rtol=1e-5, atol=1e-6)


def test_grad_checkpointing_is_switched_off_when_training_stops_on_a_non_finite_loss():
    from obliviate.train import NonFiniteLoss

    model, tok = load_model("tiny-llama", seed=0, num_layers=2)
    fmt = Formatter(tok)
    items = load_items("synthetic:forget01")[:4]
    batches = EncodedBatches([fmt.encode(it.question, it.answer) for it in items], 2, tok.pad_token_id, seed=0)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=2, progress=False, checkpoint_every_epoch=False,
                      grad_checkpointing=True, warmup_ratio=0.0)

    def nan_loss(model, batch):
        assert model.model.gradient_checkpointing  # on while training
        return nll_loss(model, batch)[0] * float("nan"), {"nll": float("nan")}

    with pytest.raises(NonFiniteLoss, match="step 1"):
        train(model, batches, nan_loss, cfg)
    assert not model.model.gradient_checkpointing


def test_answer_logits_are_hf_logits_at_the_positions_before_answer_tokens(tiny):
    """The hidden state at position t predicts token t + 1: answer_logits / sequence_logprobs must equal a plain
    transformers forward read by hand at those positions (guards the shift every loss shares)."""
    from obliviate.engine.forward import answer_logits

    model, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:forget01")[:3]
    batch = collate([fmt.encode(it.question, it.answer) for it in items], tok.pad_token_id)
    with torch.no_grad():
        logits, targets, rows, _ = answer_logits(model, batch)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        sums, counts = sequence_logprobs(model, batch)
    want_logits, want_targets, want_rows = [], [], []
    want_sums, want_counts = [0.0] * len(items), [0] * len(items)
    labels = batch["labels"]
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            y = int(labels[b, t + 1])
            if y == -100:
                continue
            want_logits.append(full[b, t])
            want_targets.append(y)
            want_rows.append(b)
            want_sums[b] += torch.log_softmax(full[b, t], -1)[y].item()
            want_counts[b] += 1
    assert targets.tolist() == want_targets and rows.tolist() == want_rows
    assert want_counts == [len(tok(it.answer, add_special_tokens=False).input_ids) + 1 for it in items]  # + EOS
    torch.testing.assert_close(logits, torch.stack(want_logits), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sums, torch.tensor(want_sums), rtol=1e-5, atol=1e-4)
    assert counts.tolist() == want_counts


def test_training_keeps_float32_weights_where_models_load_in_bf16(monkeypatch, tmp_path):
    """On CUDA models load in bf16 (for evaluation); finetune and unlearn must still train float32 weights, or
    AdamW updates at lr 1e-5 (and SAM / smoothing perturbations) are rounded away."""
    import obliviate.finetune as finetune_mod
    import obliviate.models as models
    import obliviate.unlearn as unlearn_mod

    monkeypatch.setattr(models, "default_dtype", lambda device: torch.bfloat16)  # the CUDA default, simulated
    assert load_model("tiny-llama")[0].dtype == torch.bfloat16
    seen = []

    def spy(orig):
        def wrapped(model, *a, **k):
            seen.append({p.dtype for p in model.parameters() if p.requires_grad})
            return orig(model, *a, **k)
        return wrapped

    monkeypatch.setattr(finetune_mod, "train", spy(finetune_mod.train))
    monkeypatch.setattr(unlearn_mod, "train", spy(unlearn_mod.train))
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=4, progress=False, checkpoint_every_epoch=False)
    run_finetune("tiny-llama", "synthetic:forget01", tmp_path / "ft", cfg)
    unlearn_mod.run_unlearn(str(tmp_path / "ft"), "grad_ascent", "synthetic:forget01", tmp_path / "ga", cfg=cfg)
    assert seen == [{torch.float32}, {torch.float32}]


def test_training_half_precision_weights_warns():
    model, tok = load_model("tiny-llama", seed=0, dtype=torch.bfloat16)
    fmt = Formatter(tok)
    items = load_items("synthetic:forget01")[:2]
    batches = EncodedBatches([fmt.encode(it.question, it.answer) for it in items], 2, tok.pad_token_id, seed=0)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=2, progress=False, checkpoint_every_epoch=False)
    with pytest.warns(UserWarning, match="bfloat16 parameters directly.*rounded away"):
        train(model, batches, nll_loss, cfg)


def test_finetune_on_text_chunks_records_only_the_format_setting_that_applies(tmp_path):
    """MUSE text (plain articles cut into chunks): the prompt format plays no role, only max_length (the chunk
    length); run.json says so (protocol, style, system prompt, date null), a --config of it gives the same
    chunks, and a run folder recorded before (the TOFU default's chat format) still resumes."""
    from obliviate.cli import main

    data = "synthetic-news:raw/forget?n_forget=1&n_retain=1&n_holdout=1"
    argv = ["finetune", "--model", "tiny-llama", "--data", data, "--max-length", "64", "--epochs", "1",
            "--batch-size", "4", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a" / "run.json").read_text())
    c = a["config"]
    assert (c["protocol"], c["style"], c["system_prompt"], c["date_string"], c["max_length"]) == (
        None, None, None, None, 64)
    assert a["prompt_format"] == {"text_chunk_tokens": 64}
    assert main(["finetune", "--config", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "b")]) == 0
    b = json.loads((tmp_path / "b" / "run.json").read_text())
    assert b["config"] == c and b["final_loss"] == a["final_loss"]
    # a folder written before: the protocol's chat format recorded; --resume with the new record still matches
    old = {**a, "config": {**c, "protocol": "open-unlearning", "style": "chat",
                           "system_prompt": "You are a helpful assistant.", "date_string": "10 Apr 2025"}}
    (tmp_path / "a" / "run.json").write_text(json.dumps(old))
    assert main([*argv, "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["config"]["protocol"] is None
