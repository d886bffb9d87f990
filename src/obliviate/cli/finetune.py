"""``obliviate finetune``: fine-tune a model on a QA data set (make TOFU target models)."""

from __future__ import annotations

from ..errors import refuse_unused
from ._common import add_format_args, add_train_args, out_arg


def add_parser(subparsers):
    p = subparsers.add_parser("finetune", help="fine-tune a model on a QA data set (make TOFU target models)")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="data spec, e.g. tofu:full, synthetic:retain90, file.jsonl")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, type=out_arg)
    add_train_args(p, epochs=5, lr=1e-5, batch_size=8)
    add_format_args(p)
    p.set_defaults(func=run)
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
    from ..finetune import run_finetune

    rec = run_finetune(args.model, args.data, args.out, train_config(args), data_dir=args.data_dir,
                       style=args.style, system_prompt=args.system_prompt, max_length=args.max_length,
                       overwrite=args.overwrite, resume=args.resume)
    print(f"wrote {args.out} (final loss {rec['final_loss']:.4f}, {rec['timings']['total_s']:.0f}s)")
    return 0
