"""``obliviate eval``: evaluate a model on TOFU or MUSE, or recompute metrics from logs."""

from __future__ import annotations

from ..errors import refuse_unused
from ._common import add_config_file_arg, build_config, out_arg, require


def add_parser(subparsers):
    from ..config import EvalConfig, add_config_args

    p = subparsers.add_parser("eval", help="evaluate a model on TOFU or MUSE, or recompute metrics from logs")
    add_config_file_arg(p)
    add_config_args(p, EvalConfig)  # every setting's flag, type and help come from the dataclass (config.py)
    p.add_argument("--from-logs", default=None, help="recompute metrics from TOFU / open-unlearning / obliviate logs")
    p.add_argument("--retain-logs", default=None, help="with --from-logs: the retain model's logs")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..config import EvalConfig
    from ..evaluate import format_summary, run_eval, run_from_logs

    if args.from_logs:
        # every setting of a model's evaluation would be ignored (a progress bar setting aside)
        paths = [p for p in args.config_paths if hasattr(args, p) and p != "progress"]
        flags = getattr(args, "flag_names", {})
        refuse_unused([(flags.get(p, "--" + p.replace("_", "-")), True) for p in paths]
                      + [("--config", args.config)],
                      "to a model's evaluation; --from-logs recomputes the metrics of existing logs (the retain "
                      "model's logs go in --retain-logs)")
        summary = run_from_logs(args.from_logs, args.out, retain_logs=args.retain_logs, overwrite=args.overwrite)
        keys = None
    else:
        refuse_unused([("--retain-logs", args.retain_logs)],
                      "with --from-logs (a model's evaluation takes --retain-eval)")
        config = build_config(EvalConfig, args, "eval")
        require(config, "eval", ("model",), "or --from-logs FILE to recompute metrics from logs")
        summary = run_eval(config, args.out, overwrite=args.overwrite)
        keys = None if config.is_tofu else "muse"
    print(f"wrote {args.out}/summary.json")
    if keys is None:
        from ..metrics.keys import AGGREGATE_KEYS, TOFU_HEADLINE

        # OpenUnlearning's aggregates follow the headline (an evaluation of logs has none)
        extra = tuple(k for k in ("forget_fluency", *AGGREGATE_KEYS) if k in summary)
        print(format_summary(summary, TOFU_HEADLINE + extra))
    else:
        from ..metrics.keys import MUSE_HEADLINE

        print(format_summary(summary, MUSE_HEADLINE))
    return 0
