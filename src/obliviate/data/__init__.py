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
    """The local file a data spec reads, or None (a family's split; no spec)."""
    if not spec:
        return None
    family, config = parse_spec(spec)
    return config if family == "file" else None


def check_data_dir(data_dir: str | None, specs) -> None:
    """Refuse a ``--data-dir`` that none of ``specs`` would read (files, and data sets generated in place such
    as ``synthetic``, have no local copy to point at), instead of ignoring it."""
    specs = [s for s in specs if s]
    if data_dir is None or not specs:
        return
    readers = sorted(e.name for e in DATASETS.entries() if "data_dir" in inspect.signature(e.obj).parameters)

    def reads(spec: str) -> bool:
        family, _ = parse_spec(spec)
        return family != "file" and (family not in DATASETS.names() or family in readers)

    if not any(reads(s) for s in specs):
        raise ObliviateError(f"--data-dir only applies to data sets read from a local copy ({', '.join(readers)}); "
                             f"{', '.join(specs)} {'does' if len(specs) == 1 else 'do'} not read it")


def load_items(spec: str, data_dir: str | None = None, **options) -> list[QAItem]:
    if "+" in spec and not Path(spec).is_file():  # "A+B": A's items, then B's (a MUSE target: forget + retain)
        return [it for part in spec.split("+") for it in load_items(part, data_dir, **options)]
    family, config = parse_spec(spec)
    if family != "file" and "?" in config:
        config, _, query = config.partition("?")
        options = {**parse_options(query, spec), **options}
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
                f"valid options: {', '.join(valid) or '(none)'}"
            )
        items = entry.obj(config, data_dir=data_dir, **options)
    if not items:
        raise ObliviateError(f"data spec {spec!r} is an empty split (0 rows)")
    return items
