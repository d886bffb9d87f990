"""``obliviate data``: data set tools (``data inspect SPEC``)."""

from __future__ import annotations

import json


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
    return p


def run(args) -> int:
    return {"inspect": run_inspect}[args.data_command](args)


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
