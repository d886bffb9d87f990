"""What the meta-eval tests share: a pools file in a test's folder, and ``obliviate meta-eval`` run in process."""

import argparse

from obliviate.cli.meta_eval import add_parser, run


def write_pools(tmp_path, text: str, name: str = "pools.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def cli(argv):
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    return run(ap.parse_args(["meta-eval", *argv]))
