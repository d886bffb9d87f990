"""Per-item records from other tools' evaluation logs, so their runs get our metrics without a model.

``obliviate eval --from-logs FILE [--retain-logs FILE]`` calls :func:`summary_from_logs`.

Formats (auto-detected):

1. **Original TOFU** (Maini et al. 2024, github.com/locuslab/tofu): ``eval_log_aggregated.json`` maps
   ``eval_log.json`` (retain), ``eval_log_forget.json`` (forget), ``eval_real_author_wo_options.json``
   (real authors), ``eval_real_world_wo_options.json`` (world facts) to ``{field: {index: value}}``.
   A single per-task file (e.g. ``eval_log_forget.json``) is read with its set from its name.
2. **open-unlearning** ``TOFU_EVAL.json``: ``{metric: {"agg_value": x, "value_by_index": {index: {...}}}}``
   (MIA metrics: ``{"agg_value", "forget": {...}, "holdout": {...}}``).
3. **Ours**: an ``items.jsonl`` (one record per line), or a run folder holding one.

What the TOFU logs hold, checked on the Phi-1.5 logs in ``shared/data/tofu-reference-logs``:
- ``generated_text[i]`` = [prompt, generation, ground truth]. For Phi the prompt is ``"Question: q\\n"``
  and the generation starts with ``"Answer: "`` and runs on to 200 tokens; TOFU scored that whole string,
  so we keep it verbatim (the logged ROUGE is reproduced exactly, all 1,634 items).
- losses are per-token NLLs; ``avg_*`` = sum / token count, incl. EOS.
- ``truth_ratio`` = exp(avg_paraphrased_loss - mean(average_perturb_loss)) = our p_w / p_c.
- Real authors / world facts: TOFU's config sets the "paraphrased answer" to the answer, so
  ``avg_paraphrased_loss`` is the answer scored a second time (same token count; equal to
  ``avg_gt_loss`` except on items 98-99 of real authors, by up to 0.05 nats: batch padding). We keep it
  as ``paraphrased_avg_nll``; the truth ratio of these sets uses it when present, as TOFU did.
  ``normalized_gt_loss`` = -log(p_c / (p_c + sum_j p_j)).
- The logs cover the first 300 items of retain and forget10 (TOFU evaluated only those).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import ObliviateError
from .io import read_json, read_text_file
from .metrics.tofu import tofu_summary

__all__ = [
    "TOFU_LOG_SETS",
    "records_from_tofu_log",
    "records_from_open_unlearning",
    "records_from_items",
    "read_records",
    "detect_format",
    "summary_from_logs",
]

TOFU_LOG_SETS = {
    "eval_log_forget.json": "forget",
    "eval_log.json": "retain",
    "eval_real_author_wo_options.json": "real_authors",
    "eval_real_world_wo_options.json": "world_facts",
}
_SET_ORDER = {"forget": 0, "retain": 1, "real_authors": 2, "world_facts": 3, "holdout": 4}

OU_PREFIX_SET = {"forget": "forget", "retain": "retain", "ra": "real_authors", "wf": "world_facts"}
OU_MIA = {
    "mia_loss": "loss",
    "mia_zlib": "zlib",
    "mia_min_k": "min_k",
    "mia_min_k_plus_plus": "min_k_plus_plus",
    "mia_reference": "reference",
    "mia_gradnorm": "gradnorm",
}


# ------------------------------------------------------------------------------------ original TOFU
def _question_from_prompt(prompt: str) -> str:
    """The bare question from TOFU's formatted prompt ("Question: q\\n" for Phi, "[INST] q [/INST]" for Llama-2)."""
    s = prompt
    if "[INST]" in s:
        s = s.split("[INST]", 1)[1].split("[/INST]", 1)[0]
        if "<</SYS>>" in s:
            s = s.split("<</SYS>>", 1)[1]
    s = s.strip()
    if s.startswith("Question:"):
        s = s[len("Question:"):]
    if s.endswith("Answer:"):
        s = s[: -len("Answer:")]
    return s.strip()


def _tofu_task_records(task: dict, set_name: str, where: str) -> list[dict]:
    if not isinstance(task, dict) or "avg_gt_loss" not in task:
        raise ObliviateError(f"{where}: expected TOFU per-question fields (avg_gt_loss, generated_text, ...)")
    required = ("avg_gt_loss", "generated_text")
    for f in required:
        if not isinstance(task.get(f), dict):
            raise ObliviateError(f"{where}: field {f!r} missing or not a {{index: value}} map")
    out = []
    for key, avg in task["avg_gt_loss"].items():
        def get(field, default=None):
            v = task.get(field)
            return v.get(key, default) if isinstance(v, dict) else default

        gt = get("generated_text")
        if not (isinstance(gt, list) and len(gt) == 3):
            raise ObliviateError(f"{where}: item {key}: generated_text must be [prompt, generation, ground truth]")
        prompt, generation, truth = gt
        try:
            index = int(key)
        except ValueError:
            raise ObliviateError(f"{where}: item key {key!r} is not an integer index") from None
        at = f"{where}: item {key}"
        pert = get("average_perturb_loss")
        if pert is not None and not isinstance(pert, list):
            raise ObliviateError(f"{at}: field 'average_perturb_loss' must be a list of numbers, got {_short(pert)}")
        num_tokens = get("num_token_gt")
        if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int)):
            raise ObliviateError(f"{at}: field 'num_token_gt' must be an integer, got {_short(num_tokens)}")
        rec = {
            "set": set_name,
            "index": index,
            "question": _question_from_prompt(prompt),
            "answer": truth,
            "prompt": prompt,
            "avg_nll": _num(avg, f"{at}: field 'avg_gt_loss'"),
            "nll": _opt_num(get("gt_loss"), f"{at}: field 'gt_loss'"),
            "num_tokens": num_tokens,
            "paraphrased_avg_nll": _opt_num(get("avg_paraphrased_loss"), f"{at}: field 'avg_paraphrased_loss'"),
            "perturbed_avg_nll": [_num(x, f"{at}: field 'average_perturb_loss'") for x in pert] if pert is not None
            else [],
            "generation": generation,
        }
        for field in ("rougeL_recall", "rouge1_recall", "truth_ratio"):
            v = get(field)
            if v is not None:
                rec[f"logged_{field}"] = (_num if field == "truth_ratio" else _fraction)(v, f"{at}: field {field!r}")
        out.append(rec)
    return out


def records_from_tofu_log(path) -> list[dict]:
    """Per-item records from an original TOFU log (``eval_log_aggregated.json`` or one task file).

    Mapping: eval_log.json -> "retain", eval_log_forget.json -> "forget",
    eval_real_author_wo_options.json -> "real_authors", eval_real_world_wo_options.json -> "world_facts";
    avg_nll = avg_gt_loss, nll = gt_loss, num_tokens = num_token_gt, paraphrased_avg_nll =
    avg_paraphrased_loss, perturbed_avg_nll = average_perturb_loss, (prompt, generation, answer) =
    generated_text; the logged rougeL_recall / rouge1_recall / truth_ratio kept as ``logged_*``.
    """
    path = Path(path)
    data = read_json(path)
    return _records_from_tofu_data(data, path)


def _records_from_tofu_data(data: Any, path: Path) -> list[dict]:
    if not isinstance(data, dict):
        raise ObliviateError(f"{path}: expected a JSON object (a TOFU eval log)")
    if "avg_gt_loss" in data:  # one task file: the set comes from its name
        set_name = TOFU_LOG_SETS.get(path.name)
        if set_name is None:
            raise ObliviateError(
                f"{path}: a single-task TOFU log must be named one of {', '.join(TOFU_LOG_SETS)} "
                "(the name says which set it holds)"
            )
        return _tofu_task_records(data, set_name, str(path))
    known = [k for k in data if k in TOFU_LOG_SETS]
    if not known:
        raise ObliviateError(
            f"{path}: no TOFU task found; expected keys among {', '.join(TOFU_LOG_SETS)}, got {', '.join(list(data)[:8])}"
        )
    out: list[dict] = []
    for k in known:
        out += _tofu_task_records(data[k], TOFU_LOG_SETS[k], f"{path} [{k}]")
    out.sort(key=lambda r: (_SET_ORDER[r["set"]], r["index"]))
    return out


# ---------------------------------------------------------------------------------- open-unlearning
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


# ---------------------------------------------------------------------------------------- our items
def records_from_items(path) -> list[dict]:
    """Our own ``items.jsonl``: one record per line."""
    path = Path(path)
    out, seen = [], {}
    for lineno, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ObliviateError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from None
        if not isinstance(r, dict) or "set" not in r:
            raise ObliviateError(f"{path}: line {lineno} is not a per-item record (an object with a 'set' field)")
        _check_item(r, f"{path}: line {lineno}")
        if "index" in r:
            key = (r["set"], r["index"])
            if key in seen:
                raise ObliviateError(f"{path}: line {lineno} repeats {r['set']} item {r['index']} (first on line "
                                     f"{seen[key]}): one record per item")
            seen[key] = lineno
        out.append(r)
    if not out:
        raise ObliviateError(f"{path}: no records")
    return out


_NLL_FIELDS = ("avg_nll", "nll", "paraphrased_avg_nll")  # >= 0 (inf: a probability of 0)
_SCORE_FIELDS = ("truth_ratio", "gradnorm", "exact_memorization", "extraction_strength", "rougeL_recall",
                 "rouge1_recall", "rougeL_f1")
_UNIT_FIELDS = ("exact_memorization", "extraction_strength", "rougeL_recall", "rouge1_recall", "rougeL_f1")  # in [0, 1]
_LIST_FIELDS = ("perturbed_avg_nll", "token_logprobs", "token_minkpp", "argmax_hits")


def _check_item(r: dict, where: str) -> None:
    """The fields the metrics read, checked where they are read from: a known set, an integer index, numbers
    (an NLL or score not negative, a ROUGE or memorization score at most 1, nothing NaN) and lists of numbers;
    a one-line error names the line and field. A null inside a list is the NaN the run held there (items.jsonl
    writes NaN as null) and is read back as NaN."""
    if r["set"] not in _SET_ORDER:
        raise ObliviateError(f"{where}: set {_short(r['set'])} is not one of {', '.join(_SET_ORDER)}")
    if "index" in r and (isinstance(r["index"], bool) or not isinstance(r["index"], int)):
        raise ObliviateError(f"{where}: field 'index' must be an integer, got {_short(r['index'])}")

    def number(v, at):
        x = _num(v, at)
        if math.isnan(x):
            raise ObliviateError(f"{at}: NaN is not a value (leave the field out, or null, for a missing one)")
        return x

    for f in _NLL_FIELDS + _SCORE_FIELDS:
        if r.get(f) is not None:
            at = f"{where}: field {f!r}"
            x = number(r[f], at)
            if f in _UNIT_FIELDS:
                _fraction(x, at)
            elif x < 0:
                raise ObliviateError(f"{at} is {x}: a negative "
                                     + ("log-likelihood" if f in _NLL_FIELDS else "score") + " is not possible")
    for f in _LIST_FIELDS:
        if r.get(f) is not None:
            if not isinstance(r[f], list):
                raise ObliviateError(f"{where}: field {f!r} must be a list of numbers, got {_short(r[f])}")
            for v in r[f]:
                if v is not None:
                    number(v, f"{where}: field {f!r}")
            r[f] = [math.nan if v is None else v for v in r[f]]
    if r.get("mia_scores") is not None:
        if not isinstance(r["mia_scores"], dict):
            raise ObliviateError(f"{where}: field 'mia_scores' must be an object {{attack: score}}")
        for k, v in r["mia_scores"].items():
            if v is not None:
                number(v, f"{where}: field 'mia_scores.{k}'")


# ---------------------------------------------------------------------------------------- detection
def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("items.jsonl", "eval_log_aggregated.json", "TOFU_EVAL.json"):
            if (path / name).exists():
                return path / name
        raise ObliviateError(
            f"{path}: folder holds none of items.jsonl, eval_log_aggregated.json, TOFU_EVAL.json"
        )
    if not path.exists():
        raise ObliviateError(f"{path}: file not found")
    return path


def detect_format(path) -> str:
    """"items" (our jsonl), "tofu" (original TOFU log) or "open-unlearning" (*_EVAL.json)."""
    return _load(Path(path))[0]


def _load(path: Path):
    path = _resolve(path)
    if path.suffix.lower() == ".jsonl":
        return "items", path, None
    data = read_json(path)
    if isinstance(data, dict):
        if "avg_gt_loss" in data or any(k in TOFU_LOG_SETS for k in data):
            return "tofu", path, data
        if any(isinstance(v, dict) and "agg_value" in v for v in data.values()):
            return "open-unlearning", path, data
        if data and all(isinstance(v, (int, float)) or v is None for v in data.values()):
            raise ObliviateError(
                f"{path}: this looks like an open-unlearning *_SUMMARY.json (aggregates only); "
                "per-item values are in the *_EVAL.json next to it"
            )
    if isinstance(data, list) and data and isinstance(data[0], dict) and "set" in data[0]:
        return "items", path, data
    raise ObliviateError(
        f"{path}: unrecognised log format; expected an original TOFU eval_log_aggregated.json, "
        "an open-unlearning TOFU_EVAL.json, or an obliviate items.jsonl"
    )


def read_records(path) -> tuple[list[dict], str, dict | None]:
    """(records, format, logged aggregates or None) of any supported log."""
    fmt, p, data = _load(Path(path))
    if fmt == "items":
        return (records_from_items(p) if data is None else list(data)), fmt, None
    if fmt == "tofu":
        return _records_from_tofu_data(data, p), fmt, None
    return _records_from_ou_data(data, p), fmt, _ou_logged(data)


def summary_from_logs(path, retain_path=None, records: list[dict] | None = None) -> dict:
    """``tofu_summary`` of the records read from ``path`` (format auto-detected).

    ``retain_path``: the retain model's log (any supported format) for forget quality and PrivLeak.
    Adds ``source`` ({"format", "path", "retain_path"}) and, for open-unlearning logs, ``logged``
    (its own aggregate values, for comparison). A caller that needs the records as well passes an
    empty list as ``records``: it is filled with them, so the log is read once.
    """
    read, fmt, logged = read_records(path)
    if records is not None:
        records.extend(read)
    retain_records = None
    retain_fmt = None
    if retain_path is not None:
        retain_records, retain_fmt, _ = read_records(retain_path)
    out = tofu_summary(read, retain_records)
    out["source"] = {
        "format": fmt,
        "path": str(path),
        "retain_path": None if retain_path is None else str(retain_path),
        "retain_format": retain_fmt,
    }
    if logged is not None:
        out["logged"] = logged
    return out


def _short(x) -> str:
    r = repr(x)
    return r if len(r) <= 40 else r[:37] + "..."


def _num(x, where: str) -> float:
    """A logged number as a float; anything else (a string, a list, a bool) is an error naming where it was."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ObliviateError(f"{where}: expected a number, got {_short(x)}")
    return float(x)


def _fraction(x, where: str) -> float:
    """A logged ROUGE or memorization score: a number in [0, 1]."""
    v = _num(x, where)
    if v < 0 or v > 1:
        raise ObliviateError(f"{where}: {v} is not a fraction in [0, 1]")
    return v


def _opt_num(x, where: str) -> float | None:
    return None if x is None else _num(x, where)
