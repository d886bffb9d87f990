"""``obliviate finetune``: fine-tune a model on a QA data set (make TOFU target models)."""

from __future__ import annotations

from ._common import add_config_file_arg, build_config, out_arg, require


def add_parser(subparsers):
    from ..config import FinetuneConfig, add_config_args

    p = subparsers.add_parser("finetune", help="fine-tune a model on a QA data set (make TOFU target models)")
    add_config_file_arg(p)
    add_config_args(p, FinetuneConfig)  # every setting's flag, type and help come from the dataclasses
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last per-epoch checkpoint in --out")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..config import FinetuneConfig
    from ..finetune import run_finetune

    config = build_config(FinetuneConfig, args, "finetune")
    require(config, "finetune", ("model", "data"))
    rec = run_finetune(config, args.out, overwrite=args.overwrite, resume=args.resume)
    print(f"wrote {args.out} (final loss {rec['final_loss']:.4f}, {rec['timings']['total_s']:.0f}s)")
    return 0
