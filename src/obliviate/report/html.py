"""``obliviate report``: one self-contained HTML page (inline SVG, inline CSS, no script, no network) and
its Markdown twin: FQ vs MU scatter with the Pareto front and the selected point, per-epoch curves, the
ranked table (with OpenUnlearning's aggregates), the audit table with intervals, the run configurations; for eval
folders, their headline and aggregates; for a meta-evaluation folder, faithfulness
vs robustness per metric, every model's knowledge score per metric, and the metric table."""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path

from ..errors import ObliviateError
from ..io import atomic_write_text
from .collect import FQ, MU, ReportData, collect, finite

W, H, PAD = 520, 340, 56
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
esc = html.escape


def fmt(v, digits: int = 4) -> str:
    return format(v, f".{digits}g") if finite(v) else "–"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


class _Axes:
    """A linear or log10 axis pair mapping data to SVG pixels."""

    def __init__(self, xs, ys, logx=False, int_x=False):
        self.logx, self.int_x = logx, int_x
        tx = [self.fx(x) for x in xs]
        self.x0, self.x1 = (min(tx), max(tx)) if tx else (0.0, 1.0)
        self.y0, self.y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        for a in ("x", "y"):
            lo, hi = getattr(self, a + "0"), getattr(self, a + "1")
            pad = (hi - lo) * 0.08 or (abs(lo) * 0.1 or 0.5)
            setattr(self, a + "0", lo - pad)
            setattr(self, a + "1", hi + pad)

    def fx(self, x):
        return math.log10(max(x, 1e-300)) if self.logx else x

    def px(self, x):
        return PAD + (self.fx(x) - self.x0) / (self.x1 - self.x0) * (W - PAD - 16)

    def py(self, y):
        return H - PAD + 8 - (y - self.y0) / (self.y1 - self.y0) * (H - PAD - 16)

    def frame(self, xlabel: str, ylabel: str) -> list[str]:
        out = [f'<rect x="{PAD}" y="8" width="{W - PAD - 16}" height="{H - PAD - 8}" fill="none" stroke="#999"/>']
        xt = (list(range(math.ceil(self.x0), math.floor(self.x1) + 1)) if self.int_x else _ticks(self.x0, self.x1))
        for t in xt:
            x = PAD + (t - self.x0) / (self.x1 - self.x0) * (W - PAD - 16)
            lab = f"1e{t:.1f}" if self.logx else fmt(t, 3)
            out.append(f'<line x1="{x:.1f}" y1="{H - PAD + 8}" x2="{x:.1f}" y2="{H - PAD + 13}" stroke="#999"/>'
                       f'<text x="{x:.1f}" y="{H - PAD + 26}" text-anchor="middle" font-size="11">{esc(lab)}</text>')
        for t in _ticks(self.y0, self.y1):
            y = self.py(t)
            out.append(f'<line x1="{PAD - 5}" y1="{y:.1f}" x2="{PAD}" y2="{y:.1f}" stroke="#999"/>'
                       f'<text x="{PAD - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{fmt(t, 3)}</text>')
        out.append(f'<text x="{(W + PAD) / 2:.0f}" y="{H - 8}" text-anchor="middle" font-size="12">{esc(xlabel)}</text>')
        out.append(f'<text x="14" y="{H / 2:.0f}" text-anchor="middle" font-size="12" '
                   f'transform="rotate(-90 14 {H / 2:.0f})">{esc(ylabel)}</text>')
        return out


def scatter_svg(data: ReportData) -> str:
    pts = [p for p in data.points if finite(p.values.get(FQ)) and finite(p.values.get(MU))]
    refs = []
    for s in data.sweeps:
        for name, summ in (("before unlearning", s.get("full")), ("retain model", s.get("retain"))):
            if summ and finite(summ.get(FQ)) and finite(summ.get(MU)):
                refs.append((name, summ[FQ], summ[MU]))
    if not pts:
        return '<p class="empty" id="scatter">No point has both forget quality and model utility.</p>'
    logx = all(p.values[FQ] > 0 for p in pts) and all(r[1] > 0 for r in refs)
    ax = _Axes([p.values[FQ] for p in pts] + [r[1] for r in refs], [p.values[MU] for p in pts] + [r[2] for r in refs],
               logx=logx)
    out = [f'<svg id="scatter" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'role="img" aria-label="forget quality vs model utility">']
    out += ax.frame(("log10 " if logx else "") + "forget quality (higher = closer to the retain model)",
                    "model utility")
    front = sorted((p for p in pts if p.pareto), key=lambda p: p.values[FQ])
    if len(front) > 1:
        path = " ".join(f"{ax.px(p.values[FQ]):.1f},{ax.py(p.values[MU]):.1f}" for p in front)
        out.append(f'<polyline class="pareto" points="{path}" fill="none" stroke="#555" stroke-dasharray="4 3"/>')
    for p in pts:
        x, y = ax.px(p.values[FQ]), ax.py(p.values[MU])
        cls = "point" + (" pareto" if p.pareto else "") + (" selected" if p.selected else "")
        out.append(f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{"#d62728" if p.selected else "#1f77b4"}"'
                   f' fill-opacity="0.8"><title>{esc(p.name)} epoch {p.epoch}: {esc(p.label)}; FQ {fmt(p.values[FQ])},'
                   f' MU {fmt(p.values[MU])}</title></circle>')
        if p.selected:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="10" fill="none" stroke="#d62728" stroke-width="2"/>'
                       f'<text x="{x + 12:.1f}" y="{y - 8:.1f}" font-size="12" fill="#d62728">selected {esc(p.name)}</text>')
    for name, fq, mu in refs:
        x, y = ax.px(fq), ax.py(mu)
        out.append(f'<rect class="reference" x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="#2ca02c">'
                   f'<title>{esc(name)}: FQ {fmt(fq)}, MU {fmt(mu)}</title></rect>'
                   f'<text x="{x + 8:.1f}" y="{y + 14:.1f}" font-size="11" fill="#2ca02c">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def curves_svg(data: ReportData, key: str) -> str:
    series = [(p, sorted((e, v[key]) for e, v in p.epochs.items() if finite(v.get(key)))) for p in data.points]
    series = [(p, s) for p, s in series if s]
    if not series:
        return f'<p class="empty">No per-epoch {esc(key)}.</p>'
    logy = key == FQ and all(v > 0 for _, s in series for _, v in s)
    tr = (lambda v: math.log10(v)) if logy else (lambda v: v)
    ax = _Axes([e for _, s in series for e, _ in s], [tr(v) for _, s in series for _, v in s], int_x=True)
    out = [f'<svg class="curves" data-key="{esc(key)}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" role="img" aria-label="{esc(key)} per epoch">']
    out += ax.frame("epoch (0 = before unlearning)", ("log10 " if logy else "") + key)
    for i, (p, s) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        pts = " ".join(f"{ax.px(e):.1f},{ax.py(tr(v)):.1f}" for e, v in s)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="{3 if p.selected else 1.5}">'
                   f'<title>{esc(p.name)}: {esc(p.label)}</title></polyline>')
        e, v = s[-1]
        out.append(f'<text x="{ax.px(e) + 4:.1f}" y="{ax.py(tr(v)) + 4:.1f}" font-size="10" fill="{c}">{esc(p.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


AGGREGATE_COLUMNS = ("memorisation_score", "privacy_score", "utility_score", "openunlearning_aggregate")
TABLE_KEYS = (FQ, MU, "forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE") + AGGREGATE_COLUMNS
EVAL_KEYS = {"tofu": (FQ, MU, "forget_truth_ratio", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_fluency")
             + AGGREGATE_COLUMNS,
             "muse": ("verbmem_f", "knowmem_f", "knowmem_r", "privleak_auc", "privleak")}


def _points_rows(data: ReportData):
    pts = sorted(data.points, key=lambda p: (p.rank is None, p.rank or 0, p.name))
    for p in pts:
        shown = {**p.values, **p.aggregates}
        yield p, [fmt(shown.get(k)) for k in TABLE_KEYS]


def _eval_tables(data: ReportData):
    """(benchmark, its columns, [(eval, cells)]) per benchmark of the eval folders given, TOFU first."""
    for bench in ("tofu", "muse"):
        evs = [e for e in data.evals if (e["benchmark"] == "tofu") == (bench == "tofu")]
        if evs:
            keys = EVAL_KEYS[bench]
            yield bench, keys, [(e, [fmt(e["summary"].get(k)) for k in keys]) for e in evs]


EVAL_CAPTION = ("OpenUnlearning's aggregates (docs/metrics.md): memorisation, privacy (needs the eval's "
                "--retain-eval), utility (with forget_fluency when eval had --fluency-classifier) and their "
                "harmonic mean; 1 = best.")


def _audit_cell(r) -> str:
    v, ci = r["value"], r["ci"]
    if not finite(v):
        return "n/a"
    s = f"{100 * v:.2f} %" if r["percent"] else fmt(v)
    if ci and len(ci) == 2 and all(finite(c) for c in ci):
        s += f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if r["percent"] else f" [{fmt(ci[0])}, {fmt(ci[1])}]"
    return s


def _audit_table(rows):
    """rows -> (roles, [(view, metric, headline, {role: cell})])."""
    roles = list(dict.fromkeys(r["model"] for r in rows))
    table: dict = {}
    for r in rows:
        table.setdefault((r["view"], r["metric"], r["headline"]), {})[r["model"]] = _audit_cell(r)
    return roles, [(v, m, h, cells) for (v, m, h), cells in table.items()]


def _sweep_lines(s: dict) -> list[str]:
    g, sel = s["grid"], s.get("selection")
    out = [f"Sweep {s['dir']}: {g['n_points']} points predeclared, grid hash {g['grid_hash']}"
           + (f", declared {g.get('declared_at')}" if g.get("declared_at") else "") + "."]
    if g.get("varying"):
        out.append("Varied: " + ", ".join(g["varying"]) + ".")
    if sel:
        rule = sel["rule"]
        r1 = sel.get("rank1")
        out.append(f"Selection (blind, ranking uses only {', '.join(sel['ranking_uses'])}): by {rule['by']}"
                   + (f", tie-break {rule['tie_break']}" if rule.get("tie_break") else "")
                   + "".join(f", min {m}" for m in rule.get("min") or []) + "".join(f", max {m}" for m in rule.get("max") or [])
                   + f", epoch {rule['epoch']}, then grid order"
                   + (f" -> rank-1 p{r1['idx']:03d} (epoch {r1['epoch']})." if r1 else " -> no point passes."))
    return out




# ------------------------------------------------------------------------------------------ meta-evaluation
ME_FIELDS = ("faithfulness", "R", "Q", "robustness", "overall")
ROLE_COLORS = {"positive": "#1f77b4", "negative": "#ff7f0e", "unlearned": "#7f7f7f"}


def _me_cell(row: dict, f: str) -> str:
    v, ci = row.get(f), ((row.get("ci") or {}).get(f) or {})
    if not finite(v):
        return "–"
    return f"{v:.3f}" + (f" [{ci['lo']:.3f}, {ci['hi']:.3f}]" if finite(ci.get("lo")) and finite(ci.get("hi")) else "")


def faithfulness_robustness_svg(me: dict) -> str:
    """One point per metric: faithfulness (x) against robustness (y), each with its bootstrap interval as
    whiskers; the dashed line is chance faithfulness (0.5)."""
    rows = [r for r in me["table"]["metrics"] if finite(r.get("faithfulness")) and finite(r.get("robustness"))]
    if not rows:
        return '<p class="empty">No metric has both faithfulness and robustness.</p>'
    ax = _Axes([0.0, 1.0], [0.0, 1.0])
    out = [f'<svg class="me-fr" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'role="img" aria-label="faithfulness vs robustness per metric">']
    out += ax.frame("faithfulness (AUC positives vs negatives)", "robustness HM(R, Q)")
    out.append(f'<line x1="{ax.px(0.5):.1f}" y1="{ax.py(0):.1f}" x2="{ax.px(0.5):.1f}" y2="{ax.py(1):.1f}" '
               'stroke="#bbb" stroke-dasharray="4 3"/>')
    for i, r in enumerate(rows):
        c = COLORS[i % len(COLORS)]
        x, y = ax.px(r["faithfulness"]), ax.py(r["robustness"])
        ci = r.get("ci") or {}
        fc, rc = ci.get("faithfulness") or {}, ci.get("robustness") or {}
        if finite(fc.get("lo")) and finite(fc.get("hi")):
            out.append(f'<line class="ci" x1="{ax.px(fc["lo"]):.1f}" y1="{y:.1f}" x2="{ax.px(fc["hi"]):.1f}" '
                       f'y2="{y:.1f}" stroke="{c}" stroke-opacity="0.5"/>')
        if finite(rc.get("lo")) and finite(rc.get("hi")):
            out.append(f'<line class="ci" x1="{x:.1f}" y1="{ax.py(rc["lo"]):.1f}" x2="{x:.1f}" '
                       f'y2="{ax.py(rc["hi"]):.1f}" stroke="{c}" stroke-opacity="0.5"/>')
        out.append(f'<circle class="metric" cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{c}"><title>{esc(r["key"])}: '
                   f'faithfulness {_me_cell(r, "faithfulness")}, robustness {_me_cell(r, "robustness")}, '
                   f'overall {_me_cell(r, "overall")}</title></circle>'
                   f'<text x="{x + 6:.1f}" y="{y - 5 - 9 * (i % 3):.1f}" font-size="9" fill="{c}">{esc(r["key"])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def knowledge_strips_svg(me: dict) -> str:
    """One row per metric: every model's knowledge score m (higher = knows the forget facts) on the row's own
    scale, coloured by pool (positives, negatives, unlearned), with the metric's cut ("called unlearned" at or
    left of it). A faithful metric puts every positive right of every negative."""
    from ..metaeval.scores import knowledge

    models = me["table"]["models"]
    rows = []
    for r in me["table"]["metrics"]:
        vals = [(m["name"], m["role"], knowledge(r["key"], (m.get("summary") or {}).get(r["key"]))) for m in models]
        vals = [v for v in vals if finite(v[2])]
        if vals:
            rows.append((r, vals))
    if not rows:
        return '<p class="empty">No model has a knowledge score.</p>'
    left, right, rh = 190, W - 20, 22
    h = 30 + rh * len(rows) + 24
    out = [f'<svg class="me-strips" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" '
           f'viewBox="0 0 {W} {h}" role="img" aria-label="knowledge score of every model, per metric">']
    for j, (role, c) in enumerate(ROLE_COLORS.items()):
        out.append(f'<circle cx="{left + 110 * j:.0f}" cy="14" r="4" fill="{c}"/>'
                   f'<text x="{left + 8 + 110 * j:.0f}" y="18" font-size="11">{role}</text>')
    for i, (r, vals) in enumerate(rows):
        y = 30 + rh * i + rh / 2
        lo, hi = min(v for *_, v in vals), max(v for *_, v in vals)
        if finite(r.get("threshold")):
            lo, hi = min(lo, r["threshold"]), max(hi, r["threshold"])
        span = (hi - lo) or 1.0

        def px(v, lo=lo, span=span):
            return left + 6 + (v - lo) / span * (right - left - 12)

        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{esc(r["key"])}</text>'
                   f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        if finite(r.get("threshold")):
            t = px(r["threshold"])
            out.append(f'<line class="cut" x1="{t:.1f}" y1="{y - rh / 2 + 2:.1f}" x2="{t:.1f}" y2="{y + rh / 2 - 2:.1f}" '
                       f'stroke="#d62728" stroke-dasharray="2 2"><title>cut: m &lt;= {fmt(r["threshold"])} is called '
                       'unlearned</title></line>')
        for k, (name, role, v) in enumerate(vals):
            dy = (k % 3 - 1) * 4  # a little vertical jitter so equal values stay visible
            out.append(f'<circle class="model {esc(role)}" cx="{px(v):.1f}" cy="{y + dy:.1f}" r="3.5" '
                       f'fill="{ROLE_COLORS.get(role, "#000")}" fill-opacity="0.8"><title>{esc(name)} ({esc(role)}): '
                       f'm = {fmt(v)}</title></circle>')
    out.append(f'<text x="{(left + right) / 2:.0f}" y="{h - 6}" text-anchor="middle" font-size="11">knowledge score m '
               '(own scale per row; higher = knows more)</text></svg>')
    return "\n".join(out)


def _me_caption(me: dict) -> str:
    t, p = me["table"], me["pools"]
    roles = [m["role"] for m in t["models"]]
    return (f"{me['dir']}: {len(t['metrics'])} metrics over {len(roles)} models ({roles.count('positive')} positive, "
            f"{roles.count('negative')} negative, {roles.count('unlearned')} unlearned); base {p.get('model')}, "
            f"data {p.get('data')} {p.get('split') or '(MUSE)'}; retain control {t.get('retain_control')}; "
            f"{t.get('n_boot')} bootstrap replicates, 95 % intervals.")


def metaeval_html(me: dict) -> list[str]:
    b = [f"<p>{esc(_me_caption(me))}</p>", '<div class="figs"><figure>', faithfulness_robustness_svg(me),
         "<figcaption>Faithfulness against robustness per metric, with bootstrap intervals; dashed: chance "
         "faithfulness.</figcaption></figure><figure>", knowledge_strips_svg(me),
         "<figcaption>Every model's knowledge score per metric; red tick: the cut of \"called unlearned\" "
         "(robustness is measured on those models).</figcaption></figure></div>",
         '<table class="metaeval"><thead><tr><th class="l">metric</th>'
         + "".join(f"<th>{f}</th>" for f in ME_FIELDS) + "<th>P / N / called unlearned</th></tr></thead><tbody>"]
    for r in me["table"]["metrics"]:
        b.append(f"<tr><td class=\"l\">{esc(r['key'])}</td>" + "".join(f"<td>{_me_cell(r, f)}</td>" for f in ME_FIELDS)
                 + f"<td>{r.get('n_positive')} / {r.get('n_negative')} / {r.get('n_called_unlearned')}</td></tr>")
    b.append("</tbody></table>")
    return b


def metaeval_markdown(me: dict) -> list[str]:
    out = [_me_caption(me), "", "| metric | " + " | ".join(ME_FIELDS) + " | P / N / called unlearned |",
           "|---|" + "---|" * (len(ME_FIELDS) + 1)]
    for r in me["table"]["metrics"]:
        out.append(f"| {r['key']} | " + " | ".join(_me_cell(r, f) for f in ME_FIELDS)
                   + f" | {r.get('n_positive')} / {r.get('n_negative')} / {r.get('n_called_unlearned')} |")
    return out + [""]


def render_html(data: ReportData, title: str = "obliviate report") -> str:
    css = ("body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1150px}"
           "table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
           "text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}tr.selected{background:#fde8e8;font-weight:600}"
           ".figs{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-size:12px;color:#555}"
           "pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto;max-height:300px}.note{color:#8a6d3b}")
    b = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
         f"<style>{css}</style></head><body>", f"<h1>{esc(title)}</h1>",
         f"<p>Generated {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} by obliviate from "
         f"{len(data.points)} run(s){', ' + str(len(data.sweeps)) + ' sweep(s)' if data.sweeps else ''}"
         f"{', ' + str(len(data.evals)) + ' evaluation(s)' if data.evals else ''}"
         f"{', ' + str(len(data.audits)) + ' audit(s)' if data.audits else ''}.</p>"]
    for s in data.sweeps:
        b += [f"<p class=\"sweep\">{esc(line)}</p>" for line in _sweep_lines(s)]
    for n in data.notes:
        b.append(f'<p class="note">{esc(n)}</p>')
    if data.points:
        b += ["<h2 id=\"tradeoff\">Forget quality vs model utility</h2>", '<div class="figs"><figure>',
              scatter_svg(data), "<figcaption>Each point at its shown epoch (the selection's, else the saved "
              "model's). Dashed: Pareto front. Red ring: blind rank-1. Green squares: the model before "
              "unlearning and the retain model.</figcaption></figure></div>",
              "<h2 id=\"epochs\">Per-epoch curves</h2>", '<div class="figs">']
        for k in (FQ, MU):
            b += ["<figure>", curves_svg(data, k), f"<figcaption>{esc(k)} after each epoch</figcaption></figure>"]
        b += ["</div>", "<h2 id=\"ranking\">Runs</h2>", '<table id="runs"><thead><tr><th>rank</th><th class="l">run</th>'
              "<th>epoch</th>" + "".join(f"<th>{esc(k)}</th>" for k in TABLE_KEYS)
              + "<th>Pareto</th><th class=\"l\">settings</th></tr></thead><tbody>"]
        for p, cells in _points_rows(data):
            b.append(f"<tr class=\"{'selected' if p.selected else ''}\"><td>{p.rank or '–'}</td><td class=\"l\">"
                     f"{esc(p.name)}</td><td>{p.epoch if p.epoch is not None else '–'}</td>"
                     + "".join(f"<td>{c}</td>" for c in cells)
                     + f"<td>{'yes' if p.pareto else ''}</td><td class=\"l\">{esc(p.label)}</td></tr>")
        b.append("</tbody></table>")
    if data.evals:
        b += ["<h2 id=\"evals\">Evaluations</h2>", f"<p>{esc(EVAL_CAPTION)}</p>"]
        for bench, keys, rows in _eval_tables(data):
            b.append(f'<table class="evals {bench}"><thead><tr><th class="l">eval</th><th class="l">model</th>'
                     + "".join(f"<th>{esc(k)}</th>" for k in keys) + "</tr></thead><tbody>")
            for e, cells in rows:
                b.append(f'<tr><td class="l">{esc(e["dir"])}</td><td class="l">{esc(str(e["model"]))}</td>'
                         + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            b.append("</tbody></table>")
    for me in data.metaevals:
        b.append("<h2 id=\"metaeval\">Meta-evaluation: which metric can you trust?</h2>")
        b += metaeval_html(me)
    if data.audits or data.points:  # a meta-evaluation alone has no audit section
        b.append("<h2 id=\"audit\">Audit</h2>")
    if not data.audits and data.points:
        b.append("<p class=\"empty\">No audit.json given.</p>")
    for a in data.audits:
        roles, table = _audit_table(a["rows"])
        b.append(f"<p>{esc(a['path'])}" + (f" — forget set {esc(str(a['forget']))}" if a.get("forget") else "")
                 + ". Value [95 % interval].</p>")
        b.append('<table class="audit"><thead><tr><th class="l">view</th><th class="l">metric</th>'
                 + "".join(f"<th>{esc(str(r))}</th>" for r in roles) + "</tr></thead><tbody>")
        for view, metric, head, cells in table:
            m = f"<b>{esc(metric)}</b>" if head else esc(metric)
            b.append(f"<tr><td class=\"l\">{esc(str(view))}</td><td class=\"l\">{m}</td>"
                     + "".join(f"<td>{esc(cells.get(r, '—'))}</td>" for r in roles) + "</tr>")
        b.append("</tbody></table>")
    if data.points:
        b.append("<h2 id=\"configs\">Run configurations</h2>")
        for p in data.points:
            cfg = {k: v for k, v in p.config.items() if k in ("model", "method", "method_config", "forget", "retain",
                                                              "train", "robust", "eval", "max_length", "style")}
            b.append(f"<details><summary>{esc(p.name)}: {esc(p.label)} ({esc(p.run_dir)})</summary>"
                     f"<pre>{esc(json.dumps(cfg, indent=1, default=str))}</pre></details>")
    b.append("</body></html>")
    return "\n".join(b) + "\n"


def render_markdown(data: ReportData, title: str = "obliviate report") -> str:
    out = [f"# {title}", ""]
    for s in data.sweeps:
        out += _sweep_lines(s) + [""]
    out += [f"> {n}" for n in data.notes]
    if data.points:
        out += ["## Runs", "", "| rank | run | epoch | " + " | ".join(TABLE_KEYS) + " | Pareto | settings |",
                "|---|---|---|" + "---|" * len(TABLE_KEYS) + "---|---|"]
        for p, cells in _points_rows(data):
            name = f"**{p.name}** (selected)" if p.selected else p.name
            out.append(f"| {p.rank or '–'} | {name} | {p.epoch} | " + " | ".join(cells)
                       + f" | {'yes' if p.pareto else ''} | {p.label} |")
        out.append("")
        out += ["## Per-epoch forget quality / model utility", ""]
        for p in data.points:
            seq = ", ".join(f"{e}: {fmt(v.get(FQ), 3)} / {fmt(v.get(MU), 3)}" for e, v in sorted(p.epochs.items()))
            out.append(f"- {p.name}: {seq}")
        out.append("")
    if data.evals:
        out += ["## Evaluations", "", EVAL_CAPTION, ""]
        for bench, keys, rows in _eval_tables(data):
            out += ["| eval | model | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
            out += [f"| {e['dir']} | {e['model']} | " + " | ".join(cells) + " |" for e, cells in rows]
            out.append("")
    for me in data.metaevals:
        out += ["## Meta-evaluation", ""] + metaeval_markdown(me)
    for a in data.audits:
        roles, table = _audit_table(a["rows"])
        out += [f"## Audit ({a['path']})", "", "| view | metric | " + " | ".join(map(str, roles)) + " |",
                "|---|---|" + "---|" * len(roles)]
        for view, metric, head, cells in table:
            out.append(f"| {view} | {'**' + metric + '**' if head else metric} | "
                       + " | ".join(cells.get(r, "—") for r in roles) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def write_report(config=None, *args, out: str | Path | None = None, **settings) -> tuple[Path, Path]:
    """Write ``out`` (HTML) and its Markdown twin (same name, ``.md``): ``write_report(ReportConfig(inputs=...),
    out)``, or the keyword convenience ``write_report(inputs, out, audits=(), title="obliviate report")``.
    Returns both paths."""
    from ..config import ReportConfig, config_of_call

    config, out = config_of_call(ReportConfig, config, args, settings, ("out", "audits", "title"), out,
                                 call="write_report", required=1, first="inputs")
    config.validate()
    if out is None:
        raise ObliviateError("write_report: give the HTML file's path (out)")
    title = config.title
    data = collect(list(config.inputs), list(config.audit))
    out = Path(out)
    md = out.with_suffix(".md") if out.suffix != ".md" else out.with_name(out.stem + ".report.md")
    atomic_write_text(out, render_html(data, title))
    atomic_write_text(md, render_markdown(data, title))
    return out, md
