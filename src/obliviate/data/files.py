"""Plain QA files: JSON Lines, a JSON list, or CSV with a header row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import ObliviateError
from ..io import read_text_file
from .schema import QAItem, item_from_row


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs):
    """``object_pairs_hook``: a key given twice in one object (json keeps the last silently) is an error."""
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise _DuplicateKey(k)
        seen.add(k)
    return dict(pairs)


def _loads(text: str):
    return json.loads(text, object_pairs_hook=_no_duplicate_keys)


def read_rows(path: str | Path) -> list[dict]:
    """Read raw rows; a file with one JSON object per line and a JSON array are both accepted."""
    path = Path(path)
    suffix = path.suffix.lower()
    text = read_text_file(path)
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        twice = [h for i, h in enumerate(header) if h in header[:i]]
        if twice:
            raise ObliviateError(f"{path}: the header names column {twice[0]!r} twice")
        rows = []
        for r in reader:
            if None in r:  # DictReader's key for values past the header's columns
                raise ObliviateError(f"{path}: line {reader.line_num} has {len(header) + len(r[None])} values "
                                     f"for {len(header)} columns; quote a value that holds a comma")
            rows.append(r)
        for r in rows:
            v = r.get("perturbed_answer") or r.get("perturbed_answers")
            if v:  # a JSON list in one CSV cell, or answers separated by " || "
                try:
                    parsed = json.loads(v)
                except json.JSONDecodeError:
                    parsed = [s.strip() for s in v.split("||")]
                r["perturbed_answers"] = parsed
                r.pop("perturbed_answer", None)
        return rows
    if suffix not in (".json", ".jsonl"):
        raise ObliviateError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json or .csv")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = _loads(text)
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        except _DuplicateKey as e:
            raise ObliviateError(f"{path}: an object gives the key {e.args[0]!r} twice; keep one") from None
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(_loads(line))
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
        except _DuplicateKey as e:
            raise ObliviateError(f"{path}: line {lineno} gives the key {e.args[0]!r} twice; keep one") from None
    return rows


def read_qa_file(path: str | Path) -> list[QAItem]:
    rows = read_rows(path)
    if not rows:
        raise ObliviateError(f"{path}: the file has no rows (empty split)")
    items = [item_from_row(r, str(path), i) for i, r in enumerate(rows)]
    first: dict[tuple, int] = {}
    for i, it in enumerate(items):  # a repeated pair would be trained on (or scored) twice
        key = (it.question, it.answer)
        if key in first:
            raise ObliviateError(f"{path}: row {i + 1} repeats row {first[key] + 1} (same question and answer); "
                                 "remove the duplicate")
        first[key] = i
    return items
