"""``obliviate eval``: evaluate a model on TOFU or MUSE, or recompute metrics from logs."""

from __future__ import annotations

from ..errors import ObliviateError, refuse_unused
from ._common import add_format_args, out_arg


def add_parser(subparsers):
    p = subparsers.add_parser("eval", help="evaluate a model on TOFU or MUSE, or recompute metrics from logs")
    p.add_argument("--model", help="built-in name, local folder or hub id")
    p.add_argument("--benchmark", default="tofu", choices=["tofu", "muse-news", "muse-books"],
                   help="tofu (default) or MUSE on one of its corpora (ls benchmarks)")
    p.add_argument("--data", default=None, help="TOFU-format family: tofu (default) or synthetic")
    p.add_argument("--split", default=None, help="forget01, forget05 or forget10 (default)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N items of forget, retain and holdout")
    p.add_argument("--utility-limit", type=int, default=None, help="first N items of real authors and world facts")
    p.add_argument("--retain-eval", default=None, help="the retain model's eval folder (forget quality, privleak)")
    p.add_argument("--variants", default=None, help="extra forget-set prompts: paraq,jailbreak")
    p.add_argument("--no-generation", action="store_true", help="skip greedy answers (no ROUGE)")
    p.add_argument("--no-gradnorm", action="store_true", help="skip the GradNorm MIA (one backward per item)")
    p.add_argument("--batch-size", type=int, default=32, help="generation slots (KV buffer: slots x (prompt + 200 + "
                                                              "32) tokens x ~46 KB for SmolLM2)")
    p.add_argument("--from-logs", default=None, help="recompute metrics from TOFU / open-unlearning / obliviate logs")
    p.add_argument("--retain-logs", default=None, help="with --from-logs: the retain model's logs")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    add_format_args(p)
    p.add_argument("--protocol", default=None,
                   help="evaluation protocol (obliviate ls protocols): open-unlearning (TOFU's default), muse "
                        "(MUSE's default), tofu, obliviate")
    p.add_argument("--pad-mask", default=None, choices=["correct", "eos"],
                   help="TOFU attention mask: correct (every preset) or eos, open-unlearning's released "
                        "input_ids != pad (= EOS) mask, to reproduce its published numbers (docs/metrics.md)")
    p.add_argument("--date-string", default=None,
                   help="the chat template's date_string (overrides the protocol's; never today's date)")
    p.set_defaults(func=run, style=None)  # None: not given (TOFU's default is chat; MUSE refuses it)
    return p


def run(args) -> int:
    from ..evaluate import format_summary, run_from_logs, run_muse_eval, run_tofu_eval

    tofu_only = [("--data", args.data), ("--split", args.split), ("--utility-limit", args.utility_limit),
                 ("--variants", args.variants), ("--no-generation", args.no_generation),
                 ("--no-gradnorm", args.no_gradnorm), ("--style", args.style), ("--system-prompt", args.system_prompt),
                 ("--date-string", args.date_string), ("--pad-mask", args.pad_mask)]
    if args.from_logs:
        refuse_unused([("--model", args.model), ("--limit", args.limit), ("--retain-eval", args.retain_eval),
                       ("--protocol", args.protocol),
                       ("--data-dir", args.data_dir), *tofu_only,
                       ("--benchmark", None if args.benchmark == "tofu" else args.benchmark)],
                      "to a model's evaluation; --from-logs recomputes the metrics of existing logs (the retain "
                      "model's logs go in --retain-logs)")
        summary = run_from_logs(args.from_logs, args.out, retain_logs=args.retain_logs, overwrite=args.overwrite)
    else:
        if not args.model:
            raise ObliviateError("eval needs --model (or --from-logs FILE to recompute metrics from logs)")
        refuse_unused([("--retain-logs", args.retain_logs)],
                      "with --from-logs (a model's evaluation takes --retain-eval)")
        if args.benchmark == "tofu":
            if args.data and ":" in args.data:
                raise ObliviateError(eval_data_hint(args.data))
            variants = tuple(v for v in (args.variants or "").split(",") if v)
            summary = run_tofu_eval(
                args.model, args.out, data=args.data or "tofu", split=args.split or "forget10", data_dir=args.data_dir,
                limit=args.limit, utility_limit=args.utility_limit, retain_eval=args.retain_eval,
                style=args.style, system_prompt=args.system_prompt, protocol=args.protocol,
                date_string=args.date_string, pad_mask=args.pad_mask,
                generation=not args.no_generation, gradnorm=not args.no_gradnorm, variants=variants,
                batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.quiet)
        else:
            refuse_unused(tofu_only, f"to TOFU, not to --benchmark {args.benchmark} (MUSE takes --data-dir, --limit, "
                          "--retain-eval, --batch-size); they would be ignored")
            summary = run_muse_eval(args.model, args.out, corpus=args.benchmark, data_dir=args.data_dir,
                                    limit=args.limit, retain_eval=args.retain_eval, batch_size=args.batch_size,
                                    overwrite=args.overwrite, progress=not args.quiet, protocol=args.protocol)
    print(f"wrote {args.out}/summary.json")
    if args.benchmark == "tofu" or args.from_logs:
        print(format_summary(summary))
    else:
        from ..metrics.keys import MUSE_HEADLINE

        print(format_summary(summary, MUSE_HEADLINE))
    return 0


def eval_data_hint(data: str) -> str:
    """The message for ``eval --data FAMILY:CONFIG``: what to write instead, when it can be told."""
    family, _, config = data.partition(":")
    config, _, query = config.partition("?")
    msg = (f"--data {data}: --data takes a TOFU-format family (tofu or synthetic, loader options after '?'), "
           "not a data spec")
    if family.startswith("muse"):
        return msg + f"; MUSE is --benchmark {family} (with --data-dir)"
    split = config.replace("_perturbed", "")
    if family in ("tofu", "synthetic") and split in ("forget01", "forget05", "forget10"):
        fam = f"'{family}?{query}'" if query else family
        return msg + f"; the split goes in --split: --data {fam} --split {split}"
    return msg + "; the split goes in --split (forget01, forget05 or forget10)"
