"""Writing a `Report`: markdown (``report.md``), one csv per table, ``report.json``, the PNGs, the HTML page
(`xtuner.analysis.report.html`), and Table 1 for the terminal (rich, at most 100 columns)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xtuner.analysis.report.tables import Table
from xtuner.cluster.redact import redact_text
from xtuner.errors import XtunerError

if TYPE_CHECKING:
    from xtuner.analysis.report import Report

FORMATS = ("md", "html", "csv", "json")


def INTERMEDIATE_TABLES(task: str) -> tuple[str, str]:  # noqa: N802 - the intermediate section (xtuner/intermediate)
    return f"intermediate_{task}", f"intermediate_languages_{task}"


def file_name(name: str) -> str:
    """A table key or plot name as a file name: the ``[dev]`` of a task scored on the dev sets becomes ``_dev``
    (``configs_xnli[dev]`` -> ``configs_xnli_dev``), so no file name holds brackets."""
    return name.replace("[", "_").replace("]", "")


def parse_formats(value: str | None) -> list[str]:
    if not value:
        return list(FORMATS)
    out = [f.strip().lower() for f in value.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise XtunerError(
            f"--format: unknown format {bad[0]!r}; choose from {', '.join(FORMATS)} (comma-separated)"
        )
    return out


def _numeric(t: Table, i: int) -> bool:
    """A column of numbers (right-aligned): every non-empty cell starts like a number."""
    from xtuner.analysis.report.html import NUMBER

    cells = [row[i] for row in t.rows if i < len(row) and row[i] not in ("", "-", "*")]
    return bool(cells) and all(NUMBER.match(c) for c in cells)


def md_table(t: Table) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"**{t.title}**", "", "| " + " | ".join(map(esc, t.columns)) + " |",
             "|" + "|".join("---:" if _numeric(t, i) else "---" for i in range(len(t.columns))) + "|"]  # fmt: skip
    for i, row in enumerate(t.rows):
        cells = [esc(c) for c in row]
        if i >= len(t.rows) - t.reference_rows:
            cells[0] = f"*{cells[0]}*"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def markdown(report: Report) -> str:
    parts = [f"# xtuner report: {report.name}", "", *[f"- {line}" for line in report.header()], ""]
    parts += ["## Table 1", ""]
    for t in report.tables:
        if t.key.startswith("table1"):
            parts += [md_table(t), ""]
    if report.plots.get("gap.png"):
        parts += ["![transfer gap](gap.png)", ""]
    for task in report.tasks:
        parts += [f"## {task}", ""]
        for t in report.tables:
            if t.key in (f"configs_{task}", f"languages_{task}", *INTERMEDIATE_TABLES(task)):
                parts += [md_table(t), ""]
        for name in (f"heatmap_{task}.png", f"distance_{task}.png", f"dev_{task}.png", f"intermediate_{task}.png"):
            if name in report.plots:
                parts += [f"![{name[:-4]}]({file_name(name)})", ""]
    parts += ["## Procedure", "", *[f"- {line}" for line in report.procedure()], ""]
    return "\n".join(parts)


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else round(v, 6)
    if isinstance(v, list | dict):
        return json.dumps(v)
    return "" if v is None else v


def table_csv(t: Table) -> str:
    keys: list[str] = []
    for rec in t.records:
        keys += [k for k in rec if k not in keys]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for rec in t.records:
        w.writerow([_csv_value(rec.get(k)) for k in keys])
    return buf.getvalue()


def to_json(report: Report) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    data = {"name": report.name, "sweeps": report.selection.sweeps, "experiment": report.selection.experiment,
            "tracking_uri": report.selection.tracking_uri, "bootstrap": {"resamples": report.resamples,
            "seed": report.seed, "alpha": 0.05}, "notes": report.notes,
            "significance": [s.summary for s in report.significance],
            "tables": {t.key: {"title": t.title, "records": t.records, "notes": t.notes} for t in report.tables},
            "plots": sorted(file_name(p) for p in report.plots)}  # fmt: skip
    return json.dumps(clean(data), indent=1) + "\n"


def write(report: Report, out: Path, formats: list[str]) -> list[Path]:
    """Write the files of `formats` (PNGs always) into `out`; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in sorted(report.plots.items()):
        (out / file_name(name)).write_bytes(png)
        paths.append(out / file_name(name))
    texts: dict[str, str] = {}
    if "md" in formats:
        texts["report.md"] = markdown(report)
    if "csv" in formats:
        texts.update({file_name(f"{t.key}.csv"): table_csv(t) for t in report.tables})
    if "json" in formats:
        texts["report.json"] = to_json(report)
    if "html" in formats:
        from xtuner.analysis.report.html import page

        texts["report.html"] = page(report)
    for name, text in texts.items():
        (out / name).write_text(redact_text(text))
        paths.append(out / name)
    return paths


def terminal(report: Report, console=None) -> None:
    """Table 1 (average over languages), the significance summaries and the run counts."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    if console is None:
        probe = Console()
        console = Console(width=min(100, probe.width) if probe.is_terminal else 100)
    t = next(t for t in report.tables if t.key == "table1")
    # every text is escaped: rich reads "[dev]" (xnli[dev]) or "[tiny-xlmr]" (method [model]) as markup and drops it
    rt = RichTable(title=escape(t.title), title_justify="left")
    for i, c in enumerate(t.columns):
        rt.add_column(escape(c), justify="left" if i == 0 else "right", overflow="fold")
    for i, row in enumerate(t.rows):
        style = "italic dim" if i >= len(t.rows) - t.reference_rows else None
        rt.add_row(*map(escape, row), style=style)
    console.print(rt)
    import textwrap

    for line in [*t.notes, *report.summary_lines()]:
        console.print(textwrap.fill(line, width=console.width, subsequent_indent="  "), highlight=False,
                      soft_wrap=True, markup=False)  # fmt: skip
