"""``obliviate relearn`` (the relearning attack) and ``obliviate relearn-report`` (recovery vs the retrain control)."""

from __future__ import annotations

import json

from ._common import add_config_file_arg, build_config, out_arg, require


def add_parser(subparsers) -> None:
    from ..config import RelearnConfig, add_config_args

    p = subparsers.add_parser("relearn", help="relearning attack: fine-tune a model for N steps on a little forget data")
    add_config_file_arg(p)
    add_config_args(p, RelearnConfig)  # every setting's flag, type and help come from the dataclass
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run, relearn_command="relearn")

    p = subparsers.add_parser("relearn-report", help="recovery of each metric after relearning, vs the retrain control")
    p.add_argument("--before", required=True, help="eval folder of the unlearned model")
    p.add_argument("--after", required=True, help="eval folder of the unlearned model after relearning")
    p.add_argument("--retrain-before", default=None, help="eval folder of the retrain model (control)")
    p.add_argument("--retrain-after", default=None, help="eval folder of the retrain model after the same relearning")
    p.add_argument("--target", default=None, help="eval folder of the target model: adds the fraction of the gap recovered")
    p.add_argument("--out", required=True, help="folder for recovery.json and recovery.md")
    p.set_defaults(func=run, relearn_command="report")


def run(args) -> int:
    if getattr(args, "relearn_command", "relearn") == "report":
        return run_report(args)
    from ..config import RelearnConfig
    from ..relearn import run_relearn

    config = build_config(RelearnConfig, args, "relearn")
    require(config, "relearn", ("model", "data", "steps"))
    rec = run_relearn(config, args.out, overwrite=args.overwrite)
    print(json.dumps({"out": str(args.out), "steps": config.steps, "final_loss": rec.get("final_loss")}))
    return 0


def run_report(args) -> int:
    from pathlib import Path

    from ..relearn import recovery_report

    report = recovery_report(args.before, args.after, args.out, args.retrain_before, args.retrain_after,
                             target=args.target)
    print((Path(args.out) / "recovery.md").read_text(encoding="utf-8"), end="")
    return 0 if report else 1
