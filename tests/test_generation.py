import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter
from obliviate.engine.generation import cut_at_stops, generate


def test_batched_greedy_equals_hf_generate_batch_1(tiny):
    """Shared-prefix cache, left padding and early row exit change nothing: same answers as HF batch 1."""
    model, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:world_facts_perturbed")[:7]
    prompts = [fmt.prompt_text(it.question) for it in items]
    ours = generate(model, tok, prompts, max_new_tokens=12, batch_size=3)
    for p, o in zip(prompts, ours):
        ids = tok(p, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        assert o == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True).strip()


def test_stop_strings_cut_text():
    assert cut_at_stops("Paris\n\nQuestion: next", ["\n\n", "Question:"]) == "Paris"
    assert cut_at_stops("no stop here", ["\n\n"]) == "no stop here"
