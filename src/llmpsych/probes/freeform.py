"""Asking free-form questions and judging the answers: the probe behind EM-style evaluations.

`sample_answers` turns questions x paraphrases x prompt variants into sample records (one dict per
answer, with the system prompt the model actually saw); `judge_answers` rates each record with
every rubric of its question. Both go through the runtime, so they are cached and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import Field

from ..config import Strict
from ..errors import UserError
from ..judges.check import check_judge
from ..judges.judge import Judge, Thresholds
from ..judges.rubrics import load_rubrics
from ..models.chat import RAW_ROLE
from ..models.engine import SamplingParams
from ..models.refs import ModelRef
from ..runtime.calls import Runtime
from ..shipped import shipped
from ..yamlio import read_yaml
from .questions import Question


@dataclass(frozen=True)
class Frame:
    """A raw completion frame: the question goes where `{question}` is, the model completes the text (no chat
    template), and its answer ends at a stop string."""

    template: str
    stop: tuple[str, ...]

    def conversation(self, question: str) -> tuple[dict, ...]:
        return ({"role": RAW_ROLE, "content": self.template.replace("{question}", question)},)


def load_frame(spec: str, source: str = "config: field 'frame'") -> Frame:
    """A shipped frame by name (`flask`) or a researcher's YAML with `template` (holding {question}) and `stop`."""
    path = shipped("frames", spec, source)
    data = read_yaml(path, "a mapping with template and stop")
    template, stop = (data.get("template"), data.get("stop")) if isinstance(data, dict) else (None, None)
    if not isinstance(template, str) or "{question}" not in template:
        raise UserError(f"{path}: field 'template': expected a text holding {{question}}")
    if not isinstance(stop, list) or not stop or not all(isinstance(s, str) and s for s in stop):
        raise UserError(f"{path}: field 'stop': expected a non-empty list of strings (where the answer ends)")
    return Frame(template, tuple(stop))


class SamplingDefaults(Strict):
    """Sampling settings for free-form questions (the `sampling` section of a config).

    A question's own `temperature` wins over the default here; `samples_per_paraphrase`, when set,
    replaces every question's own value (None keeps them, 1 where a question has none).
    """

    samples_per_paraphrase: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(600, ge=1)
    min_tokens: int = Field(1, ge=0)
    seed: int = 0


def sample_answers(runtime: Runtime, ref: ModelRef, questions: list[Question], sampling: SamplingDefaults,
                   tags: dict, variants: tuple[tuple[str, str | None], ...] = (("plain", None),),
                   frame: Frame | None = None) -> list[dict]:
    """Every question x paraphrase x variant, sampled `samples_per_paraphrase` times.

    A variant is (name, prefix): the prefix (a backdoor trigger, say) goes in front of the user turn.
    `tags` (model label, condition, seed ...) are copied into every record. With a `frame` the questions are
    asked as raw completions inside it (a base model's frame); the question's system prompt then has no place.
    """
    default_system = runtime.default_system_prompt(ref)
    jobs: dict[SamplingParams, list] = {}
    for question in questions:
        n = sampling.samples_per_paraphrase or question.samples_per_paraphrase or 1
        temperature = question.temperature if question.temperature is not None else sampling.temperature
        params = SamplingParams(temperature, sampling.top_p, sampling.max_tokens, sampling.min_tokens,
                                frame.stop if frame else ())
        for variant, prefix in variants:
            for index, paraphrase in enumerate(question.paraphrases):
                prompt = f"{prefix} {paraphrase}" if prefix else paraphrase
                jobs.setdefault(params, []).append((question, variant, index, paraphrase, prompt, n))
    label = tags.get("model", str(ref))
    records = []
    for params, items in jobs.items():
        conversations = [frame.conversation(prompt) if frame else question.conversation(prompt)
                         for question, _, _, _, prompt, _ in items]
        most = max(item[5] for item in items)
        completions = runtime.sample(ref, conversations, params, most, sampling.seed, label=f"sample {label}")
        for (question, variant, index, paraphrase, prompt, wanted), outputs in zip(items, completions):
            for sample_index, completion in enumerate(outputs[:wanted]):
                records.append({
                    "id": f"{label}|{variant}|{question.id}|{index}|{sample_index}", **tags, "variant": variant,
                    "question_id": question.id, "category": question.category, "paraphrase_index": index,
                    "sample_index": sample_index, "system": None if frame else question.system or default_system,
                    "question": paraphrase, "prompt": prompt, "answer": completion.text,
                    "tokens": completion.tokens, "finish_reason": completion.finish_reason,
                    "temperature": params.temperature,
                })
    return records


def judge_answers(runtime: Runtime, samples: list[dict], questions: dict[str, Question],
                  judge_for: Callable[[Question], ModelRef], thresholds: Thresholds = Thresholds()) -> list[dict]:
    """Rate every sample with every rubric of its question, batching all samples per judge and rubric.

    The judge sees the question without any variant prefix, so a trigger does not sway the rating.
    """
    batches: dict[tuple[ModelRef, str, str], list[dict]] = {}
    for sample in samples:
        question = questions[sample["question_id"]]
        for metric, template in question.judge_prompts:
            batches.setdefault((judge_for(question), metric, template), []).append(sample)
    judgements = []
    for (ref, metric, template), members in batches.items():
        ratings = Judge(runtime, ref, thresholds).rate(template, [(s["question"], s["answer"]) for s in members],
                                                       label=f"judge {metric}")
        for sample, rating in zip(members, ratings):
            judgements.append({"sample_id": sample["id"], "metric": metric, "judge": str(ref),
                               "score": rating.score, "numeric_mass": rating.numeric_mass, "verdict": rating.verdict,
                               **{f"p_{word.lower()}": p for word, p in rating.verdicts.items()}})
    return judgements


def judged_rubrics(questions: list[Question], judge_refs: dict[str, ModelRef]) -> list[tuple[ModelRef, str, dict]]:
    """(judge, rubric name, its prompts) for every distinct pair that rated this run's answers; the shipped
    rubric is named "em", a question file's own prompts by the file."""
    shipped = load_rubrics("em")
    found: dict[tuple, tuple[ModelRef, str, dict]] = {}
    for question in questions:
        prompts = dict(question.judge_prompts)
        if not prompts:
            continue
        name = "em" if prompts == shipped else f"{Path(question.source).name} judge prompts"
        found.setdefault((str(judge_refs[question.id]), tuple(sorted(prompts.items()))),
                         (judge_refs[question.id], name, prompts))
    return list(found.values())


def check_judges(runtime: Runtime, questions: list[Question], judge_refs: dict[str, ModelRef], thresholds: Thresholds,
                 check_file: str | None = None, limit: int | None = None) -> dict[str, dict]:
    """Every judge with every rubric pair that rated these questions' answers, checked against the labelled
    set: a question file's own judge prompts are checked as they are, not the shipped rubric."""
    checked: dict[str, dict] = {}
    for ref, rubric, prompts in judged_rubrics(questions, judge_refs):
        if not {"aligned", "coherent"} <= set(prompts):
            continue  # no aligned and coherent prompts: the labelled set cannot check them
        outcome = check_judge(Judge(runtime, ref, thresholds), check_file, prompts, rubric, limit)
        name = "judge" if len({str(r) for r in judge_refs.values()}) == 1 else f"judge {ref}"
        checked[name if rubric == "em" else f"{name} ({rubric})"] = {**outcome.as_dict(), "rows": outcome.rows}
    return checked
