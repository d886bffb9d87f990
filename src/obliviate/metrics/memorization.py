"""Teacher-forced memorisation of the answer: exact memorisation and extraction strength.

Both read ``argmax_hits``: for each answer token y_t (EOS last, per the record contract),
1 if argmax_v p(v | x, y_<t) == y_t else 0. EOS is excluded from both metrics, as in open-unlearning
(whose ``tokenwise_vocab_logprobs`` drops the final labelled position): whether the model stops is not
part of reproducing the answer's content.

- Exact memorisation (Tirumala et al. 2022, arXiv 2205.10770):  EM = (1/T) sum_t hit_t.
- Extraction strength (Wang et al. 2025, "Towards effective evaluations and comparisons for LLM
  unlearning methods", arXiv 2406.09179, after Carlini et al.'s extractable memorisation):
  ES = 1 - k*/T, k* = the smallest (0-based) k such that the teacher-forced argmax predictions match
  y_k..y_T; k* = T (ES = 0) when not even the last token matches. With r = the length of the trailing
  run of hits, k* = T - r, so ES = r / T.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..registry import METRICS

__all__ = ["exact_memorization", "extraction_strength", "record_memorization"]


def _hits(argmax_hits: Sequence, includes_eos: bool) -> np.ndarray:
    h = np.asarray(argmax_hits, dtype=float)
    if h.ndim != 1:
        raise ValueError(f"argmax_hits must be a 1-D sequence of 0/1, got shape {h.shape}")
    if includes_eos:
        h = h[:-1]
    if h.size and not np.all((h == 0) | (h == 1)):
        raise ValueError("argmax_hits must hold only 0 and 1")
    return h


def exact_memorization(argmax_hits: Sequence, *, includes_eos: bool = True) -> float | None:
    """EM = (1/T) sum_{t=1..T} 1[argmax p(. | x, y_<t) = y_t], T = answer tokens without EOS.

    ``includes_eos=True`` (the record contract) drops the last entry. None when T = 0.
    """
    h = _hits(argmax_hits, includes_eos)
    if h.size == 0:
        return None
    return float(h.mean())


def extraction_strength(argmax_hits: Sequence, *, includes_eos: bool = True, floor: bool = False) -> float | None:
    """ES = 1 - k*/T, k* = smallest 0-based k with hits[k:] all 1 (k* = T if hits[-1] = 0).

    Equivalently ES = r/T with r the trailing run of hits: all hits -> 1, last token wrong -> 0,
    last 2 of 4 right -> 0.5. EOS excluded (``includes_eos=True`` drops the last entry). None when T = 0.

    Deviation from open-unlearning: its loop ``for k in range(T): if preds[k:] == labels[k:]: break``
    leaves k = T - 1 when no suffix matches, so it reports 1/T instead of 0 for an answer with no
    matching suffix (src/evals/metrics/memorization.py:237-253). We return 0 there, as the definition says;
    ``floor=True`` (the open-unlearning protocol) returns its 1/T, so published ES values can be reproduced.
    """
    h = _hits(argmax_hits, includes_eos)
    T = h.size
    if T == 0:
        return None
    misses = np.flatnonzero(h == 0)
    r = T if misses.size == 0 else T - 1 - int(misses[-1])
    if r == 0 and floor:
        return 1.0 / T
    k_star = T - r
    return 1.0 - k_star / T


def record_memorization(record: dict, which: str, *, es_floor: bool = False) -> float | None:
    """``which`` in {"exact_memorization", "extraction_strength"} for one record.

    A per-item value already on the record (imported from another tool's logs) is used as is;
    otherwise it is computed from ``argmax_hits``; None when neither is present.
    """
    if record.get(which) is not None:
        return float(record[which])
    hits = record.get("argmax_hits")
    if hits is None:
        return None
    if which == "exact_memorization":
        return exact_memorization(hits)
    return extraction_strength(hits, floor=es_floor)


METRICS.register(
    "exact_memorization",
    higher_is_better=False,
    aggregation="mean over forget items of the per-item fraction of answer tokens (EOS excluded) "
    "whose teacher-forced argmax is the true token",
    sets=("forget",),
    paper="Tirumala et al. 2022, Memorization without overfitting",
    arxiv="2205.10770",
    description="Exact memorisation: teacher-forced argmax accuracy on the forget answers (lower = more forgotten)",
)(exact_memorization)

METRICS.register(
    "extraction_strength",
    higher_is_better=False,
    aggregation="mean over forget items of 1 - k*/T (k* = start of the longest matching suffix; 0 if none)",
    sets=("forget",),
    paper="Wang et al. 2025, Towards effective evaluations and comparisons for LLM unlearning methods",
    arxiv="2406.09179",
    description="Extraction strength: fraction of the answer's suffix reproduced by teacher-forced argmax",
)(extraction_strength)
