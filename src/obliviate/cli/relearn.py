"""``obliviate relearn`` (the relearning attack) and ``obliviate relearn-report`` (recovery vs the retrain control)."""

from __future__ import annotations

import json

from ..io import out_arg


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("relearn", help="relearning attack: fine-tune a model for N steps on a little forget data")
    p.add_argument("--model", required=True, help="the unlearned (or retrain) model: folder, built-in or hub id")
    p.add_argument("--data", required=True, help="data spec, e.g. synthetic-news:raw/forget, tofu:forget10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, required=True, help="optimiser steps")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--n-items", type=int, default=None, help="relearn on the first N items only")
    p.add_argument("--max-length", type=int, default=512, help="tokens per row (text chunks: min(2048, this))")
    p.add_argument("--style", default="chat", help="prompt style of QA items: chat (default), plain, llama2")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--overwrite", action="store_true")
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
    from ..relearn import run_relearn

    rec = run_relearn(args.model, args.data, args.out, args.steps, lr=args.lr, batch_size=args.batch_size,
                      n_items=args.n_items, seed=args.seed, data_dir=args.data_dir, style=args.style,
                      system_prompt=args.system_prompt, max_length=args.max_length, overwrite=args.overwrite)
    print(json.dumps({"out": str(args.out), "steps": args.steps, "final_loss": rec.get("final_loss")}))
    return 0


def run_report(args) -> int:
    from pathlib import Path

    from ..relearn import recovery_report

    report = recovery_report(args.before, args.after, args.out, args.retrain_before, args.retrain_after,
                             target=args.target)
    print((Path(args.out) / "recovery.md").read_text(encoding="utf-8"), end="")
    return 0 if report else 1
