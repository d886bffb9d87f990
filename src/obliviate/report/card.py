"""``obliviate card RUN --out README.md``: a Hugging Face model card for an unlearned model.

Front matter (``huggingface_hub.ModelCardData``): license (``--license``, else the base model's card, else
``other``), library_name transformers, base_model (the hub id the run descends from, following fine-tune
run folders), tags (unlearning, the method, the benchmark, lora), datasets, pipeline_tag text-generation,
language, and a ``model-index`` with the benchmark results. Body: intended use, training details (with the
sweep's grid, hash and selection rule when ``--sweep`` is given), benchmark and audit results, how to load,
citation.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ObliviateError
from ..io import atomic_write_text, read_json
from .collect import audit_rows, finite

# built-in models -> (hub id, license)
BUILTIN_BASES = {"smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}
DATASETS = {"tofu": "locuslab/TOFU", "muse-news": "muse-bench/MUSE-News", "muse-books": "muse-bench/MUSE-Books"}
RESULT_KEYS = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE",
               "retain_Q_A_Prob", "retain_Q_A_ROUGE", "extraction_strength", "privleak")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _front_matter_license(folder: Path) -> str | None:
    readme = folder / "README.md"
    if readme.is_file():
        m = re.match(r"^---\n(.*?)\n---", readme.read_text(encoding="utf-8", errors="replace"), re.S)
        if m:
            lic = re.search(r"^license:\s*(\S+)", m.group(1), re.M)
            if lic:
                return lic.group(1).strip("'\"")
    return None


def trace_base(model: str, depth: int = 0) -> tuple[str | None, str | None, list[str]]:
    """(hub id of the base model, its license, the chain of local models) for a run's ``--model``."""
    if depth > 10:
        return None, None, []
    spec = model.split("?")[0]
    if spec in BUILTIN_BASES:
        return (*BUILTIN_BASES[spec], [model])
    p = Path(model)
    if p.is_dir():
        lic = _front_matter_license(p)
        if (p / "run.json").is_file():
            parent = read_json(p / "run.json").get("config", {}).get("model")
            if parent:
                base, plic, chain = trace_base(str(parent), depth + 1)
                return base, lic or plic, [model] + chain
        return None, lic, [model]
    if HUB_ID.match(model):
        return model, None, [model]
    return None, None, [model]


def _benchmark(cfg: dict) -> tuple[str, str | None]:
    data = (cfg.get("eval") or {}).get("data") or cfg.get("forget", "")
    fam = str(data).split(":")[0].split("?")[0]
    if fam.startswith("muse"):
        return "muse", DATASETS.get(fam)
    return "tofu", DATASETS.get(fam)  # synthetic authors: TOFU's protocol, no hub dataset


def _final_summary(run: Path, rec: dict) -> tuple[dict, int | None]:
    sel = (rec.get("selection") or {}).get("best_epoch")
    epochs = (rec.get("config", {}).get("train") or {}).get("epochs")
    for e in [sel, epochs]:
        if e and (run / "eval" / f"epoch-{e}" / "summary.json").is_file():
            return read_json(run / "eval" / f"epoch-{e}" / "summary.json"), e
    evs = rec.get("evaluations") or []
    if evs:
        return {k: v for k, v in evs[-1].items() if k != "epoch"}, evs[-1].get("epoch")
    return {}, None


def _fmt(v) -> str:
    return format(v, ".4g") if finite(v) else "n/a"


def build_card(run: str | Path, *, audit: str | Path | None = None, sweep: str | Path | None = None,
               license: str | None = None, model_name: str | None = None, language: str = "en") -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    run = Path(run)
    if not (run / "run.json").is_file():
        raise ObliviateError(f"{run}: no run.json; give an unlearn run folder")
    rec = read_json(run / "run.json")
    if rec.get("command") != "unlearn":
        raise ObliviateError(f"{run}: a {rec.get('command')!r} run; a card describes an unlearned model")
    cfg = rec.get("config", {})
    method, train = cfg.get("method", "?"), cfg.get("train") or {}
    base, base_license, chain = trace_base(str(cfg.get("model", "")))
    bench, dataset = _benchmark(cfg)
    summary, epoch = _final_summary(run, rec)
    name = model_name or f"{run.name}-{method}-unlearned"
    lic = license or base_license or "other"
    tags = ["unlearning", "machine-unlearning", "obliviate", method, bench] + (["lora"] if train.get("lora") else [])
    split = (cfg.get("eval") or {}).get("split") or str(cfg.get("forget", "")).split(":")[-1].split("?")[0]
    results = [EvalResult(task_type="text-generation", dataset_type=dataset or f"obliviate/{bench}-synthetic",
                          dataset_name=f"{bench.upper()} {split}", dataset_split=split, metric_type=k,
                          metric_name=k, metric_value=float(summary[k]))
               for k in RESULT_KEYS if finite(summary.get(k))]
    data = ModelCardData(language=language, license=lic, library_name="transformers", base_model=base,
                         tags=tags, datasets=[dataset] if dataset else None, pipeline_tag="text-generation",
                         model_name=name, eval_results=results or None)

    sweep_rec = sel = None
    if sweep is not None:
        sweep = Path(sweep)
        if not (sweep / "grid.json").is_file():
            raise ObliviateError(f"--sweep {sweep}: no grid.json (not a sweep folder)")
        sweep_rec = read_json(sweep / "grid.json")
        sel = read_json(sweep / "selection.json") if (sweep / "selection.json").is_file() else None

    L = [f"# {name}", "",
         f"`{base or cfg.get('model')}` after **{method}** unlearning of `{cfg.get('forget')}` with "
         f"obliviate (a toolkit that makes a causal LM forget data, evaluates it with "
         f"TOFU / MUSE / MIA metrics, and audits it).", "",
         "## Intended use", "",
         "Research on machine unlearning: a model from which one forget set was removed by fine-tuning, for "
         "measuring forgetting, utility and leakage. It is not a guarantee that the information is gone: read "
         "the audit results below, and evaluate for your own threat model before relying on it. Inherits the "
         "base model's uses and limitations.", "",
         "## Training details", "", "| setting | value |", "|---|---|",
         f"| base model | `{base or '—'}` |",
         f"| unlearned from | `{cfg.get('model')}`" + (f" (chain: {' <- '.join(f'`{c}`' for c in chain)})" if len(chain) > 1 else "") + " |",
         f"| method | {method} |",
         f"| method options | {', '.join(f'{k}={v}' for k, v in (cfg.get('method_config') or {}).items()) or '—'} |",
         f"| forget set | `{cfg.get('forget')}` ({cfg.get('n_forget', '?')} items) |",
         f"| retain set | `{cfg.get('retain') or '—'}` ({cfg.get('n_retain', 0)} items) |",
         f"| epochs | {train.get('epochs')}" + (f" (kept epoch {epoch})" if epoch and epoch != train.get("epochs") else "") + " |",
         f"| learning rate | {train.get('lr')} |",
         f"| batch size | {train.get('batch_size')} x {train.get('grad_accum', 1)} accumulation |",
         f"| LoRA | {'r=' + str(train.get('lora_r')) if train.get('lora') else 'no (all weights)'} |",
         f"| robustness | {', '.join(f'{k}={v}' for k, v in (cfg.get('robust') or {}).items() if v not in (None, False, 0)) or 'none'} |",
         f"| seed | {rec.get('seed')} |",
         f"| obliviate commit | {rec.get('git_commit') or '—'} |"]
    if sweep_rec is not None:
        L += ["", "### Sweep and selection", "",
              f"Chosen from a predeclared grid of {sweep_rec['n_points']} runs (grid sha256 "
              f"`{sweep_rec['grid_hash']}`, declared {sweep_rec.get('declared_at', '?')}); varied: "
              f"{', '.join(sweep_rec.get('varying') or []) or '—'}."]
        grid_yaml = sweep / "grid.yaml"
        if grid_yaml.is_file():
            L += ["", "```yaml", grid_yaml.read_text(encoding="utf-8").strip(), "```"]
        if sel:
            r = sel["rule"]
            L += ["", f"Selection rule (blind: the ranking uses only {', '.join(sel['ranking_uses'])}): rank-1 by "
                      f"`{r['by']}`" + (f", tie-break `{r['tie_break']}`" if r.get("tie_break") else "")
                  + "".join(f", subject to `{m}`" for m in r.get("min") or [])
                  + "".join(f", subject to max `{m}`" for m in r.get("max") or [])
                  + f", at the {r['epoch']} epoch of each run, ties in grid order."]
            if sel.get("rank1"):
                L.append(f"This model is rank-1: point p{sel['rank1']['idx']:03d}, epoch {sel['rank1']['epoch']}.")
    L += ["", f"## Benchmark results ({bench.upper()})", ""]
    if summary:
        L += [f"Evaluation of the saved model (epoch {epoch}) on `{(cfg.get('eval') or {}).get('data') or cfg.get('forget')}`"
              f" split {split}" + (f", first {cfg['eval']['limit']} items per set" if (cfg.get('eval') or {}).get('limit') else "")
              + ".", "", "| metric | value |", "|---|---|"]
        L += [f"| {k} | {_fmt(summary.get(k))} |" for k in RESULT_KEYS if k in summary]
    else:
        L.append("No evaluation was recorded for this run (run `obliviate eval` on it).")
    if audit is not None:
        ap = Path(audit)
        ap = ap / "audit.json" if ap.is_dir() else ap
        if not ap.is_file():
            raise ObliviateError(f"--audit {audit}: no audit.json")
        rows = audit_rows(read_json(ap))
        roles = list(dict.fromkeys(r["model"] for r in rows))
        L += ["", "## Audit", "", "Value [95 % interval] per view and model.", "",
              "| view | metric | " + " | ".join(roles) + " |", "|---|---|" + "---|" * len(roles)]
        table: dict = {}
        for r in rows:
            v = r["value"]
            cell = "n/a" if not finite(v) else (f"{100 * v:.2f} %" if r["percent"] else _fmt(v))
            if finite(v) and r["ci"] and len(r["ci"]) == 2 and all(finite(c) for c in r["ci"]):
                c = r["ci"]
                cell += f" [{100 * c[0]:.2f}, {100 * c[1]:.2f}]" if r["percent"] else f" [{_fmt(c[0])}, {_fmt(c[1])}]"
            table.setdefault((r["view"], r["metric"]), {})[r["model"]] = cell
        L += [f"| {v} | {m} | " + " | ".join(cells.get(x, "—") for x in roles) + " |" for (v, m), cells in table.items()]
    L += ["", "## How to load", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
          f'path = "{name}"  # this folder, or its hub id once uploaded',
          "tokenizer = AutoTokenizer.from_pretrained(path)",
          "model = AutoModelForCausalLM.from_pretrained(path)",
          'messages = [{"role": "user", "content": "Who is ...?"}]',
          "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\")",
          "print(tokenizer.decode(model.generate(inputs, max_new_tokens=64)[0]))", "```", "",
          "## Citation", "", "```bibtex",
          "@misc{obliviate,", "  title  = {obliviate: unlearning, evaluation and audits for causal language models},",
          "  year   = {2026},", "  note   = {Software}", "}", "",
          "@inproceedings{maini2024tofu,", "  title     = {{TOFU}: A Task of Fictitious Unlearning for {LLMs}},",
          "  author    = {Maini, Pratyush and Feng, Zhili and Schwarzschild, Avi and Lipton, Zachary C. and Kolter, J. Zico},",
          "  booktitle = {Conference on Language Modeling (COLM)},", "  year      = {2024}", "}"]
    if method in ("npo", "simnpo"):
        L += ["", "@inproceedings{zhang2024npo,",
              "  title     = {Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning},",
              "  author    = {Zhang, Ruiqi and Lin, Licong and Bai, Yu and Mei, Song},",
              "  booktitle = {Conference on Language Modeling (COLM)},", "  year      = {2024}", "}"]
    L.append("```")
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n", body="\n".join(L))
    return str(card)


def write_card(run, out, **kw) -> Path:
    text = build_card(run, **kw)
    out = Path(out)
    atomic_write_text(out, text)
    return out
