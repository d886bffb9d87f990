"""``obliviate finetune``: turn a base model into a TOFU target model ("full", "retain90", …)."""

from __future__ import annotations

from ._callable import make_callable as _make_callable

import time
from dataclasses import replace
from pathlib import Path

from .data import check_data_dir, load_items, spec_path
from .config import FinetuneConfig, config_of_call, legacy_values
from .data.formatting import Formatter
from .data.text import DEFAULT_CHUNK_TOKENS, encode_items, is_text
from .models import check_max_length, check_model_spec, load_model, save_model
from .runtime.run import RESUME_MAY_CHANGE, Run
from .runtime.files import read_json
from .train import (TRAIN_DTYPE, EncodedBatches, TrainConfig, apply_lora, check_resume_epochs,
                    latest_checkpoint, nll_loss, padding_fraction, train)


def run_finetune(config: FinetuneConfig | str, *args, out: str | Path | None = None, overwrite: bool = False,
                 resume: bool = False, **settings) -> dict:
    """Fine-tune with the settings ``config`` (a :class:`FinetuneConfig`) into ``out``: ``run_finetune(config,
    out)``, or the keyword convenience ``run_finetune(model, data, out, cfg, data_dir=..., style=..., ...)``.
    Returns the run record."""
    config, out = config_of_call(FinetuneConfig, config, args, settings, ("data", "out", "train"), out,
                                 call="run_finetune")
    config.validate()
    check_data_dir(config.data_dir, [config.data])
    items = load_items(config.data, data_dir=config.data_dir)  # bad data fails before the model is loaded
    ck, cfg = resume_point(out, config.train, resume)
    config = replace(config, train=cfg, format=config.format.recorded_for(items))
    check_model_spec(config.model)  # a bad --model is refused before --overwrite empties anything
    record = {**config.to_dict(), "n_items": len(items)}
    may_change = {**RESUME_MAY_CHANGE, **(TEXT_FORMAT_MAY_CHANGE if is_text(items) else {})}
    with Run("finetune", out, record, seed=cfg.seed, overwrite=overwrite, resume=resume, resumable=True,
             checkpoint=ck, legacy=legacy_values(FinetuneConfig), may_change=may_change,
             inputs={"--model": config.model, "--data": spec_path(config.data), "--data-dir": config.data_dir}) as run:
        t0 = time.time()
        net, tok = load_model(config.model, dtype=TRAIN_DTYPE)  # fp32 master weights; bf16 autocast on CUDA (train)
        run.timing("load_model_s", time.time() - t0)
        check_max_length(net, config.format.max_length)
        train_on_items(run, net, tok, items, cfg, config.format.formatter(tok), resume=ck is not None)
    return run.data


#: On plain texts the prompt settings play no role, so a --resume may differ in them (run folders written before
#: the record said so hold the TOFU default, open-unlearning's chat format, there)
TEXT_FORMAT_MAY_CHANGE = {"protocol": "--protocol", "style": "--style", "system_prompt": "--system-prompt",
                          "date_string": "--date-string"}


def resume_point(out, cfg: TrainConfig, resume: bool) -> tuple[str | None, TrainConfig]:
    """For ``--resume``: the checkpoint to continue from (None: start from the beginning) and the training
    settings. A run killed before its first checkpoint has nothing to continue: it starts again in its folder
    (a job script that always passes ``--resume`` can restart it). A checkpoint that already holds every epoch
    trains nothing, so the settings that only shape training (``--lr``, ``--warmup-ratio``) stay as run.json
    has them."""
    if not resume or out is None:
        return None, cfg
    out = Path(out)
    if latest_checkpoint(out) is None and (out / "run.json").is_file():
        return None, cfg  # Run checks it is the same run, then notes the fresh start
    ck = check_resume_epochs(out, cfg)
    if int(ck.name.split("-")[1]) + 1 == cfg.epochs:
        prev = ((read_json(out / "run.json") if (out / "run.json").is_file() else {}).get("config") or {})
        prev = prev.get("train") or {}
        cfg = replace(cfg, **{k: prev[k] for k in ("lr", "warmup_ratio") if k in prev})
    return ck.name, cfg


def train_on_items(run: Run, net, tok, items, cfg: TrainConfig, fmt: Formatter, resume: bool = False):
    """Fine-tune ``net`` on the QA ``items`` inside ``run`` (which it starts): the loss on each answer, the
    model saved into the run's folder when it has one. Returns the model (LoRA adapters merged)."""
    encoded = encode_items(fmt, items)  # QA pairs through the prompt format; plain texts as MUSE chunks
    batches = EncodedBatches(encoded, cfg.batch_size, tok.pad_token_id, cfg.seed)
    pad = padding_fraction(batches.lengths, batches.plan(0))
    if cfg.lora:
        net = apply_lora(net, cfg)
    run.start()  # the checks that need the model passed: now --out is prepared
    history = train(net, batches, nll_loss, cfg, out_dir=run.dir, resume=resume, desc="finetune",
                    on_history=run.history_so_far)
    if hasattr(net, "merge_and_unload"):  # LoRA: plain merged weights, as save_model writes them
        net = net.merge_and_unload()
    if run.writes:
        t1 = time.time()
        save_model(net, tok, run.dir)
        run.timing("save_model_s", time.time() - t1)
    run.timing("train_s", history["train_seconds"])
    run.set_history(history)
    prompt = ({"text_chunk_tokens": min(DEFAULT_CHUNK_TOKENS, fmt.max_length)} if is_text(items) else
              {"style": fmt.style, "system_prompt": fmt.system_prompt})
    run.update(final_loss=history["final_loss"], padding_fraction=round(pad, 4), prompt_format=prompt)
    return net


# `obliviate.finetune(...)` runs obliviate.api.finetune (see _callable.py)
_make_callable(__name__)
