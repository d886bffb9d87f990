"""Scoring engine: the only code that runs a model for teacher-forced metrics.

For each *request* — one prompt and the answer variants scored against it (answer, paraphrased answer,
perturbed answers) — it returns, per answer: summed and average negative log-likelihood over the answer
tokens (EOS included), the token count, per-token log-probs, per-token Min-K%++ z-values, per-token
argmax hits and the argmax tokens themselves (the greedy draft used by the generation engine).

How it stays fast and small:
* **The prompt is encoded once per question, in one row with its answers** (:func:`_score_packed`): a row
  is the prompt followed by all its answer variants, and a block mask lets each answer attend to the
  prompt and to its own earlier tokens only, with positions continuing the prompt's, so each answer is
  scored exactly as after its prompt alone. One forward pass per batch, no KV-cache copies, and rows are
  padded to the longest row of their batch rather than every answer to the longest answer (46 % of the
  answer tokens on TOFU were padding that way). Models where a 4D mask would be wrong (sliding windows,
  flash attention) or whose probe disagrees use the padded path (:func:`_score_padded`): prompts
  right-padded with the KV cache on, the cache rows repeated for the answer variants, the answers run
  after it.
* Grouped-query heads read their K/V without copies (:mod:`.attention`; bitwise the same numbers).
* **Logits only where they are scored.** The LM head is applied to the hidden states that predict an
  answer token, in chunks of ``chunk_tokens`` rows, so no batch x length x vocab tensor is ever built;
  Min-K%++'s mean and variance of log p under the model's own distribution are reduced chunk by chunk.
* The prefix shared by every prompt (the chat template's system turn) is encoded once per call.
* Rows are sorted by length (the padded path: requests by prompt length) and batched by a token budget.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ObliviateError
from ..runtime.progress import progress_bar
from .attention import NAME, uses_gqa_attention
from .forward import answer_logits, cache_kw, head_logits, out_cache


@dataclass
class ScoreRequest:
    prompt_ids: list[int]
    answers: list[list[int]]  # answer token ids, EOS included (Formatter.answer_ids)


@dataclass
class AnswerScore:
    nll: float
    avg_nll: float
    num_tokens: int
    token_logprobs: list[float] = field(default_factory=list)
    token_minkpp: list[float] = field(default_factory=list)
    argmax_hits: list[int] = field(default_factory=list)
    argmax_ids: list[int] = field(default_factory=list)  # the model's top token at each answer position


def _token_stats(head, hidden: torch.Tensor, targets: torch.Tensor, chunk_tokens: int, minkpp: bool,
                 ctx: torch.Tensor | None = None):
    """log p(target), Min-K%++ z and argmax token per target, from the hidden states ``hidden`` ([C, d]),
    chunked over C. ``ctx[i]`` is the row of ``hidden`` that predicts ``targets[i]`` (default: row i): a row
    read by several targets (a prefix shared by several answers) has its distribution computed once.

    Two vocabulary-sized buffers per chunk at most: the logits, turned into log-probs in place, and
    p log p for Min-K%++."""
    n = targets.numel()
    if ctx is None:
        ctx = torch.arange(n, device=targets.device)
    order = torch.argsort(ctx, stable=True)  # targets grouped by the chunk their row falls in
    cs, ts = ctx[order], targets[order]
    lp_s = torch.empty(n, dtype=torch.float32, device=targets.device)
    z_s = torch.empty_like(lp_s) if minkpp else None
    tops = []
    for s in range(0, hidden.size(0), chunk_tokens):
        logp = head(hidden[s : s + chunk_tokens]).float()
        logp -= torch.logsumexp(logp, dim=-1, keepdim=True)  # log-softmax in place
        a, b = torch.searchsorted(cs, torch.tensor([s, s + chunk_tokens], device=cs.device)).tolist()
        c, t = cs[a:b] - s, ts[a:b]
        lp = logp[c, t]
        lp_s[a:b] = lp
        tops.append(logp.argmax(-1))
        if minkpp:
            p = logp.exp()
            p.mul_(logp)  # p log p, in place
            mu = p.sum(-1)
            var = (p.mul_(logp)).sum(-1) - mu.square()  # sum p (log p)^2 - mu^2
            z_s[a:b] = (lp - mu[c]) / var[c].clamp_min(1e-12).sqrt()
            del p
        del logp
    lp = torch.empty_like(lp_s)
    lp[order] = lp_s
    z = None
    if minkpp:
        z = torch.empty_like(z_s)
        z[order] = z_s
    return lp, z, torch.cat(tops)[ctx]


def _answer_scores(head, hidden, targets, lens, chunk_tokens, minkpp, ctx=None) -> list[AnswerScore]:
    """One :class:`AnswerScore` per answer from the hidden states predicting its tokens (answers of
    ``lens`` tokens, one after the other in ``targets``; ``ctx`` as in :func:`_token_stats`)."""
    lp, z, top = _token_stats(head, hidden, targets, chunk_tokens, minkpp, ctx)
    hit = (top == targets).cpu()
    lp, top = lp.cpu(), top.cpu()
    z = z.cpu() if z is not None else None
    out, s = [], 0
    for L in lens:
        tl = lp[s : s + L]
        nll = -tl.sum().item()
        out.append(AnswerScore(
            nll=nll, avg_nll=nll / L, num_tokens=L, token_logprobs=tl.tolist(),
            token_minkpp=z[s : s + L].tolist() if z is not None else [],
            argmax_hits=hit[s : s + L].int().tolist(), argmax_ids=top[s : s + L].tolist(),
        ))
        s += L
    return out


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    """Longest common prefix, leaving every sequence at least one token of its own."""
    if len(seqs) < 2:
        return []
    n = min(len(x) for x in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        t = first[i]
        if any(x[i] != t for x in seqs):
            return first[:i]
    return first[: max(n, 0)]


def _repeat_cache(cache, idx: torch.Tensor):
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(idx)
        return cache
    raise RuntimeError("this model's KV cache cannot be re-indexed; use score(..., share_prompt=False)")


@uses_gqa_attention  # grouped-query heads read without K/V copies (bitwise the same numbers)
@torch.no_grad()
def score(
    model,
    requests: list[ScoreRequest],
    batch_tokens: int = 2048,
    chunk_tokens: int = 256,
    minkpp: bool = True,
    progress: bool = False,
    desc: str = "score",
    share_prefix: bool = True,
    pack: bool | None = None,
) -> list[list[AnswerScore]]:
    """Score every answer of every request; results in the caller's order.

    ``pack`` (default: when :func:`packing_ok` says the model takes it) puts a prompt and its answers in
    one row (:func:`_score_packed`); ``pack=False`` is the padded two-pass path (:func:`_score_padded`)."""
    head = head_logits(model)  # the LM head plus the model's own post-head step (soft-capping, scaling)
    if head is None:
        raise ObliviateError(
            f"cannot score with {type(model).__name__}: its logits are not its decoder's hidden states through "
            "its LM head (plus a soft-cap or scale we know), so there is a post-head step obliviate does not "
            "reproduce; please report the architecture")
    if pack is None:
        pack = packing_ok(model)
    fn = _score_packed if pack else _score_padded
    return fn(model, head, requests, batch_tokens, chunk_tokens, minkpp, progress, desc, share_prefix)


def _score_padded(model, head, requests, batch_tokens, chunk_tokens, minkpp, progress, desc, share_prefix):
    """Prompts right-padded through the decoder, the KV cache repeated per answer row, the answers
    right-padded after it (every row padded to the batch's longest answer)."""
    device = next(model.parameters()).device
    body = model.get_decoder()
    ckw = cache_kw(body)
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids))
    results: list[list[AnswerScore] | None] = [None] * len(requests)
    bar = progress_bar(total=len(requests), desc=desc, enabled=progress, unit="requests")  # a line off a terminal

    # Greedy batching under a token budget: the KV cache of a batch holds, for every answer row, its
    # prompt and its answer, so that is what the budget counts.
    batches, cur, cur_tokens = [], [], 0
    for i in order:
        r = requests[i]
        cost = sum(len(r.prompt_ids) + len(a) for a in r.answers)
        if cur and cur_tokens + cost > batch_tokens:
            batches.append(cur)
            cur, cur_tokens = [], 0
        cur.append(i)
        cur_tokens += cost
    if cur:
        batches.append(cur)

    # The prefix shared by every prompt (the chat template's system turn and user header) is encoded
    # once for the whole call; each batch starts from a copy of its KV cache.
    pre = _common_prefix([r.prompt_ids for r in requests]) if share_prefix else []
    prefix_cache = None
    if pre:
        prefix_cache = out_cache(body(input_ids=torch.tensor([pre], device=device), use_cache=True))
    L0 = len(pre)

    for b in batches:
        reqs = [requests[i] for i in b]
        suffixes = [r.prompt_ids[L0:] for r in reqs]
        P = max(len(x) for x in suffixes)
        plen = torch.tensor([len(x) for x in suffixes])
        p_ids = torch.zeros((len(reqs), P), dtype=torch.long)
        p_mask = torch.zeros((len(reqs), L0 + P), dtype=torch.long)
        p_mask[:, :L0] = 1
        for k, x in enumerate(suffixes):
            p_ids[k, : len(x)] = torch.tensor(x)
            p_mask[k, L0 : L0 + len(x)] = 1
        kw = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            kw = {ckw: _repeat_cache(cache, torch.zeros(len(reqs), dtype=torch.long, device=device)),
                  "position_ids": (L0 + torch.arange(P)).unsqueeze(0).expand(len(reqs), P).to(device)}
        out = body(input_ids=p_ids.to(device), attention_mask=p_mask.to(device), use_cache=True, **kw)
        cache = out_cache(out)
        h_last = out.last_hidden_state[torch.arange(len(reqs)), (plen - 1).to(device)]  # predicts answer token 1
        plen = plen + L0

        row_req, row_ans = [], []
        for k, r in enumerate(reqs):
            for j in range(len(r.answers)):
                row_req.append(k)
                row_ans.append(r.answers[j])
        A = max(len(a) for a in row_ans)
        R = len(row_ans)
        a_ids = torch.zeros((R, A), dtype=torch.long)
        a_mask = torch.zeros((R, A), dtype=torch.long)
        for k, a in enumerate(row_ans):
            a_ids[k, : len(a)] = torch.tensor(a)
            a_mask[k, : len(a)] = 1
        idx = torch.tensor(row_req, device=device)
        cache = _repeat_cache(cache, idx)
        full_mask = torch.cat([p_mask[row_req], a_mask], dim=1).to(device)
        pos = (plen[row_req].unsqueeze(1) + torch.arange(A).unsqueeze(0)).to(device)
        h_ans = body(input_ids=a_ids.to(device), attention_mask=full_mask, position_ids=pos,
                     use_cache=True, **{ckw: cache}).last_hidden_state
        del cache

        # Hidden state predicting answer token j: h_last for j = 0, the answer's own position j-1 after.
        lens = [len(a) for a in row_ans]
        pieces = []
        for k, L in enumerate(lens):
            pieces.append(h_last[row_req[k]].unsqueeze(0))
            if L > 1:
                pieces.append(h_ans[k, : L - 1])
        hidden = torch.cat(pieces)
        targets = torch.cat([torch.tensor(a) for a in row_ans]).to(device)
        per_req: dict[int, list[AnswerScore]] = {k: [] for k in range(len(reqs))}
        for k, sc in enumerate(_answer_scores(head, hidden, targets, lens, chunk_tokens, minkpp)):
            per_req[row_req[k]].append(sc)
        for k, i in enumerate(b):
            results[i] = per_req[k]
        bar.update(len(b))
    bar.close()
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------
# Packed rows: a prompt and its answers in one sequence

_PACK_OK: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_MASK_STYLES = {"sdpa": "bool", NAME: "bool", "eager": "additive"}
ROW_TOKENS = 512  # a row longer than this (prompt + answers) is split: attention over a row is quadratic


def _mask_style(model) -> str | None:
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    sliding = getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True)
    if kinds != {"full_attention"} or sliding:  # a custom mask would drop the sliding window
        return None
    return _MASK_STYLES.get(getattr(model.config, "_attn_implementation", None))


def packing_ok(model) -> bool:
    """Whether this model scores packed rows exactly like padded ones: full attention everywhere, an
    attention implementation that takes a 4D mask (sdpa, eager), and a probe (two requests of two answers
    each, with and without the shared prefix) that agrees with :func:`_score_padded` to 1e-4. Checked once
    per model object and attention implementation; anything else keeps the padded path."""
    impl = getattr(model.config, "_attn_implementation", None)  # the answer holds for this implementation
    known = _PACK_OK.get(model)
    got = known.get(impl) if known else None
    if got is None:
        got = False
        if _mask_style(model) is not None:
            vocab = model.get_output_embeddings().weight.shape[0]
            t = [(7 * i + 3) % max(vocab, 1) for i in range(12)]
            reqs = [ScoreRequest(t[:4], [t[4:7], t[7:9]]), ScoreRequest(t[:3] + t[9:11], [t[2:6], t[11:12]])]
            head = head_logits(model)
            modes = [(m, m.training) for m in model.modules()]
            try:
                model.eval()
                with torch.no_grad():
                    got = all(
                        max(abs(x - y) for a, b in zip(
                            _score_packed(model, head, reqs, 2048, 256, False, False, "", share),
                            _score_padded(model, head, reqs, 2048, 256, False, False, "", share))
                            for u, v in zip(a, b) for x, y in zip(u.token_logprobs, v.token_logprobs)) <= 1e-4
                        for share in (True, False))
            except Exception:
                got = False
            finally:
                for m, flag in modes:
                    m.train(flag)
        try:
            _PACK_OK.setdefault(model, {})[impl] = got
        except TypeError:
            pass
    return got


def answer_tree(answers: list[list[int]]):
    """The input tokens of a prompt's answers as a prefix tree: ``(tokens, parent, depth, contexts)``.

    Node k feeds ``tokens[k]`` at answer position ``depth[k]`` after ``parent[k]`` (-1: right after the
    prompt). A prefix shared by several answers (TOFU's perturbed answers often start alike) is one path of
    nodes, and an answer's last token (EOS) is no node at all: its hidden state predicts nothing.
    ``contexts[a][t]`` is the node whose hidden state predicts token t of answer a (-1: the prompt's last
    token)."""
    index: dict[tuple[int, int], int] = {}
    tokens: list[int] = []
    parent: list[int] = []
    depth: list[int] = []
    contexts: list[list[int]] = []
    for a in answers:
        node, ctx = -1, []
        for t, tok in enumerate(a):
            ctx.append(node)
            if t == len(a) - 1:
                break
            nxt = index.get((node, tok))
            if nxt is None:
                nxt = index[(node, tok)] = len(tokens)
                tokens.append(tok)
                parent.append(node)
                depth.append(t)
            node = nxt
        contexts.append(ctx)
    return tokens, parent, depth, contexts


def _rows(requests, L0: int, row_tokens: int):
    """Rows ``(request index, [answer indices])``: each request's answers after its prompt suffix, split
    into several rows only where a row (the suffix and the answers' tree) would pass ``row_tokens`` (then
    the suffix is encoded again)."""
    rows = []
    for i, r in enumerate(requests):
        n_pre = len(r.prompt_ids) - L0
        cur: list[int] = []
        for j, a in enumerate(r.answers):
            if cur and n_pre + len(answer_tree([r.answers[x] for x in cur + [j]])[0]) > row_tokens:
                rows.append((i, cur))
                cur = []
            cur.append(j)
        rows.append((i, cur))
    return rows


def _score_packed(model, head, requests, batch_tokens, chunk_tokens, minkpp, progress, desc, share_prefix,
                  row_tokens: int = ROW_TOKENS):
    """Each row holds a prompt (after the shared prefix) followed by its answers' prefix tree
    (:func:`answer_tree`), one forward pass per batch.

    A mask lets the prompt tokens see the prefix and the earlier prompt tokens, and each tree node the
    prefix, its prompt, its ancestors and itself, never another branch; a node's position continues its
    prompt's by its depth. So every answer is scored exactly as after its prompt alone, but the prompt is
    encoded once for all its variants with no KV copy, a prefix shared by several answers once, and each
    distribution over the vocabulary once however many answers read it; a batch pads rows to its longest
    *row* instead of every answer to the longest answer (46 % of the padded path's answer tokens on TOFU
    were padding)."""
    device = next(model.parameters()).device
    body = model.get_decoder()
    ckw = cache_kw(body)
    style = _mask_style(model)
    dtype = next(model.parameters()).dtype
    results: list[list[AnswerScore | None]] = [[None] * len(r.answers) for r in requests]
    bar = progress_bar(total=len(requests), desc=desc, enabled=progress, unit="requests")  # a line off a terminal

    pre = _common_prefix([r.prompt_ids for r in requests]) if share_prefix else []
    L0 = len(pre)
    prefix_cache = out_cache(body(input_ids=torch.tensor([pre], device=device), use_cache=True)) if pre else None
    rows = _rows(requests, L0, row_tokens)
    trees = [answer_tree([requests[i].answers[j] for j in js]) for i, js in rows]
    length = [len(requests[i].prompt_ids) - L0 + len(t[0]) for (i, _), t in zip(rows, trees)]
    order = sorted(range(len(rows)), key=lambda k: (-length[k], rows[k][0]))
    batches, cur = [], []
    for k in order:  # longest first: a batch costs (rows) x (its first row's length) + the prefix
        if cur and (len(cur) + 1) * (length[cur[0]] + L0) > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(k)
    if cur:
        batches.append(cur)
    done_rows = [0] * len(requests)
    n_rows = [0] * len(requests)
    for i, _ in rows:
        n_rows[i] += 1

    for b in batches:
        B, N = len(b), length[b[0]]
        ids = torch.zeros((B, N), dtype=torch.long)
        pos = torch.zeros((B, N), dtype=torch.long)
        allowed = np.zeros((B, N, N), dtype=bool)
        allowed[:, np.arange(N), np.arange(N)] = True  # padded queries see only themselves
        sel, ctx, targets, lens, owners = [], [], [], [], []
        for r, k in enumerate(b):
            i, js = rows[k]
            tokens, parent, depth, contexts = trees[k]
            p = requests[i].prompt_ids[L0:]
            n, m = len(p), len(tokens)
            ids[r, :n] = torch.tensor(p)
            ids[r, n : n + m] = torch.tensor(tokens, dtype=torch.long)
            pos[r, :n] = L0 + torch.arange(n)
            pos[r, n : n + m] = L0 + n + torch.tensor(depth, dtype=torch.long)
            allowed[r, :n, :n] = np.tri(n, dtype=bool)
            for c in range(m):  # a node sees what its parent sees (the prompt: its last token's row) and itself
                allowed[r, n + c] = allowed[r, n + parent[c] if parent[c] >= 0 else n - 1]
                allowed[r, n + c, n + c] = True
            # the hidden states that predict answer tokens: the prompt's last token's and every node's
            base = len(sel)
            sel.extend(r * N + n - 1 + c for c in range(m + 1))
            for j, a, cx in zip(js, (requests[i].answers[j] for j in js), contexts):
                ctx.extend(base + 1 + c for c in cx)
                targets.extend(a)
                lens.append(len(a))
                owners.append((i, j))
        mask = torch.cat([torch.ones((B, N, L0), dtype=torch.bool), torch.from_numpy(allowed)], dim=2).unsqueeze(1)
        if style == "additive":
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, torch.finfo(dtype).min)
        kw = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            kw = {ckw: _repeat_cache(cache, torch.zeros(B, dtype=torch.long, device=device)), "use_cache": True}
        else:
            kw = {"use_cache": False}
        h = body(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                 **kw).last_hidden_state
        kw.clear()
        hidden = h.reshape(B * N, -1)[torch.tensor(sel, device=device)]
        del h
        scores = _answer_scores(head, hidden, torch.tensor(targets, dtype=torch.long, device=device), lens,
                                chunk_tokens, minkpp, ctx=torch.tensor(ctx, dtype=torch.long, device=device))
        for (i, j), sc in zip(owners, scores):
            results[i][j] = sc
        for k in b:
            i = rows[k][0]
            done_rows[i] += 1
            if done_rows[i] == n_rows[i]:
                bar.update(1)
    bar.close()
    return results  # type: ignore[return-value]


def gradient_norm(model, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """L2 norm of the gradient of the average answer NLL w.r.t. all trainable parameters (GradNorm MIA).

    Each parameter's squared gradient norm is taken as soon as its gradient is complete and the gradient
    is dropped at once, so no full set of gradients (the size of the model) is ever held in memory."""
    if not answer_ids:
        raise ValueError("gradient_norm: the answer has no tokens; the average answer NLL (and its gradient) "
                         "is undefined")
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + answer_ids], device=device)
    labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids], device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    params = [p for p in model.parameters() if p.requires_grad]
    total = torch.zeros((), dtype=torch.float64, device=device)

    def take(p):
        nonlocal total
        total += p.grad.double().square().sum()
        p.grad = None

    model.zero_grad(set_to_none=True)
    handles = [p.register_post_accumulate_grad_hook(take) for p in params]
    try:
        with torch.enable_grad():
            logits, targets, _, _ = answer_logits(model, batch)
            torch.nn.functional.cross_entropy(logits, targets).backward()
    finally:
        for h in handles:
            h.remove()
    return total.sqrt().item()
