"""Each summary key's direction and the headline lists: one table for selection, sweeps, reports and cards.

``higher``: larger is better for the unlearned model; ``lower``: smaller is better; ``target``: an ideal
value in the middle (privleak 0, MIA AUCs 0.5), the closest is best. docs/metrics.md defines each key.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ObliviateError

HIGHER_IS_BETTER = (
    "forget_quality", "model_utility", "forget_truth_ratio", "retain_Q_A_Prob", "retain_Q_A_PARA_Prob",
    "retain_Q_A_ROUGE", "retain_Truth_Ratio", "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio", "knowmem_r",
)
LOWER_IS_BETTER = (
    "forget_quality_ks_statistic", "forget_Q_A_Prob", "forget_Q_A_PARA_Prob", "forget_Q_A_ROUGE",
    "extraction_strength", "exact_memorization", "verbmem_f", "knowmem_f",
    # eval --variants paraq,jailbreak: the forget answers' Prob / ROUGE from the rephrased prompts
    "forget_Q_A_PARAQ_Prob", "forget_Q_A_PARAQ_ROUGE", "forget_Q_A_JB_Prob", "forget_Q_A_JB_ROUGE",
)
TARGET_VALUE = {"privleak": 0.0, "forget_Truth_Ratio_prob_mean": 0.5, "mia_loss": 0.5, "mia_zlib": 0.5,
                "mia_min_k": 0.5, "mia_min_k_plus_plus": 0.5, "mia_reference": 0.5, "mia_gradnorm": 0.5,
                "privleak_auc": 0.5}

TOFU_HEADLINE = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE",
                 "retain_Q_A_Prob", "retain_Q_A_ROUGE", "extraction_strength", "privleak")
MUSE_HEADLINE = ("verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc", "privleak")
# What each per-epoch evaluation of an unlearning run keeps in run.json's ``evaluations``.
EPOCH_HEADLINE = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE")


def direction(key: str) -> str | None:
    """``"higher"``, ``"lower"``, ``"target"`` or None (unknown key)."""
    if key in HIGHER_IS_BETTER:
        return "higher"
    if key in LOWER_IS_BETTER:
        return "lower"
    if key in TARGET_VALUE:
        return "target"
    return None


def metric_direction(spec: str) -> tuple[str, Callable[[float], float]]:
    """A selection spec -> (summary key, score to maximise).

    Keys with a known direction: higher-is-better as is, lower-is-better negated, an ideal middle value as
    -|v - ideal|. ``max:KEY`` / ``min:KEY`` force a direction for any other key.
    """
    if spec.startswith(("max:", "min:")):
        key = spec[4:]
        return (key, (lambda v: v)) if spec.startswith("max:") else (key, (lambda v: -v))
    d = direction(spec)
    if d == "higher":
        return spec, (lambda v: v)
    if d == "lower":
        return spec, (lambda v: -v)
    if d == "target":
        t = TARGET_VALUE[spec]
        return spec, (lambda v: -abs(v - t))
    raise ObliviateError(
        f"{spec!r}: unknown direction; higher is better for {', '.join(HIGHER_IS_BETTER)}; "
        f"lower for {', '.join(LOWER_IS_BETTER)}; closest to an ideal value for {', '.join(TARGET_VALUE)}; "
        "or write max:KEY / min:KEY"
    )


# OpenUnlearning's aggregate scores (obliviate.metaeval.aggregates; docs/metrics.md), each in [0, 1], 1 = best.
AGGREGATE_KEYS = ("memorisation_score", "privacy_score", "utility_score", "openunlearning_aggregate")
HIGHER_IS_BETTER += AGGREGATE_KEYS

# MUSE's per-epoch evaluation (unlearn --eval-every-epoch on a MUSE-format forget set, muse_eval.py); its privleak
# is left out because TOFU's summary has that key too and TOFU's per-epoch records stay as they were.
EPOCH_HEADLINE += ("verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc")
