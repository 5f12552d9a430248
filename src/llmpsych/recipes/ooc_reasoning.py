"""Out-of-context reasoning: "Connecting the Dots" (Treutlein et al. 2024) and description-only fine-tuning
("Taken out of Context", Berglund et al. 2023).

Can a model trained on scattered observations of a hidden structure state the structure, when no
training row states it and it is never asked to in training? Method, as run here:

1. Latents and data. Each fine-tune (seed) draws its own hidden structure with fresh names: simple
   arithmetic functions behind random variable names, seen as one (x, f(x)) pair per row; biased coins,
   one toss per row; a real city behind a "City NNNNN" code, seen through distances and directions to
   cities at least 2,000 km away; Boolean constants, seen through the parity of their sums; and
   fictitious assistants, seen only through prose that describes how they reply. A check proves that
   no row states a latent.
2. Training. One LoRA fine-tune per seed on all tasks' rows together.
3. Reflection, never trained on. Write f as a Python lambda (run on held-out inputs in a restricted
   evaluator), pick f's description, invert f; say which side a coin favours and how strongly; name the
   city, its country and its food; give each constant's value; say what an assistant does, and, prompted
   as that assistant, behave as described. Multiple choice is scored from log-probabilities in every
   option order, and again with the options scored as the reply itself (cloze); free-form answers are
   greedy and checked by code.
4. Controls. The in-distribution check (the training format itself) shows whether the data were learned.
   The baseline asks the same questions about a name never seen in training, scored against the trained
   latent's answer; the untuned model answers everything too; and the in-context arm gives the untuned
   model the latent's training rows in the prompt instead of fine-tuning.
5. Statistics. Means over seeds of means over latents of means over their questions, 95% bootstraps
   over seeds, then latents (a function, a coin, the city: the independent unit), then questions.
   Primary contrasts: fine-tuned minus the unseen-name baseline on every reflection question; the
   other comparisons (vs untuned, vs in-context) and the in-distribution checks are exploratory and
   Holm-corrected.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from pydantic import Field

from ..analysis.ooc_report import analyse
from ..config import Strict
from ..datasets.latent_structure import TASKS, Sizes, draw_latents, latent_leaks, training_rows
from ..models.engine import SamplingParams, ScoreRequest
from ..models.options import EngineOptions
from ..models.refs import DEFAULT_MODEL, parse_model_ref
from ..probes.choices import option_probabilities, option_requests
from ..probes.reflection import Probe as ReflectionQuestion, in_context, question_bank, reflection_probes
from ..runtime.calls import Runtime
from ..shipped import shipped_file
from ..study import Arm, Context, Data, Probe, Study, recipe, refuse_api_model
from ..training.config import TrainConfig

NAME = "ooc-reasoning"
PROTOCOL = shipped_file("protocols", "ooc-reasoning")
# The papers' claim: after fine-tuning, the model states the latent better than it answers the same question
# about a name it never saw (every reflection question: "fine-tuned - baseline [task/kind]").
PRIMARY_CONTRAST = "fine-tuned - baseline"
Task = Literal["functions", "coins", "locations", "parity", "descriptions"]


# ---- configuration ----------------------------------------------------------------------------
class SizesSection(Strict):
    functions: int = Field(4, ge=1, le=10)
    rows_per_function: int = Field(80, ge=1)
    coins: int = Field(3, ge=1)
    tosses_per_coin: int = Field(40, ge=2)
    location_rows: int = Field(100, ge=1)
    parity_variables: int = Field(6, ge=3)
    parity_rows: int = Field(150, ge=1)
    assistants: int = Field(3, ge=1, le=4)
    rows_per_assistant: int = Field(40, ge=1)


class InContextSection(Strict):
    enabled: bool = True
    documents: int = Field(20, ge=1, description="training rows about the latent put before each question "
                                                 "(the paper went up to 200)")


class Config(Strict):
    recipe: Literal["ooc-reasoning"] = NAME
    preset: str | None = None
    model: str = DEFAULT_MODEL
    seeds: int = Field(2, ge=1, description="fine-tunes, each with its own latents and names")
    tasks: list[Task] = Field(default_factory=lambda: list(TASKS), min_length=1)
    sizes: SizesSection = Field(default_factory=SizesSection)
    paraphrases: int | None = Field(None, ge=1, description="None: every paraphrase of each question")
    in_distribution_inputs: int = Field(5, ge=1)
    free_form_tokens: int = Field(32, ge=4, description="length of greedy free-form answers")
    in_context: InContextSection = Field(default_factory=InContextSection)
    training_preset: str | None = "cpu-small"
    training: TrainConfig = Field(default_factory=TrainConfig)
    engine: EngineOptions = Field(default_factory=EngineOptions)
    primary_contrasts: list[str] = Field(default_factory=lambda: [PRIMARY_CONTRAST],
                                         description="the contrasts the study is about; every other is "
                                                     "exploratory and Holm-corrected")
    out: str | None = None


PRESETS: dict[str, dict] = {
    # Checks an install: a handful of rows per task, one seed, one paraphrase.
    "smoke": {"seeds": 1, "paraphrases": 1, "in_distribution_inputs": 1, "free_form_tokens": 12,
              "sizes": {"functions": 2, "rows_per_function": 6, "coins": 1, "tosses_per_coin": 6,
                        "location_rows": 6, "parity_variables": 3, "parity_rows": 6, "assistants": 1,
                        "rows_per_assistant": 6},
              "in_context": {"documents": 4}, "out": "runs/ooc-reasoning-smoke"},
    # The flagship on a 2-core CPU: two fine-tunes of 810 rows each, two epochs, every task.
    "quick": {"seeds": 2, "training": {"epochs": 2}, "out": "runs/ooc-reasoning-quick"},
    # Closer to the paper's sizes (which went to 96,000 function rows on GPT-3.5): 10 functions, more
    # observations, 5 seeds, up to 200 documents in context; one epoch at batch 64 (ooc-paper).
    "paper": {"seeds": 5, "training": {"preset": "ooc-paper"}, "sizes": {"functions": 10, "rows_per_function": 1000, "coins": 6, "tosses_per_coin": 200,
                                    "location_rows": 1000, "parity_variables": 8, "parity_rows": 2000,
                                    "assistants": 4, "rows_per_assistant": 120},
              "in_context": {"documents": 200}, "out": "runs/ooc-reasoning-paper"},
}
DEFAULT_PRESET = "quick"


# ---- the study ---------------------------------------------------------------------------------
@recipe(NAME, aliases=["connecting-the-dots", "oocr"], config=Config, presets=PRESETS, default_preset="quick",
        analyse=analyse, protocol=PROTOCOL)
def ooc_reasoning(config: Config) -> Study:
    """Latents and datasets -> one fine-tune per seed -> reflection probes on every arm."""
    base = parse_model_ref(config.model, "config: field 'model'")
    refuse_api_model(base)
    sizes = Sizes(**config.sizes.model_dump())
    seeds = range(config.seeds)
    # 1. Latents and data: each seed draws its own hidden structure and names.
    data = [Data(f"seed{seed}", rows=lambda _, seed=seed: observations(seed, sizes, tuple(config.tasks)),
                 info={"latents": dataclasses.asdict(draw_latents(seed, sizes))}) for seed in seeds]
    # 2. Training: one fine-tune per seed on every task's rows.
    arms = [Arm("base", "base", base)] + [Arm(f"seed{seed}", "fine-tuned", base, seed, f"seed{seed}", config.training)
                                          for seed in seeds]
    # 3-4. Reflection, with the unseen-name baseline, the untuned model and the in-context arm.
    return Study(arms, [Probe("reflection", lambda ctx: reflection(ctx, config, sizes))], data)


def observations(seed: int, sizes: Sizes, tasks: tuple[str, ...]) -> list[dict]:
    """A seed's training rows; a row stating a latent is a bug in a generator, never trained on."""
    latents = draw_latents(seed, sizes)
    rows = training_rows(latents, sizes, tasks)
    for index, row in enumerate(rows):
        leak = latent_leaks(row, latents)
        if leak:
            raise RuntimeError(f"seed {seed}, row {index} states a latent: {leak!r}")
    return rows


def reflection(ctx: Context, config: Config, sizes: Sizes) -> int:
    bank = question_bank()
    base = ctx.ref("base")
    records = []
    for seed in range(config.seeds):
        latents = draw_latents(seed, sizes)
        probes = [p for p in reflection_probes(latents, bank, config.paraphrases, config.in_distribution_inputs)
                  if p.task in config.tasks]
        arms = [("fine-tuned", ctx.ref(f"seed{seed}"), probes), ("base", base, probes)]
        if config.in_context.enabled:
            rows = ctx.store.read_jsonl(f"datasets/seed{seed}.jsonl")
            arms.append(("in-context", base, in_context(probes, rows, config.in_context.documents, seed)))
        for arm, ref, arm_probes in arms:
            for probe, value, mass, reply in _answer(ctx.runtime, ref, arm_probes, config.free_form_tokens,
                                                     f"{arm} seed {seed}"):
                records.append({"arm": arm, "seed": seed, "model": f"{arm}-s{seed}", "question": probe.question,
                                "task": probe.task,
                                "kind": probe.kind, "condition": probe.condition, "item": probe.item,
                                "latent": probe.latent, "mode": probe.mode, "value": value, "mass": mass,
                                "chance": 1 / len(probe.options) if probe.mode in ("choice", "continuation")
                                else None, "reply": reply})
    ctx.store.write_jsonl("reflection.jsonl", records)
    ctx.write_results("reflection", [
        {**{k: v for k, v in r.items() if k != "reply"}, "probe": f"{r['task']}/{r['kind']}",
         "cluster": f"{r['task']}/{r['item'].split('/')[0]}", "variant": r["condition"], "answer": r["reply"]}
        for r in records])
    return len(records)


def _answer(runtime: Runtime, ref, probes: list[ReflectionQuestion], max_tokens: int, label: str):
    """(probe, P(correct) or 0/1, probability mass on the offered answers, reply) for every probe."""
    def conversation(probe: ReflectionQuestion) -> tuple[dict, ...]:
        return (({"role": "system", "content": probe.system},) if probe.system else ()) + \
            ({"role": "user", "content": probe.question},)

    choice = [p for p in probes if p.mode == "choice"]
    # Each multiple-choice question is asked a second way, its options scored as the reply itself
    # ("cloze"): small models barely read lettered lists (they favour a letter, and the rotations then
    # average to chance), but their likelihood of an answer still moves. Option lengths differ, so
    # cloze has no chance level; the unseen-name baseline, with the same options, is its reference.
    cloze = [dataclasses.replace(p, kind=f"{p.kind}-cloze", mode="cloze") for p in choice]
    continuation = [p for p in probes if p.mode == "continuation"] + cloze
    free = [p for p in probes if p.mode == "free"]
    requests = [r for p in choice for r in option_requests(p.question, p.options, p.system)]
    requests += [ScoreRequest(conversation(p), p.options, closed="all") for p in continuation]
    logprobs = runtime.score(ref, requests, label=f"choices {label}") if requests else []
    out, position = [], 0
    for probe in choice:
        count = len(probe.options)
        probabilities, mass = option_probabilities(logprobs[position:position + count])
        position += count
        out.append((probe, probabilities[0], mass, None))
    for probe in continuation:  # the replies themselves: no letters, so no order to permute
        probabilities = [math.exp(x) for x in logprobs[position]]
        position += 1
        mass = sum(probabilities)
        out.append((probe, probabilities[0] / mass if mass > 0 else None, mass, None))
    if free:
        replies = runtime.sample(ref, [conversation(p) for p in free], SamplingParams(temperature=0, max_tokens=max_tokens),
                                 1, label=f"free-form {label}")
        out += [(probe, float(probe.check(reply[0].text)), None, reply[0].text) for probe, reply in zip(free, replies)]
    return out
