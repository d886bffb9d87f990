"""Every registered method: 3 optimiser steps on tiny-llama change every trainable parameter and lower the
forget set's likelihood; NPO with cached reference log-likelihoods equals NPO with a live reference."""

import copy

import pytest
import torch

from obliviate.data import load_items
from obliviate.data.formatting import Formatter, collate
from obliviate.engine.forward import sequence_logprobs
from obliviate.methods import get_method, make_config
from obliviate.methods.base import LiveSequenceReference, compute_sequence_cache, frozen_copy
from obliviate.registry import METHODS
from obliviate.robust import wrap_step
from obliviate.train import EncodedBatches, TrainConfig, nll_loss, train
from obliviate.unlearn import prepare_unlearning

# tiny-llama has 2 decoder layers: RMU steers layer 1 and trains both layers' MLP down-projections.
TINY_OPTIONS = {"rmu": {"layer": 1, "update_layers": "0,1", "alpha": 1.0}}
STEP_CFG = dict(epochs=1, lr=1e-3, batch_size=4, progress=False, checkpoint_every_epoch=False,
                weight_decay=0.0, warmup_ratio=0.0)  # no weight decay: only gradients move parameters


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return load_items("synthetic:forget01"), load_items("synthetic:retain99")[:20]


@pytest.fixture(scope="module")
def target(tiny, data):
    """tiny-llama fine-tuned on the forget items (a memorised target: the forget terms have signal)."""
    model, tok = tiny
    model = copy.deepcopy(model)
    forget, _ = data
    fmt = Formatter(tok)
    enc = [fmt.encode(it.question, it.answer) for it in forget]
    cfg = TrainConfig(epochs=40, lr=1e-2, batch_size=10, progress=False, checkpoint_every_epoch=False,
                      warmup_ratio=0.0)
    train(model, EncodedBatches(enc, 10, tok.pad_token_id, 0), nll_loss, cfg)
    model.eval()
    return model, tok


def forget_loglik(model, tok, items) -> float:
    fmt = Formatter(tok)
    batch = collate([fmt.encode(it.question, it.answer) for it in items], tok.pad_token_id)
    with torch.no_grad():
        sums, _ = sequence_logprobs(model, batch)
    return sums.mean().item()


@pytest.mark.parametrize("name", METHODS.names())
def test_three_steps_change_every_trainable_parameter_and_lower_forget_likelihood(name, target, data):
    model, tok = target
    forget, retain = data
    net = copy.deepcopy(model)
    cls = get_method(name)
    mcfg = make_config(cls, TINY_OPTIONS.get(name, {}))
    tc = TrainConfig(**STEP_CFG)
    prep = prepare_unlearning(net, tok, name, mcfg, forget, retain, tcfg=tc)
    assert len(prep.batches) == 3  # 10 forget items, batch 4
    before = {n: p.detach().clone() for n, p in prep.model.named_parameters() if p.requires_grad}
    ll_before = forget_loglik(prep.model, tok, forget)
    hist = train(prep.model, prep.batches, wrap_step(prep.objective, None), tc)  # the step `unlearn` runs
    assert hist["steps_per_epoch"] == 3
    after = dict(prep.model.named_parameters())
    unchanged = [n for n in before if torch.equal(before[n], after[n].detach())]
    assert not unchanged, f"{name}: parameters not updated: {unchanged}"
    if name == "rmu":  # only the chosen layers' MLP down-projections are trainable
        assert sorted(before) == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
        frozen = [n for n, p in after.items() if n not in before]
        assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in after.items() if n in frozen)
    else:
        assert len(before) == len(list(model.parameters()))
    ll_after = forget_loglik(prep.model, tok, forget)
    assert ll_after < ll_before, f"{name}: forget log-likelihood {ll_before:.4f} -> {ll_after:.4f}"


def test_npo_cached_reference_equals_live_reference(target, data):
    model, tok = target
    forget, retain = data
    cls = get_method("npo")
    mcfg = make_config(cls, {})
    tc = TrainConfig(**STEP_CFG)
    net_c = copy.deepcopy(model)
    net_l = copy.deepcopy(model)
    cached = prepare_unlearning(net_c, tok, "npo", mcfg, forget, retain, tcfg=tc, reference="cached")
    live = prepare_unlearning(net_l, tok, "npo", mcfg, forget, retain, tcfg=tc, reference="live")
    assert cached.info["reference"].startswith("cached") and live.info["reference"].startswith("live")
    # same batches, same retain draws
    batches = list(cached.batches.epoch(0))
    for b in batches:
        lc, logs_c = cached.objective(net_c, b)
        ll, logs_l = live.objective(net_l, b)
        assert abs(lc.item() - ll.item()) < 1e-5, (lc.item(), ll.item())
    # after training steps (the model moves away from the reference) the two still agree
    train(net_c, cached.batches, cached.objective, tc)
    train(net_l, live.batches, live.objective, tc)
    for b in batches:
        lc, _ = cached.objective(net_c, b)
        ll, _ = live.objective(net_l, b)
        assert abs(lc.item() - ll.item()) < 1e-5, (lc.item(), ll.item())


def test_sequence_cache_matches_per_item_scores(target, data):
    model, tok = target
    forget, _ = data
    fmt = Formatter(tok)
    enc = [fmt.encode(it.question, it.answer) for it in forget]
    cache = compute_sequence_cache(model, {"forget": enc}, tok.pad_token_id, batch_size=3)
    for i in (0, 4, 9):
        b = collate([enc[i]], tok.pad_token_id)
        with torch.no_grad():
            s, _ = sequence_logprobs(model, b)
        assert abs(cache.values["forget"][i].item() - s.item()) < 1e-4
    # lookups follow batch["index"]
    b = collate([enc[7], enc[2]], tok.pad_token_id)
    b["index"] = torch.tensor([7, 2])
    assert torch.equal(cache.sequence_logprobs("forget", b), cache.values["forget"][[7, 2]])
    live = LiveSequenceReference(frozen_copy(model))
    assert torch.allclose(live.sequence_logprobs("forget", b), cache.sequence_logprobs("forget", b), atol=1e-4)


def test_token_reference_with_lora_is_the_base_model(target, data):
    """With LoRA the token reference is the trained model with adapters disabled (no second copy)."""
    model, tok = target
    forget, retain = data
    net = copy.deepcopy(model)
    mcfg = make_config(get_method("undial"), {})
    tc = TrainConfig(**{**STEP_CFG, "lora": True, "lr": 1e-2})
    prep = prepare_unlearning(net, tok, "undial", mcfg, forget, retain, tcfg=tc)
    assert prep.info["token_reference"] == "lora-base"
    assert prep.objective.refs.token.frozen is None
    b = next(iter(prep.batches.epoch(0)))["forget"]
    from obliviate.engine.forward import answer_logits

    with torch.no_grad():
        base, _, _, _ = answer_logits(model, b)
    train(prep.model, prep.batches, prep.objective, tc)
    ref = prep.objective.refs.token.answer_logits(prep.model, b)
    with torch.no_grad():
        now, _, _, _ = answer_logits(prep.model, b)
    assert torch.allclose(ref, base, atol=1e-4)  # adapters disabled == the model before unlearning
    assert not torch.allclose(now, base, atol=1e-4)  # the adapters did learn something
    # the reference runs in eval mode (no dropout) even while the model trains, and the mode comes back
    prep.model.train()
    modes = []
    h = prep.model.get_base_model().model.layers[0].register_forward_pre_hook(lambda mod, a: modes.append(mod.training))
    prep.objective.refs.token.answer_logits(prep.model, b)
    h.remove()
    assert modes == [False] and prep.model.training


def test_retain_draws_split_over_ranks_like_the_forget_rows(target, data):
    model, tok = target
    forget, retain = data
    fmt = Formatter(tok)
    f = [fmt.encode(it.question, it.answer) for it in forget]
    r = [fmt.encode(it.question, it.answer) for it in retain]
    from obliviate.unlearn import UnlearnBatches

    def draws(seed=0, epoch=0, rank=0, world=1, key="retain"):
        ub = UnlearnBatches(f, 4, tok.pad_token_id, seed, retain=r)
        return [b[key]["index"].tolist() for b in ub.epoch(epoch, rank=rank, world=world)]

    assert draws() == draws()  # reproducible (a resumed run redraws the same items)
    assert draws() != draws(epoch=1)
    assert draws() != draws(seed=1)
    # two processes: each takes its contiguous half of every global batch, forget rows and retain draws alike,
    # so together they train on exactly what one process trains on (ranks get different retain items)
    for key in ("retain", "forget"):
        one, r0, r1 = draws(key=key), draws(rank=0, world=2, key=key), draws(rank=1, world=2, key=key)
        assert [a + b for a, b in zip(r0, r1)] == one
        assert all(len(a) == len(b) == len(o) // 2 for a, b, o in zip(r0, r1, one))
    ub = UnlearnBatches(f, 4, tok.pad_token_id, 0, retain=r)
    b = next(iter(ub.epoch(0)))
    assert b["forget"]["index"].shape == b["retain"]["index"].shape


def test_palu_batches_mark_prefix_tokens(target, data):
    model, tok = target
    forget, retain = data
    mcfg = make_config(get_method("palu"), {"n": 2})
    prep = prepare_unlearning(copy.deepcopy(model), tok, "palu", mcfg, forget, retain, tcfg=TrainConfig(**STEP_CFG))
    assert prep.info["sensitive_source"] == {"target_words": 10, "auto_rule": 0}
    for b in prep.batches.epoch(0):
        f = b["forget"]
        sens = f["sensitive"]
        assert not sens[f["labels"] == -100].any()  # only answer tokens
        assert (sens.sum(1) >= 1).all()  # every synthetic answer has a sensitive value
    # the marked tokens spell the start of the target word
    fmt = Formatter(tok)
    it = forget[0]
    e = fmt.encode(it.question, it.answer)
    from obliviate.methods.palu import sensitive_mask

    m = sensitive_mask(tok, fmt.answer_text(it.answer), it.answer, it.question, it.target_words, 2)
    marked = [e.input_ids[e.prompt_len + j] for j, code in enumerate(m) if code == 1]  # palu.PREFIX
    assert it.target_words[0]["word"].startswith(tok.decode(marked).strip())


@pytest.mark.parametrize("name", ["npo", "grad_diff"])
def test_split_backward_accumulates_the_summed_gradient(name, target, data):
    """Forget term back-propagated before the retain term is built: the same gradient as one backward."""
    from obliviate.methods.base import SplitBackward

    model, tok = target
    forget, retain = data
    net = copy.deepcopy(model)
    prep = prepare_unlearning(net, tok, name, make_config(get_method(name), {}), forget, retain,
                              tcfg=TrainConfig(**STEP_CFG))
    step = wrap_step(prep.objective, None)
    assert isinstance(step, SplitBackward)
    batch = next(iter(prep.batches.epoch(0)))
    loss, _ = prep.objective(net, batch)
    loss.backward()
    summed = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    split_loss, _ = step(net, batch, backward=lambda t: t.backward())
    assert abs(split_loss.item() - loss.item()) < 1e-6
    for n, p in net.named_parameters():
        assert torch.allclose(p.grad, summed[n], atol=1e-6, rtol=1e-5), n


def test_pdu_dual_update_once_per_optimiser_step_with_the_mean_retain_nll(target, data):
    from obliviate.methods.pdu import PDU

    model, tok = target
    forget, retain = data
    cfg = make_config(get_method("pdu"), {"alpha": 2.0, "dual_step_size": 0.5, "eps": 0.1, "dual_warmup_epochs": 0})
    pdu = PDU(cfg)
    fmt = Formatter(tok)
    micro = [collate([fmt.encode(it.question, it.answer) for it in retain[i : i + 4]], tok.pad_token_id)
             for i in (0, 4)]
    seen = []
    with torch.no_grad():
        for b in micro:  # two micro-batches of one accumulated step: both use lambda_0
            term, logs = pdu.retain_loss(model, {"retain": b})
            assert logs["lambda"] == 2.0 and pdu.lam == 2.0
            seen.append(logs["retain"])
            assert abs(term.item() - 2.0 * (logs["retain"] - 0.1)) < 1e-5
    pdu.on_step_end(1)
    want = max(0.0, 2.0 + 0.5 * ((seen[0] + seen[1]) / 2 - 0.1))
    assert seen[0] != seen[1] and abs(pdu.lam - want) < 1e-9
    pdu.on_step_end(2)  # no retain term since: lambda stays
    assert abs(pdu.lam - want) < 1e-9
