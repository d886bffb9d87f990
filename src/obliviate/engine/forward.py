"""Forward passes that project only the positions we score onto the vocabulary.

The vocabulary projection dominates small models (SmolLM2: 49k x 576; tiny-llama: nearly all of it),
and prompt tokens never need logits. So we run the decoder body once, select the hidden states whose
*next* token is an answer token (``labels[:, t+1] != -100``), and apply the LM head to those rows only.
"""

from __future__ import annotations

import torch


def _body_and_head(model):
    body = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return body, head


def answer_logits(model, batch: dict, output_hidden_states: bool = False):
    """Logits at the answer positions of a right- or left-padded batch.

    Returns ``(logits [N, V], targets [N], rows [N], hidden_states or None)`` where N is the number of
    answer tokens in the batch, ordered row by row and position by position; ``rows`` says which
    sequence each token belongs to.
    """
    labels = batch["labels"]
    target = labels[:, 1:]
    sel = target != -100
    body, head = _body_and_head(model)
    hidden_states = None
    if body is not None and head is not None:
        out = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   output_hidden_states=output_hidden_states, use_cache=False)
        h = out.last_hidden_state[:, :-1][sel]
        logits = head(h)
        if output_hidden_states:
            hidden_states = out.hidden_states
    else:  # a model without the usual decoder/head split: full logits, then select
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states=output_hidden_states, use_cache=False)
        logits = out.logits[:, :-1][sel]
        if output_hidden_states:
            hidden_states = out.hidden_states
    rows = torch.arange(labels.size(0), device=labels.device).unsqueeze(1).expand_as(target)[sel]
    return logits.float(), target[sel], rows, hidden_states


def sequence_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: summed log p(answer tokens) and the number of answer tokens (differentiable)."""
    logits, targets, rows, _ = answer_logits(model, batch)
    tok_lp = -torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    n = batch["labels"].size(0)
    sums = torch.zeros(n, device=logits.device, dtype=tok_lp.dtype).index_add(0, rows, tok_lp)
    counts = torch.zeros(n, device=logits.device, dtype=tok_lp.dtype).index_add(0, rows, torch.ones_like(tok_lp))
    return sums, counts
