"""``obliviate sweep GRID.yaml --out DIR``: run (or resume) a predeclared grid; ``--dry-run``: the plan."""

from __future__ import annotations

import argparse

from ..io import out_arg


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="run a predeclared grid of unlearning runs (resumable; local workers or Ray)",
        description="Run every point of GRID.yaml once, with per-epoch evaluation, into DIR/runs/ and the index "
                    "DIR/index.sqlite. The same command resumes a killed sweep. --dry-run lists the points and "
                    "their estimated peak GPU memory instead.")
    p.add_argument("grid", help="the grid file (YAML: model, forget, retain, retain_model, fixed, grid)")
    p.add_argument("--out", type=out_arg, default=None, help="the sweep folder (required unless --dry-run)")
    p.add_argument("--workers", type=int, default=1, help="points run at once (local: processes; ray: tasks)")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local processes, or Ray tasks (RAY_ADDRESS names an existing cluster)")
    p.add_argument("--retry-failed", action="store_true", help="run the points that failed again")
    p.add_argument("--dry-run", action="store_true", help="list the points and each one's estimated peak memory")
    p.add_argument("--gpu-mem", default="80GB", help="GPU memory of the --dry-run plan (default 80GB)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import ObliviateError

    if args.dry_run:
        from ..sweep.plan import format_plan, plan_grid

        print(format_plan(plan_grid(args.grid, args.gpu_mem)))
        return 0
    if args.out is None:
        raise ObliviateError("obliviate sweep: --out DIR is required (or --dry-run)")
    from ..sweep.runner import run_sweep

    res = run_sweep(args.grid, args.out, workers=args.workers, backend=args.backend,
                    retry_failed=args.retry_failed, progress=not args.quiet)
    c = res["counts"]
    print(f"sweep {args.out}: {c['done']} done, {c['failed']} failed (grid {res['grid_hash'][:12]}); "
          f"next: obliviate select {args.out} --by forget_quality")
    return 1 if c["failed"] else 0
