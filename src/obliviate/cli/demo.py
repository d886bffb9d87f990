"""``obliviate demo``: the main job on the embedded defaults (smollm2-135m, synthetic authors)."""

from __future__ import annotations

from ._common import out_arg


def add_parser(subparsers):
    p = subparsers.add_parser("demo", help="the main job on the embedded defaults (smollm2-135m, synthetic authors)")
    p.add_argument("--out", default="runs/demo", type=out_arg)
    p.add_argument("--quick", action="store_true", help="a smaller run")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..demo import run_demo

    return run_demo(out=args.out, quick=args.quick)
