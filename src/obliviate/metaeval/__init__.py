"""Meta-evaluation: which unlearning metric can you trust? (OpenUnlearning, Dorna et al. 2025, Sec. 4-5.)

- :mod:`.scores`: faithfulness, robustness (relearning R, quantization Q) and overall score of a metric over a
  table of control models; bootstrap intervals. Pure functions.
- :mod:`.aggregates`: the paper's memorisation, privacy and utility scores and their harmonic mean, from a
  TOFU summary. Pure functions.
- :mod:`.pools`: the pools file (positives, negatives, unlearned models) and the resumable runner that builds,
  evaluates and attacks them; :mod:`.parallel`: several models at once (local workers, Ray);
  :mod:`.quantize`: the 4-bit attack; :mod:`.fluency`: the gibberish-classifier fluency of utility;
  :mod:`.run`: ``run_meta_eval(MetaEvalConfig, out)``, the library entry of ``obliviate meta-eval`` (cli/meta_eval.py).
"""

from .aggregates import aggregates  # noqa: F401
from .scores import KNOWLEDGE, auc, hmean, knowledge, meta_scores, meta_table, quant_ratio, relearn_ratio  # noqa: F401
