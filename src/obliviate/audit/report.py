"""audit.md: the model-card table of an audit.json (every number in it is a metric value, interval or delta that
:mod:`obliviate.audit.metrics` recomputes from the per-item records)."""

from __future__ import annotations

from .core import ROLES


def fmt_value(v, percent: bool) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f} %" if percent else f"{v:.3f}"


def fmt_ci(ci, percent: bool) -> str:
    if not ci:
        return ""
    return f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if percent else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def fmt_delta(d, percent: bool) -> str:
    if d is None:
        return "n/a"
    return f"{100 * d:+.2f} pp" if percent else f"{d:+.3f}"


def render_md(audit: dict) -> str:
    roles = [r for r in ROLES if r in audit["models"]]
    lines = ["# Unlearning audit", ""]
    lines.append("Models: " + "; ".join(f"{r} = `{audit['models'][r]}`" for r in roles) + ".")
    lines.append(f"Forget set: `{audit['forget']}` ({audit['n_forget']} items). Seed {audit['settings']['seed']}; "
                 "intervals: bootstrap 95 % over items. `n/a`: no eligible item.")
    lines += ["", "| view | metric | " + " | ".join(roles) + " | Δ vs full | Δ vs retain |",
              "|---|---|" + "---|" * len(roles) + "---|---|"]
    for view, res in audit["views"].items():
        if "models" not in res:
            continue
        for metric, spec in res["metric_specs"].items():
            pct = spec.get("format") == "percent"
            cells = []
            for r in roles:
                m = res["models"].get(r, {}).get("metrics", {}).get(metric)
                cells.append("—" if m is None else fmt_value(m["value"], pct) + fmt_ci(m["ci"], pct))
            a = res["models"].get("audited", {}).get("metrics", {}).get(metric, {})
            name = f"**{metric}**" if metric == res["headline"] else metric
            lines.append(f"| {view} | {name} | " + " | ".join(cells) + f" | {fmt_delta(a.get('delta_vs_full'), pct)}"
                         f" | {fmt_delta(a.get('delta_vs_retain'), pct)} |")
    bc = audit["views"].get("base_control")
    if bc is not None:
        lines += ["", "## Base control", ""]
        if "missing" in bc:
            lines.append(f"Not run: {bc['missing']}.")
        else:
            lines += ["| view | metric | base | audited − base |", "|---|---|---|---|"]
            for view, row in bc["rows"].items():
                pct = audit["views"][view]["metric_specs"][row["metric"]].get("format") == "percent"
                lines.append(f"| {view} | {row['metric']} | {fmt_value(row['base'], pct)}{fmt_ci(row['ci'], pct)} | "
                             f"{fmt_delta(row['audited_minus_base'], pct)} |")
    skipped = {v: r["skipped"] for v, r in audit["views"].items() if "skipped" in r}
    if skipped:
        lines += ["", "## Views not run", ""] + [f"- {v}: {why}" for v, why in skipped.items()]
    if audit.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in audit["notes"]]
    return "\n".join(lines) + "\n"
