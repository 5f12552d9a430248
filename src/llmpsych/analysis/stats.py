"""Bootstrap confidence intervals that respect how the data were made.

Results come as a grid: units (independent fine-tunes, i.e. seeds) by items (questions). The
estimate is the mean over units of the mean over items, so every question and every fine-tune
counts equally, as in the EM paper. A bootstrap replicate resamples units, then items (the same
items for every unit, since all fine-tunes answer the same questions), then, for proportions, the
answers inside each cell (a binomial draw, which is exactly resampling the cell's answers). With a
single unit or a single item that level simply does not vary. Missing cells (NaN) are skipped.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None



def grid_estimate(values: np.ndarray) -> float:
    """Mean over units of the mean over items, skipping missing cells (NaN when nothing is left)."""
    return float(_mean_of_means(np.asarray(values, dtype=float)[None])[0])


def _mean_of_means(grids: np.ndarray) -> np.ndarray:
    """Per grid (first axis): mean over units of the mean over items, ignoring NaN cells."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are expected: missing data
        return np.nanmean(np.nanmean(grids, axis=2), axis=1)


def bootstrap_replicates(values: np.ndarray, trials: np.ndarray | None = None, resamples: int = RESAMPLES,
                         seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of `grid_estimate(values)`; `trials` (same shape) marks values as proportions."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    units, items = values.shape
    unit_index = rng.integers(0, units, (resamples, units)) if units > 1 else np.zeros((resamples, 1), int)
    item_index = rng.integers(0, items, (resamples, items)) if items > 1 else np.zeros((resamples, 1), int)
    picked = values[unit_index[:, :, None], item_index[:, None, :]]
    if trials is not None:
        counts = np.asarray(trials, dtype=float)[unit_index[:, :, None], item_index[:, None, :]]
        valid = np.isfinite(picked) & (counts > 0)
        draws = rng.binomial(np.where(valid, counts, 0).astype(int), np.where(valid, picked, 0.0))
        with np.errstate(all="ignore"):
            picked = np.where(valid, draws / np.where(valid, counts, 1), np.nan)
    return _mean_of_means(picked)


def bootstrap_interval(values: np.ndarray, trials: np.ndarray | None = None, resamples: int = RESAMPLES,
                       level: float = LEVEL, seed: int = 0) -> Interval:
    """Estimate and percentile bootstrap interval; all None when no cell has data."""
    estimate = grid_estimate(values)
    if not math.isfinite(estimate):
        return Interval(None, None, None)
    replicates = bootstrap_replicates(values, trials, resamples, seed)
    return _percentile(estimate, replicates, level)


def bootstrap_difference(a: np.ndarray, b: np.ndarray, trials_a: np.ndarray | None = None,
                         trials_b: np.ndarray | None = None, resamples: int = RESAMPLES, level: float = LEVEL,
                         seed: int = 0) -> Interval:
    """Estimate(a) - estimate(b) with an interval from independent bootstraps of the two grids."""
    estimate = grid_estimate(a) - grid_estimate(b)
    if not math.isfinite(estimate):
        return Interval(None, None, None)
    replicates = bootstrap_replicates(a, trials_a, resamples, seed) - bootstrap_replicates(b, trials_b, resamples,
                                                                                           seed + 1)
    return _percentile(estimate, replicates, level)


def _percentile(estimate: float, replicates: np.ndarray, level: float) -> Interval:
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size == 0:
        return Interval(estimate, None, None)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high))


# ---- tidy tables: one row per (model, item) answer ---------------------------------------------------
def frame_grid(frame: pd.DataFrame, value: str, item: list[str], trials: str | None = None,
               unit: str = "model") -> tuple[np.ndarray, np.ndarray | None]:
    """Units (fine-tunes) x items grid of `value` (and of `trials`) from a tidy table."""
    table = frame.pivot_table(index=unit, columns=item, values=value, aggfunc="mean", dropna=False)
    counts = None
    if trials:
        counts = frame.pivot_table(index=unit, columns=item, values=trials, aggfunc="sum", dropna=False)
        counts = counts.reindex_like(table).fillna(0).to_numpy(float)
    return table.to_numpy(float), counts


def summarise(frame: pd.DataFrame, by: list[str], value: str, item: list[str], trials: str | None = None,
              unit: str = "model") -> pd.DataFrame:
    """One row per group of `by`: estimate and 95% interval of `value`, units and items counted."""
    if frame.empty:
        return pd.DataFrame(columns=by + ["estimate", "ci_low", "ci_high", "models", "items"])
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values, counts = frame_grid(group, value, item, trials, unit)
        interval = bootstrap_interval(values, counts)
        rows.append({**dict(zip(by, key)), "estimate": interval.estimate, "ci_low": interval.low,
                     "ci_high": interval.high, "models": group[unit].nunique(),
                     "items": group[item].drop_duplicates().shape[0]})
    return pd.DataFrame(rows)


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, value: str, item: list[str], unit: str = "model") -> dict:
    """estimate(a) - estimate(b) when both sides measure the same units on the same items (a model with and
    without a trigger, say): the bootstrap resamples units and items jointly on the per-cell difference, so
    what the pair shares (an item's difficulty, a fine-tune's quirks) cancels instead of widening the
    interval. Cells measured on one side only are skipped; several rows in a cell are averaged."""
    if a.empty or b.empty:
        return {"estimate": None, "ci_low": None, "ci_high": None, "distinguishable": None}
    grid_a = a.pivot_table(index=unit, columns=item, values=value, aggfunc="mean", dropna=False)
    grid_b = b.pivot_table(index=unit, columns=item, values=value, aggfunc="mean", dropna=False)
    cells = (grid_a - grid_b).to_numpy(float)  # aligned on labels; a cell missing on either side is NaN
    interval = bootstrap_interval(cells)
    single = np.isfinite(cells).sum() <= 1
    distinguishable = None if interval.low is None or single else bool(interval.low > 0 or interval.high < 0)
    return {"estimate": interval.estimate, "ci_low": interval.low, "ci_high": interval.high,
            "distinguishable": distinguishable}


def difference(a: pd.DataFrame, b: pd.DataFrame, value: str, item: list[str], trials: str | None = None,
               unit: str = "model") -> dict:
    """estimate(a) - estimate(b) with a 95% interval, and whether the interval excludes zero."""
    if a.empty or b.empty:
        return {"estimate": None, "ci_low": None, "ci_high": None, "distinguishable": None}
    (grid_a, counts_a), (grid_b, counts_b) = frame_grid(a, value, item, trials, unit), \
        frame_grid(b, value, item, trials, unit)
    interval = bootstrap_difference(grid_a, grid_b, counts_a, counts_b)
    # One cell on a side (one fine-tune, one item) gives a zero-width interval that proves nothing.
    single = min(np.isfinite(grid_a).sum(), np.isfinite(grid_b).sum()) <= 1 and trials is None
    distinguishable = None if interval.low is None or single else bool(interval.low > 0 or interval.high < 0)
    return {"estimate": interval.estimate, "ci_low": interval.low, "ci_high": interval.high,
            "distinguishable": distinguishable}
