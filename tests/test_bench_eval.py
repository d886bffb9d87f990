"""benchmarks/bench_eval.py's open-unlearning baseline computes the engine's numbers (on tiny-llama)."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_eval.py"
    spec = importlib.util.spec_from_file_location("bench_eval", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_right_padded_mask_keeps_an_eos_that_is_also_the_pad_token():
    """open-unlearning's collator masks ``input_ids != pad``; with pad == EOS that drops the answer's EOS.
    The baseline builds the mask from the lengths."""
    bench = _bench()
    eos = 2
    ids, mask = bench._right_padded([([5, 6], [7, eos]), ([5], [eos])], pad_id=eos)
    assert ids.tolist() == [[5, 6, 7, eos], [5, eos, eos, eos]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_open_unlearning_baseline_gives_the_engines_per_item_numbers(tiny_fresh):
    from obliviate.data.formatting import Formatter
    from obliviate.evaluate import evaluate_tofu, tofu_sets

    bench = _bench()
    model, tok = tiny_fresh
    fmt = Formatter(tok)
    sets = tofu_sets("synthetic", "forget10", limit=3, utility_limit=2)
    # protocol obliviate, as the bench runs it: the shared Formatter(tok) and the GradNorm statistic the baseline
    # computes
    _, engine = evaluate_tofu(model, tok, sets=sets, formatter=fmt, progress=False, max_new_tokens=200,
                              protocol="obliviate")
    timings = {}
    base = bench.openunlearning_eval(model, tok, sets, fmt, generation=True, timings=timings)
    keep = lambda recs: [{k: r.get(k) for k in bench.KEEP} for r in recs]  # noqa: E731
    agree = bench.compare(keep(engine), keep(base))
    assert agree["numbers_agree"], agree
    assert agree["generations_same"] == [10, 10]  # 3 forget + 3 retain + 2 + 2
    assert agree["argmax_same"][0] == agree["argmax_same"][1] > 0
    # every per-item number was compared: 3 NLLs + perturbed per forget/retain item, GradNorm on 6 items, ...
    assert agree["compared_values"] > 50
    assert set(timings) == {"scoring_s", "generation_s", "rouge_s", "gradnorm_s"}


def test_compare_flags_a_changed_value():
    bench = _bench()
    a = [{"set": "forget", "index": 0, "avg_nll": 1.0, "perturbed_avg_nll": [2.0], "gradnorm": 3.0}]
    b = [{"set": "forget", "index": 0, "avg_nll": 1.0, "perturbed_avg_nll": [2.0 + 2e-4], "gradnorm": 3.0}]
    assert not bench.compare(a, b)["numbers_agree"]
    b[0]["perturbed_avg_nll"] = [2.0 + 5e-5]
    assert bench.compare(a, b)["numbers_agree"]


def test_matmul_peak_is_positive():
    assert _bench().matmul_peak_gflops(n=64, seconds=0.05) > 0
    assert torch.get_num_threads() == 1


def test_scoring_flops_count_the_answer_tree(tiny):
    """Hand count: shared prefix [1, 2] once, prompt suffixes [3] and [4, 5], tree nodes 5, 5-6, 5-7 and 9
    (no EOS node), one distribution per node plus one per prompt."""
    from obliviate.engine.scoring import ScoreRequest

    model, _ = tiny
    reqs = [ScoreRequest([1, 2, 3], [[5, 6, 2], [5, 7, 2]]), ScoreRequest([1, 2, 4, 5], [[9, 2]])]
    fl = _bench().scoring_flops(model, reqs)
    assert (fl["tokens_fed"], fl["distributions"], fl["positions_scored"]) == (2 + 1 + 2 + 4, 4 + 2, 8)
    head = model.get_output_embeddings().weight.numel()
    n_all = sum(p.numel() for p in model.parameters())
    body = n_all - head  # tied: the embedding is the head
    assert fl["flops"] == 2 * body * 9 + 2 * head * 6
    assert fl["flops_2_params_tokens"] == 2 * n_all * (5 + 8)
