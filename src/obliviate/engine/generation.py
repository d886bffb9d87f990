"""Generation engine: batched greedy decoding, deterministic, with a full batch at every step.

* **Continuous batching.** The batch is a set of ``batch_size`` slots. A row that finishes (EOS, a stop
  string or ``max_new_tokens``) frees its slot, and a waiting prompt is prefilled into it before the next
  step (several free slots in one call), so the batch stays full until the prompts run out. Decoding is compute-bound on a
  CPU at batch 16-64 and slow per row at batch 1; Hugging Face's ``generate`` keeps finished rows
  computing until the longest answer of the batch ends.
* **One preallocated KV buffer per layer** (``rows x kv heads x capacity x head dim``): each decoding step
  writes one column in place. Hugging Face's dynamic cache concatenates, i.e. copies the whole cache,
  at every step. Rows are left-aligned on a shared cursor: a prompt placed in a slot ends at the cursor,
  the columns before it are masked. When the cursor reaches the capacity, the columns no live row uses
  are cut off (one copy); attention reads only the window that live rows use.
* The prefix shared by every prompt (the chat template's system turn) is encoded once per call; each
  prefill group starts from copies of its KV cache and encodes only the prompt suffixes (left-padded;
  positions continue each row's real tokens). Only the last position is projected onto the vocabulary.
* Prompts are taken longest first (a prompt then always fits before the cursor); results come back in
  the caller's order. Stop strings cut the decoded text.

Greedy decoding makes the output independent of batching up to floating-point summation order; a test
compares the answers with Hugging Face ``generate`` at batch 1.
"""

from __future__ import annotations

import copy
import sys

import torch
from transformers.cache_utils import Cache, DynamicLayer

from ..errors import ObliviateError
from ..runtime.progress import progress_bar
from .attention import uses_gqa_attention
from .decode import llama_step
from .forward import cache_kw, context_length, head_logits, kv_layout, out_cache
from .scoring import _common_prefix


def cut_at_stops(text: str, stops: list[str] | None) -> str:
    if stops:
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
    return text


class _WindowLayer(DynamicLayer):
    """One layer's KV cache in a preallocated buffer; the model sees columns ``[start, end)``."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.kbuf, self.vbuf = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.keys, self.values = keys, values  # for code that inspects them
        self.is_initialized = True
        self.start = self.end = 0

    def update(self, key_states, value_states, *args, **kwargs):
        q = key_states.shape[-2]
        self.kbuf[:, :, self.end : self.end + q] = key_states
        self.vbuf[:, :, self.end : self.end + q] = value_states
        self.end += q
        return self.kbuf[:, :, self.start : self.end], self.vbuf[:, :, self.start : self.end]

    def get_seq_length(self) -> int:
        return self.end - self.start


class _Slots:
    """KV buffers, attention mask, pending token and position of every slot of the batch."""

    def __init__(self, model, rows: int, capacity: int, device):
        n_layers, _, heads, dim = kv_layout(model)
        dtype = next(model.parameters()).dtype
        self.k = [torch.zeros((rows, heads, capacity, dim), dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros_like(t) for t in self.k]
        self.mask = torch.zeros((rows, capacity), dtype=torch.long, device=device)
        self.nxt = torch.zeros(rows, dtype=torch.long, device=device)
        self.pos = torch.zeros(rows, dtype=torch.long, device=device)  # position of the pending token
        self.cursor = 0  # first free column
        self.capacity = capacity

    def place(self, rows: torch.Tensor, cache, mask: torch.Tensor) -> None:
        """Copy a prefill group's cache (``len(rows) x ... x L``) into ``rows``, ending at the cursor."""
        L = mask.shape[1]
        if self.cursor == 0:
            self.cursor = L
        a = self.cursor - L
        for l, layer in enumerate(cache.layers):
            self.k[l][rows, :, a : self.cursor] = layer.keys
            self.v[l][rows, :, a : self.cursor] = layer.values
        self.mask[rows] = 0
        self.mask[rows, a : self.cursor] = mask

    def compact(self, live: torch.Tensor) -> None:
        """Cut the columns before the first one a live row uses; grow the buffers if none can be cut."""
        cut = int(self.first_used(live))
        if cut > 0:
            n = self.cursor - cut
            for t in self.k + self.v:
                t[:, :, :n] = t[:, :, cut : self.cursor].clone()
            self.mask[:, :n] = self.mask[:, cut : self.cursor].clone()
            self.mask[:, n:] = 0
            self.cursor = n
        if self.cursor >= self.capacity:  # nothing to cut: grow by half
            extra = max(16, self.capacity // 2)
            for buf in (self.k, self.v):
                for l, t in enumerate(buf):
                    buf[l] = torch.cat([t, t.new_zeros(t.shape[:2] + (extra,) + t.shape[3:])], 2)
            self.mask = torch.cat([self.mask, self.mask.new_zeros((self.mask.shape[0], extra))], 1)
            self.capacity += extra

    def first_used(self, live: torch.Tensor) -> int:
        if not len(live):
            return self.cursor
        m = self.mask[live, : self.cursor]
        return int(m.argmax(1).min()) if m.numel() else 0

    def keep(self, rows: torch.Tensor) -> None:
        for buf in (self.k, self.v):  # layer by layer: one layer's old buffer is freed before the next copy
            for l in range(len(buf)):
                buf[l] = buf[l][rows]
        self.mask, self.nxt, self.pos = self.mask[rows], self.nxt[rows], self.pos[rows]


def decode_step(body, ckw, step, slots: _Slots, rows: int, start: int) -> torch.Tensor:
    """One decoding step of slots ``[0, rows)``: each feeds its pending token (written at column ``slots.cursor``)
    and attends to columns ``[start, cursor]`` where its mask is 1. Returns the final hidden states
    ``[rows, hidden]``; the cursor and the rows' positions move on by one. ``step``: :func:`.decode.llama_step`'s
    written-out step, or None for the Hugging Face decoder forward (``body``, cache keyword ``ckw``)."""
    slots.mask[:rows, slots.cursor] = 1  # every row attends its own new column
    window = slots.mask[:rows, start : slots.cursor + 1]
    ids, pos = slots.nxt[:rows].unsqueeze(1), slots.pos[:rows].unsqueeze(1)
    keys, values = [k[:rows] for k in slots.k], [v[:rows] for v in slots.v]  # views: writes reach the buffers
    if step is not None:  # the same operations without Hugging Face's wrappers (bitwise the same)
        h = step(ids, pos, keys, values, start, slots.cursor, window)
    else:
        cache = Cache(layers=[_WindowLayer(k, v) for k, v in zip(keys, values)])
        for layer in cache.layers:
            layer.start, layer.end = start, slots.cursor
        h = body(input_ids=ids, attention_mask=window, position_ids=pos, use_cache=True,
                 **{ckw: cache}).last_hidden_state[:, -1]
        del cache  # it holds the KV buffers: the caller's `keep` must not copy them while the old ones live
    slots.cursor += 1
    slots.pos[:rows] += 1
    return h


def greedy_draft(answer_ids: list[int], argmax_ids: list[int]) -> list[int]:
    """The start of the greedy continuation that a teacher-forced pass over ``answer_ids`` has revealed.

    At answer position j the scoring engine saw the prompt followed by ``answer_ids[:j]``; while the
    model's top token equals the answer token, greedy decoding would have produced exactly that token.
    The draft is the answer up to the first miss plus the model's own top token there (the whole answer,
    EOS included, when every token is a hit)."""
    out: list[int] = []
    for a, m in zip(answer_ids, argmax_ids):
        out.append(m)
        if m != a:
            break
    return out


@torch.no_grad()
def stop_token_ids(model, tokenizer, all_eos: bool = True) -> list[int]:
    """The token ids that end a greedy answer: the tokenizer's EOS and, with ``all_eos``, every id of the
    generation config's ``eos_token_id`` (an int or a list: Llama-3 lists ``<|end_of_text|>``, ``<|eom_id|>``
    and ``<|eot_id|>``), which is what ``model.generate`` stops at in open-unlearning and TOFU (neither passes
    ``eos_token_id``: open-unlearning src/evals/metrics/utils.py:294-299, TOFU evaluate_util.py:330)."""
    ids: list[int] = []

    def add(v):
        if v is None:
            return
        for x in (v if isinstance(v, (list, tuple, set)) else [v]):
            if x is not None and int(x) not in ids:
                ids.append(int(x))

    add(getattr(tokenizer, "eos_token_id", None))
    if all_eos:
        add(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    return ids


def greedy_ids(model, prompts: list[list[int]], eos_id, max_new_tokens: int, batch_size: int = 32,
               stop_check=None, progress: bool = False, desc: str = "generate",
               drafts: list[list[int] | None] | None = None) -> list[list[int]]:
    """Greedy continuations (token ids, EOS excluded) of tokenized prompts.

    ``eos_id`` is one id or a list of ids (:func:`stop_token_ids`): a row ends at the first of them.

    ``stop_check(ids) -> bool`` may end a row early (stop strings). ``drafts[i]``, when given, is a
    known start of prompt ``i``'s greedy continuation (see :func:`greedy_draft`): it is prefilled with
    the prompt instead of being decoded token by token, and a draft that ends the answer (EOS, a stop
    string or the token budget) costs no model call at all."""
    if not prompts:
        return []
    max_new_tokens = _fit_context(model, prompts, max_new_tokens)
    eos_id = frozenset([eos_id] if isinstance(eos_id, int) else (int(x) for x in eos_id))
    out: list[list[int] | None] = [None] * len(prompts)
    if drafts is not None:
        todo, forced = [], {}
        for i, d in enumerate(drafts):
            d = list(d or [])[:max_new_tokens]
            cut = next((j for j, t in enumerate(d) if t in eos_id), None)
            if cut is not None:
                out[i] = d[:cut]
            elif d and (len(d) >= max_new_tokens or (stop_check and stop_check(d))):
                out[i] = d
            else:
                todo.append(i)
                forced[i] = d
        if todo:
            sub = _greedy(model, [prompts[i] + forced[i] for i in todo], eos_id, max_new_tokens, batch_size,
                          stop_check, progress, desc, starts=[forced[i] for i in todo])
            for i, ids in zip(todo, sub):
                out[i] = ids
        return out  # type: ignore[return-value]
    return _greedy(model, prompts, eos_id, max_new_tokens, batch_size, stop_check, progress, desc)


def _fit_context(model, prompts: list[list[int]], max_new_tokens: int) -> int:
    """``max_new_tokens``, lowered (with a note) so that the longest prompt and its continuation fit in the
    model's context: the key/value cache is allocated for that many columns, and positions past the context
    are outside what the model learned. A prompt longer than the context is an error."""
    ctx = context_length(model)
    if ctx is None:
        return max_new_tokens
    longest = max(len(p) for p in prompts)
    if longest >= ctx:
        i = max(range(len(prompts)), key=lambda j: len(prompts[j]))
        raise ObliviateError(f"prompt {i + 1} has {longest} tokens, which leaves no room in the model's context "
                             f"of {ctx} tokens to generate anything")
    if longest + max_new_tokens > ctx:
        print(f"note: max_new_tokens {max_new_tokens} lowered to {ctx - longest}: the longest prompt "
              f"({longest} tokens) and its answer must fit in the model's context of {ctx} tokens",
              file=sys.stderr)
        return ctx - longest
    return max_new_tokens


def prefill_suffixes(body, ckw, prefix_cache, L0: int, suffixes: list[list[int]], device):
    """One forward pass of prompt suffixes, left-padded, after a shared prefix of ``L0`` tokens whose cache is
    ``prefix_cache`` (None when there is no prefix): ``(output, mask [B, L0 + S], positions [B, S])``.
    Row ``r``'s columns are the prefix's ``[0, L0)`` and its own ``[L0 + S - len(suffixes[r]), L0 + S)``."""
    B, S = len(suffixes), max(len(x) for x in suffixes)
    ids = torch.zeros((B, S), dtype=torch.long)
    mask = torch.zeros((B, L0 + S), dtype=torch.long)
    mask[:, :L0] = 1
    pos = torch.zeros((B, S), dtype=torch.long)
    for r, x in enumerate(suffixes):
        n = len(x)
        ids[r, S - n :] = torch.tensor(x, dtype=torch.long)
        mask[r, L0 + S - n :] = 1
        pos[r, S - n :] = L0 + torch.arange(n)
    ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
    kw = {}
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.reorder_cache(torch.zeros(B, dtype=torch.long, device=device))
        kw[ckw] = cache
    return body(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw), mask, pos


@uses_gqa_attention
@torch.no_grad()
def _greedy(model, prompts, eos_id, max_new_tokens, batch_size, stop_check, progress, desc, starts=None):
    """Continuous-batching greedy loop; ``starts[i]`` are tokens already generated (the end of prompt i)."""
    device = next(model.parameters()).device
    # argmax is unchanged by a monotone soft-cap or scale, but follow the model's own logits where known
    body, head = model.get_decoder(), head_logits(model) or model.get_output_embeddings()
    step = llama_step(model)  # a plain Llama decoder: the decoding step written out (engine/decode.py)
    waiting = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))  # longest first
    out: list[list[int] | None] = [None] * len(prompts)
    pre = _common_prefix(prompts)
    L0 = len(pre)
    ckw = cache_kw(body)
    prefix_cache = out_cache(body(input_ids=torch.tensor([pre], device=device), use_cache=True)) if pre else None
    rows_n = min(batch_size, len(prompts))
    slack = 32
    # A row needs its prompt and max_new_tokens columns; tokens of a draft (``starts``) count in both.
    need = max(len(p) - (len(starts[i]) if starts else 0) for i, p in enumerate(prompts))
    slots = _Slots(model, rows_n, need + max_new_tokens + slack, device)
    owner: list[int | None] = [None] * rows_n  # slot -> prompt index
    gen: list[list[int]] = [[] for _ in range(rows_n)]
    group_max = max(1, rows_n // 4)  # prompts per prefill call at most: small prefill caches
    bar = progress_bar(total=len(prompts), desc=desc, enabled=progress, unit="answers")  # a line off a terminal

    def prefill(slot_ids: list[int]) -> None:
        group = [waiting.pop(0) for _ in slot_ids]
        o, mask, pos = prefill_suffixes(body, ckw, prefix_cache, L0, [prompts[i][L0:] for i in group], device)
        rows = torch.tensor(slot_ids, device=device)
        slots.place(rows, out_cache(o), mask)
        slots.nxt[rows] = head(o.last_hidden_state[:, -1]).argmax(-1)
        slots.pos[rows] = pos[:, -1] + 1
        for s, i in zip(slot_ids, group):
            owner[s], gen[s] = i, list(starts[i]) if starts else []

    def take(slot_ids: list[int]) -> None:
        """Record the pending token of these slots; free the slots whose row is finished."""
        toks = slots.nxt[torch.tensor(slot_ids, device=device)].tolist() if slot_ids else []
        for s, t in zip(slot_ids, toks):
            done = t in eos_id
            if not done:
                gen[s].append(t)
                done = len(gen[s]) >= max_new_tokens or bool(stop_check and stop_check(gen[s]))
            if done:
                out[owner[s]] = gen[s]
                owner[s] = None
                bar.update(1)

    while True:
        free = [s for s, o in enumerate(owner) if o is None]
        # A free slot is refilled at once: a slot left waiting computes garbage at every step, and a prompt
        # suffix of a few dozen tokens is already a GEMM as tall as a decoding step's.
        while waiting and free:
            group = free[: min(len(waiting), group_max)]
            prefill(group)
            take(group)
            free = [s for s, o in enumerate(owner) if o is None]
        live = [s for s, o in enumerate(owner) if o is not None]
        if not live:
            break
        if not waiting and len(live) <= 3 * len(owner) // 4:  # no prompt left to refill: shrink the batch
            sel = torch.tensor(live, device=device)
            slots.keep(sel)
            owner, gen = [owner[s] for s in live], [gen[s] for s in live]
            live = list(range(len(live)))
        live_t = torch.tensor(live, device=device)
        if slots.cursor >= slots.capacity:
            slots.compact(live_t)
        # every slot computes (free slots compute garbage until `keep` drops them)
        h = decode_step(body, ckw, step, slots, len(owner), slots.first_used(live_t))
        slots.nxt = head(h).argmax(-1)
        del h
        take(live)
    bar.close()
    return out  # type: ignore[return-value]


def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 200,
    batch_size: int = 32,
    stop_strings: list[str] | None = None,
    progress: bool = False,
    desc: str = "generate",
    drafts: list[list[int] | None] | None = None,
    *,
    all_eos: bool = True,
    prompt_ids: list[list[int]] | None = None,
    max_total_length: int | None = None,
) -> list[str]:
    """Greedy continuations of already-formatted prompt texts (special tokens included in the text).

    ``drafts``: known starts of the greedy continuations in token ids (:func:`greedy_draft`).
    ``all_eos``: stop at every EOS id of the generation config too (:func:`stop_token_ids`).
    ``prompt_ids``: the prompts' token ids when the caller has them (then ``prompts`` is not tokenized).
    ``max_total_length``: TOFU's cap on prompt + answer tokens (each row gets
    ``min(max_new_tokens, max_total_length - len(prompt))`` new tokens)."""
    encoded = prompt_ids if prompt_ids is not None else [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]

    def stop_check(ids):  # the last 16 tokens first: cheap, and where a new stop string appears
        return any(s in tokenizer.decode(ids[-16:], skip_special_tokens=True) for s in stop_strings) or any(
            s in tokenizer.decode(ids, skip_special_tokens=True) for s in stop_strings)
    stops = stop_token_ids(model, tokenizer, all_eos)
    check = stop_check if stop_strings else None
    if max_total_length is None:
        ids = greedy_ids(model, encoded, stops, max_new_tokens, batch_size, check, progress, desc, drafts=drafts)
    else:  # one call per budget, each row's budget from its own length
        ids = [[] for _ in encoded]
        budgets: dict[int, list[int]] = {}
        for i, e in enumerate(encoded):
            budgets.setdefault(min(max_new_tokens, max_total_length - len(e)), []).append(i)
        for budget, rows in budgets.items():
            if budget < 1:
                continue
            sub = greedy_ids(model, [encoded[i] for i in rows], stops, budget, batch_size, check, progress, desc,
                             drafts=[drafts[i] for i in rows] if drafts is not None else None)
            for i, g in zip(rows, sub):
                ids[i] = g
    texts = [tokenizer.decode(x, skip_special_tokens=True) for x in ids]
    return [cut_at_stops(t, stop_strings).strip() for t in texts]
