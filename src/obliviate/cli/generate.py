"""``obliviate generate``: greedy chat-formatted answers to questions."""

from __future__ import annotations

from ..errors import ObliviateError, check_int
from ._common import add_format_args


def add_parser(subparsers):
    p = subparsers.add_parser("generate", help="greedy chat-formatted answers to questions")
    p.add_argument("--model", required=True, help="built-in name, local folder or hub id")
    p.add_argument("question", nargs="+")
    p.add_argument("--max-new-tokens", type=int, default=200)
    add_format_args(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..data.formatting import Formatter, check_format
    from ..engine.generation import generate
    from ..models import load_model

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
