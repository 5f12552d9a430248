"""`llmpsych runs`: the run directories under a folder, newest first, one line each.

A run directory is any folder holding config.yaml (written when a run starts); summary.json is written when
its report is, so a run without one is listed as unfinished, dated by its config.yaml. Only these two files
are read: listing runs loads no recipe and no model.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .yamlio import read_yaml

MISSING = "-"


@dataclass(frozen=True)
class RunInfo:
    path: Path
    recipe: str | None
    preset: str | None
    date: datetime.datetime  # timezone-aware
    finished: bool  # has a readable summary.json
    result: str  # the first primary contrast, e.g. "name = 0.12 [0.03, 0.20]", or "-"


def find_runs(folder: Path | str) -> list[RunInfo]:
    """Every run directory under `folder` (itself included), newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        problem = "not a folder" if folder.exists() else "no such folder"
        raise UserError(f"{folder}: {problem} (expected a folder of run directories, such as runs)")
    runs = [read_run(config.parent) for config in folder.rglob("config.yaml") if config.is_file()]
    return sorted(runs, key=lambda run: (run.date, str(run.path)), reverse=True)


def read_run(run_dir: Path) -> RunInfo:
    """What the listing shows of one run directory; a damaged file shows as missing values, not an error."""
    summary, finished = _summary(run_dir / "summary.json")
    if summary is not None and "recipe" in summary:
        recipe, preset = summary.get("recipe"), summary.get("preset")
    else:
        config = _config(run_dir / "config.yaml")
        recipe, preset = config.get("recipe"), config.get("preset")
    date = _created(summary) if summary is not None else None
    if date is None:
        date = _mtime(run_dir / ("summary.json" if finished else "config.yaml"))
    return RunInfo(run_dir, _text(recipe), _text(preset), date, finished, primary_result(summary or {}))


def primary_result(summary: dict) -> str:
    """The first primary contrast of a summary: `name = estimate [ci_low, ci_high]`, or "-" when none."""
    contrasts = summary.get("contrasts")
    if not isinstance(contrasts, list):
        return MISSING
    for contrast in contrasts:
        if isinstance(contrast, dict) and contrast.get("primary") is True:
            name = contrast.get("name") or "primary contrast"
            estimate, low, high = (_number(contrast.get(key)) for key in ("estimate", "ci_low", "ci_high"))
            if estimate is None:
                return f"{name} = {MISSING}"
            interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
            return f"{name} = {estimate:.2f}{interval}"
    return MISSING


def format_runs(runs: list[RunInfo]) -> list[str]:
    """One line per run, in columns: path, recipe, preset, date (local time), primary result."""
    rows = [(str(run.path), run.recipe or MISSING, run.preset or MISSING,
             run.date.astimezone().strftime("%Y-%m-%d %H:%M") + ("" if run.finished else " (unfinished)"),
             run.result) for run in runs]
    if not rows:
        return []
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[4]]) for row in rows]


def _summary(path: Path) -> tuple[dict | None, bool]:
    """(summary.json's content, whether the run finished); an unreadable file counts as unfinished."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None, False
    return (data, True) if isinstance(data, dict) else (None, False)


def _config(path: Path) -> dict:
    try:
        data = read_yaml(path, "the run's config")
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def _created(summary: dict) -> datetime.datetime | None:
    created = summary.get("created")
    if not isinstance(created, str):
        return None
    try:
        date = datetime.datetime.fromisoformat(created)
    except ValueError:
        return None
    return date if date.tzinfo else date.replace(tzinfo=datetime.timezone.utc)


def _mtime(path: Path) -> datetime.datetime:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = 0.0
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
