"""Bootstrap intervals that resample the truly independent units, at levels each metric declares.

A metric reads one column of the result table (`value`, one row per reading) and declares its
resampling levels, outermost first (`Levels`):

    unit      the independent fine-tunes (seeds); the base model is a single unit
    cluster   the independent stimuli: a fact, a prompt, a question, a scenario. Several readings of one
              cluster (identity prompts of one fact, properties of one answer) are never independent items
    item      the readings within a cluster
    sample    repeated answers to one item by one model (sampled at temperature 1)

The estimate is the mean over units of the mean over clusters of the mean over items of the mean over
samples, so every fine-tune and every cluster counts equally. A bootstrap replicate resamples units,
then clusters, then the items of each drawn cluster, then the samples of each cell. Clusters and items
are crossed with units (every fine-tune answers the same questions), so one draw of clusters serves
every unit, and a difference between two arms shares it: what the questions have in common cancels,
while the fine-tunes of each arm vary on their own. Missing values (NaN) are skipped at every level; a
mean with nothing to average is missing, never 0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

RESAMPLES = 2000
LEVEL = 0.95
_CHUNK_CELLS = 4_000_000  # values gathered per chunk of replicates (memory ~ 32 MB)


@dataclass(frozen=True)
class Levels:
    """Which columns of the result table are the resampling levels, and what a cluster is called.

    Set a level to None to leave it out (e.g. no `sample` level for probabilities read off log-probs).
    """

    unit: str = "model"
    cluster: str | None = "cluster"
    item: str | None = "item"
    sample: str | None = "sample"
    name: str = "question"  # what one cluster is, in words: fact, prompt, question, scenario

    def columns(self) -> list[str]:
        return [c for c in (self.unit, self.cluster, self.item, self.sample) if c]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile interval and a two-sided bootstrap p-value against 0.

    `p` is None when the interval says nothing (a single reading on a side) or for plain estimates."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None = None
    caveat: str | None = None  # what the interval cannot include (e.g. one fine-tune on a side)


MISSING = Estimate(None, None, None)


# ---- the data as an array: units x clusters x items x samples -----------------------------------------
@dataclass(frozen=True)
class _Coding:
    """Integer codes for clusters and the items within each, shared by every side of a comparison."""

    clusters: dict
    items: list[dict]  # per cluster: item key -> index within the cluster

    @property
    def item_counts(self) -> np.ndarray:
        return np.array([len(items) for items in self.items], dtype=int)


def _coding(frames: list[pd.DataFrame], levels: Levels) -> _Coding:
    clusters: dict = {}
    items: list[dict] = []
    for frame in frames:
        cluster_keys = frame[levels.cluster] if levels.cluster else pd.Series(0, index=frame.index)
        item_keys = frame[levels.item] if levels.item else pd.Series(0, index=frame.index)
        for cluster, item in zip(cluster_keys, item_keys):
            index = clusters.setdefault(cluster, len(clusters))
            if index == len(items):
                items.append({})
            items[index].setdefault(item, len(items[index]))
    return _Coding(clusters, items)


def _tensor(frame: pd.DataFrame, value: str, levels: Levels, coding: _Coding,
            units: list | None = None) -> tuple[np.ndarray, list]:
    """(values as units x clusters x items x samples, padded with NaN; the unit labels). Without a sample
    level, the rows of a cell are averaged first: they are not independent draws to resample."""
    if not levels.sample:
        keys = levels.columns()
        frame = frame.assign(**{value: pd.to_numeric(frame[value], errors="coerce")}) \
            .groupby(keys, sort=False, dropna=False)[value].mean().reset_index()
    units = units if units is not None else list(dict.fromkeys(frame[levels.unit]))
    unit_index = {u: i for i, u in enumerate(units)}
    u = frame[levels.unit].map(unit_index).to_numpy()
    c_keys = frame[levels.cluster] if levels.cluster else pd.Series(0, index=frame.index)
    i_keys = frame[levels.item] if levels.item else pd.Series(0, index=frame.index)
    c = np.array([coding.clusters[k] for k in c_keys], dtype=int)
    i = np.array([coding.items[ci][k] for ci, k in zip(c, i_keys)], dtype=int)
    # Samples: the order of rows within a cell (the sample column only needs to tell rows apart).
    cell = (u * len(coding.clusters) + c) * (coding.item_counts.max(initial=1) + 1) + i
    s = pd.Series(cell).groupby(cell).cumcount().to_numpy()
    shape = (len(units), len(coding.clusters), max(1, coding.item_counts.max(initial=1)), max(1, s.max(initial=0) + 1))
    values = np.full(shape, np.nan)
    values[u, c, i, s] = pd.to_numeric(frame[value], errors="coerce").to_numpy(dtype=float)
    return values, units


def _mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last four axes in turn (samples, items, clusters, units), skipping NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are expected: missing data
        for _ in range(4):
            values = np.nanmean(values, axis=-1)
    return values


def _replicates(tensors: list[np.ndarray], codings: list[_Coding], resamples: int, seed: int,
                shared_units: bool = False) -> list[np.ndarray]:
    """Bootstrap replicates of `_mean` for each tensor. Tensors with the same coding (the same clusters and
    items) share one draw of them; shared_units: the tensors hold the same units in the same order (a model
    with and without a trigger), drawn once for all, so the comparison is paired by fine-tune too."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK_CELLS // max(1, max(t.size for t in tensors))))
    out = [np.empty(resamples) for _ in tensors]
    sample_counts = [np.isfinite(t).sum(axis=3) for t in tensors]  # valid samples per cell
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        cluster_draws: dict[int, tuple] = {}
        unit_draws: dict = {}
        for index, (tensor, coding) in enumerate(zip(tensors, codings)):
            units, clusters, items, samples = tensor.shape
            if id(coding) not in cluster_draws:
                cluster_draw = rng.integers(0, clusters, (r, clusters)) if clusters > 1 else np.zeros((r, 1), int)
                counts = coding.item_counts[cluster_draw]                           # r x C
                item_draw = np.floor(rng.random((r, clusters, items)) * counts[:, :, None]).astype(int)
                item_valid = np.arange(items)[None, None, :] < counts[:, :, None]    # r x C x I
                cluster_draws[id(coding)] = (cluster_draw, np.minimum(item_draw, items - 1), item_valid)
            cluster_draw, item_draw, item_valid = cluster_draws[id(coding)]
            unit_key = "shared" if shared_units else index
            if unit_key not in unit_draws:
                unit_draws[unit_key] = rng.integers(0, units, (r, units)) if units > 1 else np.zeros((r, 1), int)
            uu, cc, ii = unit_draws[unit_key][:, :, None, None], cluster_draw[:, None, :, None], item_draw[:, None]
            picked_counts = sample_counts[index][uu, cc, ii]                        # r x U x C x I
            if samples > 1:
                draw = np.floor(rng.random(picked_counts.shape + (samples,)) * picked_counts[..., None]).astype(int)
                picked = tensor[uu[..., None], cc[..., None], ii[..., None], draw]
                picked = np.where(np.arange(samples) < picked_counts[..., None], picked, np.nan)
            else:
                picked = tensor[uu, cc, ii, np.zeros_like(ii)][..., None]
            picked = np.where(item_valid[:, None, :, :, None], picked, np.nan)
            out[index][start:start + r] = _mean(picked)
    return out


def _interval(estimate: float, replicates: np.ndarray, level: float, p_value: bool) -> Estimate:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return Estimate(estimate, None, None)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    p = None
    if p_value:  # the share of replicates on the far side of 0, both tails (+1: never exactly 0)
        below, above = int((finite <= 0).sum()), int((finite >= 0).sum())
        p = min(1.0, 2 * (min(below, above) + 1) / (finite.size + 1))
    return Estimate(estimate, float(low), float(high), p)


def _measured(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """The rows with a value: a missing reading is left out of every level (never drawn, never 0), so the
    samples of a cell, the items of a cluster and the clusters drawn are all measured ones."""
    numbers = pd.to_numeric(frame[value], errors="coerce")
    return frame.assign(**{value: numbers})[numbers.notna()]


# ---- public: an estimate, a difference, a summary table ---------------------------------------------------
def estimate(frame: pd.DataFrame, value: str = "value", levels: Levels = Levels(), resamples: int = RESAMPLES,
             level: float = LEVEL, seed: int = 0) -> Estimate:
    """The mean of `value` (mean of means down the levels) with a percentile bootstrap interval."""
    frame = _measured(frame, value)
    if frame.empty:
        return MISSING
    coding = _coding([frame], levels)
    tensor, _ = _tensor(frame, value, levels, coding)
    point = float(_mean(tensor))
    return _interval(point, _replicates([tensor], [coding], resamples, seed)[0], level, p_value=False)


def point_estimate(frame: pd.DataFrame, value: str = "value", levels: Levels = Levels()) -> float | None:
    """The estimate alone (no bootstrap): the mean of means down the levels; None when nothing is measured."""
    frame = _measured(frame, value)
    if frame.empty:
        return None
    return float(_mean(_tensor(frame, value, levels, _coding([frame], levels))[0]))


def difference(a: pd.DataFrame, b: pd.DataFrame, value: str = "value", levels: Levels = Levels(),
               paired: bool = False, shared_clusters: bool = True, resamples: int = RESAMPLES, level: float = LEVEL,
               seed: int = 0) -> Estimate:
    """estimate(a) - estimate(b), with a bootstrap interval and a two-sided p-value against 0.

    shared_clusters: both sides answer the same clusters and items (two arms asked the same questions):
    the difference is taken over the clusters both sides measured, drawn once for both, so what the
    questions have in common cancels. False: each side has clusters of its own (benign against harmful
    facts), drawn within its side. paired: both sides are the same units (the same fine-tunes with and
    without a trigger), drawn together, and only cells measured on both sides count; else each side's
    units (its own fine-tunes) are drawn on their own. One reading on a side gives no interval."""
    drawn = _difference_draws(a, b, value, levels, paired, shared_clusters, resamples, seed)
    if drawn is None:
        return MISSING
    point, replicates, (a, b) = drawn
    result = Estimate(point, None, None) if replicates is None else _interval(point, replicates, level, p_value=True)
    return replace(result, caveat=None if paired else _single_fine_tune(a, b, levels))


def _single_fine_tune(a: pd.DataFrame, b: pd.DataFrame, levels: Levels) -> str | None:
    """A side that is one fine-tune (one unit with a seed): its training-seed variance is not in the interval."""
    for side in (a, b):
        if "seed" in side and side[levels.unit].nunique() == 1 and side["seed"].notna().all():
            return "one fine-tune on a side: training-seed variance is not in the interval"
    return None


def equivalence(a: pd.DataFrame, b: pd.DataFrame, margin: float, value: str = "value", levels: Levels = Levels(),
                resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> tuple[Estimate, float | None]:
    """(difference(a, b), the p-value of two one-sided tests that the difference lies within +-margin).

    Equivalence at 5% is the 90% interval inside the margin; the p-value is the larger of the bootstrap
    shares at or beyond -margin and +margin (each +1, never exactly 0); None when it cannot be tested."""
    drawn = _difference_draws(a, b, value, levels, False, True, resamples, seed)
    if drawn is None:
        return MISSING, None
    point, replicates, (a, b) = drawn
    caveat = _single_fine_tune(a, b, levels)
    finite = replicates[np.isfinite(replicates)] if replicates is not None else np.array([])
    if finite.size == 0:
        return Estimate(point, None, None, caveat=caveat), None
    below, above = int((finite <= -margin).sum()), int((finite >= margin).sum())
    p_equivalent = (max(below, above) + 1) / (finite.size + 1)
    return replace(_interval(point, replicates, level, p_value=True), caveat=caveat), min(1.0, p_equivalent)


def _difference_draws(a: pd.DataFrame, b: pd.DataFrame, value: str, levels: Levels, paired: bool,
                      shared_clusters: bool, resamples: int, seed: int
                      ) -> tuple[float, np.ndarray | None, tuple[pd.DataFrame, pd.DataFrame]] | None:
    """(point difference, its bootstrap replicates or None with a single reading on a side, the two sides as
    compared); None when the sides share nothing to compare."""
    a, b = _measured(a, value), _measured(b, value)
    if shared_clusters:  # the common support: clusters measured on both sides (cells, when paired)
        keys = [c for c in ([levels.unit] if paired else []) + [levels.cluster] + ([levels.item] if paired else [])
                if c]
        if keys:
            common = set(map(tuple, a[keys].to_numpy())) & set(map(tuple, b[keys].to_numpy()))
            a, b = (side[[key in common for key in map(tuple, side[keys].to_numpy())]] for side in (a, b))
    if a.empty or b.empty:
        return None
    codings = [_coding([a, b], levels)] * 2 if shared_clusters else [_coding([a], levels), _coding([b], levels)]
    units = list(dict.fromkeys(list(a[levels.unit]) + list(b[levels.unit]))) if paired else None
    (tensor_a, _), (tensor_b, _) = (_tensor(side, value, levels, coding, units) for side, coding in zip((a, b), codings))
    point = float(_mean(tensor_a) - _mean(tensor_b))
    if min(len(a), len(b)) <= 1:  # a zero-width interval would prove nothing
        return point, None, (a, b)
    replicates_a, replicates_b = _replicates([tensor_a, tensor_b], codings, resamples, seed, shared_units=paired)
    return point, replicates_a - replicates_b, (a, b)


def summarise(frame: pd.DataFrame, by: list[str], value: str = "value", levels: Levels = Levels(),
              resamples: int = RESAMPLES) -> pd.DataFrame:
    """One row per group of `by`: estimate, 95% interval, and how many units, clusters and readings."""
    columns = by + ["estimate", "ci_low", "ci_high", "units", "clusters", "readings"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        result = estimate(group, value, levels, resamples)
        valid = group[pd.to_numeric(group[value], errors="coerce").notna()]
        rows.append({**dict(zip(by, key)), "estimate": result.estimate, "ci_low": result.ci_low,
                     "ci_high": result.ci_high, "units": valid[levels.unit].nunique(),
                     "clusters": valid[levels.cluster].nunique() if levels.cluster else 1, "readings": len(valid)})
    return pd.DataFrame(rows, columns=columns)


# ---- correlations across fine-tunes -------------------------------------------------------------------
def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson r; None (undefined, not zero) with fewer than 3 points or no variation."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def correlation(x: np.ndarray, y: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                seed: int = 0) -> Estimate:
    """Pearson r between paired readings (one per fine-tune), with a bootstrap interval over the pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    r = pearson(x, y)
    if r is None:
        return MISSING
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), (resamples, len(x)))
    replicates = np.array([value for pick in picks if (value := pearson(x[pick], y[pick])) is not None])
    return _interval(r, replicates, level, p_value=True)


# ---- multiplicity -----------------------------------------------------------------------------------------
def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (step-down, monotone); None stays None and is not counted."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted
