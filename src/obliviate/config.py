"""Settings: :class:`TrainConfig` (each field's default and help, from which the command line derives its training
flags: :func:`add_config_args`), and run configurations read back from a file: ``--config FILE`` (a run.json,
or TOML / YAML with the same layout as a run.json's ``config``).

Every run.json holds its command's complete resolved configuration (``config``: the method's options with
their defaults, the training settings with the method's paper defaults applied, the robustness settings, the
evaluation target resolved from ``--forget``). ``obliviate unlearn --config runs/npo/run.json --out
runs/npo-again`` reads it back as the defaults of every flag, so the run is repeated (same final loss); flags
given on the command line override single settings.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from .errors import ObliviateError, check_int
from .runtime.files import read_text_file


def setting(default=MISSING, *, help: str | None = None, flag: str | None = None, **kw):
    """A config field; with ``help`` it is also a command-line flag (``flag``, default ``--field-name``)."""
    return field(default=default, metadata={"help": help, "flag": flag}, **kw)


def flag_of(cls, name: str) -> str:
    """The command-line flag of config field ``name``."""
    f = {f.name: f for f in fields(cls)}[name]
    return f.metadata.get("flag") or "--" + name.replace("_", "-")


def add_config_args(parser, cls, names=None, defaults: dict | None = None) -> None:
    """Add the flags of ``cls``'s fields (those with a ``help``; ``names``: a subset, in that order): type,
    default and help come from the field. ``defaults`` overrides a default (unlearn: None, the method's)."""
    by_name = {f.name: f for f in fields(cls) if f.metadata.get("help")}
    for name in names or list(by_name):
        f = by_name[name]
        default = (defaults or {}).get(name, f.default)
        if isinstance(f.default, bool):
            parser.add_argument(flag_of(cls, name), dest=name, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(flag_of(cls, name), dest=name, type=type(f.default), default=default,
                                help=f.metadata["help"])


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


@dataclass
class TrainConfig:
    """The training loop's settings (fine-tuning and unlearning). Fields with a ``help`` are command-line flags
    (``--epochs``, ...): :func:`add_config_args` derives them, with these defaults."""
    epochs: int = setting(5, help="passes over the data")
    lr: float = setting(1e-5, help="peak learning rate (AdamW; linear warm-up, then linear decay)")
    batch_size: int = setting(8, help="items per optimiser step")
    grad_accum: int = setting(1, help="gradient accumulation steps")
    # fraction of optimiser steps (TOFU warms up for one epoch of five: 0.2)
    warmup_ratio: float = setting(0.1, help="warm-up as a fraction of optimiser steps")
    weight_decay: float = setting(0.01, help="AdamW weight decay")
    seed: int = setting(0, help="seed of the batch order, the retain draws and torch")
    max_grad_norm: float = 1.0
    lora: bool = setting(False, help="train LoRA adapters (merged into the saved model)")
    lora_r: int = setting(8, help="LoRA rank (default 8; with --lora)")
    lora_alpha: int = 16
    grad_checkpointing: bool = setting(
        False, help="recompute decoder layers in backward: far less activation memory, ~1/3 more compute")
    checkpoint_every_epoch: bool = True
    progress: bool = True
    extra: dict = field(default_factory=dict)
    def validate(self) -> None:
        """Refuse settings that would fail deep inside torch (or silently do something else), naming the flag."""
        def bad(flag, value, need):
            raise ObliviateError(f"{flag} {value}: must be {need}")

        for flag, v in (("--epochs", self.epochs), ("--batch-size", self.batch_size), ("--grad-accum", self.grad_accum),
                        ("--lora-r", self.lora_r)):
            check_int(flag, v)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad("--lr", self.lr, "a finite number > 0")
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio <= 1):
            bad("--warmup-ratio", self.warmup_ratio, "between 0 and 1 (a fraction of the optimiser steps)")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            bad("--weight-decay", self.weight_decay, "a finite number >= 0")
        if self.max_grad_norm is not None and not (isinstance(self.max_grad_norm, (int, float))
                                                   and math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            bad("max_grad_norm", self.max_grad_norm, "a finite number >= 0 (0 or None: no clipping)")
