"""Figures as PNG bytes (matplotlib, no display needed), ready to embed in a report or save."""

from __future__ import annotations

import io
import math

import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def _error_bars(frame: pd.DataFrame, value: str, low: str, high: str) -> list[list[float]]:
    below = [v - l if _finite(v) and _finite(l) else 0 for v, l in zip(frame[value], frame[low])]
    above = [h - v if _finite(v) and _finite(h) else 0 for v, h in zip(frame[value], frame[high])]
    return [below, above]


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def bars(frame: pd.DataFrame, label: str, value: str, title: str, ylabel: str, low: str = "ci_low",
         high: str = "ci_high", percent: bool = True) -> bytes:
    """One bar per row with its 95% interval; rows without a value are drawn as 'missing'."""
    plt = _pyplot()
    scale = 100 if percent else 1
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(frame) + 1.5), 3.4))
    heights = [v * scale if _finite(v) else 0 for v in frame[value]]
    errors = [[e * scale for e in side] for side in _error_bars(frame, value, low, high)]
    positions = range(len(frame))
    axis.bar(positions, heights, yerr=errors, capsize=4, color="#4c72b0")
    for position, v in zip(positions, frame[value]):
        if not _finite(v):  # a missing rate is not a zero rate: say so on the plot
            axis.text(position, 0, "missing", ha="center", va="bottom", fontsize=8, color="#a00")
    axis.set_xticks(list(positions), list(frame[label]), rotation=20, ha="right")
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    if min(heights, default=0) >= 0:
        axis.set_ylim(bottom=0)
    else:  # values with a sign (projections): keep the axis on both sides of zero
        axis.axhline(0, color="#777", linewidth=0.8)
    return _png(figure)


def grouped_bars(frame: pd.DataFrame, group: str, series: str, value: str, title: str, ylabel: str,
                 percent: bool = True) -> bytes:
    """Bars per group (e.g. question), one colour per series (e.g. condition), with 95% intervals."""
    plt = _pyplot()
    groups = list(dict.fromkeys(frame[group]))
    names = list(dict.fromkeys(frame[series]))
    width = 0.8 / max(1, len(names))
    scale = 100 if percent else 1
    figure, axis = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 3.8))
    for offset, name in enumerate(names):
        part = frame[frame[series] == name].set_index(group).reindex(groups)
        heights = [v * scale if _finite(v) else 0 for v in part[value]]
        errors = [[e * scale for e in side] for side in _error_bars(part, value, "ci_low", "ci_high")]
        positions = [i + offset * width for i in range(len(groups))]
        axis.bar(positions, heights, width, yerr=errors, capsize=2, label=name)
        for position, v in zip(positions, part[value]):
            if not _finite(v):  # a missing rate is not a zero rate: say so on the plot
                axis.text(position, 0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="#a00")
    if not any(_finite(v) for v in frame[value]):
        axis.text(0.5, 0.5, "missing: nothing could be scored", transform=axis.transAxes, ha="center", color="#a00")
    axis.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))], groups, rotation=25, ha="right")
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.set_ylim(bottom=0)
    axis.legend(fontsize=8)
    return _png(figure)


def training_logs(models: list[dict], store) -> dict[str, list[dict]]:
    """Each fine-tuned model's loss log (adapters/<label>/training_log.jsonl in the run directory)."""
    import json

    logs = {}
    for model in models:
        path = store.path(f"{model['adapter']}/training_log.jsonl") if model.get("adapter") else None
        if path and path.is_file():
            logs[model["label"]] = [json.loads(line) for line in path.read_text().splitlines() if line]
    return logs


def loss_curves(curves: dict[str, list[dict]], title: str = "Training loss") -> bytes:
    """One line per fine-tune: loss against optimiser step."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.4))
    for label, log in curves.items():
        steps = [entry["step"] for entry in log if _finite(entry.get("loss"))]
        losses = [entry["loss"] for entry in log if _finite(entry.get("loss"))]
        axis.plot(steps, losses, label=label, linewidth=1.2)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title(title, fontsize=10)
    if curves:
        axis.legend(fontsize=7, ncol=2)
    return _png(figure)


def lines(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str, ylabel: str,
          diagonal: bool = False, reference: dict[str, float] | None = None, log_x: bool = False) -> bytes:
    """One line with markers per series; `diagonal` draws y = x (perfect calibration), `reference`
    draws horizontal lines (a baseline, the self-trained model's accuracy)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 3.6))
    for label, (xs, ys) in series.items():
        axis.plot(xs, ys, marker="o", linewidth=1.2, label=label)
    for label, y in (reference or {}).items():
        if _finite(y):
            axis.axhline(y, linestyle="--", linewidth=1, color="#777")
            axis.text(axis.get_xlim()[0], y, f" {label}", va="bottom", fontsize=7, color="#555")
    if diagonal:
        axis.plot([0, 1], [0, 1], linestyle=":", color="#999", linewidth=1)
    if log_x:
        axis.set_xscale("log")
    return _labelled(figure, axis, title, xlabel, ylabel, legend=bool(series))


def bands(series: dict[str, tuple[list[float], list, list, list]], title: str, xlabel: str, ylabel: str) -> bytes:
    """One line per series (x, estimate, interval low, interval high) with its interval as a shaded band; a
    missing estimate leaves a gap. Values are fractions, drawn as percentages."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.6))
    for label, (xs, ys, lows, highs) in series.items():
        as_percent = [100 * y if _finite(y) else float("nan") for y in ys]
        line, = axis.plot(xs, as_percent, marker="o", markersize=3, linewidth=1.2, label=label)
        low = [100 * v if _finite(v) else float("nan") for v in lows]
        high = [100 * v if _finite(v) else float("nan") for v in highs]
        axis.fill_between(xs, low, high, alpha=0.15, color=line.get_color(), linewidth=0)
    return _labelled(figure, axis, title, xlabel, ylabel, legend=bool(series))


def _labelled(figure, axis, title: str, xlabel: str, ylabel: str, legend: bool) -> bytes:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    if legend:
        axis.legend(fontsize=7)
    return _png(figure)
