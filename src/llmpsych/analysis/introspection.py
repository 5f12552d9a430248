"""Self-prediction statistics: accuracy against a model's own behaviour, mode baselines, self vs cross.

An item is one (held-out prompt, property). Its ground truth is the target model's object-level value;
items whose object-level answer had no value (non-compliant) are dropped. A prediction is correct when
the parsed hypothetical value equals the truth; a non-compliant hypothetical answer is wrong. Overall
accuracies pool items (every prompt-property pair counts once). Intervals are 95% percentile
bootstraps over items; the self-minus-cross advantage is paired by item, with a sign-flip permutation
test for its p-value.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import bootstrap_interval

PERMUTATIONS = 10_000


def truth_table(objects: dict[str, list[dict]], split: str = "eval") -> dict[str, dict[tuple[str, str], str]]:
    """target label -> {(prompt id, property): value} over one split's compliant answers."""
    return {label: {(row["prompt_id"], prop): value for row in rows if row.get("split") == split
                    for prop, value in row["values"].items() if value is not None}
            for label, rows in objects.items()}


def scored_items(hypotheticals: list[dict], truths: dict[str, dict], target_field: str = "target") -> pd.DataFrame:
    """One row per prediction that has a ground truth: correct (0/1), compliant, the truth and the guess."""
    rows = []
    for row in hypotheticals:
        truth = truths.get(row[target_field], {}).get((row["prompt_id"], row["property"]))
        if truth is None:
            continue
        rows.append({**{k: row.get(k) for k in ("predictor", "role", "target", "m1", "m2", "fraction", "prompt_id",
                                                 "task", "property")},
                     "truth": truth, "predicted": row["value"], "compliant": row["value"] is not None,
                     "correct": float(row["value"] == truth)})
    return pd.DataFrame(rows)


def mode_correct(items: pd.DataFrame) -> pd.Series:
    """Per item: would always guessing the most common truth of its (target, task, property) be right?"""
    if items.empty:
        return pd.Series(dtype=float)
    modes = items.groupby(["target", "task", "property"])["truth"].agg(lambda values: values.value_counts().index[0])
    keys = list(zip(items["target"], items["task"], items["property"]))
    return pd.Series([float(t == modes[k]) for t, k in zip(items["truth"], keys)], index=items.index)


def accuracy(values: pd.Series | np.ndarray, seed: int = 0) -> dict:
    """Mean of 0/1 values with a 95% bootstrap interval; missing when there is nothing to average."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return {"estimate": None, "ci_low": None, "ci_high": None, "n": 0}
    interval = bootstrap_interval(array[None, :], seed=seed)
    return {"estimate": interval.estimate, "ci_low": interval.low, "ci_high": interval.high, "n": int(array.size)}


def permutation_p_value(differences: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float | None:
    """Two-sided p-value that paired differences have mean zero: flip each sign at random."""
    differences = np.asarray(differences, dtype=float)
    if differences.size == 0:
        return None
    observed = abs(differences.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(permutations, differences.size))
    extreme = int((np.abs((signs * differences).mean(axis=1)) >= observed - 1e-12).sum())
    return (extreme + 1) / (permutations + 1)


def summarise(items: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Accuracy, compliance and the target's mode baseline per group."""
    if items.empty:
        return pd.DataFrame()
    items = items.assign(mode_correct=mode_correct(items))
    rows = []
    for key, group in items.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        stats = accuracy(group["correct"])
        rows.append({**dict(zip(by, key)), **stats, "compliance": group["compliant"].mean(),
                     "mode_baseline": group["mode_correct"].mean()})
    return pd.DataFrame(rows)


def self_vs_cross(items: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per ordered pair (M1, M2) and group: M1 self-trained predicting itself against M2 cross-trained
    on M1's data (full data) predicting M1, on the same items; the untrained M1 and the mode baseline
    for reference."""
    if items.empty:
        return pd.DataFrame()
    items = items.assign(mode_correct=mode_correct(items))
    cross = items[(items["role"] == "cross") & (items["fraction"] == 1.0)]
    rows = []
    for (m1, m2), cross_items in cross.groupby(["m1", "m2"], sort=False):
        self_items = items[(items["role"] == "self") & (items["m1"] == m1)]
        untrained = items[(items["role"] == "untrained") & (items["m1"] == m1)]
        joined = self_items.merge(cross_items[["prompt_id", "property", "correct"]], on=["prompt_id", "property"],
                                  suffixes=("_self", "_cross"))
        groups = [((), joined)] if not by else list(joined.groupby(list(by), sort=False))
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            difference = (group["correct_self"] - group["correct_cross"]).to_numpy()
            advantage = accuracy(difference)
            reference = untrained
            for name, value in zip(by, key):
                reference = reference[reference[name] == value]
            rows.append({"m1": m1, "m2": m2, **dict(zip(by, key)),
                         **_prefixed("self", accuracy(group["correct_self"])),
                         **_prefixed("cross", accuracy(group["correct_cross"])),
                         "advantage": advantage["estimate"], "advantage_ci_low": advantage["ci_low"],
                         "advantage_ci_high": advantage["ci_high"], "p_value": permutation_p_value(difference),
                         "mode_baseline": float(group["mode_correct"].mean()) if len(group) else None,
                         **_prefixed("untrained", accuracy(reference["correct"])), "items": len(group)})
    return pd.DataFrame(rows)


def _prefixed(prefix: str, stats: dict) -> dict:
    return {prefix if key == "estimate" else f"{prefix}_{key}": value for key, value in stats.items() if key != "n"}


def behaviour_drift(truths: dict[str, dict], labels: list[str]) -> pd.DataFrame:
    """Per model: the share of held-out items whose value changed with self-training.

    The self-trained M1 is trained on its untrained behaviour but judged on its behaviour after
    training, while M2 learns the after-training behaviour directly; a large drift favours M2.
    """
    rows = []
    for label in labels:
        before, after = truths.get(label, {}), truths.get(f"self-{label}", {})
        shared = [key for key in before if key in after]
        rows.append({"model": label, "items": len(shared),
                     "changed": sum(before[k] != after[k] for k in shared) / len(shared) if shared else None})
    return pd.DataFrame(rows)


def scaling_curve(items: pd.DataFrame, training_rows: dict[str, int]) -> pd.DataFrame:
    """Cross-prediction accuracy against the number of training rows, per ordered pair."""
    cross = items[items["role"] == "cross"] if not items.empty else items
    rows = []
    for (m1, m2, fraction, predictor), group in cross.groupby(["m1", "m2", "fraction", "predictor"], sort=True):
        rows.append({"m1": m1, "m2": m2, "fraction": fraction, "training_rows": training_rows.get(predictor),
                     **accuracy(group["correct"])})
    return pd.DataFrame(rows)


# ---- calibration -------------------------------------------------------------------------------------
def distribution(values: list[str | None]) -> dict[str, float]:
    """Share of samples per value; non-compliant samples keep their share (as no value), so the
    probabilities of a hypothetical distribution can sum to less than one."""
    total = len(values)
    shares: dict[str, float] = {}
    for value in values:
        if value is not None:
            shares[value] = shares.get(value, 0.0) + 1 / total
    return shares


def calibration_pairs(rows: list[dict]) -> pd.DataFrame:
    """For each hypothetical distribution, the matching object-level distribution of its target:
    one row per (predictor, prompt, property, object-level value rank)."""
    objects = {(r["model"], r["prompt_id"], r["property"]): r["values"] for r in rows if r["kind"] == "object"}
    out = []
    for row in rows:
        if row["kind"] != "hypothetical":
            continue
        object_values = objects.get((row["target"], row["prompt_id"], row["property"]))
        if not object_values or all(v is None for v in object_values):
            continue
        compliant = [v for v in object_values if v is not None]
        p_object = {v: c / len(compliant) for v, c in pd.Series(compliant).value_counts().items()}
        p_hypothetical = distribution(row["values"])
        ranked = sorted(p_object, key=lambda v: (-p_object[v], v))
        for rank, value in enumerate(ranked, start=1):
            out.append({"predictor": row["model"], "role": row["role"], "m1": row["m1"], "m2": row["m2"],
                        "task": row["task"], "property": row["property"], "prompt_id": row["prompt_id"],
                        "rank": rank, "value": value, "p_object": p_object[value],
                        "p_hypothetical": p_hypothetical.get(value, 0.0)})
    return pd.DataFrame(out)


def calibration_mad(pairs: pd.DataFrame, ranks: tuple[int, ...] = (1, 2, 3)) -> pd.DataFrame:
    """Mean absolute deviation (in percentage points) between object-level and hypothetical
    probabilities of the k-th most likely object-level value, per predictor."""
    if pairs.empty:
        return pd.DataFrame()
    rows = []
    for (predictor, role, m1), group in pairs.groupby(["predictor", "role", "m1"], sort=False):
        entry = {"predictor": predictor, "role": role, "m1": m1}
        for rank in ranks:
            at_rank = group[group["rank"] == rank]
            entry[f"mad_{rank}"] = float((at_rank["p_object"] - at_rank["p_hypothetical"]).abs().mean() * 100) \
                if len(at_rank) else None
        entry["prompts"] = group["prompt_id"].nunique()
        rows.append(entry)
    return pd.DataFrame(rows)


def calibration_curve(pairs: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """Mean object-level probability per bin of hypothetical probability (perfect calibration: equal)."""
    if pairs.empty:
        return pd.DataFrame()
    edges = np.linspace(0, 1, bins + 1)
    binned = pairs.assign(bin=np.clip(np.digitize(pairs["p_hypothetical"], edges[1:-1]), 0, bins - 1))
    return (binned.groupby(["predictor", "role", "m1", "bin"], sort=False)
            .agg(p_hypothetical=("p_hypothetical", "mean"), p_object=("p_object", "mean"), n=("p_object", "size"))
            .reset_index().sort_values("bin", kind="stable"))  # each predictor's points in bin order


# ---- behaviour change -----------------------------------------------------------------------------
def entropy(values: pd.Series) -> float:
    shares = values.value_counts(normalize=True).to_numpy()
    return float(-(shares * np.log2(shares)).sum()) if len(shares) else 0.0


def entropy_matched(items: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Drop items, per (task, property), until the new behaviour is no less varied than the old.

    Fine-tuning on another model's answers can collapse behaviour onto a few values, which is easier
    to predict. Items whose new value is the most common one are dropped (in a seeded order) until
    the entropy of the new values reaches that of the old values.
    """
    kept = []
    rng = np.random.default_rng(seed)
    for _, group in items.groupby(["task", "property"], sort=False):
        group = group.iloc[rng.permutation(len(group))]
        target = entropy(group["old"])
        while len(group) > 1 and entropy(group["new"]) < target - 1e-9:
            mode = group["new"].value_counts().index[0]
            drop = group.index[group["new"] == mode][0]
            if (group["new"] == mode).sum() <= 1:
                break
            group = group.drop(drop)
        kept.append(group)
    return pd.concat(kept) if kept else items


def behaviour_change(hypotheticals: list[dict], truths: dict[str, dict]) -> pd.DataFrame:
    """For each changed model: accuracy against its new behaviour and against its old (self-trained)
    behaviour, on the items where the two differ, before and after entropy matching."""
    rows = []
    for row in hypotheticals:
        if row["role"] != "changed":
            continue
        key = (row["prompt_id"], row["property"])
        new, old = truths.get(row["target"], {}).get(key), truths.get(f"self-{row['m1']}", {}).get(key)
        if new is None or old is None:
            continue
        rows.append({"m1": row["m1"], "task": row["task"], "property": row["property"], "prompt_id": row["prompt_id"],
                     "new": new, "old": old, "predicted": row["value"]})
    items = pd.DataFrame(rows)
    out = []
    if items.empty:
        return pd.DataFrame()
    for m1, group in items.groupby("m1", sort=False):
        changed = group[group["new"] != group["old"]]
        for sample, frame in (("changed items", changed), ("changed items, entropy-matched", entropy_matched(changed))):
            new = accuracy((frame["predicted"] == frame["new"]).astype(float))
            old = accuracy((frame["predicted"] == frame["old"]).astype(float), seed=1)
            out.append({"m1": m1, "sample": sample, "items": len(frame),
                        "changed_share": len(changed) / len(group) if len(group) else math.nan,
                        "predicts_new": new["estimate"], "new_ci_low": new["ci_low"], "new_ci_high": new["ci_high"],
                        "predicts_old": old["estimate"], "old_ci_low": old["ci_low"], "old_ci_high": old["ci_high"],
                        "entropy_new": entropy(frame["new"]), "entropy_old": entropy(frame["old"])})
    return pd.DataFrame(out)
