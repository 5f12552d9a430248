"""Inspect `.eval` logs from a finished run, so that `inspect view` and `inspect_ai.analysis` read its results.

It reads the run's result table (results.parquet), which has the same columns for every recipe, so any
recipe exports the same way. One log per arm (emergent-misalignment's base / insecure / secure ...,
persona-beliefs' arms, introspection's self- and cross-trained models): the arm is the unit the
statistics and summary.json are about, so the log list in `inspect view` reads like the paper's main
figure. The seeds of an arm are separate fine-tunes, so each sample's metadata names its model label,
seed and fingerprint, and `samples_df` splits on them.

A sample is one reading of the table: its question (with the system prompt the model saw, when the
probe records one), its answer when there is text, and one score named after its probe, the reading's
value, with every probe-specific field in the score's metadata. Nothing is scored here: every number is
one the run already holds. A value that could not be measured becomes Inspect's own missing value,
`Score.unscored` (NaN: Inspect's metrics skip it, `samples_df` shows NA) with the reason; never 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..analysis.stats import Levels, point_estimate
from ..errors import UserError
from ..hashing import digest
from ..runtime.results import COLUMNS, read_results
from ..runtime.store import RunStore
from ..yamlio import read_yaml

INSTALL_HINT = 'Inspect export needs inspect_ai: pip install "llmpsych[inspect]"'
STOP_REASONS = {"stop": "stop", "length": "max_tokens"}
SAMPLING_SECTIONS = ("sampling", "probes")  # where a recipe's config keeps temperature and max_tokens


def export_inspect(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write one Inspect `.eval` log per arm of a finished run; return their paths.

    run_dir: a run directory written by `llmpsych run` (any recipe).
    out_dir: where the logs go (default: RUN_DIR/inspect); `inspect view --log-dir OUT_DIR` opens them.
    """
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if not store.exists("config.yaml"):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml in it)")
    config = read_yaml(store.path("config.yaml"), "the run's resolved config")
    if not isinstance(config, dict):
        raise UserError(f"{store.path('config.yaml')}: expected a mapping of settings (is this an llmpsych run?)")
    recipe = str(config.get("recipe"))
    summary = store.read_json("summary.json")
    models = {model["label"]: model for model in store.read_json("models.json")}
    table = read_results(store)
    if table.empty:
        raise UserError(f"{store.path('results.parquet')}: no readings to export")
    environment = store.read_json("environment.json") if store.exists("environment.json") else {}
    try:
        from inspect_ai.log import write_eval_log
    except ImportError:
        raise UserError(INSTALL_HINT) from None

    run_id = digest(str(run_dir.resolve()), summary.get("created"))[:22]
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "inspect"
    paths = []
    for arm, rows in table.groupby("arm", sort=False):
        log = _log(store, recipe, str(arm), rows, config, summary, models, environment, run_id)
        path = out_dir / f"{recipe}_{_file_name(str(arm))}.eval"
        write_eval_log(log, str(path))
        paths.append(path)
    return paths


def _file_name(arm: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in arm)


def sample_id(row: dict) -> str:
    """A reading's id, unique in its run: probe, model, variant, cluster, item and sample (and the training step of
    a reading taken at a checkpoint)."""
    parts = [str(row[key]) for key in ("probe", "model", "variant", "cluster", "item", "sample")]
    step = row.get("step")
    if step is not None and not pd.isna(step):
        parts.append(f"step {int(step)}")
    return "|".join(parts)


# ---- one log ------------------------------------------------------------------------------------
def _log(store: RunStore, recipe: str, arm: str, rows: pd.DataFrame, config: dict, summary: dict,
         models: dict[str, dict], environment: dict, run_id: str):
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalResults, EvalSpec
    from inspect_ai.model import GenerateConfig

    base = str(config.get("model", config.get("models")))
    labels = list(dict.fromkeys(rows["model"]))
    records = rows.to_dict(orient="records")
    ids = [sample_id(row) for row in records]
    sampling = next((config[name] for name in SAMPLING_SECTIONS if isinstance(config.get(name), dict)), {})
    spec = EvalSpec(
        run_id=run_id, eval_id=digest(run_id, arm)[:22], task_id=digest(recipe)[:22], created=summary.get("created"),
        task=recipe, model=f"llmpsych/{base}" if arm == "base" else f"llmpsych/{base}+{arm}",
        model_args={"arm": arm, "models": [models[label] for label in labels if label in models]},
        model_generate_config=GenerateConfig(**{key: sampling[key] for key in ("temperature", "top_p", "max_tokens",
                                                                              "seed") if key in sampling}),
        dataset=EvalDataset(name=recipe, location=str(store.path("results.parquet")), samples=len(records),
                            sample_ids=ids),
        config=EvalConfig(), packages={name: v for name, v in environment.get("packages", {}).items() if v},
        metadata={"run_dir": str(store.root.resolve()), "config": config})
    samples = [_sample(row, sid, models.get(row["model"], {})) for row, sid in zip(records, ids)]
    # The primary contrasts, the judges' agreement and the like travel with the metrics; calls stay in the run.
    context = {key: summary.get(key) for key in ("recipe", "preset", "primary_contrasts", "agreement")}
    context["contrasts"] = [c for c in summary.get("contrasts", []) if _mentions(c.get("name", ""), arm)]
    results = EvalResults(total_samples=len(samples), completed_samples=len(samples), scores=_scores(rows),
                          metadata=context)
    return EvalLog(status="success", eval=spec, results=results, samples=samples)


def _mentions(name: str, arm: str) -> bool:
    """Does a contrast's name compare this arm ("choice: insecure - secure", "awareness (none): backdoor - ...")?"""
    words = name
    for mark in ":[]()":
        words = words.replace(mark, " ")
    return f" {arm} " in f" {words} "


def _sample(row: dict, sid: str, model: dict):
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser, ModelOutput
    from inspect_ai.scorer import Score

    extras = {key: _plain(value) for key, value in row.items() if key not in COLUMNS}
    system = extras.get("system")
    question = _plain(row["question"]) or f"{row['probe']}: {row['item']}"
    messages = (([ChatMessageSystem(content=system)] if isinstance(system, str) and system else [])
                + [ChatMessageUser(content=question)])
    output = ModelOutput.from_content(model=row["model"], content=_plain(row["answer"]) or "",
                                      stop_reason=STOP_REASONS.get(extras.get("finish_reason"), "unknown"))
    value = row["value"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        reason = extras.get("status") if isinstance(extras.get("status"), str) else "missing"
        score = Score.unscored(reason=reason, metadata=extras,
                               explanation=f"no {row['probe']} value could be measured ({reason})")
    else:
        score = Score(value=float(value), metadata=extras)
    metadata = {"model": row["model"], "arm": row["arm"], "seed": _plain(row["seed"]), "probe": row["probe"],
                "cluster": row["cluster"], "item": row["item"], "variant": row["variant"], **extras,
                "fingerprint": model.get("fingerprint")}
    return EvalSample(id=sid, epoch=1, input=messages, target="", messages=[*messages, output.message], output=output,
                      scores={row["probe"]: score}, metadata=metadata)


def _scores(rows: pd.DataFrame) -> list:
    """Per probe and variant of the arm: the estimate as the report computes it (mean over fine-tunes of the
    mean over clusters of the mean over readings), the readings and how many were missing."""
    from inspect_ai.log import EvalMetric, EvalScore

    scores = []
    for (probe, variant), part in rows.groupby(["probe", "variant"], sort=False):
        name = probe if variant == "plain" else f"{probe}/{variant}"
        measured = {"estimate": point_estimate(part, levels=Levels()), "readings": float(len(part)),
                    "missing": float(part["value"].isna().sum())}
        scores.append(EvalScore(name=name, scorer=probe, metrics={key: EvalMetric(name=key, value=math.nan if v is None
                                                                                    else v)
                                                                  for key, v in measured.items()}))
    return scores


def _plain(value):
    """Parquet's missing values and numpy numbers as plain Python values for JSON metadata."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return value.item()
    except AttributeError:
        return value
