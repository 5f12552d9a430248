"""A report written twice from the same content: self-contained HTML (figures embedded) and Markdown."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td.text { text-align: left; white-space: pre-wrap; max-width: 560px; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6em 1em; margin: 1em 0; }
.note { color: #555; font-size: 0.9em; } img { max-width: 100%; }
details { margin: 0.3em 0; } summary { cursor: pointer; } pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
"""


def format_value(value, percent: bool = False) -> str:
    """Numbers for humans; None/NaN is shown as 'missing', never as 0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if percent else f"{value:.3g}"
    return str(value)


@dataclass
class Report:
    title: str
    _html: list[str] = field(default_factory=list)
    _markdown: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG, for saving beside the report

    def heading(self, text: str, level: int = 2) -> None:
        self._html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self._markdown.append(f"{'#' * level} {text}\n")

    def paragraph(self, text: str, css: str | None = None) -> None:
        attribute = f' class="{css}"' if css else ""
        self._html.append(f"<p{attribute}>{html.escape(text)}</p>")
        self._markdown.append(("> " if css == "warning" else "") + text + "\n")

    def table(self, frame: pd.DataFrame, percent_columns: tuple[str, ...] = (), text_columns: tuple[str, ...] = (),
              markdown: bool = True) -> None:
        if frame.empty:
            self.paragraph("(no rows)", "note")
            return
        cells = {c: [format_value(v, c in percent_columns) for v in frame[c]] for c in frame.columns}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        body = "".join(
            "<tr>" + "".join(f'<td{" class=text" if c in text_columns else ""}>{html.escape(cells[c][i])}</td>'
                             for c in frame.columns) + "</tr>" for i in range(len(frame)))
        self._html.append(f"<table><tr>{head}</tr>{body}</table>")
        if markdown:
            lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
            lines += ["| " + " | ".join(cells[c][i].replace("|", "\\|").replace("\n", " ") for c in frame.columns)
                      + " |" for i in range(len(frame))]
            self._markdown.append("\n".join(lines) + "\n")

    def figure(self, png: bytes, caption: str, file_name: str | None = None) -> None:
        encoded = base64.b64encode(png).decode()
        self._html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
                          f"<figcaption class=note>{html.escape(caption)}</figcaption></figure>")
        if file_name:
            self.figures[file_name] = png
            self._markdown.append(f"![{caption}]({file_name})\n")

    def details(self, summary: str, inner_html: str) -> None:
        self._html.append(f"<details><summary>{html.escape(summary)}</summary>{inner_html}</details>")

    def preformatted(self, text: str, summary: str | None = None) -> None:
        block = f"<pre>{html.escape(text)}</pre>"
        self._html.append(f"<details><summary>{html.escape(summary)}</summary>{block}</details>" if summary else block)

    def render_html(self) -> str:
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
                + "\n".join(self._html) + "</body></html>\n")

    def render_markdown(self) -> str:
        return f"# {self.title}\n\n" + "\n".join(self._markdown)


def save_tables(store, tables: dict[str, pd.DataFrame]) -> None:
    """Every analysis table as tables/<name>.csv in the run directory."""
    for name, frame in tables.items():
        store.write_text(f"tables/{name}.csv", frame.to_csv(index=False))


def save_report(store, report: Report) -> None:
    """report.html, report.md and the figures the Markdown links to, in the run directory."""
    for name, png in report.figures.items():
        store.write_bytes(name, png)
    store.write_text("report.html", report.render_html())
    store.write_text("report.md", report.render_markdown())


def json_value(value):
    """JSON-safe: NaN becomes None (missing), numpy scalars become Python numbers."""
    if value is None:
        return None
    try:
        value = value.item()
    except AttributeError:
        pass
    return None if isinstance(value, float) and value != value else value


METRIC_FIELDS = ("estimate", "ci_low", "ci_high", "distinguishable", "models", "items", "fine_tunes")


def nested_metrics(frame: pd.DataFrame, keys: list[str]) -> dict:
    """{key1: {key2: {estimate, ci_low, ci_high, ...}}} from a summary table, for summary.json."""
    result: dict = {}
    for row in frame.to_dict(orient="records") if not frame.empty else []:
        node = result
        for key in keys[:-1]:
            node = node.setdefault(str(row[key]), {})
        node[str(row[keys[-1]])] = {k: json_value(row[k]) for k in METRIC_FIELDS if k in row}
    return result
