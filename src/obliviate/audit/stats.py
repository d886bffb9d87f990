"""Statistics of the audit: the bootstrap interval over items, the unbiased pass@k estimator and the chance
correction of multiple-choice accuracy. Pure functions of per-item numbers."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


def bootstrap_ci(items: Sequence, stat: Callable[[Sequence], float | None], seed: int = 0, n_boot: int = N_BOOT,
                 level: float = LEVEL) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``stat(items)``: ``n_boot`` resamples of ``len(items)`` items drawn with
    replacement by ``numpy.random.default_rng(seed)`` (one ``integers(0, n, (n_boot, n))`` call), the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (numpy's default linear interpolation) of the
    statistic over the resamples where it is defined. None for no items."""
    n = len(items)
    if n == 0:
        return None
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    vals = [stat([items[i] for i in row]) for row in idx]
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    if not vals:
        return None
    lo, hi = np.quantile(np.asarray(vals, dtype=float), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021, arXiv 2107.03374): ``1 - C(n - c, k) / C(n, k)``, the probability
    that at least one of ``k`` samples drawn without replacement from ``n`` (``c`` of them correct) is correct;
    computed as ``1 - prod_{i = n - c + 1}^{n} (1 - k / i)`` (no large binomials)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def chance_corrected(accuracy: float, n_options: int) -> float:
    """``(accuracy - 1/m) / (1 - 1/m)`` for ``m`` options: 0 at chance, 1 when always right, negative below
    chance (not clipped: clipping would bias the mean over items upward). Linear in ``accuracy``, so the
    mean of per-item corrected scores is the corrected mean accuracy."""
    if n_options < 2:
        raise ValueError(f"chance correction needs at least 2 options, got {n_options}")
    p = 1.0 / n_options
    return (accuracy - p) / (1 - p)


def mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
