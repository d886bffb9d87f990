"""``obliviate select DIR --by forget_quality``: blind rank-1 of a sweep, its Pareto front, a ranked table."""

from __future__ import annotations

import argparse

from ._common import add_config_file_arg, build_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..config import SelectConfig, add_config_args

    p = subparsers.add_parser(
        "select", help="blind selection in a sweep: rank by named metrics only; Pareto front of FQ vs MU",
        description="Rank the finished points of a sweep by --by, then --tie-break, then grid order; write "
                    "DIR/selection.json (rule, grid hash, ranking, Pareto front) and print the table. "
                    "--config DIR/selection.json applies a recorded rule again (to another sweep: give SWEEP).")
    add_config_file_arg(p)
    add_config_args(p, SelectConfig)  # the sweep folder and the rule's flags, types and help: the dataclass
    p.add_argument("--json", action="store_true", help="print the selection record instead of the table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import json

    from ..config import SelectConfig
    from ..errors import ObliviateError
    from ..sweep.select import format_table, select

    config = build_config(SelectConfig, args, "select")
    if config.sweep is None:
        raise ObliviateError("obliviate select: give SWEEP, the sweep folder (or a --config that sets it)")
    rec = select(config)
    if args.json:
        print(json.dumps(rec, indent=2, default=str))
        return 0
    print(format_table(rec))
    r = rec["rank1"]
    if r is None:
        print(f"no point passes the rule; see {config.sweep}/selection.json")
        return 1
    print(f"\nrank-1 (blind, by {' then '.join(rec['ranking_uses'])}; grid {rec['grid_hash'][:12]}): "
          f"{r['name']} epoch {r['epoch']} -> {r['run_dir']}")
    if rec.get("note"):
        print(f"note: {rec['note']}")
    return 0
