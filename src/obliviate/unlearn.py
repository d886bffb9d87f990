"""``obliviate unlearn``: make a fine-tuned model forget a forget set with one of the registered methods.

Flow (mirrors ``finetune.py``): read the method's options and the data (every input error surfaces before
the model is loaded) -> load the model -> build the references (sequence log-likelihoods cached once, or one
frozen copy / the LoRA base for token-level references) -> the one training loop (``train.py``) with the
method's step, optionally wrapped for robustness -> per-epoch TOFU evaluation and best-epoch selection ->
save the model, the tokenizer and ``run.json``.

Batches: ``{"forget": ..., "retain": ..., "idk": ...}``. Forget batches are length-grouped and shuffled per
epoch; each forget batch is paired with as many retain items drawn at random (with replacement) by a
``torch.Generator`` seeded from ``seed + rank`` and the epoch, so ranks draw different retain items and a
resumed run redraws the same ones.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .data import check_data_dir, load_items, parse_spec, spec_path
from .data.formatting import Encoded, Formatter, check_format, collate
from .data.text import encode_items
from .errors import ObliviateError, check_int, refuse_unused
from .io import RunRecord, atomic_write_json, atomic_write_jsonl, check_resume, out_arg, prepare_out_dir
from .metrics.keys import EPOCH_HEADLINE, metric_direction
from .methods.base import (
    LiveSequenceReference,
    References,
    TokenReference,
    compute_sequence_cache,
    frozen_copy,
    get_method,
    make_config,
    parse_options,
)
from .refusals import assign_refusals, load_refusals
from .registry import METHODS
from .robust import RobustConfig, WeightAveraging, wrap_step
from .train import (TRAIN_DTYPE, NonFiniteLoss, TrainConfig, apply_lora, check_resume_epochs, latest_checkpoint,
                    length_grouped_batches, train)

__all__ = ["run_unlearn", "add_unlearn_parser", "prepare_unlearning", "UnlearnBatches", "default_train_config",
           "metric_direction"]


# ------------------------------------------------------------------------------------------- batches
def _collate(encs: list[Encoded], idx: list[int], pad_id: int, masks: list[list[bool]] | None = None) -> dict:
    b = collate([encs[i] for i in idx], pad_id)
    b["index"] = torch.tensor(idx, dtype=torch.long)
    if masks is not None:
        sens = torch.zeros_like(b["labels"], dtype=torch.bool)
        for r, i in enumerate(idx):
            e, m = encs[i], masks[i]
            n_ans = len(e) - e.prompt_len
            for j, flag in enumerate(m[:n_ans]):
                if flag:
                    sens[r, e.prompt_len + j] = True
        b["sensitive"] = sens
    return b


class UnlearnBatches:
    """Epoch iterator of ``{"forget", "retain"?, "idk"?}`` batches (``len`` = forget batches per epoch)."""

    def __init__(self, forget: list[Encoded], batch_size: int, pad_id: int, seed: int,
                 retain: list[Encoded] | None = None, idk: list[Encoded] | None = None,
                 sensitive: list[list[bool]] | None = None, rank: int | None = None):
        if not forget:
            raise ObliviateError("the forget set is empty")
        self.forget, self.retain, self.idk, self.sensitive = forget, retain, idk, sensitive
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed
        self.rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        self.lengths = [len(e) for e in forget]

    def __len__(self) -> int:
        return math.ceil(len(self.forget) / self.batch_size)

    def plan(self, epoch: int) -> list[list[int]]:
        return length_grouped_batches(self.lengths, self.batch_size, random.Random(self.seed * 1000003 + epoch))

    def retain_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed + self.rank) * 1000003 + epoch)

    def epoch(self, epoch: int):
        g = self.retain_generator(epoch) if self.retain else None
        for idx in self.plan(epoch):
            batch = {"forget": _collate(self.forget, idx, self.pad_id, self.sensitive)}
            if self.idk is not None:
                batch["idk"] = _collate(self.idk, idx, self.pad_id)
            if self.retain:
                r = torch.randint(len(self.retain), (len(idx),), generator=g).tolist()
                batch["retain"] = _collate(self.retain, r, self.pad_id)
            yield batch


# ------------------------------------------------------------------------------------------- setup
def default_train_config(method: str, **overrides) -> TrainConfig:
    """TOFU's unlearning settings with the method's paper epochs / lr: effective batch 32, weight decay 0.01,
    one epoch of warm-up."""
    d = get_method(method).train_defaults
    epochs = overrides.pop("epochs", None)
    epochs = d["epochs"] if epochs is None else epochs  # --epochs 0 is refused by TrainConfig.validate, not replaced
    kw = dict(epochs=epochs, lr=d["lr"], batch_size=32, warmup_ratio=1.0 / max(epochs, 1), weight_decay=0.01)
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**kw)


@dataclass
class Prepared:
    model: Any
    objective: Any
    batches: UnlearnBatches
    info: dict = field(default_factory=dict)


def prepare_unlearning(model, tokenizer, method: str, mcfg, forget_items, retain_items=None, *,
                       formatter: Formatter | None = None, tcfg: TrainConfig | None = None,
                       refusals: list[str] | None = None, reference: str = "cached",
                       cache_batch_size: int = 16) -> Prepared:
    """Encode the data, build the references, apply LoRA, and instantiate the method's step.

    ``reference``: ``cached`` (sequence log-likelihoods computed once, no copy) or ``live`` (a frozen copy
    scores them at every step: for tests and the benchmark). Returns the (possibly LoRA-wrapped) model.
    """
    cls = get_method(method)
    tcfg = tcfg or TrainConfig()
    fmt = formatter or Formatter(tokenizer)
    pad = tokenizer.pad_token_id
    forget = encode_items(fmt, forget_items)  # plain texts (MUSE raw) become chunked LM rows
    retain = None
    if cls.needs_retain(mcfg):
        if not retain_items:
            raise ObliviateError(f"method {method} needs a retain set (--retain SPEC)")
        retain = encode_items(fmt, retain_items)
    idk = None
    if cls.uses_idk:
        answers = assign_refusals(len(forget_items), refusals or load_refusals(), tcfg.seed)
        idk = [fmt.encode(it.question, a) for it, a in zip(forget_items, answers)]
    sensitive = None
    info: dict = {"n_forget": len(forget), "n_retain": len(retain) if retain else 0}
    if cls.uses_sensitive:
        from .methods.palu import sensitive_mask

        sensitive = [sensitive_mask(tokenizer, fmt.answer_text(it.answer), it.answer, it.question,
                                    it.target_words, mcfg.n) for it in forget_items]
        info["sensitive_source"] = {"target_words": sum(1 for it in forget_items if it.target_words),
                                    "auto_rule": sum(1 for it in forget_items if not it.target_words)}
        info["prefix_tokens"] = sum(sum(m) for m in sensitive)

    kinds = cls.reference_kinds(mcfg)
    refs = References()
    frozen = None
    if "sequence" in kinds:
        seqs = {"forget": forget}
        if "idk" in cls.sequences:
            seqs["idk"] = idk
        if reference == "cached":
            t0 = time.time()
            refs.sequence = compute_sequence_cache(model, seqs, pad, batch_size=cache_batch_size)
            info["reference_cache_s"] = round(time.time() - t0, 3)
            info["reference"] = "cached sequence log-likelihoods"
        elif reference == "live":
            frozen = frozen_copy(model)
            refs.sequence = LiveSequenceReference(frozen)
            info["reference"] = "live frozen copy"
        else:
            raise ObliviateError(f"reference={reference!r}; valid: cached, live")
    if tcfg.lora:
        if not cls.supports_lora:
            raise ObliviateError(f"method {method} trains chosen parameters directly; --lora is not supported with it")
        model = apply_lora(model, tcfg)
    if "token" in kinds:
        if tcfg.lora:
            refs.token = TokenReference(None)
        else:
            refs.token = TokenReference(frozen if frozen is not None else frozen_copy(model))
        info["token_reference"] = refs.token.kind
    objective = cls(mcfg, refs, seed=tcfg.seed)
    objective.check_forget(forget)
    objective.prepare(model)
    info["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batches = UnlearnBatches(forget, tcfg.batch_size, pad, tcfg.seed, retain=retain, idk=idk, sensitive=sensitive)
    return Prepared(model, objective, batches, info)


# ------------------------------------------------------------------------------------------- selection
def _check_select_key(spec: str, key: str) -> None:
    """Refuse a --select key the per-epoch TOFU evaluation never reports (a typo, a key of another benchmark,
    ``mia_reference``), before anything is trained; the run would otherwise keep the final weights."""
    from .metrics.tofu import tofu_summary

    keys = sorted(k for k in tofu_summary([], retain_mia_auc=0.5) if k not in ("missing", "n_items", "mia_reference"))
    if key == "mia_reference":
        raise ObliviateError(f"--select {spec}: mia_reference needs a reference model's scores, which the per-epoch "
                             "evaluation does not compute")
    if key not in keys:
        raise ObliviateError(f"--select {spec}: the TOFU evaluation reports no {key!r}; its keys: {', '.join(keys)}")


def _alpha_zero_drops_retain(cls, mcfg) -> bool:
    """Whether ``alpha=0`` would free this method from needing a retain set (not PDU's, whose constraint is on
    the retain loss), and the user has not set it already."""
    if getattr(mcfg, "alpha", 0) == 0:
        return False
    return not cls.needs_retain(replace(mcfg, alpha=0.0))


def _eval_target(forget: str, eval_data: str | None, eval_split: str | None) -> tuple[str, str]:
    """(data family with its loader options, TOFU split) of the per-epoch evaluation: from --eval-data /
    --eval-split, else from --forget (``synthetic:forget10?n_authors=4`` -> ``synthetic?n_authors=4``,
    ``forget10``)."""
    if eval_data and eval_split:
        return eval_data, eval_split
    family, config = parse_spec(forget)
    config, _, query = config.partition("?")
    if family in ("synthetic", "tofu") and config.startswith("forget"):
        data = family + (f"?{query}" if query else "")
        return eval_data or data, eval_split or config.replace("_perturbed", "")
    raise ObliviateError(
        f"--eval-every-epoch: cannot tell the TOFU evaluation split from --forget {forget!r}; "
        "pass --eval-data synthetic|tofu and --eval-split forget01|forget05|forget10"
    )


def _default_evaluator():
    try:
        from .evaluate import evaluate_tofu
    except ImportError as e:
        raise ObliviateError(f"--eval-every-epoch needs obliviate.evaluate.evaluate_tofu ({e})") from None
    return evaluate_tofu


# ------------------------------------------------------------------------------------------- the run
def run_unlearn(
    model: str,
    method: str,
    forget: str,
    out: str | Path,
    *,
    retain: str | None = None,
    options: dict | list[str] | None = None,
    cfg: TrainConfig | None = None,
    robust: RobustConfig | None = None,
    data_dir: str | None = None,
    style: str = "chat",
    system_prompt: str | None = None,
    max_length: int = 512,
    idk_file: str | None = None,
    eval_every_epoch: bool = False,
    retain_eval: str | None = None,
    select: str | None = None,
    eval_data: str | None = None,
    eval_split: str | None = None,
    eval_limit: int | None = None,
    evaluator: Callable | None = None,
    reference: str = "cached",
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    """Unlearn ``forget`` from ``model`` with ``method``; write the model, tokenizer and ``run.json`` to ``out``.

    ``options``: the method's ``key=value`` options (a dict or a list of strings); ``cfg``: training settings
    (default: :func:`default_train_config`); ``robust``: SAM / smoothing / gradient penalty / weight
    averaging. ``eval_every_epoch`` runs ``evaluator`` (default ``obliviate.evaluate.evaluate_tofu``) at the
    start and after every epoch; ``select`` (e.g. ``forget_quality``) keeps the best epoch's weights.
    Returns the run record.
    """
    # -- everything that can be wrong with the inputs, before the model is loaded ---------------------
    cls = get_method(method)
    opts = parse_options(options) if isinstance(options, (list, tuple)) else dict(options or {})
    mcfg = make_config(cls, opts)
    cfg = cfg or default_train_config(method)
    cfg.validate()
    check_format(style, max_length, system_prompt)
    if eval_limit is not None:
        check_int("--eval-limit", eval_limit)
    robust = robust or RobustConfig()
    robust.validate()
    if cfg.lora and not cls.supports_lora:
        raise ObliviateError(f"method {method} trains chosen parameters directly; --lora is not supported with it")
    if cfg.lora and robust.weight_avg:
        raise ObliviateError("--weight-avg with --lora would average each adapter's A and B factors separately, and "
                             "the merged mean(B) mean(A) is not the mean of the weights B A; train all weights "
                             "(drop --lora) or drop --weight-avg")
    if cfg.grad_checkpointing and robust.grad_penalty is not None:
        raise ObliviateError("--grad-penalty differentiates the gradient itself (double backward), which "
                             "--grad-checkpointing's recomputation does not support; drop one of the two")
    if reference not in ("cached", "live"):
        raise ObliviateError(f"reference={reference!r}; valid: cached, live")
    forget_items = _load_set("forget", forget, data_dir)  # an empty split raises here
    retain_items = None
    if cls.needs_retain(mcfg):
        if not retain:
            raise ObliviateError(
                f"method {method} needs a retain set (--retain SPEC, e.g. synthetic:retain90)"
                + ("; set alpha=0 to drop its retain term" if cls.retain_term and _alpha_zero_drops_retain(cls, mcfg)
                   else "")
            )
        retain_items = _load_set("retain", retain, data_dir)
    elif retain:  # it would be dropped without a word
        raise ObliviateError(
            f"--retain: method {method} " + ("has no retain term (grad_diff is gradient ascent with one)"
                                             if not cls.retain_term else
                                             f"uses no retain set with alpha={getattr(mcfg, 'alpha', 0)}; set "
                                             "alpha (--alpha A) to add its retain term")
            + ", so the retain set would be ignored; drop --retain")
    if idk_file and not cls.uses_idk:
        idk_methods = ", ".join(sorted(m.name for m in METHODS.entries() if getattr(m.obj, "uses_idk", False)))
        raise ObliviateError(f"--idk-file is used by {idk_methods} only, not by {method}")
    refusals = load_refusals(idk_file) if cls.uses_idk else None
    if select:
        eval_every_epoch = True
        try:
            sel_key, sel_score = metric_direction(select)
        except ObliviateError as e:
            raise ObliviateError(f"--select {e}") from None
        if evaluator is None:  # the TOFU evaluation: its summary keys are known
            _check_select_key(select, sel_key)
        if sel_key.startswith("forget_quality") or sel_key == "privleak":
            if not retain_eval:
                raise ObliviateError(f"--select {select} needs the retain model's evaluation: --retain-eval PATH")
    retain_records = None
    ev_data = ev_split = None
    ev_extra: dict = {}  # what every per-epoch evaluation gets besides the common arguments
    if eval_every_epoch:
        ev_data, ev_split = _eval_target(forget, eval_data, eval_split)
        ev_sets = None
        if evaluator is None:  # the TOFU evaluation: its sets, loaded once (--eval-limit cuts all five)
            from .evaluate import tofu_sets

            ev_sets = tofu_sets(ev_data, ev_split, data_dir, eval_limit, eval_limit)
            ev_extra = {"sets": ev_sets}
            evaluator = _default_evaluator()
        if retain_eval:
            from .evaluate import load_retain_records

            retain_records = load_retain_records(
                retain_eval, ev_sets["forget"] if ev_sets is not None else None,
                f"the same data, split and limit as this run's evaluations: {ev_data}, {ev_split}, --eval-limit "
                f"{eval_limit}")
    check_data_dir(data_dir, [forget, retain, ev_data and f"{ev_data}:{ev_split}"])
    out = Path(out)
    ck = check_resume_epochs(out, cfg) if resume else None
    from .models import check_model_spec

    check_model_spec(model)  # a bad --model is refused before --overwrite empties anything
    prepare_out_dir(out, overwrite=overwrite, resume=resume,
                    inputs={"--model": model, "--retain-eval": retain_eval, "--forget": spec_path(forget),
                            "--retain": spec_path(retain), "--idk-file": idk_file, "--data-dir": data_dir},
                    resumable=True)

    config = {
        "model": model, "method": method, "method_config": asdict(mcfg), "forget": forget, "retain": retain,
        "data_dir": data_dir, "style": style, "system_prompt": system_prompt, "max_length": max_length,
        "train": asdict(cfg), "robust": asdict(robust), "reference": reference,
        "idk_file": idk_file if cls.uses_idk else None,
        "eval": {"every_epoch": eval_every_epoch, "data": ev_data, "split": ev_split, "limit": eval_limit,
                 "retain_eval": retain_eval, "select": select},
        "n_forget": len(forget_items), "n_retain": len(retain_items) if retain_items else 0,
    }
    resumed = check_resume(out, "unlearn", config) if resume else None  # before run.json is rewritten
    record = RunRecord(out, "unlearn", config, seed=cfg.seed)
    if resumed:
        record.resumed(resumed, ck.name)
    record.save()

    with record.guard(resume_hint=True):  # an error or Ctrl-C leaves run.json saying so
        # -- model, references, step ------------------------------------------------------------------------
        from .models import check_max_length, load_model, save_model

        t0 = time.time()
        net, tok = load_model(model, dtype=TRAIN_DTYPE)  # fp32 master weights; bf16 autocast on CUDA (train)
        record.timing("load_model_s", time.time() - t0)
        check_max_length(net, max_length)
        fmt = Formatter(tok, style=style, system_prompt=system_prompt, max_length=max_length)
        t0 = time.time()
        prep = prepare_unlearning(net, tok, method, mcfg, forget_items, retain_items, formatter=fmt, tcfg=cfg,
                                  refusals=refusals, reference=reference)  # e.g. an RMU layer the model lacks
        record.timing("prepare_s", time.time() - t0)
        net, objective = prep.model, prep.objective
        step_fn = wrap_step(objective, robust, seed=cfg.seed)
        averager = WeightAveraging(robust.avg_start, robust.avg_every) if robust.weight_avg else None
        record.update(setup=prep.info, robust_active=robust.active())
        record.save()

        # -- per-epoch evaluation and selection -----------------------------------------------------------
        best: dict = {}
        evals: list[dict] = []

        def on_epoch_end(epoch: int, m) -> dict:
            tag = "initial" if epoch < 0 else f"epoch-{epoch + 1}"
            ctx = averager.swapped_in(m) if averager is not None else contextlib.nullcontext()
            with ctx:
                summary, records = evaluator(m, tok, data=ev_data, split=ev_split, data_dir=data_dir, limit=eval_limit,
                                             retain_records=retain_records, formatter=fmt, progress=cfg.progress,
                                             **ev_extra)
                atomic_write_json(out / "eval" / tag / "summary.json", summary)
                atomic_write_jsonl(out / "eval" / tag / "items.jsonl", records)
                evals.append({"epoch": epoch + 1, **{k: summary.get(k) for k in EPOCH_HEADLINE if k in summary}})
                if select and epoch >= 0:
                    v = summary.get(sel_key)
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        score = sel_score(float(v))
                        if not best or score > best["score"]:
                            best.update(epoch=epoch + 1, value=float(v), score=score, params={
                                n: p.detach().cpu().clone() for n, p in m.named_parameters() if p.requires_grad})
            return summary

        # -- train ----------------------------------------------------------------------------------------
        def step_end(step: int, model) -> None:
            objective.on_step_end(step)
            if averager is not None:
                averager.on_step_end(step, model)

        run_state = _RunState(objective, step_fn, averager, best, evals)
        try:
            history = train(net, prep.batches, step_fn, cfg, out_dir=out, resume=resume,
                            on_epoch_end=on_epoch_end if eval_every_epoch else None, desc=f"unlearn[{method}]",
                            on_step_end=step_end, extra_state=run_state, on_history=record.history_so_far)
        except NonFiniteLoss as e:
            msg = _non_finite_message(e, out)
            record.update(error=msg, failed_at={"epoch": e.epoch + 1, "step": e.step + 1, "logs": e.logs})
            record.save(status="failed")
            raise ObliviateError(msg) from None

        # -- final weights: the selected epoch, else the weight average, else the last epoch ---------------
        selection = avg_note = None
        if select and best:
            named = dict(net.named_parameters())
            with torch.no_grad():
                for n, v in best["params"].items():
                    named[n].copy_(v.to(named[n].device, named[n].dtype))
            selection = {"key": sel_key, "spec": select, "best_epoch": best["epoch"], "value": best["value"]}
        else:
            if select:
                selection = {"key": sel_key, "spec": select, "best_epoch": None,
                             "note": f"no epoch had a finite {sel_key}; the final weights are kept"}
            if averager is not None and not averager.apply(net):
                avg_note = (f"the run ended before step {robust.avg_start} (--avg-start), so nothing was averaged; "
                            "the final weights are saved (lower --avg-start)")
                print(f"note: --weight-avg: {avg_note}", file=sys.stderr)
        t1 = time.time()
        save_model(net, tok, out)
        record.timing("save_model_s", time.time() - t1)
        record.timing("train_s", history["train_seconds"])
        record.update(
            history=history, final_loss=history["final_loss"], selection=selection, evaluations=evals or None,
            method_state=objective.extra_state() or None,
            weight_averaging=({**averager.state(), **({"note": avg_note} if avg_note else {})}
                              if averager is not None else None),
            prompt_format={"style": fmt.style, "system_prompt": system_prompt},
        )
        record.save(status="done")
    return record.data


class _RunState:
    """Everything besides weights, optimiser and scheduler that an unlearning run changes as it trains: the
    method's own state (PDU's lambda), the gradient wrapper's noise generator, the running weight average,
    the best epoch so far (with its weights) and the evaluations so far. It goes into each per-epoch
    checkpoint so that ``--resume`` ends where an uninterrupted run would."""

    def __init__(self, objective, step_fn, averager, best: dict, evals: list):
        self.objective, self.step_fn, self.averager, self.best, self.evals = objective, step_fn, averager, best, evals

    def state_dict(self) -> dict:
        wrapper = getattr(self.step_fn, "state_dict", None) if self.step_fn is not self.objective else None
        return {"method": self.objective.state_dict(), "wrapper": wrapper() if wrapper else None,
                "averaging": self.averager.state_dict() if self.averager is not None else None,
                "best": dict(self.best), "evaluations": list(self.evals)}

    def load_state_dict(self, state: dict) -> None:
        self.objective.load_state_dict(state.get("method") or {})
        if state.get("wrapper") is not None and self.step_fn is not self.objective and \
                hasattr(self.step_fn, "load_state_dict"):
            self.step_fn.load_state_dict(state["wrapper"])
        if state.get("averaging") is not None and self.averager is not None:
            self.averager.load_state_dict(state["averaging"])
        self.best.clear()
        self.best.update(state.get("best") or {})
        self.evals[:] = state.get("evaluations") or []


def _load_set(role: str, spec: str, data_dir: str | None):
    try:
        items = load_items(spec, data_dir=data_dir)
    except ObliviateError as e:
        raise ObliviateError(f"--{role} {spec}: {e}") from None
    if not items:
        raise ObliviateError(f"--{role} {spec}: the {role} set is empty")
    return items


def _non_finite_message(e: NonFiniteLoss, out: Path) -> str:
    bad = [k for k, v in e.logs.items() if isinstance(v, float) and not math.isfinite(v)]
    terms = ", ".join(f"{k}={v}" for k, v in e.logs.items()) or "no per-term logs"
    ck = latest_checkpoint(out)
    if ck is not None:
        kept = (f"the last good checkpoint ({ck.name}, after epoch {int(ck.name.split('-')[1]) + 1}) is kept in "
                f"{ck.parent}; lower --lr and continue with --resume (other method weights need a new --out)")
    else:
        kept = "no epoch had finished, so there is no checkpoint and no model was written; lower --lr and rerun"
    which = f"non-finite term(s): {', '.join(bad)}" if bad else "the total loss is non-finite"
    return (f"unlearning stopped at epoch {e.epoch + 1}, step {e.step + 1}: {which} ({terms}); {kept}")


# ------------------------------------------------------------------------------------------- CLI
def _cmd_unlearn(args) -> int:
    options = parse_options(args.options)
    for flag in ("alpha", "beta", "gamma"):
        v = getattr(args, flag)
        if v is not None:
            if flag in options:
                raise ObliviateError(f"--{flag} and the option {flag}= were both given; keep one")
            options[flag] = v
    overrides = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                     warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, seed=args.seed,
                     lora=args.lora or None, lora_r=args.lora_r, grad_checkpointing=args.grad_checkpointing or None,
                     progress=not args.quiet)
    cfg = default_train_config(args.method, **overrides)
    # a setting given without the switch it belongs to would be ignored: say so instead
    for flags, switch, on in (([("--smooth-sigma", args.smooth_sigma)], "--smooth-n N", args.smooth_n > 0),
                              ([("--avg-start", args.avg_start), ("--avg-every", args.avg_every)], "--weight-avg",
                               args.weight_avg),
                              ([("--retain-eval", args.retain_eval), ("--eval-limit", args.eval_limit),
                                ("--eval-data", args.eval_data), ("--eval-split", args.eval_split)],
                               "--eval-every-epoch or --select", args.eval_every_epoch or args.select),
                              ([("--lora-r", args.lora_r)], "--lora", cfg.lora)):
        if not on:
            refuse_unused(flags, f"with {switch}")
    given = {k: v for k, v in (("smooth_sigma", args.smooth_sigma), ("avg_start", args.avg_start),
                               ("avg_every", args.avg_every)) if v is not None}
    robust = RobustConfig(sam_rho=args.sam_rho, smooth_n=args.smooth_n, grad_penalty=args.grad_penalty,
                          weight_avg=args.weight_avg, **given)
    rec = run_unlearn(
        args.model, args.method, args.forget, args.out, retain=args.retain, options=options, cfg=cfg,
        robust=robust, data_dir=args.data_dir, style=args.style, system_prompt=args.system_prompt,
        max_length=args.max_length, idk_file=args.idk_file, eval_every_epoch=args.eval_every_epoch,
        retain_eval=args.retain_eval, select=args.select, eval_data=args.eval_data, eval_split=args.eval_split,
        eval_limit=args.eval_limit, overwrite=args.overwrite, resume=args.resume,
    )
    msg = f"wrote {args.out} (final loss {rec['final_loss']:.4f}, {rec['timings']['total_s']:.0f}s)"
    s = rec.get("selection") or {}
    if s.get("best_epoch") is not None:
        msg += f"; kept epoch {s['best_epoch']} ({s['key']} = {s['value']:.4g})"
    print(msg)
    if s and s.get("best_epoch") is None:
        print(f"note: --select {s['spec']}: {s['note']}", file=sys.stderr)
    return 0


def add_unlearn_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``obliviate unlearn`` to the CLI's subparsers (``build_parser`` calls this)."""
    p = subparsers.add_parser(
        "unlearn", help="unlearn a forget set with a method (npo, grad_diff, rmu, …; see `obliviate ls methods`)",
        description="Unlearn a forget set. Method options go last as KEY=VALUE (e.g. beta=0.2 retain_loss=kl); "
                    "`obliviate ls methods --json` lists each method's options and defaults.",
    )
    p.add_argument("--model", required=True, help="built-in name, local folder or hub id (the fine-tuned target)")
    p.add_argument("--method", required=True, help="unlearning method (obliviate ls methods)")
    p.add_argument("--forget", required=True, help="forget set spec, e.g. synthetic:forget10, tofu:forget10")
    p.add_argument("--retain", default=None, help="retain set spec, e.g. synthetic:retain90 (methods with a retain term)")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--data-dir", default=None)
    p.add_argument("options", nargs="*", metavar="KEY=VALUE", help="method options (e.g. beta=0.2)")
    g = p.add_argument_group("training (defaults: the method's paper settings; TOFU: batch 32, 1 warm-up epoch)")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--grad-accum", type=int, default=None)
    g.add_argument("--warmup-ratio", type=float, default=None, help="default: one epoch (1 / epochs)")
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--lora", action="store_true", help="train LoRA adapters; token references use the adapter-free base")
    g.add_argument("--lora-r", type=int, default=None)
    g.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute decoder layers in backward: far less activation memory, ~1/3 more compute")
    g.add_argument("--alpha", type=float, default=None, help="retain-term weight (the method's alpha option)")
    g.add_argument("--beta", type=float, default=None, help="the method's beta option")
    g.add_argument("--gamma", type=float, default=None, help="forget-term weight (the method's gamma option)")
    g.add_argument("--idk-file", default=None, help="refusal answers for idk_nll / idk_dpo (e.g. TOFU's idontknow.jsonl)")
    g.add_argument("--max-length", type=int, default=512)
    g = p.add_argument_group("robustness (Fan et al. 2025)")
    g.add_argument("--sam-rho", type=float, default=None, help="sharpness-aware forget gradient, radius R (paper 0.01)")
    g.add_argument("--smooth-n", type=int, default=0, help="randomized smoothing with N Gaussian samples (paper 3)")
    g.add_argument("--smooth-sigma", type=float, default=None, help="randomized smoothing noise std (default 1e-4)")
    g.add_argument("--grad-penalty", type=float, default=None, help="add LAMBDA * ||grad of the forget loss||")
    g.add_argument("--weight-avg", action="store_true", help="save a running average of the weights")
    g.add_argument("--avg-start", type=int, default=None, help="first averaged optimiser step (default 100)")
    g.add_argument("--avg-every", type=int, default=None, help="averaging interval in steps (default 5)")
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-every-epoch", action="store_true", help="TOFU evaluation at the start and after each epoch")
    g.add_argument("--retain-eval", default=None, help="the retain model's eval folder/log (for forget quality)")
    g.add_argument("--select", default=None,
                   help="keep the best epoch by this summary key: forget_quality, model_utility, … (max:KEY / min:KEY)")
    g.add_argument("--eval-data", default=None, help="synthetic or tofu (default: from --forget)")
    g.add_argument("--eval-split", default=None, help="forget01|forget05|forget10 (default: from --forget)")
    g.add_argument("--eval-limit", type=int, default=None,
                   help="evaluate only the first N items of each set (forget, retain, holdout, real authors, world facts)")
    p.add_argument("--style", default="chat", help="prompt style: chat (default), plain, llama2")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue from the last per-epoch checkpoint in --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_unlearn)
    return p
