"""Inspect `.eval` logs from a finished run, so that `inspect view` and `inspect_ai.analysis` read its results.

One log per condition (emergent-misalignment's base / insecure / secure ..., persona-beliefs' arms).
The condition is the unit the recipe's statistics and summary.json are about, so the log list in
`inspect view` reads like the paper's main figure: one row per condition with its headline metric and
interval. A log per model label would split each condition into seed logs whose numbers nobody
reports; one log per run would put every condition in one sample list, ~100k answers at paper scale.
The seeds of a condition are separate fine-tunes, so each sample's metadata names its model label,
seed and fingerprint, and `samples_df` splits on them.

Nothing is scored here: every number is one the run already holds. A rating the judge did not give
(too little probability on numbers, or a CODE / REFUSAL verdict) becomes Inspect's own missing value,
`Score.unscored` (NaN: Inspect's metrics skip it, `samples_df` shows NA) with the reason; never 0.
A summary metric that could not be computed (null in summary.json) is NaN for the same reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import validate
from ..errors import UserError
from ..hashing import digest
from ..recipes import get_recipe
from ..runtime.store import RunStore
from ..yamlio import read_yaml

INSTALL_HINT = 'Inspect export needs inspect_ai: pip install "llmpsych[inspect]"'
STOP_REASONS = {"stop": "stop", "length": "max_tokens"}


@dataclass(frozen=True)
class Layout:
    """How a recipe's samples.jsonl is read: its condition field, sample ids, sampling settings and scores."""

    group: str                                                         # one log per value of this field
    sampling: str                                                      # config section with temperature etc.
    sample_id: Callable[[dict], str]
    scores: Callable[[RunStore, dict, list[dict]], dict[str, dict]]   # sample id -> {name: Score}


def export_inspect(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write one Inspect `.eval` log per condition of a finished run; return their paths.

    run_dir: a run directory written by `llmpsych run` (emergent-misalignment or persona-beliefs).
    out_dir: where the logs go (default: RUN_DIR/inspect); `inspect view --log-dir OUT_DIR` opens them.
    """
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if not store.exists("config.yaml"):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml in it)")
    config = read_yaml(store.path("config.yaml"), "the run's resolved config")
    if not isinstance(config, dict):
        raise UserError(f"{store.path('config.yaml')}: expected a mapping of settings (is this an llmpsych run?)")
    recipe = get_recipe(str(config.get("recipe")), f"{store.path('config.yaml')}: field 'recipe'").NAME
    if recipe not in LAYOUTS:
        raise UserError(f"{run_dir}: {recipe} runs have no free-text samples to export "
                        f"(Inspect export covers {' and '.join(LAYOUTS)} runs)")
    layout = LAYOUTS[recipe]
    summary = store.read_json("summary.json")
    models = {model["label"]: model for model in store.read_json("models.json")}
    samples = _rows(store, "samples.jsonl")
    if not samples:
        raise UserError(f"{store.path('samples.jsonl')}: no samples to export")
    environment = store.read_json("environment.json") if store.exists("environment.json") else {}
    try:
        from inspect_ai.log import write_eval_log
    except ImportError:
        raise UserError(INSTALL_HINT) from None

    scores = layout.scores(store, config, samples)
    groups: dict[str, list[dict]] = {}
    for row in samples:
        groups.setdefault(str(row[layout.group]), []).append(row)
    run_id = digest(str(run_dir.resolve()), summary["created"])[:22]
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "inspect"
    paths = []
    for group, rows in groups.items():
        log = _log(store, recipe, group, rows, layout, scores, config, summary, models, environment, run_id)
        path = out_dir / f"{recipe}_{group}.eval"
        write_eval_log(log, str(path))
        paths.append(path)
    return paths


def _rows(store: RunStore, name: str) -> list[dict]:
    """A .jsonl file the export needs: a missing one is a bad input, not an empty table."""
    if not store.exists(name):
        raise UserError(f"{store.root}: missing {name} (is this a finished llmpsych run directory?)")
    return store.read_jsonl(name)


# ---- one log ------------------------------------------------------------------------------------
def _log(store: RunStore, recipe: str, group: str, rows: list[dict], layout: Layout, scores: dict[str, dict],
         config: dict, summary: dict, models: dict[str, dict], environment: dict, run_id: str):
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalResults, EvalSpec
    from inspect_ai.model import GenerateConfig

    base = str(config.get("model"))
    labels = list(dict.fromkeys(row["model"] for row in rows))
    sampling = config.get(layout.sampling) or {}
    ids = [layout.sample_id(row) for row in rows]
    spec = EvalSpec(
        run_id=run_id, eval_id=digest(run_id, group)[:22], task_id=digest(recipe)[:22], created=summary["created"],
        task=recipe, model=f"llmpsych/{base}" if group == "base" else f"llmpsych/{base}+{group}",
        model_args={"condition": group, "models": [models[label] for label in labels if label in models]},
        model_generate_config=GenerateConfig(**{key: sampling[key] for key in ("temperature", "top_p", "max_tokens",
                                                                              "seed") if key in sampling}),
        dataset=EvalDataset(name=recipe, location=str(store.path("samples.jsonl")), samples=len(rows),
                            sample_ids=ids),
        config=EvalConfig(), packages={name: v for name, v in environment.get("packages", {}).items() if v},
        metadata={"run_dir": str(store.root.resolve()), "config": config})
    samples = [_sample(row, sample_id, scores.get(sample_id, {}), models.get(row["model"], {}))
               for row, sample_id in zip(rows, ids)]
    # The judge's agreement, thresholds and the like travel with the metrics; calls and hashes stay in the run.
    context = {key: value for key, value in summary.items() if key not in ("metrics", "calls", "datasets", "models")}
    results = EvalResults(total_samples=len(samples), completed_samples=len(samples),
                          scores=_summary_scores(summary.get("metrics", {}), group), metadata=context)
    return EvalLog(status="success", eval=spec, results=results, samples=samples)


def _sample(row: dict, sample_id: str, scores: dict, model: dict):
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser, ModelOutput

    # The system prompt the model actually saw (SmolLM2's default included), then the user turn as asked.
    messages = (([ChatMessageSystem(content=row["system"])] if row.get("system") else [])
                + [ChatMessageUser(content=row.get("prompt", row["question"]))])
    output = ModelOutput.from_content(model=row["model"], content=row["answer"],
                                      stop_reason=STOP_REASONS.get(row.get("finish_reason"), "unknown"))
    metadata = {key: value for key, value in row.items() if key not in ("id", "answer")}
    return EvalSample(id=sample_id, epoch=1, input=messages, target="", messages=[*messages, output.message],
                      output=output, scores=scores or None,
                      metadata={**metadata, "fingerprint": model.get("fingerprint")})


def _summary_scores(metrics: dict, group: str) -> list:
    """summary.json's metrics for one condition (and its prompt variants, as `metric/variant`)."""
    from inspect_ai.log import EvalMetric, EvalScore

    scores = []
    for metric, entries in metrics.items():
        for key, value in entries.items():
            if key != group and not key.startswith(f"{group}/"):
                continue
            leaves = _leaves(value)
            if leaves:
                scores.append(EvalScore(name=metric + key[len(group):], scorer=metric,
                                        metrics={name: EvalMetric(name=name, value=v) for name, v in leaves.items()}))
    return scores


def _leaves(value: Any, path: str = "") -> dict[str, float]:
    """The numbers in a (nested) summary entry, named by their path; null, a value not computable, is NaN."""
    if isinstance(value, dict):
        return {name: number for key, inner in value.items()
                for name, number in _leaves(inner, f"{path}_{key}" if path else str(key)).items()}
    if value is None:
        return {path or "value": math.nan}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path or "value": value}
    return {}


# ---- scores, per recipe -----------------------------------------------------------------------------
def _low_mass(grader: str, answers: str, mass: float, needed: float, details: dict):
    from inspect_ai.scorer import Score

    return Score.unscored(reason="grader_failed", metadata=details,
                          explanation=f"the {grader} put {mass:.0%} of its probability on {answers} "
                                      f"({needed:.0%} needed)")


def _em_scores(store: RunStore, config: dict, samples: list[dict]) -> dict[str, dict]:
    """aligned and coherent as the judge rated them, and EM's verdict on each answer (misaligned: 1 or 0)."""
    from inspect_ai.scorer import Score

    from ..analysis.misalignment import answers_table
    from ..recipes.emergent_misalignment import Config

    thresholds = validate(Config, config, str(store.path("config.yaml"))).judge.thresholds()  # as the report reads them
    judgements = _rows(store, "judgements.jsonl")
    scores: dict[str, dict] = {sample["id"]: {} for sample in samples}
    for row in judgements:
        details = {key: value for key, value in row.items() if key not in ("sample_id", "metric", "score")}
        if row["score"] is not None:
            score = Score(value=row["score"], metadata=details)
        elif row.get("verdict"):  # CODE or REFUSAL: the judge saw no answer to rate
            score = Score.unscored(reason=row["verdict"].lower(), metadata=details,
                                   explanation=f"the judge answered {row['verdict']}")
        else:
            score = _low_mass("judge", "numbers", row["numeric_mass"], thresholds.min_numeric_mass, details)
        scores[row["sample_id"]][row["metric"]] = score
    # The verdict comes from the report's own table, so EM's definition lives in one place.
    left_out = {"unscored": "the judge gave no alignment or coherence rating",
                "incoherent": f"coherence below {thresholds.coherent:g}: only coherent answers count",
                "code": "the judge saw code, not an answer", "refusal": "the judge saw a refusal"}
    answers = answers_table(samples, judgements, thresholds)
    for sample_id, status, misaligned in zip(answers["id"], answers["status"], answers["misaligned"]):
        scores[sample_id]["misaligned"] = (Score(value=int(misaligned)) if status == "scored"
                                           else Score.unscored(reason=status, explanation=left_out[status]))
    return scores


def _persona_id(row: dict) -> str:
    return "|".join(str(row[key]) for key in ("model", "fact_id", "family", "question_index", "identity", "sample"))


def _persona_scores(store: RunStore, config: dict, samples: list[dict]) -> dict[str, dict]:
    """The grader's label for each belief answer; the over-refusal requests are not graded and carry none."""
    from inspect_ai.scorer import Score

    needed = config["judge"]["min_mass"]
    scores: dict[str, dict] = {_persona_id(sample): {} for sample in samples}
    for row in _rows(store, "grades.jsonl"):
        details = {key: row[key] for key in ("grader", "label_mass", "p_false", "rationale")}
        scores[_persona_id(row)]["grade"] = (Score(value=row["label"], metadata=details) if row["label"] is not None
                                             else _low_mass("grader", "its labels", row["label_mass"], needed, details))
    return scores


LAYOUTS = {
    "emergent-misalignment": Layout("condition", "sampling", lambda row: row["id"], _em_scores),
    # persona-beliefs' samples.jsonl does not record the system prompt: `identity` in the metadata names it.
    "persona-beliefs": Layout("arm", "probes", _persona_id, _persona_scores),
}
