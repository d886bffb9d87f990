"""How far open-unlearning's pad=eos attention mask moves each TOFU number (docs/metrics.md, "Protocols").

Runs the TOFU evaluation twice on the same model and items under the open-unlearning protocol, once with
the correct mask (from lengths) and once with ``pad_mask="eos"`` (``input_ids != eos``, open-unlearning's
collator), and prints per-metric values, their difference, and per-item NLL differences per set.

    PYTHONPATH=src python benchmarks/protocol_padmask.py --model smollm2-135m --data-dir /work/shared/data/tofu \
        --limit 10 [--no-generation] [--out padmask.json]
"""

from __future__ import annotations

import argparse
import json
import time

from obliviate.evaluate import evaluate_tofu, tofu_sets
from obliviate.models import load_model
from obliviate.protocols import get_protocol


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default="tofu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", default="forget10")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--no-generation", action="store_true")
    ap.add_argument("--no-gradnorm", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    model, tok = load_model(args.model)
    sets = tofu_sets(args.data, args.split, args.data_dir, args.limit, args.limit)
    runs = {}
    for mask in ("correct", "eos"):
        t0 = time.time()
        summary, records = evaluate_tofu(model, tok, sets=sets, protocol=get_protocol("open-unlearning", pad_mask=mask),
                                         generation=not args.no_generation, gradnorm=not args.no_gradnorm,
                                         progress=False)
        runs[mask] = (summary, records)
        print(f"[{mask}] {time.time() - t0:.0f}s", flush=True)
    (s0, r0), (s1, r1) = runs["correct"], runs["eos"]
    rows = []
    for k, v in s0.items():
        if isinstance(v, float) and isinstance(s1.get(k), float):
            rows.append((k, v, s1[k], s1[k] - v))
            print(f"{k:<32} correct {v:10.4f}  eos {s1[k]:10.4f}  diff {s1[k] - v:+.4f}")
    per_set = {}
    for a, b in zip(r0, r1):
        if a.get("avg_nll") is not None:
            per_set.setdefault(a["set"], []).append(abs(b["avg_nll"] - a["avg_nll"]))
    for name, d in per_set.items():
        print(f"|d avg_nll| {name:<13} min {min(d):.4f} max {max(d):.4f} mean {sum(d) / len(d):.4f}")
    if not args.no_generation:
        changed = sum(a.get("generation") != b.get("generation") for a, b in zip(r0, r1) if a["set"] == "forget")
        print(f"forget greedy answers changed: {changed} of {len(sets['forget'])}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summaries": {"correct": s0, "eos": s1}, "diffs": rows, "nll_abs_diff": per_set}, f, indent=1)


if __name__ == "__main__":
    main()
