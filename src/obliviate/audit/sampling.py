"""Seeded sampling of ``n`` continuations per prompt from one shared prompt encoding (best-of-n views).

* **The prompt is encoded once, and its keys and values are kept once.** The prompts' common prefix (the
  chat template's system turn) is encoded once; prompts are then prefilled in left-padded groups of
  :data:`PREFILL_PROMPTS`. On a plain Llama decoder (:mod:`obliviate.engine.decode`'s written-out step) a
  prompt's columns go to a prompt slot of :class:`.SharedPromptKV`, which the rows of its samples attend to
  (each row holds only the tokens it has generated); the slot is freed when the prompt's last sample has
  ended. Other models decode on the generation engine's KV buffer with Hugging Face's decoder forward, a
  copy of the prompt's columns in each of its rows (:class:`_WindowKV`).
* **Continuous batching.** The batch holds up to ``batch_rows`` samples (by default as many as
  ``memory_gb`` holds, :func:`rows_for_memory`). A sample that ends (EOS or ``max_new_tokens``) leaves the
  batch at once: a live row from the end of the batch moves into its place and the next waiting sample takes
  the free row, so a decoding step computes live samples only. A prompt is prefilled when its first sample
  enters the batch.
* **Seeded, and independent of the batch.** Sample ``j`` of prompt ``i`` draws its ``t``-th token with the
  ``t``-th uniform of its own ``torch.Generator`` (seeded from a hash of ``(seed, i, j)``): the same seed
  gives the same samples whatever ``batch_rows``, the order of the rows, or the other prompts (up to
  floating-point summation order in the model).
* Temperature scales the logits; top-p keeps the smallest set of most likely tokens whose probability
  reaches ``top_p`` (the most likely token always stays). A token is drawn by inverse CDF: the first whose
  cumulative probability exceeds the uniform (``torch.multinomial`` costs ~30 ms per call on a 49k vocabulary).
* **The draw works in place, in two levels.** The head writes a step's logits into one buffer kept for the
  whole run; ``exp((logits - max) / T)`` overwrites them (unnormalised weights: the uniform is scaled by
  the row's total instead). The uniform picks a block of :func:`block_size` tokens by the running sum of
  block masses, then a token by the running sum inside that block: one pass of sums over the vocabulary
  instead of a full-length cumulative sum, and no 49k-wide temporaries per step (each one a fresh
  allocation that the kernel zero-fills page by page at 640 rows). The same draw as a full inverse CDF up to
  the summation order of the floating-point sums.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
from types import SimpleNamespace

import torch

from ..engine.attention import uses_gqa_attention
from ..engine.decode import llama_step
from ..engine.forward import cache_kw, head_logits, kv_layout, out_cache
from ..engine.generation import _fit_context, _Slots, decode_step, prefill_suffixes, stop_token_ids
from ..engine.scoring import _common_prefix
from ..engine.shared_prompt import SharedPromptKV
from ..errors import ObliviateError

# Rows per decoding step by default; docs/results.md ("Best-of-16 sampling vs greedy generation") has the timings.
BATCH_ROWS = 640  # the most rows decoded together (fewer where MEMORY_GB does not hold them)
MEMORY_GB = 2.0  # default budget of the rows' keys, values and logits (ViewConfig.sample_memory_gb)
TOP_P_ROWS = 64  # rows sorted together for top-p
PREFILL_PROMPTS = 8  # prompts per prefill call at most: the prefill's activations stay small (as greedy's)


def weights_(x: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """In place: rows of logits -> unnormalised sampling weights ``exp((x - max) / T)``, cut to the top-p
    nucleus (proportional to softmax(x / T) restricted to the nucleus)."""
    x.sub_(x.amax(-1, keepdim=True))
    if temperature != 1.0:
        x.div_(temperature)
    x.exp_()
    if top_p < 1.0:
        for a in range(0, x.shape[0], TOP_P_ROWS):  # the sort's temporaries (~20 B a token) for a few rows at a time
            c = x[a : a + TOP_P_ROWS]
            sp, si = c.sort(dim=-1, descending=True)
            drop = sp.cumsum(-1) - sp >= top_p * sp.sum(-1, keepdim=True)  # mass before this token already reaches top_p
            sp[drop] = 0.0
            c.zero_().scatter_(-1, si, sp)
    return x


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
    """Inverse-CDF draws: per row of ``cdf`` (cumulative weights), the first token whose cumulative weight
    exceeds ``u * total``. ``right=True`` never picks a token of weight 0 (its cumulative value equals its
    predecessor's); where rounding puts ``u * total`` at or past the last cumulative value, the last token
    of positive weight is drawn."""
    last = cdf[:, -1:].contiguous()
    idx = torch.searchsorted(cdf, u.to(cdf.dtype).unsqueeze(-1) * last, right=True)
    return torch.minimum(idx, torch.searchsorted(cdf, last, right=False)).squeeze(-1)


def block_size(vocab: int) -> int | None:
    """The block of the two-level draw: the largest divisor of ``vocab`` in [64, 1024] (1,024 for SmolLM2's
    49,152: 48 blocks), or None (a full cumulative sum) when there is none."""
    return next((b for b in range(min(1024, vocab), 63, -1) if vocab % b == 0), None)


def draw(w: torch.Tensor, u: torch.Tensor, blk: int | None = None) -> torch.Tensor:
    """Per row of unnormalised weights ``w [R, V]``, the token whose inverse CDF holds ``u [R]``: the block
    whose running block mass first exceeds ``u * total``, then the token inside it whose running weight
    first exceeds what is left (:func:`_pick` twice, its guards included). ``blk`` (dividing V) is for tests."""
    R, V = w.shape
    blk = blk or block_size(V)
    if blk is None:
        return _pick(w.cumsum(-1), u)
    wb = w.reshape(R, V // blk, blk)
    bc = wb.sum(-1).cumsum(-1)
    x = u.to(w.dtype) * bc[:, -1]
    b = _pick(bc, u)
    before = torch.where(b > 0, bc.gather(1, (b - 1).clamp_min(0)[:, None]).squeeze(1), torch.zeros((), dtype=w.dtype))
    inside = wb[torch.arange(R, device=w.device), b].cumsum(-1)
    rest = ((x - before) / inside[:, -1]).clamp(0, 1)
    return b * blk + _pick(inside, rest)


class _Head:
    """The LM head writing a step's logits into one buffer kept for the run (``torch.mm`` with ``out=``, the
    kernel ``F.linear`` runs), when the head is a bias-free float32 linear layer with nothing after it;
    otherwise the model's own head on fresh tensors."""

    def __init__(self, model, rows: int):
        head = head_logits(model)
        if head is None:  # greedy decoding may take the bare head (argmax survives a monotone soft-cap); sampling may not
            raise ObliviateError(
                f"sampling: the logits of {type(model).__name__} are not its LM head on the decoder's hidden states "
                "(an unknown step after the head), so best-of-n cannot draw from them")
        self.fn = head
        w = getattr(head, "weight", None)
        plain = (isinstance(head, torch.nn.Linear) and head.bias is None and w is not None and w.dtype == torch.float32)
        self.w = w if plain else None
        self.buf = torch.empty((rows, w.shape[0]), dtype=w.dtype, device=w.device) if plain else None

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if self.w is not None and h.dtype == self.w.dtype and h.shape[0] <= self.buf.shape[0]:
            return torch.mm(h, self.w.t(), out=self.buf[: h.shape[0]])
        return self.fn(h).float()


class _WindowKV:
    """The generation engine's KV buffer (every row holds a copy of its prompt's columns, a shared cursor)
    decoded by the Hugging Face decoder forward: the path for models without the written-out step, where
    :class:`.SharedPromptKV` cannot run. Same interface as :class:`.SharedPromptKV`."""

    def __init__(self, model, rows: int, capacity: int, device):
        self.slots = _Slots(model, rows, capacity, device)
        self.body = model.get_decoder()
        self.ckw = cache_kw(self.body)
        self.device = device
        self._prompts: dict[int, list] = {}  # handle -> [KV columns per layer, length, samples not yet entered]
        self._handles = itertools.count()

    def add_prompt(self, layers, length: int, samples: int) -> int:
        h = next(self._handles)
        self._prompts[h] = [layers, length, samples]
        return h

    def enter(self, rows: list[int], handle: int, length: int) -> None:
        entry = self._prompts[handle]
        rt = torch.tensor(rows, device=self.device)
        self.slots.place(rt, SimpleNamespace(layers=entry[0]), torch.ones((1, length), dtype=torch.long, device=self.device))
        self.slots.pos[rt] = length
        entry[2] -= len(rows)
        if not entry[2]:
            del self._prompts[handle]  # every sample has its copy

    def leave(self, rows: list[int]) -> None:
        pass

    def move(self, src: torch.Tensor, dst: torch.Tensor, live: int) -> None:
        c = self.slots.cursor  # the columns in use only: cheaper than `keep`'s copy of every row
        for t in self.slots.k + self.slots.v:
            t[dst, :, :c] = t[src, :, :c]
        for t in (self.slots.mask, self.slots.pos):
            t[dst] = t[src]

    def step(self, ids: torch.Tensor, rows: int) -> torch.Tensor:
        slots = self.slots
        live_t = torch.arange(rows, device=self.device)
        if slots.cursor >= slots.capacity:
            slots.compact(live_t)
        slots.nxt[:rows] = ids
        return decode_step(self.body, self.ckw, None, slots, rows, slots.first_used(live_t))


class _SharedKV:
    """:class:`.SharedPromptKV` decoded by the written-out step."""

    def __init__(self, step, cache: SharedPromptKV):
        self.run, self.cache = step.run, cache
        self.add_prompt, self.enter, self.leave, self.move = cache.add_prompt, cache.enter, cache.leave, cache.move

    def step(self, ids: torch.Tensor, rows: int) -> torch.Tensor:
        h = self.run(ids[:, None], self.cache.pos[:rows, None], self.cache.attention(rows))
        self.cache.advance(rows)
        return h


def rows_for_memory(model, prompt_len: int, new_tokens: int, n: int, memory_gb: float, shared: bool = True) -> int:
    """The rows to decode together: :data:`BATCH_ROWS` at most, and no more than ``memory_gb`` holds of what
    a row costs: its own keys and values (``new_tokens`` columns; the window layout holds its prompt too),
    a share of its prompt's slot (one prompt per ``n`` rows), its logits and its uniforms."""
    layers, _, kv, dim = kv_layout(model)
    column = 2 * layers * kv * dim * next(model.parameters()).element_size()  # one token's keys + values, all layers
    vocab = model.get_output_embeddings().weight.shape[0]
    if shared:
        row = column * (new_tokens + prompt_len / n)
    else:
        row = column * (prompt_len + new_tokens + 32)
    row += 4 * (vocab + new_tokens)
    return max(1, min(BATCH_ROWS, int(memory_gb * 2**30 // row)))


@uses_gqa_attention
@torch.no_grad()
def sample_ids(model, prompts: list[list[int]], n: int, eos_id, max_new_tokens: int, *, temperature: float = 1.0,
               top_p: float = 1.0, seed: int = 0, batch_rows: int | None = None,
               memory_gb: float = MEMORY_GB) -> list[list[list[int]]]:
    """``n`` sampled continuations (token ids, EOS excluded) of each tokenized prompt: ``out[i][j]``.

    ``eos_id``: one id or a list of ids (a sample ends at the first of them). ``batch_rows``: samples
    decoded together at most (default: :func:`rows_for_memory` of ``memory_gb``)."""
    check_sampling(n, temperature, top_p)
    if batch_rows is not None and (isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1):
        raise ObliviateError(f"batch_rows {batch_rows}: must be an integer >= 1")
    if not prompts:
        return []
    max_new_tokens = _fit_context(model, prompts, max_new_tokens)
    if max_new_tokens < 1:
        return [[[] for _ in range(n)] for _ in prompts]
    step = llama_step(model)
    if batch_rows is None:
        batch_rows = rows_for_memory(model, max(len(p) for p in prompts), max_new_tokens, n, memory_gb,
                                     shared=step is not None)
    eos = frozenset([eos_id] if isinstance(eos_id, int) else (int(x) for x in eos_id))
    device = next(model.parameters()).device
    body = model.get_decoder()
    head = _Head(model, min(batch_rows, len(prompts) * n))
    # Longest prompt first: with the window layout a prompt placed later then fits before the shared cursor.
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    waiting = collections.deque((i, j) for i in order for j in range(n))
    rows_n = min(batch_rows, len(waiting))
    if step is not None:
        # prompt slots: one per n rows, and a few for prompts whose last samples run on (the pool grows to one
        # per row at most: a prompt holds its slot while it has a live row)
        bound = min(rows_n, len(prompts))
        kv = _SharedKV(step, SharedPromptKV(model, rows_n, min(bound, -(-rows_n // n) + 2), min(n, rows_n),
                                            max(len(p) for p in prompts), max_new_tokens, max_slots=bound))
    else:
        # Every sample in the batch from the start: no refill, so no column is ever cut and no slack is
        # needed (the last token drawn is not fed back: prompt + max_new_tokens - 1 columns).
        slack = 0 if rows_n == len(waiting) else 32
        kv = _WindowKV(model, rows_n, max(len(p) for p in prompts) + max_new_tokens + slack, device)
    u_all = torch.zeros((rows_n, max_new_tokens), device=device)  # each row's uniforms, one per token
    drawn = torch.zeros(rows_n, dtype=torch.long, device=device)  # tokens each row has drawn
    nxt = torch.zeros(rows_n, dtype=torch.long, device=device)  # each row's pending token
    owner: list[tuple[int, int] | None] = [None] * rows_n
    gen: list[list[int]] = [[] for _ in range(rows_n)]
    out = [[None] * n for _ in prompts]
    pending: dict[int, tuple[int, int, torch.Tensor]] = {}  # prompt -> (its KV handle, length, first-token weights)
    left = [n] * len(prompts)  # samples of each prompt not yet in the batch
    live = 0  # rows [0, live) hold live samples

    pre = _common_prefix(prompts)  # the chat template's system turn, say: encoded once for all prompts
    L0 = len(pre)
    ckw = cache_kw(body)
    prefix_cache = out_cache(body(input_ids=torch.tensor([pre], device=device), use_cache=True)) if pre else None

    def prefill(group: list[int]) -> None:
        suf = [prompts[i][L0:] for i in group]
        o, _, _ = prefill_suffixes(body, ckw, prefix_cache, L0, suf, device)
        S = max(len(x) for x in suf)
        w = weights_(head(o.last_hidden_state[:, -1]), temperature, top_p).clone()  # the head's buffer is reused
        layers = out_cache(o).layers
        for r, (i, x) in enumerate(zip(group, suf)):
            a = L0 + S - len(x)  # the prefix's columns, then the row's own suffix (left-padded)
            own = [SimpleNamespace(keys=torch.cat([t.keys[r : r + 1, :, :L0], t.keys[r : r + 1, :, a:]], 2),
                                   values=torch.cat([t.values[r : r + 1, :, :L0], t.values[r : r + 1, :, a:]], 2))
                   for t in layers]
            pending[i] = (kv.add_prompt(own, len(prompts[i]), n), len(prompts[i]), w[r])

    def take(rows: range) -> list[int]:
        """Record the pending token of these rows; return the rows whose sample has ended."""
        ended = []
        for r, t in zip(rows, nxt[rows.start : rows.stop].tolist()):
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
        kv.leave(ended)
        gone = set(ended)
        end = live - len(gone)
        holes = [r for r in sorted(gone) if r < end]
        movers = [r for r in range(end, live) if r not in gone]
        if holes:
            src, dst = torch.tensor(movers, device=device), torch.tensor(holes, device=device)
            kv.move(src, dst, live)
            for t in (u_all, drawn, nxt):
                t[dst] = t[src]
            for s_, d in zip(movers, holes):
                owner[d], gen[d] = owner[s_], gen[s_]
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
                handle, L, w = pending[i]
                kv.enter([r for r, _ in rj], handle, L)
                rt = torch.tensor([r for r, _ in rj], device=device)
                u = torch.stack([torch.rand(max_new_tokens, generator=torch.Generator().manual_seed(row_seed(seed, i, j)))
                                 for _, j in rj]).to(device)
                u_all[rt] = u
                nxt[rt] = draw(w.expand(len(rj), -1), u[:, 0])
                drawn[rt] = 1
                left[i] -= len(rj)
                if not left[i]:
                    del pending[i]
            live = rows.stop
            drop(take(rows))

    fill()
    while live:
        h = kv.step(nxt[:live], live)
        w = weights_(head(h), temperature, top_p)
        del h
        u = u_all[:live].gather(1, drawn[:live, None]).squeeze(1)
        nxt[:live] = draw(w, u)
        drawn[:live] += 1
        del w
        drop(take(range(live)))
        fill()
    return out  # type: ignore[return-value]


def sample(model, tokenizer, prompts: list[str], n: int, max_new_tokens: int = 200, **kw) -> list[list[str]]:
    """``n`` sampled continuations of each already-formatted prompt text (special tokens included). A sample
    ends at the token ids greedy generation stops at (:func:`.generation.stop_token_ids`)."""
    encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    ids = sample_ids(model, encoded, n, stop_token_ids(model, tokenizer), max_new_tokens, **kw)
    return [[tokenizer.decode(x, skip_special_tokens=True).strip() for x in rows] for rows in ids]
