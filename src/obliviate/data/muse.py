"""The MUSE benchmark (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language
Models", arXiv 2407.06460), from the hub or from a local folder.

Two corpora, each a data-set family: ``muse-news`` (hub ``muse-bench/MUSE-News``, BBC news) and
``muse-books`` (hub ``muse-bench/MUSE-Books``, Harry Potter). A config name is ``<config>/<split>``:

=============  ================================================  ==================  =====================
hub config     splits                                            hub fields          QAItem
=============  ================================================  ==================  =====================
``raw``        forget, retain1, retain2, holdout                 text                question="", answer=text
``verbmem``    forget                                            prompt, gt          question=prompt, answer=gt
``knowmem``    forget_qa, retain_qa, forget_qa_icl, retain_qa_icl question, answer   question, answer
``privleak``   forget, retain, holdout                           text                question="", answer=text
``scal``       forget_1 .. forget_4 (MUSE-News only)             text                question="", answer=text
``sust``       forget_1 .. forget_4 (MUSE-News only)             text                question="", answer=text
=============  ================================================  ==================  =====================

``scal`` / ``sust`` are MUSE-News's scalability and sustainability folds (forget sets of growing size;
successive unlearning requests), read like ``raw``.

e.g. ``muse-news:knowmem/forget_qa``, ``muse-news:verbmem/forget``, ``muse-books:raw/forget``,
``muse-news:privleak/holdout``.

Local folder (``--data-dir`` or ``OBLIVIATE_MUSE_DIR``)::

    <dir>/<config>/<split>.jsonl      (or .json: JSON Lines or a JSON array of objects; for raw, privleak,
                                       scal and sust also a JSON array of strings, as muse_bench writes them)
    <dir>/raw/<split>.txt             (raw, scal, sust: the whole file is one text, as in the muse_bench repo;
                                       a .jsonl / .json of the same split is read first)

Because one environment variable serves both corpora, ``<dir>/news/<config>/...`` (for ``muse-news``)
and ``<dir>/books/<config>/...`` (for ``muse-books``) are used when ``<dir>/<config>`` does not exist,
so the ``data/`` folder of the muse_bench repository can be pointed at directly. Without a folder the
hub is read with ``datasets.load_dataset(hub_id, config, split=split)``.

Text rows (``raw``, ``privleak``, ``scal``, ``sust``) have no question: they become ``QAItem(question="",
answer=text)``; consumers treat the answer as a plain document. Empty ``raw`` / ``scal`` / ``sust`` texts are
skipped (they add no tokens to the concatenated unlearning corpus); empty fields anywhere else are errors.

Also here: :func:`chunk_text` (MUSE's unlearning corpus: concatenate the tokenized texts, cut into
fixed-size chunks, 2048 tokens in the paper), :func:`knowmem_prompt` (the KnowMem few-shot prompt) and
:data:`MUSE_RETRAIN_PRIVLEAK_AUC` (the retrained models' AUCs that PrivLeak is relative to).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ObliviateError
from ..registry import DATASETS
from .files import read_rows
from .hub import load_hub_dataset
from .schema import QAItem

PAPER = "arXiv:2407.06460"
ENV_VAR = "OBLIVIATE_MUSE_DIR"

#: family name -> hub data set id
MUSE_HUB_IDS = {
    "muse-news": "muse-bench/MUSE-News",
    "muse-books": "muse-bench/MUSE-Books",
}
# family name -> sub-folder name in the muse_bench repository's data/ folder
_CORPUS_DIRS = {"muse-news": "news", "muse-books": "books"}

#: hub config -> its splits
MUSE_SPLITS: dict[str, tuple[str, ...]] = {
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
}
#: valid ``<config>/<split>`` names of both corpora
MUSE_CONFIGS = [f"{config}/{split}" for config, splits in MUSE_SPLITS.items() for split in splits]
#: MUSE-News only: the scalability / sustainability folds (hub configs ``scal`` / ``sust``; muse_bench's
#: ``load_data.py`` writes ``data/news/<crit>/forget_<k>.json`` and ``.txt``)
N_FOLDS = 4
FOLD_SPLITS: dict[str, tuple[str, ...]] = {c: tuple(f"forget_{k}" for k in range(1, N_FOLDS + 1))
                                           for c in ("scal", "sust")}
FOLD_CONFIGS = [f"{config}/{split}" for config, splits in FOLD_SPLITS.items() for split in splits]
#: hub config -> (field read as the question or None, field read as the answer): what the hub rows and a
#: JSON Lines copy carry
HUB_FIELDS: dict[str, tuple[str | None, str]] = {
    "raw": (None, "text"),
    "verbmem": ("prompt", "gt"),
    "knowmem": ("question", "answer"),
    "privleak": (None, "text"),
    "scal": (None, "text"),
    "sust": (None, "text"),
}
#: configs whose rows are pieces of one training corpus: an empty text is skipped, a .txt file is one text
TEXT_CORPUS_CONFIGS = ("raw", *FOLD_SPLITS)
#: how muse_bench's ``load_data.py`` joins a split's texts into its ``.txt`` twin (``raw/<split>.txt``)
TEXT_SEPARATOR = "\n\n"


def family_configs(family: str) -> list[str]:
    """The ``<config>/<split>`` names of one MUSE corpus (MUSE-News adds the ``scal`` / ``sust`` folds)."""
    return MUSE_CONFIGS + (FOLD_CONFIGS if family == "muse-news" else [])


# PrivLeak = (AUC_unlearned - AUC_retrain) / AUC_retrain * 100, with AUC the ROC-AUC of Min-K% (k = 40%)
# scores separating the privleak `forget` split from the `holdout` split. MUSE hard-codes the retrained
# model's AUC (muse_bench constants.py, AUC_RETRAIN[corpus]["forget_holdout_Min-40%"]: News 0.47719...,
# Books 0.53929...); these are those values rounded to four digits.
MUSE_RETRAIN_PRIVLEAK_AUC = {"muse-news": 0.4772, "muse-books": 0.5393}


def _split_config(family: str, config: str) -> tuple[str, str]:
    valid = family_configs(family)
    if config not in valid:
        raise ObliviateError(f"unknown {family} config {config!r}; valid configs: {', '.join(valid)}")
    hub_config, split = config.split("/", 1)
    return hub_config, split


def find_local_file(data_dir: str | Path, config: str, family: str = "muse-news") -> Path:
    """The file holding ``<config>/<split>`` under ``data_dir`` (see the module docstring)."""
    hub_config, split = _split_config(family, config)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ObliviateError(f"MUSE data folder {data_dir} does not exist (from --data-dir or {ENV_VAR})")
    base = data_dir
    corpus_dir = data_dir / _CORPUS_DIRS.get(family, "")
    if not (data_dir / hub_config).is_dir() and (corpus_dir / hub_config).is_dir():
        base = corpus_dir
    suffixes = (".jsonl", ".json", ".txt") if hub_config in TEXT_CORPUS_CONFIGS else (".jsonl", ".json")
    for suffix in suffixes:
        p = base / hub_config / f"{split}{suffix}"
        if p.is_file():
            return p
    tried = " or ".join(f"{hub_config}/{split}{s}" for s in suffixes)
    raise ObliviateError(f"{family} config {config!r}: no {tried} in {base}")


def _text_field(row: dict, name: str, where: str, allow_empty: bool = False) -> str:
    if name not in row or row[name] is None:
        present = ", ".join(sorted(map(str, row))) or "(none)"
        raise ObliviateError(f"{where}: missing field {name!r} (fields present: {present})")
    value = row[name]
    if not isinstance(value, str):
        raise ObliviateError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ObliviateError(f"{where}: field {name!r} is empty")
    return value


def items_from_rows(rows: list[Any], hub_config: str, source: str) -> list[QAItem]:
    """Validate raw MUSE rows of one hub config and map them into :class:`QAItem`.

    Errors name ``source`` (a file or hub split), the row (1-based) and the field.
    """
    if hub_config not in HUB_FIELDS:
        raise ObliviateError(f"unknown MUSE config {hub_config!r}; valid: {', '.join(HUB_FIELDS)}")
    q_field, a_field = HUB_FIELDS[hub_config]
    items: list[QAItem] = []
    for i, row in enumerate(rows):
        where = f"{source}: row {i + 1}"
        if isinstance(row, str) and q_field is None:  # muse_bench's raw/privleak .json: an array of strings
            row = {a_field: row}
        if not isinstance(row, Mapping):
            wanted = " and ".join(repr(f) for f in (q_field, a_field) if f)
            raise ObliviateError(f"{where}: expected an object with {wanted}, got {type(row).__name__}")
        row = dict(row)
        if q_field is None:
            text = _text_field(row, a_field, where, allow_empty=hub_config in TEXT_CORPUS_CONFIGS)
            if not text.strip():  # raw / scal / sust only: contributes nothing to the concatenated corpus
                continue
            items.append(QAItem(question="", answer=text))
        else:
            question = _text_field(row, q_field, where)
            answer = _text_field(row, a_field, where)
            items.append(QAItem(question=question, answer=answer))
    return items


def read_local(path: str | Path, hub_config: str) -> list[QAItem]:
    """Read one local MUSE file (.jsonl / .json, or a raw .txt that is one whole text)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ObliviateError(f"{path}: the file is empty (empty split)")
        return [QAItem(question="", answer=text)]
    rows = read_rows(path)
    if not isinstance(rows, list):
        raise ObliviateError(f"{path}: expected JSON Lines or a JSON array of objects")
    if not rows:
        raise ObliviateError(f"{path}: the file has no rows (empty split)")
    return items_from_rows(rows, hub_config, str(path))


def _load_hub(hub_id: str, hub_config: str, split: str) -> list[QAItem]:
    ds = load_hub_dataset(hub_id, hub_config, split, f"{hub_id} config {hub_config!r} split {split!r}",
                          f"pass --data-dir (or set {ENV_VAR}) with a local copy")
    return items_from_rows([dict(r) for r in ds], hub_config, f"{hub_id} {hub_config}/{split}")


def load_muse(family: str, config: str, data_dir: str | Path | None = None) -> list[QAItem]:
    """Load ``<config>/<split>`` of one MUSE corpus (``muse-news`` or ``muse-books``)."""
    if family not in MUSE_HUB_IDS:
        raise ObliviateError(f"unknown MUSE corpus {family!r}; valid: {', '.join(MUSE_HUB_IDS)}")
    hub_config, split = _split_config(family, config)
    data_dir = data_dir or os.environ.get(ENV_VAR)
    if data_dir:
        return read_local(find_local_file(data_dir, config, family), hub_config)
    return _load_hub(MUSE_HUB_IDS[family], hub_config, split)


@DATASETS.register("muse-news", configs=MUSE_CONFIGS + FOLD_CONFIGS, source=MUSE_HUB_IDS["muse-news"], paper=PAPER)
def load_muse_news(config: str, data_dir: str | None = None, **_) -> list[QAItem]:
    """MUSE-News: BBC news articles to unlearn, with VerbMem/KnowMem/PrivLeak sets (Shi et al. 2024)."""
    return load_muse("muse-news", config, data_dir)


@DATASETS.register("muse-books", configs=MUSE_CONFIGS, source=MUSE_HUB_IDS["muse-books"], paper=PAPER)
def load_muse_books(config: str, data_dir: str | None = None, **_) -> list[QAItem]:
    """MUSE-Books: the Harry Potter books to unlearn, with VerbMem/KnowMem/PrivLeak sets (Shi et al. 2024)."""
    return load_muse("muse-books", config, data_dir)


def _encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (BOS/EOS), from a HF tokenizer or a look-alike."""
    fn = getattr(tokenizer, "encode", None)
    if fn is None:
        if not callable(tokenizer):
            raise ObliviateError(f"chunk_text: tokenizer {type(tokenizer).__name__} has no encode() and is not callable")
        fn = tokenizer
    try:
        out = fn(text, add_special_tokens=False)
    except TypeError:  # a tokenizer without the keyword
        out = fn(text)
    if isinstance(out, Mapping) or hasattr(out, "keys"):
        out = out["input_ids"]
    elif hasattr(out, "input_ids"):
        out = out.input_ids
    if hasattr(out, "tolist"):
        out = out.tolist()
    if out and isinstance(out[0], list):  # a batch of one
        out = out[0]
    return [int(t) for t in out]


def chunk_text(texts: list[str], tokenizer, chunk_tokens: int = 2048, *, drop_last: bool = False) -> list[list[int]]:
    """MUSE's unlearning corpus: tokenize each text (no special tokens), concatenate the token ids in
    order, and cut them into consecutive chunks of ``chunk_tokens`` ids (2048 in the paper).

    The last chunk is shorter when the total is not a multiple of ``chunk_tokens``; ``drop_last=True``
    drops it. ``tokenizer`` is a Hugging Face tokenizer or anything with ``encode(text)`` or
    ``__call__(text)`` returning ids (or a mapping with ``input_ids``).
    """
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ObliviateError(f"chunk_text: chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    if isinstance(texts, str):
        raise ObliviateError("chunk_text: texts must be a list of strings, got one string")
    ids: list[int] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ObliviateError(f"chunk_text: texts[{i}] must be a string, got {type(text).__name__}")
        ids.extend(_encode(tokenizer, text))
    chunks = [ids[i:i + chunk_tokens] for i in range(0, len(ids), chunk_tokens)]
    if drop_last and chunks and len(chunks[-1]) < chunk_tokens:
        chunks.pop()
    return chunks


def knowmem_prompt(icl: list[QAItem], question: str, trailing_space: bool = True) -> str:
    """MUSE's KnowMem few-shot prompt: ``Question: q\\nAnswer: a\\n\\n`` for each in-context pair (the
    ``knowmem/*_qa_icl`` split), then ``Question: {question}\\nAnswer: `` — with the trailing space MUSE's
    metrics/knowmem.py:29 writes (``trailing_space=False``: obliviate's former ``Answer:``)."""
    shots = "".join(f"Question: {ex.question}\nAnswer: {ex.answer}\n\n" for ex in icl)
    return f"{shots}Question: {question}\nAnswer:" + (" " if trailing_space else "")


# -- how MUSE's evaluation encodes its texts (muse_bench fcd6651, metrics/*.py) ---------------------------------
# MUSE encodes every prompt and text with the tokenizer's special tokens (BOS on Llama-2): verbmem.py:15-19
# (prompt) and :22 (gt), knowmem.py:32-35, privleak.py:14 (``tokenizer.encode(text)``). PrivLeak scores every
# token after the first id (privleak.py:22, ``input_ids[0][1:]``): with a BOS that is every text token; without
# one (obliviate's former rule, ``special_tokens=False``) the first text token is the prompt and is not scored.

def muse_ids(tokenizer, text: str, special_tokens: bool = True) -> list[int]:
    """Token ids of ``text`` as MUSE encodes it (``special_tokens=True``: BOS where the tokenizer adds one)."""
    return list(tokenizer(text, add_special_tokens=special_tokens).input_ids)


def verbmem_reference(tokenizer, gt: str, max_tokens: int = 128, special_tokens: bool = True) -> str:
    """The VerbMem reference continuation: ``gt`` encoded, cut to ``max_tokens`` ids, decoded without special
    tokens (verbmem.py:22,35-38). With special tokens the BOS is one of the ``max_tokens`` ids, so 127 text
    tokens remain, as in MUSE."""
    return tokenizer.decode(muse_ids(tokenizer, gt, special_tokens)[:max_tokens], skip_special_tokens=True,
                            clean_up_tokenization_spaces=True)


def privleak_pair(tokenizer, text: str, special_tokens: bool = True, max_tokens: int | None = None,
                  where: str = "privleak text") -> tuple[list[int], list[int]]:
    """(prompt ids, scored ids) of one PrivLeak text: the encoded text, cut at ``max_tokens`` when given (MUSE:
    never), split after its first id (privleak.py:22). With MUSE's BOS the prompt is the BOS and every text
    token is scored."""
    ids = muse_ids(tokenizer, text, special_tokens)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if len(ids) < 2:
        raise ObliviateError(f"{where}: fewer than 2 tokens after encoding; nothing to score")
    return ids[:1], ids[1:]
