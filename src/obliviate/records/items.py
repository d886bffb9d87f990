"""Our ``items.jsonl`` schema: one per-item record per line (``set``, ``index``, scores), checked as it is read."""

from __future__ import annotations

import json
import math

from pathlib import Path

from ..errors import ObliviateError
from ..runtime.files import read_text_file
from ._values import _SET_ORDER, _fraction, _num, _short


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
        if "index" not in r:  # the metrics pair a forget item with its retain-model record by (set, index)
            raise ObliviateError(f"{path}: line {lineno} has no 'index' field; each record needs its set and its "
                                 "index (its position in the set, from 0)")
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
_TOKEN_FIELDS = ("token_logprobs", "token_minkpp", "argmax_hits")  # one value per scored answer token
# log_softmax is <= 0 exactly; float32 rounding can leave a certain token at +1e-7, so a little slack
_LOGPROB_SLACK = 1e-4


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
    if r.get("num_tokens") is not None:  # the scored answer's token count: every per-token list has that length
        n = r["num_tokens"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ObliviateError(f"{where}: field 'num_tokens' must be an integer >= 1 (the scored answer's tokens), "
                                 f"got {_short(n)}")
        for f in _TOKEN_FIELDS:
            v = r.get(f)
            if isinstance(v, list) and v and len(v) != n:  # token_minkpp is [] when it was not computed
                raise ObliviateError(f"{where}: field {f!r} has {len(v)} values for num_tokens {n}; one per scored "
                                     "token")
    for x in r.get("token_logprobs") or []:
        if not math.isnan(x) and x > _LOGPROB_SLACK:
            raise ObliviateError(f"{where}: field 'token_logprobs' holds {x}: a log-probability is at most 0")
    if r.get("mia_scores") is not None:
        if not isinstance(r["mia_scores"], dict):
            raise ObliviateError(f"{where}: field 'mia_scores' must be an object {{attack: score}}")
        for k, v in r["mia_scores"].items():
            if v is not None:
                number(v, f"{where}: field 'mia_scores.{k}'")
