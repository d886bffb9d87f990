"""``obliviate report RUNS_OR_SWEEP... --out report.html``: one self-contained HTML page and a Markdown twin."""

from __future__ import annotations

import argparse

from ..io import out_arg
from ._common import add_config_file_arg, build_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..config import ReportConfig, add_config_args

    p = subparsers.add_parser(
        "report", help="HTML + Markdown report of sweeps, unlearn and eval runs, audits and meta-evaluations (offline)",
        description="FQ vs MU scatter with the Pareto front and the selected point, per-epoch curves, the runs "
                    "table with OpenUnlearning's aggregates, the evaluations, the audit table with intervals, the "
                    "meta-evaluation and the run configurations. Inputs: sweep folders, unlearn, eval and meta-eval "
                    "run folders, audit.json files (an audit.json inside an input folder is read too).")
    add_config_file_arg(p)
    add_config_args(p, ReportConfig)  # the inputs and every option's flag, type and help: the dataclass
    p.add_argument("--out", required=True, type=out_arg, help="the HTML file (the .md twin is written beside it)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..config import ReportConfig
    from ..report.html import write_report

    config = build_config(ReportConfig, args, "report")
    html_path, md_path = write_report(config, args.out)
    print(f"wrote {html_path} and {md_path}")
    return 0
