"""Seeded sampling of ``n`` continuations per prompt from one shared prompt encoding (best-of-n views).

* **The prompt is encoded once.** A group of prompts is prefilled together (left-padded; positions continue
  each row's real tokens); each prompt's KV cache is then copied into ``n`` rows of one preallocated buffer
  per layer, and the ``n`` continuations decode as one batch. Best-of-16 costs one prefill per prompt and
  16-row decoding steps, not 16 prefills.
* **In-place KV buffer.** Each step writes one column (no concatenation of the whole cache per step).
* **Seeded and reproducible.** Prompt ``i``'s tokens are drawn by its own ``torch.Generator`` seeded with
  ``seed * 1000003 + i``, so the samples of a prompt do not depend on which prompts share its batch (up to
  floating-point summation order).
* Temperature scales the logits; top-p keeps the smallest set of most likely tokens whose probability
  reaches ``top_p`` (the most likely token always stays). Rows end at EOS or ``max_new_tokens``.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

from ..engine.forward import cache_kw, context_length, head_logits, out_cache
from ..errors import ObliviateError


class _Window(DynamicLayer):
    """One layer's KV cache in a preallocated buffer; each update writes columns in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, end: int):
        super().__init__()
        self.kbuf, self.vbuf = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.keys, self.values = keys, values
        self.is_initialized = True
        self.end = end

    def update(self, key_states, value_states, *args, **kwargs):
        q = key_states.shape[-2]
        self.kbuf[:, :, self.end : self.end + q] = key_states
        self.vbuf[:, :, self.end : self.end + q] = value_states
        self.end += q
        return self.kbuf[:, :, : self.end], self.vbuf[:, :, : self.end]

    def get_seq_length(self) -> int:
        return self.end


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


@torch.no_grad()
def sample_ids(model, prompts: list[list[int]], n: int, eos_id: int, max_new_tokens: int, *, temperature: float = 1.0,
               top_p: float = 1.0, seed: int = 0, batch_rows: int = 64) -> list[list[list[int]]]:
    """``n`` sampled continuations (token ids, EOS excluded) of each tokenized prompt: ``out[i][j]``."""
    check_sampling(n, temperature, top_p)
    if not prompts:
        return []
    ctx = context_length(model)
    longest = max(len(p) for p in prompts)
    if ctx is not None:
        if longest >= ctx:
            raise ObliviateError(f"a prompt has {longest} tokens: no room left in the model's context of {ctx}")
        max_new_tokens = min(max_new_tokens, ctx - longest)
    device = next(model.parameters()).device
    body = model.get_decoder()
    head = head_logits(model) or model.get_output_embeddings()
    ckw = cache_kw(body)
    cfg = model.config
    n_layers = cfg.num_hidden_layers
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    dtype = next(model.parameters()).dtype
    g = max(1, batch_rows // n)  # prompts per group
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    out: list[list[list[int]] | None] = [None] * len(prompts)
    for s in range(0, len(order), g):
        group = order[s : s + g]
        gens = [torch.Generator(device="cpu").manual_seed(seed * 1000003 + i) for i in group]
        P = max(len(prompts[i]) for i in group)
        B, R = len(group), len(group) * n
        ids = torch.zeros((B, P), dtype=torch.long)
        mask = torch.zeros((B, P), dtype=torch.long)
        pos = torch.zeros((B, P), dtype=torch.long)
        for r, i in enumerate(group):
            L = len(prompts[i])
            ids[r, P - L :] = torch.tensor(prompts[i])
            mask[r, P - L :] = 1
            pos[r, P - L :] = torch.arange(L)
        o = body(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device), use_cache=True)
        cap = P + max_new_tokens
        kbuf = [torch.zeros((R, heads, cap, dim), dtype=dtype, device=device) for _ in range(n_layers)]
        vbuf = [torch.zeros_like(t) for t in kbuf]
        for l, layer in enumerate(out_cache(o).layers):
            kbuf[l][:, :, :P] = layer.keys.repeat_interleave(n, 0)
            vbuf[l][:, :, :P] = layer.values.repeat_interleave(n, 0)
        full_mask = torch.zeros((R, cap), dtype=torch.long, device=device)
        full_mask[:, :P] = mask.to(device).repeat_interleave(n, 0)
        row_pos = pos[:, -1].to(device).repeat_interleave(n, 0) + 1
        logits = head(o.last_hidden_state[:, -1])
        del o

        def draw(logits_rows: torch.Tensor) -> torch.Tensor:
            """B rows (the prompts' last positions): n draws each; R rows: one draw per row. Inverse-CDF sampling
            (a uniform draw from the prompt's generator, searched in the cumulative probabilities):
            ``torch.multinomial`` costs ~30 ms per call on a 49k vocabulary."""
            cdf = top_p_probs(logits_rows, temperature, top_p).cumsum(-1).cpu()
            first = cdf.shape[0] == B and R != B
            picks = []
            for r in range(B):
                rows = cdf[r : r + 1].expand(n, -1) if first else cdf[r * n : (r + 1) * n]
                u = torch.rand(n, 1, generator=gens[r], dtype=rows.dtype) * rows[:, -1:]
                picks.append(torch.searchsorted(rows.contiguous(), u, right=True).squeeze(-1).clamp_max(rows.shape[1] - 1))
            return torch.cat(picks).to(device)

        nxt = draw(logits)
        toks: list[list[int]] = [[] for _ in range(R)]
        done = [False] * R
        cur = P
        for step in range(max_new_tokens):
            for r, t in enumerate(nxt.tolist()):
                if not done[r]:
                    if t == eos_id:
                        done[r] = True
                    else:
                        toks[r].append(t)
                        done[r] = len(toks[r]) >= max_new_tokens
            if all(done) or step == max_new_tokens - 1:
                break
            full_mask[:, cur] = 1
            cache = Cache(layers=[_Window(k, v, cur) for k, v in zip(kbuf, vbuf)])
            o = body(input_ids=nxt.unsqueeze(1), attention_mask=full_mask[:, : cur + 1],
                     position_ids=row_pos.unsqueeze(1), use_cache=True, **{ckw: cache})
            cur += 1
            row_pos += 1
            nxt = draw(head(o.last_hidden_state[:, -1]))
            del o, cache
        for r, i in enumerate(group):
            out[i] = toks[r * n : (r + 1) * n]
    return out  # type: ignore[return-value]


def sample(model, tokenizer, prompts: list[str], n: int, max_new_tokens: int = 200, **kw) -> list[list[str]]:
    """``n`` sampled continuations of each already-formatted prompt text (special tokens included)."""
    encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    ids = sample_ids(model, encoded, n, tokenizer.eos_token_id, max_new_tokens, **kw)
    return [[tokenizer.decode(x, skip_special_tokens=True).strip() for x in rows] for rows in ids]
