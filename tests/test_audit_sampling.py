"""The audit's sampling path: seeded, independent of batching, greedy in the limit, top-p by hand."""

import pytest
import torch

from obliviate.audit.sampling import sample_ids, top_p_probs
from obliviate.engine.generation import greedy_ids
from obliviate.errors import ObliviateError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prompts(tok):
    qs = ["Where was the author born?", "Name a city.", "What is two plus two? Answer briefly please."]
    return [tok(tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True),
                add_special_tokens=False).input_ids for q in qs]


def test_sampling_is_seeded_and_independent_of_the_batch(tiny):
    model, tok = tiny
    ps = _prompts(tok)
    a = sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=5)
    assert a == sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=5)
    assert a != sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=6)
    # one prompt per group (batch_rows = n) gives each prompt the same samples as the shared batch
    assert a == sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=5, batch_rows=4)
    assert [len(x) for x in a] == [4, 4, 4] and all(len(s) <= 6 for x in a for s in x)


def test_a_cold_temperature_samples_the_greedy_answer(tiny):
    model, tok = tiny
    ps = _prompts(tok)
    greedy = greedy_ids(model, ps, tok.eos_token_id, 6)
    cold = sample_ids(model, ps, 3, tok.eos_token_id, 6, temperature=1e-4, seed=0)
    assert all(rows == [g] * 3 for rows, g in zip(cold, greedy))


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert top_p_probs(logits, 1.0, 0.7).tolist()[0] == pytest.approx([0.625, 0.375, 0, 0])  # 0.5 + 0.3 >= 0.7
    assert top_p_probs(logits, 1.0, 0.5).tolist()[0] == pytest.approx([1, 0, 0, 0])
    assert top_p_probs(logits, 1.0, 1.0).tolist()[0] == pytest.approx([0.5, 0.3, 0.15, 0.05])


def test_bad_sampling_settings_are_refused(tiny):
    model, tok = tiny
    for kw, msg in (({"temperature": 0}, "--temperature 0"), ({"top_p": 1.5}, "--top-p 1.5")):
        with pytest.raises(ObliviateError, match=msg):
            sample_ids(model, [[1, 2]], 2, tok.eos_token_id, 4, **kw)
