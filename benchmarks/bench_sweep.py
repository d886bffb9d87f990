"""A sweep of G points vs G separate unlearning runs: is the shared work done once?

Measures, on one model (default tiny-llama; ``--model smollm2-135m`` for the real one):

* ``prep``: the shared preparation a sweep does once — the retain model's evaluation, the evaluation before
  unlearning, the reference log-likelihood cache (timed in a G=1 sweep's files);
* ``run``: one unlearning run's own work (training + per-epoch evaluations after each epoch), from a
  standalone ``run_unlearn`` (its total minus its initial evaluation and reference cache);
* ``sweep``: the wall time of a G-point sweep (fresh folder).

Prints ``ratio = sweep / (G x run + prep)``: at most ~1 when the shared work is done once (model loading
per point is the remainder). Run it on a quiet machine: ``python benchmarks/bench_sweep.py --points 4``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

GRID = """
model: {model}
forget: synthetic:forget10?n_authors=4
retain: synthetic:retain90?n_authors=4
retain_model: {retain}
fixed:
  method: npo
  epochs: {epochs}
  batch_size: 4
  lora: {lora}
  eval_limit: {limit}
  eval_generation: false
  eval_gradnorm: false
grid:
  lr: [{lrs}]
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-llama")
    ap.add_argument("--retain-model", default=None, help="default: the model itself (only timing matters)")
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--keep", default=None, help="keep the folders here")
    args = ap.parse_args()
    from obliviate.io import read_json
    from obliviate.sweep import run_sweep
    from obliviate.sweep.runner import set_threads, cpu_count

    set_threads(cpu_count())
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_sweep."))
    root.mkdir(parents=True, exist_ok=True)
    lrs = ", ".join(f"{1e-4 * (i + 1):.1e}" for i in range(args.points))
    fmt = dict(model=args.model, retain=args.retain_model or args.model, epochs=args.epochs,
               lora=str(args.lora).lower(), limit=args.limit)

    # 1. one standalone run (its own preparation included), and the shared preparation of a 1-point sweep
    one = root / "one.yaml"
    one.write_text(GRID.format(**fmt, lrs="1.0e-4"))
    t0 = time.time()
    run_sweep(one, root / "sweep-1", progress=False)
    t_one_sweep = time.time() - t0
    r = read_json(root / "sweep-1" / "runs" / "p000" / "run.json")
    retain_eval_s = read_json(root / "sweep-1" / "shared" / "retain-eval" / "run.json")["timings"]["total_s"]
    init = read_json(root / "sweep-1" / "runs" / "p000" / "eval" / "initial" / "summary.json")
    init_s = sum((init.get("timings") or {}).values())
    cache_s = r["setup"].get("reference_cache_s", 0.0)
    prep = retain_eval_s + init_s + cache_s
    run_s = r["timings"]["total_s"] - init_s - cache_s

    # 2. the G-point sweep
    many = root / "many.yaml"
    many.write_text(GRID.format(**fmt, lrs=lrs))
    t0 = time.time()
    run_sweep(many, root / f"sweep-{args.points}", progress=False)
    t_sweep = time.time() - t0
    bound = args.points * run_s + prep
    res = {"model": args.model, "points": args.points, "sweep_s": round(t_sweep, 2), "run_s": round(run_s, 2),
           "prep_s": round(prep, 2), "prep_parts_s": {"retain_eval": retain_eval_s, "initial_eval": round(init_s, 2),
                                                      "reference_cache": cache_s},
           "one_point_sweep_s": round(t_one_sweep, 2), "ratio": round(t_sweep / bound, 3)}
    print(json.dumps(res, indent=2))
    print(f"sweep of {args.points} points: {t_sweep:.1f}s; G x run + prep = {args.points} x {run_s:.1f} + {prep:.1f} "
          f"= {bound:.1f}s; ratio {t_sweep / bound:.2f} (<= 1: the shared work is done once)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
