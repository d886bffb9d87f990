import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter
from obliviate.engine.generation import cut_at_stops, generate


def assert_equal_to_hf_batch_1(model, tok, prompts, ours, max_new_tokens):
    for p, o in zip(prompts, ours):
        ids = tok(p, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        assert o == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True).strip()


def test_batched_greedy_equals_hf_generate_batch_1(tiny):
    """Shared-prefix cache, left padding and early row exit change nothing: same answers as HF batch 1."""
    model, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:world_facts_perturbed")[:7]
    prompts = [fmt.prompt_text(it.question) for it in items]
    ours = generate(model, tok, prompts, max_new_tokens=12, batch_size=3)
    assert_equal_to_hf_batch_1(model, tok, prompts, ours, 12)


def test_stop_strings_cut_text():
    assert cut_at_stops("Paris\n\nQuestion: next", ["\n\n", "Question:"]) == "Paris"
    assert cut_at_stops("no stop here", ["\n\n"]) == "no stop here"


def test_continuous_batching_refills_and_compacts_without_changing_answers(tiny, monkeypatch):
    """Batch 2 over 9 prompts: slots are refilled and the KV window is cut; answers still equal HF batch 1."""
    from obliviate.engine import generation

    calls = {"compact": 0, "grow": 0}
    real_compact = generation._Slots.compact

    def counting_compact(self, live):
        calls["compact"] += 1
        cap = self.capacity
        real_compact(self, live)
        calls["grow"] += self.capacity > cap

    monkeypatch.setattr(generation._Slots, "compact", counting_compact)
    model, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:real_authors_perturbed")[:9]
    prompts = [fmt.prompt_text(it.question + " " * (i % 3) + "Tell me." * (i % 4)) for i, it in enumerate(items)]
    ours = generate(model, tok, prompts, max_new_tokens=30, batch_size=2)
    assert calls["compact"] > 0
    assert_equal_to_hf_batch_1(model, tok, prompts, ours, 30)


def test_greedy_draft_is_the_answer_up_to_the_first_miss():
    from obliviate.engine.generation import greedy_draft

    assert greedy_draft([5, 6, 7, 2], [5, 6, 7, 2]) == [5, 6, 7, 2]  # every token a hit: the whole answer
    assert greedy_draft([5, 6, 7, 2], [5, 9, 7, 2]) == [5, 9]  # the model's own token at the first miss
    assert greedy_draft([5, 6], [8, 6]) == [8]


def test_drafts_from_scoring_give_the_same_answers(tiny_fresh):
    """A model that memorised some answers: drafting from the scored answer changes no greedy answer."""
    from obliviate.engine.generation import greedy_draft, greedy_ids
    from obliviate.engine.scoring import ScoreRequest, score
    from obliviate.data.formatting import collate

    model, tok = tiny_fresh
    fmt = Formatter(tok)
    items = load_items("synthetic:forget01")[:6]
    batch = collate([fmt.encode(it.question, it.answer) for it in items[:3]], tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):  # memorise the first three answers
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    prompts = [fmt.prompt_ids(it.question) for it in items]
    answers = [fmt.answer_ids(it.answer) for it in items]
    scores = score(model, [ScoreRequest(p, [a]) for p, a in zip(prompts, answers)])
    drafts = [greedy_draft(a, sc[0].argmax_ids) for a, sc in zip(answers, scores)]
    assert any(d == a for d, a in zip(drafts, answers)), "the training did not memorise any answer"
    assert any(len(d) < len(a) for d, a in zip(drafts, answers)), "no answer is left to decode"
    plain = greedy_ids(model, prompts, tok.eos_token_id, 40, batch_size=4)
    drafted = greedy_ids(model, prompts, tok.eos_token_id, 40, batch_size=4, drafts=drafts)
    assert drafted == plain


def test_generation_stays_inside_the_models_context(tiny, monkeypatch, capsys):
    """The KV cache is allocated for prompt + max_new_tokens columns: a budget past the context is lowered
    (with a note), and a prompt that fills the context is an error, not an allocation or an index error."""
    import pytest

    from obliviate.engine.generation import greedy_ids
    from obliviate.errors import ObliviateError

    model, tok = tiny
    monkeypatch.setattr(model.config, "max_position_embeddings", 40)
    prompts = [list(range(5, 35)), list(range(5, 15))]  # 30 and 10 tokens
    ids = greedy_ids(model, prompts, eos_id=-1, max_new_tokens=10_000)  # eos -1: never met, only the budget ends
    assert [len(x) for x in ids] == [10, 10]  # 40 - 30 for every row
    assert "max_new_tokens 10000 lowered to 10" in capsys.readouterr().err
    assert [len(x) for x in greedy_ids(model, prompts, eos_id=-1, max_new_tokens=4)] == [4, 4]
    assert capsys.readouterr().err == ""
    with pytest.raises(ObliviateError, match="prompt 2 has 40 tokens, which leaves no room in the model's context"):
        greedy_ids(model, [[5, 6], list(range(5, 45))], eos_id=-1, max_new_tokens=4)
