"""``obliviate audit``: does the unlearned model really forget? Views of the forget set, each against control
models (full, retain, base), with one leak judge (judge.py) and per-item records behind every number.

Each view is one module registered in :data:`obliviate.registry.AUDITS` (``obliviate ls audits``)."""

from . import novel_recall_leak, forget_loglik, format_shift_leak, best_of_n_leak  # noqa: F401  (register)
from . import chain_of_clues_leak  # noqa: F401
from . import masked_probe, relearn_recovery, quantization_delta  # noqa: F401
from . import base_control  # noqa: F401
from .run import audit_models, run_audit  # noqa: F401

__all__ = ["audit_models", "run_audit"]
