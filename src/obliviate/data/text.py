"""Text items as language-model data: MUSE's chunked unlearning / fine-tuning corpus.

A data set's rows are either QA pairs (``question`` set: the prompt format applies, only the answer is
scored) or plain texts (``question == ""``: MUSE's ``raw`` and ``privleak`` splits, and
``synthetic-news:raw/*``). Texts must NOT go through a chat template: MUSE (``baselines/baselines/
dataset.py``, ``DefaultDataset`` on a ``.txt`` file) trains on the corpus as one token stream:

1. the split's texts are one text (muse_bench's ``raw/<split>.txt`` joins the articles with a blank
   line, ``"\\n\\n"``, which is what :func:`text_chunks` joins them with);
2. it is tokenized once without special tokens;
3. cut into consecutive pieces of ``L - 1`` tokens, each prefixed with BOS (``L`` = ``--max_len``,
   2048 in MUSE's scripts); a tokenizer without a BOS token gets pieces of ``L`` tokens, no prefix
   (MUSE's ``add_bos_token=False`` branch);
4. a last chunk shorter than ``L`` is filled up from the first chunk: ``(last + first)[:L]``
   (MUSE "rotates" the tokens so every row has the same length);
5. every token is a label (MUSE's collate sets ``labels = input_ids``; the first position has nothing
   before it and is never predicted).

:func:`encode_items` is the one call that commands use in place of ``[fmt.encode(q, a) for ...]``: QA
items go through the formatter unchanged; text items become chunks of ``L = min(DEFAULT_CHUNK_TOKENS,
fmt.max_length)`` tokens, so ``--max-length`` caps the chunk length as it caps a QA row.
"""

from __future__ import annotations

from ..errors import ObliviateError
from .formatting import Encoded
from .muse import TEXT_SEPARATOR
from .schema import QAItem

__all__ = ["DEFAULT_CHUNK_TOKENS", "TEXT_SEPARATOR", "check_method_takes_texts", "encode_items", "is_text",
           "text_chunks"]

#: MUSE's ``MAX_LEN`` in ``baselines/scripts/unlearn_news.sh`` / ``unlearn_books.sh``
DEFAULT_CHUNK_TOKENS = 2048


def is_text(items: list[QAItem]) -> bool:
    """True when every item is a plain text (no question); False when every item is a QA pair."""
    texts = sum(1 for it in items if not it.question)
    if texts and texts != len(items):
        raise ObliviateError(f"the data mixes {texts} plain texts (no question) with {len(items) - texts} QA "
                             "pairs; train on one kind at a time")
    return bool(items) and texts == len(items)


def check_method_takes_texts(method: str, cls, items: list[QAItem], flag: str = "--forget") -> None:
    """Refuse, before any model loads, a method that needs a question per forget item on plain texts: idk_nll /
    idk_dpo pair each question with a refusal answer, PALU finds the sensitive tokens of each answer to its
    question; a MUSE corpus is one token stream cut into chunks, with no question and no answer to a question."""
    needs = ("a question per item, to pair with a refusal answer" if getattr(cls, "uses_idk", False) else
             "a question per item, to find the sensitive tokens of its answer" if getattr(cls, "uses_sensitive", False)
             else None)
    if needs and items and is_text(items):
        raise ObliviateError(f"{flag}: method {method} needs {needs}, and the forget set is {len(items)} plain "
                             "text(s) (MUSE's chunked corpus, no questions); unlearn texts with another method (npo, "
                             "simnpo, grad_diff, grad_ascent, rmu, ...) or give a QA forget set")


def text_chunks(tokenizer, texts: list[str], chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> list[list[int]]:
    """MUSE's chunked corpus (steps 1-4 of the module docstring): lists of ``chunk_tokens`` token ids."""
    bos = getattr(tokenizer, "bos_token_id", None)
    min_len = 2 if bos is not None else 1  # a BOS and at least one text token
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < min_len:
        raise ObliviateError(f"text chunks: the chunk length must be an integer >= {min_len}, got {chunk_tokens!r}")
    ids = tokenizer(TEXT_SEPARATOR.join(texts), add_special_tokens=False).input_ids
    if not ids:
        raise ObliviateError("text chunks: the texts have no tokens")
    step = chunk_tokens - 1 if bos is not None else chunk_tokens
    chunks = [([bos] if bos is not None else []) + ids[i:i + step] for i in range(0, len(ids), step)]
    if len(chunks[-1]) < chunk_tokens:  # MUSE rotates: fill the last row up from the first
        chunks[-1] = (chunks[-1] + chunks[0])[:chunk_tokens]
    return chunks


def encode_items(fmt, items: list[QAItem], chunk_tokens: int | None = None) -> list[Encoded]:
    """Training rows of ``items``: QA pairs through ``fmt`` (prompt masked), plain texts as MUSE chunks of
    ``min(chunk_tokens or 2048, fmt.max_length)`` tokens with every token scored."""
    if not is_text(items):
        return [fmt.encode(it.question, it.answer) for it in items]
    length = min(chunk_tokens or DEFAULT_CHUNK_TOKENS, fmt.max_length)
    return [Encoded(ids, [-100] + ids[1:], 0) for ids in text_chunks(fmt.tokenizer, [it.answer for it in items], length)]
