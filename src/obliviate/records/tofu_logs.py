"""Per-item records from the original TOFU evaluation logs (Maini et al. 2024, github.com/locuslab/tofu);
what the logs hold is described in :mod:`obliviate.records`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ObliviateError
from ..runtime.files import read_json
from ._values import _SET_ORDER, _fraction, _num, _opt_num, _short


TOFU_LOG_SETS = {
    "eval_log_forget.json": "forget",
    "eval_log.json": "retain",
    "eval_real_author_wo_options.json": "real_authors",
    "eval_real_world_wo_options.json": "world_facts",
}


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
