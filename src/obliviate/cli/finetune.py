"""``obliviate finetune``: fine-tune a model on a QA data set (make TOFU target models)."""

from __future__ import annotations

from ..errors import ObliviateError, refuse_unused
from ._common import add_format_args, add_protocol_args, add_train_args, out_arg


def add_parser(subparsers):
    p = subparsers.add_parser("finetune", help="fine-tune a model on a QA data set (make TOFU target models)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a run.json (repeat that run), or a TOML / YAML file with its config's keys; the flags "
                        "given override its settings")
    p.add_argument("--model", help="built-in name, local folder or hub id; required")
    p.add_argument("--data", help="data spec, e.g. tofu:full, synthetic:retain90, file.jsonl; required")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, type=out_arg)
    add_train_args(p)
    add_format_args(p)
    add_protocol_args(p)
    p.set_defaults(func=run, style=None, max_length=None)  # None: the protocol's
    return p


def train_config(args):
    from ..train import TrainConfig

    if not args.lora:
        refuse_unused([("--lora-r", args.lora_r)], "with --lora")
    return TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, seed=args.seed, lora=args.lora,
        lora_r=TrainConfig.lora_r if args.lora_r is None else args.lora_r, grad_checkpointing=args.grad_checkpointing,
        progress=not args.quiet,
    )


def run(args) -> int:
    from dataclasses import replace

    from ..finetune import run_finetune

    for flag in ("model", "data"):
        if not getattr(args, flag):
            raise ObliviateError(f"finetune needs --{flag} (or a --config that sets it)")

    cfg = replace(train_config(args), **getattr(args, "config_train", {}))  # a --config's settings without a flag
    rec = run_finetune(args.model, args.data, args.out, cfg, data_dir=args.data_dir,
                       style=args.style, system_prompt=args.system_prompt, max_length=args.max_length,
                       overwrite=args.overwrite, resume=args.resume, protocol=args.protocol,
                       date_string=args.date_string)
    print(f"wrote {args.out} (final loss {rec['final_loss']:.4f}, {rec['timings']['total_s']:.0f}s)")
    return 0


def config_defaults(path) -> dict:
    """The flags' defaults from ``--config FILE`` (a finetune run.json, or TOML / YAML with its config's keys)."""
    from dataclasses import fields

    from ..config import load_config_file, unknown_keys
    from ..train import TrainConfig
    from ._common import protocol_defaults

    c = load_config_file(path, "finetune")
    unknown_keys(c, {"model", "data", "data_dir", "style", "system_prompt", "max_length", "train", "n_items",
                     "protocol", "date_string"}, path)
    d = {k: c[k] for k in ("model", "data", "data_dir", "date_string") if k in c}
    d.update(protocol_defaults(c, "n_items"))
    t = dict(c.get("train") or {})
    unknown_keys(t, {f.name for f in fields(TrainConfig)}, path, "train.")
    d.update({k: t[k] for k in ("epochs", "lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "seed",
                                "lora", "grad_checkpointing") if k in t})
    if t.get("lora"):
        d["lora_r"] = t.get("lora_r")
    if "progress" in t:
        d["quiet"] = not t["progress"]
    d["config_train"] = {k: t[k] for k in ("max_grad_norm", "lora_alpha", "checkpoint_every_epoch", "extra")
                         if k in t}
    return d
