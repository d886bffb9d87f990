"""The relearning attack (Hu et al. 2024, "Unlearning or Obfuscating? Jogging the Memory of Unlearned LLMs
via Benign Relearning", arXiv 2406.13356; used against NPO+SAM by Fan et al. 2025, arXiv 2502.05374):
fine-tune an unlearned model for a few optimiser steps on a little forget data, then evaluate it again.
Knowledge that was hidden rather than removed comes back fast; the retrain model (which never saw the
forget data) relearned the same way is the control: what it gains is what a few steps teach from scratch.

* :func:`run_relearn` — ``obliviate relearn``: ``steps`` AdamW steps (constant ``lr``, no warm-up, no
  weight decay) of the mean token NLL on ``data`` (QA pairs through the prompt format, plain texts as
  MUSE's chunked LM rows: :func:`obliviate.data.text.encode_items`), cycling over the items in seeded
  length-grouped batches; saves the model and a run.json with the loss of each step.
* :func:`recovery_report` — ``obliviate relearn-report``: from the summary.json of four evaluations
  (unlearned model before / after relearning, retrain model before / after), per metric
  ``recovery = after - before`` for each model and ``excess = recovery_unlearned - recovery_retrain``;
  writes ``recovery.json`` and ``recovery.md``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from ..config import RelearnConfig, config_of_call, legacy_values
from ..errors import ObliviateError
from ..io import atomic_write_json, atomic_write_text

__all__ = ["run_relearn", "recovery_report", "relearn_model"]


def relearn_model(model, batches, steps: int, lr: float, max_grad_norm: float = 1.0, seed: int = 0) -> list[float]:
    """``steps`` AdamW steps of ``nll_loss`` over ``batches.epoch(0), epoch(1), ...``; the loss of each step."""
    import torch

    from ..train import nll_loss

    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    epoch = 0
    while len(losses) < steps:
        for batch in batches.epoch(epoch):
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, _ = nll_loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise ObliviateError(f"relearn: the loss is {losses[-1]} at step {len(losses)}; lower --lr")
            if len(losses) == steps:
                break
        epoch += 1
    model.eval()
    return losses


def run_relearn(config: RelearnConfig | str, *args, out: str | Path | None = None, overwrite: bool = False,
                **settings) -> dict:
    """Fine-tune the config's model for ``steps`` optimiser steps on the first ``n_items`` items of its data; save it
    and its run.json in ``out``: ``run_relearn(config, out)``, or the keyword convenience ``run_relearn(model, data,
    out, steps, lr=..., protocol=...)``. The :class:`~obliviate.runtime.run.Run` lifecycle: a refusal once the model
    has loaded leaves ``out`` as it was; an error or a signal later is recorded in run.json. Returns the run record
    (``losses``, ``final_loss``)."""
    from ..data import check_data_dir, load_items, spec_path
    from ..data.text import encode_items
    from ..models import check_max_length, check_model_spec, load_model, save_model
    from ..runtime.run import Run
    from ..train import TRAIN_DTYPE, EncodedBatches

    config, out = config_of_call(RelearnConfig, config, args, settings, ("data", "out", "steps"), out,
                                 call="run_relearn")
    config.validate()
    check_data_dir(config.data_dir, [config.data])
    items = load_items(config.data, data_dir=config.data_dir)  # bad data fails before the model is loaded
    items = items[: config.n_items] if config.n_items else items
    check_model_spec(config.model)
    config = replace(config, n_items=len(items), format=config.format.recorded_for(items))  # texts: max_length only
    inputs = {"--model": config.model, "--data": spec_path(config.data), "--data-dir": config.data_dir}
    with Run("relearn", out, config.to_dict(), seed=config.seed, overwrite=overwrite, inputs=inputs,
             legacy=legacy_values(RelearnConfig)) as run:
        t0 = time.time()
        net, tok = load_model(config.model, dtype=TRAIN_DTYPE)
        run.timing("load_model_s", time.time() - t0)
        check_max_length(net, config.format.max_length)  # a refusal here leaves --out as it was
        run.start()
        encoded = encode_items(config.format.formatter(tok), items)
        batches = EncodedBatches(encoded, config.batch_size, tok.pad_token_id, config.seed)
        t0 = time.time()
        losses = relearn_model(net, batches, config.steps, config.lr, seed=config.seed)
        run.timing("train_s", time.time() - t0)
        if run.writes:
            save_model(net, tok, run.dir)
        run.update(n_rows=len(encoded), losses=[round(x, 6) for x in losses], final_loss=losses[-1])
    return run.data


def _summary(path: str | Path, flag: str) -> dict:
    p = Path(path)
    p = p / "summary.json" if p.is_dir() else p
    if not p.is_file():
        raise ObliviateError(f"{flag} {path}: no summary.json (pass an eval folder)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{flag} {p}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ObliviateError(f"{flag} {p}: expected a JSON object")
    return {k: float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _fraction(num: float, den: float) -> float | None:
    return num / den if den else None  # None: the model already scores the target's value


def recovery_report(unlearned_before: str | Path, unlearned_after: str | Path, out: str | Path,
                    retrain_before: str | Path | None = None, retrain_after: str | Path | None = None,
                    target: str | Path | None = None) -> dict:
    """Per metric common to the summaries: before, after, ``recovery = after - before`` of the unlearned model
    and of the retrain control, and ``excess = recovery - control recovery``. With the target model's eval
    (``target``), also ``fraction = (after - before) / (target - before)`` for each model: the share of the
    gap to the target that relearning closes (the retrain model usually starts further from the target, so
    absolute recovery alone favours it). Writes recovery.json / .md."""
    from ..metrics.keys import MUSE_HEADLINE, TOFU_HEADLINE, direction

    if (retrain_before is None) != (retrain_after is None):
        raise ObliviateError("--retrain-before and --retrain-after go together (the control needs both)")
    ub, ua = _summary(unlearned_before, "--before"), _summary(unlearned_after, "--after")
    rb = _summary(retrain_before, "--retrain-before") if retrain_before is not None else None
    ra = _summary(retrain_after, "--retrain-after") if retrain_after is not None else None
    tg = _summary(target, "--target") if target is not None else None
    keys = [k for k in ub if k in ua and (rb is None or (k in rb and k in ra)) and (tg is None or k in tg)]
    if not keys:
        raise ObliviateError(f"{unlearned_before} and {unlearned_after} share no numeric metric")
    head = [k for k in (*MUSE_HEADLINE, *TOFU_HEADLINE) if k in keys]
    keys = list(dict.fromkeys(head + sorted(keys)))
    rows = {}
    for k in keys:
        row = {"before": ub[k], "after": ua[k], "recovery": ua[k] - ub[k]}
        if rb is not None:
            row.update(control_before=rb[k], control_after=ra[k], control_recovery=ra[k] - rb[k])
            row["excess"] = row["recovery"] - row["control_recovery"]
        if tg is not None:
            row["target"] = tg[k]
            row["fraction"] = _fraction(row["recovery"], tg[k] - ub[k])
            if rb is not None:
                row["control_fraction"] = _fraction(row["control_recovery"], tg[k] - rb[k])
        row["direction"] = direction(k)
        rows[k] = row
    report = {"unlearned_before": str(unlearned_before), "unlearned_after": str(unlearned_after),
              "retrain_before": None if retrain_before is None else str(retrain_before),
              "retrain_after": None if retrain_after is None else str(retrain_after),
              "target": None if target is None else str(target), "headline": head, "metrics": rows}
    out = Path(out)
    atomic_write_json(out / "recovery.json", report)
    cols = ["metric", "before", "after", "recovery"] + (["control recovery", "excess"] if rb is not None else [])
    if tg is not None:
        cols += ["fraction"] + (["control fraction"] if rb is not None else [])
    lines = ["# Relearning attack: recovery of each metric", "",
             "recovery = after - before (unlearned model); control = the retrain model relearned the same way; "
             "excess = recovery - control recovery; fraction = recovery / (target - before).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for k in keys:
        r = rows[k]
        vals = [r["before"], r["after"], r["recovery"]] + ([r["control_recovery"], r["excess"]] if rb is not None else [])
        if tg is not None:
            vals += [r["fraction"]] + ([r["control_fraction"]] if rb is not None else [])
        lines.append(f"| {k} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in vals) + " |")
    atomic_write_text(out / "recovery.md", "\n".join(lines) + "\n")
    return report
