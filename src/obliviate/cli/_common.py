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


def add_train_args(p, epochs, lr, batch_size):
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="warm-up as a fraction of optimiser steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the saved model)")
    p.add_argument("--lora-r", type=int, default=None, help="LoRA rank (default 8; with --lora)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute decoder layers in backward: far less activation memory, ~1/3 more compute")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last per-epoch checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
