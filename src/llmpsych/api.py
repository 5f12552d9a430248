"""The notebook verbs: each part of a study in a few lines, a DataFrame (or a model reference) back.

    ask        sample answers from models (and rate them with a judge)        -> one row per answer
    choose     P(option) of multiple-choice questions, from log-probabilities  -> one row per option
    finetune   a LoRA fine-tune of a model on chat or text rows                -> a model reference
    dataset    the rows of a shipped dataset, or of a researcher's JSONL       -> a list of rows
    Judge      0-100 ratings with a rubric (shipped or a researcher's file)    -> one column per rubric
    Grader     categorical grades with a researcher's own categories           -> a label per answer
    summarise  means with hierarchical bootstrap intervals                     -> one row per group
    load_run   a finished run's result table                                   -> one row per reading

They are thin wrappers over the parts the recipes use (probes, judges, runtime, training, analysis), so
everything is cached the same way: a second call with the same inputs runs no model. Without a
`runtime=`, the verbs share one runtime per cache folder, so a model stays loaded between calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from .errors import UserError
from .judges.judge import Thresholds
from .judges.rubrics import load_rubrics
from .judges.scoring import MIN_NUMERIC_MASS
from .jsonl import dataset_format, read_training_rows, write_jsonl
from .models.refs import ModelRef, parse_model_ref
from .probes.freeform import SamplingDefaults, judge_answers, sample_answers
from .probes.questions import SHIPPED_SETS, Question, load_questions
from .runtime.calls import Runtime

ModelLike = str | ModelRef


def ask(questions: str | Path | list, models: ModelLike | list[ModelLike] | dict[str, ModelLike] = "smollm2",
        samples: int = 1, judge: ModelLike | None = None, temperature: float = 1.0, max_tokens: int = 256,
        seed: int = 0, runtime: Runtime | None = None) -> pd.DataFrame:
    """Sample answers from each model (and rate them with `judge`, if given); one row per answer.

    questions: a question file, a shipped set name ("em-main"), a list of Question objects, or plain
        strings (asked as single-turn user messages; judged with the shipped EM rubrics).
    models: one model reference (a string, or the ModelRef `finetune` returns), a list of them, or
        {label: reference}.
    samples: answers per paraphrase. The result has `aligned`, `coherent`, `status` and `misaligned`
        columns when a judge is given (see analysis.misalignment.answers_table).
    """
    from .analysis.misalignment import answers_table

    runtime = _runtime(runtime)
    asked = _questions(questions)
    sampling = SamplingDefaults(samples_per_paraphrase=samples, temperature=temperature, max_tokens=max_tokens,
                                seed=seed)
    records = []
    for label, ref in _labelled(models).items():
        records += sample_answers(runtime, ref, asked, sampling, {"model": label})
    if judge is None:
        return pd.DataFrame(records)
    judge_ref = _ref(judge, "judge")
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


# ---- choose: multiple choice from log-probabilities -------------------------------------------------------
def choose(question_or_items: str | Path | list, options: list[str] | None = None,
           models: ModelLike | list[ModelLike] | dict[str, ModelLike] = "smollm2", rotations: bool = True,
           cloze: bool = False, system: str | None = None, runtime: Runtime | None = None) -> pd.DataFrame:
    """P(each option) of multiple-choice questions, read off the model's log-probabilities (no sampling).

    question_or_items: one question (with `options`), a list of {"question", "options"[, "id"]} dicts or
        (question, options) pairs, or a choice-item file / shipped set ("em-choices": option 0 is the
        aligned answer, option 1 the misaligned one).
    rotations: list the options in every cyclic order and average, so a preference for a letter cancels
        (False: the given order only). cloze: also score each option's own text as the reply.
    system: a system prompt; None leaves the model's own default (SmolLM2's template writes one).

    One row per model x question x option: model, question_id, question, option_index, option, p (from the
    letters, renormalised over them), letter_mass (the probability on the letters: a model that answers no
    letter is not choosing), and with cloze p_cloze and cloze_mass. A p is missing (NaN), never 0, when a
    rotation put no probability on any letter.
    """
    from .probes.choices import score_choices

    runtime = _runtime(runtime)
    items = _choice_items(question_or_items, options)
    rows = []
    for label, ref in _labelled(models).items():
        scores = score_choices(runtime, ref, [(question, opts) for _, question, opts in items], system, rotations,
                               cloze, label=f"choose {label}")
        for (question_id, question, opts), score in zip(items, scores):
            for index, option in enumerate(opts):
                row = {"model": label, "question_id": question_id, "question": question, "option_index": index,
                       "option": option, "p": score.letters[index], "letter_mass": score.letter_mass}
                if cloze:
                    row.update(p_cloze=score.cloze[index], cloze_mass=score.cloze_mass)
                rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("p", "p_cloze"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def _choice_items(spec, options: list[str] | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """(id, question, options) for every question `choose` was given."""
    from .probes.choices import LETTERS, SHIPPED_CHOICES, load_choices

    if options is not None:
        if not isinstance(spec, str):
            raise UserError("choose: `options` goes with a single question; for several questions pass a list of "
                            "{'question': ..., 'options': [...]} items")
        entries = [("q0", spec, options)]
    elif isinstance(spec, (str, Path)) and (str(spec) in SHIPPED_CHOICES or Path(spec).is_file()):
        entries = [(item.id, item.question, (item.aligned, item.misaligned)) for item in load_choices(spec)]
    elif isinstance(spec, str):
        raise UserError(f"choose: no options for {spec!r} (pass options=[...], or a choice file or shipped set: "
                        f"{', '.join(SHIPPED_CHOICES)})")
    else:
        entries = []
        for index, entry in enumerate(spec):
            if isinstance(entry, dict) and set(entry) <= {"id", "question", "options"}:
                entries.append((str(entry.get("id", f"q{index}")), entry.get("question"), entry.get("options")))
            elif hasattr(entry, "aligned") and hasattr(entry, "misaligned"):  # a ChoiceItem
                entries.append((entry.id, entry.question, (entry.aligned, entry.misaligned)))
            elif isinstance(entry, (tuple, list)) and len(entry) == 2:
                entries.append((f"q{index}", entry[0], entry[1]))
            else:
                raise UserError(f"choose: item {index}: expected {{'question': ..., 'options': [...]}} "
                                "(an 'id' is optional) or a (question, options) pair")
    checked = []
    for question_id, question, opts in entries:
        opts = tuple(opts) if isinstance(opts, (list, tuple)) else ()
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"choose: question '{question_id}': expected a non-empty question string")
        if not 2 <= len(opts) <= len(LETTERS) or not all(isinstance(o, str) and o.strip() for o in opts) \
                or len(set(opts)) != len(opts):
            raise UserError(f"choose: question '{question_id}': expected 2 to {len(LETTERS)} distinct, non-empty "
                            "option strings")
        checked.append((question_id, question, opts))
    if not checked:
        raise UserError("choose: no questions")
    return checked


# ---- finetune and dataset --------------------------------------------------------------------------------
DEFAULT_DATASET_SIZE = 100  # rows of a shipped dataset when no size is given (the EM paper used 6,000)


def finetune(base: ModelLike, rows_or_path: list[dict] | str | Path, preset: str | None = "cpu-small", seed: int = 0,
             runtime: Runtime | None = None, **overrides) -> ModelRef:
    """A LoRA fine-tune of `base`, trained once and reused whenever base, data, settings and seed match.

    rows_or_path: chat rows ({"messages": [...]}, trained on the last assistant turn) or text rows
        ({"text": ...}, trained on every token), or a JSONL file of them; checked first, every bad line named.
    preset: a named training preset (training/config.py: "cpu-small", "em-paper", ...); keyword overrides
        replace its fields (epochs=2, learning_rate=1e-4, rank=8, ...).
    Returns the model reference with its adapter: pass it to ask, choose, Judge or Grader like any model.
    """
    from .config import validate
    from .training.config import TrainConfig, train_preset

    runtime = _runtime(runtime)
    ref = _ref(base, "finetune: base")
    path, sha = _training_file(rows_or_path)
    settings = train_preset(preset, "finetune: preset").model_dump() if preset is not None else {}
    config = validate(TrainConfig, {**settings, **overrides}, "finetune")
    return runtime.train(ref, path, sha, config, seed, label=f"finetune {path.stem[:16]}")


def _training_file(rows_or_path) -> tuple[Path, str]:
    """(a validated JSONL file, its SHA-256). Rows are written to the cache, named by their content."""
    from .hashing import file_sha256
    from .paths import cache_dir

    if isinstance(rows_or_path, (str, Path)):
        path = Path(rows_or_path).expanduser()
        read_training_rows(path)
        return path, file_sha256(path, memo_dir=cache_dir() / "digests")
    rows = list(rows_or_path) if isinstance(rows_or_path, Iterable) and not isinstance(rows_or_path, dict) else None
    if not rows:
        raise UserError("finetune: no rows (expected a list of chat rows {'messages': [...]} or text rows "
                        "{'text': ...}, or a JSONL file of them)")
    bad = next((i for i, row in enumerate(rows, start=1) if not isinstance(row, dict)), None)
    if bad is not None:
        raise UserError(f"finetune: rows: line {bad}: expected a dict, got {type(rows[bad - 1]).__name__}")
    dataset_format(rows, "finetune: rows")
    folder = cache_dir() / "datasets"
    partial = folder / f".rows.{os.getpid()}.jsonl"
    sha = write_jsonl(rows, partial)
    path = folder / f"{sha}.jsonl"
    if path.exists():  # the same rows again: keep the file (and its mtime) that earlier fine-tunes read
        partial.unlink()
    else:
        partial.replace(path)
    return path, sha


def dataset(name: str | Path, size: int | None = None, seed: int = 0, **options) -> list[dict]:
    """The rows of a dataset: a shipped one built deterministically from (size, seed) ("insecure", "secure",
    "educational", "evil-numbers", "backdoor"; `options` go to its builder, e.g. trigger= for backdoor;
    size defaults to 100), or a researcher's JSONL file, checked row by row (size: its first rows)."""
    from .datasets import DATASET_NAMES, build_dataset

    if isinstance(name, str) and name in DATASET_NAMES:
        return build_dataset(name, DEFAULT_DATASET_SIZE if size is None else size, seed, **options)
    text = str(name)
    if isinstance(name, Path) or text.endswith(".jsonl") or "/" in text or Path(text).is_file():
        if options:
            raise UserError(f"dataset {text}: options ({', '.join(options)}) apply to shipped datasets, not to a file")
        rows = read_training_rows(Path(text).expanduser())
        return rows if size is None else rows[:size]
    raise UserError(f"dataset: unknown dataset '{text}' (expected one of: {', '.join(DATASET_NAMES)}; "
                    "or a path to a JSONL file)")


# ---- judges ------------------------------------------------------------------------------------------
class Judge:
    """A 0-100 judge: every prompt of a rubric set, scored from the judge model's probabilities.

    rubric: a shipped rubric set ("em": aligned, coherent) or a YAML file of your own, mapping each metric
        name to a prompt template with {question} and {answer} slots.
    A rating is the probability-weighted mean of the numbers 0-100, and missing (NaN) when less than
    `min_numeric_mass` of the judge's probability is on numbers (EM's rule).
    """

    def __init__(self, rubric: str | Path = "em", model: ModelLike = "smollm2", runtime: Runtime | None = None,
                 min_numeric_mass: float = MIN_NUMERIC_MASS):
        self.rubrics = load_rubrics(rubric, "Judge: rubric")
        self.ref = _ref(model, "Judge: model")
        self.runtime = runtime
        self.min_numeric_mass = min_numeric_mass

    def rate(self, question: str | list[str], answer: str | list[str]) -> pd.DataFrame:
        """Rate one answer (or lists of questions and answers): a row each, a column per rubric metric."""
        return self.rate_frame(_pairs(question, answer))

    def rate_frame(self, frame: pd.DataFrame, question: str = "question", answer: str = "answer") -> pd.DataFrame:
        """`frame` with a column per rubric metric (the score), `<metric>_mass` (the probability on numbers)
        and, for rubrics that offer escape words (CODE, REFUSAL), `<metric>_verdict`. Rows without an
        answer are not judged."""
        from .judges.judge import Judge as RubricJudge

        _require_columns(frame, [question, answer], "Judge.rate_frame")
        out = frame.copy()
        rated = frame[answer].notna().to_numpy()
        items = [(str(q), str(a)) for q, a in zip(frame[question][rated], frame[answer][rated])]
        judge = RubricJudge(_runtime(self.runtime), self.ref, Thresholds(min_numeric_mass=self.min_numeric_mass))
        for metric, template in self.rubrics.items():
            ratings = judge.rate(template, items, label=f"judge {metric}") if items else []
            out[metric] = _spread(rated, [r.score for r in ratings], float("nan"))
            out[f"{metric}_mass"] = _spread(rated, [r.numeric_mass for r in ratings], float("nan"))
            if any(r.verdicts for r in ratings):
                out[f"{metric}_verdict"] = _spread(rated, [r.verdict for r in ratings], None)
            out[metric] = pd.to_numeric(out[metric], errors="coerce").astype(float)
        return out


class Grader:
    """A categorical judge with your own categories, from a YAML file with a prompt template (an {options}
    slot where the lettered categories go, and {question}, {answer}) and the category labels::

        prompt: |-
          Does this answer flatter the user? ... <answer>{answer}</answer>
          {options}
          Reply with the letter only.
        categories: {flattering: it praises the user, neutral: it does not}

    The categories are lettered in a different cyclic order per item (balanced over the items graded
    together), so a judge's preference for a letter favours no category. The label is the most probable
    letter's category, missing when less than `min_mass` of the probability is on the letters.
    """

    def __init__(self, categories: str | Path, model: ModelLike = "smollm2", runtime: Runtime | None = None,
                 min_mass: float = MIN_NUMERIC_MASS, rationale_tokens: int = 0):
        from .judges.graders import load_category_rubric

        self.rubric = load_category_rubric(Path(categories))
        self.ref = _ref(model, "Grader: model")
        self.runtime = runtime
        self.min_mass, self.rationale_tokens = min_mass, rationale_tokens

    @property
    def labels(self) -> tuple[str, ...]:
        return self.rubric.labels

    def grade(self, question: str | list[str], answer: str | list[str], **slots: str | list[str]) -> pd.DataFrame:
        """Grade one answer (or lists); `slots` fill the prompt's other {slots}."""
        frame = _pairs(question, answer)
        for name, values in slots.items():
            frame[name] = [values] * len(frame) if isinstance(values, str) else list(values)
        return self.grade_frame(frame)

    def grade_frame(self, frame: pd.DataFrame, question: str = "question", answer: str = "answer") -> pd.DataFrame:
        """`frame` with `label` (a category, or missing), `label_mass` (the probability on the letters),
        `p_<category>` (renormalised over the letters) and, with rationale_tokens, `rationale`. The prompt's
        other {slots} are read from the columns of the same name. Rows without an answer are not graded."""
        from .judges.graders import CategoryGrader

        slots = sorted(self.rubric.slots)
        _require_columns(frame, [question, answer] + slots, f"Grader.grade_frame ({self.rubric.source})")
        out = frame.copy()
        graded = frame[answer].notna().to_numpy()
        items = [(str(q), str(a)) for q, a in zip(frame[question][graded], frame[answer][graded])]
        values = [{name: str(row[name]) for name in slots} for _, row in frame[graded].iterrows()]
        grader = CategoryGrader(_runtime(self.runtime), self.ref, self.rubric, self.min_mass, self.rationale_tokens)
        grades = grader.grade(items, values, label="grade") if items else []
        out["label"] = _spread(graded, [g.label for g in grades], None)
        out["label_mass"] = _spread(graded, [g.mass for g in grades], float("nan"))
        for name in self.labels:
            out[f"p_{name}"] = _spread(graded, [g.probabilities[name] for g in grades], float("nan"))
        if self.rationale_tokens:
            out["rationale"] = _spread(graded, [g.rationale for g in grades], None)
        return out


def _pairs(question: str | list[str], answer: str | list[str]) -> pd.DataFrame:
    questions = [question] if isinstance(question, str) else list(question)
    answers = [answer] if isinstance(answer, str) else list(answer)
    if len(questions) != len(answers):
        raise UserError(f"{len(questions)} questions but {len(answers)} answers (expected one question per answer)")
    return pd.DataFrame({"question": questions, "answer": answers})


def _spread(mask, values: list, missing) -> list:
    """`values` at the rows where `mask` is true, `missing` elsewhere."""
    given = iter(values)
    return [next(given) if chosen else missing for chosen in mask]


def _require_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise UserError(f"{source}: no column '{absent[0]}' (the frame has: {', '.join(map(str, frame.columns))})")


# ---- summarise ---------------------------------------------------------------------------------------
AUTO = "auto"
# What "auto" picks for each level: the result table's columns (load_run), else ask's and choose's.
AUTO_LEVELS = {"units": ("seed",), "clusters": ("cluster", "question_id"), "items": ("item", "paraphrase_index"),
               "samples": ("sample", "sample_index")}


def summarise(frame: pd.DataFrame, by: str | list[str] | None = "arm", value: str = "value",
              units: str | None = AUTO, clusters: str | None = AUTO, items: str | None = AUTO,
              samples: str | None = AUTO, resamples: int = 2000) -> pd.DataFrame:
    """The mean of `value` per group of `by`, with a 95% hierarchical bootstrap interval (analysis/stats.py).

    The levels say what is independent: units (fine-tunes: one per seed; a missing seed, the base model, is
    one unit), clusters within them (questions, facts, prompts), items within a cluster (paraphrases,
    readings) and samples of an item. The estimate is a mean of means down the levels, and a replicate
    resamples units, then clusters, then items, then samples, so readings of one cluster never count as
    independent. "auto" takes the result table's column (seed, cluster, item, sample: load_run output) or
    else ask's and choose's (question_id, paraphrase_index, sample_index) when the frame has one; None
    leaves a level out; a column name uses that column. Missing values are left out, never counted as 0.

    One row per group: by..., estimate, ci_low, ci_high, units, clusters, readings.
    """
    from .analysis.stats import Levels
    from .analysis.stats import summarise as summarise_levels

    by_columns = [] if by is None else [by] if isinstance(by, str) else list(by)
    _require_columns(frame, by_columns + [value], "summarise")
    chosen = {level: _level_column(frame, level, column)
              for level, column in (("units", units), ("clusters", clusters), ("items", items), ("samples", samples))}
    work = frame.copy()
    if not by_columns:
        work["_group"] = "all"
    unit = chosen["units"] or "_unit"
    if chosen["units"] is None:
        work[unit] = "all"
    else:  # a reading with no unit (the base model has no seed) belongs to one unit of its own
        work[unit] = work[unit].astype(object).where(work[unit].notna(), "none")
    levels = Levels(unit=unit, cluster=chosen["clusters"], item=chosen["items"], sample=chosen["samples"])
    table = summarise_levels(work, by_columns or ["_group"], value, levels, resamples)
    return table.drop(columns=["_group"]) if not by_columns else table


def _level_column(frame: pd.DataFrame, level: str, column: str | None) -> str | None:
    if column is None:
        return None
    if column == AUTO:
        return next((c for c in AUTO_LEVELS[level] if c in frame.columns), None)
    _require_columns(frame, [column], f"summarise: {level}")
    return column


# ---- shared plumbing ---------------------------------------------------------------------------------
_RUNTIMES: dict[Path, Runtime] = {}


def _runtime(runtime: Runtime | None) -> Runtime:
    """The given runtime, else one shared per cache folder, so a notebook's models stay loaded between calls."""
    if runtime is not None:
        return runtime
    from .paths import cache_dir

    folder = cache_dir()
    if folder not in _RUNTIMES:
        _RUNTIMES[folder] = Runtime()
    return _RUNTIMES[folder]


def _ref(model: ModelLike, source: str = "model") -> ModelRef:
    return model if isinstance(model, ModelRef) else parse_model_ref(str(model), source)


def _labelled(models) -> dict[str, ModelRef]:
    """{label: model reference} from one model, a list of them or a {label: model} mapping."""
    if isinstance(models, (str, ModelRef)):
        models = [models]
    pairs = models.items() if isinstance(models, dict) else ((str(m), m) for m in models)
    return {str(label): _ref(model, f"models: '{label}'") for label, model in pairs}
