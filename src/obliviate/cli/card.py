"""``obliviate card RUN --out README.md``: a Hugging Face model card of an unlearned model."""

from __future__ import annotations

import argparse

from ..io import out_arg


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "card", help="write a Hugging Face model card (README.md) for an unlearned model",
        description="Front matter (license, library_name, base_model, tags, datasets, pipeline_tag, language, "
                    "model-index), intended use, training details, the sweep grid and selection rule (--sweep), "
                    "benchmark and audit results (--audit), how to load, citation.")
    p.add_argument("run", help="the unlearn run folder (the model)")
    p.add_argument("--out", required=True, type=out_arg, help="the card file, e.g. RUN/README.md")
    p.add_argument("--audit", default=None, help="an audit folder or audit.json of this model")
    p.add_argument("--sweep", default=None, help="the sweep folder the model was selected from")
    p.add_argument("--license", default=None, help="license id (default: the base model's, else 'other')")
    p.add_argument("--name", default=None, help="model name in the card")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..report.card import write_card

    out = write_card(args.run, args.out, audit=args.audit, sweep=args.sweep, license=args.license,
                     model_name=args.name)
    print(f"wrote {out}")
    return 0
