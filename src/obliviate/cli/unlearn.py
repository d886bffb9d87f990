"""``obliviate unlearn``: make a fine-tuned model forget a forget set with one of the registered methods."""

from __future__ import annotations

import sys

from ..errors import ObliviateError, refuse_unused
from ._common import out_arg


def add_parser(subparsers):
    p = subparsers.add_parser(
        "unlearn", help="unlearn a forget set with a method (npo, grad_diff, rmu, …; see `obliviate ls methods`)",
        description="Unlearn a forget set. Method options go last as KEY=VALUE (e.g. beta=0.2 retain_loss=kl); "
                    "`obliviate ls methods --json` lists each method's options and defaults.",
    )
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a run.json (repeat that run), or a TOML / YAML file with its config's keys; the flags "
                        "given override its settings")
    p.add_argument("--model", help="built-in name, local folder or hub id (the fine-tuned target); required")
    p.add_argument("--method", help="unlearning method (obliviate ls methods); required")
    p.add_argument("--forget", help="forget set spec, e.g. synthetic:forget10, tofu:forget10; required")
    p.add_argument("--retain", default=None, help="retain set spec, e.g. synthetic:retain90 (methods with a retain term)")
    p.add_argument("--out", required=True, type=out_arg)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--card", action="store_true", help="write a Hugging Face model card (README.md) next to the model")
    p.add_argument("options", nargs="*", metavar="KEY=VALUE", help="method options (e.g. beta=0.2)")
    g = p.add_argument_group("training (defaults: the method's paper settings; TOFU: batch 32, 1 warm-up epoch)")
    from ..config import TrainConfig, add_config_args
    from ._common import TRAIN_FLAGS

    # None: not given, so the method's paper setting applies (unlearn.default_train_config)
    add_config_args(g, TrainConfig, TRAIN_FLAGS, {name: None for name in TRAIN_FLAGS})
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
    g.add_argument("--eval-every-epoch", action="store_true",
                   help="evaluation at the start and after each epoch: TOFU's, or MUSE's on a MUSE-format --forget")
    g.add_argument("--retain-eval", default=None, help="the retain model's eval folder/log (for forget quality)")
    g.add_argument("--select", default=None,
                   help="keep the best epoch by this summary key: forget_quality, model_utility, … (max:KEY / min:KEY)")
    g.add_argument("--eval-data", default=None,
                   help="synthetic or tofu; muse-news, muse-books or synthetic-news for MUSE (default: from --forget)")
    g.add_argument("--eval-split", default=None, help="forget01|forget05|forget10 (default: from --forget)")
    g.add_argument("--eval-limit", type=int, default=None,
                   help="evaluate only the first N items of each set (forget, retain, holdout, real authors, world facts)")
    p.add_argument("--style", default="chat", help="prompt style: chat (default), plain, llama2")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue from the last per-epoch checkpoint in --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from dataclasses import replace

    from ..methods.base import parse_options
    from ..robust import RobustConfig
    from ..unlearn import default_train_config, run_unlearn

    for flag in ("model", "method", "forget"):
        if not getattr(args, flag):
            raise ObliviateError(f"unlearn needs --{flag} (or a --config that sets it)")
    given = parse_options(args.options)
    for flag in ("alpha", "beta", "gamma"):
        v = getattr(args, flag)
        if v is not None:
            if flag in given:
                raise ObliviateError(f"--{flag} and the option {flag}= were both given; keep one")
            given[flag] = v
    options = {**getattr(args, "config_options", {}), **given}  # the flags override a --config's options
    overrides = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                     warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, seed=args.seed,
                     lora=args.lora or None, lora_r=args.lora_r, grad_checkpointing=args.grad_checkpointing or None,
                     progress=not args.quiet)
    cfg = default_train_config(args.method, **overrides)
    cfg = replace(cfg, **getattr(args, "config_train", {}))  # settings of a --config that have no flag
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
    set_ = {k: v for k, v in (("smooth_sigma", args.smooth_sigma), ("avg_start", args.avg_start),
                               ("avg_every", args.avg_every)) if v is not None}
    robust = RobustConfig(sam_rho=args.sam_rho, smooth_n=args.smooth_n, grad_penalty=args.grad_penalty,
                          weight_avg=args.weight_avg, **set_)
    rec = run_unlearn(
        args.model, args.method, args.forget, args.out, retain=args.retain, options=options, cfg=cfg,
        robust=robust, data_dir=args.data_dir, style=args.style, system_prompt=args.system_prompt,
        max_length=args.max_length, idk_file=args.idk_file, eval_every_epoch=args.eval_every_epoch,
        retain_eval=args.retain_eval, select=args.select, eval_data=args.eval_data, eval_split=args.eval_split,
        eval_limit=args.eval_limit, overwrite=args.overwrite, resume=args.resume,
        reference=getattr(args, "config_reference", "cached"),
    )
    msg = f"wrote {args.out} (final loss {rec['final_loss']:.4f}, {rec['timings']['total_s']:.0f}s)"
    s = rec.get("selection") or {}
    if s.get("best_epoch") is not None:
        msg += f"; kept epoch {s['best_epoch']} ({s['key']} = {s['value']:.4g})"
    print(msg)
    if s and s.get("best_epoch") is None:
        print(f"note: --select {s['spec']}: {s['note']}", file=sys.stderr)
    if args.card:  # a Hugging Face model card next to the model
        from pathlib import Path

        from ..report.card import write_card

        print(f"wrote {write_card(args.out, Path(args.out) / 'README.md')}")
    return 0


# run.json's config keys that are not settings (counts of what was read)
_RECORDED = {"n_forget", "n_retain"}


def config_defaults(path) -> dict:
    """The flags' defaults from ``--config FILE``: a run.json's resolved config (or a TOML / YAML file with its
    keys), so that the same command line repeats the run and any flag given overrides one setting."""
    from dataclasses import fields

    from ..config import load_config_file, unknown_keys
    from ..robust import RobustConfig
    from ..train import TrainConfig

    c = load_config_file(path, "unlearn")
    top = {"model", "method", "method_config", "forget", "retain", "data_dir", "style", "system_prompt",
           "max_length", "train", "robust", "reference", "idk_file", "eval"}
    unknown_keys(c, top | _RECORDED, path)
    d = {k: c[k] for k in ("model", "method", "forget", "retain", "data_dir", "style", "system_prompt",
                           "max_length", "idk_file") if k in c}
    d["config_options"] = dict(c.get("method_config") or {})
    if "reference" in c:
        d["config_reference"] = c["reference"]
    t = dict(c.get("train") or {})
    unknown_keys(t, {f.name for f in fields(TrainConfig)}, path, "train.")
    d.update({k: t[k] for k in ("epochs", "lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "seed")
              if k in t})
    if t.get("lora"):
        d.update(lora=True, lora_r=t.get("lora_r"))
    if t.get("grad_checkpointing"):
        d["grad_checkpointing"] = True
    if "progress" in t:
        d["quiet"] = not t["progress"]
    d["config_train"] = {k: t[k] for k in ("max_grad_norm", "lora_alpha", "checkpoint_every_epoch", "extra")
                         if k in t}
    r = dict(c.get("robust") or {})
    unknown_keys(r, {f.name for f in fields(RobustConfig)}, path, "robust.")
    base = RobustConfig()
    d.update({k: v for k, v in r.items() if v != getattr(base, k)})  # a default would read as "given"
    e = dict(c.get("eval") or {})
    unknown_keys(e, {"every_epoch", "data", "split", "limit", "retain_eval", "select"}, path, "eval.")
    if e.get("every_epoch") or e.get("select"):
        d.update(eval_every_epoch=bool(e.get("every_epoch")), eval_data=e.get("data"), eval_split=e.get("split"),
                 eval_limit=e.get("limit"), retain_eval=e.get("retain_eval"), select=e.get("select"))
    return d
