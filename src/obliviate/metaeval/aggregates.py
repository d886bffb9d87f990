"""OpenUnlearning's aggregate scores of one unlearned model (Dorna et al. 2025, arXiv:2506.12618, Sec. 5):
memorisation, privacy, utility and their harmonic mean, each in [0, 1] with 1 = best. Pure functions of a
TOFU summary (``obliviate eval``'s summary.json). docs/metrics.md ("OpenUnlearning aggregates") gives the
formulas, the sources and what could not be verified.

- memorisation = HM(1 - ES, 1 - EM, 1 - ParaProb, 1 - TruthRatio), TruthRatio = mean p_c / (p_c + p_w)
  (open-unlearning's ``prob_mean`` truth ratio, our ``forget_Truth_Ratio_prob_mean``);
- privacy = HM over the LOSS, ZLib, Min-K and Min-K++ attacks of s = 1 - min(|AUC - AUC_retain| / AUC_retain, 1)
  (open-unlearning's ``rel_diff`` of the forget-vs-holdout AUC, normalised): needs the retain model's summary;
- utility = HM(model_utility / model_utility of the target (fine-tuned, before unlearning) model when its summary
  is given, forget_fluency) as the paper; fluency (:mod:`.fluency`) needs a local gibberish classifier, and
  without one utility is the model-utility part alone (``notes`` says so);
- aggregate = HM(memorisation, privacy, utility).
"""

from __future__ import annotations

from .scores import hmean

MEMORISATION_KEYS = ("extraction_strength", "exact_memorization", "forget_Q_A_PARA_Prob",
                     "forget_Truth_Ratio_prob_mean")
PRIVACY_ATTACKS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")
AGGREGATE_KEYS = ("memorisation_score", "privacy_score", "utility_score", "openunlearning_aggregate")


def memorisation_score(summary: dict) -> tuple[float | None, str | None]:
    """HM(1 - v) over :data:`MEMORISATION_KEYS`: 1 = nothing of the forget answers left."""
    absent = [k for k in MEMORISATION_KEYS if summary.get(k) is None]
    if absent:
        return None, f"needs {', '.join(absent)}"
    return hmean([1.0 - float(summary[k]) for k in MEMORISATION_KEYS]), None


def mia_similarity(auc: float, auc_retain: float) -> float:
    """s = 1 - min(|AUC - AUC_retain| / AUC_retain, 1): 1 = the retain model's AUC, 0 = off by 100 % or more."""
    if auc_retain <= 0:
        return 0.0 if auc != auc_retain else 1.0
    return 1.0 - min(abs(auc - auc_retain) / auc_retain, 1.0)


def privacy_score(summary: dict, retain_summary: dict | None) -> tuple[float | None, str | None]:
    """HM over :data:`PRIVACY_ATTACKS` of :func:`mia_similarity` to the retain model's AUC."""
    if retain_summary is None:
        return None, "needs the retain model's summary (its MIA AUCs)"
    absent = [k for k in PRIVACY_ATTACKS if summary.get(k) is None]
    absent_r = [k for k in PRIVACY_ATTACKS if retain_summary.get(k) is None]
    if absent or absent_r:
        return None, "needs " + "; ".join(
            p for p in (f"{', '.join(absent)}" if absent else "",
                        f"the retain model's {', '.join(absent_r)}" if absent_r else "") if p)
    return hmean([mia_similarity(float(summary[k]), float(retain_summary[k])) for k in PRIVACY_ATTACKS]), None


def utility_score(summary: dict, target_summary: dict | None) -> tuple[float | None, str | None, str]:
    """(score, why None, note). The model-utility part is model_utility / the target model's when given, else
    model_utility; with ``forget_fluency`` in the summary (:mod:`.fluency`) the score is HM(that part,
    fluency), the paper's utility, else the part alone (and the note says fluency is left out)."""
    mu = summary.get("model_utility")
    if mu is None:
        return None, "needs model_utility", ""
    if target_summary is None:
        part, note = float(mu), "model_utility, not normalised (no target model summary given)"
    else:
        tmu = target_summary.get("model_utility")
        if tmu is None or float(tmu) <= 0:
            return None, "the target model's model_utility is None or 0", ""
        part, note = float(mu) / float(tmu), "model_utility / the target model's model_utility"
    fl = summary.get("forget_fluency")
    if fl is None:
        return part, None, note + "; no fluency (no classifier given), so not HM with fluency"
    return hmean([part, float(fl)]), None, f"HM({note}, forget_fluency)"


def aggregates(summary: dict, retain_summary: dict | None = None, target_summary: dict | None = None) -> dict:
    """``{memorisation_score, privacy_score, utility_score, openunlearning_aggregate, missing, notes}``.

    Each score is a float or None (then ``missing[key]`` says why); ``notes["utility_score"]`` says whether
    utility was normalised by the target model. Merge ``missing`` into the summary's own ``missing``.
    """
    out: dict = {}
    missing: dict = {}

    def put(key, value, why):
        out[key] = value
        if value is None:
            missing[key] = why

    put("memorisation_score", *memorisation_score(summary))
    put("privacy_score", *privacy_score(summary, retain_summary))
    u, why, note = utility_score(summary, target_summary)
    put("utility_score", u, why)
    parts = [out[k] for k in AGGREGATE_KEYS[:3]]
    put("openunlearning_aggregate", hmean(parts),
        "needs " + ", ".join(k for k in AGGREGATE_KEYS[:3] if out[k] is None))
    out["missing"] = missing
    out["notes"] = {"utility_score": note}
    return out


def add_aggregates(summary: dict, retain_records: list[dict] | None = None,
                   target_summary: dict | None = None) -> dict:
    """``summary`` (a ``tofu_summary`` / ``evaluate_tofu`` result) with the four aggregate keys inserted
    before its closing non-metric keys (``n_items``, ``missing``, ``timings``) and their reasons merged into
    ``missing``: the one call ``obliviate eval`` needs. ``retain_records``: the retain model's records
    (``--retain-eval``), from which its MIA AUCs are recomputed. Returns a new dict."""
    retain_summary = None
    if retain_records is not None:
        from ..metrics.tofu import tofu_summary

        retain_summary = tofu_summary(retain_records)
    agg = aggregates(summary, retain_summary, target_summary)
    tail_keys = [k for k in ("n_items", "missing", "timings") if k in summary]
    out = {k: v for k, v in summary.items() if k not in tail_keys}
    out.update({k: agg[k] for k in AGGREGATE_KEYS})
    for k in tail_keys:
        out[k] = summary[k]
    out["missing"] = {**(summary.get("missing") or {}), **agg["missing"]}
    out["aggregate_notes"] = agg["notes"]
    return out
