"""One self-contained HTML page of a report: every table and plot (PNGs embedded as base64 data URIs), no external
files, scripts or fonts, so it can be opened, mailed or attached to an MLflow run as it is."""

from __future__ import annotations

import base64
import re
from html import escape
from typing import TYPE_CHECKING

from xtuner.analysis.report.tables import Table

if TYPE_CHECKING:
    from xtuner.analysis.report import Report

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#1d2329;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #d0d7de;
padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 .3em;font-size:.9em}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #d0d7de;padding:.25em .6em;white-space:nowrap}
th{background:#f3f5f7;text-align:center}td{text-align:right;font-variant-numeric:tabular-nums}
td:first-child{text-align:left;font-weight:500}
tr.ref td{font-style:italic;color:#57606a;background:#fafbfc}
td.sig{font-weight:700;color:#0a5d2c}
ul.notes{margin:.2em 0 1em;padding-left:1.2em;color:#57606a;font-size:.85em}
.plots{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.plots img{max-width:calc(50% - 1em);border:1px solid #eaeef2}
.tables{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}
td.text{text-align:left}
.meta{color:#57606a;font-size:.9em}.summary li{margin:.15em 0}
"""


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in t.columns)
    body = []
    for i, row in enumerate(t.rows):
        cls = ' class="ref"' if i >= len(t.rows) - t.reference_rows else ""
        cells = []
        for c in row:
            cls = "sig" if c.endswith("*") and len(c) > 1 else "" if _numeric(c) else "text"
            cells.append(f'<td class="{cls}">{escape(c)}</td>' if cls else f"<td>{escape(c)}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    notes = "".join(f"<li>{escape(n)}</li>" for n in t.notes)
    return (f'<div class="table"><table id="{escape(t.key)}"><caption>{escape(t.title)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>" + (f'<ul class="notes">{notes}</ul>' if notes else "") + "</div>")  # fmt: skip


NUMBER = re.compile(r"^[+<-]?\d[\d.]*( ± [\d.]+)?( \(\d+\))?\*?$")


def _numeric(cell: str) -> bool:
    return cell in ("", "-", "*") or bool(NUMBER.match(cell))


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{escape(name)}" title="{escape(name)}" src="data:image/png;base64,{data}">'


def page(report: Report) -> str:
    parts = [f"<h1>xtuner report: {escape(report.name)}</h1>",
             '<div class="meta">' + "<br>".join(escape(x) for x in report.header()) + "</div>"]  # fmt: skip
    lines = report.summary_lines()
    if lines:
        parts.append('<ul class="summary">' + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>")
    parts.append("<h2>Table 1</h2>")
    parts.append('<div class="tables">' + "".join(_table(t) for t in report.tables if t.key.startswith("table1"))
                 + "</div>")  # fmt: skip
    if "gap.png" in report.plots:
        parts.append('<div class="plots">' + _img("gap.png", report.plots["gap.png"]) + "</div>")
    for task in report.tasks:
        parts.append(f"<h2>{escape(task)}</h2>")
        from xtuner.analysis.report.render import INTERMEDIATE_TABLES

        keys = (f"languages_{task}", f"configs_{task}", *INTERMEDIATE_TABLES(task))
        parts += [_table(t) for t in report.tables if t.key in keys]
        imgs = [_img(n, report.plots[n]) for n in (f"heatmap_{task}.png", f"distance_{task}.png", f"dev_{task}.png",
                                                   f"intermediate_{task}.png") if n in report.plots]  # fmt: skip
        if imgs:
            parts.append('<div class="plots">' + "".join(imgs) + "</div>")
    parts.append(
        "<h2>Procedure</h2><ul>" + "".join(f"<li>{escape(x)}</li>" for x in report.procedure()) + "</ul>"
    )
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>xtuner report: {escape(report.name)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")  # fmt: skip
