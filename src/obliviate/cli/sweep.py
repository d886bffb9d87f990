"""``obliviate sweep GRID.yaml --out DIR``: run (or resume) a predeclared grid; ``--dry-run``: the plan."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io import out_arg
from ._common import add_config_file_arg, build_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..config import SweepConfig, add_config_args

    p = subparsers.add_parser(
        "sweep", help="run a predeclared grid of unlearning runs (resumable; local workers or Ray)",
        description="Run every point of GRID.yaml once, with per-epoch evaluation, into DIR/runs/ and the index "
                    "DIR/index.sqlite. The same command resumes a killed sweep. --dry-run lists the points and "
                    "their estimated peak GPU memory instead. DIR/sweep.json records the options: "
                    "--config DIR/sweep.json repeats them.")
    add_config_file_arg(p)
    add_config_args(p, SweepConfig)  # the grid file and every option's flag, type and help: the dataclass
    p.add_argument("--out", type=out_arg, default=None, help="the sweep folder (required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="list the points and each one's estimated peak memory")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..config import SweepConfig
    from ..errors import ObliviateError

    config = build_config(SweepConfig, args, "sweep")
    if config.grid is None:
        raise ObliviateError("obliviate sweep: give GRID, the grid file (or a --config that sets it)")
    config.validate()
    if getattr(args, "config", None) and not hasattr(args, "grid"):  # the grid a recorded sweep names
        check_recorded_grid(args.config, config.grid)
    if args.dry_run:
        from ..sweep.plan import format_plan, plan_grid

        print(format_plan(plan_grid(config.grid, config.gpu_mem)))
        return 0
    if args.out is None:
        raise ObliviateError("obliviate sweep: --out DIR is required (or --dry-run)")
    from ..sweep.runner import run_sweep

    res = run_sweep(config, args.out)
    c = res["counts"]
    print(f"sweep {args.out}: {c['done']} done, {c['failed']} failed (grid {res['grid_hash'][:12]}); "
          f"next: obliviate select {args.out} --by forget_quality")
    return 1 if c["failed"] else 0


def check_recorded_grid(path, grid) -> None:
    """A ``--config`` sweep.json records the grid's hash: the file it names must still hold that grid (else the
    re-run would silently run another one; giving GRID runs the file named instead)."""
    import json

    from ..errors import ObliviateError
    from ..sweep.grid import load_grid

    try:
        recorded = json.loads(Path(path).read_text(encoding="utf-8")).get("grid_hash")
    except (OSError, ValueError, AttributeError):  # a TOML / YAML config: no recorded hash
        return
    if not isinstance(recorded, str):
        return
    now = load_grid(grid).hash
    if now != recorded:
        raise ObliviateError(f"--config {path}: the grid file {grid} is not the recorded sweep's grid (hash "
                             f"{now[:12]}, recorded {recorded[:12]}); give GRID to run that file anyway")
