"""``obliviate ls``: list a registry (models, datasets, methods, metrics, benchmarks)."""

from __future__ import annotations

import json


def add_parser(subparsers):
    from ..registry import REGISTRIES

    p = subparsers.add_parser("ls", help="list a registry: " + ", ".join(REGISTRIES))
    p.add_argument("kind", nargs="?", choices=list(REGISTRIES))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..registry import REGISTRIES

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
