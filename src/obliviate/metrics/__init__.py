"""The metric layer: pure functions of per-item records (no model, no torch).

Importing this package registers every metric in ``obliviate.registry.METRICS``. Formulas, key names,
directions and every deviation from the papers / open-unlearning are in ``docs/metrics.md``.
"""

from . import memorization, mia, muse, rouge, tofu  # noqa: F401  (imported to register)
from .memorization import exact_memorization, extraction_strength
from .mia import mia_auc, privleak
from .muse import knowmem, muse_summary, verbmem
from .rouge import rouge_scores
from .tofu import (
    annotate_records,
    forget_quality,
    model_utility,
    tofu_summary,
    truth_ratio,
)

__all__ = [
    "annotate_records",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "knowmem",
    "mia_auc",
    "model_utility",
    "muse_summary",
    "privleak",
    "rouge_scores",
    "tofu_summary",
    "truth_ratio",
    "verbmem",
]
