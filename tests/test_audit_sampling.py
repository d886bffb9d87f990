"""The audit's sampling path: seeded, independent of batching, greedy in the limit, the model's own distribution,
top-p by hand, and no decoding step spent on a finished sample."""

import pytest
import torch

from obliviate.audit import sampling
from obliviate.audit.sampling import sample_ids, weights_
from obliviate.engine.decode import LlamaStep
from obliviate.engine.generation import greedy_ids
from obliviate.errors import ObliviateError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prompts(tok, extra=()):
    qs = ["Where was the author born?", "Name a city.", "What is two plus two? Answer briefly please.", *extra]
    return [tok(tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True),
                add_special_tokens=False).input_ids for q in qs]


def test_sampling_is_seeded_and_independent_of_the_batch(tiny):
    model, tok = tiny
    ps = _prompts(tok)
    a = sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=5)
    assert [len(x) for x in a] == [4, 4, 4] and all(len(s) <= 6 for x in a for s in x)
    assert a == sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=5)
    assert a != sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=6)
    assert len({tuple(s) for x in a for s in x}) == 12  # each sample has its own stream
    # one row at a time (every row refilled, the KV window cut), a prompt's samples split across refills, all at once
    for rows in (1, 3, 5, 12):
        assert sample_ids(model, ps, 4, tok.eos_token_id, 6, seed=5, batch_rows=rows) == a, rows
    # another prompt in the middle changes nothing for prompts 0 and 2
    b = sample_ids(model, [ps[0], _prompts(tok, ["Something else entirely?"])[3], ps[2]], 4, tok.eos_token_id, 6, seed=5)
    assert b[0] == a[0] and b[2] == a[2] and b[1] != a[1]


def test_a_cold_temperature_samples_the_greedy_answer(tiny, monkeypatch):
    """T -> 0 is greedy decoding: the engine's greedy ids, and Hugging Face generate's at batch 1."""
    model, tok = tiny
    ps = _prompts(tok)
    greedy = greedy_ids(model, ps, tok.eos_token_id, 12)
    for p, g in zip(ps, greedy):
        ref = model.generate(input_ids=torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        assert ref[0, len(p):].tolist() == g  # no EOS in these 12 tokens of the random model
    for rows in (2, 64):
        cold = sample_ids(model, ps, 3, tok.eos_token_id, 12, temperature=1e-4, seed=0, batch_rows=rows)
        assert all(r == [g] * 3 for r, g in zip(cold, greedy))
    with monkeypatch.context() as m:  # the fallback path too
        m.setattr(sampling, "llama_step", lambda model: None)
        cold = sample_ids(model, ps, 3, tok.eos_token_id, 12, temperature=1e-4, seed=0, batch_rows=4)
    assert all(r == [g] * 3 for r, g in zip(cold, greedy))


def test_no_decoding_step_is_spent_on_an_ended_sample(tiny, monkeypatch):
    """Rows that end leave the batch at once: decoded rows = tokens drawn - the first draw of each sample.
    Samples end at different steps (one EOS id in seven) and the batch is refilled (20 rows for 32 samples).
    The same holds on the fallback path (every row holding its prompt's columns, the Hugging Face forward)."""
    model, tok = tiny
    ps = _prompts(tok, ["Who wrote it?"])
    eos = list(range(0, 49152, 7))
    rows = []
    real = LlamaStep.run
    monkeypatch.setattr(LlamaStep, "run", lambda self, ids, *a: rows.append(ids.shape[0]) or real(self, ids, *a))
    out = sample_ids(model, ps, 8, eos, 10, seed=1, batch_rows=20)
    lengths = [len(s) for x in out for s in x]
    assert min(lengths) < 4 and max(lengths) == 10  # endings spread over the steps
    drawn = sum(k + 1 if k < 10 else k for k in lengths)  # an EOS is drawn too, then dropped
    assert sum(rows) == drawn - len(lengths)
    assert max(rows) == 20
    # the fallback (the window layout, the Hugging Face forward) wastes no step either
    rows.clear()
    real_step = sampling.decode_step
    monkeypatch.setattr(sampling, "decode_step", lambda body, ckw, step, slots, n, *a: rows.append(n) or real_step(body, ckw, step, slots, n, *a))
    monkeypatch.setattr(sampling, "llama_step", lambda model: None)
    back = sample_ids(model, ps, 8, eos, 10, seed=1, batch_rows=20)
    lengths = [len(s) for x in back for s in x]
    assert sum(rows) == sum(k + 1 if k < 10 else k for k in lengths) - len(lengths) and max(rows) == 20
    assert [s[:1] for x in back for s in x] == [s[:1] for x in out for s in x]  # first tokens come from the same prefill


def _temperature_for(logits, p_max):
    lo, hi = 1e-4, 10.0  # the top token's probability falls as T rises
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if torch.softmax(logits / mid, -1).max() > p_max else (lo, mid)
    return lo


def test_samples_follow_the_models_distribution(tiny):
    """First and second tokens of 3000 samples against softmax(logits / T) of the model's own forward pass, at T
    where the top token has probability 0.4 (the random model's other tokens form a long flat tail): the top
    token and bins of ~0.1 of the tail's mass (tokens ranked by the model's probability) within 5 sigma."""
    model, tok = tiny
    p = _prompts(tok)[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p])).logits[0, -1]
    T = _temperature_for(logits, 0.4)
    out = sample_ids(model, [p], 3000, -1, 2, temperature=T, seed=3, batch_rows=500)[0]

    def check(draws, lg):
        probs, rank = torch.softmax(lg.double() / T, -1).sort(descending=True)
        where = torch.empty_like(rank)
        where[rank] = torch.arange(len(rank))  # token -> its rank
        cum = probs.cumsum(0)
        edges = [0, 1] + [int((cum < c).sum()) + 1 for c in torch.arange(float(cum[0]) + 0.1, 0.95, 0.1)] + [len(rank)]
        got = where[torch.tensor(draws)]
        for lo, hi in zip(edges, edges[1:]):
            mass, seen = float(probs[lo:hi].sum()), float(((got >= lo) & (got < hi)).double().mean())
            assert abs(seen - mass) <= 5 * (mass * (1 - mass) / len(draws)) ** 0.5, (lo, hi, seen, mass)
        return len(edges) - 1

    assert check([s[0] for s in out], logits) >= 6
    first = max(set(s[0] for s in out), key=[s[0] for s in out].count)
    with torch.no_grad():
        after = model(input_ids=torch.tensor([p + [first]])).logits[0, -1]
    assert check([s[1] for s in out if s[0] == first], after) >= 6


def top_p_probs(logits, temperature, top_p):
    w = weights_(logits.clone(), temperature, top_p)
    return w / w.sum(-1, keepdim=True)


def test_top_p_keeps_the_smallest_nucleus(monkeypatch):
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert top_p_probs(logits, 1.0, 0.7).tolist()[0] == pytest.approx([0.625, 0.375, 0, 0])  # 0.5 + 0.3 >= 0.7
    assert top_p_probs(logits, 1.0, 0.5).tolist()[0] == pytest.approx([1, 0, 0, 0])
    assert top_p_probs(logits, 1.0, 1.0).tolist()[0] == pytest.approx([0.5, 0.3, 0.15, 0.05])
    # rows are cut in chunks of TOP_P_ROWS: each row keeps its own nucleus
    monkeypatch.setattr(sampling, "TOP_P_ROWS", 2)
    rows = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5], [0.25] * 4]))
    got = top_p_probs(rows, 1.0, 0.7).tolist()
    assert got[0] == pytest.approx([0.625, 0.375, 0, 0]) and got[1] == pytest.approx([0, 0, 0.375, 0.625])
    assert sum(v > 0 for v in got[2]) == 3  # ties: three tokens of 0.25 reach 0.7


def test_the_two_level_draw_by_hand():
    """Blocks of 2: weights [0 1 | 1 0 | 0 0 | 2 4], total 8, block sums 1 1 0 6. u * 8 is the point on the
    cumulative axis; the token is the first whose running weight exceeds it; an empty block is never chosen."""
    w = torch.tensor([[0.0, 1, 1, 0, 0, 0, 2, 4]])
    for u, tok in ((0.0, 1), (0.1249, 1), (0.125, 2), (0.2499, 2), (0.25, 6), (0.49, 6), (0.5, 7), (0.9999, 7)):
        assert int(sampling.draw(w, torch.tensor([u]), blk=2)) == tok, u
        assert int(sampling.draw(w, torch.tensor([u]), blk=8)) == tok, u  # one block: the plain inverse CDF
    # rounding that puts the point at or past the total draws the last token of positive weight, not token 7
    w0 = torch.tensor([[0.0, 1, 1, 0, 0, 0, 2, 0]])
    assert int(sampling.draw(w0, torch.tensor([1.0]), blk=2)) == 6
    assert sampling.block_size(49152) == 1024 and sampling.block_size(100) == 100
    assert sampling.block_size(50257) is None  # 29 x 1733: no divisor in [64, 1024], a full cumulative sum


def test_the_two_level_draw_is_the_inverse_cdf():
    """On a 49,152-token row with a long tail, 2,000 uniforms: the same tokens as a float64 inverse CDF."""
    g = torch.Generator().manual_seed(0)
    w = torch.exp(torch.randn(1, 49152, generator=g) * 3)
    u = torch.rand(2000, generator=g)
    cdf = w[0].double().cumsum(0)
    ref = torch.searchsorted(cdf, (u.double() * cdf[-1]).unsqueeze(-1), right=True).squeeze(-1)
    assert torch.equal(sampling.draw(w.expand(2000, -1), u), ref)


def test_rows_follow_the_memory_budget():
    """SmolLM2-135M's shapes, 58-token prompts, 64 new tokens, 16 samples per prompt: a row costs its keys and
    values (2 x 30 layers x 3 heads x 64 x 4 B = 46,080 B a token) for 64 + 58/16 tokens, plus 4 B x (49,152
    logits + 64 uniforms): 3,313,024 B."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(num_attention_heads=9, num_key_value_heads=3, hidden_size=576, num_hidden_layers=30)
    model = SimpleNamespace(config=cfg, parameters=lambda: iter([torch.zeros(1)]),
                            get_output_embeddings=lambda: SimpleNamespace(weight=torch.zeros(49152, 1)))
    assert sampling.rows_for_memory(model, 58, 64, 16, 1.0) == 2**30 // 3_313_024 == 324
    assert sampling.rows_for_memory(model, 58, 64, 16, 2.0) == 640  # 648 fit: the cap
    assert sampling.rows_for_memory(model, 58, 64, 16, 0.001) == 1


def test_inverse_cdf_never_draws_a_token_of_probability_zero():
    cdf = torch.tensor([[0.0, 0.5, 0.5, 1.0]]).expand(4, -1).contiguous()  # tokens 0 and 2 have probability 0
    u = torch.tensor([0.0, 0.4999, 0.5, 0.9999])
    assert sampling._pick(cdf, u).tolist() == [1, 1, 3, 3]
    assert sampling._pick(cdf, torch.ones(4)).tolist() == [3] * 4  # at the total: the last token of positive weight


def test_bad_sampling_settings_are_refused(tiny):
    model, tok = tiny
    for kw, msg in (({"temperature": 0}, "--temperature 0"), ({"top_p": 1.5}, "--top-p 1.5"),
                    ({"batch_rows": 0}, "batch_rows 0")):
        with pytest.raises(ObliviateError, match=msg):
            sample_ids(model, [[1, 2]], 2, tok.eos_token_id, 4, **kw)


def test_a_model_whose_logits_are_not_its_head_is_not_sampled(tiny, monkeypatch):
    """Greedy decoding may use the bare head (argmax survives a monotone soft-cap); sampling would draw from
    other logits, so it refuses."""
    model, tok = tiny
    monkeypatch.setattr(sampling, "head_logits", lambda model: None)
    with pytest.raises(ObliviateError, match="best-of-n cannot draw from them"):
        sample_ids(model, [[1, 2]], 2, tok.eos_token_id, 4)
