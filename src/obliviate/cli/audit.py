"""``obliviate audit``: the command line of :func:`obliviate.audit.run_audit` (the lead wires it into the CLI)."""

from __future__ import annotations

from ..io import out_arg


def add_parser(subparsers):
    p = subparsers.add_parser("audit", help="does the unlearned model really forget? leak views vs full/retain/base")
    p.add_argument("--model", required=True, help="the audited (unlearned) model")
    p.add_argument("--full-model", required=True, help="the model before unlearning (trained on the forget set)")
    p.add_argument("--retain-model", required=True, help="the model that never saw the forget set")
    p.add_argument("--base-model", default=None, help="the model never fine-tuned on the data set (base control)")
    p.add_argument("--forget", required=True, help="forget set spec, e.g. synthetic:forget10, tofu:forget10")
    p.add_argument("--retain", default=None, help="retain set spec (masked_probe trains on it; relearn none)")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--views", default=None, help="comma-separated views (ls audits); default: all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", default=None, help="prompt protocol (obliviate ls protocols; default: open-unlearning, TOFU's): its prompt "
                        "format and joint or separate prompt/answer tokens")
    p.add_argument("--limit", type=int, default=None, help="first N forget items")
    p.add_argument("--reuse-eval", default=None, help="an `obliviate eval` folder of --model: reuse its greedy answers")
    p.add_argument("--n-samples", type=int, default=16, help="best_of_n_leak: samples per question")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--folds", type=int, default=2, help="relearn_recovery: author folds")
    p.add_argument("--relearn-epochs", type=int, default=3)
    p.add_argument("--relearn-lr", type=float, default=1e-5)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import check_int
    from ..audit.run import run_audit

    for flag in ("n_samples", "max_new_tokens", "batch_size", "folds", "relearn_epochs"):
        check_int("--" + flag.replace("_", "-"), getattr(args, flag))
    views = [v.strip() for v in args.views.split(",") if v.strip()] if args.views else None
    audit = run_audit(args.model, args.full_model, args.retain_model, args.forget, args.out,
                      base_model=args.base_model, retain=args.retain, views=views, seed=args.seed,
                      protocol=args.protocol, limit=args.limit, reuse_eval=args.reuse_eval, overwrite=args.overwrite,
                      n_samples=args.n_samples, temperature=args.temperature, top_p=args.top_p,
                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, folds=args.folds,
                      relearn_epochs=args.relearn_epochs, relearn_lr=args.relearn_lr)
    from pathlib import Path

    print((Path(args.out) / "audit.md").read_text(), end="")
    return 0 if audit else 1
