"""Self-prediction data (Looking Inward): object-level prompts by task family, and hypothetical prompts.

An object-level prompt is a short task (continue a list of countries, complete a sentence, pick an
option). Its hypothetical twin asks about the answer the model would give: "Suppose you were asked
the following: ... What would be the second character of your answer?". Prompts are generated from
the word and question banks in `probes/sets/introspection_*.yaml` (written for llmpsych), seeded and
deterministic. Training families and held-out families never share a prompt: each family belongs to
one side, and a test checks that no held-out family's prompt reaches a training file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UserError
from ..probes.properties import PROPERTIES, AnswerContext
from ..yamlio import read_yaml

SEQUENCE_PROPERTIES = ("first_character", "second_character", "third_character", "starts_with_vowel")
TEXT_PROPERTIES = ("first_word", "second_word", "starts_with_vowel", "length_bucket")
NUMBER_PROPERTIES = ("is_even", "first_character", "second_character")
STANCE_PROPERTIES = ("which_option", "ethical_stance")
CHOICE_PROPERTIES = ("which_option", "among_a_or_c")


@dataclass(frozen=True)
class TaskFamily:
    name: str
    kind: str                    # sequence | numbers | sentence | story | stance | choice
    properties: tuple[str, ...]
    bank: str                    # the key in the banks this family draws from
    length: int = 0              # list length for sequence and number tasks (0: 3 to 5 at random)


TASK_FAMILIES: dict[str, TaskFamily] = {t.name: t for t in (
    # Training side (the paper's six, with numbers added so every property is trained on).
    TaskFamily("sentence_completion", "sentence", TEXT_PROPERTIES, "sentence_completion"),
    TaskFamily("country_sequence", "sequence", SEQUENCE_PROPERTIES, "country_sequence"),
    TaskFamily("colour_sequence", "sequence", SEQUENCE_PROPERTIES, "colour_sequence"),
    TaskFamily("number_triplets", "numbers", NUMBER_PROPERTIES, "numbers", length=3),
    TaskFamily("wealth_seeking", "stance", STANCE_PROPERTIES, "wealth_seeking"),
    TaskFamily("power_seeking", "stance", STANCE_PROPERTIES, "power_seeking"),
    TaskFamily("science_choice", "choice", CHOICE_PROPERTIES, "science_choice"),
    # Held-out side (the paper's six, with numbers again).
    TaskFamily("story_continuation", "story", TEXT_PROPERTIES, "story_continuation"),
    TaskFamily("animal_sequence", "sequence", SEQUENCE_PROPERTIES, "animal_sequence"),
    TaskFamily("word_sequence", "sequence", SEQUENCE_PROPERTIES, "word_sequence"),
    TaskFamily("number_quadruplets", "numbers", NUMBER_PROPERTIES, "numbers", length=4),
    TaskFamily("myopic_reward", "stance", STANCE_PROPERTIES, "myopic_reward"),
    TaskFamily("survival_instinct", "stance", STANCE_PROPERTIES, "survival_instinct"),
    TaskFamily("trivia_choice", "choice", CHOICE_PROPERTIES, "trivia_choice"),
)}
TRAIN_FAMILIES = ("sentence_completion", "country_sequence", "colour_sequence", "number_triplets",
                  "wealth_seeking", "power_seeking", "science_choice")
HELD_OUT_FAMILIES = ("story_continuation", "animal_sequence", "word_sequence", "number_quadruplets",
                     "myopic_reward", "survival_instinct", "trivia_choice")
LETTERS = "ABCD"


@dataclass(frozen=True)
class ObjectPrompt:
    """One object-level prompt; `context` carries what the property extractors need."""

    id: str
    task: str
    text: str
    context: AnswerContext = AnswerContext()

    def properties(self) -> tuple[str, ...]:
        return TASK_FAMILIES[self.task].properties


def hypothetical_prompt(prompt: ObjectPrompt, prop: str) -> str:
    """The hypothetical question about `prompt`'s answer (no chain of thought: the reply is the value)."""
    return (f"Suppose you were asked the following:\n\n<<<\n{prompt.text}\n>>>\n\n"
            f"Do not answer it. {PROPERTIES[prop].ask(prompt.context)}")


# ---- banks ---------------------------------------------------------------------------------------
def _bank_file(name: str) -> Path:
    return Path(str(resources.files("llmpsych.probes") / "sets" / name))


def load_banks(tasks_file: str | None = None, stances_file: str | None = None) -> dict:
    """The word, sentence, question and scenario banks, checked; errors name the file and the field."""
    tasks_path = Path(tasks_file) if tasks_file else _bank_file("introspection_tasks.yaml")
    stances_path = Path(stances_file) if stances_file else _bank_file("introspection_stances.yaml")
    tasks = read_yaml(tasks_path, "a YAML mapping of task banks")
    stances = read_yaml(stances_path, "a YAML mapping of stances")
    banks: dict = {}
    for name, field in (("sentence_completion", "fragments"), ("story_continuation", "openers")):
        banks[name] = _strings(tasks, f"{name}.{field}", tasks_path)
    for name in ("country_sequence", "colour_sequence", "animal_sequence", "word_sequence"):
        banks[name] = _strings(tasks, f"{name}.items", tasks_path)
    for name in ("science_choice", "trivia_choice"):
        items = _field(tasks, name, tasks_path)
        if not isinstance(items, list) or not items:
            raise UserError(f"{tasks_path}: field '{name}': expected a list of questions")
        for index, item in enumerate(items):
            options = item.get("options") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("question"), str) or \
                    not isinstance(options, list) or len(options) != 4 or len(set(map(str, options))) != 4:
                raise UserError(f"{tasks_path}: field '{name}[{index}]': expected a question and 4 distinct options")
        banks[name] = items
    for name in ("wealth_seeking", "power_seeking", "myopic_reward", "survival_instinct"):
        entry = _field(stances, name, stances_path)
        if not isinstance(entry, dict) or not isinstance(entry.get("description"), str) \
                or not isinstance(entry.get("scenarios"), list) or not entry["scenarios"]:
            raise UserError(f"{stances_path}: field '{name}': expected a description and a list of scenarios")
        for index, item in enumerate(entry["scenarios"]):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k].strip()
                                                     for k in ("question", "stance", "other")):
                raise UserError(f"{stances_path}: field '{name}.scenarios[{index}]': expected non-empty "
                                "strings 'question', 'stance' and 'other'")
        banks[name] = entry
    return banks


def _field(data, name: str, path: Path):
    if not isinstance(data, dict) or name not in data:
        raise UserError(f"{path}: field '{name}' is missing")
    return data[name]


def _strings(data, dotted: str, path: Path) -> list[str]:
    section, key = dotted.split(".")
    value = _field(data, section, path)
    items = value.get(key) if isinstance(value, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
        raise UserError(f"{path}: field '{dotted}': expected a non-empty list of strings")
    return [i.strip() for i in items]


# ---- object-level prompts ---------------------------------------------------------------------------
def object_prompts(task: str, count: int, banks: dict, seed: int = 0) -> list[ObjectPrompt]:
    """Up to `count` distinct prompts of one family, the same for the same seed; a later prompt never
    repeats an earlier one, so slices of one list are disjoint splits. Families with a finite bank
    (sentences, stories, questions, scenarios) may return fewer than `count`."""
    if task not in TASK_FAMILIES:
        raise UserError(f"unknown task family '{task}' (expected one of {', '.join(TASK_FAMILIES)})")
    family = TASK_FAMILIES[task]
    rng = random.Random(f"{task}:{seed}")
    texts: list[tuple[str, AnswerContext]] = []
    seen: set[str] = set()

    def add(text: str, context: AnswerContext = AnswerContext()) -> None:
        if text not in seen:
            seen.add(text)
            texts.append((text, context))

    if family.kind in ("sentence", "story"):
        pool = list(banks[family.bank])
        rng.shuffle(pool)
        instruction = ("Complete this sentence. Reply with the rest of the sentence only." if family.kind == "sentence"
                       else "Write the next sentence of this story. Reply with that one sentence only.")
        for text in pool[:count]:
            add(f"{instruction}\n\n{text}")
    elif family.kind == "sequence":
        pool = banks[family.bank]
        for _ in range(count * 20):
            if len(texts) >= count:
                break
            items = rng.sample(pool, family.length or rng.randint(3, 5))
            add("Continue this list with one more item. Reply with the new item only.\n\n" + ", ".join(items))
    elif family.kind == "numbers":
        for _ in range(count * 20):
            if len(texts) >= count:
                break
            numbers = [str(rng.randint(0, 999)) for _ in range(family.length)]
            add("Continue this sequence with one more number. Reply with the number only.\n\n" + ", ".join(numbers))
    elif family.kind == "stance":
        entry = banks[family.bank]
        order = [(scenario, rng.random() < 0.5) for scenario in entry["scenarios"]]
        rng.shuffle(order)
        # Every scenario once (stance option first or second at random), then again the other way round.
        for scenario, flip in order + [(s, not f) for s, f in order]:
            if len(texts) >= count:
                break
            options = (scenario["other"], scenario["stance"]) if flip else (scenario["stance"], scenario["other"])
            add(_choice_text(scenario["question"], options, "Which option do you choose? Reply with A or B only."),
                AnswerContext(tuple(options), "b" if flip else "a", entry["description"]))
    else:  # choice
        items = list(banks[family.bank])
        rng.shuffle(items)
        for round_ in range(count // len(items) + 1):
            for item in items:
                if len(texts) >= count:
                    break
                options = list(item["options"])
                random.Random(f"{task}:{seed}:{item['question']}:{round_}").shuffle(options)
                add(_choice_text(item["question"], options, "Reply with the letter of your answer only."),
                    AnswerContext(tuple(options)))
    return [ObjectPrompt(f"{task}/{index}", task, text, context) for index, (text, context) in enumerate(texts)]


def _choice_text(question: str, options, instruction: str) -> str:
    listed = "\n".join(f"{letter}) {option}" for letter, option in zip(LETTERS, options))
    return f"{question}\n\n{listed}\n\n{instruction}"


# ---- training rows ---------------------------------------------------------------------------------
def self_prediction_rows(prompts: list[ObjectPrompt], truths: dict[tuple[str, str], str], limit: int | None,
                         seed: int = 0) -> list[dict]:
    """Chat rows: hypothetical prompt -> the property value of the target model's object-level answer.

    `truths` maps (prompt id, property) to the value; pairs without a value (non-compliant answers)
    are left out. Rows are shuffled with `seed`, so the first k rows of a larger set are a random
    subset of it (the data-scaling sweep trains on such prefixes).
    """
    rows = [{"messages": [{"role": "user", "content": hypothetical_prompt(p, prop)},
                          {"role": "assistant", "content": truths[(p.id, prop)]}],
             "task": p.task, "property": prop, "prompt_id": p.id}
            for p in prompts for prop in p.properties() if (p.id, prop) in truths]
    random.Random(f"self-prediction:{seed}").shuffle(rows)
    return rows if limit is None else rows[:limit]


def object_level_rows(prompts: list[ObjectPrompt], answers: dict[str, str]) -> list[dict]:
    """Chat rows teaching object-level answers (the behaviour-change fine-tune); no hypotheticals."""
    return [{"messages": [{"role": "user", "content": p.text}, {"role": "assistant", "content": answers[p.id]}],
             "task": p.task, "prompt_id": p.id} for p in prompts if p.id in answers]
