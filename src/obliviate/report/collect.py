"""What a report or a card shows, read from sweep folders and run folders (no model is evaluated again).

A *sweep* folder (``grid.json`` + ``index.sqlite``) gives every finished point with its per-epoch metrics,
the grid hash, ``selection.json`` when ``obliviate select`` ran, the retain model's evaluation. A *run*
folder (``run.json`` of ``obliviate unlearn``) gives one point; an *eval* folder (``run.json`` of ``obliviate
eval`` + ``summary.json``) one evaluation; a *meta-eval* folder (``run.json`` of ``obliviate meta-eval`` +
``table.json``) gives its metric table and models. ``audit.json`` in any given folder (or passed explicitly)
gives the audit table: per view, metric and model role, a value and its interval.

OpenUnlearning's aggregates of a point (:func:`point_aggregates`) are formed from its stored summaries, as
``obliviate eval`` forms them: the retain model's evaluation (the sweep's, or the run's ``--retain-eval``) for
privacy, and the point's own epoch 0 (the target model, before unlearning) to normalise model utility.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ObliviateError
from ..io import read_json

FQ, MU = "forget_quality", "model_utility"


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class PointView:
    name: str
    label: str
    run_dir: str
    config: dict
    epochs: dict  # {epoch: {key: value}}; 0 = before unlearning
    epoch: int | None = None  # the epoch shown (the selection's, else the saved model's, else the last)
    selected: bool = False
    pareto: bool = False
    rank: int | None = None
    sweep: str | None = None
    aggregates: dict = field(default_factory=dict)  # OpenUnlearning's, at the shown epoch (point_aggregates)

    @property
    def values(self) -> dict:
        return self.epochs.get(self.epoch, {}) if self.epoch is not None else {}


@dataclass
class ReportData:
    points: list[PointView] = field(default_factory=list)
    sweeps: list[dict] = field(default_factory=list)  # {"dir", "grid", "selection", "retain", "full"}
    audits: list[dict] = field(default_factory=list)  # {"path", "rows"}
    metaevals: list[dict] = field(default_factory=list)  # {"dir", "table", "pools"}: obliviate meta-eval folders
    evals: list[dict] = field(default_factory=list)  # {"dir", "model", "benchmark", "summary"}: obliviate eval folders
    notes: list[str] = field(default_factory=list)


def _label(settings: dict) -> str:
    parts = [settings.get("method", "?")]
    for group in ("train", "options", "robust"):
        parts += [f"{k}={v}" for k, v in (settings.get(group) or {}).items()]
    return " ".join(parts)


def _run_epochs(rdir: Path) -> dict:
    out = {}
    ev = rdir / "eval"
    if (ev / "initial" / "summary.json").is_file():
        out[0] = read_json(ev / "initial" / "summary.json")
    for d in sorted(ev.glob("epoch-*")) if ev.is_dir() else []:
        if (d / "summary.json").is_file():
            out[int(d.name.split("-")[1])] = read_json(d / "summary.json")
    if not out:  # no eval folder: the headline kept in run.json
        for e in read_json(rdir / "run.json").get("evaluations") or []:
            out[int(e["epoch"])] = {k: v for k, v in e.items() if k != "epoch"}
    return out


def audit_rows(audit: dict) -> list[dict]:
    """``[{"view", "metric", "model", "value", "ci", "headline", "percent"}]`` from an audit.json
    (``views -> models -> metrics -> {value, ci}``; a flat ``results`` list is read too)."""
    rows = []
    if isinstance(audit.get("results"), list):
        for r in audit["results"]:
            rows.append({"view": r.get("view"), "metric": r.get("metric", r.get("view")), "model": r.get("model"),
                         "value": r.get("value"), "ci": r.get("ci"), "headline": True, "percent": False})
        return rows
    for view, res in (audit.get("views") or {}).items():
        if not isinstance(res, dict) or "models" not in res:
            continue
        specs = res.get("metric_specs") or {}
        for role, mres in res["models"].items():
            for metric, m in ((mres or {}).get("metrics") or {}).items():
                if isinstance(m, dict):
                    rows.append({"view": view, "metric": metric, "model": role, "value": m.get("value"),
                                 "ci": m.get("ci"), "headline": metric == res.get("headline"),
                                 "percent": (specs.get(metric) or {}).get("format") == "percent"})
    return rows


def _add_audit(data: ReportData, path: Path) -> None:
    audit = read_json(path)
    if not isinstance(audit, dict):
        raise ObliviateError(f"{path}: an audit.json is a JSON object")
    data.audits.append({"path": str(path), "rows": audit_rows(audit), "models": audit.get("models") or {},
                        "forget": audit.get("forget")})


def point_aggregates(values: dict, retain: dict | None, target: dict | None) -> dict:
    """The four aggregate keys of a point's shown values (those it already holds, else formed from ``values``,
    the retain model's summary and the target's, the point's epoch 0); {} for a MUSE point (no aggregates)."""
    from ..metaeval.aggregates import AGGREGATE_KEYS, aggregates

    if not values or "model_utility" not in values and "memorisation_score" not in values:
        return {}
    if all(k in values for k in AGGREGATE_KEYS):
        return {k: values[k] for k in AGGREGATE_KEYS}
    agg = aggregates(values, retain, target)
    return {k: agg[k] for k in AGGREGATE_KEYS}


def _retain_summary(cfg: dict) -> dict | None:
    """The summary of an unlearn run's ``--retain-eval`` folder, when it is still there."""
    path = (cfg.get("eval") or {}).get("retain_eval")
    if not path:
        return None
    p = Path(path)
    p = p / "summary.json" if p.is_dir() else p.with_name("summary.json")
    return read_json(p) if p.is_file() else None


def _add_eval(data: ReportData, d: Path, rec: dict) -> None:
    if not (d / "summary.json").is_file():
        raise ObliviateError(f"{d}: an eval run without summary.json (status {rec.get('status')!r})")
    cfg = rec.get("config") or {}
    data.evals.append({"dir": str(d), "model": cfg.get("model"), "benchmark": cfg.get("benchmark") or "tofu",
                       "summary": read_json(d / "summary.json")})


def _add_metaeval(data: ReportData, d: Path, rec: dict) -> None:
    if not (d / "table.json").is_file():
        raise ObliviateError(f"{d}: a meta-eval run without table.json (status {rec.get('status')!r}); finish it with "
                             "obliviate meta-eval POOLS --out DIR --resume")
    data.metaevals.append({"dir": str(d), "table": read_json(d / "table.json"),
                           "pools": (rec.get("config") or {}).get("pools") or {}})


def collect(inputs, audits=()) -> ReportData:
    from ..sweep.index import open_index

    data = ReportData()
    for inp in inputs:
        d = Path(inp)
        if (d / "grid.json").is_file() and (d / "index.sqlite").is_file():
            grid = read_json(d / "grid.json")
            sel = read_json(d / "selection.json") if (d / "selection.json").is_file() else None
            retain = read_json(d / "shared" / "retain-eval" / "summary.json") \
                if (d / "shared" / "retain-eval" / "summary.json").is_file() else None
            idx = open_index(d, must_exist=True)
            try:
                pts, metrics = idx.points(), idx.metrics()
            finally:
                idx.close()
            ranked = {r["id"]: r for r in (sel or {}).get("ranking", [])}
            front = set((sel or {}).get("pareto_front", []))
            full = None
            for p in pts:
                if p["status"] != "done":
                    continue
                eps = metrics.get(p["id"], {})
                full = full or eps.get(0)
                r = ranked.get(p["id"])
                rdir = Path(p["run_dir"])
                cfg = read_json(rdir / "run.json").get("config", {}) if (rdir / "run.json").is_file() else {}
                pv = PointView(
                    f"p{p['idx']:03d}", _label(p["settings"]), p["run_dir"], cfg, eps,
                    epoch=r["epoch"] if r else (p["final_epoch"] or (max(eps) if eps else None)),
                    selected=bool(sel and sel.get("rank1") and sel["rank1"]["id"] == p["id"]),
                    pareto=p["id"] in front, rank=r["rank"] if r else None, sweep=str(d))
                pv.aggregates = point_aggregates(pv.values, retain, eps.get(0))
                data.points.append(pv)
            n_not = sum(1 for p in pts if p["status"] != "done")
            if n_not:
                data.notes.append(f"{d}: {n_not} of {len(pts)} points are not done (not shown)")
            data.sweeps.append({"dir": str(d), "grid": grid, "selection": sel, "retain": retain, "full": full})
        elif (d / "run.json").is_file():
            rec = read_json(d / "run.json")
            if rec.get("command") == "meta-eval":
                _add_metaeval(data, d, rec)
                continue
            if rec.get("command") == "eval":
                _add_eval(data, d, rec)
                continue
            if rec.get("command") != "unlearn":
                raise ObliviateError(f"{d}: a {rec.get('command')!r} run; the report takes unlearn runs, sweeps, "
                                     "evaluations and meta-evaluations")
            cfg = rec.get("config", {})
            eps = _run_epochs(d)
            sel = (rec.get("selection") or {}).get("best_epoch")
            settings = {"method": cfg.get("method"), "train": {k: cfg.get("train", {}).get(k) for k in ("lr", "epochs")},
                        "options": cfg.get("method_config") or {}}
            pv = PointView(d.name, _label(settings), str(d), cfg, eps, epoch=sel or (max(eps) if eps else None))
            pv.aggregates = point_aggregates(pv.values, _retain_summary(cfg), eps.get(0))
            data.points.append(pv)
        elif d.is_file() and d.name.endswith(".json"):
            _add_audit(data, d)
            continue
        else:
            raise ObliviateError(f"{d}: neither a sweep folder (grid.json, index.sqlite), a run folder of unlearn, "
                                 "eval or meta-eval (run.json) nor an audit.json")
        if (d / "audit.json").is_file():
            _add_audit(data, d / "audit.json")
    for a in audits:
        p = Path(a)
        _add_audit(data, p / "audit.json" if p.is_dir() else p)
    if not data.points and not data.audits and not data.metaevals and not data.evals:
        raise ObliviateError("nothing to report: no finished point, no evaluation, no audit and no meta-evaluation")
    return data
