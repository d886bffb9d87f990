"""Running an audit: in memory (:func:`audit_models`) or as a command with its output folder (:func:`run_audit`)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

from ..config import AuditConfig, ConfigError, config_of_call, legacy_values
from ..data import load_items
from ..data.formatting import Formatter
from ..errors import ObliviateError
from ..registry import AUDITS
from .core import ROLES, AuditContext, ModelSlot, Settings, check_roles, run_views
from .report import render_md

SCHEMA_VERSION = 1


def view_names(views) -> list[str]:
    """The views to run, in registry order (view number); base_control comes with any leak view."""
    entries = sorted(AUDITS.entries(), key=lambda e: e.meta.get("view", 99))
    known = [e.name for e in entries]
    if not views:
        return known
    views = list(dict.fromkeys(views))
    for v in views:
        if v not in known:
            raise ConfigError("views", f"{{0}} {v}: unknown view; valid views: {', '.join(known)}")
    if any(e.meta.get("leak") for e in entries if e.name in views):
        views.append("base_control")  # every leak rate is checked against the base model (or said missing)
    return [n for n in known if n in views]


def formatter_factory(protocol):
    """The prompt format of every model of the audit: ``protocol`` (a preset name, a resolved
    :class:`~obliviate.protocols.Protocol`, or None: TOFU's default, ``open-unlearning``, the format the models
    were trained and evaluated in by default): style, system prompt, date string, max length, joint or separate
    prompt/answer tokens. Scored answers are grouped by the prompt tokens the model sees
    (engine/protocol_scoring.score_answers)."""
    from ..protocols import default_protocol, get_protocol

    proto = get_protocol(protocol or default_protocol("tofu"))  # an unknown name fails here, before any model loads
    factory = lambda tok: Formatter.from_protocol(tok, proto)  # noqa: E731
    factory.protocol = proto
    return factory


def default_retain(forget: str) -> str | None:
    """The retain split that goes with a TOFU-style forget split: ``fam:forget10[_perturbed][?opts]`` ->
    ``fam:retain90[?opts]`` (None for anything else)."""
    m = re.fullmatch(r"([\w-]+):forget(01|05|10)(?:_perturbed)?(\?.*)?", forget)
    return f"{m.group(1)}:retain{100 - int(m.group(2))}{m.group(3) or ''}" if m else None


def reuse_answers(path: str | None, forget, model: str | None = None, protocol=None) -> dict[str, str]:
    """question -> greedy answer from an ``obliviate eval`` folder's items.jsonl (its forget set). The eval's
    run.json, when there, must name the same model and (``protocol``) have the same prompt protocol."""
    if path is None:
        return {}
    from ..io import read_text_file

    p = Path(path)
    f = p / "items.jsonl" if p.is_dir() else p
    run_json = f.parent / "run.json"
    if model is not None and run_json.is_file():
        try:
            evald = json.loads(run_json.read_text()).get("config", {}).get("model")
        except (json.JSONDecodeError, AttributeError):
            evald = None
        if evald is not None and evald != model:
            raise ObliviateError(f"--reuse-eval {path}: that evaluation is of model {evald!r}, not --model {model!r}")
    if protocol is not None:
        from ..protocols import protocol_mismatch

        msg = protocol_mismatch(path, protocol, "--reuse-eval")
        if msg:  # its greedy answers continue other prompts than this audit's
            raise ObliviateError(msg.removeprefix("warning: ") + "; give the audit that --protocol, or evaluate again")
    answers = {}
    for k, line in enumerate(read_text_file(f, "--reuse-eval").splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ObliviateError(f"--reuse-eval {f}: line {k + 1} is not JSON ({e.msg})") from None
        if rec.get("set") == "forget" and isinstance(rec.get("generation"), str):
            answers[rec["question"]] = rec["generation"]
    missing = [it.question for it in forget if it.question not in answers]
    if not answers:
        raise ObliviateError(f"--reuse-eval {f}: no forget-set record with a greedy answer ('generation'); was it "
                             "an `obliviate eval` run with generation on?")
    if missing:
        raise ObliviateError(f"--reuse-eval {f}: {len(missing)} forget question(s) have no answer there, e.g. "
                             f"{missing[0][:60]!r}; use the eval run of the same model, --data, --split and --limit")
    return answers


def audit_models(models: dict, forget, retain=None, views=None, settings: Settings | None = None, *,
                 formatter=None, reuse: dict | None = None, specs: dict | None = None, on_view=None) -> dict:
    """Run the views on ``models`` (role -> a model spec string or a ``(model, tokenizer)`` pair in memory);
    ``forget`` / ``retain``: data specs or lists of QAItem. Returns the audit.json dict (no files written)."""
    settings = settings or Settings()
    formatter = formatter or formatter_factory(None)  # the default protocol's prompts, as the CLI's
    names = view_names(views)
    unknown = set(models) - set(ROLES)
    if unknown:
        raise ObliviateError(f"unknown model role(s) {', '.join(sorted(unknown))}; roles: {', '.join(ROLES)}")
    fspec = forget if isinstance(forget, str) else "(in memory)"
    forget = load_items(forget) if isinstance(forget, str) else list(forget)
    retain = load_items(retain) if isinstance(retain, str) else (list(retain) if retain is not None else None)
    if not forget:
        raise ObliviateError("--forget: the forget set has no items")
    slots = {}
    for role, m in models.items():
        if m is None:
            continue
        if isinstance(m, str):
            slots[role] = ModelSlot(role, spec=m, formatter_factory=formatter)
        else:
            slots[role] = ModelSlot(role, model=m[0], tokenizer=m[1], formatter_factory=formatter)
    check_roles(slots)
    ctx = AuditContext(forget=forget, retain=retain, slots=slots, settings=settings, reused=reuse or {})
    view_objs = [AUDITS.get(n).obj() for n in names]
    meta = [v for v in view_objs if getattr(v, "meta", False)]
    results = run_views(ctx, [v for v in view_objs if not getattr(v, "meta", False)], on_view=on_view)
    for v in meta:
        results[v.name] = v.collect(results, "base" in slots)
    names_out = {r: (m if isinstance(m, str) else (specs or {}).get(r, "(in memory)")) for r, m in models.items()
                 if m is not None}
    return {"schema_version": SCHEMA_VERSION, "models": names_out, "forget": fspec, "n_forget": len(forget),
            "settings": asdict(settings), "views": {n: results[n] for n in names if n in results},
            "notes": ctx.notes}


def run_audit(config: AuditConfig | str, *args, out=None, overwrite: bool = False, **settings) -> dict:
    """``obliviate audit``: every view on the audited model and its controls; writes audit.json and audit.md in
    ``out``. ``run_audit(config, out)`` with an :class:`~obliviate.config.AuditConfig`, or the keyword convenience
    ``run_audit(model, full_model, retain_model, forget, out, base_model=..., views=[...], n_samples=16, ...)``."""
    from ..data import check_data_dir, spec_path
    from ..models import check_model_spec
    from ..runtime.run import Run

    config, out = config_of_call(AuditConfig, config, args, settings,
                                 ("full_model", "retain_model", "forget", "out"), out, call="run_audit", required=3)
    config.validate()
    names = view_names(config.views)
    for spec in (config.model, config.full_model, config.retain_model, config.base_model):
        if spec is not None:
            check_model_spec(spec)
    if config.retain is None and default_retain(config.forget):
        # the probes' training items: the retain split of the same data set
        config = replace(config, retain=default_retain(config.forget))
    check_data_dir(config.data_dir, [s for s in (config.forget, config.retain) if s])
    forget_items = load_items(config.forget, data_dir=config.data_dir)[: config.limit]  # data errors first
    retain_items = load_items(config.retain, data_dir=config.data_dir) if config.retain else None
    # the whole resolved protocol goes to run.json (as eval records it); an unknown name fails here
    config = replace(config, views=tuple(names), format=config.format.resolved(protocol_record=True))
    fmt_factory = formatter_factory(config.format.resolved_protocol())
    reuse = ({"audited": reuse_answers(config.reuse_eval, forget_items, config.model, fmt_factory.protocol)}
             if config.reuse_eval else {})
    inputs = {"--model": config.model, "--full-model": config.full_model, "--retain-model": config.retain_model,
              "--base-model": config.base_model, "--reuse-eval": config.reuse_eval,
              "--forget": spec_path(config.forget), "--data-dir": config.data_dir}
    with Run("audit", out, config.to_dict(), seed=config.settings.seed, overwrite=overwrite, inputs=inputs,
             legacy=legacy_values(AuditConfig)) as run:
        run.start()  # the models load one at a time inside the views (their specs were checked above)
        t0 = time.time()
        timings: dict[str, float] = {}

        def on_view(view, role):
            timings[f"{view}/{role}_s"] = round(time.time() - t0 - sum(timings.values()), 3)

        models = {"audited": config.model, "full": config.full_model, "retain": config.retain_model,
                  "base": config.base_model}
        audit = audit_models(models, forget_items, retain_items, names, config.settings, formatter=fmt_factory,
                             reuse=reuse, on_view=on_view)
        audit["forget"] = config.forget + (f" (first {config.limit})" if config.limit else "")
        if config.reuse_eval:
            audit["notes"].append(f"greedy answers of the audited model reused from {config.reuse_eval}")
        for k, v in timings.items():
            run.timing(k, v)
        run.write_json("audit.json", audit)
        run.write_text("audit.md", render_md(audit))
    return audit
