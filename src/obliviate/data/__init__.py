"""Data sets: one spec string -> a list of :class:`QAItem`.

Specs: ``tofu:<config>``, ``synthetic:<config>``, ``muse-news:<config>``, ``muse-books:<config>``, or a
path to a ``.jsonl`` / ``.json`` / ``.csv`` QA file. Each family registers a loader
``loader(config, data_dir=None, **options) -> list[QAItem]`` in :data:`obliviate.registry.DATASETS`
with metadata ``configs`` (the valid config names).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..errors import ObliviateError
from ..registry import DATASETS
from .files import read_qa_file
from .schema import QAItem, item_from_row

# Importing the family modules registers them.
from . import tofu  # noqa: E402,F401
from . import synthetic  # noqa: E402,F401
from . import muse  # noqa: E402,F401
from . import synthetic_news  # noqa: E402,F401

__all__ = ["QAItem", "item_from_row", "load_items", "parse_spec", "read_qa_file"]

_FILE_SUFFIXES = (".jsonl", ".json", ".csv")


def parse_options(query: str, spec: str) -> dict:
    """``n_authors=10&seed=3`` -> {"n_authors": "10", "seed": "3"} (loaders cast their own options)."""
    opts = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ObliviateError(f"data spec {spec!r}: option {part!r} is not KEY=VALUE")
        if key in opts:
            raise ObliviateError(f"data spec {spec!r}: option {key!r} given twice; keep one")
        opts[key] = value
    return opts


def parse_spec(spec: str) -> tuple[str, str]:
    """``family:config`` -> (family, config); a file path -> ("file", path).

    Options for the family's loader may follow a ``?``: ``synthetic:full?n_authors=10&seed=3``.
    :func:`load_items` also reads ``A+B`` (A's items, then B's), e.g. MUSE's target training data
    ``synthetic-news:raw/forget+synthetic-news:raw/retain1``.
    """
    if spec.lower().endswith(_FILE_SUFFIXES) or Path(spec).is_file():
        return "file", spec
    if ":" not in spec:
        raise ObliviateError(
            f"data spec {spec!r} is neither FAMILY:CONFIG nor a .jsonl/.json/.csv file; "
            f"families: {', '.join(DATASETS.names())}"
        )
    family, config = spec.split(":", 1)
    return family, config


def spec_path(spec: str | None) -> str | None:
    """The local file a data spec reads, or None (a family's split; no spec). A union names its first file."""
    if not spec:
        return None
    for part in split_union(spec):
        family, config = parse_spec(part)
        if family == "file":
            return config
    return None


def check_data_dir(data_dir: str | None, specs) -> None:
    """Refuse a ``--data-dir`` that none of ``specs`` would read (files, and data sets generated in place such
    as ``synthetic``, have no local copy to point at), instead of ignoring it."""
    specs = [p for s in specs if s for p in split_union(s)]
    if data_dir is None or not specs:
        return
    readers = sorted(e.name for e in DATASETS.entries() if "data_dir" in inspect.signature(e.obj).parameters)

    def reads(spec: str) -> bool:
        family, _ = parse_spec(spec)
        return family != "file" and (family not in DATASETS.names() or family in readers)

    if not any(reads(s) for s in specs):
        raise ObliviateError(f"--data-dir only applies to data sets read from a local copy ({', '.join(readers)}); "
                             f"{', '.join(specs)} {'does' if len(specs) == 1 else 'do'} not read it")


# Options every spec takes, handled here rather than by the family's loader.
ANSWER_CHOICES = ("true", "perturbed", "paraphrased")


def split_union(spec: str) -> list[str]:
    """``A+B`` -> [A, B]: one training set made of several specs (control models: retain90 + perturbed
    forget10). A spec that names an existing file is never split."""
    if "+" not in spec or Path(spec).is_file():
        return [spec]
    parts = spec.split("+")
    if any(not p.strip() for p in parts):
        raise ObliviateError(f"data spec {spec!r}: an empty part in a union (write A+B)")
    return [p.strip() for p in parts]


def load_items(spec: str, data_dir: str | None = None, **options) -> list[QAItem]:
    """The items of a data spec. ``A+B`` concatenates specs; ``?answers=perturbed`` (the first perturbed
    answer replaces the true one: a negative control's training set) or ``?answers=paraphrased`` (the
    paraphrased answer: a positive control's) applies to any family."""
    parts = split_union(spec)
    if len(parts) > 1:
        return [it for part in parts for it in load_items(part, data_dir=data_dir, **options)]
    family, config = parse_spec(spec)
    answers = "true"
    if family != "file" and "?" in config:
        config, _, query = config.partition("?")
        options = {**parse_options(query, spec), **options}
    if "answers" in options:
        answers = options.pop("answers")
        if answers not in ANSWER_CHOICES:
            raise ObliviateError(f"data spec {spec!r}: answers={answers!r}; valid: {', '.join(ANSWER_CHOICES)}")
    if family == "file":
        items = read_qa_file(config)
    else:
        entry = DATASETS.get(family)
        configs = entry.meta.get("configs")
        if configs is not None and config not in configs:
            raise ObliviateError(
                f"unknown {family} config {config!r}; valid configs: {', '.join(configs)}"
            )
        valid = [n for n, prm in inspect.signature(entry.obj).parameters.items()
                 if n not in ("config", "data_dir") and prm.kind is not prm.VAR_KEYWORD]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ObliviateError(
                f"data spec {spec!r}: unknown option {unknown[0]!r} for {family}; "
                f"valid options: {', '.join(valid + ['answers'])}"
            )
        if answers != "true" and configs is not None and f"{config}_perturbed" in configs:
            config = f"{config}_perturbed"  # TOFU keeps the perturbed and paraphrased answers in *_perturbed
        items = entry.obj(config, data_dir=data_dir, **options)
    if not items:
        raise ObliviateError(f"data spec {spec!r} is an empty split (0 rows)")
    if answers != "true":
        items = [_control_answer(it, answers, spec, i) for i, it in enumerate(items)]
    return items


def _control_answer(item: QAItem, answers: str, spec: str, index: int) -> QAItem:
    """The item with its answer replaced for a control model's training set; the question, its paraphrase
    and the entity are kept (a negative control has seen the forget questions but not their facts)."""
    from dataclasses import replace

    if answers == "perturbed":
        if not item.perturbed_answers:
            raise ObliviateError(f"data spec {spec!r}: row {index + 1} has no perturbed answer for answers=perturbed")
        return replace(item, answer=item.perturbed_answers[0])
    if not item.paraphrased_answer:
        raise ObliviateError(f"data spec {spec!r}: row {index + 1} has no paraphrased answer for answers=paraphrased")
    return replace(item, answer=item.paraphrased_answer)
