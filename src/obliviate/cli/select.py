"""``obliviate select DIR --by forget_quality``: blind rank-1 of a sweep, its Pareto front, a ranked table."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "select", help="blind selection in a sweep: rank by named metrics only; Pareto front of FQ vs MU",
        description="Rank the finished points of a sweep by --by, then --tie-break, then grid order; write "
                    "DIR/selection.json (rule, grid hash, ranking, Pareto front) and print the table.")
    p.add_argument("sweep", help="the sweep folder (obliviate sweep ... --out DIR)")
    p.add_argument("--by", default="forget_quality", help="ranking key (default forget_quality; max:KEY / min:KEY)")
    p.add_argument("--tie-break", default=None, help="second key for equal --by values (e.g. model_utility)")
    p.add_argument("--min", action="append", default=[], metavar="KEY=V",
                   help="drop points below a bound first: KEY=0.5 or KEY=0.9*full (model before unlearning) / "
                        "KEY=1*retain; repeatable")
    p.add_argument("--max", action="append", default=[], metavar="KEY=V", help="drop points above a bound")
    p.add_argument("--epoch", default="last", choices=("last", "best"),
                   help="rank each point by its final epoch (default) or its best epoch under the same rule")
    p.add_argument("--json", action="store_true", help="print the selection record instead of the table")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import json

    from ..sweep.select import format_table, select

    rec = select(args.sweep, by=args.by, tie_break=args.tie_break, mins=args.min, maxs=args.max, epoch=args.epoch)
    if args.json:
        print(json.dumps(rec, indent=2, default=str))
        return 0
    print(format_table(rec))
    r = rec["rank1"]
    if r is None:
        print(f"no point passes the rule; see {args.sweep}/selection.json")
        return 1
    print(f"\nrank-1 (blind, by {' then '.join(rec['ranking_uses'])}; grid {rec['grid_hash'][:12]}): "
          f"{r['name']} epoch {r['epoch']} -> {r['run_dir']}")
    if rec.get("note"):
        print(f"note: {rec['note']}")
    return 0
