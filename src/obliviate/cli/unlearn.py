"""``obliviate unlearn``: make a fine-tuned model forget a forget set with one of the registered methods."""

from __future__ import annotations

import sys

from ..errors import ObliviateError
from ._common import add_config_file_arg, build_config, out_arg, require


def add_parser(subparsers):
    from ..config import UnlearnConfig, add_config_args

    p = subparsers.add_parser(
        "unlearn", help="unlearn a forget set with a method (npo, grad_diff, rmu, …; see `obliviate ls methods`)",
        description="Unlearn a forget set. Method options go last as KEY=VALUE (e.g. beta=0.2 retain_loss=kl); "
                    "`obliviate ls methods --json` lists each method's options and defaults.",
    )
    add_config_file_arg(p)
    # every setting's flag, type, help and argument group come from the dataclasses (config.py); the training
    # settings not given take the method's paper values (unlearn.default_train_config)
    add_config_args(p, UnlearnConfig)
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--card", action="store_true", help="write a Hugging Face model card (README.md) next to the model")
    p.add_argument("options", nargs="*", metavar="KEY=VALUE", help="method options (e.g. beta=0.2)")
    g = p.add_argument_group("method options as flags (the same as alpha=A, beta=B, gamma=G)")
    g.add_argument("--alpha", type=float, default=None, help="retain-term weight (the method's alpha option)")
    g.add_argument("--beta", type=float, default=None, help="the method's beta option")
    g.add_argument("--gamma", type=float, default=None, help="forget-term weight (the method's gamma option)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last per-epoch checkpoint in --out")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..config import UnlearnConfig
    from ..methods.base import parse_options
    from ..unlearn import run_unlearn

    given = parse_options(args.options)
    for flag in ("alpha", "beta", "gamma"):
        v = getattr(args, flag)
        if v is not None:
            if flag in given:
                raise ObliviateError(f"--{flag} and the option {flag}= were both given; keep one")
            given[flag] = v
    # the method options given override a --config's, one by one
    config = build_config(UnlearnConfig, args, "unlearn", {"method_config": given} if given else None)
    require(config, "unlearn", ("model", "method", "forget"))
    rec = run_unlearn(config, args.out, overwrite=args.overwrite, resume=args.resume)
    msg = f"wrote {args.out} (final loss {rec['final_loss']:.4f}, {rec['timings']['total_s']:.0f}s)"
    s = rec.get("selection") or {}
    if s.get("best_epoch") is not None:
        msg += f"; kept epoch {s['best_epoch']} ({s['key']} = {s['value']:.4g})"
    print(msg)
    if s and s.get("best_epoch") is None:
        print(f"note: --select {s['spec']}: {s['note']}", file=sys.stderr)
    if args.card:  # a Hugging Face model card next to the model
        from pathlib import Path

        from ..report.card import write_card

        print(f"wrote {write_card(args.out, Path(args.out) / 'README.md')}")
    return 0


