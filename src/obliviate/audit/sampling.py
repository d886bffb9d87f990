"""Seeded sampling of ``n`` continuations per prompt from one shared prompt encoding (best-of-n views).

* **The prompt is encoded once.** Prompts are prefilled in left-padded groups (positions continue each
  row's real tokens); a prompt's own KV columns are then copied into the rows of its ``n`` samples.
* **Continuous batching on the generation engine's machinery** (:mod:`obliviate.engine.generation`: its
  preallocated in-place KV buffer, shared cursor and decoding step, hence :mod:`obliviate.engine.decode`'s
  written-out Llama step where the model passes its probe, Hugging Face's decoder forward otherwise). The
  batch holds up to ``batch_rows`` samples. A sample that ends (EOS or ``max_new_tokens``) leaves the batch
  at once: a live row from the end of the batch moves into its place and the next waiting sample takes the
  free row, so a decoding step computes live samples only. A prompt is prefilled when its first sample
  enters the batch; its cache is kept until its last sample has entered.
* **Seeded, and independent of the batch.** Sample ``j`` of prompt ``i`` draws its ``t``-th token with the
  ``t``-th uniform of its own ``torch.Generator`` (seeded from a hash of ``(seed, i, j)``): the same seed
  gives the same samples whatever ``batch_rows``, the order of the rows, or the other prompts (up to
  floating-point summation order in the model).
* Temperature scales the logits; top-p keeps the smallest set of most likely tokens whose probability
  reaches ``top_p`` (the most likely token always stays). A token is drawn by inverse CDF: the first whose
  cumulative probability exceeds the uniform (``torch.multinomial`` costs ~30 ms per call on a 49k vocabulary).
"""

from __future__ import annotations

import collections
import hashlib
from types import SimpleNamespace

import torch

from ..engine.attention import uses_gqa_attention
from ..engine.decode import llama_step
from ..engine.forward import cache_kw, head_logits, out_cache
from ..engine.generation import _fit_context, _Slots, decode_step
from ..errors import ObliviateError

# Rows per decoding step by default; docs/results.md ("Best-of-16 sampling vs greedy generation") has the timings.
BATCH_ROWS = 640
PREFILL_PROMPTS = 32  # prompts per prefill call at most: the prefill's activations stay small


def top_p_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Rows of sampling probabilities: softmax(logits / T), cut to the top-p nucleus and renormalised."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        drop = sp.cumsum(-1) - sp >= top_p  # mass before this token already reaches top_p
        sp[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, si, sp)
        probs /= probs.sum(-1, keepdim=True)
    return probs


def check_sampling(n: int, temperature: float, top_p: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ObliviateError(f"--n-samples {n}: must be an integer >= 1")
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ObliviateError(f"--temperature {temperature}: must be > 0 (greedy answers are the novel_recall_leak view)")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ObliviateError(f"--top-p {top_p}: must be in (0, 1]")


def row_seed(seed: int, i: int, j: int) -> int:
    """The generator seed of sample ``j`` of prompt ``i``: a hash, so that no two (seed, i, j) share a
    stream (an affine ``seed * K + i`` collides across seeds)."""
    return int.from_bytes(hashlib.blake2b(f"obliviate-sample:{seed}:{i}:{j}".encode(), digest_size=8).digest(), "little")


def _pick(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draws: per row of ``cdf`` (cumulative probabilities; a 1-D ``cdf`` serves every ``u``),
    the first token whose cumulative probability exceeds ``u * total``. ``right=True`` never picks a token of
    probability 0 (its cumulative value equals its predecessor's)."""
    x = u.to(cdf.dtype) * cdf[..., -1]
    two = cdf.dim() == 2
    idx = torch.searchsorted(cdf, x.unsqueeze(-1) if two else x, right=True)
    return (idx.squeeze(-1) if two else idx).clamp_max(cdf.shape[-1] - 1)


class _Rows(_Slots):
    """The generation engine's slots, plus each row's uniforms and the number of tokens it has drawn."""

    def __init__(self, model, rows: int, capacity: int, device, steps: int):
        super().__init__(model, rows, capacity, device)
        self.u = torch.zeros((rows, steps), device=device)
        self.drawn = torch.zeros(rows, dtype=torch.long, device=device)

    def move(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """Copy rows ``src`` into rows ``dst`` (the KV columns in use only): cheaper than `keep`'s copy of
        every row when a few rows end per step."""
        c = self.cursor
        for t in self.k + self.v:
            t[dst, :, :c] = t[src, :, :c]
        for t in (self.mask, self.u, self.nxt, self.pos, self.drawn):
            t[dst] = t[src]


@uses_gqa_attention
@torch.no_grad()
def sample_ids(model, prompts: list[list[int]], n: int, eos_id, max_new_tokens: int, *, temperature: float = 1.0,
               top_p: float = 1.0, seed: int = 0, batch_rows: int = BATCH_ROWS) -> list[list[list[int]]]:
    """``n`` sampled continuations (token ids, EOS excluded) of each tokenized prompt: ``out[i][j]``.

    ``eos_id``: one id or a list of ids (a sample ends at the first of them). ``batch_rows``: samples
    decoded together at most (the KV buffer holds that many rows)."""
    check_sampling(n, temperature, top_p)
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ObliviateError(f"batch_rows {batch_rows}: must be an integer >= 1")
    if not prompts:
        return []
    max_new_tokens = _fit_context(model, prompts, max_new_tokens)
    if max_new_tokens < 1:
        return [[[] for _ in range(n)] for _ in prompts]
    eos = frozenset([eos_id] if isinstance(eos_id, int) else (int(x) for x in eos_id))
    device = next(model.parameters()).device
    body = model.get_decoder()
    head = head_logits(model) or model.get_output_embeddings()
    step = llama_step(model)
    ckw = cache_kw(body)
    # Longest prompt first: a prompt placed later then always fits before the shared cursor.
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    waiting = collections.deque((i, j) for i in order for j in range(n))
    rows_n = min(batch_rows, len(waiting))
    # Every sample in the batch from the start: no refill, so no column is ever cut and no slack is needed
    # (the last token drawn is not fed back: prompt + max_new_tokens - 1 columns).
    slack = 0 if rows_n == len(waiting) else 32
    slots = _Rows(model, rows_n, max(len(p) for p in prompts) + max_new_tokens + slack, device, max_new_tokens)
    owner: list[tuple[int, int] | None] = [None] * rows_n
    gen: list[list[int]] = [[] for _ in range(rows_n)]
    out = [[None] * n for _ in prompts]
    pending: dict[int, tuple[list, int, torch.Tensor]] = {}  # prompt -> (its KV columns per layer, length, first-token CDF)
    left = [n] * len(prompts)  # samples of each prompt not yet in the batch
    live = 0  # rows [0, live) hold live samples

    def prefill(group: list[int]) -> None:
        P = max(len(prompts[i]) for i in group)
        ids = torch.zeros((len(group), P), dtype=torch.long)
        mask = torch.zeros((len(group), P), dtype=torch.long)
        pos = torch.zeros((len(group), P), dtype=torch.long)
        for r, i in enumerate(group):
            L = len(prompts[i])
            ids[r, P - L :] = torch.tensor(prompts[i], dtype=torch.long)
            mask[r, P - L :] = 1
            pos[r, P - L :] = torch.arange(L)
        o = body(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device), use_cache=True)
        cdf = top_p_probs(head(o.last_hidden_state[:, -1]), temperature, top_p).cumsum(-1)
        layers = out_cache(o).layers
        for r, i in enumerate(group):
            L = len(prompts[i])
            own = [SimpleNamespace(keys=x.keys[r : r + 1, :, P - L :], values=x.values[r : r + 1, :, P - L :])
                   for x in layers]
            pending[i] = (own, L, cdf[r])

    def take(rows: range) -> list[int]:
        """Record the pending token of these rows; return the rows whose sample has ended."""
        ended = []
        for r, t in zip(rows, slots.nxt[rows.start : rows.stop].tolist()):
            if t not in eos:
                gen[r].append(t)
            if t in eos or len(gen[r]) >= max_new_tokens:
                i, j = owner[r]
                out[i][j] = gen[r]
                ended.append(r)
        return ended

    def drop(ended: list[int]) -> None:
        """Close the holes of ended samples with the live rows past the new end of the batch."""
        nonlocal live
        if not ended:
            return
        gone = set(ended)
        end = live - len(gone)
        holes = [r for r in sorted(gone) if r < end]
        movers = [r for r in range(end, live) if r not in gone]
        if holes:
            slots.move(torch.tensor(movers, device=device), torch.tensor(holes, device=device))
            for s, d in zip(movers, holes):
                owner[d], gen[d] = owner[s], gen[s]
        live = end

    def fill() -> None:
        """Give every free row the next waiting sample (prefilling prompts not yet encoded); draw its first token."""
        nonlocal live
        while waiting and live < rows_n:
            tasks = [waiting.popleft() for _ in range(min(rows_n - live, len(waiting)))]
            new = list(dict.fromkeys(i for i, _ in tasks if i not in pending))
            for a in range(0, len(new), PREFILL_PROMPTS):
                prefill(new[a : a + PREFILL_PROMPTS])
            rows = range(live, live + len(tasks))
            by_prompt: dict[int, list[tuple[int, int]]] = {}
            for r, (i, j) in zip(rows, tasks):
                by_prompt.setdefault(i, []).append((r, j))
                owner[r], gen[r] = (i, j), []
            for i, rj in by_prompt.items():
                own, L, cdf = pending[i]
                rt = torch.tensor([r for r, _ in rj], device=device)
                slots.place(rt, SimpleNamespace(layers=own), torch.ones((1, L), dtype=torch.long, device=device))
                u = torch.stack([torch.rand(max_new_tokens, generator=torch.Generator().manual_seed(row_seed(seed, i, j)))
                                 for _, j in rj]).to(device)
                slots.u[rt] = u
                slots.nxt[rt] = _pick(cdf, u[:, 0])
                slots.pos[rt] = L
                slots.drawn[rt] = 1
                left[i] -= len(rj)
                if not left[i]:
                    del pending[i]
            live = rows.stop
            drop(take(rows))

    fill()
    while live:
        live_t = torch.arange(live, device=device)
        if slots.cursor >= slots.capacity:
            slots.compact(live_t)
        h = decode_step(body, ckw, step, slots, live, slots.first_used(live_t))
        cdf = top_p_probs(head(h), temperature, top_p).cumsum(-1)
        del h
        u = slots.u[:live].gather(1, slots.drawn[:live, None]).squeeze(1)
        slots.nxt[:live] = _pick(cdf, u)
        slots.drawn[:live] += 1
        del cdf
        drop(take(range(live)))
        fill()
    return out  # type: ignore[return-value]


def sample(model, tokenizer, prompts: list[str], n: int, max_new_tokens: int = 200, **kw) -> list[list[str]]:
    """``n`` sampled continuations of each already-formatted prompt text (special tokens included)."""
    encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    ids = sample_ids(model, encoded, n, tokenizer.eos_token_id, max_new_tokens, **kw)
    return [[tokenizer.decode(x, skip_special_tokens=True).strip() for x in rows] for rows in ids]
