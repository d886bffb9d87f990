"""Scoring and generation under a protocol: answers tokenized by the protocol's formatter (jointly with their
prompt where the reference does so), and open-unlearning's pad=eos attention mask when asked for.

* :func:`score_answers` groups the answer variants of a question by the prompt tokens the model actually sees
  (with joint tokenization a tokenizer may merge across the prompt/answer boundary, so two answers of one
  question can have different prompt tokens) and hands the groups to the scoring engine; results come back in
  the caller's order.
* ``pad_mask="eos"`` (a bug-compatibility switch, never a default): the attention mask is
  ``input_ids != eos_id`` as in open-unlearning's collator (src/data/collators.py:49 with pad = EOS), so
  every EOS-valued token inside a sequence is masked as a key. The fast engine builds its masks from lengths,
  so this path runs each question's answers through a plain full forward pass instead
  (:func:`score_eos_masked`), and greedy answers through ``model.generate`` one prompt at a time with the same
  mask (:func:`generate_eos_masked`).
"""

from __future__ import annotations

import torch

from ..data.formatting import Encoded, collate
from .scoring import AnswerScore, ScoreRequest, score


def score_answers(model, fmt, jobs: list[tuple[str, list[str]]], *, pad_mask: str = "correct",
                  progress: bool = False, desc: str = "score", minkpp: bool = True) -> list[list[AnswerScore]]:
    """``jobs[i] = (question, answers)``; returns ``out[i][j]``, the score of answer j of job i (``minkpp=False``
    skips the Min-K%++ statistics on the fast path)."""
    requests, back = [], []
    for j, (question, answers) in enumerate(jobs):
        groups: dict[tuple, list[tuple[int, list[int]]]] = {}
        for pos, a in enumerate(answers):
            p, ids = fmt.pair_ids(question, a)
            groups.setdefault(tuple(p), []).append((pos, ids))
        for p, members in groups.items():
            requests.append(ScoreRequest(list(p), [ids for _, ids in members]))
            back.append((j, [pos for pos, _ in members]))
    if pad_mask == "eos":
        scores = score_eos_masked(model, requests, fmt.tokenizer.eos_token_id)
    else:
        scores = score(model, requests, progress=progress, desc=desc, minkpp=minkpp)
    out: list[list] = [[None] * len(answers) for _, answers in jobs]
    for (j, positions), sc in zip(back, scores):
        for pos, s in zip(positions, sc):
            out[j][pos] = s
    return out


@torch.no_grad()
def score_eos_masked(model, requests: list[ScoreRequest], eos_id: int) -> list[list[AnswerScore]]:
    """The scoring engine's per-answer statistics, with open-unlearning's ``input_ids != eos`` mask: one
    right-padded batch per request (its answer variants), full forward pass, log-softmax over the vocabulary."""
    device = next(model.parameters()).device
    results = []
    for r in requests:
        encs = [Encoded(r.prompt_ids + a, [-100] * len(r.prompt_ids) + a, len(r.prompt_ids)) for a in r.answers]
        batch = collate(encs, eos_id, pad_mask="eos", eos_id=eos_id)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                       use_cache=False).logits.float()
        P = len(r.prompt_ids)
        out = []
        for k, a in enumerate(r.answers):
            logp = torch.log_softmax(logits[k, P - 1 : P - 1 + len(a)], dim=-1)
            t = torch.tensor(a, device=device)
            lp = logp.gather(-1, t.unsqueeze(-1)).squeeze(-1)
            p = logp.exp()
            mu = (p * logp).sum(-1)
            var = (p * logp.square()).sum(-1) - mu.square()
            z = (lp - mu) / var.clamp_min(1e-12).sqrt()
            top = logp.argmax(-1)
            nll = -lp.sum().item()
            out.append(AnswerScore(nll=nll, avg_nll=nll / len(a), num_tokens=len(a), token_logprobs=lp.cpu().tolist(),
                                   token_minkpp=z.cpu().tolist(), argmax_hits=(top == t).int().cpu().tolist(),
                                   argmax_ids=top.cpu().tolist()))
        results.append(out)
    return results


@torch.no_grad()
def generate_eos_masked(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, stop_ids: list[int],
                        max_total_length: int | None = None) -> list[str]:
    """Greedy answers with open-unlearning's prompt mask (``input_ids != eos``), one prompt at a time (no
    padding, so the mask differs from the correct one only at EOS-valued prompt tokens)."""
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    texts = []
    for ids in prompt_ids:
        budget = max_new_tokens if max_total_length is None else min(max_new_tokens, max_total_length - len(ids))
        if budget < 1:
            texts.append("")
            continue
        x = torch.tensor([ids], device=device)
        out = model.generate(input_ids=x, attention_mask=(x != eos).long(), max_new_tokens=budget, do_sample=False,
                             eos_token_id=stop_ids, pad_token_id=eos, top_p=None, temperature=None, top_k=None)
        new = out[0, len(ids):].tolist()
        cut = next((j for j, t in enumerate(new) if t in stop_ids), len(new))
        texts.append(tokenizer.decode(new[:cut], skip_special_tokens=True).strip())
    return texts
