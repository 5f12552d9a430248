"""Self-prediction statistics: accuracy against a model's own behaviour, mode baselines, self vs cross.

Reads `hypothetical` rows of the result table: one per (predictor, held-out prompt, property), value 1
when the predicted value equals the target model's own object-level value, 0 when it does not (a
non-compliant prediction is wrong), missing when the target's answer had no value. Several properties
are read off one answer, so the independent unit is the prompt (its bank item, the `cluster` column):
intervals resample fine-tunes (seeds), then prompts, then the properties of each. The self-minus-cross
permutation test flips signs by prompt, never by (prompt, property).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import Estimate, Levels, difference, estimate

PROMPTS = Levels(sample=None, name="prompt")
PERMUTATIONS = 10_000


def with_mode_baseline(items: pd.DataFrame) -> pd.DataFrame:
    """Add `mode_correct`: would always guessing the most common truth of its (target, task, property) be right?"""
    if items.empty:
        return items.assign(mode_correct=pd.Series(dtype=float))
    truths = items[items["truth"].notna()]
    modes = truths.groupby(["target", "task", "property"])["truth"].agg(lambda values: values.value_counts().index[0])
    keys = list(zip(items["target"], items["task"], items["property"]))
    return items.assign(mode_correct=[np.nan if pd.isna(t) else float(t == modes.get(k))
                                      for t, k in zip(items["truth"], keys)])


def accuracy(frame: pd.DataFrame, value: str = "value") -> dict:
    """Mean of 0/1 values with a 95% interval over seeds, prompts and properties; missing when empty."""
    result = estimate(frame, value, PROMPTS) if len(frame) else Estimate(None, None, None)
    valid = frame[value].notna() if len(frame) else pd.Series(dtype=bool)
    return {"estimate": result.estimate, "ci_low": result.ci_low, "ci_high": result.ci_high,
            "items": int(valid.sum()), "prompts": int(frame.loc[valid, "cluster"].nunique()) if len(frame) else 0}


def permutation_p_value(differences: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float | None:
    """Two-sided p-value that paired differences (one per prompt) have mean zero: flip each sign at random."""
    differences = np.asarray(differences, dtype=float)
    differences = differences[np.isfinite(differences)]
    if differences.size == 0:
        return None
    observed = abs(differences.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(permutations, differences.size))
    extreme = int((np.abs((signs * differences).mean(axis=1)) >= observed - 1e-12).sum())
    return (extreme + 1) / (permutations + 1)


def prompt_differences(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Per prompt: a's accuracy minus b's, each the mean over its seeds and the prompt's properties."""
    means = [side.groupby(["cluster", "item"])["value"].mean().groupby("cluster").mean() for side in (a, b)]
    joined = pd.concat(means, axis=1, join="inner").dropna()
    return (joined.iloc[:, 0] - joined.iloc[:, 1]).to_numpy()


def pairs(items: pd.DataFrame) -> list[tuple[str, str]]:
    """Every ordered (M1, M2) with a full-data cross-prediction."""
    cross = items[(items["role"] == "cross") & (items["fraction"] == 1.0)]
    return list(dict.fromkeys(zip(cross["m1"], cross["m2"])))


def self_vs_cross(items: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per ordered pair (M1, M2) and group: the self-trained M1 predicting itself against M2 cross-trained on
    M1's data predicting M1, on the same items; the untrained M1 and the mode baseline for reference. The
    advantage's interval shares the prompt draws of both sides; its permutation p-value flips by prompt."""
    rows = []
    for m1, m2 in pairs(items):
        own = items[(items["role"] == "self") & (items["m1"] == m1)]
        other = items[(items["role"] == "cross") & (items["m1"] == m1) & (items["m2"] == m2) & (items["fraction"] == 1.0)]
        untrained = items[(items["role"] == "untrained") & (items["m1"] == m1)]
        groups = [((), own)] if not by else list(own.groupby(list(by), sort=False))
        for key, own_part in groups:
            key = key if isinstance(key, tuple) else (key,)
            match = dict(zip(by, key))
            other_part, untrained_part = (_where(frame, match) for frame in (other, untrained))
            advantage = difference(own_part, other_part, levels=PROMPTS)
            rows.append({"m1": m1, "m2": m2, **match, **_prefixed("self", accuracy(own_part)),
                         **_prefixed("cross", accuracy(other_part)),
                         "advantage": advantage.estimate, "advantage_ci_low": advantage.ci_low,
                         "advantage_ci_high": advantage.ci_high, "p": advantage.p,
                         "p_permutation": permutation_p_value(prompt_differences(own_part, other_part)),
                         "mode_baseline": accuracy(own_part, "mode_correct")["estimate"],
                         **_prefixed("untrained", accuracy(untrained_part)),
                         "seeds": own_part["model"].nunique(), "prompts": own_part["cluster"].nunique()})
    return pd.DataFrame(rows)


def _where(frame: pd.DataFrame, match: dict) -> pd.DataFrame:
    for name, value in match.items():
        frame = frame[frame[name] == value]
    return frame


def _prefixed(prefix: str, stats: dict) -> dict:
    return {prefix if key == "estimate" else f"{prefix}_{key}": value for key, value in stats.items()
            if key not in ("items", "prompts")}


def behaviour_drift(objects: pd.DataFrame) -> pd.DataFrame:
    """Per model and seed: the share of held-out items whose value changed with self-training.

    The self-trained M1 is trained on its untrained behaviour but judged on its behaviour after
    training, while M2 learns the after-training behaviour directly; a large drift favours M2.
    """
    held = objects[objects["split"] == "eval"]
    rows = []
    for model, after in held[held["arm"].str.startswith("self-")].groupby("model", sort=False):
        base = after["arm"].iloc[0].removeprefix("self-")
        before = held[held["model"] == base].set_index("item")["property_value"]
        now = after.set_index("item")["property_value"]
        shared = before.index.intersection(now.index)
        shared = [k for k in shared if pd.notna(before[k]) and pd.notna(now[k])]
        rows.append({"model": model, "items": len(shared),
                     "changed": float(np.mean([before[k] != now[k] for k in shared])) if shared else None})
    return pd.DataFrame(rows, columns=["model", "items", "changed"])


def scaling_curve(items: pd.DataFrame, training_rows: dict[str, int]) -> pd.DataFrame:
    """Cross-prediction accuracy against the number of training rows, per ordered pair."""
    cross = items[items["role"] == "cross"]
    rows = []
    for (m1, m2, fraction), group in cross.groupby(["m1", "m2", "fraction"], sort=True):
        counts = [training_rows.get(model) for model in group["model"].unique()]
        counts = [c for c in counts if c is not None]
        rows.append({"m1": m1, "m2": m2, "fraction": fraction,
                     "training_rows": float(np.mean(counts)) if counts else None, **accuracy(group)})
    return pd.DataFrame(rows)


def behaviour_change(items: pd.DataFrame) -> pd.DataFrame:
    """For each changed M1: accuracy against its new behaviour and against its old (self-trained) behaviour,
    on the items where the two differ, before and after entropy matching."""
    changed = items[(items["role"] == "changed") & items["truth"].notna() & items["old_truth"].notna()]
    out = []
    for m1, group in changed.groupby("m1", sort=False):
        differ = group[group["truth"] != group["old_truth"]]
        matched = entropy_matched(differ.rename(columns={"truth": "new", "old_truth": "old"})) \
            .rename(columns={"new": "truth", "old": "old_truth"}) if len(differ) else differ
        for sample, frame in (("changed items", differ), ("changed items, entropy-matched", matched)):
            old = frame.assign(value=(frame["predicted"] == frame["old_truth"]).astype(float))
            new, predicts_old = accuracy(frame), accuracy(old)
            out.append({"m1": m1, "sample": sample, "items": len(frame),
                        "changed_share": len(differ) / len(group) if len(group) else math.nan,
                        "predicts_new": new["estimate"], "new_ci_low": new["ci_low"], "new_ci_high": new["ci_high"],
                        "predicts_old": predicts_old["estimate"], "old_ci_low": predicts_old["ci_low"],
                        "old_ci_high": predicts_old["ci_high"],
                        "entropy_new": entropy(frame["truth"]), "entropy_old": entropy(frame["old_truth"])})
    return pd.DataFrame(out)


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


def calibration_rows(samples: pd.DataFrame) -> list[dict]:
    """The calibration step's samples (one result row each) as distributions: one dict per (kind, model,
    prompt, property) with the list of its sampled values."""
    rows = []
    keys = ["probe", "model", "arm", "target", "role", "m1", "m2", "prompt_id", "task", "property"]
    for key, group in samples.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key))
        rows.append({**row, "kind": row["probe"].split("/")[1], "m2": None if pd.isna(row["m2"]) else row["m2"],
                     "values": [None if pd.isna(v) else v for v in group["property_value"]]})
    return rows


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
            out.append({"predictor": row.get("arm", row["model"]), "role": row["role"], "m1": row["m1"], "m2": row["m2"],
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
