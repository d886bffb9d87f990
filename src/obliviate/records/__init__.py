"""Per-item records: our ``items.jsonl`` schema and readers of other tools' evaluation logs, so their runs get
our metrics without a model.

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

from pathlib import Path

from ..errors import ObliviateError
from ..metrics.tofu import tofu_summary
from ..runtime.files import read_json
from .items import records_from_items
from .open_unlearning import _ou_logged, _records_from_ou_data, records_from_open_unlearning
from .tofu_logs import TOFU_LOG_SETS, _records_from_tofu_data, records_from_tofu_log


__all__ = [
    "TOFU_LOG_SETS",
    "records_from_tofu_log",
    "records_from_open_unlearning",
    "records_from_items",
    "read_records",
    "detect_format",
    "summary_from_logs",
]


#: what --from-logs reads, for the message about a file it cannot
LAYOUTS = ("--from-logs reads an original TOFU log (eval_log_aggregated.json, or one eval_log*.json: {field: "
           "{index: value}} with avg_gt_loss ...), an open-unlearning *_EVAL.json ({metric: {agg_value, "
           "value_by_index}}), an obliviate items.jsonl (one {set, index, ...} record per line), or a folder "
           "holding one of them")


def _metric_names(data: dict) -> bool:
    """Whether a table of numbers is keyed by evaluation metric names (an open-unlearning *_SUMMARY.json)."""
    from ..metrics.keys import MUSE_HEADLINE, TOFU_HEADLINE

    known = set(TOFU_HEADLINE) | set(MUSE_HEADLINE)
    return any(k in known or k.startswith(("forget_", "retain_", "mia_", "ra_", "wf_")) for k in data)


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
        if data and all(isinstance(v, (int, float)) or v is None for v in data.values()) and _metric_names(data):
            raise ObliviateError(
                f"{path}: this looks like an open-unlearning *_SUMMARY.json (aggregates only); "
                "per-item values are in the *_EVAL.json next to it"
            )
    if isinstance(data, list) and data and isinstance(data[0], dict) and "set" in data[0]:
        return "items", path, data
    raise ObliviateError(f"{path}: unrecognised log format; {LAYOUTS}")


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
