"""``obliviate meta-eval``'s library entry: :func:`run_meta_eval` builds every control model of a pools file,
evaluates and attacks it, and writes, per metric, faithfulness, R, Q, robustness and overall with bootstrap
intervals (``table.json``, ``table.md``, ``report.html`` + ``report.md``) and run.json (its ``config``: the
:class:`~obliviate.config.MetaEvalConfig`, and ``pools``: the pools file as read)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

FIELDS = ("faithfulness", "R", "Q", "robustness", "overall")
# Values of each model shown in table.md's model list (all of them are in table.json).
MODEL_COLUMNS = ("forget_Q_A_Prob", "forget_Truth_Ratio_prob_mean", "forget_truth_ratio", "forget_quality",
                 "extraction_strength", "model_utility")
MUSE_MODEL_COLUMNS = ("verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc", "privleak")
# Settings a --resume may change (config key -> flag): they change the table or the speed, not a model.
RESUME_MAY_CHANGE = {"keys": "--keys", "n_boot": "--n-boot", "seed": "--seed", "workers": "--workers",
                     "backend": "--backend", "progress": "--quiet", "pools_file": "the pools file's path"}


def run_meta_eval(config=None, *args, out: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                  **settings) -> dict:
    """Run (``resume``: continue) the meta-evaluation of a pools file into ``out``: ``run_meta_eval(
    MetaEvalConfig(pools_file=...), out)``, or the keyword convenience ``run_meta_eval(pools_file, out, keys=...,
    n_boot=..., seed=..., workers=..., backend=..., progress=...)``. Returns ``{"result": table.json's dict,
    "markdown": table.md's text}``."""
    from ..config import MetaEvalConfig, config_of_call
    from ..errors import ObliviateError
    from ..runtime.run import Run
    from .pools import LEGACY, PoolRunner, load_pools
    from .scores import meta_table

    config, out = config_of_call(MetaEvalConfig, config, args, settings, ("out",), out, call="run_meta_eval",
                                 first="pools_file")
    config.validate()
    if out is None:
        raise ObliviateError("run_meta_eval: give the output folder (out)")
    keys = list(config.keys) if config.keys else None
    cfg = load_pools(config.pools_file)
    # the pools file's absolute path: --config run.json reads the same file from any working directory
    record = {**config.to_dict(), "pools_file": os.path.abspath(config.pools_file), "pools": cfg}
    inputs = {"--data-dir": cfg["data_dir"], "the base model": cfg["model"],
              **{f"unlearned {m['name']}": m["model_dir"] for m in cfg["models"] if m["role"] == "unlearned"}}
    out = Path(out)
    # What a --resume continues from: the stages finished so far (index.json) and any model being fine-tuned.
    # Without it Run would start the folder afresh.
    kept = [n for n in ("index.json", "models") if (out / n).exists()]
    resume = resume and (out / "run.json").is_file()  # --resume of a meta-eval not yet started: it starts
    with Run("meta-eval", out, record, seed=config.seed, inputs=inputs, overwrite=overwrite, resume=resume,
             resumable=True, may_change=RESUME_MAY_CHANGE, checkpoint=" and ".join(kept) or None,
             legacy=LEGACY) as run:
        run.start()
        runner = PoolRunner(cfg, out, progress=config.progress, log=lambda s: print(s, file=sys.stderr))
        before = runner.finished()
        t0 = time.time()
        if config.workers == 1 and config.backend == "local":
            runner.run()
        else:
            from .parallel import run_parallel

            run_parallel(out, config.workers, backend=config.backend, progress=config.progress)
        run.timing("models_s", time.time() - t0)
        after = runner.finished()
        missing = [f"{n}: {s}" for n, s in runner.pending()]
        if missing:
            raise ObliviateError(f"{len(missing)} stage(s) did not finish ({', '.join(missing[:4])}"
                                 f"{', ...' if len(missing) > 4 else ''}); rerun with --resume")
        table = runner.table()
        rows = meta_table(table, keys, cfg["retain_control"], n_boot=config.n_boot, seed=config.seed)
        result = {"metrics": rows, "models": table, "retain_control": cfg["retain_control"],
                  "n_boot": config.n_boot, "seed": config.seed}
        run.write_json("table.json", result)
        md = markdown(rows, table, cfg)
        run.write_text("table.md", md)
        from ..report.html import write_report

        write_report([out], out / "report.html", title=f"meta-evaluation: {cfg['model']} on {_data(cfg)}")
        run.update(ran=len(after - before), skipped=len(before),
                   meta={r["key"]: {f: r[f] for f in FIELDS} for r in rows})
    return {"result": result, "markdown": md}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _cell(row: dict, f: str) -> str:
    v, ci = row[f], (row.get("ci") or {}).get(f) or {}
    if v is None:
        return "–"
    return f"{v:.3f} [{_fmt(ci.get('lo'))}, {_fmt(ci.get('hi'))}]" if ci.get("lo") is not None else f"{v:.3f}"


def _data(cfg: dict) -> str:
    """The pools' data in words: the TOFU family and split, or the MUSE corpus."""
    return f"{cfg['data']} {cfg['split']}" if cfg.get("split") else f"{cfg['data']} (MUSE)"


def markdown(rows: list[dict], table: list[dict], cfg: dict) -> str:
    """table.md: the meta-evaluation table (value [95 % interval]), then the models and their values."""
    columns = MUSE_MODEL_COLUMNS if cfg.get("benchmark") == "muse" else MODEL_COLUMNS
    lines = [f"Meta-evaluation of {len(rows)} metrics over {len(table)} models "
             f"(base {cfg['model']}, data {_data(cfg)}; retain control {cfg['retain_control']}).",
             "", "| metric | " + " | ".join(FIELDS) + " | threshold | P / N / called unlearned |",
             "|---|" + "---|" * (len(FIELDS) + 2)]
    for r in rows:
        lines.append(f"| {r['key']} | " + " | ".join(_cell(r, f) for f in FIELDS)
                     + f" | {_fmt(r['threshold'])} | {r['n_positive']} / {r['n_negative']} / {r['n_called_unlearned']} |")
    lines += ["", "| model | role | lr | epochs | " + " | ".join(columns) + " |",
              "|---|---|---|---|" + "---|" * len(columns)]
    for m in table:
        s = m["summary"] or {}
        lr = "" if m["lr"] is None else f"{m['lr']:g}"
        lines.append(f"| {m['name']} | {m['role']} | {lr} | {m['epochs'] or ''} | "
                     + " | ".join(_fmt(s.get(k)) for k in columns) + " |")
    return "\n".join(lines) + "\n"
