"""The audit report: one self-contained HTML file (images embedded) a person can read."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

__all__ = ["render_report", "METRIC_COLUMNS"]

METRIC_COLUMNS = [
    ("identity_acc_worst", "identity, worst attacker", "pct"),
    ("identity_acc_cnn", "identity, CNN", "pct"),
    ("identity_acc_linear", "identity, linear", "pct"),
    ("utility_acc_best", "utility, trained on output", "pct"),
    ("utility_orig_clf_acc", "utility, original-trained", "pct"),
    ("utility_retention", "utility retention", "pct"),
    ("linkage_rank1", "linkage Rank-1", "pct"),
    ("linkage_rank5", "linkage Rank-5", "pct"),
    ("linkage_dlib_rank1", "dlib Rank-1", "pct"),
    ("faceness", "faceness", "pct"),
    ("deid", "DEID", "pct"),
    ("div", "DIV", "pct"),
    ("k_anonymity", "k", "int"),
    ("ssim", "SSIM", "f3"),
    ("psnr", "PSNR dB", "f1"),
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.6rem 1rem;border-radius:6px;font-weight:600}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.ref td{background:#f7f7ff;font-style:italic}
.pass{color:#08660d;font-weight:700}.fail{color:#b00020;font-weight:700}img{max-width:100%;border:1px solid #ddd;margin:.3rem 0}
code,pre{background:#f6f6f6;padding:.1rem .3rem;border-radius:3px}pre{padding:.6rem;overflow:auto;font-size:.75rem}
.grid{display:flex;flex-wrap:wrap;gap:1rem}.grid figure{margin:0;flex:1 1 480px}figcaption{font-size:.8rem;color:#555}
"""


def _fmt(v, kind: str) -> str:
    if v is None:
        return "—"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "int":
        return f"{v:.0f}"
    if kind == "f3":
        return f"{v:.3f}"
    return f"{v:.1f}"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def render_report(path: str | Path, *, title: str, dataset: dict, rows: list[dict], verdicts: dict[str, tuple[bool, list[str]]],
                  figures: list[tuple[str, Path]], config: dict, notes: list[str] | None = None) -> Path:
    """Write the report. ``rows``: one dict per method (``method`` + metrics), reference rows first."""
    cols = [c for c in METRIC_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in cols)
    body = []
    chance = rows[0].get("identity_chance") if rows else None
    uchance = rows[0].get("utility_chance") if rows else None
    body.append(f'<tr class="ref"><td>chance</td>' + "".join(
        f"<td>{_fmt(chance, 'pct') if k.startswith('identity_acc') else _fmt(uchance, 'pct') if k in ('utility_acc_best', 'utility_orig_clf_acc') else ''}</td>"
        for k, _, _ in cols) + "<td></td></tr>")
    for r in rows:
        name = r["method"]
        cls = ' class="ref"' if name in ("original", "none") else ""
        v = verdicts.get(name)
        verdict = "" if v is None else (f'<span class="pass">PASS</span>' if v[0] else
                                         f'<span class="fail">FAIL</span>')
        body.append(f"<tr{cls}><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(r.get(k), kind)}</td>" for k, _, kind in cols)
                    + f"<td>{verdict}</td></tr>")
    reasons = "".join(
        f"<li><b>{html.escape(m)}</b>: " + ("passes every gate" if ok else html.escape("; ".join(rs))) + "</li>"
        for m, (ok, rs) in verdicts.items())
    figs = "".join(f"<figure>{_img(p)}<figcaption>{html.escape(cap)}</figcaption></figure>" for cap, p in figures)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in (notes or []))
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<p class="banner">INTERNAL AUDIT — this report shows original faces. Do not publish it or copy anything from it into a release.</p>
<h1>{html.escape(title)}</h1>
<p>Dataset <b>{html.escape(str(dataset.get('name')))}</b>, digest <code>{html.escape(str(dataset.get('digest')))}</code>,
{dataset.get('rows', '?')} images, {dataset.get('identities', '?')} identities. Attackers are trained on each method's
de-identified training split and tested on its de-identified test split (the informed attacker); lower identity accuracy is
more private, higher utility accuracy more useful.</p>
<h2>Metrics</h2><table><tr><th>method</th>{head}<th>verdict</th></tr>{''.join(body)}</table>
<h2>Verdicts against the release gates</h2><ul>{reasons}</ul>
{f'<h2>Notes</h2><ul>{notes_html}</ul>' if notes_html else ''}
<h2>Figures</h2><div class="grid">{figs}</div>
<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre>
</body></html>"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path
