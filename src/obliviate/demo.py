"""``make demo`` / ``obliviate demo``: the whole job on the embedded defaults, offline.

1. prepare: fine-tune SmolLM2-135M-Instruct on obliviate's synthetic authors — a "full" model (all
   authors) and a "retain" model (all but the forget author);
2. evaluate both on the TOFU suite of the synthetic family (the retain model is the reference for
   forget quality);
3. unlearn the forget author from the full model with NPO (when the method is available), evaluate again;
4. print a before/after answer to a forget question and the summary table.

The synthetic family is sized small (``n_authors``) so that the demo finishes on a 2-core CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

from .data import load_items
from .data.formatting import Formatter
from .engine.generation import generate
from .io import atomic_write_json
from .models import load_model
from .train import TrainConfig

MODEL = "smollm2-135m"


def _answer(model_spec: str, question: str) -> str:
    model, tok = load_model(model_spec)
    return generate(model, tok, [Formatter(tok).prompt_text(question)], max_new_tokens=60)[0]


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run_demo(out: str = "runs/demo", quick: bool = False) -> int:
    from .evaluate import run_tofu_eval
    from .finetune import run_finetune
    from .registry import METHODS

    n_authors = 4  # forget10 = 1 author (10 QA); retain90 = 3 authors (30 QA)
    epochs = 2 if quick else 3
    utility_limit = 10 if quick else 20
    data = f"synthetic?n_authors={n_authors}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    forget_items = load_items(f"synthetic:forget10?n_authors={n_authors}")
    probe = forget_items[1]
    print(f"obliviate demo: {MODEL}, synthetic authors (n_authors={n_authors}), forget = "
          f"{len(forget_items)} QA about {probe.entity}; outputs in {out}/", flush=True)

    _step("before fine-tuning")
    print(f"Q: {probe.question}\ntruth : {probe.answer}\nmodel : {_answer(MODEL, probe.question)}")

    models = {}
    for name in ("full", "retain90"):
        _step(f"prepare: fine-tune the {name} model")
        dest = out / name
        if (dest / "model.safetensors").exists():
            print(f"{dest} exists; reusing it")
        else:
            cfg = TrainConfig(epochs=epochs, lr=2e-4, batch_size=8, warmup_ratio=0.1)
            run_finetune(MODEL, f"synthetic:{name}?n_authors={n_authors}", dest, cfg, overwrite=True)
        models[name] = str(dest)

    _step("after fine-tuning (full model)")
    print(f"Q: {probe.question}\ntruth : {probe.answer}\nmodel : {_answer(models['full'], probe.question)}")

    summaries = {}
    for name in ("retain90", "full"):
        _step(f"evaluate: TOFU suite on the {name} model")
        retain_eval = str(out / "eval-retain90") if name != "retain90" else None
        summaries[name] = run_tofu_eval(models[name], out / f"eval-{name}", data=data, retain_eval=retain_eval,
                                        utility_limit=utility_limit, overwrite=True)

    if "npo" in METHODS:
        from .unlearn import run_unlearn  # written with the unlearning methods

        _step("unlearn: NPO on the forget author")
        run_unlearn(model=models["full"], method="npo", forget=f"synthetic:forget10?n_authors={n_authors}",
                    retain=f"synthetic:retain90?n_authors={n_authors}", out=out / "npo",
                    cfg=TrainConfig(epochs=epochs, lr=2e-4, batch_size=4, warmup_ratio=0.1), overwrite=True)
        models["npo"] = str(out / "npo")
        _step("evaluate: TOFU suite on the unlearned model")
        summaries["npo"] = run_tofu_eval(models["npo"], out / "eval-npo", data=data, utility_limit=utility_limit,
                                         retain_eval=str(out / "eval-retain90"), overwrite=True)
        _step("after unlearning")
        print(f"Q: {probe.question}\ntruth : {probe.answer}\nmodel : {_answer(models['npo'], probe.question)}")
    else:
        print("\n(unlearning methods are not available yet: skipping the unlearn step)")

    _step("summary")
    keys = ["forget_quality", "model_utility", "forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE",
            "retain_Q_A_Prob", "privleak"]
    print(f"{'model':<10}" + "".join(f"{k:>20}" for k in keys))
    for name, s in summaries.items():
        print(f"{name:<10}" + "".join(f"{'-' if s.get(k) is None else format(s[k], '.4g'):>20}" for k in keys))
    atomic_write_json(out / "demo_summary.json", {"summaries": summaries, "seconds": round(time.time() - t0, 1)})
    print(f"\ndone in {time.time() - t0:.0f}s; details in {out}/*/run.json, summary.json, items.jsonl")
    return 0
