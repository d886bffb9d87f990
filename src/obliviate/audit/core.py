"""The audit's moving parts: the models under audit (by role), the settings, the view interface, the loop.

Roles: ``audited`` (the unlearned model), ``full`` (before unlearning: trained on the forget set), ``retain``
(never saw the forget set) and ``base`` (never fine-tuned on the data set). Every view runs on every role
given; a view's per-item records of each role go to audit.json with the metrics they give (metrics.py).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Callable

from ..config import ViewConfig
from ..data.formatting import Formatter
from ..data.schema import QAItem
from ..engine.generation import generate
from ..errors import ObliviateError
from .metrics import summarize

ROLES = ("audited", "full", "retain", "base")


#: the views' settings: the configuration layer's ViewConfig (config.py), under the name the views know
Settings = ViewConfig


class ModelSlot:
    """A model of one role: a spec loaded on first use (and dropped with :meth:`release`), or one in memory."""

    def __init__(self, role: str, spec: str | None = None, model=None, tokenizer=None, formatter_factory=None):
        self.role, self.spec = role, spec
        self._model, self._tok, self._fmt = model, tokenizer, None
        self._owned = model is None
        self._formatter_factory = formatter_factory or (lambda tok: Formatter(tok))

    def get(self):
        if self._model is None:
            from ..models import load_model

            self._model, self._tok = load_model(self.spec)
        if self._fmt is None:
            self._fmt = self._formatter_factory(self._tok)
        self._model.eval()
        return self._model, self._tok, self._fmt

    def release(self) -> None:
        if self._owned and self._model is not None:
            self._model = self._tok = self._fmt = None
            gc.collect()


@dataclass
class AuditContext:
    forget: list[QAItem]
    retain: list[QAItem] | None
    slots: dict[str, ModelSlot]
    settings: Settings = field(default_factory=Settings)
    reused: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> question -> greedy answer
    _greedy: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def greedy(self, role: str, prompts: list[str], questions: list[str] | None = None) -> list[str]:
        """Greedy answers of ``role`` to formatted prompts (cached per role and prompt; ``questions[i]``: the
        plain question of prompt ``i``, looked up in ``--reuse-eval`` answers first)."""
        model, tok, _ = self.slots[role].get()
        cache = self._greedy.setdefault(role, {})
        reuse = self.reused.get(role, {})
        for i, p in enumerate(prompts):
            if p not in cache and questions is not None and questions[i] in reuse:
                cache[p] = reuse[questions[i]]
        todo = list(dict.fromkeys(p for p in prompts if p not in cache))
        if todo:
            for p, g in zip(todo, generate(model, tok, todo, max_new_tokens=self.settings.max_new_tokens,
                                           batch_size=self.settings.batch_size, progress=False)):
                cache[p] = g
        return [cache[p] for p in prompts]


class View:
    """One audit view: ``run(ctx, role)`` gives the per-item records of one model; ``metrics`` says how they
    become numbers (metrics.py); ``headline`` is the metric of the report's main table. ``finalize(ctx, by_role)``
    may add fields that compare roles (the item's value under the full model, say) once every role has run."""

    name: str = ""
    metrics: dict = {}
    headline: str = ""
    leak: bool = False  # has a leak rate: base_control reports it on the base model
    percent: bool = True  # its metrics are rates shown in %
    roles: tuple[str, ...] = ROLES  # the roles it runs on (relearn_recovery needs retain as its reference)

    def run(self, ctx: AuditContext, role: str) -> list[dict]:  # pragma: no cover - interface
        raise NotImplementedError

    def finalize(self, ctx: AuditContext, by_role: dict[str, list[dict]]) -> None:
        pass

    def skip_reason(self, ctx: AuditContext) -> str | None:
        """Why this view cannot run with the inputs given (None: it can)."""
        return None


def item_base(i: int, it: QAItem) -> dict:
    return {"index": i, "question": it.question, "answer": it.answer, "entity": it.entity}


def run_views(ctx: AuditContext, views: list[View], on_view: Callable | None = None) -> dict:
    """Every view on every role (one model in memory at a time), then each view's finalize and metrics."""
    roles = [r for r in ROLES if r in ctx.slots]
    results: dict[str, dict] = {}
    skipped = {}
    for v in views:
        why = v.skip_reason(ctx)
        if why:
            skipped[v.name] = why
        else:
            results[v.name] = {}
    for role in roles:
        for v in views:
            if v.name in results and role in v.roles:
                results[v.name][role] = v.run(ctx, role)
                if on_view:
                    on_view(v.name, role)
        ctx.slots[role].release()
    out = {}
    for v in views:
        if v.name in skipped:
            out[v.name] = {"skipped": skipped[v.name], "description": _doc(v)}
            continue
        by_role = results[v.name]
        v.finalize(ctx, by_role)
        out[v.name] = view_json(v, by_role, ctx.settings)
    return out


def _doc(v: View) -> str:
    return (v.__doc__ or "").strip().splitlines()[0] if v.__doc__ else ""


def view_json(v: View, by_role: dict[str, list[dict]], settings: Settings) -> dict:
    models = {}
    for role, items in by_role.items():
        models[role] = {"metrics": summarize(v.metrics, items, settings.seed, settings.n_boot), "items": items}
    for role, m in models.items():
        for name, entry in m["metrics"].items():
            for ref in ("full", "retain"):
                r = models.get(ref, {}).get("metrics", {}).get(name, {}).get("value")
                entry[f"delta_vs_{ref}"] = (entry["value"] - r) if entry["value"] is not None and r is not None else None
    return {"description": _doc(v), "headline": v.headline, "percent": v.percent, "leak": v.leak,
            "metric_specs": v.metrics, "models": models}


def check_roles(slots: dict) -> None:
    for role in ("audited", "full", "retain"):
        if role not in slots:
            raise ObliviateError(f"the audit needs the {role} model (--{'model' if role == 'audited' else role + '-model'})")
