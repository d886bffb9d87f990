"""Membership-inference scores, their AUC, and MUSE's PrivLeak.

Orientation (the one open-unlearning uses): every per-item score is oriented so that **higher = less
likely a member** (training data has low loss, so the loss itself is such a score), and

    AUC = sklearn.metrics.roc_auc_score(labels, scores), forget items labelled 0, holdout items 1.

So a model that memorised the forget set gives AUC ~ 1, a model that never saw it (the retrained
model) gives ~ 0.5, and an over-unlearned model (forget set now *less* likely than unseen data)
gives < 0.5. MUSE (Shi et al. 2024, arXiv 2407.06460) reports the complementary AUC:
AUC_MUSE = 1 - AUC_ours.

Per-item attacks (all pure functions of the per-item stats of one record):

- ``loss``      A = mean NLL over the answer tokens (incl. EOS)             (Yeom et al. 2018)
- ``zlib``      A / len(zlib.compress(answer.encode("utf-8")))              (Carlini et al. 2021)
- ``min_k``     -mean of the n lowest token log-probs, k = 0.4,            (Shi et al. 2024, arXiv 2310.16789)
                n = ceil(k T) (``count="ceil"``, obliviate) or max(1, floor(k T)) (``count="floor"``:
                open-unlearning min_k.py:24 / min_k_plus_plus.py:38, MUSE privleak.py:44)
- ``min_k_plus_plus`` the same on the Min-K%++ z-values                    (Zhang et al. 2024, arXiv 2404.02936)
- ``reference`` A_model - A_reference                                        (Carlini et al. 2021)
- ``gradnorm``  ||grad_theta A||, as measured by the scoring engine          (Wang et al. 2024, arXiv 2402.17012)
"""

from __future__ import annotations

import math
import zlib
from typing import Iterable, Sequence

import numpy as np

from ..registry import METRICS

__all__ = [
    "MIA_ATTACKS",
    "MIN_K_DEFAULT",
    "loss_score",
    "zlib_score",
    "min_k_score",
    "min_k_count",
    "min_k_plus_plus_score",
    "reference_score",
    "gradnorm_score",
    "record_score",
    "mia_auc",
    "privleak",
    "mia_summary",
]

MIN_K_DEFAULT = 0.4  # open-unlearning's TOFU config and MUSE's privleak key "Min-40%"

MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference", "gradnorm")


def loss_score(avg_nll: float) -> float:
    """LOSS attack: score = A(y|x), the mean NLL over the answer tokens (EOS included)."""
    return float(avg_nll)


def zlib_score(avg_nll: float, text: str) -> float:
    """ZLib attack: score = A(y|x) / len(zlib.compress(text.encode("utf-8"))).

    ``text`` is the answer string (open-unlearning decodes the answer tokens, which is the same text
    up to detokenisation whitespace). The zlib length in bytes is a cheap proxy for the text's
    intrinsic entropy, so repetitive, easy text is not mistaken for memorised text.
    """
    n = len(zlib.compress(text.encode("utf-8")))
    return float(avg_nll) / n


MIN_K_COUNTS = ("ceil", "floor")


def min_k_count(T: int, k: float, count: str = "ceil") -> int:
    """How many of T tokens Min-K% averages: ceil(k T), or open-unlearning's / MUSE's max(1, floor(k T)).

    The two differ whenever k T is not an integer (T = 7, k = 0.4: 3 vs 2). ``ceil``: the 1e-9 keeps float
    noise (0.7 * 10 = 7.000000000000001) from adding a token. ``floor`` is the references' expression to the
    bit, ``int(T * k)`` with their float product, so it agrees with them even where that product rounds down."""
    if count == "ceil":
        return max(1, math.ceil(k * T - 1e-9))
    if count == "floor":
        return max(1, int(T * k))
    raise ValueError(f"count must be one of {', '.join(MIN_K_COUNTS)}, got {count!r}")


def _lowest_k_mean(values: Sequence[float], k: float, includes_eos: bool, count: str = "ceil") -> float | None:
    v = np.asarray(values, dtype=float)
    if includes_eos:
        v = v[:-1]
    T = v.size
    if T == 0:
        return None
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    # ceil, not floor: the k-fraction of the answer is covered by at least ceil(kT) tokens, and the
    # count is >= 1 for every T >= 1 without a special case (floor gives 0 tokens for T < 1/k, hence
    # open-unlearning's max(1, int(kT))). The 1e-9 keeps float noise (0.7 * 10 = 7.000000000000001)
    # from adding a token.
    n = min_k_count(T, k, count)
    return -float(np.mean(np.sort(v)[:n]))


def min_k_score(token_logprobs: Sequence[float], k: float = MIN_K_DEFAULT, *, includes_eos: bool = True,
                count: str = "ceil") -> float | None:
    """Min-K% Prob: score = -(1/n) sum of the n = ceil(k T) smallest log p(y_t | x, y_<t).

    T counts the answer tokens **without EOS** (``includes_eos=True`` drops the last entry, which the
    record contract says is EOS), as open-unlearning does. Returns None when T = 0. ceil vs floor:
    open-unlearning uses max(1, floor(k T)) (``count="floor"``, :func:`min_k_count`); the two agree whenever
    k T is an integer (T = 5, k = 0.4).
    """
    return _lowest_k_mean(token_logprobs, k, includes_eos, count)


def min_k_plus_plus_score(token_minkpp: Sequence[float], k: float = MIN_K_DEFAULT, *, includes_eos: bool = True,
                          count: str = "ceil") -> float | None:
    """Min-K%++: the Min-K% rule applied to z_t = (log p_t - mu_t) / sigma_t.

    mu_t = sum_v p_v log p_v and sigma_t^2 = sum_v p_v (log p_v)^2 - mu_t^2 over the vocabulary (the
    scoring engine computes z_t). score = -(1/n) sum of the n smallest z_t (n per :func:`min_k_count`), EOS
    excluded.
    """
    return _lowest_k_mean(token_minkpp, k, includes_eos, count)


def reference_score(avg_nll: float, ref_avg_nll: float) -> float:
    """Reference attack: score = A_model(y|x) - A_reference(y|x) (members: model loss << reference loss)."""
    return float(avg_nll) - float(ref_avg_nll)


def gradnorm_score(gradnorm: float) -> float:
    """GradNorm attack: score = ||grad_theta A(y|x)|| (members sit near a minimum: small gradients)."""
    return float(gradnorm)


def record_score(record: dict, attack: str, k: float = MIN_K_DEFAULT, *, count: str = "ceil") -> float | None:
    """The ``attack`` score of one per-item record, or None when its inputs are absent.

    A score already present in ``record["mia_scores"][attack]`` (imported from another tool's logs)
    is used as is; otherwise it is computed from the record's stats.
    """
    pre = record.get("mia_scores")
    if isinstance(pre, dict) and pre.get(attack) is not None:
        return float(pre[attack])
    if attack == "loss":
        a = record.get("avg_nll")
        return None if a is None else loss_score(a)
    if attack == "zlib":
        a, text = record.get("avg_nll"), record.get("answer")
        return None if a is None or not text else zlib_score(a, text)
    if attack == "min_k":
        t = record.get("token_logprobs")
        return None if t is None else min_k_score(t, k, count=count)
    if attack == "min_k_plus_plus":
        t = record.get("token_minkpp")
        return None if t is None else min_k_plus_plus_score(t, k, count=count)
    if attack == "reference":
        a, r = record.get("avg_nll"), record.get("ref_avg_nll")
        return None if a is None or r is None else reference_score(a, r)
    if attack == "gradnorm":
        g = record.get("gradnorm")
        return None if g is None else gradnorm_score(g)
    raise ValueError(f"unknown MIA attack {attack!r}; valid: {', '.join(MIA_ATTACKS)}")


def mia_auc(forget_scores: Iterable[float], holdout_scores: Iterable[float]) -> float:
    """AUC = roc_auc_score([0]*|forget| + [1]*|holdout|, forget_scores + holdout_scores).

    = P(score of a random holdout item > score of a random forget item) (+ half the ties):
    ~1 when the forget set is memorised, ~0.5 when it looks like unseen data.
    """
    from sklearn.metrics import roc_auc_score

    f = [float(x) for x in forget_scores]
    h = [float(x) for x in holdout_scores]
    if not f or not h:
        raise ValueError("mia_auc needs at least one forget and one holdout score")
    scores = np.asarray(f + h)
    # An infinite score (an NLL of a token given probability 0) is the most extreme rank: the AUC depends on
    # ranks only, so +-inf stand in as one past the largest / smallest finite score (sklearn refuses inf).
    finite = scores[np.isfinite(scores)]
    top, bottom = (finite.max() + 1, finite.min() - 1) if finite.size else (1.0, -1.0)
    scores = np.where(scores == np.inf, top, np.where(scores == -np.inf, bottom, scores))
    return float(roc_auc_score([0] * len(f) + [1] * len(h), scores))


def privleak(auc_model: float, auc_retrain: float) -> float:
    """MUSE's PrivLeak, from AUCs in *our* orientation (forget = 0, holdout = 1; memorised ~ 1).

    MUSE defines PrivLeak = (AUC_M(unlearned) - AUC_M(retrain)) / AUC_M(retrain) x 100 with its own
    AUC, AUC_M = 1 - AUC_ours (a memorising model has AUC_M ~ 0). Substituting:

        PrivLeak = ((1 - auc_model) - (1 - auc_retrain)) / (1 - auc_retrain) x 100
                 = (auc_retrain - auc_model) / (1 - auc_retrain) x 100

    so: model == retrain -> 0; a perfect memoriser (auc_model = 1) -> exactly -100 whatever the
    retrain AUC; over-unlearned (auc_model < auc_retrain) -> > 0. The tempting
    (auc_retrain - auc_model) / auc_retrain x 100 has the right sign but the wrong denominator: it
    agrees only when auc_retrain = 0.5 (retrain 0.4, memoriser 1.0 gives -150, not -100).
    open-unlearning computes the same quantity as ours (with +1e-10 in the denominator).
    Returns NaN when auc_retrain == 1 (the retrained model separates the sets perfectly: undefined).
    """
    denom = 1.0 - float(auc_retrain)
    if denom == 0.0:
        return float("nan")
    return (float(auc_retrain) - float(auc_model)) / denom * 100.0


PRIVLEAK_UNDEFINED = ("undefined: the retain model's Min-K AUC is 1.0 (it separates forget from holdout items "
                      "perfectly), so PrivLeak's denominator 1 - AUC_retain is 0")


def mia_summary(forget_records: Sequence[dict], holdout_records: Sequence[dict], k: float = MIN_K_DEFAULT, *,
                min_k_count: str = "ceil") -> tuple[dict, dict]:
    """AUC of every attack whose score every forget and holdout record has (``min_k_count``: the protocol's
    Min-K% count rule, :func:`min_k_count`).

    Returns ``(values, missing)``: ``values["mia_<attack>"]`` is the AUC or None, ``missing`` maps each
    None key to the reason.
    """
    values: dict = {}
    missing: dict = {}
    for attack in MIA_ATTACKS:
        key = f"mia_{attack}"
        if not forget_records or not holdout_records:
            values[key] = None
            missing[key] = "needs records of sets 'forget' and 'holdout'"
            continue
        fs = [record_score(r, attack, k, count=min_k_count) for r in forget_records]
        hs = [record_score(r, attack, k, count=min_k_count) for r in holdout_records]
        nf = sum(s is None for s in fs)
        nh = sum(s is None for s in hs)
        if nf or nh:
            values[key] = None
            missing[key] = (
                f"{nf} of {len(fs)} forget and {nh} of {len(hs)} holdout records lack the "
                f"{_NEEDS[attack]} this attack needs"
            )
            continue
        values[key] = mia_auc(fs, hs)
    return values, missing


_NEEDS = {
    "loss": "avg_nll",
    "zlib": "avg_nll and answer",
    "min_k": "token_logprobs",
    "min_k_plus_plus": "token_minkpp",
    "reference": "ref_avg_nll (a reference model's scores)",
    "gradnorm": "gradnorm",
}

_MIA_META = dict(
    higher_is_better=None,
    ideal="the retrained model's AUC (~0.5)",
    aggregation="roc_auc_score(forget=0, holdout=1) over per-item scores (higher score = less likely a member)",
    sets=("forget", "holdout"),
)

METRICS.register("mia_loss", paper="Yeom et al. 2018 (LOSS attack)", arxiv="1709.01604",
                 description="MIA AUC of the per-item mean NLL, forget vs holdout", **_MIA_META)(loss_score)
METRICS.register("mia_zlib", paper="Carlini et al. 2021 (zlib entropy ratio)", arxiv="2012.07805",
                 description="MIA AUC of mean NLL / zlib-compressed answer length", **_MIA_META)(zlib_score)
METRICS.register("mia_min_k", paper="Shi et al. 2024, Min-K% Prob", arxiv="2310.16789",
                 description="MIA AUC of -mean of the lowest ceil(0.4 T) token log-probs", **_MIA_META)(min_k_score)
METRICS.register("mia_min_k_plus_plus", paper="Zhang et al. 2024, Min-K%++", arxiv="2404.02936",
                 description="MIA AUC of Min-K% over the Min-K%++ z-values", **_MIA_META)(min_k_plus_plus_score)
METRICS.register("mia_reference", paper="Carlini et al. 2021 (reference-model calibration)", arxiv="2012.07805",
                 needs_reference=True,
                 description="MIA AUC of A_model - A_reference", **_MIA_META)(reference_score)
METRICS.register("mia_gradnorm", paper="Wang et al. 2024, Pandora's White-Box (gradient-norm MIA)", arxiv="2402.17012",
                 description="MIA AUC of the norm of the gradient of the mean NLL", **_MIA_META)(gradnorm_score)
METRICS.register(
    "privleak",
    higher_is_better=None,
    ideal=0.0,
    aggregation="(AUC_retrain - AUC_model) / (1 - AUC_retrain) * 100 on mia_min_k AUCs (our orientation)",
    sets=("forget", "holdout"),
    needs_retain=True,
    paper="Shi et al. 2024, MUSE",
    arxiv="2407.06460",
    description="MUSE PrivLeak: -100 ~ the target model, 0 ~ retrained, > 0 over-unlearned",
)(privleak)
