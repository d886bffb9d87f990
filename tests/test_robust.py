"""Robustness wrappers: SAM, randomized smoothing, gradient-norm penalty, weight averaging."""

import copy
import math

import pytest
import torch

from obliviate.data import load_items
from obliviate.errors import ObliviateError
from obliviate.methods import get_method, make_config
from obliviate.robust import GradPenalty, RandomizedSmoothing, RobustConfig, SAM, WeightAveraging, wrap_step
from obliviate.robust.sam import sam_perturbation
from obliviate.train import TrainConfig, train
from obliviate.unlearn import prepare_unlearning


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Toy(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))


class QuadObjective:
    """forget = 0.5 * sum(c * w^2) (gradient c * w); retain = 0.5 * ||w - b||^2 (gradient w - b)."""

    def __init__(self, c, b):
        self.c, self.b = torch.tensor(c), torch.tensor(b)

    def forget_loss(self, model, batch):
        f = 0.5 * (self.c * model.w**2).sum()
        return f, {"forget": f.item()}

    def retain_loss(self, model, batch):
        r = 0.5 * ((model.w - self.b) ** 2).sum()
        return r, {"retain": r.item()}


def test_sam_perturbation_is_rho_times_unit_gradient():
    eps = sam_perturbation([torch.tensor([3.0]), None, torch.tensor([4.0])], rho=0.5)
    # ||g|| = 5: eps = 0.5 * [3, 4] / 5
    assert torch.allclose(eps[0], torch.tensor([0.3])) and eps[1] is None and torch.allclose(eps[2], torch.tensor([0.4]))
    assert torch.equal(sam_perturbation([torch.zeros(2)], 0.1)[0], torch.zeros(2))


def test_sam_forget_gradient_at_perturbed_weights_retain_at_clean():
    w, c, b, rho = [1.0, 2.0], [1.0, 3.0], [0.5, 0.5], 0.1
    model = Toy(w)
    obj = QuadObjective(c, b)
    loss, logs = SAM(obj, rho)(model, {}, backward=lambda l: l.backward())
    # g_f = c * w = [1, 6]; eps = rho g_f / ||g_f|| = 0.1 [1, 6] / sqrt(37)
    n = math.sqrt(37)
    w_adv = [1.0 + 0.1 / n, 2.0 + 0.6 / n]
    want = [c[0] * w_adv[0] + (w[0] - b[0]), c[1] * w_adv[1] + (w[1] - b[1])]
    assert torch.allclose(model.w.grad, torch.tensor(want), atol=1e-6)
    assert torch.equal(model.w.detach(), torch.tensor(w))  # weights restored exactly
    f_adv = 0.5 * (c[0] * w_adv[0] ** 2 + c[1] * w_adv[1] ** 2)
    r = 0.5 * ((w[0] - b[0]) ** 2 + (w[1] - b[1]) ** 2)
    assert math.isclose(loss.item(), f_adv + r, rel_tol=1e-6)
    assert math.isclose(logs["forget"], 0.5 * (1 + 12), rel_tol=1e-6)  # clean forget loss, logged


def test_randomized_smoothing_averages_forget_gradient_over_noise():
    w, c, b, sigma, n = [1.0, -2.0], [2.0, 1.0], [0.0, 0.0], 0.05, 4
    model = Toy(w)
    rs = RandomizedSmoothing(QuadObjective(c, b), n=n, sigma=sigma, seed=3)
    rs(model, {}, backward=lambda l: l.backward())
    # replay the same noise: grad = c * mean_i (w + delta_i) + (w - b)
    g = torch.Generator().manual_seed(3 + 7919)
    deltas = [torch.randn(2, generator=g) * sigma for _ in range(n)]
    mean_w = torch.tensor(w) + torch.stack(deltas).mean(0)
    want = torch.tensor(c) * mean_w + (torch.tensor(w) - torch.tensor(b))
    assert torch.allclose(model.w.grad, want, atol=1e-6)
    assert torch.allclose(model.w.detach(), torch.tensor(w), atol=1e-7)


def test_gradient_penalty_is_differentiable():
    w, c, b, lam = [1.0, 2.0], [1.0, 3.0], [0.0, 0.0], 0.5
    model = Toy(w)
    loss, logs = GradPenalty(QuadObjective(c, b), lam)(model, {})
    loss.backward()
    # ||grad f|| = ||c * w|| = sqrt(1 + 36); d/dw = c^2 w / ||c w|| = [1, 18] / sqrt(37)
    n = math.sqrt(37)
    want = [1.0 + lam * 1.0 / n + 1.0, 6.0 + lam * 18.0 / n + 2.0]
    assert torch.allclose(model.w.grad, torch.tensor(want), atol=1e-6)
    assert math.isclose(logs["forget_grad_norm"], n, rel_tol=1e-6)


def test_weight_averaging_running_mean():
    model = Toy([0.0])
    wa = WeightAveraging(start=2, every=2)
    for step, v in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], start=1):
        with torch.no_grad():
            model.w.fill_(v)
        wa.on_step_end(step, model)
    # averaged at steps 2, 4, 6: values 2, 4, 6 -> mean 4
    assert wa.count == 3 and math.isclose(wa.avg["w"].item(), 4.0)
    with wa.swapped_in(model):
        assert model.w.item() == 4.0
    assert model.w.item() == 6.0
    assert wa.apply(model) and model.w.item() == 4.0
    assert not WeightAveraging(100, 5).apply(model)  # never started: weights untouched


def test_robust_config_guards():
    with pytest.raises(ObliviateError, match="choose one of"):
        RobustConfig(sam_rho=0.01, smooth_n=3).validate()
    with pytest.raises(ObliviateError, match="sam_rho"):
        RobustConfig(sam_rho=-1.0).validate()
    RobustConfig(sam_rho=0.01, weight_avg=True).validate()
    obj = QuadObjective([1.0], [0.0])
    assert isinstance(wrap_step(obj, RobustConfig(sam_rho=0.01)), SAM)
    assert isinstance(wrap_step(obj, RobustConfig(smooth_n=3)), RandomizedSmoothing)
    assert isinstance(wrap_step(obj, RobustConfig(grad_penalty=0.1)), GradPenalty)
    assert wrap_step(obj, RobustConfig()) is obj


@pytest.mark.parametrize("robust", [RobustConfig(sam_rho=0.01), RobustConfig(smooth_n=2, smooth_sigma=1e-3),
                                    RobustConfig(grad_penalty=0.1)], ids=["sam", "smoothing", "grad_penalty"])
def test_wrappers_train_tiny_llama_npo(tiny, robust):
    model, tok = tiny
    forget, retain = load_items("synthetic:forget01"), load_items("synthetic:retain99")[:8]
    tc = TrainConfig(epochs=1, lr=1e-3, batch_size=5, grad_accum=2, progress=False, checkpoint_every_epoch=False,
                     weight_decay=0.0, warmup_ratio=0.0)
    prep = prepare_unlearning(copy.deepcopy(model), tok, "npo", make_config(get_method("npo"), {}), forget, retain,
                              tcfg=tc)
    before = {n: p.detach().clone() for n, p in prep.model.named_parameters()}
    hist = train(prep.model, prep.batches, wrap_step(prep.objective, robust), tc)
    ep = hist["epochs"][0]
    assert math.isfinite(ep["mean_loss"])
    assert all(not torch.equal(before[n], p) for n, p in prep.model.named_parameters())
    if robust.sam_rho is not None:
        assert "forget_perturbed" in ep["last_logs"]


@pytest.mark.parametrize("wrapper", ["sam", "smoothing"])
def test_perturbing_wrappers_restore_bf16_weights_bit_for_bit(wrapper):
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(4096, generator=g) * 0.02).to(torch.bfloat16)
    z = (torch.randn(4096, generator=g) * 1e-4).to(torch.bfloat16)
    assert not torch.equal((w + z) - z, w)  # subtracting the perturbation back would not give the weights back
    model = Toy([0.0])
    model.w.data = w.clone()
    obj = QuadObjective([1.0], [0.0])
    obj.c, obj.b = obj.c.to(torch.bfloat16), obj.b.to(torch.bfloat16)
    step = SAM(obj, rho=0.01) if wrapper == "sam" else RandomizedSmoothing(obj, n=3, sigma=1e-4, seed=0)
    step(model, {}, backward=lambda l: l.backward())
    assert torch.equal(model.w.detach(), w)
    assert model.w.grad is not None and model.w.grad.abs().sum() > 0


class Weighted(QuadObjective):
    """Like a method with gamma = 2: the loss is weighted, the log holds the unweighted term (key ``key``)."""

    def __init__(self, c, b, key="forget"):
        super().__init__(c, b)
        self.key = key

    def forget_loss(self, model, batch):
        f = 0.5 * (self.c * model.w**2).sum()
        return 2.0 * f, {self.key: f.item()}


def test_wrapper_logs_are_the_methods_own_unweighted_terms():
    w, c, b = [1.0, 2.0], [1.0, 3.0], [0.0, 0.0]
    f_clean = 0.5 * (1 + 12)
    _, logs = SAM(Weighted(c, b), 0.1)(Toy(w), {}, backward=lambda l: l.backward())
    n = math.sqrt(37)
    w_adv = [1.0 + 0.1 / n, 2.0 + 0.6 / n]
    assert math.isclose(logs["forget"], f_clean, rel_tol=1e-6)
    assert math.isclose(logs["forget_perturbed"], 0.5 * (w_adv[0] ** 2 + 3 * w_adv[1] ** 2), rel_tol=1e-6)
    # smoothing: the mean of the unweighted term over the noise samples (not gamma times it)
    rs = RandomizedSmoothing(Weighted(c, b), n=3, sigma=0.05, seed=1)
    _, logs = rs(Toy(w), {}, backward=lambda l: l.backward())
    g = torch.Generator().manual_seed(1 + 7919)
    vals = [0.5 * (torch.tensor(c) * (torch.tensor(w) + torch.randn(2, generator=g) * 0.05) ** 2).sum().item()
            for _ in range(3)]
    assert math.isclose(logs["forget"], sum(vals) / 3, rel_tol=1e-5)
    # a method that logs its forget term under another name gets no invented "forget" key
    rs = RandomizedSmoothing(Weighted(c, b, key="idk"), n=2, sigma=0.05)
    _, logs = rs(Toy(w), {}, backward=lambda l: l.backward())
    assert "forget" not in logs and "idk" in logs
    _, logs = SAM(Weighted(c, b, key="idk"), 0.1)(Toy(w), {}, backward=lambda l: l.backward())
    assert "forget_perturbed" not in logs and "idk_perturbed" in logs


def test_wrappers_use_the_loops_backward_and_touch_trainable_weights_only():
    """The loop's backward divides by the accumulation group's size; a frozen weight is never perturbed."""
    w, c, b = [1.0, 2.0], [1.0, 3.0], [0.5, 0.5]

    class Frozen(Toy):
        def __init__(self, w):
            super().__init__(w)
            self.frozen = torch.nn.Parameter(torch.tensor([7.0]), requires_grad=False)

    class Watch(QuadObjective):
        seen = []

        def forget_loss(self, model, batch):
            self.seen.append(model.frozen.item())
            return super().forget_loss(model, batch)

    for make in (lambda o: SAM(o, 0.1), lambda o: RandomizedSmoothing(o, n=2, sigma=0.5, seed=0)):
        full, half = Frozen(w), Frozen(w)
        make(Watch(c, b))(full, {}, backward=lambda l: l.backward())
        make(Watch(c, b))(half, {}, backward=lambda l: (l / 2).backward())
        assert torch.allclose(half.w.grad, full.w.grad / 2)
        assert set(Watch.seen) == {7.0}


def test_smoothing_noise_follows_the_seed():
    c, b = [1.0, 3.0], [0.0, 0.0]

    def grad(seed):
        m = Toy([1.0, 2.0])
        wrap_step(QuadObjective(c, b), RobustConfig(smooth_n=2, smooth_sigma=0.1), seed=seed)(
            m, {}, backward=lambda l: l.backward())
        return m.w.grad

    assert torch.equal(grad(0), grad(0)) and not torch.allclose(grad(0), grad(1))


def test_sam_defaults_and_non_finite_gradient_is_named():
    assert SAM(QuadObjective([1.0], [0.0])).rho == 0.01  # the paper's rho

    class InfGrad(QuadObjective):
        def forget_loss(self, model, batch):
            f = (model.w.abs() ** 0.5).sum()  # finite value, infinite gradient at w = 0
            return f, {"forget": f.item()}

    loss, logs = SAM(InfGrad([1.0], [0.0]), 0.1)(Toy([0.0]), {}, backward=lambda l: l.backward())
    assert not torch.isfinite(loss) and "gradient not finite" in logs["sam"]


def test_weight_averaging_counts_from_its_start_step():
    model = Toy([0.0])
    wa = WeightAveraging(start=3, every=2)
    for step in range(1, 8):
        with torch.no_grad():
            model.w.fill_(float(step))
        wa.on_step_end(step, model)
    assert wa.count == 3 and math.isclose(wa.avg["w"].item(), (3 + 5 + 7) / 3)  # steps 3, 5, 7


@pytest.mark.parametrize("method, lora", [("undial", False), ("palu", True)])
@pytest.mark.parametrize("robust", [RobustConfig(sam_rho=0.01), RobustConfig(smooth_n=3, smooth_sigma=1e-3),
                                    RobustConfig(grad_penalty=0.1)], ids=["sam", "smoothing", "grad_penalty"])
def test_wrappers_run_one_reference_forward_per_batch_and_step(tiny, method, lora, robust):
    """SAM takes the forget loss twice, smoothing n times, and PALU reads the forget batch's reference again on
    its retain side: the token-level reference (a frozen copy, or the LoRA base) is computed once per batch and
    step, and the gradients are those of recomputing it every time."""
    from obliviate.methods import base

    model, tok = tiny
    forget, retain = load_items("synthetic:forget01")[:4], load_items("synthetic:retain99")[:4]
    tc = TrainConfig(epochs=1, batch_size=4, progress=False, checkpoint_every_epoch=False, lora=lora)
    prep = prepare_unlearning(copy.deepcopy(model), tok, method, make_config(get_method(method), {}), forget, retain,
                              tcfg=tc)
    batch = next(iter(prep.batches.epoch(0)))
    calls = []
    real = base.answer_logits

    def counted(m, b, *a, **kw):
        if not torch.is_grad_enabled():  # the reference's no-grad pass (the model's own passes keep grad)
            calls.append(id(b["input_ids"]))
        return real(m, b, *a, **kw)

    def grads(reuse: bool):
        step = wrap_step(prep.objective, robust, seed=0)
        call = step.__call__ if reuse else type(step).__call__.__wrapped__.__get__(step)
        calls.clear()
        prep.model.zero_grad(set_to_none=True)
        args = () if isinstance(step, GradPenalty) else (lambda l: l.backward(),)
        loss, _ = call(prep.model, batch, *args)
        if isinstance(step, GradPenalty):
            loss.backward()
        return {n: p.grad.clone() for n, p in prep.model.named_parameters() if p.grad is not None}, list(calls)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base, "answer_logits", counted)
        once, n_once = grads(True)
        every, n_every = grads(False)
    assert len(n_once) == len(set(n_once)) == 1  # the forget batch's reference, once
    # without reuse: once per forget-loss pass (SAM 2, smoothing 3, the penalty 1), + 1 for PALU's retain side
    passes = 2 if robust.sam_rho else 3 if robust.smooth_n else 1
    assert len(n_every) == passes + (method == "palu")
    assert once.keys() == every.keys() and once
    for n in once:
        assert torch.allclose(once[n], every[n], rtol=1e-5, atol=1e-7), n
