"""The written-out Llama decoding step (engine/decode.py) against plain transformers forward passes."""

import pytest
import torch

from obliviate.engine.attention import gqa_attention
from obliviate.engine.decode import LlamaStep, llama_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_token_by_token_steps_give_the_full_forward_hidden_states(tiny):
    """Two rows, the second starting 2 columns later (masked, as a row placed later in the engine's buffer):
    each step's hidden state equals plain transformers run on the row's whole sequence without a cache."""
    model, _ = tiny
    step = llama_step(model)
    assert isinstance(step, LlamaStep)
    cfg = model.config
    seqs = [[5, 17, 301, 42, 9, 77, 1203], [88, 13, 4000, 61, 7]]
    offset = [0, 2]  # row 1's tokens occupy columns 2..6
    cap = 8
    shape = (2, cfg.num_key_value_heads, cap, cfg.hidden_size // cfg.num_attention_heads)
    keys = [torch.zeros(shape) for _ in range(cfg.num_hidden_layers)]
    values = [torch.zeros(shape) for _ in range(cfg.num_hidden_layers)]
    mask = torch.zeros((2, cap), dtype=torch.long)
    with torch.no_grad():
        ref = [model.get_decoder()(input_ids=torch.tensor([s])).last_hidden_state[0] for s in seqs]
    with gqa_attention(model):
        for col in range(7):
            ids, pos = torch.zeros((2, 1), dtype=torch.long), torch.zeros((2, 1), dtype=torch.long)
            for r, s in enumerate(seqs):
                t = col - offset[r]
                if t == 0:  # the row starts here: the columns before are not its own (engine: _Slots.place)
                    mask[r, :col] = 0
                if 0 <= t < len(s):
                    ids[r, 0], pos[r, 0] = s[t], t
                mask[r, col] = 1  # outside the row: a dummy token that sees itself (the engine's free slot)
            h = step(ids, pos, keys, values, 0, col, mask[:, : col + 1])
            for r, s in enumerate(seqs):
                t = col - offset[r]
                if 0 <= t < len(s):
                    assert torch.allclose(h[r], ref[r][t], atol=1e-5), (col, r)


def test_other_models_keep_the_hugging_face_forward():
    from obliviate.models import load_model

    model, _ = load_model("tiny-llama", seed=3)
    model.set_attn_implementation("eager")  # another attention function: the step does not apply
    assert llama_step(model) is None
    model2, _ = load_model("tiny-llama", seed=4)
    model2.config.rope_parameters = {**model2.config.rope_parameters, "rope_type": "linear", "factor": 2.0}
    assert llama_step(model2) is None


def test_generation_runs_the_step_and_matches_the_hugging_face_forward_path(tiny, monkeypatch):
    """Same greedy ids with the written-out step and with Hugging Face's decoder forward."""
    from obliviate.engine import generation
    from obliviate.engine.generation import greedy_ids

    model, tok = tiny
    prompts = [[1, 9, 400, 32, 5], [1, 9, 77], [1, 9, 4, 4, 4, 4, 120]]
    calls = []
    real = LlamaStep.__call__
    monkeypatch.setattr(LlamaStep, "__call__", lambda self, *a: calls.append(1) or real(self, *a))
    fast = greedy_ids(model, prompts, tok.eos_token_id, 20, batch_size=2)
    assert calls
    monkeypatch.setattr(generation, "llama_step", lambda model: None)
    assert greedy_ids(model, prompts, tok.eos_token_id, 20, batch_size=2) == fast
