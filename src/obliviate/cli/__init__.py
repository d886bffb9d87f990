"""The ``obliviate`` command line: one entry point for every job, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ..errors import ObliviateError
from ..runtime.process import Terminated


# One module per subcommand, in the order `obliviate --help` lists them. Each ``cli/<name>.py`` exposes
# ``add_parser(subparsers)`` (which sets ``func=run`` on its parser) and ``run(args) -> int``; a new command is
# one new file plus its name here.
COMMANDS = ("ls", "data", "generate", "finetune", "eval", "unlearn", "audit", "sweep", "select", "report", "card",
            "meta_eval", "relearn", "demo")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..engine.memory import allocator

    ap = argparse.ArgumentParser(prog="obliviate", description="Make a causal LM forget chosen data; measure and audit it.")
    ap.add_argument("--version", action="version", version=f"obliviate {__version__} (allocator: {allocator()})")
    sub = ap.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return ap


def _subparser(ap: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in ap._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)


# Commands that train run on tcmalloc when it is installed: glibc's heap keeps ~0.8 GB of freed activation
# blocks on SmolLM2-135M. Evaluation does not fragment that way (it releases memory between phases) and
# peaks ~0.1 GB lower on glibc, so `eval`, `generate` and `demo` keep the system allocator.
TCMALLOC_COMMANDS = ("finetune", "unlearn")


def main(argv: list[str] | None = None) -> int:
    """The command line, in this process (``argv`` None: ``sys.argv[1:]``). :func:`entry` is the program."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = build_parser()
    args = ap.parse_args(argv)
    from ..config import ConfigError, flag_names

    # field path -> flag: a setting named in an error is named as the flag that sets it
    try:
        args.flag_names = flag_names(_subparser(ap, args.command))
    except (AttributeError, KeyError):  # a parser without subcommands (a test's stand-in)
        args.flag_names = {}
    try:
        from ..runtime.dist import stdout_on_main

        with warnings.catch_warnings(), stdout_on_main():  # one copy of the results in a multi-process run
            warnings.filterwarnings("ignore", category=FutureWarning)
            return args.func(args) or 0
    except ConfigError as e:
        print(f"obliviate: error: {e.render(lambda f: args.flag_names.get(f, f))}", file=sys.stderr)
        return 2
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
        from ..engine.memory import AllocatorError, use_tcmalloc

        try:
            use_tcmalloc(sys.argv[1:])
        except AllocatorError as e:
            print(f"obliviate: error: {e}", file=sys.stderr)
            return 2
    return main()

