"""How a view's numbers follow from its per-item records (the only code that turns records into numbers).

A view declares its metrics as small JSON-able specs, stored in audit.json next to the records they read, so
every number of the report can be recomputed from the file alone:

* ``{"kind": "mean", "field": f}``: the mean of ``item[f]`` over the items where it is not null (the
  eligible items; ``n`` counts them);
* ``{"kind": "ratio", "num": a, "den": b}``: ``sum(item[a]) / sum(item[b])`` over the items where ``item[b]``
  is not null (pooled rates, e.g. leaked fact units over eligible fact units); null when the sum is 0; ``n``
  counts the items whose ``item[b]`` is not 0;
* ``{"kind": "mean_of" | "max_of", "of": [metric names]}``: the mean / max of other metrics of the view,
  computed on the same items (so its bootstrap resamples items, not metrics).

A spec may carry ``"format": "percent"`` (a rate, shown in %) or ``"number"``; the computation ignores it.
The interval is :func:`obliviate.audit.stats.bootstrap_ci` of the metric over the items, seeded.
"""

from __future__ import annotations

from .stats import bootstrap_ci


def metric_value(name: str, specs: dict, items) -> float | None:
    spec = specs[name]
    kind = spec["kind"]
    if kind == "mean":
        vals = [it[spec["field"]] for it in items if it.get(spec["field"]) is not None]
        return sum(vals) / len(vals) if vals else None
    if kind == "ratio":
        rows = [it for it in items if it.get(spec["den"]) is not None]
        den = sum(it[spec["den"]] for it in rows)
        return sum(it[spec["num"]] for it in rows) / den if den else None
    if kind in ("mean_of", "max_of"):
        vals = [metric_value(m, specs, items) for m in spec["of"]]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        return max(vals) if kind == "max_of" else sum(vals) / len(vals)
    raise ValueError(f"unknown metric kind {kind!r}")


def metric_n(name: str, specs: dict, items) -> int:
    """Items the metric is defined on (for mean_of / max_of: items that count for any component)."""
    spec = specs[name]
    if spec["kind"] == "mean":
        return sum(it.get(spec["field"]) is not None for it in items)
    if spec["kind"] == "ratio":
        return sum(bool(it.get(spec["den"])) for it in items)
    return sum(any(_defined(m, specs, it) for m in spec["of"]) for it in items)


def _defined(name, specs, it) -> bool:
    spec = specs[name]
    if spec["kind"] == "mean":
        return it.get(spec["field"]) is not None
    if spec["kind"] == "ratio":
        return bool(it.get(spec["den"]))
    return any(_defined(m, specs, it) for m in spec["of"])


def summarize(specs: dict, items: list[dict], seed: int, n_boot: int) -> dict:
    """``{metric: {"value", "ci", "n"}}`` for every metric of a view on one model's records."""
    out = {}
    for name in specs:
        value = metric_value(name, specs, items)
        ci = bootstrap_ci(items, lambda s, _n=name: metric_value(_n, specs, s), seed=seed, n_boot=n_boot) \
            if value is not None else None
        out[name] = {"value": value, "ci": list(ci) if ci else None, "n": metric_n(name, specs, items)}
    return out
