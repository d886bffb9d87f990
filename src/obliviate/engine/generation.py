"""Generation engine: batched greedy decoding, deterministic, with no wasted decoding steps.

* The prefix shared by every prompt (the chat template's system turn) is encoded once per call; each
  batch starts from a copy of its KV cache and encodes only the prompt suffixes (left-padded; the
  mask comes from lengths and positions continue each row's real tokens).
* Rows leave the batch as soon as they finish (EOS or a stop string): their KV-cache rows are dropped,
  so a long answer does not make the finished rows of its batch keep decoding (Hugging Face's
  ``generate`` keeps computing them until the whole batch ends).
* Only the last position of each step is projected onto the vocabulary.
* Prompts are sorted by length so that a batch holds prompts of similar length, then results are
  returned in the caller's order. Stop strings cut the decoded text.
"""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

from .scoring import _common_prefix


def cut_at_stops(text: str, stops: list[str] | None) -> str:
    if stops:
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
    return text


@torch.no_grad()
def greedy_ids(model, prompts: list[list[int]], eos_id: int, max_new_tokens: int, batch_size: int = 32,
               stop_check=None, progress: bool = False, desc: str = "generate") -> list[list[int]]:
    """Greedy continuations (token ids, EOS excluded) of tokenized prompts.

    ``stop_check(ids) -> bool`` may end a row early (stop strings)."""
    device = next(model.parameters()).device
    body, head = model.get_decoder(), model.get_output_embeddings()
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[list[int] | None] = [None] * len(prompts)
    pre = _common_prefix(prompts)
    L0 = len(pre)
    prefix_cache = body(input_ids=torch.tensor([pre], device=device), use_cache=True).past_key_values if pre else None
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        suf = [prompts[i][L0:] for i in idx]
        B, S = len(idx), max(len(x) for x in suf)
        ids = torch.zeros((B, S), dtype=torch.long)
        mask = torch.zeros((B, L0 + S), dtype=torch.long)
        mask[:, :L0] = 1
        pos = torch.zeros((B, S), dtype=torch.long)
        for r, x in enumerate(suf):
            n = len(x)
            ids[r, S - n :] = torch.tensor(x)
            mask[r, L0 + S - n :] = 1
            pos[r, S - n :] = L0 + torch.arange(n)
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
        kw = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.reorder_cache(torch.zeros(B, dtype=torch.long, device=device))
            kw["past_key_values"] = cache
        o = body(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
        cache = o.past_key_values
        nxt = head(o.last_hidden_state[:, -1]).argmax(-1)
        rows = list(range(B))  # batch row -> position in idx
        gen: list[list[int]] = [[] for _ in range(B)]
        last_pos = pos[:, -1]
        for step in range(max_new_tokens):
            keep = []
            for r, t in zip(rows, nxt.tolist()):
                if t == eos_id:
                    continue
                gen[r].append(t)
                if len(gen[r]) < max_new_tokens and not (stop_check and stop_check(gen[r])):
                    keep.append(r)
            if not keep:
                break
            if len(keep) < len(rows):
                sel = torch.tensor([rows.index(r) for r in keep], device=device)
                cache.reorder_cache(sel)
                mask, nxt, last_pos = mask[sel], nxt[sel], last_pos[sel]
                rows = keep
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
            last_pos = last_pos + 1
            o = body(input_ids=nxt.unsqueeze(1), attention_mask=mask, position_ids=last_pos.unsqueeze(1),
                     past_key_values=cache, use_cache=True)
            cache = o.past_key_values
            nxt = head(o.last_hidden_state[:, -1]).argmax(-1)
        del cache
        for r, i in enumerate(idx):
            out[i] = gen[r]
        bar.update(B)
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
) -> list[str]:
    """Greedy continuations of already-formatted prompt texts (special tokens included in the text)."""
    encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    stop_check = None
    if stop_strings:
        def stop_check(ids):
            return any(s in tokenizer.decode(ids[-16:], skip_special_tokens=True) for s in stop_strings) or any(
                s in tokenizer.decode(ids, skip_special_tokens=True) for s in stop_strings)
    ids = greedy_ids(model, encoded, tokenizer.eos_token_id, max_new_tokens, batch_size, stop_check, progress, desc)
    texts = [tokenizer.decode(x, skip_special_tokens=True) for x in ids]
    return [cut_at_stops(t, stop_strings).strip() for t in texts]
