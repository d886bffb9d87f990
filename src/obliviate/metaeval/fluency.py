"""Fluency: the share of a model's forget-set answers a gibberish classifier calls clean (OpenUnlearning's
utility = HM(model utility, fluency); Dorna et al. 2025, arXiv:2506.12618, Sec. 5).

open-unlearning's ``classifier_prob`` (src/evals/metrics/utility.py:19-79, configured by
configs/eval/tofu_metrics/forget_Q_A_gibberish.yaml): each greedy answer to a forget question is tokenized by
the classifier's tokenizer (truncated to ``max_length`` = 32 tokens, padded per batch), the classifier's
softmax probability of class ``class_id`` = 0 ("clean" for madhurjindal/autonlp-Gibberish-Detector-492513457)
is taken, and fluency is the mean over the answers:

    fluency = (1/n) sum_i softmax(classifier(answer_i))[class_id]

The classifier is a sequence-classification model: a local folder (``config.json``, weights and tokenizer),
loaded with ``local_files_only``, or a hub id (``org/name``), which transformers takes from its cache or fetches
on first use (``HF_HUB_OFFLINE=1`` forbids that). Without one, fluency is not formed and the utility score says
so. ``obliviate eval --fluency-classifier`` and the pools' ``eval.fluency_classifier`` take either.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ObliviateError

MAX_LENGTH = 32  # forget_Q_A_gibberish.yaml
CLASS_ID = 0


def classifier_kind(spec: str | Path) -> str:
    """``folder`` (an existing folder with a config.json) or ``hub`` (an ``org/name`` id that is no path here);
    anything else is refused before a model is loaded."""
    from ..models import _HUB_PART

    text = str(spec)
    p = Path(text)
    if p.exists():
        if not (p / "config.json").is_file():
            raise ObliviateError(f"fluency classifier {text}: not a model folder (no config.json); give a local copy "
                                 "of a sequence classifier such as madhurjindal/autonlp-Gibberish-Detector-492513457")
        return "folder"
    org, _, name = text.partition("/")
    if text.count("/") == 1 and _HUB_PART.fullmatch(org) and _HUB_PART.fullmatch(name) and not Path(org).is_dir():
        return "hub"
    raise ObliviateError(f"fluency classifier {text}: no such folder, and not a hub id (org/name)")


def load_classifier(spec: str | Path):
    """(model, tokenizer) of a sequence classifier (:func:`classifier_kind`), in eval mode on the CPU. A folder
    is read with ``local_files_only``; a hub id goes through transformers' cache."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = classifier_kind(spec) == "folder"
    kw = {"local_files_only": True} if local else {}
    try:
        tok = AutoTokenizer.from_pretrained(str(spec), **kw)
        model = AutoModelForSequenceClassification.from_pretrained(str(spec), **kw)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ObliviateError(f"fluency classifier {spec}: cannot load it ({first})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    model.config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


def classifier_fluency(texts: list[str], classifier, tokenizer, class_id: int = CLASS_ID,
                       max_length: int = MAX_LENGTH, batch_size: int = 32) -> tuple[float | None, list[float]]:
    """(mean, per-text) softmax probability of ``class_id`` under ``classifier``; (None, []) for no text."""
    import torch

    n_labels = classifier.config.num_labels
    if not 0 <= class_id < n_labels:
        raise ObliviateError(f"fluency: class_id {class_id} but the classifier has {n_labels} labels")
    scores: list[float] = []
    device = next(classifier.parameters()).device
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length)
            logits = classifier(**{k: v.to(device) for k, v in batch.items()}).logits.float()
            scores += torch.softmax(logits, dim=-1)[:, class_id].tolist()
    return (sum(scores) / len(scores) if scores else None), scores


def records_fluency(records: list[dict], classifier, tokenizer, **kw) -> tuple[float | None, str | None]:
    """Fluency of the forget records' greedy answers (``generation``); (None, why) when some lack one."""
    forget = [r for r in records if r.get("set") == "forget"]
    lacking = sum(1 for r in forget if r.get("generation") is None)
    if not forget or lacking:
        return None, (f"{lacking} of {len(forget)} forget items lack a generation" if forget else "no forget items")
    return classifier_fluency([r["generation"] for r in forget], classifier, tokenizer, **kw)[0], None


def add_fluency(summary: dict, records: list[dict], classifier) -> dict:
    """``summary`` with ``forget_fluency`` of ``records`` under ``classifier`` ((model, tokenizer)); the reason in
    ``missing`` when it cannot be formed. Changes and returns ``summary``."""
    summary["forget_fluency"], why = records_fluency(records, *classifier)
    if why:
        summary.setdefault("missing", {})["forget_fluency"] = why
    return summary
