"""``obliviate report RUNS_OR_SWEEP... --out report.html``: one self-contained HTML page and a Markdown twin."""

from __future__ import annotations

import argparse

from ..io import out_arg


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="HTML + Markdown report of sweeps, unlearn and eval runs, audits and meta-evaluations (offline)",
        description="FQ vs MU scatter with the Pareto front and the selected point, per-epoch curves, the runs "
                    "table with OpenUnlearning's aggregates, the evaluations, the audit table with intervals, the "
                    "meta-evaluation and the run configurations. Inputs: sweep folders, unlearn, eval and meta-eval "
                    "run folders, audit.json files (an audit.json inside an input folder is read too).")
    p.add_argument("inputs", nargs="+", help="sweep folders, unlearn / eval / meta-eval run folders or audit.json files")
    p.add_argument("--out", required=True, type=out_arg, help="the HTML file (the .md twin is written beside it)")
    p.add_argument("--audit", action="append", default=[], help="an audit folder or audit.json (repeatable)")
    p.add_argument("--title", default="obliviate report")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..report.html import write_report

    html_path, md_path = write_report(args.inputs, args.out, audits=args.audit, title=args.title)
    print(f"wrote {html_path} and {md_path}")
    return 0
