"""best_of_n_leak's cost: best-of-16 sampling vs greedy generation of the same questions (issue 18: at most 6x).

    python benchmarks/bench_audit.py [--model smollm2-135m] [--data synthetic:forget10] [--limit 40]
                                     [--n 16] [--max-new-tokens 64] [--threads N] [--json out.json]

One process, one model, the same formatted prompts:
* greedy  — `engine.generation.generate` (continuous batching, in-place KV buffer), what novel_recall_leak runs;
* best-of-n — `audit.sampling.sample`: each prompt encoded once and its keys/values stored once (the rows of
  its n samples attend to that one copy); up to --batch-rows samples decoded together (default: what
  `--memory-gb` holds, 640 at most), a finished sample's row refilled or dropped at once (T 1.0, top-p 1.0,
  seeded).
Each is timed once after a warm-up on 2 prompts; the ratio sampled/greedy is printed with the tokens each
produced (sampled answers are often longer than greedy ones: tokens/s is the fairer per-token comparison).
Run it on a quiet machine: the numbers are meaningless while other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default="synthetic:forget10")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="greedy slots")
    ap.add_argument("--batch-rows", type=int, default=None,
                    help="samples decoded together at most (default: what --memory-gb holds, 640 at most)")
    ap.add_argument("--memory-gb", type=float, default=None, help="the sampler's memory budget (default: the audit's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from obliviate.audit.sampling import MEMORY_GB, rows_for_memory, sample
    from obliviate.data import load_items
    from obliviate.data.formatting import Formatter
    from obliviate.engine.generation import generate
    from obliviate.models import load_model

    model, tok = load_model(args.model)
    model.eval()
    fmt = Formatter(tok)
    prompts = [fmt.prompt_text(it.question) for it in load_items(args.data)[: args.limit]]
    generate(model, tok, prompts[:2], max_new_tokens=4)  # warm-up
    sample(model, tok, prompts[:2], 2, max_new_tokens=4)

    # wall and CPU seconds: on a shared machine the CPU-time ratio is the steadier of the two
    t0, c0 = time.perf_counter(), time.process_time()
    greedy = generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    t_greedy, c_greedy = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    memory_gb = args.memory_gb or MEMORY_GB
    kw = {"batch_rows": args.batch_rows, "memory_gb": memory_gb}
    sampled = sample(model, tok, prompts, args.n, max_new_tokens=args.max_new_tokens, seed=0, **kw)
    t_sample, c_sample = time.perf_counter() - t0, time.process_time() - c0

    def n_tokens(texts):
        return sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)

    g_tok, s_tok = n_tokens(greedy), n_tokens([s for rows in sampled for s in rows])
    res = {"model": args.model, "prompts": len(prompts), "n": args.n, "max_new_tokens": args.max_new_tokens,
           "batch_rows": args.batch_rows or rows_for_memory(
               model, max(len(tok(p, add_special_tokens=False).input_ids) for p in prompts), args.max_new_tokens,
               args.n, memory_gb),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "threads": torch.get_num_threads(), "greedy_s": round(t_greedy, 3), "best_of_n_s": round(t_sample, 3),
           "ratio": round(t_sample / t_greedy, 2),
           "greedy_cpu_s": round(c_greedy, 3), "best_of_n_cpu_s": round(c_sample, 3),
           "cpu_ratio": round(c_sample / c_greedy, 2), "greedy_tokens": g_tok, "sampled_tokens": s_tok,
           "greedy_tok_per_s": round(g_tok / t_greedy, 1), "sampled_tok_per_s": round(s_tok / t_sample, 1)}
    print(json.dumps(res, indent=2))
    print(f"best-of-{args.n} costs {res['ratio']}x greedy generation of the same {len(prompts)} questions "
          f"({res['cpu_ratio']}x in CPU seconds; target: <= 6x)")
    if args.json:
        from obliviate.io import atomic_write_json

        atomic_write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
