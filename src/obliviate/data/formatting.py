"""Formatting: the only place that turns (question, answer) into input_ids, labels and masks.

Prompt styles:
* ``chat`` (default): the tokenizer's chat template, with an optional system prompt
  (``None`` keeps the template's own default), ending with the generation prompt.
* ``plain``: the legacy ``Question: {q}\\nAnswer:`` format (answers are prefixed with a space).
* ``llama2``: ``[INST] {q} [/INST]``.

A tokenizer without a chat template falls back to ``plain`` with a warning.

The prompt and the answer are tokenized separately and concatenated, so the prompt tokens are identical
for every answer variant of a question (answer, paraphrased answer, perturbed answers) — which lets the
scoring engine encode a shared prompt once. Labels are -100 on the prompt and on padding; the answer is
followed by the EOS token, which is part of the scored answer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import ObliviateError, check_int, refuse_unused

STYLES = ("chat", "plain", "llama2")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int

    def __len__(self) -> int:
        return len(self.input_ids)


def check_format(style: str, max_length: int = 512, system_prompt: str | None = None) -> None:
    """The prompt settings a :class:`Formatter` accepts; commands call it before loading their model."""
    if style not in STYLES:
        raise ObliviateError(f"--style {style!r}: unknown prompt style; valid styles: {', '.join(STYLES)}")
    check_int("--max-length", max_length, 2)  # room for a prompt token and an answer token
    if style != "chat":  # only the chat template has a place for it
        refuse_unused([("--system-prompt", system_prompt)], f"with --style chat (--style {style} has no system turn)")


class Formatter:
    def __init__(self, tokenizer, style: str = "chat", system_prompt: str | None = None, max_length: int = 512):
        check_format(style, max_length, system_prompt)
        if style == "chat" and not getattr(tokenizer, "chat_template", None):
            warnings.warn("tokenizer has no chat template; using the plain 'Question: …\\nAnswer:' format"
                          + ("; --system-prompt is not used" if system_prompt is not None else ""))
            style = "plain"
        if tokenizer.eos_token_id is None:
            raise ObliviateError("tokenizer has no EOS token; cannot mark the end of answers")
        self.tokenizer = tokenizer
        self.style = style
        self.system_prompt = system_prompt
        self.max_length = max_length
        self._prompt_cache: dict[str, list[int]] = {}

    # -- text ---------------------------------------------------------------------------------
    def prompt_text(self, question: str) -> str:
        if self.style == "chat":
            msgs = []
            if self.system_prompt is not None:
                msgs.append({"role": "system", "content": self.system_prompt})
            msgs.append({"role": "user", "content": question})
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        bos = self.tokenizer.bos_token or "" if self._adds_bos() else ""
        if self.style == "plain":
            return f"{bos}Question: {question}\nAnswer:"
        return f"{bos}[INST] {question} [/INST]"

    def answer_text(self, answer: str) -> str:
        return " " + answer if self.style == "plain" and not answer.startswith(" ") else answer

    def _adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return False
        ids = self.tokenizer("a").input_ids
        return bool(ids) and ids[0] == bos

    # -- ids ----------------------------------------------------------------------------------
    def prompt_ids(self, question: str) -> list[int]:
        ids = self._prompt_cache.get(question)
        if ids is None:
            ids = self.tokenizer(self.prompt_text(question), add_special_tokens=False).input_ids
            self._prompt_cache[question] = ids
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        ids = self.tokenizer(self.answer_text(answer), add_special_tokens=False).input_ids
        return ids + [self.tokenizer.eos_token_id]

    def encode(self, question: str, answer: str) -> Encoded:
        p = self.prompt_ids(question)
        a = self.answer_ids(answer)
        if len(p) >= self.max_length:
            raise ObliviateError(
                f"--max-length {self.max_length}: the prompt of {question[:60]!r}… is {len(p)} tokens (with the "
                f"template), which leaves no room for its answer; raise --max-length"
            )
        a = a[: self.max_length - len(p)]  # truncate long answers (the EOS may be cut)
        return Encoded(p + a, [-100] * len(p) + a, len(p))


def collate(batch: list[Encoded], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad to the longest sequence; the attention mask comes from the lengths, never from pad ids."""
    if pad_id is None:
        raise ObliviateError("tokenizer has no pad token")
    n, t = len(batch), max(len(e) for e in batch)
    input_ids = torch.full((n, t), pad_id, dtype=torch.long)
    labels = torch.full((n, t), -100, dtype=torch.long)
    attn = torch.zeros((n, t), dtype=torch.long)
    for i, e in enumerate(batch):
        L = len(e)
        sl = slice(0, L) if side == "right" else slice(t - L, t)
        input_ids[i, sl] = torch.tensor(e.input_ids)
        labels[i, sl] = torch.tensor(e.labels)
        attn[i, sl] = 1
    return {"input_ids": input_ids, "attention_mask": attn, "labels": labels}


def conversation_text(formatter: Formatter, turns: list[tuple[str, str]], question: str) -> str:
    """The prompt of a multi-turn chat: earlier ``(user, assistant)`` turns, then ``question`` with the generation
    prompt (the audit's chain of clues). Chat style: the tokenizer's template with the formatter's system prompt;
    ``plain`` / ``llama2``: the single-turn prompts of each turn, answers after them, one turn per paragraph."""
    if formatter.style == "chat":
        msgs = [] if formatter.system_prompt is None else [{"role": "system", "content": formatter.system_prompt}]
        for user, assistant in turns:
            msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        msgs.append({"role": "user", "content": question})
        return formatter.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    text = ""
    for user, assistant in turns:
        text += formatter.prompt_text(user) + formatter.answer_text(assistant) + "\n\n"
    last = formatter.prompt_text(question)
    bos = formatter.tokenizer.bos_token or ""
    if text and bos and last.startswith(bos):  # one BOS, at the start of the conversation
        last = last[len(bos):]
    return text + last
