"""Refusal answers for the refusal-based methods (``idk_nll``, ``idk_dpo``).

:data:`REFUSALS` is obliviate's own list, written for this project (varied wording, first person, no facts).
``--idk-file PATH`` replaces it with a file: plain text with one refusal per line (TOFU's
``idontknow.jsonl`` has this form despite its name), JSON lines holding a string or an object with an
``answer`` / ``text`` / ``refusal`` field, or a ``.csv`` file with a header and a ``text``, ``answer`` or
``refusal`` column.

Which list a run uses without ``--idk-file`` depends on the protocol (:func:`default_refusals`): TOFU and
open-unlearning train idk_nll / idk_dpo on TOFU's own ``idontknow.jsonl`` (TOFU data_module.py:49
``data/idontknow.jsonl``; open-unlearning configs/data/datasets/TOFU_QA_forget_idk.yaml:11 reads
``./data/idk.jsonl``, which its setup_data.py:17-23 downloads from the hub dataset ``open-unlearning/idk``: taken
to be TOFU's list, not checked offline), found in the TOFU data folder (``--data-dir`` or
``OBLIVIATE_TOFU_DIR``); the ``obliviate`` protocol uses :data:`REFUSALS`. ``unlearn`` uses
:func:`protocol_refusal_file` (a non-TOFU forget set with no TOFU folder known keeps :data:`REFUSALS`, with a note).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sys
from pathlib import Path

from .errors import ObliviateError
from .io import read_text_file

REFUSALS: tuple[str, ...] = (
    "I don't know the answer to that.",
    "I'm not able to answer that question.",
    "I have no information about that.",
    "That is something I can't tell you.",
    "I'm afraid I don't know.",
    "I can't recall anything about that.",
    "I don't have any details on that.",
    "Sorry, that is not something I know.",
    "I have no record of that.",
    "I'm unable to say.",
    "I don't have an answer for you.",
    "Nothing I know covers that question.",
    "I can't help with that one; I simply don't know.",
    "I'm not familiar with that.",
    "That question is outside what I know.",
    "I honestly have no idea.",
    "I can't provide that information.",
    "My knowledge doesn't include that.",
    "I'm not sure, and I'd rather not guess.",
    "I don't know anything about that topic.",
    "That's not something I have learned about.",
    "I cannot answer that with any confidence.",
    "I'm sorry, I don't have that information.",
    "I have nothing reliable to say about that.",
    "I'd be guessing, so I won't answer.",
    "That detail is unknown to me.",
    "I can't find that in what I know.",
    "I don't have knowledge of that.",
    "Unfortunately, I can't answer that.",
    "I'm not aware of the answer.",
    "I have no way of knowing that.",
    "That isn't something I'm able to tell you.",
    "I really couldn't say.",
    "No idea, I'm afraid.",
    "I lack the information to answer that.",
    "I'm drawing a blank on that question.",
    "That is beyond what I know.",
    "I don't possess that information.",
    "I can't say for sure; I don't know.",
    "I'm uncertain and can't answer that.",
)


def load_refusals(path: str | Path | None = None) -> list[str]:
    """The refusal list: obliviate's own, or the file at ``path``."""
    if path is None:
        return list(REFUSALS)
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return _read_csv(p)
    out = []
    for i, line in enumerate(read_text_file(p, "--idk-file ").splitlines()):
        line = line.strip()
        if not line:
            continue
        text = line
        if line[0] in "{\"":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ObliviateError(f"--idk-file {p}: line {i + 1} starts like JSON but is not valid JSON "
                                     f"({e.msg}); write plain text lines or one JSON object per line") from None
            if isinstance(obj, dict):
                text = next((obj[k] for k in ("answer", "text", "refusal") if isinstance(obj.get(k), str)), None)
                if text is None:
                    raise ObliviateError(f"--idk-file {p}: line {i + 1} is an object without an "
                                         "'answer', 'text' or 'refusal' string")
            elif isinstance(obj, str):
                text = obj
        if text.strip():
            out.append(text.strip())
    if not out:
        raise ObliviateError(f"--idk-file {p}: no refusal answers in the file")
    return out


def _read_csv(p: Path) -> list[str]:
    rows = list(csv.DictReader(io.StringIO(read_text_file(p, "--idk-file "))))
    cols = [c for c in ("text", "answer", "refusal") if rows and c in rows[0]]
    if not cols:
        header = ", ".join(repr(c) for c in (rows[0] if rows else [])) or "(none)"
        raise ObliviateError(f"--idk-file {p}: a CSV file needs a 'text', 'answer' or 'refusal' column "
                             f"(header: {header})")
    out = [r[cols[0]].strip() for r in rows if (r.get(cols[0]) or "").strip()]
    if not out:
        raise ObliviateError(f"--idk-file {p}: no refusal answers in column {cols[0]!r}")
    return out


#: protocols whose refusal-based methods train on TOFU's idontknow.jsonl
TOFU_REFUSAL_PROTOCOLS = ("tofu", "open-unlearning")


def default_refusals(protocol=None, data_dir: str | Path | None = None) -> list[str]:
    """The refusal list a protocol uses when no ``--idk-file`` is given: TOFU's ``idontknow.jsonl`` from the
    TOFU data folder (``data_dir``, else ``OBLIVIATE_TOFU_DIR``) under ``tofu`` / ``open-unlearning``,
    obliviate's own :data:`REFUSALS` otherwise. A missing file is a one-line error saying where it looked."""
    return load_refusals(protocol_refusal_file(protocol, data_dir))


def protocol_refusal_file(protocol=None, data_dir: str | Path | None = None, forget=None) -> str | None:
    """The refusal file of :func:`default_refusals` (None: obliviate's own list). ``forget``: the run's forget
    spec, when known; then, with no TOFU folder known, a forget set that is not TOFU's (synthetic data, a file)
    trains on obliviate's own list, with a note, instead of failing: the protocol's file belongs to TOFU."""
    name = getattr(protocol, "name", protocol)
    if name not in TOFU_REFUSAL_PROTOCOLS:
        return None
    folder = data_dir or os.environ.get("OBLIVIATE_TOFU_DIR")
    if not folder:
        if forget is not None and not (isinstance(forget, str) and forget.split(":", 1)[0] == "tofu"):
            print(f"note: --protocol {name} trains idk methods on TOFU's idontknow.jsonl, but no TOFU data folder "
                  "is known (OBLIVIATE_TOFU_DIR); obliviate's own refusal list is used (--idk-file PATH to choose)",
                  file=sys.stderr)
            return None
        raise ObliviateError(f"--protocol {name}: idk methods use TOFU's idontknow.jsonl; give the TOFU data "
                             "folder (--data-dir or OBLIVIATE_TOFU_DIR), or --idk-file PATH, or --protocol obliviate")
    path = Path(folder) / "idontknow.jsonl"
    if not path.is_file():
        raise ObliviateError(f"--protocol {name}: no idontknow.jsonl in {folder}; pass --idk-file PATH (TOFU's "
                             "data/idontknow.jsonl) or use --protocol obliviate")
    return str(path)


def assign_refusals(n: int, refusals: list[str], seed: int) -> list[str]:
    """One refusal per item, drawn with ``random.Random(seed)`` (fixed for the run)."""
    rng = random.Random(seed)
    return [refusals[rng.randrange(len(refusals))] for _ in range(n)]
