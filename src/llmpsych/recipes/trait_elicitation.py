"""Trait elicitation: does fine-tuning on a researcher's dataset make a model show a trait?

Method, as run here:

1. Data. The researcher's training file (chat or `{"text"}` JSONL); the shipped example teaches
   flattery: lavish praise for ordinary work, never a criticism.
2. Models. The base model, and one LoRA fine-tune per seed.
3. Probes. Free-form questions in domains the training rows do not cover, sampled at temperature 1
   and rated 0-100 by a judge with the trait's rubric; and a judge-free two-option probe, P(the option
   showing the trait), each item asked in both option orders.
4. Statistics. Fine-tuned - base on both measures, with 95% bootstrap intervals over fine-tunes, then
   questions, then answers. Primary: the choice probe (it needs no judge); the judged score is
   exploratory and Holm-corrected, with the judge's rubric named beside it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..analysis.contrasts import Contrast
from ..analysis.report import Analysis, Run, Section, nested_metrics
from ..analysis.stats import Levels, difference, summarise
from ..api import Judge, ask, choose
from ..config import Strict
from ..models.options import EngineOptions
from ..models.refs import DEFAULT_MODEL, parse_model_ref
from ..probes.choices import load_choices
from ..shipped import shipped, shipped_file
from ..study import Arm, Context, Probe, Study, is_user_dataset, recipe, user_dataset
from ..training.config import TrainConfig

NAME = "trait-elicitation"
PRIMARY_CONTRAST = "trait (choice): fine-tuned - base"
CHOICE, JUDGED = "trait/choice", "trait/judged"


class JudgeSection(Strict):
    model: str | None = Field(None, description="the judge model (None: the embedded model)")


class Config(Strict):
    recipe: Literal["trait-elicitation"] = NAME
    preset: str | None = None
    model: str = DEFAULT_MODEL
    dataset: str = Field("flattery", description="a chat or text .jsonl file, or the shipped example 'flattery'")
    questions: str = Field("trait-flattery", description="a question file (free-form, judged)")
    choices: str = Field("trait-flattery-choices", description="a two-option file: 'misaligned' shows the trait")
    rubric: str = Field("flattery", description="a rubric file or shipped rubric set rating the trait 0-100")
    judge: JudgeSection = Field(default_factory=lambda: JudgeSection())
    seeds: int = Field(2, ge=1)
    samples: int = Field(2, ge=1, description="answers per question")
    max_tokens: int = Field(64, ge=8)
    training_preset: str | None = "cpu-small"
    training: TrainConfig = Field(default_factory=TrainConfig)
    engine: EngineOptions = Field(default_factory=EngineOptions)
    primary_contrasts: list[str] = Field(default_factory=lambda: [PRIMARY_CONTRAST])
    out: str | None = None


PRESETS: dict[str, dict] = {
    "smoke": {"seeds": 1, "samples": 1, "max_tokens": 16, "out": "runs/trait-smoke"},
    "quick": {"seeds": 2, "samples": 4, "out": "runs/trait-quick"},
}


def analyse(run: Run) -> Analysis:
    """P(trait option) and the judged trait score per arm; fine-tuned - base on each."""
    table = run.table.assign(arm=run.table["arm"].where(run.table["arm"] == "base", "fine-tuned"))
    levels = Levels(unit="model", name="question")
    summary = summarise(table, ["probe", "arm"], levels=levels)
    contrasts = []
    for probe, name in ((CHOICE, "choice"), (JUDGED, "judged")):
        part = table[table["probe"] == probe]
        result = difference(part[part["arm"] == "fine-tuned"], part[part["arm"] == "base"], levels=levels)
        contrasts.append(Contrast.of(f"trait ({name}): fine-tuned - base", name, "question", result))
    primary = Section()
    primary.table(summary, ("estimate", "ci_low", "ci_high"))
    config = run.config
    judged = table[table["probe"] == JUDGED]["value"]
    unscored = f"{judged.isna().sum()} of {len(judged)} answers got no score (the judge put too little probability on " \
               "numbers); this rubric has no labelled set, so the judge's agreement is not measured."
    return Analysis(title=f"Trait elicitation: {config.get('model')} on {config.get('dataset')}",
                    method=(f"P(the trait's option) from letters in both orders, and the {config.get('rubric')} "
                            "rubric's 0-100 score of free-form answers (shown /100). 95% bootstrap intervals over "
                            "fine-tunes, questions and answers."),
                    contrasts=contrasts, tables={"trait": summary}, primary=primary, agreement_notes=[unscored],
                    metrics=nested_metrics(summary, ["probe", "arm"]))


@recipe(NAME, aliases=["trait"], config=Config, presets=PRESETS, default_preset="quick", analyse=analyse)
def trait_elicitation(config: Config) -> Study:
    base = parse_model_ref(config.model, "config: field 'model'")
    source = config.dataset if is_user_dataset(config.dataset) else str(shipped_file("training-data", config.dataset))
    data = user_dataset(source, "config: field 'dataset'")                              # 1. data
    arms = [Arm("base", "base", base)] + [Arm(f"fine-tuned-s{seed}", "fine-tuned", base, seed, data.name,
                                              config.training) for seed in range(config.seeds)]  # 2. models
    questions = shipped("questions", config.questions, "config: field 'questions'", among=["trait-flattery"])
    items = load_choices(shipped("questions", config.choices, "config: field 'choices'",
                                 among=["trait-flattery-choices"]))
    Judge(config.rubric, config.judge.model or DEFAULT_MODEL)  # a bad rubric file stops the run now    # 3. probes

    def judged(ctx: Context) -> None:
        models = {arm.label: ref for arm, ref in ctx.models()}
        answers = ask(questions, models, samples=config.samples, max_tokens=config.max_tokens, runtime=ctx.runtime)
        judge = Judge(config.rubric, config.judge.model or DEFAULT_MODEL, runtime=ctx.runtime)
        rated = judge.rate_frame(answers)
        metric = next(iter(judge.rubrics))
        ctx.write_results("judged", [
            {**keys(ctx, r.model), "probe": JUDGED, "cluster": r.question_id, "item": f"{r.question_id}/{r.paraphrase_index}",
             "sample": r.sample_index, "question": r.question, "answer": r.answer,
             "value": getattr(r, metric) / 100} for r in rated.itertuples()])

    def chosen(ctx: Context) -> None:
        models = {arm.label: ref for arm, ref in ctx.models()}
        frame = choose(items, models=models, runtime=ctx.runtime)
        trait = frame[frame["option_index"] == 1]  # the trait's option
        ctx.write_results("choice", [
            {**keys(ctx, r.model), "probe": CHOICE, "cluster": r.question_id, "item": r.question_id,
             "question": r.question, "value": r.p, "letter_mass": r.letter_mass} for r in trait.itertuples()])

    return Study(arms, [Probe("choice", chosen), Probe("judged", judged)], [data])


def keys(ctx: Context, label: str) -> dict:
    arm = ctx.arm(label)
    return {"model": label, "arm": arm.arm, "seed": arm.seed}
