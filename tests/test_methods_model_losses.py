"""Every method's forget and retain terms on a real (tiny) model, against an independent computation.

The pure loss functions are checked against hand-computed values in test_methods_losses.py; this file checks
the wiring around them: which positions are answer tokens (EOS included, prompt and padding never), per-sequence
sums vs token means, length normalisation, where gamma / alpha / beta sit, the cached reference of NPO and
IdkDPO, CE-U's skipped first token, PALU's prefix positions and RMU's layer output. The batches come from
``prepare_unlearning`` (the real pipeline); the model is then moved away from the reference (as training
would), and each expected value is computed here from the full logits of the model and of an untouched copy
of the original, with the formulas of docs/methods.md and the papers' TOFU defaults written out.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from obliviate.data import load_items
from obliviate.data.formatting import Formatter
from obliviate.methods import get_method, make_config
from obliviate.train import TrainConfig
from obliviate.unlearn import prepare_unlearning

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Full:
    """Full-vocabulary quantities of one batch under one model (no chunking, no answer selection helpers)."""

    def __init__(self, model, b):
        with torch.no_grad():
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
        self.z = out.logits[:, :-1].float()  # position t predicts token t + 1
        self.hidden = out.hidden_states
        labels = b["labels"][:, 1:]
        self.mask = labels != -100
        self.tgt = labels.clamp_min(0)
        self.lp_all = torch.log_softmax(self.z, -1)
        self.lp = self.lp_all.gather(-1, self.tgt[..., None])[..., 0]  # log p of the true next token
        self.S = (self.lp * self.mask).sum(1)  # log pi(y|x): sum over answer tokens
        self.n = self.mask.sum(1).float()

    def token_mean(self, v):
        return (v * self.mask).sum() / self.mask.sum()


@pytest.fixture(scope="module")
def setup(tiny):
    model, tok = tiny
    forget, retain = load_items("synthetic:forget01")[:4], load_items("synthetic:retain99")[:4]
    return model, tok, forget, retain


def _prepared(setup, method, opts=None):
    model, tok, forget, retain = setup
    original = copy.deepcopy(model)
    prep = prepare_unlearning(copy.deepcopy(model), tok, method, make_config(get_method(method), opts or {}),
                              forget, retain, tcfg=TrainConfig(batch_size=4, progress=False))
    batch = next(iter(prep.batches.epoch(0)))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # training has moved the model away from the reference
        for p in prep.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    prep.model.eval()
    return prep, batch, original


def _close(got, want):
    got = got.item() if torch.is_tensor(got) else got
    want = want.item() if torch.is_tensor(want) else want
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_batches_hold_the_answer_tokens_with_eos_and_nothing_else(setup):
    model, tok, forget, _ = setup
    prep, batch, _ = _prepared(setup, "grad_ascent")
    fmt = Formatter(tok)
    f = batch["forget"]
    for row, idx in enumerate(f["index"].tolist()):
        labelled = f["labels"][row][f["labels"][row] != -100].tolist()
        assert labelled == fmt.answer_ids(forget[idx].answer) and labelled[-1] == tok.eos_token_id


def test_grad_ascent_grad_diff_npo_simnpo(setup):
    prep, batch, original = _prepared(setup, "grad_diff")
    m, ref = Full(prep.model, batch["forget"]), Full(original, batch["forget"])
    r = Full(prep.model, batch["retain"])
    A = -m.S / m.n  # mean NLL per sequence
    _close(prep.objective.forget_loss(prep.model, batch)[0], -A.mean())  # GA: -A, averaged over sequences
    _close(prep.objective.retain_loss(prep.model, batch)[0], r.token_mean(-r.lp))  # alpha 1 x retain NLL

    prep, batch, original = _prepared(setup, "grad_diff", {"retain_loss": "kl"})
    r, r_ref = Full(prep.model, batch["retain"]), Full(original, batch["retain"])
    kl = (r_ref.lp_all.exp() * (r_ref.lp_all - r.lp_all)).sum(-1)  # KL(pi_ref || pi_theta) per position
    _close(prep.objective.retain_loss(prep.model, batch)[0], r.token_mean(kl))

    prep, batch, original = _prepared(setup, "npo")  # reference log-likelihoods cached before training
    m, ref = Full(prep.model, batch["forget"]), Full(original, batch["forget"])
    beta = 0.1
    _close(prep.objective.forget_loss(prep.model, batch)[0],
           (2 / beta) * torch.log1p(torch.exp(beta * (m.S - ref.S))).mean())

    prep, batch, _ = _prepared(setup, "simnpo")
    m = Full(prep.model, batch["forget"])
    beta, gamma = 4.5, 0.125
    _close(prep.objective.forget_loss(prep.model, batch)[0],
           gamma * (-(2 / beta)) * F.logsigmoid(beta * (-m.S / m.n)).mean())


def test_idk_nll_and_idk_dpo(setup):
    prep, batch, _ = _prepared(setup, "idk_nll")
    w = Full(prep.model, batch["idk"])
    _close(prep.objective.forget_loss(prep.model, batch)[0], w.token_mean(-w.lp))

    prep, batch, original = _prepared(setup, "idk_dpo")
    w, w_ref = Full(prep.model, batch["idk"]), Full(original, batch["idk"])
    lo, lo_ref = Full(prep.model, batch["forget"]), Full(original, batch["forget"])
    assert not torch.equal(batch["idk"]["input_ids"], batch["forget"]["input_ids"])  # a refusal, not the answer
    beta = 0.1
    margin = (w.S - w_ref.S) - (lo.S - lo_ref.S)
    _close(prep.objective.forget_loss(prep.model, batch)[0], (-(2 / beta) * F.logsigmoid(beta * margin)).mean())


def test_token_weighted_methods(setup):
    prep, batch, _ = _prepared(setup, "wga")
    m = Full(prep.model, batch["forget"])
    p = m.lp.exp()
    _close(prep.objective.forget_loss(prep.model, batch)[0], m.token_mean(p * m.lp))  # beta 1

    prep, batch, _ = _prepared(setup, "satimp")
    m = Full(prep.model, batch["forget"])
    p = m.lp.exp()
    _close(prep.objective.forget_loss(prep.model, batch)[0], 0.1 * m.token_mean(p**5 * (1 - p) * m.lp))

    prep, batch, original = _prepared(setup, "undial")
    m, ref = Full(prep.model, batch["forget"]), Full(original, batch["forget"])
    target = ref.z.clone()
    target.scatter_add_(-1, m.tgt[..., None], torch.full_like(target[..., :1], -10.0))  # beta 10
    ce = -(target.softmax(-1) * m.lp_all).sum(-1)
    _close(prep.objective.forget_loss(prep.model, batch)[0], m.token_mean(ce))

    prep, batch, _ = _prepared(setup, "ce_u")
    m = Full(prep.model, batch["forget"])
    keep = m.mask.clone()
    for row in range(keep.shape[0]):  # the first answer token of each answer is skipped
        keep[row, keep[row].nonzero()[0]] = False
    z = m.z.scatter(-1, m.tgt[..., None], float("-inf"))
    ce = -(z.softmax(-1) * m.lp_all.masked_fill(z.isinf(), 0.0)).sum(-1)
    _close(prep.objective.forget_loss(prep.model, batch)[0], (ce * keep).sum() / keep.sum())

    prep, batch, _ = _prepared(setup, "pdu")
    m, r = Full(prep.model, batch["forget"]), Full(prep.model, batch["retain"])
    _close(prep.objective.forget_loss(prep.model, batch)[0],
           m.token_mean((m.z.max(-1).values - m.z.mean(-1)) ** 2))
    _close(prep.objective.retain_loss(prep.model, batch)[0], 100.0 * (r.token_mean(-r.lp) - 0.3))  # lambda_0, eps


def test_palu(setup):
    prep, batch, original = _prepared(setup, "palu")
    f = batch["forget"]
    m, ref, r = Full(prep.model, f), Full(original, f), Full(prep.model, batch["retain"])
    prefix = (f["sensitive"][:, 1:] == 1) & m.mask  # positions predicting a span's first token
    assert 0 < prefix.sum() < m.mask.sum()
    k = 1000
    top = ref.z.topk(k, -1).indices
    sq = ((m.z.gather(-1, top) - m.z.mean(-1, keepdim=True)) ** 2).mean(-1)
    _close(prep.objective.forget_loss(prep.model, batch)[0], (sq * prefix).sum() / prefix.sum())
    other = m.mask & (f["sensitive"][:, 1:] == 0)  # non-sensitive tokens only: the rest of a span gets no term
    assert other.sum() < (m.mask & ~prefix).sum()  # the synthetic spans are longer than one token
    kl = (m.lp_all.exp() * (m.lp_all - ref.lp_all)).sum(-1)  # KL(pi_theta || pi_ref) on the non-sensitive tokens
    _close(prep.objective.retain_loss(prep.model, batch)[0],
           r.token_mean(-r.lp) + (kl * other).sum() / other.sum())


def test_rmu(setup):
    # layer 0: in HF's hidden_states the last layer's output comes after the final norm, the others do not
    prep, batch, original = _prepared(setup, "rmu", {"layer": 0, "update_layers": "0"})
    f, rb = batch["forget"], batch["retain"]
    m, r, r_ref = Full(prep.model, f), Full(prep.model, rb), Full(original, rb)
    h = m.hidden[1]  # the output of decoder layer 0 (hidden_states[0] is the embedding output)
    d = h.shape[-1]
    u = torch.rand(d, generator=torch.Generator().manual_seed(0))
    steer = 6.5 * u / u.norm()
    answer = f["labels"] != -100  # the answer tokens' own positions (activations, not predictions)
    want_f = (((h - steer) ** 2).mean(-1) * answer).sum() / answer.sum()
    _close(prep.objective.forget_loss(prep.model, batch)[0], want_f)
    ranswer = rb["labels"] != -100
    want_r = 1200.0 * (((r.hidden[1] - r_ref.hidden[1]) ** 2).mean(-1) * ranswer).sum() / ranswer.sum()
    _close(prep.objective.retain_loss(prep.model, batch)[0], want_r)
    assert not math.isclose(want_r.item(), 0.0)
