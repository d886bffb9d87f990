"""The chunked per-token log-probabilities (engine/forward.py: linear_logprobs, answer_token_logprobs)."""

import math

import pytest
import torch

from obliviate.engine.forward import (answer_logits, answer_token_logprobs, linear_logprobs, sequence_logprobs,
                                      twice_differentiable)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_hand_computed_value_and_gradients():
    # logits of row 0 = [1, 0, 1], row 1 = [0, 1, 1]; targets 2 and 0.
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    t = torch.tensor([2, 0])
    lp = linear_logprobs(h, w, None, t, rows_per_chunk=1)
    z = 2 * math.e + 1
    assert lp.tolist() == pytest.approx([1 - math.log(z), 0 - math.log(z)], abs=1e-6)
    lp.sum().backward()
    p0 = [math.e / z, 1 / z, math.e / z]  # softmax of row 0
    p1 = [1 / z, math.e / z, math.e / z]
    # d lp_i / d h_i = W[t_i] - sum_j p_ij W_j
    gh0 = [1 - (p0[0] + p0[2]), 1 - (p0[1] + p0[2])]
    gh1 = [1 - (p1[0] + p1[2]), 0 - (p1[1] + p1[2])]
    assert h.grad.tolist()[0] == pytest.approx(gh0, abs=1e-6)
    assert h.grad.tolist()[1] == pytest.approx(gh1, abs=1e-6)
    # d lp_i / d W_j = (1[j = t_i] - p_ij) h_i, with h_0 = [1, 0] (t_0 = 2) and h_1 = [0, 1] (t_1 = 0)
    gw = [[(j == 2) - p0[j], (j == 0) - p1[j]] for j in range(3)]
    for got, want in zip(w.grad.tolist(), gw):
        assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("train_h, train_head", [(True, False), (True, True), (False, True)])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_log_softmax_and_autograd_across_chunks(train_h, train_head, bias):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 8, generator=g, requires_grad=train_h)
    w = torch.randn(40, 8, generator=g, requires_grad=train_head)
    b = torch.randn(40, generator=g, requires_grad=train_head) if bias else None
    t = torch.randint(0, 40, (23,), generator=g)
    up = torch.randn(23, generator=g)
    want = torch.log_softmax(torch.nn.functional.linear(h, w, b), -1).gather(1, t[:, None]).squeeze(1)
    got = linear_logprobs(h, w, b, t, rows_per_chunk=5)  # 5 chunks, the last one short
    assert torch.allclose(got, want, atol=1e-5)
    leaves = [x for x in (h, w, b) if x is not None and x.requires_grad]
    g_want = torch.autograd.grad((want * up).sum(), leaves)
    g_got = torch.autograd.grad((got * up).sum(), leaves)
    for a, c in zip(g_want, g_got):
        assert torch.allclose(a, c, atol=1e-5)


def test_no_rows_gives_an_empty_result_on_the_graph():
    h = torch.zeros(0, 4, requires_grad=True)
    w = torch.randn(6, 4, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    lp = linear_logprobs(h, w, b, torch.zeros(0, dtype=torch.long))
    assert lp.shape == (0,) and lp.requires_grad
    lp.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_a_bad_chunk_size_is_refused(n):
    with pytest.raises(ValueError, match="rows_per_chunk must be an integer >= 1"):
        linear_logprobs(torch.randn(3, 4), torch.randn(6, 4), None, torch.tensor([0, 1, 2]), rows_per_chunk=n)


def test_twice_differentiable_nests_and_restores():
    from obliviate.engine import forward

    assert not getattr(forward._STATE, "plain", False)
    with twice_differentiable():
        with twice_differentiable():
            assert forward._STATE.plain
        assert forward._STATE.plain  # the inner exit keeps the outer state
    assert not forward._STATE.plain


def test_backward_recomputes_the_logits_under_the_forward_passs_autocast():
    # forward under CPU bf16 autocast, backward outside it (the usual training loop): the recomputed softmax
    # must be the one log-sum-exp was taken from, so each row's logit gradient (onehot - p) sums to 0.
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, 8, generator=g, requires_grad=True)
    w = torch.randn(10, 8, generator=g, requires_grad=True)
    b = torch.randn(10, generator=g, requires_grad=True)
    t = torch.randint(0, 10, (6,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = linear_logprobs(h, w, b, t, rows_per_chunk=4)
        plain = torch.log_softmax(torch.nn.functional.linear(h, w, b).float(), -1).gather(1, t[:, None]).squeeze(1)
    assert torch.allclose(lp, plain, atol=1e-6)
    lp.sum().backward()
    assert abs(b.grad.sum().item()) < 1e-3  # it was -2.0 with the logits recomputed in float32
    gw_plain, gb_plain = torch.autograd.grad(plain.sum(), [w, b])
    assert torch.allclose(b.grad, gb_plain, atol=1e-2) and torch.allclose(w.grad, gw_plain, atol=3e-2)  # bf16 rounding


def test_double_backward_is_refused_with_a_pointer_to_twice_differentiable():
    # (GradPenalty computes its forget loss inside twice_differentiable; tests/test_robust.py trains with it)
    h = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(6, 4)
    lp = linear_logprobs(h, w, None, torch.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match="cannot be differentiated twice.*twice_differentiable"):
        torch.autograd.grad(lp.sum(), h, create_graph=True)


def test_answer_token_logprobs_equal_cross_entropy_of_the_answer_logits(tiny_fresh):
    model, tok = tiny_fresh
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
    labels = torch.tensor([[-100, -100, 7, 8, 9, 10], [-100, 12, 13, 14, -100, -100]])
    batch = {"input_ids": ids, "attention_mask": (labels != -100) | (ids > 0), "labels": labels}
    batch["attention_mask"] = batch["attention_mask"].long()
    params = [p for p in model.parameters() if p.requires_grad]
    lp, targets, rows = answer_token_logprobs(model, batch)
    assert type(lp.grad_fn).__name__ == "_LinearLogprobBackward"  # the chunked path ran
    logits, t2, r2, _ = answer_logits(model, batch)
    want = -torch.nn.functional.cross_entropy(logits, t2, reduction="none")
    assert torch.equal(targets, t2) and torch.equal(rows, r2)
    assert torch.allclose(lp, want, atol=1e-5)
    g_got = torch.autograd.grad(lp.sum(), params)
    g_want = torch.autograd.grad(want.sum(), params)
    for a, c in zip(g_got, g_want):  # the tied embedding / head included
        assert torch.allclose(a, c, atol=1e-5)
    with twice_differentiable():  # the plain path: same values
        lp2, _, _ = answer_token_logprobs(model, batch)
        assert lp2.grad_fn is not None and "Linear" not in type(lp2.grad_fn).__name__
    assert torch.allclose(lp2, lp, atol=1e-5)
    sums, counts = sequence_logprobs(model, batch)
    assert counts.tolist() == [4.0, 3.0]
    assert torch.allclose(sums, torch.stack([lp[:4].sum(), lp[4:].sum()]), atol=1e-5)


def _batch():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
    labels = torch.tensor([[-100, -100, 7, 8, 9, 10], [-100, 12, 13, 14, -100, -100]])
    return {"input_ids": ids, "attention_mask": torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]]), "labels": labels}


def test_a_head_with_hooks_keeps_the_plain_path(tiny_fresh):
    model, _ = tiny_fresh
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, i, out: out - 1e4 * (torch.arange(out.shape[-1]) == 7))
    try:
        lp, _, _ = answer_token_logprobs(model, _batch())
        assert type(lp.grad_fn).__name__ != "_LinearLogprobBackward"
        logits, targets, _, _ = answer_logits(model, _batch())  # the hooked head's own logits
        want = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
        assert torch.allclose(lp, want, atol=1e-4) and lp[0].item() < -1e3  # token 7 is the first target
    finally:
        handle.remove()
    lp, _, _ = answer_token_logprobs(model, _batch())
    assert type(lp.grad_fn).__name__ == "_LinearLogprobBackward" and lp[0].item() > -1e3


@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_model_takes_the_chunked_path_with_the_same_gradients(tiny_fresh, checkpointing):
    from obliviate.train import TrainConfig, apply_lora, disable_grad_checkpointing, enable_grad_checkpointing

    model, _ = tiny_fresh
    model = apply_lora(model, TrainConfig(lora=True, lora_r=4))
    model.train()
    if checkpointing:
        enable_grad_checkpointing(model)
    params = [p for p in model.parameters() if p.requires_grad]
    lp, _, _ = answer_token_logprobs(model, _batch())
    assert type(lp.grad_fn).__name__ == "_LinearLogprobBackward"
    g_got = torch.autograd.grad(lp.sum(), params)
    with twice_differentiable():
        want, _, _ = answer_token_logprobs(model, _batch())
    g_want = torch.autograd.grad(want.sum(), params)
    assert torch.allclose(lp, want, atol=1e-5)
    assert any(g.abs().sum() > 0 for g in g_got)
    for a, c in zip(g_got, g_want):
        assert torch.allclose(a, c, atol=1e-5)
    with torch.no_grad():  # what the reference cache stores: the same values without the gradient work
        nograd, _ = sequence_logprobs(model, _batch())
    sums, _ = sequence_logprobs(model, _batch())
    assert torch.allclose(nograd, sums.detach(), atol=1e-5)
    if checkpointing:
        disable_grad_checkpointing(model)
