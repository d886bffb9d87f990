"""``obliviate generate``: greedy chat-formatted answers to questions."""

from __future__ import annotations

from ..errors import ObliviateError, check_int
from ._common import add_format_args, add_protocol_args


def add_parser(subparsers):
    p = subparsers.add_parser("generate", help="greedy chat-formatted answers to questions")
    p.add_argument("--model", required=True, help="built-in name, local folder or hub id")
    p.add_argument("question", nargs="+")
    p.add_argument("--max-new-tokens", type=int, default=200)
    add_format_args(p)
    add_protocol_args(p)
    p.set_defaults(func=run, style=None)  # None: the protocol's
    return p


def run(args) -> int:
    from ..data.formatting import Formatter, check_format
    from ..engine.generation import generate
    from ..models import load_model

    from ..protocols import training_protocol

    check_int("--max-new-tokens", args.max_new_tokens)
    # the prompts a model trained with the same --protocol saw (default: open-unlearning's, as finetune's)
    proto = training_protocol(args.protocol, style=args.style, system_prompt=args.system_prompt,
                              date_string=args.date_string)
    check_format(proto.style, system_prompt=proto.system_prompt)
    for i, q in enumerate(args.question):
        if not q.strip():
            raise ObliviateError(f"question {i + 1} is empty")
    model, tok = load_model(args.model)
    fmt = Formatter.from_protocol(tok, proto)
    answers = generate(model, tok, [fmt.generation_prompt_text(q) for q in args.question],
                       max_new_tokens=args.max_new_tokens, all_eos=proto.stop_at_all_eos,
                       prompt_ids=[fmt.generation_prompt_ids(q) for q in args.question])
    for q, a in zip(args.question, answers):
        print(a if len(args.question) == 1 else f"Q: {q}\nA: {a}\n")
    return 0
