"""Formatting: the only place that turns (question, answer) into input_ids, labels and masks.

Prompt styles:
* ``chat`` (default): the tokenizer's chat template, with an optional system prompt
  (``None`` keeps the template's own default), ending with the generation prompt.
* ``plain``: the legacy ``Question: {q}\\nAnswer:`` format (answers are prefixed with a space).
* ``llama2``: ``[INST] {q} [/INST]``.

A tokenizer without a chat template falls back to ``plain`` with a warning.

By default the prompt and the answer are tokenized separately and concatenated, so the prompt tokens are
identical for every answer variant of a question (answer, paraphrased answer, perturbed answers) — which lets
the scoring engine encode a shared prompt once. Labels are -100 on the prompt and on padding; the answer is
followed by the EOS token, which is part of the scored answer.

Protocol options (keyword arguments; see :mod:`obliviate.protocols` for where each comes from):

* ``date_string`` (default ``"10 Apr 2025"``, open-unlearning's): passed to ``apply_chat_template``, so a
  Llama-3-style template never writes today's date (a template that calls ``strftime_now`` without reading
  ``date_string`` cannot be pinned this way: the formatter warns).
* ``joint=True``: the reference rule — tokenize ``prompt + answer`` as one text and let the first
  ``len(tokenize(prompt))`` tokens be the prompt (open-unlearning src/data/utils.py:99-124, TOFU
  data_module.py:13-30); an EOS is appended when the sequence does not already end with one. With the chat
  style the whole conversation (assistant turn included) is rendered by the template. The prompt the model
  sees is then that sequence's first tokens, which can differ from the prompt tokenized alone when a
  tokenizer merges across the boundary (``boundary_mismatches`` counts such pairs).
* ``plain_trailing_space=True``: ``Question: q\\nAnswer: `` (open-unlearning's phi / Llama-2 configs),
  the answer without a leading space.
* ``score_answer_tag=True`` (TOFU): the prompt is ``Question: q\\n`` and ``Answer: `` + answer is scored;
  generation continues ``Question: q\\n`` too (TOFU evaluate_util.py:307-312).

Answers cut by ``max_length`` are counted (``truncated_answers``), so a caller can report how many.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime

import torch

from ..errors import ObliviateError, check_int, refuse_unused

STYLES = ("chat", "plain", "llama2")
#: open-unlearning's fixed chat-template date (configs/model/Llama-3.2-1B-Instruct.yaml:15)
DEFAULT_DATE_STRING = "10 Apr 2025"
PAD_MASKS = ("correct", "eos")


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
    def __init__(self, tokenizer, style: str = "chat", system_prompt: str | None = None, max_length: int = 512, *,
                 date_string: str | None = DEFAULT_DATE_STRING, joint: bool = False,
                 plain_trailing_space: bool = False, score_answer_tag: bool = False):
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
        self.date_string = date_string
        self.joint = joint
        self.plain_trailing_space = plain_trailing_space
        self.score_answer_tag = score_answer_tag
        self._template_vars = _template_vars(date_string)
        if style == "chat":
            _warn_if_dated(tokenizer.chat_template, date_string)
        self._prompt_cache: dict[str, list[int]] = {}
        self._truncated: set[tuple[str, str]] = set()
        self._mismatched: set[tuple[str, str]] = set()

    @classmethod
    def from_protocol(cls, tokenizer, protocol, **overrides) -> "Formatter":
        """The formatter a :class:`obliviate.protocols.Protocol` describes (``overrides`` replace its kwargs)."""
        return cls(tokenizer, **{**protocol.formatter_kwargs(), **overrides})

    @property
    def truncated_answers(self) -> int:
        """How many distinct (question, answer) pairs had their answer cut by ``max_length``."""
        return len(self._truncated)

    @property
    def boundary_mismatches(self) -> int:
        """Joint tokenization only: pairs whose first ``len(prompt)`` tokens differ from the prompt alone."""
        return len(self._mismatched)

    # -- text ---------------------------------------------------------------------------------
    def _messages(self, question: str, answer: str | None = None) -> list[dict]:
        msgs = []
        if self.system_prompt is not None:
            msgs.append({"role": "system", "content": self.system_prompt})
        msgs.append({"role": "user", "content": question})
        if answer is not None:
            msgs.append({"role": "assistant", "content": answer})
        return msgs

    def prompt_text(self, question: str) -> str:
        """The prompt whose tokens precede the scored answer (legacy styles: BOS written as text)."""
        if self.style == "chat":
            return self.tokenizer.apply_chat_template(self._messages(question), tokenize=False,
                                                      add_generation_prompt=True, **self._template_vars)
        bos = self.tokenizer.bos_token or "" if self._adds_bos() else ""
        return bos + self._legacy_prompt(question)

    def _legacy_prompt(self, question: str) -> str:
        if self.style == "plain":
            if self.score_answer_tag:
                return f"Question: {question}\n"
            return f"Question: {question}\nAnswer:" + (" " if self.plain_trailing_space else "")
        return f"[INST] {question} [/INST]"

    def generation_prompt_text(self, question: str) -> str:
        """The prompt greedy answers continue: :meth:`prompt_text`. (With ``score_answer_tag`` that is TOFU's
        ``Question: q\\n``: its run_generation splits the input at ``Answer: `` and, for phi, does not put it
        back, evaluate_util.py:307-312, so the model writes ``Answer: ...`` itself.)"""
        return self.prompt_text(question)

    def generation_prompt_ids(self, question: str) -> list[int]:
        """Token ids of :meth:`generation_prompt_text` as the reference encodes them."""
        if self.joint and self.style != "chat":
            return self.tokenizer(self._legacy_prompt(question), add_special_tokens=True).input_ids
        return self.tokenizer(self.generation_prompt_text(question), add_special_tokens=False).input_ids

    def answer_text(self, answer: str) -> str:
        if self.style == "plain":
            if self.score_answer_tag:
                return "Answer: " + answer
            if not self.plain_trailing_space and not answer.startswith(" "):
                return " " + answer
        return answer

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
            if self.joint and self.style != "chat":  # the reference: tokenizer(prompt, add_special_tokens=True)
                ids = self.tokenizer(self._legacy_prompt(question), add_special_tokens=True).input_ids
            else:
                ids = self.tokenizer(self.prompt_text(question), add_special_tokens=False).input_ids
            self._prompt_cache[question] = ids
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        """The answer tokenized on its own, EOS appended (the separate-tokenization rule)."""
        ids = self.tokenizer(self.answer_text(answer), add_special_tokens=False).input_ids
        return ids + [self.tokenizer.eos_token_id]

    def _joint_ids(self, question: str, answer: str) -> list[int]:
        if self.style == "chat":
            text = self.tokenizer.apply_chat_template(self._messages(question, answer), tokenize=False,
                                                      add_generation_prompt=False, **self._template_vars)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        else:  # open-unlearning src/data/utils.py:99-104, TOFU data_module.py:15-19: special tokens added
            ids = self.tokenizer(self._legacy_prompt(question) + self.answer_text(answer), add_special_tokens=True).input_ids
        if not ids or ids[-1] != self.tokenizer.eos_token_id:  # open-unlearning src/data/utils.py:113-114
            ids = ids + [self.tokenizer.eos_token_id]
        return ids

    def pair_ids(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(prompt ids, answer ids with EOS) as the model sees them, the answer cut to ``max_length``."""
        p = self.prompt_ids(question)
        if self.joint:
            full = self._joint_ids(question, answer)
            if full[: len(p)] != p:
                self._mismatched.add((question, answer))
            p, a = full[: len(p)], full[len(p):]
        else:
            a = self.answer_ids(answer)
        if len(p) >= self.max_length:
            raise ObliviateError(
                f"--max-length {self.max_length}: the prompt of {question[:60]!r}… is {len(p)} tokens (with the "
                f"template), which leaves no room for its answer; raise --max-length"
            )
        if len(p) + len(a) > self.max_length:  # long answers are cut (the EOS may be cut) and counted
            self._truncated.add((question, answer))
            a = a[: self.max_length - len(p)]
        return p, a

    def encode(self, question: str, answer: str) -> Encoded:
        p, a = self.pair_ids(question, answer)
        return Encoded(p + a, [-100] * len(p) + a, len(p))

    def answer_offsets(self, question: str, answer: str) -> list[tuple[int, int]]:
        """Per token of ``pair_ids(question, answer)[1]`` (the scored answer tokens, as this formatter makes them):
        its character span in ``answer`` itself. Tokens that hold no answer character (EOS, a chat turn's end,
        TOFU's scored ``Answer: ``) get spans outside ``[0, len(answer))``; a token merged across the prompt/answer
        boundary under joint tokenization starts before 0. PALU's sensitive mask and the audit's probe position
        read answer characters through this, so they land on the tokens the protocol scores."""
        p, a = self.pair_ids(question, answer)
        tok = self.tokenizer
        if self.joint:
            if self.style == "chat":
                text = tok.apply_chat_template(self._messages(question, answer), tokenize=False,
                                               add_generation_prompt=False, **self._template_vars)
                special = False
                # the answer is written after the part the conversation shares with the prompt alone
                head = len(_common_prefix(text, self.prompt_text(question)))
                start = text.find(answer, head)
                if start < 0 and answer.strip():  # a template that trims the message
                    start = text.find(answer.strip(), head) - (len(answer) - len(answer.lstrip()))
                if start < 0:
                    raise ObliviateError(f"the chat template does not write the answer {answer[:40]!r} verbatim; "
                                         "its tokens cannot be located (use a protocol without joint tokenization)")
            else:
                text, special = self._legacy_prompt(question) + self.answer_text(answer), True
                start = len(text) - len(answer)
            enc = tok(text, add_special_tokens=special, return_offsets_mapping=True)
            offs = [tuple(o) for o in enc["offset_mapping"]][len(p):]
        else:
            text = self.answer_text(answer)
            start = len(text) - len(answer)  # a prefix the style puts before the answer (a space)
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            offs = [tuple(o) for o in enc["offset_mapping"]]
        end = len(text)
        offs = [(s - start, e - start) for s, e in offs]
        offs += [(end - start, end - start)] * (len(a) - len(offs))  # an appended EOS holds no character
        return offs[: len(a)]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def _template_vars(date_string: str | None) -> dict:
    """Chat-template variables that pin the date (Llama-3.x templates read ``date_string`` and fall back to
    ``strftime_now``, i.e. today, without it)."""
    return {} if date_string is None else {"date_string": date_string}


def _warn_if_dated(template: str | None, date_string: str | None) -> None:
    # transformers renders `strftime_now` from the clock and a template variable cannot replace it: a template
    # that calls it without reading `date_string` writes today's date whatever we pass.
    if template and "strftime_now" in template and ("date_string" not in template or date_string is None):
        warnings.warn("the chat template writes today's date (strftime_now)"
                      + (" and reads no date_string" if date_string is not None else " and no --date-string is set")
                      + ": its prompts change from day to day, so evaluations on different days are not comparable")


def collate(batch: list[Encoded], pad_id: int, side: str = "right", *, pad_mask: str = "correct",
            eos_id: int | None = None) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence; the attention mask comes from the lengths, never from pad ids.

    ``pad_mask="eos"`` is open-unlearning's bug, reproduced on request: pad with ``eos_id`` and build the mask
    as ``input_ids != eos_id`` (src/data/collators.py:48-49 with pad = EOS), which also hides every EOS-valued
    token inside a sequence (the answer's own EOS, a chat turn's end token when it is the EOS)."""
    if pad_mask not in PAD_MASKS:
        raise ObliviateError(f"pad_mask {pad_mask!r}: expected one of {', '.join(PAD_MASKS)}")
    if pad_mask == "eos":
        if eos_id is None:
            raise ObliviateError("pad_mask 'eos' needs the tokenizer's EOS id")
        pad_id = eos_id
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
    if pad_mask == "eos":
        attn = (input_ids != pad_id).long()
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
        return formatter.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                                       **getattr(formatter, "_template_vars", {}))  # the same date
    text = ""
    for user, assistant in turns:
        text += formatter.prompt_text(user) + formatter.answer_text(assistant) + "\n\n"
    last = formatter.prompt_text(question)
    bos = formatter.tokenizer.bos_token or ""
    if text and bos and last.startswith(bos):  # one BOS, at the start of the conversation
        last = last[len(bos):]
    return text + last
