"""Each method's pure loss on small hand-made tensors, against the formula worked out by hand here."""

import math

import pytest
import torch

from obliviate.methods.base import kl_divergence
from obliviate.methods.ce_u import ce_u_loss, position_in_answer
from obliviate.methods.grad_ascent import grad_ascent_loss
from obliviate.methods.idk_dpo import dpo_loss
from obliviate.methods.npo import npo_loss
from obliviate.methods.palu import auto_spans, palu_sensitive_loss, token_prefix_mask
from obliviate.methods.pdu import dual_update, pdu_forget_loss
from obliviate.methods.rmu import rmu_loss, steering_vector
from obliviate.methods.satimp import satimp_loss
from obliviate.methods.simnpo import simnpo_loss
from obliviate.methods.undial import undial_loss
from obliviate.methods.wga import wga_loss


def log_sigmoid(x: float) -> float:
    return -math.log(1.0 + math.exp(-x))


def softmax(z: list[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def log_softmax(z: list[float]) -> list[float]:
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def close(a, b, tol=1e-6):
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def test_grad_ascent():
    # sequence NLL sums 6 and 2 over 3 and 1 tokens: A = 2 and 2 -> L = -(2 + 2) / 2 = -2
    assert close(grad_ascent_loss(torch.tensor([6.0, 2.0]), torch.tensor([3.0, 1.0])), -2.0)
    # 4/2 = 2, 9/3 = 3 -> -(2.5)
    assert close(grad_ascent_loss(torch.tensor([4.0, 9.0]), torch.tensor([2.0, 3.0])), -2.5)


def test_npo():
    logp, ref, beta = [-2.0, -1.0], [-1.0, -1.5], 0.1
    # L = -(2/beta) * mean_i log sigmoid(-beta (logp_i - ref_i)); diffs -1.0 and 0.5
    want = -(2 / 0.1) * (log_sigmoid(-0.1 * -1.0) + log_sigmoid(-0.1 * 0.5)) / 2
    got = npo_loss(torch.tensor(logp), torch.tensor(ref), beta)
    assert close(got, want)
    # the paper's form: (2/beta) mean log(1 + (pi/pi_ref)^beta)
    alt = (2 / 0.1) * (math.log(1 + math.exp(0.1 * -1.0)) + math.log(1 + math.exp(0.1 * 0.5))) / 2
    assert close(got, alt)
    # at pi = pi_ref the loss is (2/beta) log 2
    assert close(npo_loss(torch.tensor([-3.0]), torch.tensor([-3.0]), 0.1), 20 * math.log(2))


def test_simnpo():
    # A = [0.5, 2.0], beta 4.5, delta 1: -(2/4.5) mean log sigmoid(4.5 A - 1)
    want = -(2 / 4.5) * (log_sigmoid(4.5 * 0.5 - 1) + log_sigmoid(4.5 * 2.0 - 1)) / 2
    assert close(simnpo_loss(torch.tensor([0.5, 2.0]), 4.5, 1.0), want)
    # minimising it raises A (the forget NLL): its derivative in A is negative
    a = torch.tensor([0.5], requires_grad=True)
    simnpo_loss(a, 4.5, 0.0).backward()
    assert a.grad.item() < 0


def test_idk_dpo():
    win, win_ref, lose, lose_ref, beta = -3.0, -4.0, -2.0, -1.0, 0.1
    # margin = (win - win_ref) - (lose - lose_ref) = 1 - (-1) = 2
    want = -(2 / 0.1) * log_sigmoid(0.1 * 2.0)
    got = dpo_loss(torch.tensor([win]), torch.tensor([win_ref]), torch.tensor([lose]), torch.tensor([lose_ref]), beta)
    assert close(got, want)


def test_rmu():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])  # [B=1, T=3, d=2]
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the third position is prompt/padding
    # position 0: ((1-1)^2 + (2-0)^2) / 2 = 2; position 1: (9 + 16) / 2 = 12.5; mean = 7.25
    assert close(rmu_loss(h, target, mask), 7.25)
    u = steering_vector(16, 6.5, seed=3)
    assert close(u.norm(), 6.5, 1e-5) and (u >= 0).all()
    assert torch.equal(u, steering_vector(16, 6.5, seed=3))


def test_undial():
    logits = [[1.0, 2.0, 0.0]]
    ref = [[0.0, 3.0, 1.0]]
    target, beta = 1, 2.0
    # q = softmax(ref - beta e_target) = softmax([0, 1, 1]); CE = -sum q log softmax(logits)
    q = softmax([0.0, 1.0, 1.0])
    lp = log_softmax(logits[0])
    want = -sum(qi * li for qi, li in zip(q, lp))
    got = undial_loss(torch.tensor(logits), torch.tensor(ref), torch.tensor([target]), beta)
    assert close(got, want)


def test_wga_and_satimp():
    lp = [math.log(0.5), math.log(0.25)]
    # WGA: mean stopgrad(p^beta) log p, beta 1: (0.5 log 0.5 + 0.25 log 0.25) / 2
    assert close(wga_loss(torch.tensor(lp), 1.0), (0.5 * lp[0] + 0.25 * lp[1]) / 2)
    # beta 2: (0.25 log 0.5 + 0.0625 log 0.25) / 2
    assert close(wga_loss(torch.tensor(lp), 2.0), (0.25 * lp[0] + 0.0625 * lp[1]) / 2)
    # SatImp: weight p^b1 (1-p)^b2 with b1 5, b2 1: 0.5^5 * 0.5 and 0.25^5 * 0.75
    w = [0.5**5 * 0.5, 0.25**5 * 0.75]
    assert close(satimp_loss(torch.tensor(lp), 5.0, 1.0), (w[0] * lp[0] + w[1] * lp[1]) / 2)
    # the weight is detached: d/d(log p) of WGA = p^beta / N only
    x = torch.tensor(lp, requires_grad=True)
    wga_loss(x, 1.0).backward()
    assert torch.allclose(x.grad, torch.tensor([0.5 / 2, 0.25 / 2]))


def test_ce_u():
    logits = [[2.0, 1.0, 0.0], [0.0, 0.5, 1.0]]
    targets = [0, 2]
    # target distribution: softmax with the true logit removed (-inf)
    q0 = [0.0] + softmax([1.0, 0.0])
    q1 = softmax([0.0, 0.5]) + [0.0]
    ce0 = -sum(q * l for q, l in zip(q0, log_softmax(logits[0])))
    ce1 = -sum(q * l for q, l in zip(q1, log_softmax(logits[1])))
    assert close(ce_u_loss(torch.tensor(logits), torch.tensor(targets)), (ce0 + ce1) / 2)
    # positions within each answer (rows sorted): rows [0,0,0,1,1] -> 0,1,2,0,1
    assert position_in_answer(torch.tensor([0, 0, 0, 1, 1]), 2).tolist() == [0, 1, 2, 0, 1]


def test_pdu():
    logits = [[3.0, 0.0, 0.0], [1.0, 1.0, 4.0]]
    # (max - mean)^2: (3 - 1)^2 = 4 and (4 - 2)^2 = 4 -> mean 4
    assert close(pdu_forget_loss(torch.tensor(logits)), 4.0)
    assert close(pdu_forget_loss(torch.tensor([[2.0, 0.0, 1.0, 1.0]])), (2 - 1.0) ** 2)
    # dual ascent: max(0, lambda + eta (L_r - eps))
    assert close(dual_update(100.0, 5.0, 0.5, 0.3), 101.0)
    assert dual_update(0.5, 5.0, 0.1, 0.3) == 0.0


def test_palu_sensitive_loss():
    logits = [[4.0, 2.0, 0.0, 2.0]]  # mean 2
    ref = [[0.0, 5.0, 1.0, 3.0]]  # top-2 of the reference: indices 1 and 3
    # (1/k) sum_{j in top-k(ref)} (z_j - mean z)^2 = ((2-2)^2 + (2-2)^2) / 2 = 0
    assert close(palu_sensitive_loss(torch.tensor(logits), torch.tensor(ref), 2), 0.0)
    # top-1 of ref = index 1 in row 1; row 2: logits [1, 0, 0, 3] mean 1, ref top-1 index 0 -> (1-1)^2 = 0;
    # use k=3 on row 2: ref [9, 8, 7, 0] -> indices 0,1,2: ((1-1)^2 + (0-1)^2 + (0-1)^2) / 3 = 2/3
    got = palu_sensitive_loss(torch.tensor([[1.0, 0.0, 0.0, 3.0]]), torch.tensor([[9.0, 8.0, 7.0, 0.0]]), 3)
    assert close(got, 2 / 3)
    # average over positions: (0 + 2/3) / 2
    got2 = palu_sensitive_loss(torch.tensor(logits + [[1.0, 0.0, 0.0, 3.0]]),
                               torch.tensor(ref + [[9.0, 8.0, 7.0, 0.0]]), 3)
    # row 1 with k=3: ref top-3 indices 1,3,2: ((2-2)^2 + (2-2)^2 + (0-2)^2)/3 = 4/3
    assert close(got2, (4 / 3 + 2 / 3) / 2)


def test_palu_spans_and_prefix_mask():
    q = "Where was Tamsin born?"
    a = "Tamsin was born in Estmoor, a northern city."
    spans = auto_spans(q, a)
    words = [a[s:e] for s, e in spans]
    # question words and stop-words dropped; "northern city" is one contiguous run, the comma and "a" end one
    assert words == ["Estmoor", "northern city"]
    a2 = "She lives in New York City with 3 cats."
    assert [a2[s:e] for s, e in auto_spans("Where does she live?", a2)] == ["lives", "New York City", "3 cats"]
    # tokens: [Est][moor][,][ a][ northern][ city][.] with character offsets
    offsets = [(19, 22), (22, 26), (26, 27), (27, 29), (29, 38), (38, 43), (43, 44)]
    # spans' tokens: Estmoor -> [Est, moor], northern city -> [ northern, city]; codes: 1 prefix, 2 rest of a span
    assert token_prefix_mask(offsets, spans, 1) == [1, 2, 0, 0, 1, 2, 0]
    assert token_prefix_mask(offsets, spans, 2) == [1, 1, 0, 0, 1, 1, 0]
    assert token_prefix_mask(offsets, spans, -1) == [1, 1, 0, 0, 1, 1, 0]  # n = -1: every span token (PALU's default)
    # two target_words entries side by side are one run of adjacent sensitive tokens: one prefix (PALU's grouping)
    assert token_prefix_mask(offsets, [(19, 26), (30, 38), (39, 43)], 1) == [1, 2, 0, 0, 1, 2, 0]


def test_kl_divergence():
    p, q = [0.0, 1.0], [1.0, 0.0]
    pp, qq = softmax(p), softmax(q)
    want = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pp, qq))
    assert close(kl_divergence(torch.tensor([p]), torch.tensor([q])), want)
    assert close(kl_divergence(torch.tensor([p]), torch.tensor([p])), 0.0)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_npo_gradient_sign(beta):
    # minimising NPO lowers log pi_theta
    logp = torch.tensor([-2.0], requires_grad=True)
    npo_loss(logp, torch.tensor([-2.0]), beta).backward()
    assert logp.grad.item() > 0


def test_kl_divergence_direction():
    # asymmetric case: KL(p || q) != KL(q || p), so swapped arguments are caught
    p, q = [0.0, 1.0, 3.0], [1.0, 0.0, 0.0]
    pp, qq = softmax(p), softmax(q)
    want = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pp, qq))
    swapped = sum(b * (math.log(b) - math.log(a)) for a, b in zip(pp, qq))
    assert abs(want - swapped) > 0.1
    assert close(kl_divergence(torch.tensor([p]), torch.tensor([q])), want)


def test_retain_kl_is_kl_of_reference_to_model_and_palu_non_prefix_is_model_to_reference(monkeypatch):
    """retain_loss=kl: mean_t KL(pi_ref || pi_theta); PALU's L_ns: mean_t KL(pi_theta || pi_ref)."""
    import obliviate.methods.base as base
    import obliviate.methods.palu as palu

    cur, ref = [[0.0, 1.0, 3.0]], [[1.0, 0.0, 0.0]]
    pc, pr = softmax(cur[0]), softmax(ref[0])
    kl_ref_cur = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pr, pc))
    kl_cur_ref = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pc, pr))

    class Ref:
        def answer_logits(self, model, batch):
            return torch.tensor(ref)

    fake = lambda model, batch: (torch.tensor(cur), torch.tensor([1]), torch.tensor([0]), None)  # noqa: E731
    monkeypatch.setattr(base, "answer_logits", fake)
    assert close(base.retain_term(None, {}, "kl", Ref()), kl_ref_cur)

    monkeypatch.setattr(palu, "answer_logits", fake)
    m = palu.PALU(palu.PALUConfig(), base.References(token=Ref()))
    f = {"labels": torch.tensor([[-100, 5]]), "sensitive": torch.tensor([[False, False]])}
    assert close(m._forget_parts(None, {"forget": f}, False, True)["ns"], kl_cur_ref)


def test_stop_gradients_of_ce_u_satimp_and_palu_mean():
    # CE-U: the target q = softmax(stopgrad(z) with z[y] = -inf); d/dz of -sum q log softmax(z) = softmax(z) - q
    z = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    ce_u_loss(z, torch.tensor([0])).backward()
    q = [0.0] + softmax([1.0, 0.0])
    assert torch.allclose(z.grad[0], torch.tensor(softmax([2.0, 1.0, 0.0])) - torch.tensor(q), atol=1e-6)
    # SatImp: weight w = p^b1 (1-p)^b2 detached, so d/d(log p) = w / N
    lp = [math.log(0.5), math.log(0.25)]
    x = torch.tensor(lp, requires_grad=True)
    satimp_loss(x, 5.0, 1.0).backward()
    assert torch.allclose(x.grad, torch.tensor([0.5**5 * 0.5 / 2, 0.25**5 * 0.75 / 2]))
    # PALU: the mean logit is not detached: d/dz_v = (2/k) (z_j - m) [v = j in top-k] - (2/(kV)) sum_j (z_j - m)
    z = torch.tensor([[4.0, 2.0, 0.0, 3.0]], requires_grad=True)  # mean 2.25
    palu_sensitive_loss(z, torch.tensor([[0.0, 5.0, 1.0, 3.0]]), 2).backward()  # top-2 of ref: indices 1, 3
    d = {1: 2.0 - 2.25, 3: 3.0 - 2.25}  # z_j - mean over the top-k of the reference
    want = [(2 / 2) * d.get(v, 0.0) - (2 / (2 * 4)) * sum(d.values()) for v in range(4)]
    assert torch.allclose(z.grad[0], torch.tensor(want), atol=1e-6)


def test_nll_token_mean_and_sequence_logprobs_by_hand():
    """The shared answer-token likelihoods (every NLL retain term, idk_nll, GA/NPO's sequence sums) on a model
    whose logits are a fixed table by input token (vocabulary of 3). Row 0: prompt [0], answer [1, 2]: p(1) at
    logits (0, 0, 0) = 1/3, p(2) at (0, 0, ln 2) = 2/4. Row 1: prompt [0, 2], answer [2]: p(2) at (ln 3, 0, 0)
    = 1/5. Mean NLL over the 3 answer tokens = (ln 3 + ln 2 + ln 5) / 3; sequence sums -ln 6 and -ln 5."""
    import types

    from obliviate.engine.forward import sequence_logprobs
    from obliviate.methods.base import nll_token_mean

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.log(2)],
                                                          [math.log(3), 0.0, 0.0]]))

        def forward(self, input_ids, attention_mask=None, **kw):
            return types.SimpleNamespace(logits=self.table[input_ids])

    batch = {"input_ids": torch.tensor([[0, 1, 2], [0, 2, 2]]), "attention_mask": torch.ones(2, 3, dtype=torch.long),
             "labels": torch.tensor([[-100, 1, 2], [-100, -100, 2]])}
    assert nll_token_mean(Table(), batch).item() == pytest.approx((math.log(3) + math.log(2) + math.log(5)) / 3,
                                                                  rel=1e-6)
    sums, counts = sequence_logprobs(Table(), batch)
    assert sums.tolist() == pytest.approx([-math.log(6), -math.log(5)], rel=1e-6)
    assert counts.tolist() == [2.0, 1.0]


def test_palu_authors_annotations_load_from_json_strings(tmp_path):
    """The authors' GPT-annotated sets (data/palu/forget*_with_common_words_gpt) keep target_words as a JSON
    string; a hand-built folder in their format loads with its spans."""
    import json

    import datasets

    from obliviate.errors import ObliviateError
    from obliviate.methods.palu import load_palu_annotations, sensitive_mask

    a = "Tamsin was born in Estmoor, a northern city."
    tw = json.dumps([{"word": "Estmoor", "start": 19, "end": 26}, {"word": "northern city", "start": 30, "end": 43}])
    datasets.Dataset.from_dict({"question": ["Where was Tamsin born?"], "answer": [a], "target_words": [tw],
                                "common_words": [[json.dumps({"word": "born", "start": 11, "end": 15})]]}
                               ).save_to_disk(str(tmp_path / "forget01_with_common_words_gpt"))
    items = load_palu_annotations(tmp_path / "forget01_with_common_words_gpt")
    assert items[0].target_words == [{"word": "Estmoor", "start": 19, "end": 26},
                                     {"word": "northern city", "start": 30, "end": 43}]
    (tmp_path / "x.jsonl").write_text(json.dumps({"question": "Q?", "answer": a, "target_words": tw}) + "\n")
    assert load_palu_annotations(tmp_path / "x.jsonl")[0].target_words == items[0].target_words

    class Tok:  # offsets of [Tamsin][ was][ born][ in][ Est][moor][,][ a][ northern][ city][.]
        def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True):
            cuts = [0, 6, 10, 15, 18, 22, 26, 27, 29, 38, 43, 44]
            return {"offset_mapping": list(zip(cuts[:-1], cuts[1:]))}
    assert sensitive_mask(Tok(), a, a, "Q?", tw, -1) == [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert sensitive_mask(Tok(), a, a, "Q?", tw, 1) == [0, 0, 0, 0, 1, 2, 0, 0, 1, 2, 0]
    with pytest.raises(ObliviateError, match="not JSON"):
        sensitive_mask(Tok(), a, a, "Q?", "[{oops", 1)


def test_pdu_dual_warmup_counts_epochs_from_forget_items():
    """lambda stays at lambda_0 until dual_warmup_epochs epochs of forget items are done (open-unlearning's
    DualOptimizationCallback enables the updates at the end of that epoch)."""
    from obliviate.methods.pdu import PDU, PDUConfig

    m = PDU(PDUConfig(alpha=1.0, dual_step_size=1.0, eps=0.0, dual_warmup_epochs=2))
    m.check_forget([None] * 4)  # 4 forget items, batches of 2: 2 steps per epoch
    lams = []
    for step in range(1, 7):
        m._step_items.update({2 * ((step - 1) % 2), 2 * ((step - 1) % 2) + 1})
        m._step_items.update({2 * ((step - 1) % 2)})  # a second loss call on the same batch counts once
        m._retain_seen.append(0.5)
        m.on_step_end(step)
        lams.append(m.lam)
    assert lams == [1.0, 1.0, 1.0, 1.0, 1.5, 2.0]  # steps 1-4 are epochs 1-2; updates from step 5
    state = m.state_dict()
    m2 = PDU(PDUConfig(dual_warmup_epochs=2))
    m2.load_state_dict(state)
    assert m2._items_seen == 12 and m2.lam == 2.0
    assert PDUConfig().dual_warmup_epochs == 5  # open-unlearning's TOFU setting
