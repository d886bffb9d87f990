"""Packed scoring rows (a prompt and all its answers in one sequence) give the padded path's numbers."""

import pytest
import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter
from obliviate.engine import scoring
from obliviate.engine.forward import head_logits
from obliviate.engine.scoring import ScoreRequest, packing_ok, score

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _requests(tok, n=6):
    fmt = Formatter(tok)
    items = load_items("synthetic:forget10_perturbed")[:n]
    return [ScoreRequest(fmt.prompt_ids(it.question),
                         [fmt.answer_ids(a) for a in [it.answer, it.paraphrased_answer, *it.perturbed_answers][: 1 + i]])
            for i, it in enumerate(items)]


def _same(a, b, tol=1e-5):
    assert [len(x) for x in a] == [len(x) for x in b]
    for xs, ys in zip(a, b):
        for x, y in zip(xs, ys):
            assert x.num_tokens == y.num_tokens
            assert abs(x.avg_nll - y.avg_nll) <= tol
            assert max(abs(u - v) for u, v in zip(x.token_logprobs, y.token_logprobs)) <= tol
            # z = (log p - mu) / sigma of a random model's near-flat distribution is ill-conditioned: the padded
            # path with another batch size moves it by up to 6e-3 too
            assert max(abs(u - v) for u, v in zip(x.token_minkpp, y.token_minkpp)) <= 2e-2
            assert x.argmax_ids == y.argmax_ids


def _assert_each_answer_scores_like_plain_transformers(model, reqs, out):
    """Each answer's token log-probs (1e-5), count and argmax tokens equal one plain forward of its prompt + answer
    alone."""
    for r, scores in zip(reqs, out):
        for a, sc in zip(r.answers, scores):
            ids = torch.tensor([r.prompt_ids + a])
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=ids).logits[0, len(r.prompt_ids) - 1 : -1].float(), -1)
            ref = lp.gather(-1, torch.tensor(a).unsqueeze(-1)).squeeze(-1)
            assert sc.num_tokens == len(a)
            assert max(abs(u - v) for u, v in zip(sc.token_logprobs, ref.tolist())) <= 1e-5
            assert sc.argmax_ids == lp.argmax(-1).tolist()


@pytest.mark.parametrize("share_prefix", [True, False])
def test_packed_rows_score_like_padded_rows(tiny, share_prefix):
    model, tok = tiny
    assert packing_ok(model)
    reqs = _requests(tok)
    packed = score(model, reqs, batch_tokens=700, pack=True, share_prefix=share_prefix)
    padded = score(model, reqs, batch_tokens=700, pack=False, share_prefix=share_prefix)
    _same(packed, padded)


def test_long_rows_are_split_and_still_score_the_same(tiny, monkeypatch):
    model, tok = tiny
    reqs = _requests(tok)
    seen = []
    real_rows = scoring._rows
    monkeypatch.setattr(scoring, "_rows", lambda r, L0, n: seen.append(real_rows(r, L0, 60)) or seen[-1])
    packed = score(model, reqs, batch_tokens=300, pack=True)
    assert len(seen[0]) > len(reqs)  # some request's answers went to several rows
    _same(packed, score(model, reqs, batch_tokens=300, pack=False))


def test_packed_rows_match_plain_transformers_with_eager_attention():
    """The additive 4D mask of eager attention; each answer scored alone with plain transformers."""
    from obliviate.models import load_model

    model, tok = load_model("tiny-llama", seed=1)
    model.set_attn_implementation("eager")
    model.eval()
    assert packing_ok(model)
    reqs = _requests(tok, 3)
    _assert_each_answer_scores_like_plain_transformers(model, reqs, score(model, reqs, pack=True))


def test_models_that_cannot_take_a_4d_mask_keep_the_padded_path(tiny_fresh):
    model, _ = tiny_fresh
    model.config.sliding_window = 16  # a sliding window the block mask would not reproduce
    assert not packing_ok(model)
    model2 = tiny_fresh[0].__class__(tiny_fresh[0].config)  # a new object: checked again
    assert packing_ok(model2) is False  # same config (sliding window)
    assert head_logits(model2) is not None


def test_the_check_is_redone_when_the_attention_implementation_changes():
    from obliviate.models import load_model

    model, _ = load_model("tiny-llama", seed=2)
    assert packing_ok(model)
    model.config._attn_implementation = "flash_attention_2"  # no 4D masks there (only the check reads it here)
    assert not packing_ok(model)
    model.config._attn_implementation = "sdpa"
    assert packing_ok(model)


def test_answer_tree_feeds_shared_prefixes_once_and_no_last_token():
    from obliviate.engine.scoring import answer_tree

    # a, b share [5, 6]; c is a prefix of a plus EOS 2; d repeats a
    tokens, parent, depth, contexts = answer_tree([[5, 6, 7, 2], [5, 6, 8, 2], [5, 6, 2], [5, 6, 7, 2], [2]])
    assert tokens == [5, 6, 7, 8]  # nodes 5 -> 6 -> {7, 8}; no EOS node, [2] alone needs no node
    assert parent == [-1, 0, 1, 1] and depth == [0, 1, 2, 2]
    assert contexts == [[-1, 0, 1, 2], [-1, 0, 1, 3], [-1, 0, 1], [-1, 0, 1, 2], [-1]]


def test_answers_sharing_prefixes_score_like_each_answer_alone(tiny):
    """Answers that share a start, repeat each other or are a prefix of another (plus EOS): every token's
    log-prob equals plain transformers run on prompt + that answer alone."""
    model, tok = tiny
    fmt = Formatter(tok)
    items = load_items("synthetic:forget10_perturbed")[:3]
    reqs = []
    for it in items:
        base = fmt.answer_ids(it.answer)
        reqs.append(ScoreRequest(fmt.prompt_ids(it.question),
                                 [base, base[:3] + fmt.answer_ids("something else entirely"), base,
                                  base[:2] + [tok.eos_token_id], fmt.answer_ids(it.perturbed_answers[0])]))
    out = score(model, reqs, pack=True)
    _assert_each_answer_scores_like_plain_transformers(model, reqs, out)
    _same(out, score(model, reqs, pack=False))
