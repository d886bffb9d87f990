"""Reading other tools' logs; golden values from the TOFU authors' own Phi-1.5 logs.

The reference logs live in ../shared/data/tofu-reference-logs (never copied into the repo). Golden numbers
(REFERENCE.md, TOFU paper): Phi-1.5 full MU 0.5221, retain90 MU 0.5320, forget quality of full vs
retain90 2.194e-16 with KS statistic 0.3467. The 7-decimal values below are what TOFU's own
aggregate_eval_stat.py computes from these files.
"""

import json
import math

import numpy as np
import pytest

from obliviate.errors import ObliviateError
from obliviate.interop import (
    detect_format,
    read_records,
    records_from_open_unlearning,
    records_from_tofu_log,
    summary_from_logs,
)
from obliviate.metrics.tofu import annotate_records, tofu_summary

FULL = "phi_full_wd0.01.json"
RETAIN90 = "phi_retain90_wd0.01.json"
TOFU_MU = {FULL: 0.5220737132035151, RETAIN90: 0.5319909117798324}  # TOFU's aggregate_eval_stat.py


@pytest.fixture(scope="module")
def logs(tofu_logs):
    """{file: annotated records} for both logs (ROUGE computed once per module)."""
    return {name: annotate_records(records_from_tofu_log(tofu_logs / name)) for name in (FULL, RETAIN90)}


# ------------------------------------------------------------------------------------------ golden
def test_tofu_log_mapping(logs, tofu_logs):
    recs = logs[FULL]
    counts = {}
    for r in recs:
        counts[r["set"]] = counts.get(r["set"], 0) + 1
    assert counts == {"forget": 300, "retain": 300, "real_authors": 100, "world_facts": 117}
    raw = json.loads((tofu_logs / FULL).read_text())["eval_log_forget.json"]
    f0 = recs[0]
    assert (f0["set"], f0["index"]) == ("forget", 0)
    assert f0["avg_nll"] == raw["avg_gt_loss"]["0"]
    assert f0["paraphrased_avg_nll"] == raw["avg_paraphrased_loss"]["0"]
    assert f0["perturbed_avg_nll"] == raw["average_perturb_loss"]["0"]
    assert [f0["prompt"], f0["generation"]] == raw["generated_text"]["0"][:2]
    assert f0["answer"] == "The author's full name is Hsiao Yun-Hwa."
    assert f0["question"].startswith("What is the full name of the author born in Taipei")
    assert f0["num_tokens"] == 17


def test_every_logged_rouge_reproduced(logs):
    n = 0
    for recs in logs.values():
        for r in recs:
            assert abs(r["rougeL_recall"] - r["logged_rougeL_recall"]) <= 1e-9, (r["set"], r["index"])
            assert abs(r["rouge1_recall"] - r["logged_rouge1_recall"]) <= 1e-9, (r["set"], r["index"])
            n += 1
    assert n == 2 * (300 + 300 + 100 + 117)


def test_every_logged_truth_ratio_reproduced(logs):
    # the logs hold float32 values
    for recs in logs.values():
        for r in recs:
            assert r["truth_ratio"] == pytest.approx(r["logged_truth_ratio"], rel=1e-5), (r["set"], r["index"])


def test_golden_model_utility(logs):
    for name, golden in ((FULL, 0.5221), (RETAIN90, 0.5320)):
        mu = tofu_summary(logs[name])["model_utility"]
        assert round(mu, 4) == golden
        assert mu == pytest.approx(TOFU_MU[name], abs=1e-12)


def test_golden_forget_quality(logs):
    s = tofu_summary(logs[FULL], logs[RETAIN90])
    assert s["forget_quality"] == pytest.approx(2.194e-16, rel=1e-3)
    assert s["forget_quality_ks_statistic"] == pytest.approx(0.3467, abs=5e-5)
    assert s["forget_quality_ks_statistic"] == pytest.approx(104 / 300)
    # the retain model against itself is indistinguishable
    assert tofu_summary(logs[RETAIN90], logs[RETAIN90])["forget_quality"] == pytest.approx(1.0)


def test_ra_wf_truth_ratio_from_answer_alone(logs):
    # Without TOFU's second scoring of the answer ("paraphrased" on ra/wf) the truth ratio uses the
    # answer's own avg NLL: MU moves by 2e-5 and still rounds to the paper's value.
    recs = [dict(r, paraphrased_avg_nll=None) if r["set"] in ("real_authors", "world_facts") else r
            for r in logs[FULL]]
    mu = tofu_summary(recs)["model_utility"]
    assert mu == pytest.approx(0.5220545190905039, abs=1e-12)
    assert round(mu, 4) == 0.5221


def test_summary_from_logs_end_to_end(tofu_logs):
    s = summary_from_logs(tofu_logs / FULL, tofu_logs / RETAIN90)
    assert s["source"]["format"] == "tofu" and s["source"]["retain_format"] == "tofu"
    assert s["model_utility"] == pytest.approx(TOFU_MU[FULL], abs=1e-12)
    assert s["forget_quality"] == pytest.approx(2.194e-16, rel=1e-3)
    assert s["n_items"] == {"forget": 300, "retain": 300, "real_authors": 100, "world_facts": 117}
    assert s["mia_loss"] is None and "holdout" in s["missing"]["mia_loss"]
    s = summary_from_logs(tofu_logs / FULL)
    assert s["forget_quality"] is None and "--retain-eval" in s["missing"]["forget_quality"]


def test_single_task_tofu_file(tofu_logs, tmp_path):
    raw = json.loads((tofu_logs / FULL).read_text())["eval_real_world_wo_options.json"]
    p = tmp_path / "eval_real_world_wo_options.json"
    p.write_text(json.dumps(raw))
    recs = records_from_tofu_log(p)
    assert len(recs) == 117 and {r["set"] for r in recs} == {"world_facts"}
    bad = tmp_path / "some_log.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ObliviateError, match="must be named one of"):
        records_from_tofu_log(bad)


# ---------------------------------------------------------------------------------- open-unlearning
def _ou_from_tofu(raw: dict) -> dict:
    """An open-unlearning TOFU_EVAL.json holding the same per-item values as a TOFU log.

    Layout as written by open-unlearning's evaluator (src/evals/metrics/memorization.py, utils.py):
    probability -> {idx: {"prob", "avg_loss"}} (lists for perturbed answers); rouge -> {idx:
    {"rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}};
    truth_ratio -> {idx: {"score"}}; each metric {"agg_value", "value_by_index"}.
    """
    out = {}
    sets = {"forget": "eval_log_forget.json", "retain": "eval_log.json",
            "ra": "eval_real_author_wo_options.json", "wf": "eval_real_world_wo_options.json"}

    def metric(vbi, agg):
        return {"agg_value": agg, "value_by_index": vbi}

    for p, f in sets.items():
        t = raw[f]
        idx = list(t["avg_gt_loss"])
        out[f"{p}_Q_A_Prob"] = metric({i: {"prob": math.exp(-t["avg_gt_loss"][i]), "avg_loss": t["avg_gt_loss"][i]}
                                       for i in idx}, 0.0)
        out[f"{p}_Q_A_PERT_Prob"] = metric({i: {"prob": [math.exp(-a) for a in t["average_perturb_loss"][i]],
                                                "avg_loss": t["average_perturb_loss"][i]} for i in idx}, 0.0)
        if p in ("forget", "retain"):
            out[f"{p}_Q_A_PARA_Prob"] = metric({i: {"prob": math.exp(-t["avg_paraphrased_loss"][i]),
                                                    "avg_loss": t["avg_paraphrased_loss"][i]} for i in idx}, 0.0)
        out[f"{p}_Q_A_ROUGE"] = metric({i: {"rouge1_recall": t["rouge1_recall"][i], "rougeL_f1": 0.0,
                                            "rougeL_recall": t["rougeL_recall"][i], "input": t["generated_text"][i][0],
                                            "ground_truth": t["generated_text"][i][2],
                                            "generation": t["generated_text"][i][1]} for i in idx}, 0.0)
        tr_key = "forget_truth_ratio" if p == "forget" else f"{p}_Truth_Ratio"
        out[tr_key] = metric({i: {"score": t["truth_ratio"][i]} for i in idx}, 0.0)
    out["model_utility"] = {"agg_value": 0.5}
    return out


def test_open_unlearning_log_matches_tofu_log(logs, tofu_logs, tmp_path):
    for name in (FULL, RETAIN90):
        raw = json.loads((tofu_logs / name).read_text())
        (tmp_path / name).write_text(json.dumps(_ou_from_tofu(raw)))
    model, retain = tmp_path / FULL, tmp_path / RETAIN90
    assert detect_format(model) == "open-unlearning"
    recs = records_from_open_unlearning(model)
    assert len(recs) == 817 and recs[0]["question"] is None

    s = summary_from_logs(model, retain)
    t = tofu_summary(logs[FULL], logs[RETAIN90])
    assert s["logged"]["model_utility"] == 0.5
    for k, v in t.items():
        if k in ("n_items", "missing") or v is None:
            continue
        if k in ("ra_Truth_Ratio", "wf_Truth_Ratio", "model_utility"):
            continue  # open-unlearning logs no second scoring of the answer: checked below
        assert s[k] == pytest.approx(v, rel=1e-12, abs=1e-300), k
    # ra/wf truth ratio from the answer's own avg NLL, by hand
    raw = json.loads((tofu_logs / FULL).read_text())["eval_real_author_wo_options.json"]
    a = np.array(list(raw["avg_gt_loss"].values()))
    pert = np.array(list(raw["average_perturb_loss"].values())).mean(axis=1)
    assert s["ra_Truth_Ratio"] == pytest.approx(np.mean(np.maximum(0, 1 - np.exp(a - pert))), rel=1e-12)
    assert s["model_utility"] == pytest.approx(0.5220545190905039, abs=1e-12)


def test_open_unlearning_truth_ratio_only_and_mia(tmp_path):
    # a log with only truth ratios for the forget set, MIA scores, memorisation scores
    def m(vbi, agg=0.0):
        return {"agg_value": agg, "value_by_index": vbi}

    model = {
        "forget_truth_ratio": m({"0": {"score": 0.5}, "1": {"score": 2.0}}),
        "extraction_strength": m({"0": {"score": 0.25}, "1": {"score": 0.75}}),
        "exact_memorization": m({"0": {"score": 1.0}, "1": {"score": 0.5}}),
        "mia_min_k": {"agg_value": 1.0, "auc": 1.0,
                      "forget": m({"0": {"score": 0.1}, "1": {"score": 0.2}}),
                      "holdout": m({"0": {"score": 0.9}, "1": {"score": 0.3}})},
    }
    retain = {
        "forget_truth_ratio": m({"0": {"score": 0.5}, "1": {"score": 2.0}}),
        "mia_min_k": {"agg_value": 0.5, "forget": m({"0": {"score": 0.5}, "1": {"score": 0.2}}),
                      "holdout": m({"0": {"score": 0.3}, "1": {"score": 0.4}})},
    }
    (tmp_path / "m.json").write_text(json.dumps(model))
    (tmp_path / "r.json").write_text(json.dumps(retain))
    s = summary_from_logs(tmp_path / "m.json", tmp_path / "r.json")
    assert s["forget_truth_ratio"] == pytest.approx((0.5 + 0.5) / 2)
    assert s["forget_quality"] == pytest.approx(1.0)
    assert s["extraction_strength"] == pytest.approx(0.5)
    assert s["exact_memorization"] == pytest.approx(0.75)
    assert s["mia_min_k"] == 1.0
    # retain AUC: pairs (0.3<0.5, 0.3>0.2, 0.4<0.5, 0.4>0.2) -> 0.5; privleak = (0.5 - 1) / 0.5 * 100
    assert s["privleak"] == pytest.approx(-100.0)
    assert s["n_items"] == {"forget": 2, "holdout": 2}


# ------------------------------------------------------------------------------------ formats/errors
def test_items_jsonl_and_folder(tmp_path):
    recs = [{"set": "forget", "index": 0, "question": "q", "avg_nll": 1.0, "paraphrased_avg_nll": 1.0,
             "perturbed_avg_nll": [2.0]}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert detect_format(run) == "items"
    got, fmt, logged = read_records(run / "items.jsonl")
    assert got == recs and fmt == "items" and logged is None
    s = summary_from_logs(run)
    assert s["forget_Q_A_Prob"] == pytest.approx(math.exp(-1.0))
    assert s["forget_truth_ratio"] == pytest.approx(math.exp(-1.0))


def test_unrecognised_and_summary_files_are_user_errors(tmp_path):
    (tmp_path / "TOFU_SUMMARY.json").write_text(json.dumps({"model_utility": 0.5, "forget_quality": 0.1}))
    with pytest.raises(ObliviateError, match="SUMMARY.*EVAL.json"):
        summary_from_logs(tmp_path / "TOFU_SUMMARY.json")
    (tmp_path / "x.json").write_text(json.dumps({"foo": [1, 2]}))
    with pytest.raises(ObliviateError, match="unrecognised log format"):
        summary_from_logs(tmp_path / "x.json")
    with pytest.raises(ObliviateError, match="file not found"):
        summary_from_logs(tmp_path / "missing.json")
    (tmp_path / "bad.jsonl").write_text('{"set": "forget", "index": 0}\nnot json\n')
    with pytest.raises(ObliviateError, match="line 2"):
        summary_from_logs(tmp_path / "bad.jsonl")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ObliviateError, match="holds none of"):
        summary_from_logs(empty)


@pytest.mark.parametrize("data, where", [
    ({"forget_Q_A_Prob": {"agg_value": 0.5, "value_by_index": {"0": {"prob": "x"}}}},
     r"forget_Q_A_Prob \[0\]: field 'prob': expected a number, got 'x'"),
    ({"forget_Q_A_PERT_Prob": {"agg_value": 0.5, "value_by_index": {"3": {"avg_loss": [1.0, [2.0]]}}}},
     r"forget_Q_A_PERT_Prob \[3\]: field 'avg_loss': expected a number, got \[2.0\]"),
    ({"forget_Q_A_ROUGE": {"agg_value": 0.5, "value_by_index": {"1": {"rougeL_recall": True}}}},
     r"forget_Q_A_ROUGE \[1\]: field 'rougeL_recall': expected a number, got True"),
    ({"mia_min_k": {"agg_value": 0.5, "forget": {"value_by_index": {"0": {"score": "s"}}}}},
     r"mia_min_k.forget \[0\]: field 'score': expected a number"),
    ({"eval_log_forget.json": {"avg_gt_loss": {"0": "x"}, "generated_text": {"0": ["Q", "g", "a"]}}},
     r"\[eval_log_forget.json\]: item 0: field 'avg_gt_loss': expected a number, got 'x'"),
    ({"eval_log_forget.json": {"avg_gt_loss": {"0": 1.0}, "average_perturb_loss": {"0": 3},
                               "generated_text": {"0": ["Q", "g", "a"]}}},
     r"item 0: field 'average_perturb_loss' must be a list of numbers, got 3"),
    ({"forget_Q_A_ROUGE": {"agg_value": 0.5, "value_by_index": {"2": {"rougeL_recall": 1.5}}}},
     r"forget_Q_A_ROUGE \[2\]: field 'rougeL_recall': 1.5 is not a fraction in \[0, 1\]"),
    ({"exact_memorization": {"agg_value": 0.5, "value_by_index": {"0": {"score": -0.1}}}},
     r"exact_memorization \[0\]: field 'score': -0.1 is not a fraction"),
    ({"eval_log_forget.json": {"avg_gt_loss": {"0": 1.0}, "rougeL_recall": {"0": 2.0},
                               "generated_text": {"0": ["Q", "g", "a"]}}},
     r"item 0: field 'rougeL_recall': 2.0 is not a fraction"),
])
def test_malformed_values_name_the_metric_item_and_field(tmp_path, data, where):
    """A value of the wrong type in a log is a one-line user error naming file, metric, item and field (it
    used to be a TypeError from a comparison deep in the reader)."""
    path = tmp_path / "log.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ObliviateError, match=where):
        summary_from_logs(path)


@pytest.mark.parametrize("field, value, message", [
    ("avg_nll", "abc", "field 'avg_nll': expected a number, got 'abc'"),
    ("avg_nll", float("nan"), "field 'avg_nll': NaN is not a value"),
    ("avg_nll", -1.0, "field 'avg_nll' is -1.0: a negative log-likelihood is not possible"),
    ("token_logprobs", "x", "field 'token_logprobs' must be a list of numbers"),
    ("perturbed_avg_nll", [1.0, "q"], "field 'perturbed_avg_nll': expected a number, got 'q'"),
    ("mia_scores", {"min_k": "s"}, "field 'mia_scores.min_k': expected a number"),
    ("set", "bogus", "set 'bogus' is not one of forget, retain"),
    ("index", "zero", "field 'index' must be an integer"),
    ("index", 0, "repeats forget item 0 \\(first on line 1\\): one record per item"),
    ("rougeL_recall", 1.5, "field 'rougeL_recall': 1.5 is not a fraction in \\[0, 1\\]"),
    ("truth_ratio", -0.5, "field 'truth_ratio' is -0.5: a negative score is not possible"),
    ("token_logprobs", [-0.1, 0.5], "field 'token_logprobs' holds 0.5: a log-probability is at most 0"),
    ("num_tokens", 0, "field 'num_tokens' must be an integer >= 1"),
    ("num_tokens", 3, "field 'token_logprobs' has 2 values for num_tokens 3; one per scored token"),
])
def test_items_jsonl_fields_are_checked_where_read(tmp_path, field, value, message):
    """An items.jsonl record with a wrong value is a one-line error naming line and field (a string was a
    ValueError from float() in the metrics, NaN one from scikit-learn, an unknown set a silent empty summary)."""
    good = {"set": "forget", "index": 0, "avg_nll": 0.5, "perturbed_avg_nll": [1.0, 2.0], "paraphrased_avg_nll": 0.7,
            "token_logprobs": [-0.1, -0.2], "mia_scores": {"min_k": 0.1}}
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "index": 1, field: value}) + "\n")
    with pytest.raises(ObliviateError, match=f"line 2:? {message}"):
        summary_from_logs(path)
    path.write_text(json.dumps(good) + "\n")
    assert summary_from_logs(path)["n_items"] == {"forget": 1}


def test_items_written_with_nan_read_back(tmp_path):
    """A NaN in a record (a truth ratio from two infinite NLLs) is written as null, so our own items.jsonl
    always reads back under --from-logs, which refuses NaN."""
    from obliviate.io import atomic_write_jsonl

    path = tmp_path / "items.jsonl"
    atomic_write_jsonl(path, [{"set": "forget", "index": 0, "avg_nll": 0.5, "truth_ratio": float("nan"),
                               "token_logprobs": [-0.1, -0.2], "mia_scores": {"min_k": float("nan")}}])
    assert "NaN" not in path.read_text()
    assert json.loads(path.read_text())["truth_ratio"] is None
    assert summary_from_logs(path)["n_items"] == {"forget": 1}


def test_a_nan_inside_a_list_reads_back_as_nan(tmp_path):
    """A list field is written with null where the run held NaN (a broken model's token log-probability) and
    read back as that NaN, so the metrics see what the run saw; a NaN scalar reads back as missing."""
    import math

    from obliviate.interop import records_from_items
    from obliviate.io import atomic_write_jsonl

    path = tmp_path / "items.jsonl"
    atomic_write_jsonl(path, [{"set": "forget", "index": 0, "avg_nll": 0.5, "perturbed_avg_nll": [1.0, 2.0],
                               "token_logprobs": [-0.1, float("nan")], "argmax_hits": [1, 0]}])
    assert json.loads(path.read_text())["token_logprobs"] == [-0.1, None]
    r = records_from_items(path)[0]
    assert r["token_logprobs"][0] == -0.1 and math.isnan(r["token_logprobs"][1])
    assert r["argmax_hits"] == [1, 0]  # numbers are kept as written
    assert summary_from_logs(path)["n_items"] == {"forget": 1}


def test_an_items_record_without_index_and_an_unknown_json_say_what_is_wrong(tmp_path):
    """A record without ``index`` used to fail later as "not in the retain-model records"; a JSON file in no
    layout --from-logs reads (``{"foo": 1}``) was taken for an open-unlearning SUMMARY."""
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"set": "forget", "index": 0, "avg_nll": 0.5}) + "\n"
                    + json.dumps({"set": "forget", "avg_nll": 0.5}) + "\n")
    with pytest.raises(ObliviateError, match="line 2 has no 'index' field; each record needs its set and its index"):
        summary_from_logs(path)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"foo": 1}))
    with pytest.raises(ObliviateError, match="unrecognised log format; --from-logs reads an original TOFU log .*"
                                             "an open-unlearning \\*_EVAL.json .*an obliviate items.jsonl"):
        summary_from_logs(odd)
