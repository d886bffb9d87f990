"""Arguments several subcommands share."""

from __future__ import annotations

import argparse


def out_arg(value: str) -> str:
    """argparse type of ``--out``: an empty path would silently mean the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give the output folder's path")
    return value


def add_format_args(p):
    p.add_argument("--style", default="chat", help="prompt style: chat (default), plain, llama2")
    p.add_argument("--system-prompt", default=None, help="system prompt for the chat template (default: the template's)")


# The training flags, in the order --help lists them; type, default and help come from TrainConfig's fields.
TRAIN_FLAGS = ("epochs", "lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "seed", "lora", "lora_r",
               "grad_checkpointing")


def add_train_args(p, defaults: dict | None = None):
    """TrainConfig's flags (``defaults``: overrides; ``--lora-r`` defaults to None, so that it can be refused
    without ``--lora``), then the run flags of every training command."""
    from ..config import TrainConfig, add_config_args

    add_config_args(p, TrainConfig, TRAIN_FLAGS, {"lora_r": None, **(defaults or {})})
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last per-epoch checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
