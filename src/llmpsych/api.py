"""The notebook entry point: ask questions to models, get a DataFrame back (cached, like everything)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .judges.judge import Thresholds
from .judges.rubrics import load_rubrics
from .models.refs import parse_model_ref
from .probes.freeform import SamplingDefaults, judge_answers, sample_answers
from .probes.questions import SHIPPED_SETS, Question, load_questions
from .runtime.calls import Runtime


def ask(questions: str | Path | list, models: str | list[str] | dict[str, str] = "smollm2", samples: int = 1,
        judge: str | None = None, temperature: float = 1.0, max_tokens: int = 256, seed: int = 0,
        runtime: Runtime | None = None) -> pd.DataFrame:
    """Sample answers from each model (and rate them with `judge`, if given); one row per answer.

    questions: a question file, a shipped set name ("em-main"), a list of Question objects, or plain
        strings (asked as single-turn user messages; judged with the shipped EM rubrics).
    models: one model reference, a list of them, or {label: reference}.
    samples: answers per paraphrase. The result has `aligned`, `coherent`, `status` and `misaligned`
        columns when a judge is given (see analysis.misalignment.answers_table).
    """
    from .analysis.misalignment import answers_table

    runtime = runtime or Runtime()
    asked = _questions(questions)
    if isinstance(models, str):
        models = [models]
    labelled = models if isinstance(models, dict) else {m: m for m in models}
    sampling = SamplingDefaults(samples_per_paraphrase=samples, temperature=temperature, max_tokens=max_tokens,
                                seed=seed)
    records = []
    for label, reference in labelled.items():
        records += sample_answers(runtime, parse_model_ref(reference), asked, sampling, {"model": label})
    if judge is None:
        return pd.DataFrame(records)
    judge_ref = parse_model_ref(judge, "judge")
    judgements = judge_answers(runtime, records, {q.id: q for q in asked}, lambda _: judge_ref, Thresholds())
    return answers_table(records, judgements)


def _questions(questions) -> list[Question]:
    if isinstance(questions, (str, Path)) and (str(questions) in SHIPPED_SETS or Path(questions).is_file()):
        return load_questions(questions)
    if isinstance(questions, (str, Question)):
        questions = [questions]
    rubrics = tuple(load_rubrics("em").items())
    return [q if isinstance(q, Question) else
            Question(id=f"q{i}", type="free_form_judge_0_100", paraphrases=(str(q),), judge_prompts=rubrics)
            for i, q in enumerate(questions)]


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """A finished run's result table (results.parquet) as a DataFrame: one row per reading of every probe,
    with the columns model, arm, seed, probe, cluster, item, variant, sample, question, answer, value and
    the probe's extras (see `llmpsych.runtime.results`)."""
    from .errors import UserError
    from .runtime.results import read_results
    from .runtime.store import RunStore

    store = RunStore(Path(run_dir))
    if not store.exists("config.yaml"):
        raise UserError(f"{run_dir}: not a run directory (no config.yaml in it)")
    return read_results(store)
