"""``obliviate finetune``: turn a base model into a TOFU target model ("full", "retain90", …)."""

from __future__ import annotations

from ._callable import make_callable as _make_callable

import time
from dataclasses import asdict, replace
from pathlib import Path

from .data import check_data_dir, load_items, spec_path
from .data.formatting import Formatter, check_format
from .data.text import encode_items
from .models import check_max_length, check_model_spec, load_model, save_model
from .runtime.run import Run
from .runtime.files import read_json
from .train import (TRAIN_DTYPE, EncodedBatches, TrainConfig, apply_lora, check_resume_epochs,
                    latest_checkpoint, nll_loss, padding_fraction, train)


def run_finetune(
    model: str,
    data: str,
    out: str | Path | None,
    cfg: TrainConfig,
    data_dir: str | None = None,
    style: str | None = None,
    system_prompt: str | None = None,
    max_length: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    protocol=None,
    date_string: str | None = None,
) -> dict:
    """Fine-tune ``model`` on ``data``. QA items are formatted by ``protocol`` (default ``open-unlearning``, the
    prompts TOFU's evaluation uses by default; ``style``, ``system_prompt``, ``max_length`` and ``date_string``
    override its fields when not None); plain texts train as MUSE chunks whatever the protocol."""
    from .protocols import training_protocol

    proto = training_protocol(protocol, style=style, system_prompt=system_prompt, max_length=max_length,
                              date_string=date_string)
    style, system_prompt, max_length = proto.style, proto.system_prompt, proto.max_length
    cfg.validate()
    check_format(style, max_length, system_prompt)
    check_data_dir(data_dir, [data])
    items = load_items(data, data_dir=data_dir)  # bad data fails before the model is loaded
    ck, cfg = resume_point(out, cfg, resume)
    check_model_spec(model)  # a bad --model is refused before --overwrite empties anything
    config = {"model": model, "data": data, "data_dir": data_dir, "style": style, "system_prompt": system_prompt,
              "max_length": max_length, "protocol": proto.as_dict(), "train": asdict(cfg), "n_items": len(items)}
    with Run("finetune", out, config, seed=cfg.seed, overwrite=overwrite, resume=resume, resumable=True,
             checkpoint=ck,
             inputs={"--model": model, "--data": spec_path(data), "--data-dir": data_dir}) as run:
        t0 = time.time()
        net, tok = load_model(model, dtype=TRAIN_DTYPE)  # fp32 master weights; bf16 autocast on CUDA (train)
        run.timing("load_model_s", time.time() - t0)
        check_max_length(net, max_length)
        fmt = Formatter.from_protocol(tok, proto)
        train_on_items(run, net, tok, items, cfg, fmt, resume=ck is not None)
    return run.data


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
    run.update(final_loss=history["final_loss"], padding_fraction=round(pad, 4),
               prompt_format={"style": fmt.style, "system_prompt": fmt.system_prompt})
    return net


# `obliviate.finetune(...)` runs obliviate.api.finetune (see _callable.py)
_make_callable(__name__)
