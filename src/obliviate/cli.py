"""The ``obliviate`` command line: one entry point for every job."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from .errors import ObliviateError, check_int, refuse_unused
from .io import Terminated, out_arg


def _cmd_ls(args) -> int:
    from .registry import REGISTRIES

    kinds = [args.kind] if args.kind else list(REGISTRIES)
    out = {}
    for kind in kinds:
        reg = REGISTRIES[kind]
        out[kind] = [{"name": e.name, **{k: v for k, v in e.meta.items() if _jsonable(v)}} for e in reg.entries()]
    if args.json:
        print(json.dumps(out if not args.kind else out[args.kind], indent=2))
        return 0
    for kind, entries in out.items():
        print(f"{kind}:")
        if not entries:
            print("  (none yet)")
        for e in entries:
            print(f"  {e['name']:<24} {e.get('description', '')}")
    return 0


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def _cmd_data_inspect(args) -> int:
    from .data import check_data_dir, load_items

    check_data_dir(args.data_dir, [args.spec])
    items = load_items(args.spec, data_dir=args.data_dir)
    fields = [f for f in items[0].to_dict()]
    present = {f: sum(1 for it in items if getattr(it, f) not in (None, [], "")) for f in fields}
    info = {
        "spec": args.spec,
        "rows": len(items),
        "fields": [f for f in fields if present[f]],
        "field_counts": present,
        "entities": len({it.entity for it in items if it.entity is not None}),
        "perturbed_per_item": sorted({len(it.perturbed_answers) for it in items}),
        "example": items[0].to_dict(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{args.spec}: {info['rows']} rows, {info['entities']} entities")
        print(f"fields: {', '.join(info['fields'])}")
        print(f"example: Q: {items[0].question}\n         A: {items[0].answer}")
    return 0


def _cmd_generate(args) -> int:
    from .data.formatting import Formatter, check_format
    from .engine.generation import generate
    from .models import load_model

    check_int("--max-new-tokens", args.max_new_tokens)
    check_format(args.style, system_prompt=args.system_prompt)
    for i, q in enumerate(args.question):
        if not q.strip():
            raise ObliviateError(f"question {i + 1} is empty")
    model, tok = load_model(args.model)
    fmt = Formatter(tok, style=args.style, system_prompt=args.system_prompt)
    answers = generate(model, tok, [fmt.prompt_text(q) for q in args.question], max_new_tokens=args.max_new_tokens)
    for q, a in zip(args.question, answers):
        print(a if len(args.question) == 1 else f"Q: {q}\nA: {a}\n")
    return 0


def _train_cfg(args):
    from .train import TrainConfig

    if not args.lora:
        refuse_unused([("--lora-r", args.lora_r)], "with --lora")
    return TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, seed=args.seed, lora=args.lora,
        lora_r=TrainConfig.lora_r if args.lora_r is None else args.lora_r, grad_checkpointing=args.grad_checkpointing,
        progress=not args.quiet,
    )


def _cmd_finetune(args) -> int:
    from .finetune import run_finetune

    rec = run_finetune(args.model, args.data, args.out, _train_cfg(args), data_dir=args.data_dir,
                       style=args.style, system_prompt=args.system_prompt, max_length=args.max_length,
                       overwrite=args.overwrite, resume=args.resume)
    print(f"wrote {args.out} (final loss {rec['final_loss']:.4f}, {rec['timings']['total_s']:.0f}s)")
    return 0


def _cmd_eval(args) -> int:
    from .evaluate import format_summary, run_from_logs, run_muse_eval, run_tofu_eval

    tofu_only = [("--data", args.data), ("--split", args.split), ("--utility-limit", args.utility_limit),
                 ("--variants", args.variants), ("--no-generation", args.no_generation),
                 ("--no-gradnorm", args.no_gradnorm), ("--style", args.style), ("--system-prompt", args.system_prompt)]
    if args.from_logs:
        refuse_unused([("--model", args.model), ("--limit", args.limit), ("--retain-eval", args.retain_eval),
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
                raise ObliviateError(_eval_data_hint(args.data))
            variants = tuple(v for v in (args.variants or "").split(",") if v)
            summary = run_tofu_eval(
                args.model, args.out, data=args.data or "tofu", split=args.split or "forget10", data_dir=args.data_dir,
                limit=args.limit, utility_limit=args.utility_limit, retain_eval=args.retain_eval,
                style=args.style or "chat", system_prompt=args.system_prompt,
                generation=not args.no_generation, gradnorm=not args.no_gradnorm, variants=variants,
                batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.quiet)
        else:
            refuse_unused(tofu_only, f"to TOFU, not to --benchmark {args.benchmark} (MUSE takes --data-dir, --limit, "
                          "--retain-eval, --batch-size); they would be ignored")
            summary = run_muse_eval(args.model, args.out, corpus=args.benchmark, data_dir=args.data_dir,
                                    limit=args.limit, retain_eval=args.retain_eval, batch_size=args.batch_size,
                                    overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {args.out}/summary.json")
    if args.benchmark == "tofu" or args.from_logs:
        print(format_summary(summary))
    else:
        from .evaluate import MUSE_HEADLINE

        print(format_summary(summary, MUSE_HEADLINE))
    return 0


def _eval_data_hint(data: str) -> str:
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


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(out=args.out, quick=args.quick)


def _add_format_args(p):
    p.add_argument("--style", default="chat", help="prompt style: chat (default), plain, llama2")
    p.add_argument("--system-prompt", default=None, help="system prompt for the chat template (default: the template's)")


def _add_train_args(p, epochs, lr, batch_size):
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="warm-up as a fraction of optimiser steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the saved model)")
    p.add_argument("--lora-r", type=int, default=None, help="LoRA rank (default 8; with --lora)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute decoder layers in backward: far less activation memory, ~1/3 more compute")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last per-epoch checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .engine.memory import allocator

    ap = argparse.ArgumentParser(prog="obliviate", description="Make a causal LM forget chosen data; measure and audit it.")
    ap.add_argument("--version", action="version", version=f"obliviate {__version__} (allocator: {allocator()})")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ls", help="list a registry: models, datasets, methods, metrics, benchmarks")
    p.add_argument("kind", nargs="?", choices=["models", "datasets", "methods", "metrics", "benchmarks", "protocols"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("data", help="data set tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("inspect", help="rows and fields of a data spec (tofu:forget10, synthetic:full, file.jsonl)")
    q.add_argument("spec")
    q.add_argument("--data-dir", default=None, help="local folder of the data set (else OBLIVIATE_TOFU_DIR or OBLIVIATE_MUSE_DIR, then the hub)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_data_inspect)

    p = sub.add_parser("generate", help="greedy chat-formatted answers to questions")
    p.add_argument("--model", required=True, help="built-in name, local folder or hub id")
    p.add_argument("question", nargs="+")
    p.add_argument("--max-new-tokens", type=int, default=200)
    _add_format_args(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("finetune", help="fine-tune a model on a QA data set (make TOFU target models)")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="data spec, e.g. tofu:full, synthetic:retain90, file.jsonl")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, type=out_arg)
    _add_train_args(p, epochs=5, lr=1e-5, batch_size=8)
    _add_format_args(p)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("eval", help="evaluate a model on TOFU or MUSE, or recompute metrics from logs")
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
    p.add_argument("--batch-size", type=int, default=32, help="generation slots (KV buffer: slots x (prompt + 200 + 32) tokens x ~46 KB for SmolLM2)")
    p.add_argument("--from-logs", default=None, help="recompute metrics from TOFU / open-unlearning / obliviate logs")
    p.add_argument("--retain-logs", default=None, help="with --from-logs: the retain model's logs")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    _add_format_args(p)
    p.set_defaults(func=_cmd_eval, style=None)  # None: not given (TOFU's default is chat; MUSE refuses it)

    from .unlearn import add_unlearn_parser

    add_unlearn_parser(sub)

    p = sub.add_parser("demo", help="the main job on the embedded defaults (smollm2-135m, synthetic authors)")
    p.add_argument("--out", default="runs/demo", type=out_arg)
    p.add_argument("--quick", action="store_true", help="a smaller run")
    p.set_defaults(func=_cmd_demo)
    return ap


# Commands that train run on tcmalloc when it is installed: glibc's heap keeps ~0.8 GB of freed activation
# blocks on SmolLM2-135M. Evaluation does not fragment that way (it releases memory between phases) and
# peaks ~0.1 GB lower on glibc, so `eval`, `generate` and `demo` keep the system allocator.
TCMALLOC_COMMANDS = ("finetune", "unlearn")


def main(argv: list[str] | None = None) -> int:
    """The command line, in this process (``argv`` None: ``sys.argv[1:]``). :func:`entry` is the program."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            return args.func(args) or 0
    except ObliviateError as e:
        print(f"obliviate: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("obliviate: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("obliviate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `obliviate ls --json | head`: the reader left; no traceback, no flush error at exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # no real stdout (a test's stand-in)
            pass
        return 141  # 128 + SIGPIPE, as a shell reports a program killed by it


def entry() -> int:
    """The ``obliviate`` program: the training commands first re-execute themselves under tcmalloc when it
    is installed (engine/memory.py: glibc's heap fragments under training; ``OBLIVIATE_MALLOC=system`` opts
    out), then :func:`main` runs."""
    if sys.argv[1:2] and sys.argv[1] in TCMALLOC_COMMANDS:
        from .engine.memory import AllocatorError, use_tcmalloc

        try:
            use_tcmalloc(sys.argv[1:])
        except AllocatorError as e:
            print(f"obliviate: error: {e}", file=sys.stderr)
            return 2
    return main()


if __name__ == "__main__":
    sys.exit(entry())
