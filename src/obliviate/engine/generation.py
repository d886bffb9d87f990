"""Generation engine: batched greedy decoding with left padding, stop strings, deterministic.

Prompts are sorted by length so that a batch holds prompts of similar length (little left padding),
decoded with the KV cache, then returned in the caller's order. Each sequence stops at EOS; stop strings
cut the decoded text afterwards (and end a batch early once every row has hit one).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


class _StopOnStrings:
    """A transformers StoppingCriteria that is true per row once the new text contains a stop string."""

    def __init__(self, tokenizer, stops: list[str], prompt_len: int):
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)


def cut_at_stops(text: str, stops: list[str] | None) -> str:
    if stops:
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
    return text


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 200,
    batch_size: int = 16,
    stop_strings: list[str] | None = None,
    progress: bool = False,
    desc: str = "generate",
) -> list[str]:
    """Greedy continuations of already-formatted prompt texts (special tokens included in the text)."""
    from transformers import StoppingCriteriaList

    device = next(model.parameters()).device
    encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    out: list[str | None] = [None] * len(prompts)
    pad = tokenizer.pad_token_id
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        T = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), T), pad, dtype=torch.long)
        attn = torch.zeros((len(idx), T), dtype=torch.long)
        for r, i in enumerate(idx):
            L = len(encoded[i])
            ids[r, T - L :] = torch.tensor(encoded[i])
            attn[r, T - L :] = 1
        kwargs = {}
        if stop_strings:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnStrings(tokenizer, stop_strings, T)])
        gen = model.generate(
            input_ids=ids.to(device),
            attention_mask=attn.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            **kwargs,
        )
        texts = tokenizer.batch_decode(gen[:, T:], skip_special_tokens=True)
        for r, i in enumerate(idx):
            out[i] = cut_at_stops(texts[r], stop_strings).strip()
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]
