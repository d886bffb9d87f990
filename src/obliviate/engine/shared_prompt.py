"""Decoding many continuations of a few prompts with each prompt's keys and values stored once (best-of-n).

Best-of-n decodes n rows per prompt. In the generation engine's KV buffer every row holds its own copy of
its prompt's columns, and every decoding step reads all of those copies: at 640 rows of SmolLM2 the
attention call alone reads over 100 MB per layer, and the buffer is mostly prompt. Here a prompt's keys and
values live once, in a *prompt slot*; a row holds only the tokens it has generated (*own columns*, column
``t`` for its ``t``-th fed token). A row's attention over its window ``[prompt | own tokens]`` is computed
in two parts that share one softmax:

* **prompt part** — the queries of all rows of a prompt (placed in the *sub-slots* of its prompt slot)
  against the prompt's keys, one matrix product per prompt and KV head, and the same for the values;
* **own part** — each row's query against its own keys, then its own values.

The scores of both parts are scaled, masked (a prompt slot's columns past the prompt's length, a row's
columns not yet written) and normalised together, so each row gets the attention over its whole window:
what ``scaled_dot_product_attention`` computes on a replicated window, up to floating-point summation order.
Grouped-query heads need no copy: query head ``h`` reads KV head ``h // groups``, and the queries of a KV
head's group ride in the matrix product's rows.
"""

from __future__ import annotations

import heapq

import torch

from .forward import kv_layout


class SharedPromptKV:
    """Prompt slots (``slots x kv heads x prompt_len x head dim`` per layer) and rows' own columns
    (``rows x kv heads x new_tokens x head dim``), for :meth:`.decode.LlamaStep.run`.

    ``width``: sub-slots per prompt slot (the most rows of one prompt decoded at once). ``slots``: prompt slots
    allocated at first; the pool grows (by half, at least 8) up to ``max_slots`` when a prompt finds none free."""

    def __init__(self, model, rows: int, slots: int, width: int, prompt_len: int, new_tokens: int,
                 max_slots: int | None = None):
        p = next(model.parameters())
        n_layers, heads, self.kv, self.dim = kv_layout(model)
        self.groups = heads // self.kv
        self.kp = [torch.zeros((slots, self.kv, prompt_len, self.dim), dtype=p.dtype, device=p.device)
                   for _ in range(n_layers)]
        self.vp = [torch.zeros_like(t) for t in self.kp]
        # zeros, not empty: a masked column still enters the products (its weight 0 times a finite value)
        self.ks = [torch.zeros((rows, self.kv, new_tokens, self.dim), dtype=p.dtype, device=p.device)
                   for _ in range(n_layers)]
        self.vs = [torch.zeros_like(t) for t in self.ks]
        self.pmask = torch.full((slots, prompt_len), float("-inf"), dtype=p.dtype, device=p.device)  # additive
        self.slot = torch.zeros(rows, dtype=torch.long, device=p.device)
        self.sub = torch.zeros(rows, dtype=torch.long, device=p.device)
        self.t = torch.zeros(rows, dtype=torch.long, device=p.device)  # own column of the row's next fed token
        self.pos = torch.zeros(rows, dtype=torch.long, device=p.device)  # its position
        self.width = width
        self.max_slots = max(slots, max_slots or slots)
        self._free_slots = list(range(slots))
        self._free_subs: dict[int, list[int]] = {}
        self._unfinished: dict[int, int] = {}  # slot -> samples of its prompt not yet ended

    def add_prompt(self, layers, length: int, samples: int) -> int:
        """Store a prompt's keys and values (``layers[l].keys``: ``1 x kv heads x length x head dim``); the slot
        is freed when ``samples`` rows have entered it and left."""
        if not self._free_slots:
            self._grow()
        s = heapq.heappop(self._free_slots)  # the lowest free slot: the slots in use stay at the front
        for l, layer in enumerate(layers):
            self.kp[l][s, :, :length] = layer.keys[0]
            self.vp[l][s, :, :length] = layer.values[0]
        self.pmask[s] = float("-inf")
        self.pmask[s, :length] = 0
        self._free_subs[s] = list(range(self.width))
        self._unfinished[s] = samples
        return s

    def _grow(self) -> None:
        have = self.pmask.shape[0]
        extra = min(max(8, have // 2), self.max_slots - have)
        if extra <= 0:
            raise RuntimeError("no free prompt slot")  # the caller's bound on live prompts: a bug, not an input error
        for buf in (self.kp, self.vp):
            for l, t in enumerate(buf):
                buf[l] = torch.cat([t, t.new_zeros((extra,) + t.shape[1:])])
        self.pmask = torch.cat([self.pmask, self.pmask.new_full((extra, self.pmask.shape[1]), float("-inf"))])
        for s in range(have, have + extra):
            heapq.heappush(self._free_slots, s)

    def enter(self, rows: list[int], slot: int, length: int) -> None:
        """Rows start decoding the prompt in ``slot`` (of ``length`` tokens): no own column yet."""
        subs = self._free_subs[slot]
        for r in rows:
            self.sub[r] = heapq.heappop(subs)
        self.slot[rows] = slot
        self.t[rows] = 0
        self.pos[rows] = length

    def leave(self, rows: list[int]) -> None:
        """Rows whose sample ended: their sub-slots are free; a prompt slot whose samples have all ended too."""
        for s, w in zip(self.slot[rows].tolist(), self.sub[rows].tolist()):
            heapq.heappush(self._free_subs[s], w)
            self._unfinished[s] -= 1
            if not self._unfinished[s]:
                del self._free_subs[s], self._unfinished[s]
                heapq.heappush(self._free_slots, s)

    def move(self, src: torch.Tensor, dst: torch.Tensor, live: int) -> None:
        """Copy rows ``src`` into rows ``dst`` (own columns in use among the first ``live`` rows only)."""
        c = int(self.t[:live].max()) if live else 0
        for t in self.ks + self.vs:
            t[dst, :, :c] = t[src, :, :c]
        for t in (self.slot, self.sub, self.t, self.pos):
            t[dst] = t[src]

    def attention(self, rows: int):
        """The attention function of :meth:`.decode.LlamaStep.run` for one decoding step of rows ``[0, rows)``
        (one new token each; call :meth:`advance` after the step)."""
        R, kv, G, D = rows, self.kv, self.groups, self.dim
        ar = torch.arange(R, device=self.t.device)
        t = self.t[:R]
        own = int(t.max()) + 1
        col = own - 1 if int(t.min()) == own - 1 else None  # every row writes the same column: a slice, no scatter
        s_idx, w_idx = self.slot[:R], self.sub[:R]
        S, W = int(s_idx.max()) + 1, int(w_idx.max()) + 1
        L = self.pmask.shape[1]
        dtype = self.kp[0].dtype
        mine = torch.zeros((R, own), dtype=dtype, device=t.device).masked_fill_(
            torch.arange(own, device=t.device)[None] > t[:, None], float("-inf"))
        mask = torch.cat([self.pmask[s_idx], mine], 1)[:, None, None, :]
        qpad = torch.zeros((S, kv, W, G, D), dtype=dtype, device=t.device)
        ppad = torch.zeros((S, kv, W, G, L), dtype=dtype, device=t.device)

        def attend(l, attn, q, k, v):
            if col is not None:
                self.ks[l][:R, :, col] = k[:, :, 0]
                self.vs[l][:R, :, col] = v[:, :, 0]
            else:
                self.ks[l][ar, :, t] = k[:, :, 0]
                self.vs[l][ar, :, t] = v[:, :, 0]
            qg = q.reshape(R, kv, G, D)
            qpad[s_idx, :, w_idx] = qg
            s1 = torch.matmul(qpad.view(S, kv, W * G, D), self.kp[l][:S].transpose(-1, -2))
            s2 = torch.matmul(qg, self.ks[l][:R, :, :own].transpose(-1, -2))
            p = torch.softmax(torch.cat([s1.view(S, kv, W, G, L)[s_idx, :, w_idx], s2], -1).mul_(attn.scaling).add_(mask), -1)
            ppad[s_idx, :, w_idx] = p[..., :L]
            o = torch.matmul(ppad.view(S, kv, W * G, L), self.vp[l][:S]).view(S, kv, W, G, D)[s_idx, :, w_idx]
            o += torch.matmul(p[..., L:], self.vs[l][:R, :, :own])
            return o.view(R, kv * G, 1, D)

        return attend

    def advance(self, rows: int) -> None:
        self.t[:rows] += 1
        self.pos[:rows] += 1
