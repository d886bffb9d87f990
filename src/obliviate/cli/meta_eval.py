"""``obliviate meta-eval POOLS.yaml --out DIR``: which unlearning metric can you trust?

Fine-tunes every control model of the pools file, evaluates it on TOFU (or MUSE, for a pools file on a MUSE
corpus such as synthetic-news), attacks the negative and unlearned
ones (relearning, 4-bit quantization), and writes, per metric, faithfulness, R, Q, robustness and overall with
bootstrap intervals: ``table.json``, ``table.md`` and ``report.html`` (+ ``report.md``: the plots of
``obliviate report``). After an interruption, the same command with ``--resume`` redoes only what is not
finished. ``--workers N`` builds N models at once (local processes, or Ray tasks with ``--backend ray``).
``--config DIR/run.json`` repeats a meta-eval's options (the pools file is read again: it stays the spec).
"""

from __future__ import annotations

import argparse

from ._common import add_config_file_arg, build_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..config import MetaEvalConfig, add_config_args
    from ..io import out_arg

    p = subparsers.add_parser("meta-eval", help="faithfulness and robustness of each metric over control-model pools",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_file_arg(p)
    add_config_args(p, MetaEvalConfig)  # the pools file and every option's flag, type and help: the dataclass
    p.add_argument("--out", required=True, type=out_arg, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted meta-eval in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..config import MetaEvalConfig
    from ..errors import ObliviateError
    from ..metaeval.run import run_meta_eval

    config = build_config(MetaEvalConfig, args, "meta-eval")
    if config.pools_file is None:
        raise ObliviateError("obliviate meta-eval: give POOLS, the pools file (or a --config that sets it)")
    res = run_meta_eval(config, args.out, resume=args.resume, overwrite=args.overwrite)
    print(res["markdown"])
    return 0
