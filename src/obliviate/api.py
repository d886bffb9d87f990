"""The Python API: the jobs of the command line as functions on models and items in memory.

Each works in memory (returns the model and/or the results; nothing is written) unless ``out=`` names an
output folder, which then gets what the command would write (model, ``run.json``, ``summary.json``, ...).
They take the same configuration objects as the command line (:mod:`obliviate.config`:
:class:`~obliviate.config.UnlearnConfig`, :class:`~obliviate.config.FinetuneConfig`,
:class:`~obliviate.config.EvalConfig`, and their parts :class:`~obliviate.config.TrainConfig`,
:class:`~obliviate.config.RobustConfig`, :class:`~obliviate.config.FormatConfig`), or, as a convenience, the
settings as keywords::

    import obliviate
    model, tok = obliviate.load_model("tiny-llama")
    model, run = obliviate.unlearn(model, tok, "npo", obliviate.load_data("synthetic:forget01"), ...)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .config import EvalConfig, FinetuneConfig, TrainConfig, UnlearnConfig
from .data import load_items
from .models import load_model as _load_model
from .runtime.run import Run
from .train import TRAIN_DTYPE

__all__ = ["load_model", "load_data", "finetune", "unlearn", "evaluate"]


def load_model(spec: str, device=None, dtype=TRAIN_DTYPE, **options):
    """``(model, tokenizer)``: a built-in name (``tiny-llama``, ``smollm2-135m``), a local folder or a hub id.
    float32 weights by default, what training wants (``dtype=`` for an evaluation-only model)."""
    return _load_model(spec, device=device, dtype=dtype, **options)


def load_data(spec: str, data_dir: str | None = None, **options) -> list:
    """The QA items of a data spec (``synthetic:forget01``, ``tofu:retain90``, ``file.jsonl``)."""
    return load_items(spec, data_dir=data_dir, **options)


def _name(model) -> str:
    return getattr(getattr(model, "config", None), "_name_or_path", None) or "<in memory>"


def finetune(model, tokenizer, items=None, cfg: TrainConfig | FinetuneConfig | None = None, *,
             out: str | Path | None = None, overwrite: bool = False, **settings):
    """Fine-tune ``model`` on ``items`` (QA items or a data spec). ``cfg``: a :class:`FinetuneConfig` (its
    ``data`` used when ``items`` is None), or the training settings (:class:`TrainConfig`, default
    ``TrainConfig()``) with the other settings as keywords (``style``, ``max_length``, ``data_dir``, ...).
    Returns ``(model, record)``: the trained model (LoRA merged) and what run.json would hold."""
    from .finetune import train_on_items
    from .models import check_max_length

    if isinstance(cfg, FinetuneConfig):
        config = replace(cfg, model=cfg.model or _name(model), data=cfg.data if items is None else items, **settings)
    else:
        config = FinetuneConfig.of(model=_name(model), data=items, train=cfg or TrainConfig(), **settings)
    config.validate()
    data = config.data
    items = load_items(data, data_dir=config.data_dir) if isinstance(data, str) else list(data)
    config = replace(config, format=config.format.resolved(),
                     data=data if isinstance(data, str) else f"<{len(items)} items in memory>")
    with Run("finetune", out, {**config.to_dict(), "n_items": len(items)}, seed=config.train.seed,
             overwrite=overwrite) as run:
        check_max_length(model, config.format.max_length)
        model = train_on_items(run, model, tokenizer, items, config.train, config.format.formatter(tokenizer))
    return model, run.data


def unlearn(model, tokenizer, method: str | UnlearnConfig, forget=None, retain=None, *,
            out: str | Path | None = None, overwrite: bool = False, evaluator=None, **settings):
    """Unlearn ``forget`` (QA items or a data spec) from ``model`` with ``method`` (``obliviate ls methods``).
    ``method`` may be a whole :class:`UnlearnConfig` instead; otherwise ``settings`` are its settings as
    keywords (``options``, ``cfg`` (a TrainConfig), ``robust``, ``style``, ``eval_every_epoch``, ``select``,
    ...: ``UnlearnConfig.of``). ``evaluator``: the per-epoch evaluation (default: the TOFU one). Returns
    ``(model, record)``."""
    from .unlearn import _load_and_prepare, _train_select_save, plan_unlearning

    if isinstance(method, UnlearnConfig):
        given = {k: v for k, v in (("forget", forget), ("retain", retain)) if v is not None}
        if settings:
            raise TypeError("obliviate.unlearn(model, tok, config): give the settings in the UnlearnConfig")
        config = replace(method, model=method.model or _name(model), **given)
    else:
        config = UnlearnConfig.of(model=_name(model), method=method, forget=forget, retain=retain, **settings)
    plan = plan_unlearning(config, evaluator=evaluator)
    with Run("unlearn", out, plan.config, seed=plan.cfg.seed, overwrite=overwrite) as run:
        net, tok, fmt, prep = _load_and_prepare(run, plan, model, tokenizer)
        run.start()
        net = _train_select_save(run, plan, net, tok, fmt, prep, resume=False)
    return net, run.data


def evaluate(model, tokenizer, data: str | EvalConfig | None = None, split: str | None = None, *,
             out: str | Path | None = None, overwrite: bool = False, **settings):
    """The TOFU evaluation of ``model`` on a TOFU-format family (``synthetic`` or ``tofu``) and ``split``.
    ``data`` may be a whole :class:`EvalConfig` instead; otherwise ``settings`` are its settings as keywords
    (``limit``, ``utility_limit``, ``retain_eval``, ``style``, ``protocol``, ``generation``, ``gradnorm``,
    ``variants``, ``batch_size``, ``fluency_classifier``, ``progress``, ...). Returns ``(summary, records)``, the
    summary with OpenUnlearning's aggregates as ``obliviate eval`` writes it."""
    from .evaluate import evaluate_tofu, load_fluency_classifier, load_retain_records, tofu_sets, with_aggregates

    if isinstance(data, EvalConfig):
        config = replace(data, model=data.model or _name(model), **({"split": split} if split else {}), **settings)
    else:
        given = {k: v for k, v in (("data", data), ("split", split)) if v is not None}
        config = EvalConfig.of(model=_name(model), **given, **settings)
    config.validate()
    if not config.is_tofu:
        from .errors import ObliviateError

        raise ObliviateError(f"obliviate.evaluate runs TOFU; MUSE ({config.benchmark}) runs from the command line "
                             "(obliviate eval --benchmark) or obliviate.evaluate.run_muse_eval")
    config = config.resolved()
    sets = tofu_sets(config.data, config.split, config.data_dir, config.limit, config.utility_limit)
    retain_records = (load_retain_records(config.retain_eval, sets["forget"], "the same data, split and limit")
                      if config.retain_eval else None)
    classifier = load_fluency_classifier(config)
    with Run("eval", out, config.to_dict(), overwrite=overwrite, inputs={"--retain-eval": config.retain_eval}) as run:
        proto = config.protocol()
        summary, records = evaluate_tofu(model, tokenizer, formatter=config.format.formatter(tokenizer),
                                         retain_records=retain_records, sets=sets, protocol=proto,
                                         progress=config.progress, generation=config.generation,
                                         gradnorm=config.gradnorm, variants=config.variants,
                                         batch_size=config.batch_size)
        summary = with_aggregates(summary, records, retain_records, classifier)
        summary.pop("timings", None)
        run.write_jsonl("items.jsonl", records)
        run.write_json("summary.json", summary)
        run.update(summary=summary)
    return summary, records
