"""engine.shared_prompt: a row's attention over [its prompt, stored once | its own tokens] is the attention over
its whole sequence. Oracle: the Hugging Face forward of each row's full sequence, without any cache."""

import pytest
import torch

from obliviate.engine.attention import gqa_attention
from obliviate.engine.decode import llama_step
from obliviate.engine.shared_prompt import SharedPromptKV

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prompt_kv(model, ids):
    o = model.get_decoder()(input_ids=torch.tensor([ids]), use_cache=True)
    return [layer for layer in o.past_key_values.layers]


@torch.no_grad()
def test_shared_prompt_attention_is_the_attention_over_each_rows_sequence(tiny):
    model, _ = tiny
    g = torch.Generator().manual_seed(0)
    V = model.get_input_embeddings().weight.shape[0]
    prompts = [torch.randint(0, V, (n,), generator=g).tolist() for n in (7, 4, 9)]
    with gqa_attention(model):
        step = llama_step(model)
        assert step is not None
        cache = SharedPromptKV(model, rows=5, slots=3, width=3, prompt_len=9, new_tokens=6)
        assert cache.groups > 1  # the tiny model has grouped KV heads: the grouping is exercised
        slots = [cache.add_prompt(_prompt_kv(model, p), len(p), samples=2) for p in prompts[:2]]
        seqs = {}  # row -> its full sequence so far (prompt + fed tokens)
        cache.enter([0, 1], slots[0], 7)
        cache.enter([2], slots[1], 4)
        for r, i in ((0, 0), (1, 0), (2, 1)):
            seqs[r] = list(prompts[i])
        live = 3
        for t in range(5):
            if t == 2:  # a row of another prompt enters while the others have own columns
                s = cache.add_prompt(_prompt_kv(model, prompts[2]), 9, samples=1)
                cache.enter([3], s, 9)
                seqs[3] = list(prompts[2])
                live = 4
            if t == 3:  # row 1's sample ends; row 3 moves into its place
                cache.leave([1])
                cache.move(torch.tensor([3]), torch.tensor([1]), live)
                seqs[1] = seqs.pop(3)
                live = 3
            ids = torch.randint(0, V, (live,), generator=g)
            h = step.run(ids[:, None], cache.pos[:live, None], cache.attention(live))
            cache.advance(live)
            for r in range(live):
                seqs[r].append(int(ids[r]))
                ref = model.get_decoder()(input_ids=torch.tensor([seqs[r]])).last_hidden_state[0, -1]
                torch.testing.assert_close(h[r], ref, atol=1e-5, rtol=1e-5)


def test_prompt_slots_are_freed_when_every_sample_has_ended(tiny):
    model, _ = tiny
    cache = SharedPromptKV(model, rows=4, slots=2, width=2, prompt_len=3, new_tokens=2)
    kv = _prompt_kv(model, [1, 2, 3])
    a = cache.add_prompt(kv, 3, samples=3)
    b = cache.add_prompt(kv, 3, samples=1)
    assert (a, b) == (0, 1)
    cache.enter([0, 1], a, 3)
    assert cache.sub[:2].tolist() == [0, 1]
    cache.leave([0])  # one of three samples ended: the slot stays, the sub-slot is free again
    cache.enter([2], a, 3)
    assert int(cache.sub[2]) == 0
    with pytest.raises(RuntimeError, match="no free prompt slot"):
        cache.add_prompt(kv, 3, samples=1)
    cache.leave([1, 2])
    assert cache.add_prompt(kv, 3, samples=1) == 0  # the lowest free slot


def test_the_prompt_slot_pool_grows_up_to_its_bound(tiny):
    model, _ = tiny
    cache = SharedPromptKV(model, rows=12, slots=1, width=1, prompt_len=3, new_tokens=2, max_slots=10)
    kv = _prompt_kv(model, [1, 2, 3])
    got = [cache.add_prompt(kv, 3, samples=1) for _ in range(10)]
    assert got == list(range(10)) and cache.kp[0].shape[0] == cache.pmask.shape[0] == 10  # 1, then 9 (8 and 1 more)
    torch.testing.assert_close(cache.kp[0][9, :, :3], kv[0].keys[0])  # the slots after a growth hold their prompt
    assert torch.equal(cache.kp[0][0], cache.kp[0][9])
    with pytest.raises(RuntimeError, match="no free prompt slot"):
        cache.add_prompt(kv, 3, samples=1)
