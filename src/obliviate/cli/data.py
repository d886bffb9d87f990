"""``obliviate data``: data set tools (``data inspect SPEC``; ``data news --out DIR``: the embedded news corpus as
MUSE files)."""

from __future__ import annotations

import json

from ._common import out_arg


def add_parser(subparsers):
    p = subparsers.add_parser("data", help="data set tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("inspect", help="rows and fields of a data spec (tofu:forget10, synthetic:full, file.jsonl)")
    q.add_argument("spec")
    q.add_argument("--data-dir", default=None, help="local folder of the data set (else OBLIVIATE_TOFU_DIR or "
                                                    "OBLIVIATE_MUSE_DIR, then the hub)")
    q.add_argument("--json", action="store_true")
    q.add_argument("--show-prompt", type=int, default=None, metavar="N",
                   help="print the first N items exactly as --model sees them under --protocol (text and token ids "
                        "at the prompt/answer boundary)")
    q.add_argument("--model", default=None, help="with --show-prompt: the model whose tokenizer and template to use")
    q.add_argument("--protocol", default=None, help="with --show-prompt: obliviate ls protocols (default open-unlearning)")
    q.set_defaults(func=run_inspect)

    from ..data.synthetic_news import DEFAULT_N_FORGET, DEFAULT_N_HOLDOUT, DEFAULT_N_RETAIN, LAYOUTS

    q = dsub.add_parser("news", help="write the embedded news corpus (synthetic-news) as MUSE files, to read or edit "
                                     "and to pass as --data-dir with --benchmark muse-news or muse-news:<config>")
    q.add_argument("--out", required=True, type=out_arg, help="the folder to write (then: --data-dir OUT)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--layout", default="muse_bench", choices=LAYOUTS,
                   help="muse_bench (default): OUT/news/<config>/<split>.json and raw .txt twins, as muse_bench's "
                        "load_data.py writes them; jsonl: OUT/<config>/<split>.jsonl hub rows")
    q.add_argument("--n-forget", type=int, default=DEFAULT_N_FORGET, help="forget articles (scal/sust folds need >= 4)")
    q.add_argument("--n-retain", type=int, default=DEFAULT_N_RETAIN, help="articles in retain1 and in retain2")
    q.add_argument("--n-holdout", type=int, default=DEFAULT_N_HOLDOUT)
    q.add_argument("--overwrite", action="store_true", help="replace a corpus folder written before")
    q.set_defaults(func=run_news)
    return p


def run(args) -> int:
    return {"inspect": run_inspect, "news": run_news}[args.data_command](args)


def run_news(args) -> int:
    """Write ``synthetic-news`` in MUSE's file layout; the folder gets a run.json (generator settings, versions), so
    the usual --out rules apply (a non-empty folder needs --overwrite, which only empties an obliviate folder)."""
    from ..data.muse import N_FOLDS
    from ..data.synthetic_news import corpus, write_muse_dir
    from ..runtime.run import Run

    sizes = {"n_forget": args.n_forget, "n_retain": args.n_retain, "n_holdout": args.n_holdout}
    config = {"data": "synthetic-news", "layout": args.layout, **sizes}
    # corpus(): the size checks, before the folder is touched
    with Run("data-news", args.out, config, seed=args.seed, overwrite=args.overwrite,
             checks=[lambda: corpus(args.seed, **sizes)]) as run:
        run.start()
        files = write_muse_dir(run.dir, args.layout, args.seed, **sizes)
        run.update(files=sorted(str(f.relative_to(run.dir)) for f in files))
    folds = "" if args.n_forget >= N_FOLDS else f" (no scal/sust folds: they need --n-forget >= {N_FOLDS})"
    print(f"wrote {len(files)} files to {args.out}{folds}; read them with --data-dir {args.out} "
          f"(eval --benchmark muse-news, or muse-news:<config> specs)")
    return 0


def run_inspect(args) -> int:
    from ..data import check_data_dir, load_items
    from ..errors import ObliviateError, refuse_unused

    check_data_dir(args.data_dir, [args.spec])
    if args.show_prompt is None:
        refuse_unused([("--model", args.model), ("--protocol", args.protocol)], "with --show-prompt N")
    else:
        from ..protocols import show_prompts

        if not args.model:
            raise ObliviateError("--show-prompt needs --model (its tokenizer and chat template make the prompt)")
        print(show_prompts(args.spec, args.model, args.protocol, args.show_prompt, data_dir=args.data_dir))
        return 0
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
