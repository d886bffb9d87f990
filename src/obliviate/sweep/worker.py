"""``python -m obliviate.sweep.worker DIR``: one local worker of a sweep (started by backends.run_local)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="obliviate.sweep.worker")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--name", default="local")
    args = ap.parse_args(argv)
    from ..errors import ObliviateError
    from .runner import work_loop

    try:
        work_loop(Path(args.out), f"{args.name}:{os.getpid()}", threads=args.threads)
    except ObliviateError as e:
        print(f"obliviate sweep worker: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
