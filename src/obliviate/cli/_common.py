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


def add_protocol_args(p):
    """``--protocol`` and ``--date-string`` of the commands that format QA prompts (obliviate.protocols)."""
    p.add_argument("--protocol", default=None,
                   help="prompt protocol (obliviate ls protocols): open-unlearning (default for TOFU-format data), "
                        "tofu, muse, obliviate; --style / --system-prompt / --max-length override single fields")
    p.add_argument("--date-string", default=None,
                   help="the chat template's date_string (overrides the protocol's; never today's date)")


def protocol_defaults(c: dict, recorded: str) -> dict:
    """The prompt-format flags' defaults from a --config's keys ``c``: its resolved ``protocol`` (a run.json's dict,
    which holds style, system prompt and max length), else ``style`` / ``system_prompt`` / ``max_length`` as
    overrides. A run.json from before protocols (it has the ``recorded`` count key but no protocol) ran with
    ``obliviate``'s format, so it repeats under that preset."""
    if "protocol" in c:
        return {"protocol": c["protocol"]}
    d = {k: c[k] for k in ("style", "system_prompt", "max_length") if k in c}
    if recorded in c:
        d["protocol"] = "obliviate"
    return d


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
