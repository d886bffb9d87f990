"""The Python API: the jobs of the command line as functions on models and items in memory.

Each works in memory (returns the model and/or the results; nothing is written) unless ``out=`` names an
output folder, which then gets what the command would write (model, ``run.json``, ``summary.json``, ...).
They take the same settings objects as the command line (:class:`~obliviate.train.TrainConfig`,
:class:`~obliviate.robust.RobustConfig`)::

    import obliviate
    model, tok = obliviate.load_model("tiny-llama")
    model, run = obliviate.unlearn(model, tok, "npo", obliviate.load_data("synthetic:forget01"), ...)
"""

from __future__ import annotations

from pathlib import Path

from .data import load_items
from .data.formatting import Formatter, check_format
from .models import load_model as _load_model
from .runtime.run import Run
from .train import TRAIN_DTYPE, TrainConfig

__all__ = ["load_model", "load_data", "finetune", "unlearn", "evaluate"]


def load_model(spec: str, device=None, dtype=TRAIN_DTYPE, **options):
    """``(model, tokenizer)``: a built-in name (``tiny-llama``, ``smollm2-135m``), a local folder or a hub id.
    float32 weights by default, what training wants (``dtype=`` for an evaluation-only model)."""
    return _load_model(spec, device=device, dtype=dtype, **options)


def load_data(spec: str, data_dir: str | None = None, **options) -> list:
    """The QA items of a data spec (``synthetic:forget01``, ``tofu:retain90``, ``file.jsonl``)."""
    return load_items(spec, data_dir=data_dir, **options)


def _items(x, data_dir):
    return load_items(x, data_dir=data_dir) if isinstance(x, str) else x


def finetune(model, tokenizer, items, cfg: TrainConfig | None = None, *, style: str | None = None,
             system_prompt: str | None = None, max_length: int | None = None, data_dir: str | None = None,
             out: str | Path | None = None, overwrite: bool = False, protocol=None, date_string: str | None = None):
    """Fine-tune ``model`` on ``items`` (QA items or a data spec) with ``cfg`` (default ``TrainConfig()``), in
    ``protocol``'s prompt format (default ``open-unlearning``; ``style`` ... ``date_string`` override it).
    Returns ``(model, record)``: the trained model (LoRA merged) and what run.json would hold."""
    from dataclasses import asdict

    from .finetune import train_on_items
    from .models import check_max_length
    from .protocols import training_protocol

    proto = training_protocol(protocol, style=style, system_prompt=system_prompt, max_length=max_length,
                              date_string=date_string)
    style, system_prompt, max_length = proto.style, proto.system_prompt, proto.max_length
    cfg = cfg or TrainConfig()
    cfg.validate()
    check_format(style, max_length, system_prompt)
    items = _items(items, data_dir)
    config = {"model": getattr(getattr(model, "config", None), "_name_or_path", None) or "<in memory>",
              "data": items if isinstance(items, str) else f"<{len(items)} items in memory>",
              "style": style, "system_prompt": system_prompt, "max_length": max_length, "protocol": proto.as_dict(),
              "train": asdict(cfg), "n_items": len(items)}
    with Run("finetune", out, config, seed=cfg.seed, overwrite=overwrite) as run:
        check_max_length(model, max_length)
        fmt = Formatter.from_protocol(tokenizer, proto)
        model = train_on_items(run, model, tokenizer, items, cfg, fmt)
    return model, run.data


def unlearn(model, tokenizer, method: str, forget, retain=None, *, out: str | Path | None = None,
            overwrite: bool = False, **settings):
    """Unlearn ``forget`` (QA items or a data spec) from ``model`` with ``method`` (``obliviate ls methods``).
    ``settings``: as :func:`obliviate.unlearn.run_unlearn` (``options``, ``cfg``, ``robust``, ``style``,
    ``eval_every_epoch``, ``select``, ...). Returns ``(model, record)``."""
    from .unlearn import _load_and_prepare, _train_select_save, plan_unlearning

    name = getattr(getattr(model, "config", None), "_name_or_path", None) or "<in memory>"
    plan = plan_unlearning(name, method, forget, retain=retain, **settings)
    with Run("unlearn", out, plan.config, seed=plan.cfg.seed, overwrite=overwrite) as run:
        net, tok, fmt, prep = _load_and_prepare(run, plan, model, tokenizer)
        run.start()
        net = _train_select_save(run, plan, net, tok, fmt, prep, resume=False)
    return net, run.data


def evaluate(model, tokenizer, data: str = "synthetic", split: str = "forget10", *, limit: int | None = None,
             utility_limit: int | None = None, data_dir: str | None = None, style: str | None = None,
             system_prompt: str | None = None, retain_eval: str | None = None, out: str | Path | None = None,
             overwrite: bool = False, protocol=None, date_string: str | None = None, **options):
    """The TOFU evaluation of ``model`` on a TOFU-format family (``synthetic`` or ``tofu``) and ``split``, under
    ``protocol`` (default ``open-unlearning``; ``style``, ``system_prompt``, ``date_string`` override it).
    ``options``: as :func:`obliviate.evaluate.evaluate_tofu` (``generation``, ``gradnorm``, ``variants``,
    ``batch_size``, ``progress``). Returns ``(summary, records)``."""
    from .evaluate import evaluate_tofu, load_retain_records, tofu_sets
    from .protocols import default_protocol, get_protocol

    proto = get_protocol(protocol or default_protocol("tofu"), style=style, system_prompt=system_prompt,
                         date_string=date_string)
    style, system_prompt = proto.style, proto.system_prompt
    check_format(style, system_prompt=system_prompt)
    sets = tofu_sets(data, split, data_dir, limit, utility_limit)
    retain_records = (load_retain_records(retain_eval, sets["forget"], "the same data, split and limit")
                      if retain_eval else None)
    config = {"benchmark": "tofu", "data": data, "split": split, "limit": limit, "utility_limit": utility_limit,
              "style": style, "system_prompt": system_prompt, "retain_eval": retain_eval, "protocol": proto.as_dict(),
              **options}
    with Run("eval", out, config, overwrite=overwrite, inputs={"--retain-eval": retain_eval}) as run:
        fmt = Formatter.from_protocol(tokenizer, proto)
        summary, records = evaluate_tofu(model, tokenizer, formatter=fmt, retain_records=retain_records,
                                         sets=sets, protocol=proto, **options)
        summary.pop("timings", None)
        run.write_jsonl("items.jsonl", records)
        run.write_json("summary.json", summary)
        run.update(summary=summary)
    return summary, records
