"""MUSE's evaluation of a model in memory (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for
Language Models", arXiv 2407.06460): VerbMem on D_f, KnowMem on D_f and D_r, PrivLeak (Min-K% 40 AUC).

``obliviate eval --benchmark muse-news|muse-books`` (:func:`obliviate.evaluate.run_muse_eval`) writes what
:func:`evaluate_muse` returns; ``obliviate unlearn --eval-every-epoch`` / ``--select`` on a MUSE-format forget set
(``muse-news:raw/forget``, ``synthetic-news:raw/forget?n_forget=4``, a ``scal`` / ``sust`` fold) runs it at the start
and after every epoch (:func:`epoch_evaluation`).

================  ==========================  ============================================================
set               spec (``<corpus>:...``)     scored
================  ==========================  ============================================================
verbmem           ``verbmem/forget``          greedy 128-token continuation of ``prompt`` vs ``gt`` cut to
                                              128 tokens (ROUGE-L F1)
knowmem_forget    ``knowmem/forget_qa``       greedy answer (32 tokens, cut at the next question) after
                                              the first 10 pairs of ``knowmem/forget_qa_icl``
knowmem_retain    ``knowmem/retain_qa``       the same with ``knowmem/retain_qa_icl``
privleak_forget   ``privleak/forget``         per-token log-probs (Min-K% 40 scores: members)
privleak_holdout  ``privleak/holdout``        per-token log-probs (non-members)
================  ==========================  ============================================================

The corpus is ``muse-news`` / ``muse-books`` (real MUSE files with ``--data-dir``, else the hub) or any data set
registered with MUSE's configs (``synthetic-news``), with its loader options after ``?``. ``limit`` keeps the
first N items of every set but the in-context examples. PrivLeak is relative to the retrain model's own AUC
(its evaluation's records); without them, MUSE's published retrain AUC is used for ``muse-news`` /
``muse-books`` only (it belongs to MUSE's own models), and PrivLeak is missing for any other corpus.
"""

from __future__ import annotations

import time

from .errors import ObliviateError, check_int, flag_error

__all__ = ["MUSE_VERBMEM_TOKENS", "MUSE_KNOWMEM_TOKENS", "MUSE_KNOWMEM_STOPS", "MUSE_PRIVLEAK_MAX_TOKENS",
           "MUSE_SET_SPECS", "muse_corpus", "muse_sets", "muse_records", "muse_records_summary", "retrain_auc",
           "evaluate_muse",
           "load_retrain_records", "check_select_key", "epoch_evaluation"]

MUSE_VERBMEM_TOKENS = 128
MUSE_KNOWMEM_TOKENS = 32
MUSE_KNOWMEM_STOPS = ["\n\n", "\nQuestion", "Question:"]
MUSE_PRIVLEAK_MAX_TOKENS = 512
#: record set -> the corpus config it is read from
MUSE_SET_SPECS = {"verbmem": "verbmem/forget", "knowmem_forget": "knowmem/forget_qa",
                  "knowmem_retain": "knowmem/retain_qa", "knowmem_forget_icl": "knowmem/forget_qa_icl",
                  "knowmem_retain_icl": "knowmem/retain_qa_icl", "privleak_forget": "privleak/forget",
                  "privleak_holdout": "privleak/holdout"}
_PUBLISHED = {"muse-news": "news", "muse-books": "books"}  # corpora with MUSE's published retrain AUC


def _is_muse_family(family: str) -> bool:
    from .registry import DATASETS

    return family in DATASETS.names() and "verbmem/forget" in (DATASETS.get(family).meta.get("configs") or ())


def muse_corpus(spec: str | None) -> str | None:
    """The MUSE-format corpus of a data spec, with its loader options (``synthetic-news:raw/forget?n_forget=4`` ->
    ``synthetic-news?n_forget=4``; a family name alone is returned as is); None when it is not one (TOFU, a file,
    items in memory). A union ``A+B`` is judged by ``A``."""
    if not isinstance(spec, str) or not spec:
        return None
    from .data import parse_spec, split_union

    first = split_union(spec)[0]
    if ":" not in first:  # a family (--eval-data), options after '?'
        family, _, query = first.partition("?")
    else:
        family, config = parse_spec(first)
        query = config.partition("?")[2]
    if not _is_muse_family(family):
        return None
    return family + (f"?{query}" if query else "")


def muse_sets(data: str, data_dir: str | None = None, limit: int | None = None) -> dict:
    """The seven sets of :data:`MUSE_SET_SPECS` from corpus ``data`` (``muse-news``, ``synthetic-news?n_forget=4``);
    ``limit`` keeps the first N items of each but the in-context examples."""
    from .data import load_items

    family, _, query = data.partition("?")
    if not _is_muse_family(family):
        raise ObliviateError(f"{data!r} is not a MUSE-format corpus (muse-news, muse-books, synthetic-news)")
    if limit is not None:
        check_int("--limit", limit)
    sets = {}
    for name, config in MUSE_SET_SPECS.items():
        items = load_items(f"{family}:{config}" + (f"?{query}" if query else ""), data_dir=data_dir)
        sets[name] = items if name.endswith("_icl") or not limit else items[:limit]
    return sets


def muse_records(model, tokenizer, sets: dict, proto, *, batch_size: int = 32, progress: bool = True,
                 corpus: str = "muse") -> tuple[list[dict], dict]:
    """(per-item records, timings) of the MUSE evaluation of ``model`` on ``sets`` under protocol ``proto``."""
    from .data.muse import knowmem_prompt, muse_ids, privleak_pair, verbmem_reference
    from .engine.generation import generate
    from .engine.scoring import ScoreRequest, score

    tok, special = tokenizer, proto.muse_special_tokens
    records: list[dict] = []
    timings: dict[str, float] = {}
    verb = sets["verbmem"]
    # VerbMem: the greedy 128-token continuation of each prompt vs the true continuation (128 tokens).
    t0 = time.time()
    gens = generate(model, tok, [it.question for it in verb], max_new_tokens=MUSE_VERBMEM_TOKENS,
                    batch_size=batch_size, progress=progress, desc="MUSE verbmem", all_eos=proto.stop_at_all_eos,
                    prompt_ids=[muse_ids(tok, it.question, special) for it in verb])
    for i, (it, g) in enumerate(zip(verb, gens)):
        gt = verbmem_reference(tok, it.answer, MUSE_VERBMEM_TOKENS, special)
        records.append({"set": "verbmem", "index": i, "prompt": it.question, "answer": gt, "generation": g})
    # KnowMem: 10 in-context QA pairs, greedy 32 tokens, cut at the next question.
    for name in ("knowmem_forget", "knowmem_retain"):
        items, icl = sets[name], sets[f"{name}_icl"]
        prompts = [knowmem_prompt(icl[:10], it.question, proto.muse_knowmem_trailing_space) for it in items]
        gens = generate(model, tok, prompts, max_new_tokens=MUSE_KNOWMEM_TOKENS, batch_size=batch_size,
                        stop_strings=MUSE_KNOWMEM_STOPS, progress=progress, desc=f"MUSE {name}",
                        all_eos=proto.stop_at_all_eos, prompt_ids=[muse_ids(tok, p, special) for p in prompts])
        for i, (it, g, p) in enumerate(zip(items, gens, prompts)):
            records.append({"set": name, "index": i, "question": it.question, "answer": it.answer,
                            "prompt": p, "generation": g})
    timings["generation_s"] = time.time() - t0
    # PrivLeak: per-token log-probs of each text after its first id (MUSE: the BOS; without special
    # tokens the first text token is the prompt).
    t0 = time.time()
    reqs, names = [], []
    for name in ("privleak_forget", "privleak_holdout"):
        for i, it in enumerate(sets[name]):
            p_ids, t_ids = privleak_pair(tok, it.answer, special, proto.muse_privleak_max_tokens,
                                         where=f"{corpus}:{MUSE_SET_SPECS[name]} row {i + 1}")
            # EOS appended so records share the TOFU layout (the metrics drop the final EOS entry).
            reqs.append(ScoreRequest(p_ids, [t_ids + [tok.eos_token_id]]))
            names.append((name, i))
    for (name, i), sc in zip(names, score(model, reqs, progress=progress, desc="MUSE privleak")):
        a = sc[0]
        records.append({"set": name, "index": i, "avg_nll": a.avg_nll, "num_tokens": a.num_tokens,
                        "token_logprobs": a.token_logprobs})
    timings["scoring_s"] = time.time() - t0
    return records, timings


def retrain_auc(records: list[dict], proto, where: str = "--retain-eval") -> float:
    """The retrain model's PrivLeak AUC (Min-K% forget vs holdout, our orientation) from its MUSE eval's records."""
    from .metrics.mia import mia_auc, record_score

    rf = [r for r in records if r.get("set") == "privleak_forget"]
    rh = [r for r in records if r.get("set") == "privleak_holdout"]
    if not rf or not rh:
        raise ObliviateError(f"{where}: no privleak_forget / privleak_holdout records (not a MUSE eval)")
    return mia_auc([record_score(r, "min_k", count=proto.min_k_count) for r in rf],
                   [record_score(r, "min_k", count=proto.min_k_count) for r in rh])


def load_retrain_records(path: str) -> list[dict]:
    """The records of ``--retain-eval PATH`` (a MUSE eval folder or its items.jsonl), checked to hold PrivLeak's sets
    now rather than after an evaluation."""
    from .protocols import get_protocol
    from .records import read_records

    try:
        records, _, _ = read_records(path)
        retrain_auc(records, get_protocol("obliviate"), str(path))
    except ObliviateError as e:
        raise flag_error("--retain-eval", path, e) from None
    return records


def evaluate_muse(model, tokenizer, *, data: str = "muse-news", data_dir: str | None = None,
                  limit: int | None = None, retain_records: list[dict] | None = None,
                  retain_auc: float | None = None, sets: dict | None = None, protocol=None, batch_size: int = 32,
                  progress: bool = True, split: str | None = None, formatter=None) -> tuple[dict, list[dict]]:
    """Run MUSE's evaluation; returns (summary, per-item records), the summary with MUSE's keys (``verbmem_f``,
    ``knowmem_f``, ``knowmem_r``, ``privleak_auc``, ``privleak``), ``protocol``, ``timings`` and ``missing``.

    ``data``: the corpus (see the module docstring); ``sets``: :func:`muse_sets`'s, loaded once by the caller;
    ``retain_records`` (the retrain model's eval records) or ``retain_auc``: PrivLeak's reference. ``split`` and
    ``formatter`` are accepted for the per-epoch caller and unused: MUSE's prompts are raw text, no chat template."""
    from .protocols import get_protocol

    proto = get_protocol(protocol or "obliviate")
    check_int("--batch-size", batch_size)
    sets = sets if sets is not None else muse_sets(data, data_dir, limit)
    family = data.partition("?")[0]
    if retain_auc is None and retain_records is not None:
        retain_auc = retrain_auc(retain_records, proto)
    records, timings = muse_records(model, tokenizer, sets, proto, batch_size=batch_size, progress=progress,
                                    corpus=family)
    summary = muse_records_summary(records, retain_auc=retain_auc, protocol=proto, corpus=data)
    missing = summary.pop("missing")
    summary.update(protocol=proto.name, timings={k: round(v, 3) for k, v in timings.items()}, missing=missing)
    return summary, records


def muse_records_summary(records: list[dict], *, retain_auc: float | None = None, protocol=None,
                         corpus: str = "muse-news") -> dict:
    """MUSE's summary (:func:`obliviate.metrics.muse.muse_summary`, with ``missing``) of saved records, e.g. a
    meta-evaluation's, recomputed against ``retain_auc`` (the retrain model's PrivLeak AUC); without it, MUSE's
    published AUC for ``muse-news`` / ``muse-books`` only."""
    from .metrics.muse import muse_summary
    from .protocols import get_protocol

    proto = get_protocol(protocol or "obliviate")
    family = corpus.partition("?")[0]
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["set"], []).append(r)
    summary = muse_summary(
        verbmem_records=by.get("verbmem"), knowmem_forget_records=by.get("knowmem_forget"),
        knowmem_retain_records=by.get("knowmem_retain"), privleak_forget_records=by.get("privleak_forget"),
        privleak_holdout_records=by.get("privleak_holdout"), retrain_auc=retain_auc,
        corpus=_PUBLISHED.get(family) if retain_auc is None else None, min_k_count=proto.min_k_count)
    if retain_auc is None and family not in _PUBLISHED:
        summary["missing"]["privleak"] = (f"needs the retrain model's evaluation (--retain-eval): {family} has no "
                                          "published AUC")
    return summary


def check_select_key(spec: str, key: str) -> None:
    """Refuse a ``--select`` key MUSE's per-epoch evaluation never reports, before anything is trained."""
    from .metrics.keys import MUSE_HEADLINE

    if key not in MUSE_HEADLINE:
        raise ObliviateError(f"--select {spec}: MUSE's evaluation reports no {key!r}; its keys: "
                             f"{', '.join(MUSE_HEADLINE)}")


def epoch_evaluation(forget, eval_data: str | None, eval_split: str | None, data_dir: str | None,
                     eval_limit: int | None, retain_eval: str | None):
    """``unlearn --eval-every-epoch`` on a MUSE-format corpus (``--eval-data`` names one, or ``--forget`` is one):
    ``(eval data, None, evaluator, its extra arguments, the retrain model's records)``, with the sets loaded once;
    None when the per-epoch evaluation is not MUSE's (TOFU's then)."""
    if eval_data is not None:
        if ":" in eval_data and muse_corpus(eval_data) is not None:
            raise ObliviateError(f"--eval-data {eval_data}: takes a corpus (e.g. {muse_corpus(eval_data)}), not a "
                                 "data spec; MUSE's evaluation reads its verbmem, knowmem and privleak sets")
        data = muse_corpus(eval_data)
    else:
        data = muse_corpus(forget)
    if data is None:
        return None
    if eval_split is not None:
        raise ObliviateError(f"--eval-split {eval_split}: MUSE's evaluation of {data} has no split (it reads "
                             "verbmem/forget, knowmem/* and privleak/*); drop --eval-split")
    given = f"--eval-data {eval_data}" if eval_data else f"the per-epoch MUSE evaluation of --forget {forget}"
    try:
        sets = muse_sets(data, data_dir, eval_limit)
    except ObliviateError as e:
        raise ObliviateError(f"{given}: {e}") from None
    records = load_retrain_records(retain_eval) if retain_eval else None
    return data, None, evaluate_muse, {"sets": sets}, records
