"""Meta-evaluation scores of a metric over a table of models: pure functions, no model, no torch.

OpenUnlearning (Dorna et al. 2025, arXiv:2506.12618, Sec. 4) asks of every unlearning metric:

- **faithfulness**: does it separate models that know the forget facts (positives) from models that never
  saw them (negatives)? = the ROC AUC of the metric's *knowledge score* m (positives labelled 1);
- **robustness**: does its verdict survive an attack, on the models it calls unlearned?
  relearning  R = min(Δ_retain / Δ_model, 1), Δ = m(after relearning) - m(before), Δ_retain the same
  attack's Δ on the retain control; quantization  Q = min(m(before) / m(after 4-bit), 1);
  robustness = HM(R, Q);
- **overall** = HM(faithfulness, robustness).

Every metric is first turned into a knowledge score m (higher = the model knows the forget facts) by
:data:`KNOWLEDGE` (see docs/metrics.md, "Meta-evaluation"), so one formula serves all of them.

A *table* is a list of rows ``{"name", "role", "summary", "relearned", "quantized"}``: ``role`` is
``positive``, ``negative`` or ``unlearned``; ``summary`` a TOFU/MUSE summary dict; ``relearned`` /
``quantized`` the summary after each attack (absent or None when not run).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

from ..errors import ObliviateError

# metric key -> how its value becomes a knowledge score m (higher = knows the forget facts).
#   "value":        m = v          (probabilities, ROUGE, ES, EM, MIA AUCs: 1 = memorised)
#   "one_minus":    m = 1 - v      (scores in [0, 1] where 1 = forgotten: forget_truth_ratio, forget_quality)
#   "neg_percent":  m = -v / 100   (privleak: -100 = the target model, 0 = like the retain model)
KNOWLEDGE: dict[str, str] = {
    "forget_Q_A_Prob": "value",
    "forget_Q_A_PARA_Prob": "value",
    "forget_Q_A_ROUGE": "value",
    "forget_Q_A_PARAQ_Prob": "value",
    "forget_Q_A_PARAQ_ROUGE": "value",
    "forget_Q_A_JB_Prob": "value",
    "forget_Q_A_JB_ROUGE": "value",
    "forget_Truth_Ratio_prob_mean": "value",  # mean p_c / (p_c + p_w): OpenUnlearning's meta-eval truth ratio
    "forget_truth_ratio": "one_minus",  # mean min(tr, 1/tr): 1 = cannot tell true from false
    "forget_quality": "one_minus",  # KS p-value vs the retain model: 1 = indistinguishable
    "forget_quality_ks_statistic": "value",  # KS D: 0 = indistinguishable
    "extraction_strength": "value",
    "exact_memorization": "value",
    "mia_loss": "value",
    "mia_zlib": "value",
    "mia_min_k": "value",
    "mia_min_k_plus_plus": "value",
    "mia_reference": "value",
    "mia_gradnorm": "value",
    "privleak": "neg_percent",  # TOFU's and MUSE's (the same formula, metrics/mia.privleak)
    # MUSE. knowmem_r has no orientation here: it scores the retain articles, which both pools learned (utility)
    "verbmem_f": "value",
    "knowmem_f": "value",
    "privleak_auc": "value",  # MUSE's Min-K% 40 AUC, our orientation: 1 = memorised
}
_TRANSFORMS: dict[str, Callable[[float], float]] = {
    "value": lambda v: v,
    "one_minus": lambda v: 1.0 - v,
    "neg_percent": lambda v: -v / 100.0,
}
ROLES = ("positive", "negative", "unlearned")


def knowledge(key: str, value) -> float | None:
    """The knowledge score m of ``value`` of metric ``key`` (None stays None)."""
    if key not in KNOWLEDGE:
        raise ObliviateError(f"{key!r}: no knowledge orientation; meta-evaluable metrics: {', '.join(KNOWLEDGE)}")
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else _TRANSFORMS[KNOWLEDGE[key]](v)


def hmean(values: Iterable[float | None]) -> float | None:
    """Harmonic mean; None if any value is None, 0 if any is <= 0 (as open-unlearning's hm_aggregate)."""
    vals = list(values)
    if not vals or any(v is None for v in vals):
        return None
    if any(v <= 0 for v in vals):
        return 0.0
    return len(vals) / sum(1.0 / v for v in vals)


def auc(positives: list[float], negatives: list[float]) -> float:
    """ROC AUC = P(m_pos > m_neg) + P(tie) / 2 over all (positive, negative) pairs (Mann-Whitney)."""
    if not positives or not negatives:
        raise ObliviateError(f"faithfulness needs positives and negatives; got {len(positives)} and {len(negatives)}")
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def threshold(positives: list[float], negatives: list[float]) -> float:
    """The cut t of the rule "forgotten iff m <= t" that best separates the pools: over the pool values as
    candidates, the maximum of Youden's J = (negatives <= t) / |N| - (positives <= t) / |P|; ties go to the
    smallest t (the strictest verdict: fewest models called unlearned)."""
    best_t, best_j = None, -math.inf
    for t in sorted(set(positives) | set(negatives)):
        # J * |P| * |N| in integers: equal cuts compare equal (1 - 1/3 and 2/3 differ in floating point)
        j = sum(n <= t for n in negatives) * len(positives) - sum(p <= t for p in positives) * len(negatives)
        if j > best_j:
            best_t, best_j = t, j
    return best_t


def relearn_ratio(before: float, after: float, retain_before: float, retain_after: float) -> float:
    """R = min(Δ_retain / Δ_model, 1), Δ = after - before (knowledge gained by the same relearning).

    Δ_model <= 0 (the attack recovered nothing): 1. Δ_retain <= 0 < Δ_model: 0 (clipped at 0).
    """
    d_model, d_ret = after - before, retain_after - retain_before
    if d_model <= 0:
        return 1.0
    return min(max(d_ret / d_model, 0.0), 1.0)


def quant_ratio(before: float, after: float) -> float:
    """Q = min(m_before / m_after, 1): 1 when quantization recovered nothing (after <= before), clipped at 0."""
    if after <= before:
        return 1.0
    return min(max(before / after, 0.0), 1.0)


def _m(row: dict, key: str, which: str = "summary") -> float | None:
    s = row.get(which)
    return None if not s else knowledge(key, s.get(key))


def _check(table: list[dict]) -> None:
    for i, row in enumerate(table):
        if row.get("role") not in ROLES:
            raise ObliviateError(f"model table row {i + 1} ({row.get('name')!r}): role {row.get('role')!r}; "
                                 f"valid: {', '.join(ROLES)}")


def _retain_row(table: list[dict], retain) -> dict | None:
    if retain is None or isinstance(retain, dict):
        return retain
    row = next((r for r in table if r.get("name") == retain), None)
    if row is None:
        raise ObliviateError(f"retain control {retain!r} is not a model of the table; "
                             f"models: {', '.join(str(r.get('name')) for r in table)}")
    return row


def meta_scores(table: list[dict], key: str, retain: str | dict | None = None) -> dict:
    """Faithfulness, R, Q, robustness and overall of metric ``key`` over ``table``.

    ``retain``: the retain control's name in ``table`` or its row (the model whose relearning Δ is the reference). Robustness is
    computed on the negative and unlearned rows whose m <= the pool threshold (:func:`threshold`); R and Q are
    the means of the per-model ratios over those with the attack's result. A value that cannot be computed is
    None and ``why`` says why.
    """
    _check(table)
    out: dict = {"key": key, "faithfulness": None, "threshold": None, "R": None, "Q": None,
                 "robustness": None, "overall": None, "n_positive": 0, "n_negative": 0,
                 "n_called_unlearned": 0, "n_R": 0, "n_Q": 0, "why": {}}
    pos = [m for r in table if r["role"] == "positive" and (m := _m(r, key)) is not None]
    neg = [m for r in table if r["role"] == "negative" and (m := _m(r, key)) is not None]
    out["n_positive"], out["n_negative"] = len(pos), len(neg)
    if not pos or not neg:
        out["why"]["faithfulness"] = f"{len(pos)} positives and {len(neg)} negatives have a value"
        return out
    out["faithfulness"] = auc(pos, neg)
    t = out["threshold"] = threshold(pos, neg)

    called = [r for r in table if r["role"] in ("negative", "unlearned")
              and (m := _m(r, key)) is not None and m <= t]
    out["n_called_unlearned"] = len(called)
    ret = _retain_row(table, retain)
    rb, ra = (_m(ret, key), _m(ret, key, "relearned")) if ret else (None, None)
    rs, qs = [], []
    for r in called:
        before = _m(r, key)
        if rb is not None and ra is not None and (after := _m(r, key, "relearned")) is not None:
            rs.append(relearn_ratio(before, after, rb, ra))
        if (after := _m(r, key, "quantized")) is not None:
            qs.append(quant_ratio(before, after))
    out["n_R"], out["n_Q"] = len(rs), len(qs)
    if rs:
        out["R"] = sum(rs) / len(rs)
    else:
        out["why"]["R"] = ("no retain control with a relearned value (the pools' retain:)" if rb is None or ra is None
                           else "no model called unlearned has a relearned value")
    if qs:
        out["Q"] = sum(qs) / len(qs)
    else:
        out["why"]["Q"] = "no model called unlearned has a quantized value"
    out["robustness"] = hmean([out["R"], out["Q"]])
    out["overall"] = hmean([out["faithfulness"], out["robustness"]])
    if out["overall"] is None:
        out["why"]["overall"] = "robustness is None"
    return out


FIELDS = ("faithfulness", "R", "Q", "robustness", "overall")


def bootstrap(table: list[dict], key: str, retain: str | dict | None = None, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict:
    """Percentile intervals of :data:`FIELDS` over models: each replicate resamples, with replacement and
    separately, the positives, the negatives and the unlearned rows (the retain control's own Δ is kept
    fixed, as are the pool sizes) and recomputes :func:`meta_scores` (threshold included). Seeded:
    the same table, seed and n_boot give the same intervals. A field None in a replicate is left out of it;
    ``n`` says how many replicates gave each field."""
    import numpy as np

    rng = np.random.default_rng(seed)
    groups = {role: [r for r in table if r["role"] == role] for role in ROLES}
    ret = _retain_row(table, retain)
    draws: dict[str, list[float]] = {f: [] for f in FIELDS}
    for _ in range(n_boot):
        sample = []
        for role, rows in groups.items():
            if rows:
                sample += [rows[i] for i in rng.integers(0, len(rows), len(rows))]
        s = meta_scores(sample, key, ret)  # the retain control stays the reference even when not drawn
        for f in FIELDS:
            if s[f] is not None:
                draws[f].append(s[f])
    lo_q, hi_q = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {f: {"lo": float(np.percentile(v, lo_q)), "hi": float(np.percentile(v, hi_q)), "n": len(v)}
            if v else {"lo": None, "hi": None, "n": 0} for f, v in draws.items()}


def meta_table(table: list[dict], keys: Iterable[str] | None = None, retain: str | None = None,
               n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """:func:`meta_scores` with :func:`bootstrap` intervals (``ci``) for each key (default: every key of
    :data:`KNOWLEDGE` that some row's summary has a value for)."""
    if keys is None:
        keys = [k for k in KNOWLEDGE if any((r.get("summary") or {}).get(k) is not None for r in table)]
    rows = []
    for key in keys:
        s = meta_scores(table, key, retain)
        s["ci"] = bootstrap(table, key, retain, n_boot=n_boot, seed=seed) if s["faithfulness"] is not None else None
        rows.append(s)
    return rows
