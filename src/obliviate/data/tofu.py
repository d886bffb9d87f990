"""The TOFU release (Maini et al. 2024, arXiv 2401.06121), from the hub or from a local folder.

Local folders hold one file per Hugging Face config, named ``<config>.json`` or ``<config>.jsonl``
(JSON Lines or a JSON array). The folder comes from ``--data-dir`` or ``OBLIVIATE_TOFU_DIR``; without
either, the hub dataset ``locuslab/TOFU`` is read with the ``datasets`` library.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ObliviateError
from ..registry import DATASETS
from .files import read_qa_file
from .hub import load_hub_dataset
from .schema import QAItem, item_from_row

HUB_ID = "locuslab/TOFU"
TOFU_CONFIGS = [
    "full",
    "forget01", "forget05", "forget10",
    "retain90", "retain95", "retain99",
    "forget01_perturbed", "forget05_perturbed", "forget10_perturbed",
    "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed",
    "holdout01", "holdout05", "holdout10",
    "real_authors", "world_facts",
]
QA_PER_AUTHOR = 20


def find_local_file(data_dir: str | Path, config: str) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ObliviateError(f"TOFU data folder {data_dir} does not exist (from --data-dir or OBLIVIATE_TOFU_DIR)")
    for suffix in (".jsonl", ".json"):
        p = data_dir / f"{config}{suffix}"
        if p.exists():
            return p
    raise ObliviateError(f"TOFU config {config!r}: no {config}.json or {config}.jsonl in {data_dir}")


def _load_hub(config: str) -> list[QAItem]:
    ds = load_hub_dataset(HUB_ID, config, "train", f"{HUB_ID} config {config!r}",
                          "pass --data-dir (or set OBLIVIATE_TOFU_DIR) with a local copy")
    return [item_from_row(dict(r), f"{HUB_ID}/{config}", i) for i, r in enumerate(ds)]


@DATASETS.register("tofu", configs=TOFU_CONFIGS, source=HUB_ID, paper="arXiv:2401.06121")
def load_tofu(config: str, data_dir: str | None = None, **_) -> list[QAItem]:
    """TOFU: 200 fictitious authors x 20 QA (Maini et al. 2024)."""
    data_dir = data_dir or os.environ.get("OBLIVIATE_TOFU_DIR")
    if data_dir:
        items = read_qa_file(find_local_file(data_dir, config))
    else:
        items = _load_hub(config)
    # TOFU files hold whole authors of 20 QA each, in order: the entity id is the author index.
    if config in ("full", "retain90", "retain95", "retain99") or config.startswith(("forget", "holdout")):
        offset = 0
        n_full = 200
        if config.startswith("forget"):
            offset = n_full - len(items) // QA_PER_AUTHOR
        elif config.startswith("holdout"):
            offset = n_full  # holdout authors are never in `full`
        for i, it in enumerate(items):
            if it.entity is None:
                it.entity = f"tofu-author-{offset + i // QA_PER_AUTHOR}"
    return items
