"""Plain QA files: JSON Lines, a JSON list, or CSV with a header row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import ObliviateError
from ..io import read_text_file
from .schema import QAItem, item_from_row


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
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
    return rows


def read_qa_file(path: str | Path) -> list[QAItem]:
    rows = read_rows(path)
    if not rows:
        raise ObliviateError(f"{path}: the file has no rows (empty split)")
    return [item_from_row(r, str(path), i) for i, r in enumerate(rows)]
