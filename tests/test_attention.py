"""engine/attention.py: grouped-query attention without K/V copies gives bitwise the same numbers."""

import pytest
import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter
from obliviate.engine import attention

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _padded_batch(tok, fmt, n=4):
    items = load_items("synthetic:forget10_perturbed")[:n]
    seqs = [fmt.prompt_ids(it.question) + fmt.answer_ids(it.answer) for it in items]
    T = max(map(len, seqs))
    ids = torch.full((n, T), tok.pad_token_id)
    mask = torch.zeros((n, T), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    return ids, mask


def test_gqa_attention_is_bitwise_the_same_and_is_used(tiny, monkeypatch):
    model, tok = tiny
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # tiny-llama has 4 / 2 heads
    ids, mask = _padded_batch(tok, Formatter(tok))
    assert attention.register()
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*a, **kw):
        calls.append(kw.get("enable_gqa", False))
        return real(*a, **kw)

    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        with attention.gqa_attention(model):
            assert model.config._attn_implementation == attention.NAME
            ours = model(input_ids=ids, attention_mask=mask).logits
    assert model.config._attn_implementation == "sdpa"  # restored
    assert calls == [True] * model.config.num_hidden_layers  # a padded batch: the mask path, without repeat_kv
    assert torch.equal(ours, ref)


def test_gqa_attention_restores_the_model_after_an_error(tiny):
    model, _ = tiny
    with pytest.raises(RuntimeError):
        with attention.gqa_attention(model):
            raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_score_is_unchanged_by_gqa_attention(tiny, monkeypatch):
    from obliviate.engine.scoring import ScoreRequest, score

    model, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:forget10_perturbed")[:5]
    reqs = [ScoreRequest(fmt.prompt_ids(it.question), [fmt.answer_ids(a) for a in [it.answer, *it.perturbed_answers]])
            for it in items]
    ours = score(model, reqs, batch_tokens=600)
    monkeypatch.setattr(attention, "_uses_gqa", lambda m: False)  # Hugging Face's sdpa with repeat_kv
    ref = score(model, reqs, batch_tokens=600)
    for a, b in zip(ours, ref):
        for x, y in zip(a, b):
            assert x.token_logprobs == y.token_logprobs and x.token_minkpp == y.token_minkpp
            assert x.argmax_ids == y.argmax_ids


def test_models_without_grouped_heads_are_left_alone():
    from obliviate.models import load_model

    model, _ = load_model("tiny-llama", seed=0)
    model.config.num_key_value_heads = model.config.num_attention_heads  # only the check reads it here
    with attention.gqa_attention(model):
        assert model.config._attn_implementation == "sdpa"
