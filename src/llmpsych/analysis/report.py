"""The report every recipe writes, rebuilt from a run directory alone (no model calls).

One skeleton, in this order: header (what was run and how to read it), provenance (models, data,
fine-tunes, calls, config), judge and grader agreement, primary results (the declared contrasts),
secondary results (exploratory, Holm-corrected), the protocol audit against the paper, and samples.
A recipe's analysis fills it: it reads the run's result table and returns an `Analysis` with its
tables, figures, contrasts and metrics; `write_run_report` writes report.html, report.md, tables/,
figures/ and summary.json.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from ..errors import UserError
from ..models.refs import EMBEDDED_ALIASES
from ..runtime.results import read_results
from ..runtime.store import RunStore
from . import plots
from .audit import AuditRow, audit, audit_table, load_protocol
from .contrasts import Contrast, contrast_table, finalise

AGREEMENT_WARNING = 0.8  # below this a judge's numbers are not evidence of anything
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td.text { text-align: left; white-space: pre-wrap; max-width: 560px; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6em 1em; margin: 1em 0; }
.note { color: #555; font-size: 0.9em; } img { max-width: 100%; }
details { margin: 0.3em 0; } summary { cursor: pointer; } pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
"""
PERCENT = ("estimate", "ci_low", "ci_high")


def format_value(value, percent: bool = False) -> str:
    """Numbers for humans; None/NaN is shown as 'missing', never as 0."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if percent else f"{value:.3g}"
    return str(value)


def on_embedded_model(config: dict) -> bool:
    """Does the run study one of the embedded models (135-270M parameters)?"""
    names = config.get("models") or [config.get("model")]
    return any(EMBEDDED_ALIASES.get(str(name).split("+")[0]) for name in names)


def json_value(value):
    """JSON-safe: NaN and NA become None (missing), numpy scalars become Python numbers."""
    if value is None or value is pd.NA:
        return None
    try:
        value = value.item()
    except AttributeError:
        pass
    return None if isinstance(value, float) and value != value else value


# ---- sections: the blocks a report is made of ------------------------------------------------------------
@dataclass
class Section:
    """Headings, paragraphs, tables, figures and folded details, rendered both as HTML and Markdown."""

    _html: list[str] = field(default_factory=list)
    _markdown: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG, saved beside the report

    def heading(self, text: str, level: int = 3) -> None:
        self._html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self._markdown.append(f"{'#' * level} {text}\n")

    def paragraph(self, text: str, css: str | None = None) -> None:
        attribute = f' class="{css}"' if css else ""
        self._html.append(f"<p{attribute}>{html.escape(text)}</p>")
        self._markdown.append(("> " if css == "warning" else "") + text + "\n")

    def table(self, frame: pd.DataFrame, percent_columns: tuple[str, ...] = PERCENT,
              text_columns: tuple[str, ...] = (), markdown: bool = True) -> None:
        if frame is None or frame.empty:
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

    def figure(self, png: bytes, caption: str, file_name: str) -> None:
        encoded = base64.b64encode(png).decode()
        self._html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
                          f"<figcaption class=note>{html.escape(caption)}</figcaption></figure>")
        self.figures[file_name] = png
        self._markdown.append(f"![{caption}]({file_name})\n")

    def details(self, summary: str, inner_html: str) -> None:
        self._html.append(f"<details><summary>{html.escape(summary)}</summary>{inner_html}</details>")

    def preformatted(self, text: str, summary: str | None = None) -> None:
        block = f"<pre>{html.escape(text)}</pre>"
        self._html.append(f"<details><summary>{html.escape(summary)}</summary>{block}</details>" if summary else block)

    def extend(self, other: "Section") -> None:
        self._html += other._html
        self._markdown += other._markdown
        self.figures.update(other.figures)

    @property
    def empty(self) -> bool:
        return not self._html


@dataclass
class Report(Section):
    title: str = ""

    def render_html(self) -> str:
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
                + "\n".join(self._html) + "</body></html>\n")

    def render_markdown(self) -> str:
        return f"# {self.title}\n\n" + "\n".join(self._markdown)


# ---- what a recipe's analysis hands the skeleton --------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """A judge's or grader's measured agreement with a labelled set, shown beside its numbers."""

    name: str              # judge, meta-belief grader, ...
    judge: str             # the model reference
    n: int
    agreement: float
    kappa: float | None
    source: str            # the labelled set
    confusion: dict        # expected label -> predicted label -> count
    rubric: str = ""       # which rubric (or question file's judge prompts) was checked
    unscored: int | None = None

    def as_dict(self) -> dict:
        return {"judge": self.judge, "n": self.n, "agreement": self.agreement, "kappa": self.kappa,
                "source": self.source, "rubric": self.rubric, "unscored": self.unscored}


@dataclass
class Run:
    """A finished run as the analysis reads it: its config, result table and records."""

    store: RunStore
    config: dict
    table: pd.DataFrame
    models: list[dict]
    datasets: dict
    calls: dict
    checks: list[Agreement]  # judge_check.json: every judge's and grader's measured agreement

    @classmethod
    def load(cls, store: RunStore) -> "Run":
        optional = {name: store.read_json(f"{name}.json") if store.exists(f"{name}.json") else {}
                    for name in ("datasets", "calls", "judge_check")}
        config = yaml.safe_load(store.path("config.yaml").read_text())
        checks = [Agreement(name, c["judge"], c["n"], c["agreement"], c.get("kappa"), c["source"], c["confusion"],
                            c.get("rubric", ""), c.get("unscored")) for name, c in optional["judge_check"].items()]
        return cls(store, config, read_results(store), store.read_json("models.json"), optional["datasets"],
                   optional["calls"], checks)

    def probe(self, *names: str) -> pd.DataFrame:
        """The table's rows of these probes (a copy)."""
        return self.table[self.table["probe"].isin(names)].copy()


@dataclass
class Analysis:
    title: str
    method: str                                  # the header: what was measured and how to read it
    contrasts: list[Contrast]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # summary.json "metrics"
    primary: Section = field(default_factory=Section)
    secondary: Section = field(default_factory=Section)
    samples: Section = field(default_factory=Section)
    agreement_notes: list[str] = field(default_factory=list)  # e.g. how many judgements gave no number
    expected_at_this_scale: str = ""             # which effects a model this size is not expected to show
    extra: dict = field(default_factory=dict)    # more summary.json fields


def write_run_report(store: RunStore, analyse: Callable[[Run], Analysis], protocol: Path | None = None) -> dict:
    """Analyse a finished run and write tables/, figures/, report.html, report.md and summary.json."""
    run = Run.load(store)
    try:
        analysis = analyse(run)
    except KeyError as error:  # a probe's rows, and with them its columns, are absent: the run stopped early
        raise UserError(f"{store.root}: the result table has no {error} column (the run did not finish: rerun "
                        "it to complete it)") from None
    contrasts = finalise(analysis.contrasts, list(run.config.get("primary_contrasts") or []))
    paper, steps = load_protocol(protocol) if protocol else ("", [])
    audit_rows = audit(steps, run.config)
    save_tables(store, {**analysis.tables, "contrasts": contrast_table(contrasts)})
    summary = _summary(run, analysis, contrasts, audit_rows)
    store.write_json("summary.json", summary)
    save_report(store, _render(run, analysis, contrasts, paper, audit_rows))
    return summary


def _summary(run: Run, analysis: Analysis, contrasts: list[Contrast], audit_rows: list[AuditRow]) -> dict:
    config = run.config
    return {
        "recipe": config.get("recipe"), "preset": config.get("preset"),
        "model": config.get("model", config.get("models")),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "primary_contrasts": list(config.get("primary_contrasts") or []),
        "contrasts": [{key: json_value(value) for key, value in c.as_dict().items()} for c in contrasts],
        "metrics": analysis.metrics,
        "agreement": {a.name: a.as_dict() for a in run.checks},
        "protocol": [{"step": r.step, "paper": r.paper, "this_run": r.this_run, "verdict": r.verdict}
                     for r in audit_rows],
        **analysis.extra,
        "calls": run.calls,
        "datasets": {name: {"sha256": info.get("sha256"), "rows": info.get("rows")} for name, info in run.datasets.items()},
        "models": [{"label": m["label"], "arm": m.get("condition"), "seed": m.get("seed"), "ref": m.get("ref"),
                    "fingerprint": m.get("fingerprint")} for m in run.models],
    }


# ---- rendering ------------------------------------------------------------------------------------------------
def _render(run: Run, analysis: Analysis, contrasts: list[Contrast], paper: str, audit_rows: list[AuditRow]) -> Report:
    report = Report(title=analysis.title)
    config = run.config
    report.paragraph(f"Recipe {config.get('recipe')}, preset {config.get('preset')}; {len(run.models)} models; "
                     f"{len(run.table)} readings in results.parquet.", "note")
    report.paragraph(analysis.method, "note")
    if analysis.expected_at_this_scale:
        report.paragraph(analysis.expected_at_this_scale, "note")

    report.heading("Provenance", 2)
    _provenance(report, run)

    report.heading("Judge and grader agreement", 2)
    _agreement(report, run.checks, analysis.agreement_notes)

    primary = [c for c in contrasts if c.primary]
    report.heading("Primary results", 2)
    report.paragraph("The contrasts this study is about, declared before the run (config: primary_contrasts); "
                     "with several, their p-values are Holm-corrected together. 95% bootstrap intervals resample "
                     "fine-tunes (seeds), then the unit named in each row, then the readings within it.", "note")
    report.table(_shown(primary), (), ("verdict",))
    report.extend(analysis.primary)

    secondary = [c for c in contrasts if not c.primary]
    report.heading("Secondary results (exploratory)", 2)
    report.paragraph("Every other comparison is exploratory: its p-value is Holm-corrected within its family, and "
                     "a verdict here is not a finding of the study.", "note")
    report.table(_shown(secondary), (), ("verdict",))
    report.extend(analysis.secondary)

    report.heading("Protocol audit", 2)
    if audit_rows:
        differing = sum(not r.as_in_paper for r in audit_rows)
        report.paragraph(f"Against {paper}: {len(audit_rows) - differing} of {len(audit_rows)} method steps as in "
                         f"the paper, {differing} differ (each says how).", "note")
        report.table(audit_table(audit_rows), (), ("paper", "this run", "verdict"))
    else:
        report.paragraph("This recipe declares no paper protocol.", "note")

    if not analysis.samples.empty:
        report.heading("Samples", 2)
        report.extend(analysis.samples)
    return report


def _shown(contrasts: list[Contrast]) -> pd.DataFrame:
    """Contrasts as the report shows them: the verdict carries the estimate and interval on their own scale
    (points or r); tables/contrasts.csv has every number."""
    return contrast_table(contrasts)[["contrast", "family", "unit", "verdict"]]


def _provenance(report: Report, run: Run) -> None:
    models = run.models
    systems = sorted({str(m.get("default_system_prompt")) for m in models if "default_system_prompt" in m})
    if systems:
        report.paragraph("Default system prompt of the model (sent when a prompt has none): " + "; ".join(systems),
                         "note")
    report.table(pd.DataFrame([{"model": m["label"], "arm": m.get("condition"), "seed": m.get("seed"),
                                "ref": m.get("ref"), "fingerprint": str(m.get("fingerprint"))[:16]} for m in models]),
                 markdown=False)
    if run.datasets:
        report.table(pd.DataFrame([{"dataset": name, "rows": info.get("rows"),
                                    "sha256": str(info.get("sha256"))[:16]} for name, info in run.datasets.items()]))
    trained = [m for m in models if m.get("training")]
    if trained:
        report.table(pd.DataFrame([{"fine-tune": m["label"], "rows": m["training"].get("rows"),
                                    "final_loss": m["training"].get("final_loss"),
                                    "seconds": m["training"].get("seconds")} for m in trained]))
        curves = plots.training_logs(models, run.store)
        if curves:
            report.figure(plots.loss_curves(curves), "Loss per step of every fine-tune", "figures/training_loss.png")
    if run.calls:
        report.table(pd.DataFrame([{"operation": k, **v} for k, v in run.calls.items() if isinstance(v, dict)]))
    report.preformatted(yaml.safe_dump(run.config, sort_keys=False), "Resolved config")
    if run.store.exists("environment.json"):
        report.preformatted(json.dumps(run.store.read_json("environment.json"), indent=2), "Environment")


def _agreement(report: Report, checks: list[Agreement], notes: list[str]) -> None:
    if not checks and not notes:
        report.paragraph("No judge or grader was checked in this run: numbers below that a judge or grader gave "
                         "have no measured reliability; the rest are read off the models' own log-probabilities or "
                         "checked by code.", "note")
    for check in checks:
        rubric = f", rubric {check.rubric}" if check.rubric else ""
        unscored = f", unscored {check.unscored}" if check.unscored is not None else ""
        report.paragraph(f"{check.name} ({check.judge}{rubric}): agreement {format_value(check.agreement, True)} with "
                         f"{check.n} labelled answers ({Path(check.source).name}), Cohen's kappa "
                         f"{format_value(check.kappa)}{unscored}.")
        if check.agreement < AGREEMENT_WARNING:
            report.paragraph(f"Warning: the {check.name} agrees with the labels on only {100 * check.agreement:.0f}% "
                             "of the validation set: the numbers it gives below are not reliable evidence. Use a "
                             "stronger judge (--judge) or the judge-free measures.", "warning")
        confusion = pd.DataFrame(check.confusion).T
        confusion.insert(0, "expected \\ predicted", confusion.index)
        report.table(confusion.reset_index(drop=True), ())
    for note in notes:
        report.paragraph(note, "note")


# ---- files --------------------------------------------------------------------------------------------------
def save_tables(store: RunStore, tables: dict[str, pd.DataFrame]) -> None:
    """Every analysis table as tables/<name>.csv in the run directory."""
    for name, frame in tables.items():
        store.write_text(f"tables/{name}.csv", frame.to_csv(index=False))


def save_report(store: RunStore, report: Report) -> None:
    """report.html, report.md and the figures the Markdown links to, in the run directory."""
    for name, png in report.figures.items():
        store.write_bytes(name, png)
    store.write_text("report.html", report.render_html())
    store.write_text("report.md", report.render_markdown())


METRIC_FIELDS = ("estimate", "ci_low", "ci_high", "units", "clusters", "readings")


def nested_metrics(frame: pd.DataFrame, keys: list[str]) -> dict:
    """{key1: {key2: {estimate, ci_low, ci_high, ...}}} from a summary table, for summary.json."""
    result: dict = {}
    for row in frame.to_dict(orient="records") if not frame.empty else []:
        node = result
        for key in keys[:-1]:
            node = node.setdefault(str(row[key]), {})
        node[str(row[keys[-1]])] = {k: json_value(row[k]) for k in METRIC_FIELDS if k in row}
    return result
