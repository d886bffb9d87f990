"""``obliviate finetune``: turn a base model into a TOFU target model ("full", "retain90", …)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from .data import check_data_dir, load_items, spec_path
from .data.formatting import Formatter, check_format
from .data.text import encode_items
from .io import RunRecord, check_resume, prepare_out_dir
from .models import check_max_length, check_model_spec, load_model, save_model
from .train import (TRAIN_DTYPE, EncodedBatches, TrainConfig, apply_lora, check_resume_epochs,
                    nll_loss, padding_fraction, train)


def run_finetune(
    model: str,
    data: str,
    out: str | Path,
    cfg: TrainConfig,
    data_dir: str | None = None,
    style: str = "chat",
    system_prompt: str | None = None,
    max_length: int = 512,
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    cfg.validate()
    check_format(style, max_length, system_prompt)
    check_data_dir(data_dir, [data])
    items = load_items(data, data_dir=data_dir)  # bad data fails before the model is loaded
    out = Path(out)
    ck = check_resume_epochs(out, cfg) if resume else None
    check_model_spec(model)  # a bad --model is refused before --overwrite empties anything
    prepare_out_dir(out, overwrite=overwrite, resume=resume, resumable=True,
                    inputs={"--model": model, "--data": spec_path(data), "--data-dir": data_dir})
    config = {"model": model, "data": data, "data_dir": data_dir, "style": style, "system_prompt": system_prompt,
              "max_length": max_length, "train": asdict(cfg), "n_items": len(items)}
    resumed = check_resume(out, "finetune", config) if resume else None  # before run.json is rewritten
    record = RunRecord(out, "finetune", config, seed=cfg.seed)
    if resumed:
        record.resumed(resumed, ck.name)
    record.save()
    with record.guard(resume_hint=True):  # an error or Ctrl-C leaves run.json saying so
        t0 = time.time()
        net, tok = load_model(model, dtype=TRAIN_DTYPE)  # fp32 master weights; bf16 autocast on CUDA (train)
        record.timing("load_model_s", time.time() - t0)
        check_max_length(net, max_length)
        fmt = Formatter(tok, style=style, system_prompt=system_prompt, max_length=max_length)
        encoded = encode_items(fmt, items)  # QA pairs through the prompt format; plain texts as MUSE chunks
        batches = EncodedBatches(encoded, cfg.batch_size, tok.pad_token_id, cfg.seed)
        pad = padding_fraction(batches.lengths, batches.plan(0))
        if cfg.lora:
            net = apply_lora(net, cfg)
        history = train(net, batches, nll_loss, cfg, out_dir=out, resume=resume, desc="finetune",
                        on_history=record.history_so_far)
        t1 = time.time()
        save_model(net, tok, out)
        record.timing("save_model_s", time.time() - t1)
        record.timing("train_s", history["train_seconds"])
        record.update(history=history, final_loss=history["final_loss"], padding_fraction=round(pad, 4),
                      prompt_format={"style": fmt.style, "system_prompt": system_prompt})
        record.save(status="done")
    return record.data
