"""``obliviate generate``: greedy answers to questions, in a protocol's prompt format."""

from __future__ import annotations

from ..errors import ObliviateError, check_int


def add_parser(subparsers):
    from ..config import FormatConfig, add_config_args

    p = subparsers.add_parser("generate", help="greedy answers to questions, in a protocol's prompt format")
    p.add_argument("--model", required=True, help="built-in name, local folder or hub id")
    p.add_argument("question", nargs="+")
    p.add_argument("--max-new-tokens", type=int, default=200)
    add_config_args(p, FormatConfig, skip=("max_length",))  # --protocol, --style, --system-prompt, --date-string
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..config import FormatConfig, given_settings
    from ..engine.generation import generate
    from ..models import load_model

    check_int("--max-new-tokens", args.max_new_tokens)
    # the prompts a model trained with the same --protocol saw (default: open-unlearning's, as finetune's)
    fc = FormatConfig.from_dict(given_settings(args))
    fc.validate()
    proto = fc.resolved_protocol()
    for i, q in enumerate(args.question):
        if not q.strip():
            raise ObliviateError(f"question {i + 1} is empty")
    model, tok = load_model(args.model)
    fmt = fc.formatter(tok)
    answers = generate(model, tok, [fmt.generation_prompt_text(q) for q in args.question],
                       max_new_tokens=args.max_new_tokens, all_eos=proto.stop_at_all_eos,
                       prompt_ids=[fmt.generation_prompt_ids(q) for q in args.question])
    for q, a in zip(args.question, answers):
        print(a if len(args.question) == 1 else f"Q: {q}\nA: {a}\n")
    return 0
