"""``obliviate unlearn``: make a fine-tuned model forget a forget set with one of the registered methods.

Flow (mirrors ``finetune.py``): read the method's options and the data (every input error surfaces before
the model is loaded) -> load the model -> build the references (sequence log-likelihoods cached once, or one
frozen copy / the LoRA base for token-level references) -> the one training loop (``train.py``) with the
method's step, optionally wrapped for robustness -> per-epoch TOFU evaluation and best-epoch selection ->
save the model, the tokenizer and ``run.json``.

Batches: ``{"forget": ..., "retain": ..., "idk": ...}``. Forget batches are length-grouped and shuffled per
epoch; each forget batch is paired with as many retain items drawn at random (with replacement) by a
``torch.Generator`` seeded from ``seed`` and the epoch, so a resumed run redraws the same ones. With N
processes each takes its block of rows of the global forget batch and the same rows of the retain draw
(``runtime/dist.split_rows``): ranks train on different retain items, and the run on the process count.
"""

from __future__ import annotations

from ._callable import make_callable as _make_callable

import contextlib
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .data import check_data_dir, load_items, parse_spec, spec_path
from .config import ConfigError, UnlearnConfig, legacy_values
from .data.formatting import Encoded, Formatter, collate
from .data.text import check_method_takes_texts, encode_items
from .errors import ObliviateError
from .metrics.keys import EPOCH_HEADLINE, metric_direction
from .muse_eval import check_select_key as check_muse_select_key, muse_corpus
from .muse_eval import epoch_evaluation as muse_epoch_evaluation
from .methods.base import (
    LiveSequenceReference,
    References,
    TokenReference,
    compute_sequence_cache,
    load_or_compute_sequence_cache,
    frozen_copy,
    get_method,
    make_config,
)
from .protocols import warn_protocol_mismatch
from .refusals import assign_refusals, load_refusals, protocol_refusal_file
from .robust import RobustConfig, WeightAveraging, wrap_step
from .runtime.dist import split_rows
from .runtime.run import Run
from .train import (TRAIN_DTYPE, NonFiniteLoss, TrainConfig, apply_lora, latest_checkpoint,
                    length_grouped_batches, train)

__all__ = ["run_unlearn", "plan_unlearning", "UnlearnConfig", "add_unlearn_parser", "prepare_unlearning",
           "UnlearnBatches", "default_train_config", "metric_direction"]


# ------------------------------------------------------------------------------------------- batches
def _collate(encs: list[Encoded], idx: list[int], pad_id: int, masks: list[list[bool]] | None = None) -> dict:
    b = collate([encs[i] for i in idx], pad_id)
    b["index"] = torch.tensor(idx, dtype=torch.long)
    if masks is not None:
        sens = torch.zeros_like(b["labels"], dtype=torch.long)  # per-token codes (PALU: 0, prefix 1, span 2)
        for r, i in enumerate(idx):
            e, m = encs[i], masks[i]
            n_ans = len(e) - e.prompt_len
            for j, flag in enumerate(m[:n_ans]):
                if flag:
                    sens[r, e.prompt_len + j] = int(flag)
        b["sensitive"] = sens
    return b


class UnlearnBatches:
    """Epoch iterator of ``{"forget", "retain"?, "idk"?}`` batches (``len`` = forget batches per epoch)."""

    def __init__(self, forget: list[Encoded], batch_size: int, pad_id: int, seed: int,
                 retain: list[Encoded] | None = None, idk: list[Encoded] | None = None,
                 sensitive: list[list[bool]] | None = None):
        if not forget:
            raise ObliviateError("the forget set is empty")
        self.forget, self.retain, self.idk, self.sensitive = forget, retain, idk, sensitive
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed
        self.lengths = [len(e) for e in forget]

    def __len__(self) -> int:
        return math.ceil(len(self.forget) / self.batch_size)

    def plan(self, epoch: int) -> list[list[int]]:
        return length_grouped_batches(self.lengths, self.batch_size, random.Random(self.seed * 1000003 + epoch))

    def retain_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000003 + epoch)

    def epoch(self, epoch: int, rank: int = 0, world: int = 1):
        """The batches of ``epoch``; with ``world`` processes, process ``rank``'s rows of each (train.py)."""
        g = self.retain_generator(epoch) if self.retain else None
        for idx in self.plan(epoch):
            # the whole global batch's retain draw, on every rank: the generator stays in step
            r = torch.randint(len(self.retain), (len(idx),), generator=g).tolist() if self.retain else None
            rows = split_rows(len(idx), rank, world)
            idx = idx[rows]
            batch = {"forget": _collate(self.forget, idx, self.pad_id, self.sensitive)}
            if self.idk is not None:
                batch["idk"] = _collate(self.idk, idx, self.pad_id)
            if r is not None:
                batch["retain"] = _collate(self.retain, r[rows], self.pad_id)
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
                       cache_batch_size: int = 16, reference_cache=None) -> Prepared:
    """Encode the data, build the references, apply LoRA, and instantiate the method's step.

    ``reference``: ``cached`` (sequence log-likelihoods computed once, no copy) or ``live`` (a frozen copy
    scores them at every step: for tests and the benchmark). Returns the (possibly LoRA-wrapped) model.
    """
    cls = get_method(method)
    check_method_takes_texts(method, cls, forget_items)
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
        from .methods.palu import sensitive_codes

        sensitive = [sensitive_codes(fmt, it, mcfg.n) for it in forget_items]  # on the tokens fmt scores
        info["sensitive_source"] = {"target_words": sum(1 for it in forget_items if it.target_words),
                                    "auto_rule": sum(1 for it in forget_items if not it.target_words)}
        info["prefix_tokens"] = sum(x == 1 for m in sensitive for x in m)  # palu.PREFIX

    kinds = cls.reference_kinds(mcfg)
    refs = References()
    frozen = None
    if "sequence" in kinds:
        seqs = {"forget": forget}
        if "idk" in cls.sequences:
            seqs["idk"] = idk
        if reference == "cached":
            t0 = time.time()
            if reference_cache is None:
                refs.sequence = compute_sequence_cache(model, seqs, pad, batch_size=cache_batch_size)
            else:  # shared across runs (a sweep's points): computed once per (model, sequences)
                refs.sequence, hit = load_or_compute_sequence_cache(model, seqs, pad, reference_cache,
                                                                    batch_size=cache_batch_size)
                info["reference_cache_reused"] = hit
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
        raise ConfigError("eval.select", f"{{0}} {spec}: mia_reference needs a reference model's scores, which the "
                                         "per-epoch evaluation does not compute")
    if key not in keys:
        raise ConfigError("eval.select", f"{{0}} {spec}: the TOFU evaluation reports no {key!r}; its keys: "
                                         f"{', '.join(keys)}")


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
    family, config = parse_spec(forget) if isinstance(forget, str) else ("", "")
    config, _, query = config.partition("?")
    if family in ("synthetic", "tofu") and config.startswith("forget"):
        data = family + (f"?{query}" if query else "")
        return eval_data or data, eval_split or config.replace("_perturbed", "")
    raise ConfigError(("eval.every_epoch", "forget", "eval.data", "eval.split"), (
        f"{{0}}: cannot tell the TOFU evaluation split from {{1}} {forget!r}; pass {{2}} synthetic|tofu and "
        "{3} forget01|forget05|forget10"))


def _default_evaluator():
    try:
        from .evaluate import evaluate_tofu
    except ImportError as e:
        raise ObliviateError(f"--eval-every-epoch needs obliviate.evaluate.evaluate_tofu ({e})") from None
    return evaluate_tofu


# ------------------------------------------------------------------------------------------- the run
@dataclass
class UnlearnPlan:
    """Everything a run needs that can be read and checked before the model is loaded. ``settings``: the
    resolved :class:`UnlearnConfig` (``config``: the same as run.json records it, with the counts read)."""
    settings: UnlearnConfig
    cls: Any
    mcfg: Any
    forget_items: list
    retain_items: list | None
    refusals: list[str] | None
    sel_key: str | None
    sel_score: Callable | None
    ev_extra: dict
    evaluator: Callable | None
    retain_records: list | None
    config: dict

    # the resolved settings the run reads
    @property
    def cfg(self) -> TrainConfig:
        return self.settings.train

    @cfg.setter
    def cfg(self, value: TrainConfig) -> None:
        self.settings.train = value
        self.config["train"] = asdict(value)

    @property
    def robust(self) -> RobustConfig:
        return self.settings.robust

    @property
    def select(self) -> str | None:
        return self.settings.eval.select

    @property
    def eval_every_epoch(self) -> bool:
        return self.settings.eval.every_epoch


def _config_of(config, method, forget, settings: dict) -> UnlearnConfig:
    """``config`` when it is an :class:`UnlearnConfig`; else the keyword convenience: the model's name,
    ``method``, ``forget`` and any setting as a keyword (``UnlearnConfig.of``)."""
    if isinstance(config, UnlearnConfig):
        if method is not None or forget is not None or settings:
            raise TypeError("give either an UnlearnConfig or the settings as keywords, not both")
        return config
    return UnlearnConfig.of(model=config, method=method, forget=forget, **settings)


def plan_unlearning(config: UnlearnConfig | str, method: str | None = None, forget=None, *,
                    evaluator: Callable | None = None, **settings) -> UnlearnPlan:
    """Every input check of an unlearning run, before any model is loaded or file written: the settings
    (``config.validate()``), the method's options, the data (loaded), the per-epoch evaluation and selection.

    ``config``: an :class:`UnlearnConfig`, or (the keyword convenience) the model's name followed by
    ``method``, ``forget`` and settings as keywords: ``retain``, ``options``, ``cfg`` (a TrainConfig),
    ``robust``, ``style``, ``eval_every_epoch``, ``select``, ... (``UnlearnConfig.of``). ``evaluator``: the
    per-epoch evaluation (default: :func:`obliviate.evaluate.evaluate_tofu`)."""
    config = _config_of(config, method, forget, settings)
    config.validate()
    cls = get_method(config.method)
    mcfg = make_config(cls, config.method_config)
    cfg = config.train_config()
    ev = config.eval
    forget, retain, data_dir = config.forget, config.retain, config.data_dir
    forget_items = _load_set("forget", forget, data_dir)  # an empty split raises here
    check_method_takes_texts(config.method, cls, forget_items)  # idk / PALU on MUSE's text chunks
    retain_items = None
    if cls.needs_retain(mcfg):
        if not retain:
            raise ConfigError("retain", (
                f"method {config.method} needs a retain set ({{0}} SPEC, e.g. synthetic:retain90)"
                + ("; set alpha=0 to drop its retain term" if cls.retain_term and _alpha_zero_drops_retain(cls, mcfg)
                   else "")))
        retain_items = _load_set("retain", retain, data_dir)
    elif retain:  # it would be dropped without a word
        raise ConfigError("retain", (
            f"{{0}}: method {config.method} " + ("has no retain term (grad_diff is gradient ascent with one)"
                                                 if not cls.retain_term else
                                                 f"uses no retain set with alpha={getattr(mcfg, 'alpha', 0)}; set "
                                                 "alpha (--alpha A) to add its retain term")
            + ", so the retain set would be ignored; drop {0}"))
    if retain_items:
        shared = {it.question for it in forget_items if it.question} & {it.question for it in retain_items}  # texts: ''
        if shared:  # the retain term would pull back what the forget term removes
            print(f"warning: {len(shared)} of the forget set's {len(forget_items)} questions are also in the retain "
                  f"set ({next(iter(sorted(shared)))!r}{', ...' if len(shared) > 1 else ''}); the retain term "
                  "trains them back", file=sys.stderr)
    idk_file, refusals = config.idk_file, None
    if cls.uses_idk:  # idk_file, else the protocol's list (TOFU's idontknow.jsonl under tofu / open-unlearning)
        if idk_file is None:
            idk_file = protocol_refusal_file(config.format.resolved_protocol(), data_dir, forget)
        refusals = load_refusals(idk_file)
    select, eval_every_epoch = ev.select, ev.every_epoch
    sel_key = sel_score = None
    if select:
        eval_every_epoch = True
        try:
            sel_key, sel_score = metric_direction(select)
        except ObliviateError as e:
            raise ConfigError("eval.select", "{0} " + str(e)) from None
        if evaluator is None and muse_corpus(ev.data or forget):  # MUSE's evaluation: its keys are known
            check_muse_select_key(select, sel_key)
        elif evaluator is None:  # the TOFU evaluation: its summary keys are known
            _check_select_key(select, sel_key)
        if (sel_key.startswith("forget_quality") or sel_key == "privleak") and not ev.retain_eval:
            raise ConfigError(("eval.select", "eval.retain_eval"),
                              f"{{0}} {select} needs the retain model's evaluation: {{1}} PATH")
    retain_records = None
    ev_data = ev_split = None
    ev_extra: dict = {}  # what every per-epoch evaluation gets besides the common arguments
    muse = None
    if eval_every_epoch and evaluator is None:  # a MUSE-format forget set (or eval.data): MUSE's evaluation
        muse = muse_epoch_evaluation(forget, ev.data, ev.split, data_dir, ev.limit, ev.retain_eval)
    if muse is not None:
        ev_data, ev_split, evaluator, ev_extra, retain_records = muse
    elif eval_every_epoch:
        ev_data, ev_split = _eval_target(forget, ev.data, ev.split)
        ev_sets = None
        if evaluator is None:  # the TOFU evaluation: its sets, loaded once (--eval-limit cuts all five)
            from .evaluate import tofu_sets

            try:
                ev_sets = tofu_sets(ev_data, ev_split, data_dir, ev.limit, ev.limit)
            except ObliviateError as e:
                given = [(f, v) for f, v in (("eval.data", ev.data), ("eval.split", ev.split)) if v]
                where = (" ".join("{%d} %s" % (i, v) for i, (_, v) in enumerate(given)) if given else
                         f"the per-epoch evaluation of {{0}} {forget}")
                raise ConfigError([f for f, _ in given] or ["forget"], f"{where}: {e}") from None
            ev_extra = {"sets": ev_sets, "protocol": config.format.resolved_protocol()}  # the run's prompts
            evaluator = _default_evaluator()
        if ev.retain_eval:
            from .evaluate import load_retain_records

            retain_records = load_retain_records(
                ev.retain_eval, ev_sets["forget"] if ev_sets is not None else None,
                f"the same data, split and limit as this run's evaluations: {ev_data}, {ev_split}, --eval-limit "
                f"{ev.limit}")
            warn_protocol_mismatch(ev.retain_eval, config.format.resolved_protocol())
    check_data_dir(data_dir, [x for x in (forget, retain) if isinstance(x, str)] + [ev_data and f"{ev_data}:{ev_split}"])
    resolved = replace(
        config, method_config=asdict(mcfg), train=cfg, format=config.format.resolved(),
        forget=_spec_or_count(forget), retain=_spec_or_count(retain),
        idk_file=idk_file if cls.uses_idk else None,
        eval=replace(ev, every_epoch=eval_every_epoch, data=ev_data, split=ev_split))
    record = {**resolved.to_dict(), "n_forget": len(forget_items),
              "n_retain": len(retain_items) if retain_items else 0}
    resolved.forget, resolved.retain = forget, retain  # the run reads the items given, run.json names them
    return UnlearnPlan(resolved, cls, mcfg, forget_items, retain_items, refusals, sel_key, sel_score, ev_extra,
                       evaluator, retain_records, record)


def run_unlearn(config: UnlearnConfig | str, *args, out: str | Path | None = None, evaluator: Callable | None = None,
                reference_cache: str | Path | None = None, overwrite: bool = False, resume: bool = False,
                **settings) -> dict:
    """Unlearn with the settings ``config`` (an :class:`UnlearnConfig`); write the model, tokenizer and
    ``run.json`` to ``out``. ``run_unlearn(config, out)``, or the keyword convenience
    ``run_unlearn(model, method, forget, out, retain=..., options=..., cfg=..., ...)`` (:func:`plan_unlearning`).

    ``evaluator`` (default ``obliviate.evaluate.evaluate_tofu``) runs at the start and after every epoch with
    ``eval.every_epoch``; ``eval.select`` (e.g. ``forget_quality``) keeps the best epoch's weights.
    ``reference_cache``: a folder to store / reuse the cached reference log-likelihoods in (a sweep's points
    share it). Returns the run record.
    """
    if isinstance(config, UnlearnConfig):
        if len(args) > 1:
            raise TypeError("run_unlearn(config, out): too many positional arguments")
        out = args[0] if args else out
        plan = plan_unlearning(config, evaluator=evaluator, **settings)
    else:
        if len(args) < 2:
            raise TypeError("run_unlearn(model, method, forget, out, ...): give the method and the forget set")
        method, forget, *rest = args
        out = rest[0] if rest else out
        plan = plan_unlearning(config, method, forget, evaluator=evaluator, **settings)
    from .finetune import resume_point

    ck, plan.cfg = resume_point(out, plan.cfg, resume)
    c = plan.settings
    from .models import check_model_spec

    check_model_spec(c.model)  # a bad --model is refused before --overwrite empties anything
    inputs = {"--model": c.model, "--retain-eval": c.eval.retain_eval, "--forget": spec_path(c.forget),
              "--retain": spec_path(c.retain), "--idk-file": c.idk_file, "--data-dir": c.data_dir}
    with Run("unlearn", out, plan.config, seed=plan.cfg.seed, inputs=inputs, overwrite=overwrite, resume=resume,
             resumable=True, checkpoint=ck, legacy=legacy_values(UnlearnConfig)) as run:
        net, tok, fmt, prep = _load_and_prepare(run, plan, reference_cache=reference_cache)
        run.start()  # the checks that need the model passed (an RMU layer it lacks): now --out is prepared
        _train_select_save(run, plan, net, tok, fmt, prep, resume=ck is not None)
    return run.data


def _load_and_prepare(run: Run, plan: UnlearnPlan, net=None, tok=None, reference_cache=None):
    """Load the model (unless given) and build the method's step and references (what may still refuse the run)."""
    from .models import check_max_length, load_model

    c = plan.settings
    if net is None:
        t0 = time.time()
        net, tok = load_model(c.model, dtype=TRAIN_DTYPE)  # fp32 master weights; bf16 autocast on CUDA (train)
        run.timing("load_model_s", time.time() - t0)
    check_max_length(net, c.format.max_length)
    fmt = c.format.formatter(tok)
    t0 = time.time()
    prep = prepare_unlearning(net, tok, c.method, plan.mcfg, plan.forget_items, plan.retain_items, formatter=fmt,
                              tcfg=plan.cfg, refusals=plan.refusals, reference=c.reference,
                              reference_cache=reference_cache)  # e.g. an RMU layer the model lacks
    run.timing("prepare_s", time.time() - t0)
    run.update(setup=prep.info, robust_active=plan.robust.active())
    return prep.model, tok, fmt, prep


def _epoch_evaluation(run: Run, plan: UnlearnPlan, tok, fmt, averager, best: dict, evals: list) -> Callable:
    """``train``'s ``on_epoch_end``: the TOFU evaluation (written to ``eval/<tag>/``) and the best-epoch
    bookkeeping of ``--select``."""
    c = plan.settings

    def on_epoch_end(epoch: int, m) -> dict:
        tag = "initial" if epoch < 0 else f"epoch-{epoch + 1}"
        ctx = averager.swapped_in(m) if averager is not None else contextlib.nullcontext()
        with ctx:
            ev = c.eval
            summary, records = plan.evaluator(m, tok, data=ev.data, split=ev.split, data_dir=c.data_dir,
                                              limit=ev.limit, retain_records=plan.retain_records,
                                              formatter=fmt, progress=plan.cfg.progress, **plan.ev_extra)
            run.write_json(f"eval/{tag}/summary.json", summary)
            run.write_jsonl(f"eval/{tag}/items.jsonl", records)
            evals.append({"epoch": epoch + 1, **{k: summary.get(k) for k in EPOCH_HEADLINE if k in summary}})
            if plan.select and epoch >= 0:
                v = summary.get(plan.sel_key)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    score = plan.sel_score(float(v))
                    if not best or score > best["score"]:
                        best.update(epoch=epoch + 1, value=float(v), score=score, params={
                            n: p.detach().cpu().clone() for n, p in m.named_parameters() if p.requires_grad})
        return summary

    return on_epoch_end


def _train_select_save(run: Run, plan: UnlearnPlan, net, tok, fmt, prep, resume: bool):
    """Train (with the per-epoch evaluation), keep the selected / averaged / final weights, save them (when the
    run has a folder); returns the model."""
    from .models import save_model

    cfg, robust, objective = plan.cfg, plan.robust, prep.objective
    step_fn = wrap_step(objective, robust, seed=cfg.seed)
    averager = WeightAveraging(robust.avg_start, robust.avg_every) if robust.weight_avg else None
    best: dict = {}
    evals: list[dict] = []
    on_epoch_end = _epoch_evaluation(run, plan, tok, fmt, averager, best, evals) if plan.eval_every_epoch else None

    def step_end(step: int, model) -> None:
        objective.on_step_end(step)
        if averager is not None:
            averager.on_step_end(step, model)

    run_state = _RunState(objective, step_fn, averager, best, evals)
    try:
        history = train(net, prep.batches, step_fn, cfg, out_dir=run.dir, resume=resume, on_epoch_end=on_epoch_end,
                        desc=f"unlearn[{plan.settings.method}]", on_step_end=step_end, extra_state=run_state,
                        on_history=run.history_so_far)
    except NonFiniteLoss as e:
        msg = _non_finite_message(e, run.dir)
        run.update(error=msg, failed_at={"epoch": e.epoch + 1, "step": e.step + 1, "logs": e.logs})
        run.save(status="failed")
        raise ObliviateError(msg) from None

    # -- final weights: the selected epoch, else the weight average, else the last epoch -------------------
    selection = _apply_selection(net, plan, best)
    avg_note = None
    if not (plan.select and best) and averager is not None and not averager.apply(net):
        avg_note = (f"the run ended before step {robust.avg_start} (--avg-start), so nothing was averaged; "
                    "the final weights are saved (lower --avg-start)")
        print(f"note: --weight-avg: {avg_note}", file=sys.stderr)
    if run.writes:
        t1 = time.time()
        save_model(net, tok, run.dir)
        run.timing("save_model_s", time.time() - t1)
    run.timing("train_s", history["train_seconds"])
    run.set_history(history)
    run.update(
        final_loss=history["final_loss"], selection=selection, evaluations=evals or None,
        method_state=objective.extra_state() or None,
        weight_averaging=({**averager.state(), **({"note": avg_note} if avg_note else {})}
                          if averager is not None else None),
        prompt_format={"style": fmt.style, "system_prompt": plan.settings.format.system_prompt},
    )
    return net


def _apply_selection(net, plan: UnlearnPlan, best: dict) -> dict | None:
    """Copy the best epoch's weights back into ``net`` (``--select``); run.json's ``selection``."""
    if not plan.select:
        return None
    if not best:
        return {"key": plan.sel_key, "spec": plan.select, "best_epoch": None,
                "note": f"no epoch had a finite {plan.sel_key}; the final weights are kept"}
    named = dict(net.named_parameters())
    with torch.no_grad():
        for n, v in best["params"].items():
            named[n].copy_(v.to(named[n].device, named[n].dtype))
    return {"key": plan.sel_key, "spec": plan.select, "best_epoch": best["epoch"], "value": best["value"]}


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


def _spec_or_count(x):
    """run.json's record of a data set: its spec, or (items given in memory) how many there were."""
    return x if x is None or isinstance(x, str) else f"<{len(x)} items in memory>"


def _load_set(role: str, spec, data_dir: str | None):
    if not isinstance(spec, str):  # items given in memory (the Python API)
        if not spec:
            raise ObliviateError(f"the {role} set is empty")
        return list(spec)
    try:
        items = load_items(spec, data_dir=data_dir)
    except ObliviateError as e:
        raise ConfigError(role, f"{spec}: {e}") from None
    if not items:
        raise ConfigError(role, f"{spec}: the {role} set is empty")
    return items


def _non_finite_message(e: NonFiniteLoss, out: Path | None) -> str:
    bad = [k for k, v in e.logs.items() if isinstance(v, float) and not math.isfinite(v)]
    terms = ", ".join(f"{k}={v}" for k, v in e.logs.items()) or "no per-term logs"
    ck = latest_checkpoint(out) if out is not None else None
    if ck is not None:
        kept = (f"the last good checkpoint ({ck.name}, after epoch {int(ck.name.split('-')[1]) + 1}) is kept in "
                f"{ck.parent}; lower --lr and continue with --resume (other method weights need a new --out)")
    else:
        kept = "no epoch had finished, so there is no checkpoint and no model was written; lower --lr and rerun"
    which = f"non-finite term(s): {', '.join(bad)}" if bad else "the total loss is non-finite"
    return (f"unlearning stopped at epoch {e.epoch + 1}, step {e.step + 1}: {which} ({terms}); {kept}")


def add_unlearn_parser(subparsers):
    """Add ``obliviate unlearn`` to a CLI's subparsers (kept for callers of the old place; the command lives in
    ``obliviate.cli.unlearn``)."""
    from .cli.unlearn import add_parser

    return add_parser(subparsers)


# `obliviate.unlearn(...)` runs obliviate.api.unlearn (see _callable.py)
_make_callable(__name__)
