"""Architectures whose forward changes the LM head's output (Gemma-2 soft-capping, Cohere's logit_scale,
Granite's logits_scaling): every shortcut that runs decoder body + head must still give the model's own
logits, and an unknown post-head step must fall back (or be refused), never be silently dropped."""

import pytest
import torch
import transformers

from obliviate.engine.forward import answer_logits, head_logits, sequence_logprobs
from obliviate.engine.gradnorm import gradient_norms
from obliviate.engine.scoring import ScoreRequest, score
from obliviate.errors import ObliviateError

V = 96


def _small(cls_name: str, cfg_name: str, **extra):
    if not hasattr(transformers, cls_name):
        pytest.skip(f"transformers {transformers.__version__} has no {cls_name}")
    cfg = getattr(transformers, cfg_name)(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, bos_token_id=1,
                                          eos_token_id=2, pad_token_id=0, **extra)
    torch.manual_seed(0)
    m = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # logits large enough for a cap of 2 (or a scale) to matter a lot
        m.get_output_embeddings().weight.mul_(40)
    return m


MODELS = {
    "gemma2-softcap": lambda: _small("Gemma2ForCausalLM", "Gemma2Config", final_logit_softcapping=2.0),
    "cohere-scale": lambda: _small("CohereForCausalLM", "CohereConfig", logit_scale=0.25),
    "granite-scaling": lambda: _small("GraniteForCausalLM", "GraniteConfig", logits_scaling=8.0),
}


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (2, 9), generator=g)
    labels = ids.clone()
    labels[0, :4] = -100
    labels[1, :6] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _hf_answer_logits(model, b):
    with torch.no_grad():
        full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    return full[:, :-1][b["labels"][:, 1:] != -100].float()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_answer_logits_follow_the_models_post_head_step(name):
    model = MODELS[name]()
    b = _batch()
    want = _hf_answer_logits(model, b)
    raw = model.get_output_embeddings()
    with torch.no_grad():
        body_h = model.get_decoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        plain = raw(body_h[:, :-1][b["labels"][:, 1:] != -100]).float()
        got, targets, _, _ = answer_logits(model, b)
        sums, _ = sequence_logprobs(model, b)
    assert (plain - want).abs().max() > 0.5  # the post-head step matters for this model
    assert torch.allclose(got, want, atol=1e-4)
    lp = torch.log_softmax(want, -1).gather(-1, targets[:, None]).squeeze(-1)
    assert torch.allclose(sums, torch.stack([lp[:5].sum(), lp[5:].sum()]), atol=1e-4)  # rows: 5 + 3 answer tokens


@pytest.mark.parametrize("name", sorted(MODELS))
def test_scoring_uses_the_models_own_logits(name):
    model = MODELS[name]()
    prompt, answer = [5, 17, 33, 41], [60, 7, 88]
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        full = model(input_ids=ids).logits[0].float()
    want = [torch.log_softmax(full[len(prompt) - 1 + i], -1)[a].item() for i, a in enumerate(answer)]
    (res,), = score(model, [ScoreRequest(prompt_ids=prompt, answers=[answer])], minkpp=False)
    assert res.token_logprobs == pytest.approx(want, abs=1e-4)


def test_ghost_gradient_norms_match_autograd_on_a_soft_capped_model():
    model = MODELS["gemma2-softcap"]()
    pairs = [([5, 17, 33], [60, 7, 88, 2]), ([9, 4], [71, 12])]
    want = []
    for p, a in pairs:  # by hand: autograd through the model's own forward (soft-cap included)
        model.zero_grad(set_to_none=True)
        ids = torch.tensor([p + a])
        logits = model(input_ids=ids).logits[0, len(p) - 1: len(p) + len(a) - 1].float()
        torch.nn.functional.cross_entropy(logits, torch.tensor(a)).backward()
        want.append(sum(q.grad.double().square().sum() for q in model.parameters() if q.grad is not None).sqrt().item())
    model.zero_grad(set_to_none=True)
    assert gradient_norms(model, pairs) == pytest.approx(want, rel=1e-4)


class _BiasedLlama(transformers.LlamaForCausalLM):
    """An architecture with a post-head step obliviate does not know (adds a fixed vector to the logits)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits + torch.linspace(-3, 3, out.logits.shape[-1])
        return out


def _biased():
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=0)
    torch.manual_seed(0)
    return _BiasedLlama(cfg).eval()


def test_unknown_post_head_step_falls_back_to_the_full_forward():
    model = _biased()
    b = _batch()
    assert head_logits(model) is None  # the probe saw body + head disagree with the model's logits
    with torch.no_grad():
        got, _, _, _ = answer_logits(model, b)
    assert torch.allclose(got, _hf_answer_logits(model, b), atol=1e-5)


def test_unknown_post_head_step_is_refused_by_the_scorer():
    with pytest.raises(ObliviateError, match="_BiasedLlama.*post-head step"):
        score(_biased(), [ScoreRequest(prompt_ids=[5, 6], answers=[[7, 8]])])


def test_probe_restores_train_mode_and_plain_models_use_the_bare_head(tiny_fresh):
    model, _ = tiny_fresh
    model.train()
    assert head_logits(model) is model.get_output_embeddings()  # first call: runs the probe in eval mode
    assert all(m.training for m in model.modules())
