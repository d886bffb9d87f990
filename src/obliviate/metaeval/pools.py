"""Control-model pools for meta-evaluation: the pools file, and the resumable runner that builds, evaluates
and attacks every model of it.

A pools file (YAML; every key but ``model`` and ``data`` has a default)::

    model: tiny-llama                   # the base model every pool model is fine-tuned from
    data: synthetic?n_authors=4         # a TOFU-format family, or a MUSE-format corpus, and its options
    split: forget10                     # forget split (its retain split: retain90); TOFU only
    data_dir: null
    style: chat                         # prompt format (finetune / eval --style); TOFU only
    max_length: null                    # tokens of a training row (a QA pair; MUSE: a text chunk); default 512
    grid: {lr: [1.0e-5, 3.0e-5], epochs: [5, 10]}
    train: {batch_size: 8, seed: 0}     # any other TrainConfig field
    positives: [full, para]             # models that know the forget facts
    negatives: [retain, pert]           # models that never saw them
    retain_control: null                # the retain model whose relearning Δ is R's reference
                                        # (default: the first model of kind `retain`)
    unlearned: {}                       # name: model folder (e.g. obliviate unlearn outputs), attacked too
    eval: {limit: null, utility_limit: null, generation: true, gradnorm: true, batch_size: 32,
           fluency_classifier: null}     # a gibberish classifier (folder or hub id): forget_fluency (fluency.py)
    attacks:
      relearn: {fraction: 0.5, lr: 1.0e-5, epochs: 1, batch_size: 8, seed: 0}   # null: no relearning
      quantize: {method: auto, block_size: 64}                                  # null: no quantization

Built-in kinds (open-unlearning's published control pools), with F = family, R = the split's retain split:
``full`` = F:full; ``para`` = F:R + F:split?answers=paraphrased; ``retain`` = F:R;
``pert`` = F:R + F:split?answers=perturbed (their ``neg_..._retain90_forget10_pert`` models). A kind may also
be ``{name: data spec}``. Each kind is fine-tuned at every (lr, epochs) of the grid: model ``KIND_lrLR_epE``.

MUSE pools: ``data`` names a MUSE-format corpus (``synthetic-news?n_forget=4``, ``muse-news`` with ``data_dir``).
Built-in kinds, as MUSE's own models: ``target`` = C:raw/forget + C:raw/retain1 (positive), ``retrain`` =
C:raw/retain1 (negative), fine-tuned as ``obliviate finetune`` trains on text (MUSE's chunked corpus, every
token scored); evaluated by MUSE's evaluation (``muse_eval.evaluate_muse``, protocol ``muse``: VerbMem, KnowMem,
PrivLeak with the retain control as the retrain reference); the relearning attack trains on the first
``fraction`` of the forget articles, as chunks. ``eval`` takes ``limit`` and ``batch_size`` only.

The runner's output folder::

    run.json  index.json  table.json  table.md  report.html  report.md
    locks/NAME.lock         held by the process building model NAME (parallel workers: metaeval/parallel.py)
    models/NAME/            obliviate finetune output (skipped when its run.json says done)
    evals/NAME/items.jsonl  TOFU (or MUSE) records; evals/NAME/relearned/, evals/NAME/quantized/ after each attack

Every stage writes its result atomically and last, so a rerun after an interruption (``--resume``) redoes
only the stages whose result is absent; ``index.json`` records what each stage did and how long it took.
Summaries are recomputed from the records at table time, with the retain control's records as the
forget-quality / PrivLeak reference (MUSE: the retrain model's PrivLeak AUC).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import time
from dataclasses import fields
from pathlib import Path

from ..errors import ObliviateError
from ..io import atomic_write_json, atomic_write_jsonl, read_json

KINDS = ("full", "para", "retain", "pert")
MUSE_KINDS = ("target", "retrain")
# the built-in kinds, default pools and the kind whose first model is the default retain control, per benchmark
BENCH = {"tofu": {"kinds": KINDS, "positives": ["full", "para"], "negatives": ["retain", "pert"], "retain": "retain"},
         "muse": {"kinds": MUSE_KINDS, "positives": ["target"], "negatives": ["retrain"], "retain": "retrain"}}
MUSE_PROTOCOL = "muse"  # MUSE's own encoding (BOS everywhere), as `obliviate eval --benchmark muse-*` defaults to
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
TOP_KEYS = ("model", "data", "split", "data_dir", "style", "max_length", "grid", "train", "positives", "negatives",
            "retain_control", "unlearned", "eval", "attacks")
EVAL_DEFAULTS = {"limit": None, "utility_limit": None, "generation": True, "gradnorm": True, "batch_size": 32,
                 "fluency_classifier": None}
MUSE_EVAL_KEYS = ("limit", "batch_size")  # MUSE's evaluation has no utility sets, no GradNorm, fixed generations
# run.json of a meta-eval started before MUSE pools: the values its pools implicitly had (a --resume compares)
LEGACY = {"pools.benchmark": "tofu", "pools.max_length": None}
RELEARN_DEFAULTS = {"fraction": 0.5, "lr": 1e-5, "epochs": 1, "batch_size": 8, "seed": 0}
QUANTIZE_DEFAULTS = {"method": "auto", "block_size": 64}


def _err(path, msg: str) -> ObliviateError:
    return ObliviateError(f"{path}: {msg}")


@contextlib.contextmanager
def _flock(path: Path, blocking: bool = True):
    """An exclusive ``flock`` on ``path``; yields True when held, False when ``blocking`` is off and another
    process holds it. The kernel releases it when the holder dies, even by SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _with_option(spec: str, option: str) -> str:
    return f"{spec}&{option}" if "?" in spec else f"{spec}?{option}"


def pools_benchmark(data: str) -> str:
    """``muse`` when ``data`` is a MUSE-format corpus (muse_eval.muse_corpus), else ``tofu``."""
    from ..muse_eval import muse_corpus

    return "muse" if muse_corpus(data) is not None else "tofu"


def kind_data(kind: str, data: str, split: str | None) -> str:
    """The training data spec of a built-in kind (MUSE's when ``data`` is a MUSE corpus; ``split`` is TOFU's)."""
    family, _, query = data.partition("?")
    q = f"?{query}" if query else ""
    if kind in MUSE_KINDS:  # MUSE's target saw forget + retain articles, its retrain model the retain ones
        retain = f"{family}:raw/retain1{q}"
        return {"target": f"{family}:raw/forget{q}+{retain}", "retrain": retain}[kind]
    retain = f"{family}:{RETAIN_OF[split]}{q}"
    forget = f"{family}:{split}{q}"
    return {"full": f"{family}:full{q}", "retain": retain,
            "para": f"{retain}+{_with_option(forget, 'answers=paraphrased')}",
            "pert": f"{retain}+{_with_option(forget, 'answers=perturbed')}"}[kind]


def _number(path, where: str, v, integer: bool = False):
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or v <= 0 or (isinstance(v, float) and not math.isfinite(v)):
        raise _err(path, f"{where}: {v!r} must be a {'whole ' if integer else ''}number > 0")
    return v


def _section(path, cfg: dict, name: str, defaults: dict) -> dict | None:
    if name in cfg and cfg[name] is None:
        return None
    given = cfg.get(name) or {}
    if not isinstance(given, dict):
        raise _err(path, f"{name}: must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise _err(path, f"{name}: unknown key {unknown[0]!r}; valid keys: {', '.join(defaults)}")
    return {**defaults, **given}


def load_pools(path: str | Path) -> dict:
    """The pools file, checked and with every default filled in; one-line errors naming the file and key."""
    import yaml

    from ..data import check_data_dir, load_items
    from ..models import check_model_spec
    from ..train import TrainConfig
    from .quantize import resolve_method

    path = Path(path)
    if not path.is_file():
        raise ObliviateError(f"pools file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise _err(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _err(path, "must be a YAML mapping (model:, data:, positives:, negatives:, ...)")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise _err(path, f"unknown key {unknown[0]!r}; valid keys: {', '.join(TOP_KEYS)}")
    for k in ("model", "data"):
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise _err(path, f"{k}: required (a model spec / a TOFU family such as synthetic?n_authors=4 or a MUSE "
                             "corpus such as synthetic-news?n_forget=4)")
    if ":" in raw["data"]:
        raise _err(path, f"data: {raw['data']!r} is a data spec; give the family or corpus (synthetic?n_authors=4, "
                         "synthetic-news?n_forget=4): the pools choose the splits")
    bench = pools_benchmark(raw["data"])
    if bench == "muse":
        for k in ("split", "style"):  # MUSE trains and evaluates raw text: no split to choose, no prompt format
            if k in raw:
                raise _err(path, f"{k}: applies to TOFU pools; {raw['data']} is a MUSE corpus (its forget and "
                                 "retain articles are raw/forget and raw/retain1, trained and scored as raw text)")
    cfg = {"model": raw["model"], "data": raw["data"], "benchmark": bench,
           "split": raw.get("split", "forget10") if bench == "tofu" else None,
           "data_dir": raw.get("data_dir"), "style": raw.get("style", "chat") if bench == "tofu" else None,
           "max_length": raw.get("max_length")}
    if bench == "tofu" and cfg["split"] not in RETAIN_OF:
        raise _err(path, f"split: {cfg['split']!r}; valid: {', '.join(RETAIN_OF)}")
    if cfg["max_length"] is not None:
        _number(path, "max_length", cfg["max_length"], integer=True)
    check_model_spec(cfg["model"])

    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or set(grid) - {"lr", "epochs"}:
        raise _err(path, "grid: a mapping with lr: [..] and epochs: [..]")
    lrs = grid.get("lr", [1e-5])
    eps = grid.get("epochs", [5])
    lrs, eps = (lrs if isinstance(lrs, list) else [lrs]), (eps if isinstance(eps, list) else [eps])
    cfg["grid"] = {"lr": [_number(path, "grid.lr", float(v) if isinstance(v, str) else v) for v in lrs],
                   "epochs": [_number(path, "grid.epochs", v, integer=True) for v in eps]}
    train = raw.get("train") or {}
    valid = [f.name for f in fields(TrainConfig) if f.name not in ("lr", "epochs", "extra")]
    bad = sorted(set(train) - set(valid))
    if bad:
        raise _err(path, f"train: unknown key {bad[0]!r}; valid keys: {', '.join(valid)} (lr and epochs: grid)")
    cfg["train"] = {"checkpoint_every_epoch": False, "progress": False, **train}

    models: list[dict] = []
    builtin = BENCH[bench]["kinds"]
    for role in ("positives", "negatives"):
        kinds = raw.get(role, BENCH[bench][role])
        if isinstance(kinds, dict):
            kinds = [{k: v} for k, v in kinds.items()]
        if not isinstance(kinds, list) or not kinds:
            raise _err(path, f"{role}: a non-empty list of kinds ({', '.join(builtin)}) or {{name: data spec}}")
        for k in kinds:
            if isinstance(k, str):
                if k not in builtin:
                    raise _err(path, f"{role}: unknown kind {k!r}; built-in kinds of {bench.upper()} pools: "
                                     f"{', '.join(builtin)} (or {{name: data spec}})")
                name, spec = k, kind_data(k, cfg["data"], cfg["split"])
            elif isinstance(k, dict) and len(k) == 1 and all(isinstance(x, str) for x in (*k, *k.values())):
                (name, spec), = k.items()
            else:
                raise _err(path, f"{role}: entry {k!r} must be a kind name or {{name: data spec}}")
            if "/" in name or not name:
                raise _err(path, f"{role}: kind name {name!r} must be a plain name")
            check_data_dir(cfg["data_dir"], [spec])
            load_items(spec, data_dir=cfg["data_dir"])  # a bad data spec fails now, not after hours
            for lr in cfg["grid"]["lr"]:
                for ep in cfg["grid"]["epochs"]:
                    models.append({"name": f"{name}_lr{lr:g}_ep{ep}", "role": role[:-1], "kind": name,
                                   "data": spec, "lr": lr, "epochs": ep})
    unlearned = raw.get("unlearned") or {}
    if not isinstance(unlearned, dict):
        raise _err(path, "unlearned: a mapping name: model folder")
    for name, folder in unlearned.items():
        check_model_spec(str(folder))
        models.append({"name": str(name), "role": "unlearned", "kind": "unlearned", "model_dir": str(folder)})
    names = [m["name"] for m in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _err(path, f"model name {dup[0]!r} appears twice")
    cfg["models"] = models
    for m in models:
        if m["role"] != "unlearned":
            TrainConfig(lr=m["lr"], epochs=m["epochs"], **cfg["train"]).validate()

    rc = raw.get("retain_control")
    if rc is None:
        rc = next((m["name"] for m in models if m["kind"] == BENCH[bench]["retain"]), None)
    elif rc not in names:
        raise _err(path, f"retain_control: {rc!r} is not a pool model; models: {', '.join(names)}")
    cfg["retain_control"] = rc
    cfg["eval"] = _section(path, raw, "eval", EVAL_DEFAULTS)
    if cfg["eval"] is None:
        raise _err(path, "eval: must be a mapping (every pool model is evaluated)")
    if bench == "muse":
        tofu_only = sorted(k for k in raw.get("eval") or {} if k not in MUSE_EVAL_KEYS)
        if tofu_only:
            raise _err(path, f"eval.{tofu_only[0]}: applies to TOFU pools; MUSE pools take "
                             f"{', '.join(MUSE_EVAL_KEYS)}")
    clf = cfg["eval"]["fluency_classifier"]
    if clf is not None:
        from .fluency import classifier_kind

        try:
            classifier_kind(clf)
        except ObliviateError as e:
            raise _err(path, f"eval.fluency_classifier: {e}") from None
        if not cfg["eval"]["generation"]:
            raise _err(path, "eval.fluency_classifier: fluency scores the greedy answers; it needs generation: true")
    attacks = raw.get("attacks") or {}
    if not isinstance(attacks, dict) or set(attacks) - {"relearn", "quantize"}:
        raise _err(path, "attacks: a mapping with relearn: and quantize:")
    cfg["attacks"] = {"relearn": _section(path, attacks, "relearn", RELEARN_DEFAULTS),
                      "quantize": _section(path, attacks, "quantize", QUANTIZE_DEFAULTS)}
    rl = cfg["attacks"]["relearn"]
    if rl is not None:
        if not (isinstance(rl["fraction"], (int, float)) and 0 < rl["fraction"] <= 1):
            raise _err(path, f"attacks.relearn.fraction: {rl['fraction']!r} must be in (0, 1]")
        TrainConfig(lr=float(rl["lr"]), epochs=rl["epochs"], batch_size=rl["batch_size"], seed=rl["seed"]).validate()
    if cfg["attacks"]["quantize"] is not None:
        resolve_method(cfg["attacks"]["quantize"]["method"])
        _number(path, "attacks.quantize.block_size", cfg["attacks"]["quantize"]["block_size"], integer=True)
    return cfg


# ------------------------------------------------------------------------------------------------ runner
class PoolRunner:
    """Builds, evaluates and attacks each model of a loaded pools config under ``out``, stage by stage;
    a stage whose result exists is skipped (that is the resume)."""

    def __init__(self, cfg: dict, out: str | Path, progress: bool = False, log=print):
        self.cfg, self.out, self.progress, self.log = cfg, Path(out), progress, log
        self.muse = cfg.get("benchmark") == "muse"
        ev = cfg["eval"]
        if self.muse:
            from ..muse_eval import muse_sets

            self.sets = muse_sets(cfg["data"], cfg["data_dir"], ev["limit"])
        else:
            from ..evaluate import tofu_sets

            self.sets = tofu_sets(cfg["data"], cfg["split"], cfg["data_dir"], ev["limit"], ev["utility_limit"])
        self.index_path = self.out / "index.json"
        self.index = read_json(self.index_path) if self.index_path.exists() else {}

    # paths -------------------------------------------------------------------------------------------
    def model_dir(self, m: dict) -> Path:
        return Path(m["model_dir"]) if m.get("model_dir") else self.out / "models" / m["name"]

    def eval_dir(self, m: dict, stage: str = "eval") -> Path:
        base = self.out / "evals" / m["name"]
        return base if stage == "eval" else base / {"relearn": "relearned", "quantize": "quantized"}[stage]

    def stages(self, m: dict) -> list[str]:
        out = [] if m["role"] == "unlearned" else ["finetune"]
        out.append("eval")
        if m["role"] != "positive":  # robustness is measured on the models a metric may call unlearned
            out += [s for s in ("relearn", "quantize") if self.cfg["attacks"][s] is not None]
        return out

    def done(self, m: dict, stage: str) -> bool:
        if stage == "finetune":
            p = self.model_dir(m) / "run.json"
            return p.exists() and read_json(p).get("status") == "done"
        return (self.eval_dir(m, stage) / "items.jsonl").exists()

    def _note(self, m: dict, stage: str, **info) -> None:
        # read-modify-write under a lock: parallel workers note their own models' stages in the same file
        with _flock(self.out / "locks" / "index.lock"):
            self.index = read_json(self.index_path) if self.index_path.exists() else {}
            entry = self.index.setdefault(m["name"], {k: m.get(k) for k in ("role", "kind", "data", "lr", "epochs")})
            entry["model_dir"] = str(self.model_dir(m))
            entry.setdefault("stages", {})[stage] = info
            atomic_write_json(self.index_path, self.index)

    def finished(self) -> set[tuple[str, str]]:
        """The (model, stage) pairs whose result exists."""
        return {(m["name"], s) for m in self.cfg["models"] for s in self.stages(m) if self.done(m, s)}

    def pending(self) -> list[tuple[str, str]]:
        """The (model, stage) pairs still to do, in pool order."""
        return [(m["name"], s) for m in self.cfg["models"] for s in self.stages(m) if not self.done(m, s)]

    # stages ------------------------------------------------------------------------------------------
    def run(self, only: str | None = None) -> dict:
        """Every stage of every model (or of the model named ``only``), the retain control first. A model is
        claimed (an exclusive ``flock`` on ``locks/NAME.lock``, released by the kernel even on SIGKILL) before
        its stages run; one another process holds is left to it: that is how parallel workers share the pools.
        Returns ``{"ran": [(name, stage)], "skipped": [...], "busy": [names held by another process]}``."""
        ran, skipped, busy = [], [], []
        models = sorted(self.cfg["models"], key=lambda m: m["name"] != self.cfg["retain_control"])
        for m in models:
            if only is not None and m["name"] != only:
                continue
            if all(self.done(m, s) for s in self.stages(m)):
                skipped += [(m["name"], s) for s in self.stages(m)]
                continue
            with _flock(self.out / "locks" / f"{m['name']}.lock", blocking=False) as mine:
                if not mine:
                    busy.append(m["name"])
                    continue
                for stage in self.stages(m):
                    if self.done(m, stage):  # checked again under the claim: another worker may have done it
                        skipped.append((m["name"], stage))
                        continue
                    self.log(f"meta-eval: {m['name']}: {stage}")
                    t0 = time.time()
                    info = getattr(self, f"_{stage}")(m) or {}
                    self._note(m, stage, status="done", seconds=round(time.time() - t0, 3), **info)
                    ran.append((m["name"], stage))
        return {"ran": ran, "skipped": skipped, "busy": busy}

    def _finetune(self, m: dict) -> dict:
        from ..finetune import run_finetune
        from ..io import _resumable
        from ..train import TrainConfig

        c = self.cfg
        out = self.model_dir(m)
        resume = out.exists() and _resumable(out)  # per-epoch checkpoints of an interrupted fine-tune
        cfg = TrainConfig(lr=m["lr"], epochs=m["epochs"], **c["train"])
        # the pools' format is obliviate's (self._formatter in eval and relearn below), not the default protocol;
        # text data (MUSE pools) is chunked by max_length whatever the style
        run_finetune(c["model"], m["data"], out, cfg, data_dir=c["data_dir"], style=c["style"],
                     max_length=c.get("max_length"), overwrite=out.exists() and not resume, resume=resume,
                     protocol="obliviate")
        return {"resumed": resume}

    def _formatter(self, tok):
        from ..data.formatting import Formatter

        ml = self.cfg.get("max_length")
        return Formatter(tok, style=self.cfg["style"] or "chat", **({"max_length": ml} if ml else {}))

    def _load(self, m: dict, dtype=None):
        from ..models import load_model

        return load_model(str(self.model_dir(m)), dtype=dtype)

    def _evaluate(self, net, tok, m: dict, stage: str) -> None:
        ev = self.cfg["eval"]
        if self.muse:
            from ..muse_eval import evaluate_muse

            _, records = evaluate_muse(net, tok, data=self.cfg["data"], sets=self.sets, protocol=MUSE_PROTOCOL,
                                       batch_size=ev["batch_size"], progress=self.progress)
        else:
            from ..evaluate import evaluate_tofu

            _, records = evaluate_tofu(net, tok, sets=self.sets, formatter=self._formatter(tok),
                                       progress=self.progress, generation=ev["generation"], gradnorm=ev["gradnorm"],
                                       batch_size=ev["batch_size"], protocol="obliviate")
        atomic_write_jsonl(self.eval_dir(m, stage) / "items.jsonl", records)  # last: the stage's done marker

    def _eval(self, m: dict) -> dict:
        net, tok = self._load(m)
        self._evaluate(net, tok, m, "eval")
        return {}

    def relearn_items(self):
        from ..data import load_items

        c = self.cfg
        family, _, query = c["data"].partition("?")
        split = "raw/forget" if self.muse else c["split"]  # MUSE: the forget articles, trained on as text
        items = load_items(f"{family}:{split}" + (f"?{query}" if query else ""), data_dir=c["data_dir"])
        return items[:max(1, math.ceil(self.cfg["attacks"]["relearn"]["fraction"] * len(items)))]

    def _relearn(self, m: dict) -> dict:
        from ..data.text import encode_items
        from ..train import TRAIN_DTYPE, EncodedBatches, TrainConfig, nll_loss, train

        rl = self.cfg["attacks"]["relearn"]
        net, tok = self._load(m, dtype=TRAIN_DTYPE)
        items = self.relearn_items()
        cfg = TrainConfig(lr=float(rl["lr"]), epochs=rl["epochs"], batch_size=rl["batch_size"], seed=rl["seed"],
                          checkpoint_every_epoch=False, progress=self.progress)
        # QA items through the prompt format, texts as MUSE chunks: as the pool models were fine-tuned
        batches = EncodedBatches(encode_items(self._formatter(tok), items), cfg.batch_size, tok.pad_token_id,
                                 cfg.seed)
        history = train(net, batches, nll_loss, cfg, desc="relearn")
        self._evaluate(net, tok, m, "relearn")
        return {"items": len(items), "final_loss": history.get("final_loss")}

    def _quantize(self, m: dict) -> dict:
        import torch

        from .quantize import quantize_4bit

        q = self.cfg["attacks"]["quantize"]
        net, tok = self._load(m, dtype=torch.float32)
        info = quantize_4bit(net, method=q["method"], block_size=q["block_size"])
        self._evaluate(net, tok, m, "quantize")
        return info

    # table -------------------------------------------------------------------------------------------
    def table(self) -> list[dict]:
        """The rows :func:`obliviate.metaeval.scores.meta_table` reads: each model's TOFU (MUSE) summary (and
        after each attack), recomputed from its records with the retain control's as the reference (MUSE: its
        PrivLeak AUC); with ``eval.fluency_classifier``, ``forget_fluency`` (:mod:`.fluency`) of its greedy
        forget answers too."""
        from ..interop import read_records
        from ..metrics.tofu import tofu_summary

        ref = None
        rc = next((m for m in self.cfg["models"] if m["name"] == self.cfg["retain_control"]), None)
        if rc is not None and self.done(rc, "eval"):
            ref, _, _ = read_records(str(self.eval_dir(rc) / "items.jsonl"))
        if self.muse:
            from ..muse_eval import muse_records_summary, retrain_auc
            from ..protocols import get_protocol

            proto = get_protocol(MUSE_PROTOCOL)
            ref_auc = retrain_auc(ref, proto, str(self.eval_dir(rc))) if ref is not None else None
        clf = None
        if self.cfg["eval"].get("fluency_classifier"):
            from .fluency import load_classifier

            clf = load_classifier(self.cfg["eval"]["fluency_classifier"])

        def summary(m, stage):
            if not self.done(m, stage):
                return None
            recs, _, _ = read_records(str(self.eval_dir(m, stage) / "items.jsonl"))
            if self.muse:
                return muse_records_summary(recs, retain_auc=ref_auc, protocol=proto, corpus=self.cfg["data"])
            s = tofu_summary(recs, ref)
            if clf is not None:
                from .fluency import add_fluency

                add_fluency(s, recs, clf)
            return s

        rows = []
        for m in self.cfg["models"]:
            rows.append({"name": m["name"], "role": m["role"], "kind": m["kind"], "lr": m.get("lr"),
                         "epochs": m.get("epochs"), "summary": summary(m, "eval"),
                         "relearned": summary(m, "relearn"), "quantized": summary(m, "quantize")})
        return rows
