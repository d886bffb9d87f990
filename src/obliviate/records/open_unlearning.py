"""Per-item records from open-unlearning's ``TOFU_EVAL.json``: ``{metric: {"agg_value": x, "value_by_index":
{index: {...}}}}`` (MIA metrics: ``{"agg_value", "forget": {...}, "holdout": {...}}``)."""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any

from ..errors import ObliviateError
from ..runtime.files import read_json
from ._values import _SET_ORDER, _fraction, _num


OU_PREFIX_SET = {"forget": "forget", "retain": "retain", "ra": "real_authors", "wf": "world_facts"}
OU_MIA = {
    "mia_loss": "loss",
    "mia_zlib": "zlib",
    "mia_min_k": "min_k",
    "mia_min_k_plus_plus": "min_k_plus_plus",
    "mia_reference": "reference",
    "mia_gradnorm": "gradnorm",
}


def _scalar_or_mean(v):
    if v is None:
        return None
    if isinstance(v, list):
        vals = [x for x in v if x is not None]
        return sum(vals) / len(vals) if vals else None
    return v


def _avg_loss(entry: dict | None, where: str):
    """avg NLL from a probability entry {"prob", "avg_loss"}: avg_loss, else -log(prob); a float or a list of
    floats (one per perturbed answer), each checked to be a number."""
    if not isinstance(entry, dict):
        return None
    field = "avg_loss" if entry.get("avg_loss") is not None else "prob"
    v = entry.get(field)
    if v is None:
        return None
    at = f"{where}: field {field!r}"
    vals = [_num(x, at) for x in v if x is not None] if isinstance(v, list) else _num(v, at)
    if field == "avg_loss":
        return vals

    def nll(p):
        return -math.log(p) if p > 0 else math.inf
    return [nll(p) for p in vals] if isinstance(vals, list) else nll(vals)


def _vbi(metric: Any) -> dict:
    if isinstance(metric, dict) and isinstance(metric.get("value_by_index"), dict):
        return metric["value_by_index"]
    return {}


def records_from_open_unlearning(path) -> list[dict]:
    """Per-item records from open-unlearning's ``TOFU_EVAL.json``.

    Recovered per item (index = the key of ``value_by_index``), for prefixes forget / retain / ra / wf:
    - ``avg_nll`` from ``<p>_Q_A_Prob`` (``avg_loss``, else -log ``prob``);
    - ``paraphrased_avg_nll`` from ``<p>_Q_A_PARA_Prob``; ``perturbed_avg_nll`` from ``<p>_Q_A_PERT_Prob``;
    - ``generation``, ``answer`` (= ground_truth), ``prompt`` (= input) and ``logged_rouge*`` from
      ``<p>_Q_A_ROUGE``; ``question`` is None (only the templated input is logged);
    - ``logged_truth_ratio`` from ``forget_truth_ratio`` / ``forget_Truth_Ratio`` / ``<p>_Truth_Ratio``
      (``score``), also used as ``truth_ratio`` when the NLLs are absent;
    - ``exact_memorization`` / ``extraction_strength`` per-item scores (open-unlearning's values:
      its ES floors at 1/T, see docs/metrics.md);
    - ``mia_scores[attack]`` for forget items and for new "holdout" records from ``mia_*`` (same
      orientation as ours).
    """
    path = Path(path)
    data = read_json(path)
    return _records_from_ou_data(data, path)


def _records_from_ou_data(data: Any, path: Path) -> list[dict]:
    if not isinstance(data, dict) or not any(isinstance(v, dict) and "agg_value" in v for v in data.values()):
        raise ObliviateError(f"{path}: not an open-unlearning *_EVAL.json ({{metric: {{agg_value, value_by_index}}}})")
    recs: dict[tuple, dict] = {}

    def rec(set_name: str, idx) -> dict:
        try:
            i = int(idx)
        except (TypeError, ValueError):
            raise ObliviateError(f"{path}: index {idx!r} is not an integer") from None
        key = (set_name, i)
        if key not in recs:
            recs[key] = {"set": set_name, "index": i, "question": None}
        return recs[key]

    def at(metric: str, idx) -> str:
        return f"{path}: {metric} [{idx}]"

    for prefix, set_name in OU_PREFIX_SET.items():
        for key, field in (("Q_A_Prob", "avg_nll"), ("Q_A_PARA_Prob", "paraphrased_avg_nll")):
            metric = f"{prefix}_{key}"
            for idx, e in _vbi(data.get(metric)).items():
                a = _avg_loss(e, at(metric, idx))
                if a is not None:
                    rec(set_name, idx)[field] = _scalar_or_mean(a)
        metric = f"{prefix}_Q_A_PERT_Prob"
        for idx, e in _vbi(data.get(metric)).items():
            a = _avg_loss(e, at(metric, idx))
            if a is not None:
                rec(set_name, idx)["perturbed_avg_nll"] = a if isinstance(a, list) else [a]
        for idx, e in _vbi(data.get(f"{prefix}_Q_A_ROUGE")).items():
            if not isinstance(e, dict):
                continue
            r = rec(set_name, idx)
            if e.get("generation") is not None:
                r["generation"] = e["generation"]
            if e.get("ground_truth") is not None:
                r["answer"] = e["ground_truth"]
            if e.get("input") is not None:
                r["prompt"] = e["input"]
            for f in ("rougeL_recall", "rouge1_recall", "rougeL_f1"):
                if e.get(f) is not None:
                    r[f"logged_{f}"] = _fraction(e[f], f"{at(prefix + '_Q_A_ROUGE', idx)}: field {f!r}")
        tr_keys = ("forget_truth_ratio", "forget_Truth_Ratio") if prefix == "forget" else (f"{prefix}_Truth_Ratio",)
        for tk in tr_keys:
            for idx, e in _vbi(data.get(tk)).items():
                if isinstance(e, dict) and e.get("score") is not None:
                    rec(set_name, idx).setdefault("logged_truth_ratio", _num(e["score"], f"{at(tk, idx)}: field 'score'"))

    for which in ("exact_memorization", "extraction_strength"):
        for idx, e in _vbi(data.get(which)).items():
            if isinstance(e, dict) and e.get("score") is not None:
                rec("forget", idx)[which] = _fraction(e["score"], f"{at(which, idx)}: field 'score'")

    for metric, attack in OU_MIA.items():
        m = data.get(metric)
        if not isinstance(m, dict):
            continue
        for side in ("forget", "holdout"):
            for idx, e in _vbi(m.get(side)).items():
                if isinstance(e, dict) and e.get("score") is not None:
                    rec(side, idx).setdefault("mia_scores", {})[attack] = _num(
                        e["score"], f"{at(f'{metric}.{side}', idx)}: field 'score'")

    out = list(recs.values())
    for r in out:
        # the truth ratio as logged, for items whose NLLs are not all logged
        if r.get("logged_truth_ratio") is not None and (
            r.get("perturbed_avg_nll") is None
            or (r["set"] in ("forget", "retain") and r.get("paraphrased_avg_nll") is None)
            or (r["set"] in ("real_authors", "world_facts") and r.get("avg_nll") is None)
        ):
            r["truth_ratio"] = r["logged_truth_ratio"]
        r.setdefault("perturbed_avg_nll", [])
    if not out:
        raise ObliviateError(f"{path}: no per-item values found (no value_by_index under the TOFU metric keys)")
    out.sort(key=lambda r: (_SET_ORDER[r["set"]], r["index"]))
    return out


def _ou_logged(data: dict) -> dict:
    return {k: v.get("agg_value") for k, v in sorted(data.items()) if isinstance(v, dict) and "agg_value" in v}
