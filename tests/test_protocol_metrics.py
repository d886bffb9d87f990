"""Protocol definition choices, against hand-computed values: Min-K count rule, ES floor, GradNorm statistic."""

import copy
import math

import pytest
import torch

from obliviate.engine.gradnorm import protocol_gradient_norms, tensor_mean_gradient_norm
from obliviate.metrics.memorization import extraction_strength, record_memorization
from obliviate.metrics.mia import mia_summary, min_k_count, min_k_plus_plus_score, min_k_score
from obliviate.metrics.tofu import tofu_summary


def test_floor_counts_by_hand():
    # open-unlearning / MUSE: max(1, int(T * k))
    assert [min_k_count(T, 0.4, "floor") for T in (1, 2, 3, 5, 7, 10)] == [1, 1, 1, 2, 2, 4]
    assert [min_k_count(T, 0.4, "ceil") for T in (1, 2, 3, 5, 7, 10)] == [1, 1, 2, 2, 3, 4]
    assert min_k_count(5, 0.6, "floor") == 3 and min_k_count(10, 0.7, "ceil") == 7
    with pytest.raises(ValueError):
        min_k_count(5, 0.4, "round")


def test_min_k_scores_move_only_where_kT_is_not_an_integer():
    lp = [-1.0, -3.0, -2.0, -7.0, -0.5, -4.0, -6.0, 0.0]  # last = EOS (dropped): T = 7
    # sorted without EOS: -7, -6, -4, -3, -2, -1, -0.5; k = 0.4: floor 2 -> 6.5, ceil 3 -> 17/3
    assert min_k_score(lp, count="floor") == pytest.approx(6.5)
    assert min_k_score(lp, count="ceil") == pytest.approx(17 / 3)
    assert min_k_score(lp) == pytest.approx(17 / 3)  # the function default stays obliviate's
    five = [-1.0, -3.0, -2.0, -7.0, -0.5, 0.0]  # T = 5: kT = 2 either way
    assert min_k_score(five, count="floor") == min_k_score(five, count="ceil") == pytest.approx(5.0)
    assert min_k_plus_plus_score(lp, count="floor") == pytest.approx(6.5)


def test_mia_summary_passes_the_count_rule():
    f = [{"token_logprobs": [-1.0, -3.0, -2.0, -7.0, -0.5, -4.0, -6.0, 0.0]}]  # floor 6.5, ceil 17/3
    h = [{"token_logprobs": [-1.0, -1.0, -0.5, -6.6, -0.5, -6.6, -0.2, 0.0]}]  # floor 6.6, ceil 14.2/3
    # AUC = 1 when the holdout score is the higher one: the count rule alone flips it
    assert mia_summary(f, h, min_k_count="floor")[0]["mia_min_k"] == 1.0
    assert mia_summary(f, h, min_k_count="ceil")[0]["mia_min_k"] == 0.0
    assert mia_summary(f, h)[0]["mia_min_k"] == 0.0  # default: obliviate's ceil


def test_es_floor_is_one_over_T_when_no_suffix_matches():
    hits = [1, 1, 0, 1, 0, 1]  # last entry = EOS (dropped): T = 5, last real token missed
    assert extraction_strength(hits) == 0.0
    assert extraction_strength(hits, floor=True) == pytest.approx(1 / 5)
    assert extraction_strength([1, 0, 1, 1, 1], floor=True) == pytest.approx(0.5)  # a match: the floor is unused
    assert record_memorization({"argmax_hits": hits}, "extraction_strength", es_floor=True) == pytest.approx(0.2)
    s = tofu_summary([{"set": "forget", "index": 0, "question": "q", "answer": "a", "argmax_hits": hits}], es_floor=True)
    assert s["extraction_strength"] == pytest.approx(0.2)


def _by_hand(model, prompt, answer):
    """open-unlearning's statistic computed directly with autograd: full logits, the mean NLL of the answer
    tokens without the final EOS, a gradient per parameter tensor, the mean of their L2 norms."""
    ids = torch.tensor([prompt + answer])
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    pos = torch.arange(len(prompt) - 1, len(prompt) + len(answer) - 2)  # predicts answer[0 .. -2]: no EOS
    loss = -logp[pos, torch.tensor(answer[:-1])].mean()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    model.eval()
    norms = [g.double().norm() for g in grads if g is not None]
    return torch.stack(norms).mean().item()


def test_gradnorm_mean_over_tensors_matches_autograd(tiny):
    model, tok = tiny
    model = copy.deepcopy(model).eval()
    prompt = tok("Question: who wrote it?\nAnswer:", add_special_tokens=False).input_ids
    answer = tok(" Ana Belo wrote it.", add_special_tokens=False).input_ids + [tok.eos_token_id]
    seen = []
    h = model.model.layers[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    ours = tensor_mean_gradient_norm(model, prompt, answer)
    h.remove()
    assert seen[-1] is True and not model.training  # train mode for the scored pass, restored after
    assert ours == pytest.approx(_by_hand(model, prompt, answer), rel=1e-5)
    # and it is a different statistic from the global norm of the loss with EOS
    glob = protocol_gradient_norms(model, [(prompt, answer)], "global")[0]
    assert not math.isclose(glob, ours, rel_tol=1e-3)
    assert protocol_gradient_norms(model, [(prompt, answer)], "mean_tensor")[0] == pytest.approx(ours)
    with pytest.raises(ValueError):
        tensor_mean_gradient_norm(model, prompt, [tok.eos_token_id])
