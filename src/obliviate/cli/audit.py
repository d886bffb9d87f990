"""``obliviate audit``: the command line of :func:`obliviate.audit.run_audit`."""

from __future__ import annotations

from ._common import add_config_file_arg, build_config, out_arg, require


def add_parser(subparsers):
    from ..config import AuditConfig, add_config_args

    p = subparsers.add_parser("audit", help="does the unlearned model really forget? leak views vs full/retain/base")
    add_config_file_arg(p)
    add_config_args(p, AuditConfig)  # every setting's flag, type and help come from the dataclasses
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from pathlib import Path

    from ..audit.run import run_audit
    from ..config import AuditConfig

    config = build_config(AuditConfig, args, "audit")
    require(config, "audit", ("model", "full_model", "retain_model", "forget"))
    audit = run_audit(config, args.out, overwrite=args.overwrite)
    print((Path(args.out) / "audit.md").read_text(), end="")
    return 0 if audit else 1
