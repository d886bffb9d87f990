"""Arguments several subcommands share, and the one way a command builds its configuration from its flags."""

from __future__ import annotations

import argparse


def out_arg(value: str) -> str:
    """argparse type of ``--out``: an empty path would silently mean the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give the output folder's path")
    return value


def add_config_file_arg(p):
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a run.json (repeat that run), or a TOML / YAML file with its config's keys; the flags "
                        "given override its settings")


def build_config(cls, args, command: str, extra: dict | None = None):
    """The command's configuration ``cls``: its defaults, then ``--config FILE``, then the flags given (and
    ``extra``: settings the command gathered itself, such as unlearn's KEY=VALUE method options)."""
    from ..config import given_settings, merge, read_config

    given = merge(given_settings(args), extra or {})
    if getattr(args, "config", None):
        return read_config(cls, args.config, command, given)
    return cls.from_dict(given)


def require(config, command: str, names, alternative: str = "or a --config that sets it") -> None:
    """``{command} needs --{name} ({alternative})`` for the first required setting left unset."""
    from ..errors import ObliviateError

    for name in names:
        if getattr(config, name) is None:
            raise ObliviateError(f"{command} needs --{name.replace('_', '-')} ({alternative})")

