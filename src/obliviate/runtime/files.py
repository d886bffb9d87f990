"""Files: atomic writes (temp file in the same folder, then rename) and one-line errors for unreadable inputs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from ..errors import ObliviateError


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_mode() -> int:
    """The mode a plainly created file gets (0o666 less the umask); temp files start at 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temp file in the same folder, then rename: never a half-written file. In a multi-process
    run only the main process writes (runtime/dist.py); the others return at once."""
    from .dist import is_main

    if not is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default, allow_nan=True) + "\n")


def _nan_to_null(v):
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _nan_to_null(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_to_null(x) for x in v]
    return v


def atomic_write_jsonl(path, rows: Iterable[dict]) -> None:
    """One JSON object per line; a NaN value is written as null (a missing value): NaN is not JSON, and
    ``--from-logs`` refuses it when the file is read back."""
    atomic_write_text(path, "".join(json.dumps(_nan_to_null(r), default=_json_default) + "\n" for r in rows))


def read_text_file(path, what: str = "") -> str:
    """The text of a user's input file, or a one-line error naming it: not found, a folder, not UTF-8
    (with the line and byte). A UTF-8 byte-order mark (spreadsheet exports) is dropped. ``what``: a prefix
    for the message (``"--idk-file "``)."""
    path = Path(path)
    if not path.exists():
        raise ObliviateError(f"{what}{path}: file not found")
    if path.is_dir():
        raise ObliviateError(f"{what}{path}: is a folder, not a file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        raise ObliviateError(f"{what}{path}: not UTF-8 text (line {line}, byte {start}: {e.reason}); "
                             "save the file as UTF-8") from None


def read_json(path) -> Any:
    path = Path(path)
    text = read_text_file(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
