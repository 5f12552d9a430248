"""Self-prediction data (Looking Inward): object-level prompts by task family, and hypothetical prompts.

An object-level prompt is a short task (continue a list of countries, complete a sentence, pick an
option). Its hypothetical twin asks about the answer the model would give: "Suppose you were asked
the following: ... What would be the second character of your answer?". Prompts are generated from
the word, sentence, question and scenario banks in `probes/sets/introspection_*.yaml` (written for
llmpsych: literal items, then items expanded from templates and fact tables), seeded and deterministic.
Each prompt of a family comes from a different bank item, its `source`. Training families and held-out
families never share a prompt: each family belongs to one side, and a test checks that no held-out
family's prompt reaches a training file.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..shipped import shipped
from ..yamlio import read_text, read_yaml
from .properties import PROPERTIES, AnswerContext

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
    """One object-level prompt; `context` carries what the property extractors need.

    `source` names the bank item the prompt was made from (`trivia_choice/q-233`,
    `myopic_reward/scenario-41`; a sequence or number prompt is its own source): no two prompts of a
    list share one, so it is the statistical cluster, and disjoint slices have disjoint sources.
    """

    id: str
    task: str
    text: str
    source: str
    context: AnswerContext = AnswerContext()

    def properties(self) -> tuple[str, ...]:
        return TASK_FAMILIES[self.task].properties


def hypothetical_prompt(prompt: ObjectPrompt, prop: str) -> str:
    """The hypothetical question about `prompt`'s answer (no chain of thought: the reply is the value)."""
    return (f"Suppose you were asked the following:\n\n<<<\n{prompt.text}\n>>>\n\n"
            f"Do not answer it. {PROPERTIES[prop].ask(prompt.context)}")


# ---- banks ---------------------------------------------------------------------------------------
# A bank is a list of plain items: the literal ones its file lists, first, then those the file's optional
# `templates` section generates (see the header of introspection_tasks.yaml). A text or scenario template
# fills named slots with every combination of its fillers; a question template fills a question from each
# row of a fact table, takes the right option from the answer column and three wrong ones from rows that
# differ from it. Expansion is deterministic, so an item's index in its bank names it (the prompt's source).
TEXT_BANKS = {"sentence_completion": "fragments", "story_continuation": "openers"}
SEQUENCE_BANKS = ("country_sequence", "colour_sequence", "animal_sequence", "word_sequence")
CHOICE_BANKS = ("science_choice", "trivia_choice")
STANCE_BANKS = ("wealth_seeking", "power_seeking", "myopic_reward", "survival_instinct")
SOURCE_NAMES = {"sentence": "fragment", "story": "opener", "stance": "scenario", "choice": "q"}
TEMPLATE_LIMIT = 10_000   # items one template may expand to (a bank must load in a blink)
SLOT = re.compile(r"\{(\w+)(?:\.(\w+))?\}")


SHIPPED_TASKS, SHIPPED_STANCES = "introspection-tasks", "introspection-stances"  # shipped "questions" files


def load_banks(tasks_file: str | Path | None = None, stances_file: str | Path | None = None) -> dict:
    """The word, sentence, question and scenario banks, checked and expanded; errors name the file and field.

    Each file is a shipped bank's name or a researcher's own file of the same format (None: the shipped
    one); both are checked alike.
    """
    tasks_path = shipped("questions", tasks_file or SHIPPED_TASKS, "tasks_file", among=(SHIPPED_TASKS,))
    stances_path = shipped("questions", stances_file or SHIPPED_STANCES, "stances_file", among=(SHIPPED_STANCES,))
    tasks = _read_bank_file(tasks_path, "a YAML mapping of task banks")
    stances = _read_bank_file(stances_path, "a YAML mapping of stances")
    task_templates = Templates(tasks, tasks_path, (*TEXT_BANKS, *CHOICE_BANKS))
    stance_templates = Templates(stances, stances_path, STANCE_BANKS)
    banks: dict = {}
    for name, field in TEXT_BANKS.items():
        literal = _strings(tasks, f"{name}.{field}", tasks_path, required=not task_templates.has(name))
        banks[name] = _then_new(literal, task_templates.texts(name), key=lambda text: text)
        if not banks[name]:
            raise UserError(f"{tasks_path}: field '{name}.{field}': expected a non-empty list of strings")
    for name in SEQUENCE_BANKS:
        banks[name] = _strings(tasks, f"{name}.items", tasks_path)
    for name in CHOICE_BANKS:
        items = _field(tasks, name, tasks_path)
        if not isinstance(items, list) or not (items or task_templates.has(name)):
            raise UserError(f"{tasks_path}: field '{name}': expected a list of questions")
        for index, item in enumerate(items):
            options = item.get("options") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("question"), str) or \
                    not isinstance(options, list) or len(options) != 4 or len(set(map(str, options))) != 4:
                raise UserError(f"{tasks_path}: field '{name}[{index}]': expected a question and 4 distinct options")
        banks[name] = _then_new(items, task_templates.questions(name), key=lambda item: item["question"])
    for name in STANCE_BANKS:
        entry = _field(stances, name, stances_path)
        scenarios = entry.get("scenarios") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("description"), str) \
                or not isinstance(scenarios, list) or not (scenarios or stance_templates.has(name)):
            raise UserError(f"{stances_path}: field '{name}': expected a description and a list of scenarios")
        for index, item in enumerate(scenarios):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k].strip()
                                                     for k in ("question", "stance", "other")):
                raise UserError(f"{stances_path}: field '{name}.scenarios[{index}]': expected non-empty "
                                "strings 'question', 'stance' and 'other'")
        generated = stance_templates.scenarios(name)
        banks[name] = {**entry, "scenarios": _then_new(
            scenarios, generated, key=lambda s: (s["question"], s["stance"], s["other"]))} if generated else entry
    return banks


def _read_bank_file(path: Path, what: str):
    """The parsed file, read by libyaml where PyYAML has it (the shipped banks are large and PyYAML's own
    parser takes a third of a second over them); anything libyaml objects to is read again by read_yaml,
    whose message names the line."""
    import yaml

    fast = getattr(yaml, "CSafeLoader", None)  # the safe loader's constructors over libyaml's parser
    if fast is not None and path.is_file():
        loader = fast(read_text(path))
        try:
            return loader.get_single_data()
        except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
                RecursionError):
            pass
        finally:
            loader.dispose()
    return read_yaml(path, what)


def _then_new(literal: list, generated: list, key) -> list:
    """The literal items as they are, then each generated item whose key no earlier item has."""
    seen = {key(item) for item in literal}
    items = list(literal)
    for item in generated:
        if key(item) not in seen:
            seen.add(key(item))
            items.append(item)
    return items


def _field(data, name: str, path: Path):
    if not isinstance(data, dict) or name not in data:
        raise UserError(f"{path}: field '{name}' is missing")
    return data[name]


def _strings(data, dotted: str, path: Path, required: bool = True) -> list[str]:
    section, key = dotted.split(".")
    value = _field(data, section, path)
    items = value.get(key, None if required else []) if isinstance(value, dict) else None
    if not isinstance(items, list) or (required and not items) or \
            not all(isinstance(i, str) and i.strip() for i in items):
        raise UserError(f"{path}: field '{dotted}': expected a non-empty list of strings")
    return [i.strip() for i in items]


class Templates:
    """A file's `templates` section (bank name -> list of templates), with the `fillers` and `tables`
    they draw on; everything is checked on construction, so an error names the file and the field."""

    def __init__(self, data, path: Path, banks: tuple[str, ...]):
        self.path = path
        data = data if isinstance(data, dict) else {}
        section = data.get("templates") or {}
        if not isinstance(section, dict):
            raise UserError(f"{path}: field 'templates': expected a mapping from a bank's name to a list of templates")
        for bank, templates in section.items():
            if bank not in banks:
                raise UserError(f"{path}: field 'templates.{bank}': not a bank this file can generate "
                                f"(expected one of {', '.join(banks)})")
            if not isinstance(templates, list) or not all(isinstance(t, dict) for t in templates):
                raise UserError(f"{path}: field 'templates.{bank}': expected a list of templates (mappings)")
        self.section = section
        fillers = data.get("fillers") or {}
        if not isinstance(fillers, dict):
            raise UserError(f"{path}: field 'fillers': expected a mapping from a slot's name to its fillers")
        self.fillers = {name: self._values(values, f"fillers.{name}") for name, values in fillers.items()}
        tables = data.get("tables") or {}
        if not isinstance(tables, dict):
            raise UserError(f"{path}: field 'tables': expected a mapping from a table's name to its columns and rows")
        self.tables = {name: self._table(table, f"tables.{name}") for name, table in tables.items()}

    def has(self, bank: str) -> bool:
        return bool(self.section.get(bank))

    def texts(self, bank: str) -> list[str]:
        return [filled["text"] for index, template in enumerate(self.section.get(bank, []))
                for filled in self._expand(template, ("text",), f"templates.{bank}[{index}]")]

    def scenarios(self, bank: str) -> list[dict]:
        return [filled for index, template in enumerate(self.section.get(bank, []))
                for filled in self._expand(template, ("question", "stance", "other"), f"templates.{bank}[{index}]")]

    def questions(self, bank: str) -> list[dict]:
        return [item for index, template in enumerate(self.section.get(bank, []))
                for item in self._questions(template, f"templates.{bank}[{index}]")]

    # ---- slots --------------------------------------------------------------------------------------
    def _expand(self, template: dict, patterns: tuple[str, ...], field: str) -> list[dict[str, str]]:
        """Every combination of the template's fillers (slots in order of first use), each pattern filled."""
        self._keys(template, set(patterns), {"slots"}, field)
        own = template.get("slots") or {}
        if not isinstance(own, dict):
            raise UserError(f"{self.path}: field '{field}.slots': expected a mapping from a slot's name to its fillers")
        slots = {**self.fillers}
        slots.update({name: self._values(values, f"{field}.slots.{name}") for name, values in own.items()})
        used: dict[str, None] = {}  # slot names in order of first use
        for key in patterns:
            for name, part in self._placeholders(template[key], f"{field}.{key}"):
                slot = self._slot(name, slots, f"{field}.{key}")
                first = slots[slot][0]
                if isinstance(first, dict) != (part is not None) or (part and part not in first):
                    placeholder = "{" + name + (f".{part}" if part else "") + "}"
                    wanted = f"mappings with the key '{part}'" if part else "plain strings"
                    has = f"mappings with the keys {', '.join(first)}" if isinstance(first, dict) else "plain strings"
                    raise UserError(f"{self.path}: field '{field}.{key}': {placeholder} needs fillers that are "
                                    f"{wanted}; slot '{slot}' has {has}")
                used[slot] = None
        for name in own:
            if name not in used:
                raise UserError(f"{self.path}: field '{field}.slots.{name}': this slot is not used by the template")
        size = 1
        for slot in used:
            size *= len(slots[slot])
        if size > TEMPLATE_LIMIT:
            raise UserError(f"{self.path}: field '{field}': expands to {size} items (at most {TEMPLATE_LIMIT}; "
                            "use fewer fillers or split the template)")
        fillers = {key: _filler(template[key], slots) for key in patterns}
        return [{key: fill(dict(zip(used, chosen))) for key, fill in fillers.items()}
                for chosen in itertools.product(*(slots[slot] for slot in used))]

    def _placeholders(self, pattern, field: str) -> list[tuple[str, str | None]]:
        if not isinstance(pattern, str) or not pattern.strip():
            raise UserError(f"{self.path}: field '{field}': expected a non-empty string")
        return [(match.group(1), match.group(2)) for match in SLOT.finditer(pattern)]

    def _slot(self, name: str, slots: dict, field: str) -> str:
        """The slot a placeholder names: `{city}` is slot `city`; `{City}` is `city` capitalised."""
        if name in slots:
            return name
        if name[:1].isupper() and name[:1].lower() + name[1:] in slots:
            return name[:1].lower() + name[1:]
        raise UserError(f"{self.path}: field '{field}': slot '{name}' has no fillers "
                        "(expected it under the template's 'slots' or the file's 'fillers')")

    def _values(self, values, field: str) -> list:
        """A slot's fillers: a non-empty list of strings, or of mappings with the same keys to strings."""
        def text(value) -> str | None:
            ok = isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip()
            return str(value).strip() if ok else None

        if isinstance(values, list) and values and all(text(v) for v in values):
            return [text(v) for v in values]
        if isinstance(values, list) and values and all(isinstance(v, dict) and v for v in values):
            keys = list(values[0])
            for index, value in enumerate(values):
                if list(value) != keys or not all(text(v) for v in value.values()):
                    raise UserError(f"{self.path}: field '{field}[{index}]': expected the keys "
                                    f"{', '.join(map(str, keys))} with non-empty strings, like the first filler")
            return [{str(k): text(v) for k, v in value.items()} for value in values]
        raise UserError(f"{self.path}: field '{field}': expected a non-empty list of strings, "
                        "or of mappings from the same keys to strings")

    def _keys(self, template: dict, required: set[str], optional: set[str], field: str) -> None:
        for key in template:
            if key not in required | optional:
                raise UserError(f"{self.path}: field '{field}.{key}': unknown key "
                                f"(expected {', '.join(sorted(required | optional))})")
        for key in sorted(required - set(template)):
            raise UserError(f"{self.path}: field '{field}.{key}' is missing")

    # ---- fact tables --------------------------------------------------------------------------------
    def _table(self, table, field: str) -> list[dict[str, str]]:
        """A table's rows as mappings from its column names to their values (as text)."""
        columns = table.get("columns") if isinstance(table, dict) else None
        if not isinstance(table, dict) or set(table) != {"columns", "rows"} or not isinstance(columns, list) \
                or not columns or not all(isinstance(c, str) and SLOT.fullmatch(f"{{{c}}}") for c in columns) \
                or len(set(columns)) != len(columns):
            raise UserError(f"{self.path}: field '{field}': expected 'columns' (distinct names) and 'rows'")
        rows = table["rows"]
        if not isinstance(rows, list) or not rows:
            raise UserError(f"{self.path}: field '{field}.rows': expected a non-empty list of rows")
        made = []
        for index, row in enumerate(rows):
            values = self._values(row, f"{field}.rows[{index}]") if isinstance(row, list) else None
            if values is None or len(values) != len(columns) or isinstance(values[0], dict):
                raise UserError(f"{self.path}: field '{field}.rows[{index}]': expected a list of "
                                f"{len(columns)} values ({', '.join(columns)})")
            made.append(dict(zip(columns, values)))
        return made

    def _questions(self, template: dict, field: str) -> list[dict]:
        """One question per table row: the answer column's value and three distinct wrong values of that column,
        from rows that differ from it in every column the question names (so no wrong option also fits)."""
        self._keys(template, {"question", "table", "answer"}, set(), field)
        rows = self.tables.get(template["table"]) if isinstance(template["table"], str) else None
        if rows is None:
            known = f"expected one of {', '.join(self.tables)}" if self.tables else "the file has no 'tables' section"
            raise UserError(f"{self.path}: field '{field}.table': no table named {template['table']!r} ({known})")
        columns = {column: column for column in rows[0]}
        asked = [self._slot(name, columns, f"{field}.question") if part is None else None
                 for name, part in self._placeholders(template["question"], f"{field}.question")]
        if None in asked:
            raise UserError(f"{self.path}: field '{field}.question': a table's columns are plain values "
                            "('{column}', not '{column.key}')")
        answer = template["answer"]
        if answer not in columns:
            raise UserError(f"{self.path}: field '{field}.answer': no column named {answer!r} in table "
                            f"'{template['table']}' (expected one of {', '.join(columns)})")
        by_value: dict[str, list[dict]] = {}
        for row in rows:
            by_value.setdefault(row[answer], []).append(row)
        values = list(by_value)

        def fits_not(value: str, row: dict) -> bool:
            """A wrong option: not the answer, not a value the question names ("after December?" never offers
            December), and held by a row that differs from `row` in every column the question names."""
            return value != row[answer] and all(value != row[c] for c in asked) and \
                any(all(other[c] != row[c] for c in asked) for other in by_value[value])

        fill = _filler(template["question"], columns)
        # One seed per template: seeding a generator per row would take a third of the banks' load time.
        rng = random.Random(f"{template['table']}:{template['question']}:{answer}")
        items = []
        for index, row in enumerate(rows):
            question = fill(row)
            wrong: list[str] = []
            for _ in range(30):  # a few seeded draws find three wrong options; a scan settles the rare rest
                value = values[rng.randrange(len(values))]
                if value not in wrong and fits_not(value, row):
                    wrong.append(value)
                    if len(wrong) == 3:
                        break
            if len(wrong) < 3:
                valid = [value for value in values if value not in wrong and fits_not(value, row)]
                if len(wrong) + len(valid) < 3:
                    raise UserError(f"{self.path}: field '{field}': row {index} of table '{template['table']}' leaves "
                                    f"{len(wrong) + len(valid)} wrong options (expected at least 3 other values of "
                                    f"'{answer}')")
                wrong += rng.sample(valid, 3 - len(wrong))
            position = rng.randrange(4)
            items.append({"question": question, "options": wrong[:position] + [row[answer]] + wrong[position:],
                          "answer": position})
        return items


def _filler(pattern: str, slots) -> Callable[[dict], str]:
    """A function filling `pattern` from {slot: filler}; placeholders are resolved once, not per item."""
    pieces = SLOT.split(pattern)  # literal, slot, key, literal, slot, key, ..., literal
    literals = pieces[0::3]
    refs = []
    for name, part in zip(pieces[1::3], pieces[2::3]):
        slot = name if name in slots else name[:1].lower() + name[1:]
        refs.append((slot, part, slot != name))

    def fill(chosen: dict) -> str:
        out = [literals[0]]
        for (slot, part, capitalise), literal in zip(refs, literals[1:]):
            value = chosen[slot][part] if part else chosen[slot]
            out += (value[:1].upper() + value[1:] if capitalise else value, literal)
        return "".join(out)

    return fill


# ---- object-level prompts ---------------------------------------------------------------------------
def object_prompts(task: str, count: int, banks: dict, seed: int = 0) -> list[ObjectPrompt]:
    """Up to `count` prompts of one family, each from a different source, the same for the same seed.

    The list for a smaller count is a prefix of the list for a larger one, so slices of one list are
    disjoint splits. A family with a finite bank (sentences, stories, questions, scenarios) uses each
    item at most once, in a seeded random order (a question's options and a scenario's option order
    shuffled, seeded), and returns fewer than `count` when its bank runs out.
    """
    if task not in TASK_FAMILIES:
        raise UserError(f"unknown task family '{task}' (expected one of {', '.join(TASK_FAMILIES)})")
    family = TASK_FAMILIES[task]
    rng = random.Random(f"{task}:{seed}")
    made: list[tuple[str, str | None, AnswerContext]] = []   # (text, source index or None: its own source, context)
    seen: set[str] = set()

    def add(text: str, source: int | None = None, context: AnswerContext = AnswerContext()) -> None:
        if text not in seen:
            seen.add(text)
            made.append((text, source, context))

    if family.kind in ("sentence", "story"):
        pool = list(enumerate(banks[family.bank]))
        rng.shuffle(pool)
        instruction = ("Complete this sentence. Reply with the rest of the sentence only." if family.kind == "sentence"
                       else "Write the next sentence of this story. Reply with that one sentence only.")
        for index, text in pool[:count]:
            add(f"{instruction}\n\n{text}", index)
    elif family.kind == "sequence":
        pool = banks[family.bank]
        for _ in range(count * 20):
            if len(made) >= count:
                break
            items = rng.sample(pool, family.length or rng.randint(3, 5))
            add("Continue this list with one more item. Reply with the new item only.\n\n" + ", ".join(items))
    elif family.kind == "numbers":
        for _ in range(count * 20):
            if len(made) >= count:
                break
            numbers = [str(rng.randint(0, 999)) for _ in range(family.length)]
            add("Continue this sequence with one more number. Reply with the number only.\n\n" + ", ".join(numbers))
    elif family.kind == "stance":
        entry = banks[family.bank]
        order = [(index, scenario, rng.random() < 0.5) for index, scenario in enumerate(entry["scenarios"])]
        rng.shuffle(order)
        for index, scenario, flip in order[:count]:  # the stance option first or second at random
            options = (scenario["other"], scenario["stance"]) if flip else (scenario["stance"], scenario["other"])
            add(_choice_text(scenario["question"], options, "Which option do you choose? Reply with A or B only."),
                index, AnswerContext(tuple(options), "b" if flip else "a", entry["description"]))
    else:  # choice
        items = list(enumerate(banks[family.bank]))
        rng.shuffle(items)
        for index, item in items[:count]:
            options = list(item["options"])
            random.Random(f"{task}:{seed}:{item['question']}:0").shuffle(options)
            add(_choice_text(item["question"], options, "Reply with the letter of your answer only."),
                index, AnswerContext(tuple(options)))
    prompts = []
    for number, (text, source, context) in enumerate(made):
        prompt_id = f"{task}/{number}"
        name = prompt_id if source is None else f"{task}/{SOURCE_NAMES[family.kind]}-{source}"
        prompts.append(ObjectPrompt(prompt_id, task, text, name, context))
    return prompts


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
