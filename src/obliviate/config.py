"""Run configurations read back from a file: ``--config FILE`` (a run.json, or TOML / YAML with the same layout
as a run.json's ``config``).

Every run.json holds its command's complete resolved configuration (``config``: the method's options with
their defaults, the training settings with the method's paper defaults applied, the robustness settings, the
evaluation target resolved from ``--forget``). ``obliviate unlearn --config runs/npo/run.json --out
runs/npo-again`` reads it back as the defaults of every flag, so the run is repeated (same final loss); flags
given on the command line override single settings.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from .errors import ObliviateError
from .runtime.files import read_text_file


def load_config_file(path: str | Path, command: str) -> dict:
    """The configuration in ``path`` for ``command``: a run.json's ``config`` (whose ``command`` must match),
    or a TOML / YAML file holding the same keys (``.toml``, ``.yaml`` / ``.yml``; ``.json`` without a
    ``command`` is a bare configuration)."""
    path = Path(path)
    text = read_text_file(path, "--config ")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ObliviateError(f"--config {path}: reading YAML needs PyYAML (pip install pyyaml); or "
                                     "write the file as TOML or JSON") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ObliviateError(f"--config {path}: not valid {suffix.lstrip('.').upper() or 'JSON'} ({e})") from None
    except Exception as e:  # yaml.YAMLError, without importing yaml where it is not installed
        if type(e).__module__.startswith("yaml"):
            raise ObliviateError(f"--config {path}: not valid YAML ({e})") from None
        raise
    if not isinstance(data, dict):
        raise ObliviateError(f"--config {path}: holds a {type(data).__name__}, not a table of settings")
    if "config" in data and "command" in data:  # a run.json
        if data["command"] != command:
            raise ObliviateError(f"--config {path}: a run.json of `obliviate {data['command']}`, not `{command}`")
        data = data["config"]
        if not isinstance(data, dict):
            raise ObliviateError(f"--config {path}: its config is not a table of settings")
    return data


def unknown_keys(data: dict, known: set[str], path, prefix: str = "") -> None:
    """Refuse a setting the command does not have (a typo would otherwise be dropped without a word)."""
    bad = sorted(set(data) - known)
    if bad:
        import difflib

        hints = []
        for k in bad:
            close = difflib.get_close_matches(k, sorted(known), n=1)
            hints.append(f"{prefix}{k}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
        raise ObliviateError(f"--config {path}: unknown setting(s) {', '.join(hints)}")
