"""Blind selection: rank a sweep's points by named metrics only, and the Pareto front of FQ vs MU.

Rule: ``--by KEY`` (e.g. ``forget_quality``), then ``--tie-break KEY`` for equal values, then the point's
position in the predeclared grid (the grid order is fixed before any result exists, so it favours no
outcome). Directions come from ``obliviate.metrics.keys`` (``max:KEY`` / ``min:KEY`` for others).
``--min KEY=V`` / ``--max KEY=V`` drop points outside a bound before ranking; ``V`` is a number or
``F*full`` / ``F*retain``: F times the value of the model before unlearning (epoch 0, shared by every point)
or of the retain model. ``--epoch last`` ranks each point by its final epoch's evaluation; ``best`` by its
best epoch under the same rule (the weights of that epoch are the run's model only if the grid set
``select:`` to the same key; the record says which epoch the saved model holds).

"Blind": nothing but the named metrics enters the ranking; the record lists them (``ranking_uses``) and
those of the bounds (``filters_use``), and quotes the grid's hash.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ObliviateError
from ..io import atomic_write_json, read_json
from ..metrics.keys import metric_direction
from .index import open_index
from .runner import load_recorded_grid

if TYPE_CHECKING:
    from ..config import SelectConfig

FQ, MU = "forget_quality", "model_utility"


def parse_bound(text: str, flag: str) -> tuple[str, float | None, str | None]:
    """``KEY=0.5`` -> (KEY, 0.5, None); ``KEY=0.9*full`` -> (KEY, 0.9, "full")."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*=\s*([-+0-9.eE]+)\s*(?:\*\s*(full|retain))?\s*", text)
    if not m:
        raise ObliviateError(f"{flag} {text!r}: write KEY=NUMBER or KEY=FACTOR*full|retain (e.g. model_utility=0.9*full)")
    try:
        v = float(m.group(2))
    except ValueError:
        raise ObliviateError(f"{flag} {text!r}: {m.group(2)!r} is not a number") from None
    return m.group(1), v, m.group(3)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def pareto_front(rows: list[dict], x: str = FQ, y: str = MU) -> list[str]:
    """Ids of the rows no other row beats on both ``x`` and ``y`` (higher is better for both), i.e. not
    dominated: no other row >= on both and > on one."""
    pts = [(r["id"], r["values"].get(x), r["values"].get(y)) for r in rows]
    pts = [(i, a, b) for i, a, b in pts if _finite(a) and _finite(b)]
    front = []
    for i, a, b in pts:
        if not any((a2 >= a and b2 >= b) and (a2 > a or b2 > b) for _, a2, b2 in pts):
            front.append(i)
    return front


def select(config: "SelectConfig | str | Path | None" = None, *args, write: bool = True, **settings) -> dict:
    """Rank the sweep's finished points blind: ``select(SelectConfig(sweep=DIR, by=...))``, or the keyword
    convenience ``select(DIR, by="forget_quality", tie_break=None, mins=(), maxs=(), epoch="last")``. Returns
    the selection record; ``write``: also DIR/selection.json (its ``config``: ``obliviate select --config``)."""
    from ..config import SelectConfig, config_of_call

    config, _ = config_of_call(SelectConfig, config, args, settings, ("by", "tie_break", "mins", "maxs", "epoch"),
                               call="select", required=0, first="sweep")
    config.validate()
    sweep_dir, by, tie_break, epoch = Path(config.sweep), config.by, config.tie_break, config.epoch
    mins, maxs = config.min, config.max
    key, score = metric_direction(by)
    tkey, tscore = metric_direction(tie_break) if tie_break else (None, None)
    bounds = [(*parse_bound(t, "--min"), "min") for t in mins] + [(*parse_bound(t, "--max"), "max") for t in maxs]
    grid = load_recorded_grid(sweep_dir)
    idx = open_index(sweep_dir, must_exist=True)
    try:
        points, metrics = idx.points(), idx.metrics()
    finally:
        idx.close()
    done = [p for p in points if p["status"] == "done"]
    if not done:
        raise ObliviateError(f"{sweep_dir}: no finished point to select from ({len(points)} in the grid)")
    refs = {"full": None, "retain": None}
    for p in done:  # the model before unlearning: epoch 0, the same evaluation for every point
        if 0 in metrics.get(p["id"], {}):
            refs["full"] = metrics[p["id"]][0]
            break
    rpath = sweep_dir / "shared" / "retain-eval" / "summary.json"
    if rpath.is_file():
        refs["retain"] = read_json(rpath)
    limits = []
    for k, v, ref, kind in bounds:
        if ref is not None:
            base = (refs[ref] or {}).get(k)
            if not _finite(base):
                raise ObliviateError(f"--{kind} {k}={v}*{ref}: the {ref} model's {k} is not known in {sweep_dir}")
            v = v * base
        limits.append((k, v, kind))

    def ok(vals: dict) -> tuple[bool, str]:
        for k, v, kind in limits:
            x = vals.get(k)
            if not _finite(x):
                return False, f"{k} missing"
            if (kind == "min" and x < v) or (kind == "max" and x > v):
                return False, f"{k}={x:.4g} {'<' if kind == 'min' else '>'} {v:.4g}"
        return True, ""

    def sort_key(vals: dict, idx_: int, ep: int = 0):
        t = tscore(vals[tkey]) if tkey and _finite(vals.get(tkey)) else -math.inf
        return (-score(vals[key]), -t, idx_, ep)

    rows, unranked = [], []
    for p in done:
        per = {e: v for e, v in metrics.get(p["id"], {}).items() if e >= 1}
        if not per:
            unranked.append({"id": p["id"], "idx": p["idx"], "reason": "no per-epoch evaluation"})
            continue
        cands = [max(per)] if epoch == "last" else sorted(per)
        good = [(e, per[e]) for e in cands if _finite(per[e].get(key)) and ok(per[e])[0]]
        if not good:
            e = max(per)
            why = ok(per[e])[1] if _finite(per[e].get(key)) else f"{key} missing"
            unranked.append({"id": p["id"], "idx": p["idx"], "epoch": e, "reason": why, "values": per[e]})
            continue
        e, vals = min(good, key=lambda ev: sort_key(ev[1], p["idx"], ev[0]))
        rows.append({"id": p["id"], "idx": p["idx"], "name": f"p{p['idx']:03d}", "epoch": e,
                     "saved_epoch": p["final_epoch"], "run_dir": p["run_dir"], "settings": p["settings"],
                     "values": vals})
    rows.sort(key=lambda r: sort_key(r["values"], r["idx"]))
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    front = pareto_front(rows + [u for u in unranked if "values" in u])
    rank1 = rows[0] if rows else None
    rec = {
        # the rule as given, as --config reads it back; the sweep folder absolute (any working directory)
        "command": "select", "config": {**config.to_dict(), "sweep": os.path.abspath(sweep_dir)},
        "sweep": os.path.abspath(sweep_dir), "grid_hash": grid.hash, "n_points": len(points), "n_done": len(done),
        "rule": {"by": by, "tie_break": tie_break, "min": list(mins), "max": list(maxs), "epoch": epoch,
                 "then": "grid order (predeclared)"},
        "blind": True,
        "ranking_uses": [k for k in (key, tkey) if k],
        "filters_use": sorted({k for k, _, _ in limits}),
        "bounds": [{"key": k, "kind": kind, "value": v} for k, v, kind in limits],
        "references": refs,
        "rank1": rank1, "ranking": rows, "unranked": unranked, "pareto_front": front,
        "selected_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if rank1 is not None and rank1["saved_epoch"] != rank1["epoch"]:
        rec["note"] = (f"{rank1['name']}'s saved model holds epoch {rank1['saved_epoch']}, not the ranked epoch "
                       f"{rank1['epoch']} (set select: {key} in the grid to keep the best epoch's weights)")
    if write:
        atomic_write_json(sweep_dir / "selection.json", rec)
    return rec


def format_table(rec: dict, keys=(FQ, MU, "forget_truth_ratio", "forget_Q_A_Prob")) -> str:
    keys = list(dict.fromkeys([*rec["ranking_uses"], *keys]))
    head = f"{'rank':>4} {'point':<6} {'epoch':>5} " + "".join(f"{k[:18]:>19}" for k in keys) + "  pareto  settings"
    lines = [head]
    front = set(rec["pareto_front"])
    for r in rec["ranking"]:
        vals = "".join(f"{format(r['values'][k], '.4g') if _finite(r['values'].get(k)) else '-':>19}" for k in keys)
        s = r["settings"]
        what = " ".join([s["method"]] + [f"{k}={v}" for k, v in {**s["train"], **s["options"], **s["robust"]}.items()])
        lines.append(f"{r['rank']:>4} {r['name']:<6} {r['epoch']:>5} {vals}  {'*' if r['id'] in front else ' ':^6}  {what}")
    for u in rec["unranked"]:
        lines.append(f"{'-':>4} p{u['idx']:03d}  unranked: {u['reason']}")
    return "\n".join(lines)
