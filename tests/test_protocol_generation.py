"""Generation stops at every EOS id of the generation config (open-unlearning / TOFU call model.generate,
which reads the generation config's eos_token_id list), not only at tokenizer.eos_token_id."""

import copy

import pytest

from obliviate.engine.generation import generate, greedy_ids, stop_token_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _first_new_token(model, prompt):
    """A token the free-running greedy answer produces, and where it first appears."""
    free = greedy_ids(model, [prompt], eos_id=-1, max_new_tokens=12)[0]
    k = 3 if len(free) > 3 else len(free) - 1
    t = free[k]
    return free, t, free.index(t)


def test_a_list_of_eos_ids_ends_the_row_at_the_first_one(tiny):
    model, tok = tiny
    prompt = tok("Question: who wrote it?", add_special_tokens=False).input_ids
    free, t, k = _first_new_token(model, prompt)
    assert greedy_ids(model, [prompt], eos_id=[-1, t], max_new_tokens=12)[0] == free[:k]
    # drafts that already contain a stop id are cut there without a model call
    assert greedy_ids(model, [prompt], eos_id=[-1, t], max_new_tokens=12, drafts=[free])[0] == free[:k]


def test_generate_reads_the_generation_config_eos_list(tiny):
    model, tok = tiny
    m = copy.copy(model)
    m.generation_config = copy.deepcopy(model.generation_config)
    text = "Question: who wrote it?"
    prompt = tok(text, add_special_tokens=False).input_ids
    free, t, k = _first_new_token(model, prompt)
    m.generation_config.eos_token_id = [t, tok.eos_token_id]
    assert stop_token_ids(m, tok) == [tok.eos_token_id, t]
    assert stop_token_ids(m, tok, all_eos=False) == [tok.eos_token_id]
    stopped = generate(m, tok, [text], max_new_tokens=12)[0]
    assert stopped == tok.decode(free[:k], skip_special_tokens=True).strip()
    longer = generate(m, tok, [text], max_new_tokens=12, all_eos=False)[0]
    assert len(longer) > len(stopped)


def test_total_length_cap_gives_each_row_its_own_budget(tiny):
    model, tok = tiny
    short = tok("Q?", add_special_tokens=False).input_ids
    long = tok("Question: a much longer prompt than the other one?", add_special_tokens=False).input_ids
    m = copy.copy(model)
    m.generation_config = copy.deepcopy(model.generation_config)
    m.generation_config.eos_token_id = None
    cap = len(long) + 3
    outs = generate(m, tok, ["", ""], max_new_tokens=50, prompt_ids=[short, long], max_total_length=cap, all_eos=False)
    ref_short = greedy_ids(m, [short], eos_id=tok.eos_token_id, max_new_tokens=cap - len(short))[0]
    ref_long = greedy_ids(m, [long], eos_id=tok.eos_token_id, max_new_tokens=3)[0]
    assert outs == [tok.decode(ref_short, skip_special_tokens=True).strip(), tok.decode(ref_long, skip_special_tokens=True).strip()]
