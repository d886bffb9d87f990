"""TOFU evaluation: obliviate's engine vs a baseline, same model, same data, same numbers, one run.

    python benchmarks/bench_eval.py [--model smollm2-135m] [--data synthetic|tofu] [--data-dir D]
                                    [--limit 40] [--utility-limit N] [--no-generation]
                                    [--baseline naive|open-unlearning] [--json FILE]

Each mode runs in its own subprocess (so its peak RSS is its own), one after the other:
* engine — ``evaluate_tofu``: shared-prompt KV-cache scoring with answer-only logits; greedy generation
  with continuous batching, an in-place KV buffer and drafts from the scored answers; ghost GradNorm;
  ROUGE in the summary.
* ``--baseline naive`` (default) — the loop the evaluation issue defines: one forward pass per
  prompt+answer sequence with full logits, batch 1; greedy answers from Hugging Face ``generate``, batch 1
  (``--naive-gen-batch 16``: left-padded batches of 16); GradNorm one backward per item.
* ``--baseline open-unlearning`` — open-unlearning's evaluation *procedure* (locuslab/open-unlearning
  d3d7cf9, ``configs/eval/tofu.yaml`` with the five MIAs that need no reference model), written from its
  configs and documented steps, metric by metric: right-padded batches of 32 with full-vocabulary logits
  and their log-softmax, the prompt re-encoded for every answer variant, one pass per metric dataset
  (Prob, paraphrase, each perturbed answer; the MIA passes over forget and holdout; extraction strength),
  Hugging Face ``generate`` on left-padded batches of 32 (greedy, 200 new tokens), GradNorm by one
  backward per item, ROUGE with rouge-score per item. Its attention mask is built from the sequence
  lengths (open-unlearning's collator takes ``input_ids != pad_id``, which also masks the answer's EOS
  when the pad token is the EOS token, as in SmolLM2), so both modes compute the same quantities.
  docs/results.md maps each step to open-unlearning's files.

The bench checks that both modes give the same per-item values (average NLLs, token log-probs to 1e-4,
GradNorm to 1e-4 relative, ROUGE-L recall of the greedy answers to 1e-4), reports how many greedy answers
are identical, each mode's time and peak RSS, the speed-up and the memory ratio, and the engine's
teacher-forced scoring throughput as a fraction of the fp32 matmul peak measured in the same process.
``--json FILE`` writes the same as JSON (keys ``speedup``, ``memory_ratio``, ``numbers_agree``, ...).

Default sets are the bar in DEVELOPERS.md: 40 forget / 40 retain / 40 holdout + all real-authors and
world-facts items (100 and 117 with --data tofu).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch

TOL = 1e-4
OU_BATCH = 32  # open-unlearning configs/eval/tofu.yaml: batch_size (every metric but GradNorm)
OU_GENERATION = {"do_sample": False, "max_new_tokens": 200, "use_cache": True}  # configs/generation/default.yaml


# --------------------------------------------------------------------------------------------------------
# naive loop (the evaluation issue's)

def naive_eval(model, tok, sets, fmt, generation: bool, gen_batch: int = 1, timings: dict | None = None):
    from obliviate.engine.scoring import gradient_norm

    def avg_nll(prompt_ids, answer_ids):
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float()
        lp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1], -1)
        tl = lp.gather(-1, torch.tensor(answer_ids).unsqueeze(-1)).squeeze(-1)
        p = lp.exp()
        mu = (p * lp).sum(-1)
        _ = (tl - mu) / ((p * lp * lp).sum(-1) - mu**2).clamp_min(1e-12).sqrt()  # Min-K%++ as the engine does
        return -tl.mean().item()

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    records, gen_jobs = [], []
    for name, items in sets.items():
        for i, it in enumerate(items):
            p = fmt.prompt_ids(it.question)
            r = {"set": name, "index": i, "avg_nll": avg_nll(p, fmt.answer_ids(it.answer))}
            if name != "holdout":
                if name in ("forget", "retain") and it.paraphrased_answer:
                    r["paraphrased_avg_nll"] = avg_nll(p, fmt.answer_ids(it.paraphrased_answer))
                r["perturbed_avg_nll"] = [avg_nll(p, fmt.answer_ids(a)) for a in it.perturbed_answers]
                if generation:
                    gen_jobs.append((len(records), p))
            if name in ("forget", "holdout"):
                r["gradnorm"] = gradient_norm(model, p, fmt.answer_ids(it.answer))
            records.append(r)
    timings["scoring_and_gradnorm_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    texts = hf_generate(model, tok, [p for _, p in gen_jobs], gen_batch, {"max_new_tokens": 200, "do_sample": False})
    for (ri, _), g in zip(gen_jobs, texts):
        records[ri]["generation"] = g
    timings["generation_s"] = time.perf_counter() - t0
    return records


def hf_generate(model, tok, prompts: list[list[int]], batch: int, settings: dict) -> list[str]:
    """Greedy answers from Hugging Face ``generate`` on left-padded batches (mask from the prompt lengths);
    a batch decodes until its longest answer ends. Text: special tokens skipped, cut at the EOS text,
    stripped (open-unlearning ``eval_text_similarity``)."""
    out_texts = []
    eos_text = tok.decode([tok.eos_token_id])
    for s in range(0, len(prompts), batch):
        chunk = prompts[s : s + batch]
        T = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), T), tok.pad_token_id)
        att = torch.zeros((len(chunk), T), dtype=torch.long)
        for k, p in enumerate(chunk):
            ids[k, T - len(p):] = torch.tensor(p)
            att[k, T - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=att, pad_token_id=tok.eos_token_id, **settings)
        for k in range(len(chunk)):
            text = tok.decode(out[k, T:], skip_special_tokens=True)
            if eos_text and eos_text in text:
                text = text.split(eos_text)[0]
            out_texts.append(text.strip())
    return out_texts


# --------------------------------------------------------------------------------------------------------
# open-unlearning's evaluation procedure

def _right_padded(pairs, pad_id):
    """A right-padded batch of prompt+answer sequences; the attention mask from the lengths."""
    T = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), T), dtype=torch.long)
    for r, (p, a) in enumerate(pairs):
        ids[r, : len(p) + len(a)] = torch.tensor(p + a)
        mask[r, : len(p) + len(a)] = 1
    return ids, mask


def ou_pass(model, pairs, pad_id, stat: str, batch: int = OU_BATCH, texts=None) -> list:
    """One metric's pass over one dataset: batches of ``batch`` prompt+answer sequences, full-vocabulary
    logits and their log-softmax over every position (``evaluate_probability`` / ``tokenwise_logprobs`` /
    ``tokenwise_vocab_logprobs``), then the statistic per item:
    ``nll`` (average answer NLL), ``tokens`` (answer-token log-probs), ``minkpp`` (per-token Min-K%++ z from
    the whole distribution), ``argmax`` (whether the top token is the answer token, per position), ``zlib`` (NLL sum / zlib length)."""
    out = []
    for s in range(0, len(pairs), batch):
        chunk = pairs[s : s + batch]
        ids, mask = _right_padded(chunk, pad_id)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
        del logits
        for r, (p, a) in enumerate(chunk):
            lp = logp[r, len(p) - 1 : len(p) + len(a) - 1]
            tl = lp.gather(-1, torch.tensor(a).unsqueeze(-1)).squeeze(-1)
            if stat == "nll":
                out.append(-tl.mean().item())
            elif stat == "tokens":
                out.append(tl.tolist())
            elif stat == "zlib":
                out.append(-tl.sum().item() / len(zlib.compress(texts[s + r].encode("utf-8"))))
            elif stat == "argmax":
                out.append((lp.argmax(-1) == torch.tensor(a)).int().tolist())
            elif stat == "minkpp":
                pr = lp.exp()
                mu = (pr * lp).sum(-1)
                var = (pr * lp * lp).sum(-1) - mu.square()
                out.append(((tl - mu) / var.clamp_min(1e-12).sqrt()).tolist())
            else:
                raise ValueError(stat)
        del logp
    return out


def ou_gradnorms(model, pairs) -> list[float]:
    """``mia_gradnorm`` (batch 1): per item a forward with full logits, the mean answer NLL, one backward
    over every parameter, the norm from every parameter's gradient (here the global L2 norm, obliviate's
    definition; open-unlearning averages the per-parameter norms, same cost)."""
    norms = []
    was = model.training
    model.train()  # as open-unlearning does (SmolLM2 and tiny-llama have no dropout: same numbers)
    try:
        for p, a in pairs:
            ids = torch.tensor([p + a])
            model.zero_grad(set_to_none=True)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, len(p) - 1 : -1]
            torch.nn.functional.cross_entropy(logits.float(), torch.tensor(a)).backward()
            sq = sum(q.grad.double().square().sum() for q in model.parameters() if q.grad is not None)
            norms.append(float(sq.sqrt()))
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was)
    return norms


def ou_rouge(gens: list[str], truths: list[str], batch: int = OU_BATCH) -> list[float]:
    """rouge-score per item, a scorer per batch (``eval_rouge_recall_batch``): ROUGE-L recall."""
    from rouge_score import rouge_scorer

    out = []
    for s in range(0, len(gens), batch):
        scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
        for g, t in zip(gens[s : s + batch], truths[s : s + batch]):
            out.append(scorer.score(t, g)["rougeL"].recall)
    return out


def openunlearning_eval(model, tok, sets, fmt, generation: bool, timings: dict | None = None):
    """open-unlearning's TOFU evaluation, metric by metric in its config's order (each metric's pass is
    run once; a metric pre-computed under the same name is reused, as its cache does)."""
    timings = {} if timings is None else timings
    for k in ("scoring_s", "generation_s", "rouge_s", "gradnorm_s"):
        timings[k] = 0.0
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rec = {(n, i): {"set": n, "index": i} for n, items in sets.items() for i in range(len(items))}

    def qa(name, pick):  # (prompt, answer) pairs of a set, the prompt re-encoded for every variant
        return [(fmt.prompt_ids(it.question), fmt.answer_ids(pick(it))) for it in sets[name]]

    def prob(name, kind):
        t = time.perf_counter()
        if kind == "answer":
            for i, v in enumerate(ou_pass(model, qa(name, lambda it: it.answer), pad, "nll")):
                rec[(name, i)]["avg_nll"] = v
        elif kind == "para":
            idx = [i for i, it in enumerate(sets[name]) if it.paraphrased_answer]
            pairs = [(fmt.prompt_ids(sets[name][i].question), fmt.answer_ids(sets[name][i].paraphrased_answer))
                     for i in idx]
            for i, v in zip(idx, ou_pass(model, pairs, pad, "nll")):
                rec[(name, i)]["paraphrased_avg_nll"] = v
        else:  # perturbed answers: the collator makes one batch per answer index (intra_item_idx)
            for i in range(len(sets[name])):
                rec[(name, i)]["perturbed_avg_nll"] = []
            width = max((len(it.perturbed_answers) for it in sets[name]), default=0)
            for k in range(width):
                idx = [i for i, it in enumerate(sets[name]) if len(it.perturbed_answers) > k]
                pairs = [(fmt.prompt_ids(sets[name][i].question), fmt.answer_ids(sets[name][i].perturbed_answers[k]))
                         for i in idx]
                for i, v in zip(idx, ou_pass(model, pairs, pad, "nll")):
                    rec[(name, i)]["perturbed_avg_nll"].append(v)
        timings["scoring_s"] += time.perf_counter() - t

    def rouge(name):
        if not generation:
            return
        t = time.perf_counter()
        gens = hf_generate(model, tok, [fmt.prompt_ids(it.question) for it in sets[name]], OU_BATCH, OU_GENERATION)
        timings["generation_s"] += time.perf_counter() - t
        t = time.perf_counter()
        for i, (g, r) in enumerate(zip(gens, ou_rouge(gens, [it.answer for it in sets[name]]))):
            rec[(name, i)].update(generation=g, rougeL_recall=r)
        timings["rouge_s"] += time.perf_counter() - t

    def mia(stat, field=None):  # forget and holdout (TOFU_MIA)
        t = time.perf_counter()
        for name in ("forget", "holdout"):
            texts = [it.answer for it in sets[name]]
            vals = ou_pass(model, qa(name, lambda it: it.answer), pad, stat, texts=texts)
            if field:
                for i, v in enumerate(vals):
                    rec[(name, i)][field] = v
        timings["scoring_s"] += time.perf_counter() - t

    # forget_Truth_Ratio (pre-computes forget_Q_A_PARA_Prob, forget_Q_A_PERT_Prob), forget_quality (none),
    # forget_Q_A_Prob, forget_Q_A_ROUGE
    prob("forget", "para")
    prob("forget", "pert")
    prob("forget", "answer")
    rouge("forget")
    # model_utility: retain Prob / ROUGE / Truth_Ratio (PARA, PERT), real authors and world facts
    # Prob_normalised (Prob, PERT) / ROUGE / Truth_Ratio (cached)
    prob("retain", "answer")
    rouge("retain")
    prob("retain", "para")
    prob("retain", "pert")
    for name in ("real_authors", "world_facts"):
        prob(name, "answer")
        prob(name, "pert")
        rouge(name)
    # privleak (pre-computes mia_min_k: token log-probs of forget and holdout answers)
    mia("tokens", "token_logprobs")
    # extraction_strength: the argmax over the whole vocabulary at each forget answer position
    t = time.perf_counter()
    for i, v in enumerate(ou_pass(model, qa("forget", lambda it: it.answer), pad, "argmax")):
        rec[("forget", i)]["argmax_hits"] = v
    timings["scoring_s"] += time.perf_counter() - t
    # mia_min_k_plus_plus: tokenwise_vocab_logprobs and tokenwise_logprobs, two forward passes per batch
    mia("minkpp", "token_minkpp")
    mia("tokens")
    # mia_min_k: cached (privleak computed it); mia_loss (the holdout's average NLL); mia_zlib
    mia("nll")
    t = time.perf_counter()
    for i, v in enumerate(ou_pass(model, qa("holdout", lambda it: it.answer), pad, "nll")):
        rec[("holdout", i)]["avg_nll"] = v
    timings["scoring_s"] += time.perf_counter() - t
    mia("zlib")
    # mia_gradnorm: batch 1, one backward per item
    t = time.perf_counter()
    for name in ("forget", "holdout"):
        for i, v in enumerate(ou_gradnorms(model, qa(name, lambda it: it.answer))):
            rec[(name, i)]["gradnorm"] = v
    timings["gradnorm_s"] += time.perf_counter() - t
    return list(rec.values())


# --------------------------------------------------------------------------------------------------------
# the engine's teacher-forced throughput vs the matmul peak

def matmul_peak_gflops(n: int = 1024, seconds: float = 3.0) -> float:
    """The best fp32 ``torch.mm`` rate (GFLOP/s) of n x n products over a few seconds, in this process."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(3):
        torch.mm(a, b, out=c)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b, out=c)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def scoring_flops(model, requests) -> dict:
    """Model FLOPs of the engine's teacher-forced pass over ``requests``: 2 x body parameters per token
    fed (each prompt once after the shared prefix, the prefix once, the nodes of each prompt's answer tree:
    shared answer starts once, no answer's last token) + 2 x head parameters per distribution computed
    (the prompt's last token and every tree node), attention's own products left out. Also the issue's
    plain 2 x params x tokens over every prompt and answer token (the work before the answer tree)."""
    from obliviate.engine.scoring import _common_prefix, answer_tree

    head = model.get_output_embeddings()
    n_head = head.weight.numel()
    n_all = sum(p.numel() for p in model.parameters())  # tied weights counted once
    emb = model.get_input_embeddings().weight
    n_body = n_all - (emb.numel() if emb is head.weight else emb.numel() + n_head)
    pre = len(_common_prefix([r.prompt_ids for r in requests]))
    prompts = pre + sum(len(r.prompt_ids) - pre for r in requests)
    nodes = sum(len(answer_tree(r.answers)[0]) for r in requests)
    answer_tokens = sum(len(a) for r in requests for a in r.answers)
    fed = prompts + nodes
    return {"tokens_fed": fed, "positions_scored": answer_tokens, "distributions": nodes + len(requests),
            "flops": 2 * n_body * fed + 2 * n_head * (nodes + len(requests)),
            "flops_2_params_tokens": 2 * n_all * (prompts + answer_tokens)}


# --------------------------------------------------------------------------------------------------------

KEEP = ("set", "index", "avg_nll", "paraphrased_avg_nll", "perturbed_avg_nll", "generation", "gradnorm",
        "rougeL_recall", "token_logprobs", "token_minkpp", "argmax_hits")


def child(args):
    import obliviate.engine.protocol_scoring as scoring_mod
    import obliviate.evaluate as evaluate_mod
    import obliviate.metrics.tofu as tofu_mod
    from obliviate.data.formatting import Formatter
    from obliviate.evaluate import evaluate_tofu, tofu_sets
    from obliviate.models import load_model

    model, tok = load_model(args.model)
    fmt = Formatter(tok)
    sets = tofu_sets(args.data, "forget10", args.data_dir, args.limit, args.utility_limit)
    extra = {}
    t, cpu_start = time.perf_counter(), time.process_time()
    if args.mode == "engine":
        score_calls, cpu = [], {"scoring": 0.0, "generation": 0.0, "gradnorm": 0.0, "rouge": 0.0}
        wall = dict(cpu)
        real = {"score": scoring_mod.score, "generate": evaluate_mod.generate,
                "gradient_norms": evaluate_mod.protocol_gradient_norms, "rouge": tofu_mod.rouge_scores}

        def cpu_timed(key, fn, record=None):  # CPU seconds of each phase (wall time lies on a loaded box)
            def wrapper(*a, **kw):
                t0, w0 = time.process_time(), time.perf_counter()
                out = fn(*a, **kw)
                cpu[key] += time.process_time() - t0
                wall[key] += time.perf_counter() - w0
                if record is not None:
                    record.append((a[1], time.perf_counter() - w0))
                return out
            return wrapper

        scoring_mod.score = cpu_timed("scoring", real["score"], score_calls)  # what score_answers calls
        evaluate_mod.generate = cpu_timed("generation", real["generate"])
        evaluate_mod.protocol_gradient_norms = cpu_timed("gradnorm", real["gradient_norms"])
        tofu_mod.rouge_scores = cpu_timed("rouge", real["rouge"])  # annotate_records calls it
        cpu0 = time.process_time()
        # protocol obliviate: the formatter both modes share (Formatter(tok): prompt and answer tokenized
        # apart, correct pad mask), as measured before TOFU's default became open-unlearning's
        summary, records = evaluate_tofu(model, tok, sets=sets, formatter=fmt, generation=not args.no_generation,
                                         progress=not args.quiet, protocol="obliviate")
        cpu_total = time.process_time() - cpu0
        timings = dict(summary["timings"])
        timings["rouge_s"] = wall["rouge"]
        extra["cpu_s"] = dict({f"{k}_s": round(v, 2) for k, v in cpu.items()}, total_s=round(cpu_total, 2),
                              overhead_s=round(cpu_total - sum(cpu.values()), 2))
        seconds = time.perf_counter() - t
        reqs = [r for reqs, _ in score_calls for r in reqs]
        fl = scoring_flops(model, reqs)
        score_s = sum(s for _, s in score_calls)
        peak = matmul_peak_gflops()
        extra["scoring_throughput"] = dict(
            fl, seconds=score_s, gflops=fl["flops"] / score_s / 1e9, matmul_peak_gflops=peak,
            fraction_of_peak=fl["flops"] / score_s / 1e9 / peak,
            fraction_of_peak_2_params_tokens=fl["flops_2_params_tokens"] / score_s / 1e9 / peak)
    elif args.mode == "open-unlearning":
        timings = {}
        records = openunlearning_eval(model, tok, sets, fmt, generation=not args.no_generation, timings=timings)
        seconds = time.perf_counter() - t
    else:
        timings = {}
        records = naive_eval(model, tok, sets, fmt, generation=not args.no_generation,
                             gen_batch=args.naive_gen_batch, timings=timings)
        seconds = time.perf_counter() - t
    Path(args.result).write_text(json.dumps({
        "seconds": seconds,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "cpu_total_s": time.process_time() - cpu_start,  # CPU seconds of all threads (incl. the peak probe)
        "n": {k: len(v) for k, v in sets.items()},
        "records": [{k: r.get(k) for k in KEEP} for r in records],
        **extra,
    }))


def compare(engine_records: list[dict], base_records: list[dict]) -> dict:
    """Per-item agreement of two modes' records (same items, same fields where both have them)."""
    e = {(r["set"], r["index"]): r for r in engine_records}
    b = {(r["set"], r["index"]): r for r in base_records}
    if e.keys() != b.keys():
        raise SystemExit("the two modes scored different items")
    out = {"max_nll_diff": 0.0, "max_token_logprob_diff": 0.0, "max_gradnorm_rel_diff": 0.0,
           "max_rouge_diff": 0.0, "max_minkpp_diff": 0.0, "argmax_same": [0, 0], "generations_same": [0, 0],
           "compared_values": 0}

    def diff(key, x, y):
        out[key] = max(out[key], abs(x - y))
        out["compared_values"] += 1

    for k, a in e.items():
        c = b[k]
        for f in ("avg_nll", "paraphrased_avg_nll"):
            if a.get(f) is not None and c.get(f) is not None:
                diff("max_nll_diff", a[f], c[f])
        if c.get("perturbed_avg_nll") is not None:
            if len(a["perturbed_avg_nll"]) != len(c["perturbed_avg_nll"]):
                raise SystemExit(f"{k}: different numbers of perturbed answers")
            for x, y in zip(a["perturbed_avg_nll"], c["perturbed_avg_nll"]):
                diff("max_nll_diff", x, y)
        if a.get("token_logprobs") is not None and c.get("token_logprobs") is not None:
            for x, y in zip(a["token_logprobs"], c["token_logprobs"]):
                diff("max_token_logprob_diff", x, y)
        if a.get("token_minkpp") is not None and c.get("token_minkpp") is not None:
            for x, y in zip(a["token_minkpp"], c["token_minkpp"]):
                out["max_minkpp_diff"] = max(out["max_minkpp_diff"], abs(x - y))
        if a.get("argmax_hits") is not None and c.get("argmax_hits") is not None:
            out["argmax_same"][0] += sum(x == y for x, y in zip(a["argmax_hits"], c["argmax_hits"]))
            out["argmax_same"][1] += len(c["argmax_hits"])
        if a.get("gradnorm") is not None and c.get("gradnorm") is not None:
            out["max_gradnorm_rel_diff"] = max(out["max_gradnorm_rel_diff"],
                                               abs(a["gradnorm"] - c["gradnorm"]) / max(abs(c["gradnorm"]), 1e-12))
            out["compared_values"] += 1
        if c.get("generation") is not None:
            out["generations_same"][0] += a.get("generation") == c["generation"]
            out["generations_same"][1] += 1
            if a.get("rougeL_recall") is not None and c.get("rougeL_recall") is not None:
                diff("max_rouge_diff", a["rougeL_recall"], c["rougeL_recall"])
    out["numbers_agree"] = bool(out["max_nll_diff"] <= TOL and out["max_token_logprob_diff"] <= TOL
                                and out["max_gradnorm_rel_diff"] <= TOL and out["max_rouge_diff"] <= TOL
                                and out["compared_values"] > 0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--utility-limit", type=int, default=None, help="first N real-authors / world-facts items")
    ap.add_argument("--no-generation", action="store_true")
    ap.add_argument("--engine-only", action="store_true", help="time the engine alone (no baseline run)")
    ap.add_argument("--baseline", choices=["naive", "open-unlearning"], default="naive")
    ap.add_argument("--naive-gen-batch", type=int, default=1,
                    help="batch size of the naive loop's HF generate (1 = the issue's naive loop)")
    ap.add_argument("--json", dest="json_out", default=None, help="write the results to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--mode", choices=["engine", "naive", "open-unlearning"], help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mode:
        return child(args)

    from obliviate.models import load_model

    load_model(args.model)  # convert/cache once, outside the timed runs
    res = {}
    modes = ("engine",) if args.engine_only else ("engine", args.baseline)
    with tempfile.TemporaryDirectory() as d:
        for mode in modes:
            out = Path(d) / f"{mode}.json"
            cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--result", str(out),
                   "--model", args.model, "--data", args.data, "--limit", str(args.limit),
                   "--naive-gen-batch", str(args.naive_gen_batch)]
            cmd += ["--data-dir", args.data_dir] if args.data_dir else []
            cmd += ["--no-generation"] if args.no_generation else []
            cmd += ["--utility-limit", str(args.utility_limit)] if args.utility_limit else []
            cmd += ["--quiet"] if args.quiet else []
            subprocess.run(cmd, check=True)
            res[mode] = json.loads(out.read_text())
    r = res["engine"]
    print(f"model {args.model}, data {args.data}, sets {r['n']}, torch threads {r['threads']}")
    print(f"engine : {r['seconds']:8.1f} s, peak RSS {r['maxrss_mb']:.0f} MiB  {r['timings']}  CPU {r['cpu_s']}")
    st = r["scoring_throughput"]
    print(f"engine scoring: {st['gflops']:.1f} GFLOP/s of model FLOPs ({st['tokens_fed']} tokens fed, "
          f"{st['positions_scored']} answer tokens scored from {st['distributions']} distributions, {st['seconds']:.1f} s) = {st['fraction_of_peak']:.0%} of the "
          f"fp32 torch.mm peak {st['matmul_peak_gflops']:.1f} GFLOP/s (2 x params x tokens: "
          f"{st['fraction_of_peak_2_params_tokens']:.0%})")
    report = {"model": args.model, "data": args.data, "sets": r["n"], "engine": {k: v for k, v in r.items() if k != "records"}}
    if args.engine_only:
        # DEVELOPERS.md: open-unlearning needs 21 min and 3.0 GB peak for the 40/40/40 + 100 + 117 TOFU run.
        print(f"vs open-unlearning (1260 s, 3.0e9 B peak, another day): {1260 / r['seconds']:.2f}x faster, "
              f"{r['maxrss_mb'] * 2**20 / 3.0e9:.2f}x the memory")
    else:
        b = res[args.baseline]
        agree = compare(r["records"], b["records"])
        speedup, mem = b["seconds"] / r["seconds"], r["maxrss_mb"] / b["maxrss_mb"]
        label = f"  (HF generate batch {args.naive_gen_batch})" if args.baseline == "naive" else ""
        print(f"{args.baseline}: {b['seconds']:8.1f} s, peak RSS {b['maxrss_mb']:.0f} MiB  {b['timings']}{label}")
        print(f"max |avg NLL engine - {args.baseline}| = {agree['max_nll_diff']:.2e}, token log-probs "
              f"{agree['max_token_logprob_diff']:.2e}, GradNorm relative {agree['max_gradnorm_rel_diff']:.2e}, "
              f"ROUGE {agree['max_rouge_diff']:.2e} (tolerance {TOL:g}); Min-K%++ z {agree['max_minkpp_diff']:.2e}; "
              f"argmax tokens {agree['argmax_same'][0]}/{agree['argmax_same'][1]}")
        if agree["generations_same"][1]:
            print(f"identical greedy answers: {agree['generations_same'][0]}/{agree['generations_same'][1]}")
        print(f"numbers agree: {'yes' if agree['numbers_agree'] else 'NO'}")
        print(f"speed-up: {speedup:.2f}x, memory ratio (peak RSS engine / {args.baseline}): {mem:.2f}")
        report.update(baseline=args.baseline, speedup=speedup, memory_ratio=mem,
                      numbers_agree=agree["numbers_agree"], agreement=agree,
                      baseline_run={k: v for k, v in b.items() if k != "records"})
    if args.json_out:
        tmp = Path(args.json_out).with_name(Path(args.json_out).name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.json_out)
    if not args.engine_only and not report["numbers_agree"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
