"""``obliviate meta-eval POOLS.yaml --out DIR``: which unlearning metric can you trust?

Fine-tunes every control model of the pools file, evaluates it on TOFU (or MUSE, for a pools file on a MUSE
corpus such as synthetic-news), attacks the negative and unlearned
ones (relearning, 4-bit quantization), and writes, per metric, faithfulness, R, Q, robustness and overall with
bootstrap intervals: ``table.json``, ``table.md`` and ``report.html`` (+ ``report.md``: the plots of
``obliviate report``). After an interruption, the same command with ``--resume`` redoes only what is not
finished. ``--workers N`` builds N models at once (local processes, or Ray tasks with ``--backend ray``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

FIELDS = ("faithfulness", "R", "Q", "robustness", "overall")
# Values of each model shown in table.md's model list (all of them are in table.json).
MODEL_COLUMNS = ("forget_Q_A_Prob", "forget_Truth_Ratio_prob_mean", "forget_truth_ratio", "forget_quality",
                 "extraction_strength", "model_utility")
MUSE_MODEL_COLUMNS = ("verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc", "privleak")
# Settings a --resume may change (config key -> flag): they change the table or the speed, not a model.
RESUME_MAY_CHANGE = {"keys": "--keys", "n_boot": "--n-boot", "seed": "--seed", "workers": "--workers",
                     "backend": "--backend", "pools_file": "the pools file's path"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..io import out_arg

    p = subparsers.add_parser("meta-eval", help="faithfulness and robustness of each metric over control-model pools",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pools", help="pools file (YAML): model, data, grid, positives, negatives, attacks")
    p.add_argument("--out", required=True, type=out_arg, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted meta-eval in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--keys", default=None,
                   help="comma-separated summary keys to meta-evaluate (default: every key with a knowledge "
                        "orientation that the evaluations produced)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates over models (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--workers", type=int, default=1,
                   help="models built at once (default 1): each worker fine-tunes, evaluates and attacks whole models, "
                        "with cores // workers torch threads")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local worker processes, or one Ray task per model (RAY_ADDRESS names a cluster; the --out "
                        "folder must be on a file system every node sees)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import ObliviateError, check_int
    from ..metaeval.pools import PoolRunner, load_pools
    from ..metaeval.scores import KNOWLEDGE, meta_table
    from ..runtime.run import Run

    check_int("--n-boot", args.n_boot)
    check_int("--workers", args.workers)
    keys = None
    if args.keys:
        keys = [k.strip() for k in args.keys.split(",") if k.strip()]
        for k in keys:
            if k not in KNOWLEDGE:
                raise ObliviateError(f"--keys: {k!r} has no knowledge orientation; valid: {', '.join(KNOWLEDGE)}")
    cfg = load_pools(args.pools)
    config = {"pools_file": str(args.pools), "pools": cfg, "keys": keys, "n_boot": args.n_boot, "seed": args.seed,
              "workers": args.workers, "backend": args.backend}
    inputs = {"--data-dir": cfg["data_dir"], "the base model": cfg["model"],
              **{f"unlearned {m['name']}": m["model_dir"] for m in cfg["models"] if m["role"] == "unlearned"}}
    out = Path(args.out)
    # What a --resume continues from: the stages finished so far (index.json) and any model being fine-tuned.
    # Without it Run would start the folder afresh.
    kept = [n for n in ("index.json", "models") if (out / n).exists()]
    resume = args.resume and (out / "run.json").is_file()  # --resume of a meta-eval not yet started: it starts
    from ..metaeval.pools import LEGACY

    with Run("meta-eval", out, config, seed=args.seed, inputs=inputs, overwrite=args.overwrite, resume=resume,
             resumable=True, may_change=RESUME_MAY_CHANGE, checkpoint=" and ".join(kept) or None,
             legacy=LEGACY) as run:
        run.start()
        runner = PoolRunner(cfg, out, progress=not args.quiet, log=lambda s: print(s, file=sys.stderr))
        before = runner.finished()
        t0 = time.time()
        if args.workers == 1 and args.backend == "local":
            runner.run()
        else:
            from ..metaeval.parallel import run_parallel

            run_parallel(out, args.workers, backend=args.backend, progress=not args.quiet)
        run.timing("models_s", time.time() - t0)
        after = runner.finished()
        missing = [f"{n}: {s}" for n, s in runner.pending()]
        if missing:
            raise ObliviateError(f"{len(missing)} stage(s) did not finish ({', '.join(missing[:4])}"
                                 f"{', ...' if len(missing) > 4 else ''}); rerun with --resume")
        table = runner.table()
        rows = meta_table(table, keys, cfg["retain_control"], n_boot=args.n_boot, seed=args.seed)
        result = {"metrics": rows, "models": table, "retain_control": cfg["retain_control"],
                  "n_boot": args.n_boot, "seed": args.seed}
        run.write_json("table.json", result)
        md = markdown(rows, table, cfg)
        run.write_text("table.md", md)
        from ..report.html import write_report

        write_report([out], out / "report.html", title=f"meta-evaluation: {cfg['model']} on {_data(cfg)}")
        run.update(ran=len(after - before), skipped=len(before),
                   meta={r["key"]: {f: r[f] for f in FIELDS} for r in rows})
    print(md)
    return 0


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _cell(row: dict, f: str) -> str:
    v, ci = row[f], (row.get("ci") or {}).get(f) or {}
    if v is None:
        return "–"
    return f"{v:.3f} [{_fmt(ci.get('lo'))}, {_fmt(ci.get('hi'))}]" if ci.get("lo") is not None else f"{v:.3f}"


def _data(cfg: dict) -> str:
    """The pools' data in words: the TOFU family and split, or the MUSE corpus."""
    return f"{cfg['data']} {cfg['split']}" if cfg.get("split") else f"{cfg['data']} (MUSE)"


def markdown(rows: list[dict], table: list[dict], cfg: dict) -> str:
    """table.md: the meta-evaluation table (value [95 % interval]), then the models and their values."""
    columns = MUSE_MODEL_COLUMNS if cfg.get("benchmark") == "muse" else MODEL_COLUMNS
    lines = [f"Meta-evaluation of {len(rows)} metrics over {len(table)} models "
             f"(base {cfg['model']}, data {_data(cfg)}; retain control {cfg['retain_control']}).",
             "", "| metric | " + " | ".join(FIELDS) + " | threshold | P / N / called unlearned |",
             "|---|" + "---|" * (len(FIELDS) + 2)]
    for r in rows:
        lines.append(f"| {r['key']} | " + " | ".join(_cell(r, f) for f in FIELDS)
                     + f" | {_fmt(r['threshold'])} | {r['n_positive']} / {r['n_negative']} / {r['n_called_unlearned']} |")
    lines += ["", "| model | role | lr | epochs | " + " | ".join(columns) + " |",
              "|---|---|---|---|" + "---|" * len(columns)]
    for m in table:
        s = m["summary"] or {}
        lr = "" if m["lr"] is None else f"{m['lr']:g}"
        lines.append(f"| {m['name']} | {m['role']} | {lr} | {m['epochs'] or ''} | "
                     + " | ".join(_fmt(s.get(k)) for k in columns) + " |")
    return "\n".join(lines) + "\n"
