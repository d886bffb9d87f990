"""Batched per-sample gradient norms (ghost norms) equal the per-sample backward loop."""

import copy

import pytest
import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter
from obliviate.engine.gradnorm import _plan, gradient_norms
from obliviate.engine.scoring import gradient_norm


@pytest.fixture(scope="module")
def pairs(tiny):
    _, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:forget01")[:5] + load_items("synthetic:world_facts_perturbed")[:2]
    return [(fmt.prompt_ids(it.question), fmt.answer_ids(it.answer)) for it in items]


def _check(model, pairs, **kw):
    exact = [gradient_norm(model, p, a) for p, a in pairs]
    ghost = gradient_norms(model, pairs, **kw)
    assert all(e > 0 for e in exact)
    for e, g in zip(exact, ghost):
        assert abs(e - g) / e < 1e-4, (e, g)


def test_ghost_norms_tied_embeddings_several_batches(tiny, pairs):
    model = copy.deepcopy(tiny[0])
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert _plan(model) is not None
    _check(model, pairs, batch_tokens=200)  # right-padded batches of 2-3 samples of different lengths


def test_ghost_norms_untied_head_padding_row_and_frozen_parameters(tiny, pairs):
    model = copy.deepcopy(tiny[0])
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach() * 1.1)
    model.config.tie_word_embeddings = False
    _check(model, pairs)
    model.lm_head.bias = torch.nn.Parameter(torch.linspace(-0.1, 0.1, model.lm_head.out_features))
    assert _plan(model) is not None
    _check(model, pairs, batch_tokens=120)  # the head's bias term: ||sum_s q_s||^2
    # nn.Embedding sends no gradient to its padding row (SmolLM2's pad is <|im_end|>, present in every prompt)
    emb = model.get_input_embeddings()
    emb.padding_idx = pairs[0][1][-1]  # the EOS id closing every answer
    _check(model, pairs)
    for n, p in model.named_parameters():
        if "layers.0" in n or "embed_tokens" in n:
            p.requires_grad_(False)
    _check(model, pairs)
    assert all(p.requires_grad for n, p in model.named_parameters() if "layers.1" in n)  # flags restored


def test_unsupported_parameter_falls_back_to_the_loop(tiny, pairs):
    model = copy.deepcopy(tiny[0])
    model.model.extra = torch.nn.Parameter(torch.zeros(3))  # a parameter no rule covers (no gradient: norm unchanged)
    assert _plan(model) is None
    _check(model, pairs[:2])


def test_pair_without_prompt_takes_the_plain_backward(tiny, pairs):
    # the first answer token of a prompt-less pair has no preceding position; the plain path scores the rest
    model = copy.deepcopy(tiny[0])
    odd = [([], pairs[0][0] + pairs[0][1])] + pairs[1:3]
    _check(model, odd)


def test_a_pair_without_answer_tokens_is_refused(tiny, pairs):
    """The mean NLL over zero answer tokens is undefined: a clear error, not 0.0 (which would read as the most
    member-like score) nor a dtype error from the embedding of an empty id list."""
    model = tiny[0]
    with pytest.raises(ValueError, match="pair 1 has no answer tokens"):
        gradient_norms(model, [pairs[0], (pairs[1][0], [])])
    with pytest.raises(ValueError, match="pair 0 has no answer tokens"):
        gradient_norms(model, [([], [])])
    with pytest.raises(ValueError, match="the answer has no tokens"):
        gradient_norm(model, pairs[0][0], [])
