"""Categorical graders for the persona study: does an answer assert X, the truth, neither, or refuse?

Two graders share one scoring rule. The **meta-belief grader** reads an answer about what the persona
believes; the **direct-belief grader** reads an answer to a direct or applied question. Each item lists
the four labels (X, truth, neither, refusal) as letters A-D in one of the four cyclic rotations of that
order; the rotations are spread evenly over the items of one `grade` call by a seeded shuffle, so over
a balanced set every label sits at every letter equally often and a grader's preference for a letter
favours no label. The label is the most probable letter mapped back through the item's rotation, or None
(unscored) when less than a quarter of its probability is on the letters at all: the same rule as
the 0-100 judge. A one-line rationale is generated beside the label when asked for. The graders'
agreement with a labelled set is measured by `check_graders` and shown next to their numbers.

The same rule grades into a researcher's own categories: `load_category_rubric` reads a YAML file with a
prompt template and 2-10 category labels, and `CategoryGrader` grades with it (`llmpsych.Grader` in a
notebook).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..hashing import digest
from ..models.engine import SamplingParams, ScoreRequest
from ..models.refs import ModelRef
from ..runtime.calls import Runtime
from ..shipped import shipped_file
from ..yamlio import entry_lines, read_yaml
from .check import cohen_kappa
from .rubrics import fill, slot_names
from .scoring import MIN_NUMERIC_MASS

LABELS = ("false", "true", "neither", "refusal")
LETTERS = ("A", "B", "C", "D")
CATEGORY_LETTERS = LETTERS + ("E", "F", "G", "H", "I", "J")  # a researcher's grader: 2 to 10 categories
# The label order of each rotation, letter A first: a Latin square, every label once at every letter.
ROTATIONS = tuple(LABELS[shift:] + LABELS[:shift] for shift in range(len(LABELS)))
GRADERS = ("meta", "direct")
UNSCORED = "unscored"
SHIPPED_VALIDATION = "persona-grader-validation"  # a "judge-data" file
RATIONALE_ASK = "Reply with the letter, then a dash and one short line saying why."


@dataclass(frozen=True)
class GradeItem:
    grader: str      # meta | direct
    persona: str
    true: str
    false: str
    question: str
    answer: str


@dataclass(frozen=True)
class Grade:
    label: str | None            # one of LABELS, or None when the grader committed to no letter
    probabilities: dict          # label -> probability, renormalised over the four letters
    mass: float                  # total probability on the letters
    rationale: str | None = None
    order: tuple = LABELS        # the labels the letters A-D stood for in this item's prompt


def label_orders(items: list[GradeItem]) -> list[tuple[str, ...]]:
    """The label order (letter A first) of each item: the rotations of `ROTATIONS`, dealt so that within
    each grader, and over all items, their counts differ by at most one; which item gets which comes from
    a shuffle seeded by the items, so the same list always gets the same orders (grades are cached by prompt).
    """
    return deal_orders([list(vars(item).values()) for item in items], [item.grader for item in items], LABELS,
                       "persona-grader-orders")


def deal_orders(keys: list, groups: list, labels: tuple[str, ...], salt: str) -> list[tuple[str, ...]]:
    """The label order of each item (letter A first): the cyclic rotations of `labels`, dealt so that within
    each group, and over all items, their counts differ by at most one, by a shuffle seeded by `salt` and the
    items' `keys` (the same items always get the same orders)."""
    rotations = tuple(tuple(labels[shift:]) + tuple(labels[:shift]) for shift in range(len(labels)))
    rng = random.Random(digest(salt, keys))
    orders: list[tuple[str, ...] | None] = [None] * len(keys)
    dealt = rng.randrange(len(rotations))
    for group in dict.fromkeys(groups):
        positions = [i for i, member in enumerate(groups) if member == group]
        # Consecutive rotations continue across groups, so the totals stay balanced too.
        dealt_here = [rotations[(dealt + k) % len(rotations)] for k in range(len(positions))]
        dealt += len(positions)
        rng.shuffle(dealt_here)
        for position, rotation in zip(positions, dealt_here):
            orders[position] = rotation
    return orders


def load_grader_rubrics(path: Path | None = None) -> dict[str, dict]:
    """grader -> {"prompt": template with an {options} slot, "options": label -> option line}."""
    path = Path(path) if path else shipped_file("rubrics", "persona")
    data = read_yaml(path, "a mapping of grader to prompt and options")
    rubrics = {}
    for grader in GRADERS:
        entry = data.get(grader) if isinstance(data, dict) else None
        entry = entry if isinstance(entry, dict) else {}
        options = entry.get("options") if isinstance(entry.get("options"), dict) else {}
        options = {str(k).lower() if isinstance(k, bool) else k: v for k, v in options.items()}  # YAML 1.1 booleans
        prompt = entry.get("prompt")
        if not isinstance(prompt, str) or "{options}" not in prompt or set(options) != set(LABELS):
            raise UserError(f"{path}: field '{grader}': expected a prompt with an {{options}} slot and options "
                            f"for each of {', '.join(LABELS)}")
        rubrics[grader] = {"prompt": prompt, "options": {label: str(options[label]) for label in LABELS}}
    return rubrics


class Grader:
    def __init__(self, runtime: Runtime, ref: ModelRef, min_mass: float = MIN_NUMERIC_MASS,
                 rationale_tokens: int = 0):
        self.runtime, self.ref, self.min_mass, self.rationale_tokens = runtime, ref, min_mass, rationale_tokens
        self.rubrics = load_grader_rubrics()

    def prompt(self, item: GradeItem, order: tuple[str, ...] = LABELS) -> str:
        """The grading prompt with the labels lettered A-D in `order`."""
        if item.grader not in GRADERS:
            raise ValueError(f"unknown grader {item.grader!r}")
        rubric = self.rubrics[item.grader]
        return CategoryRubric(rubric["prompt"], rubric["options"]).render(
            order, item.question, item.answer, persona=item.persona, true=item.true, false=item.false)

    def grade(self, items: list[GradeItem], label: str = "grade") -> list[Grade]:
        orders = label_orders(items)
        prompts = [self.prompt(item, order) for item, order in zip(items, orders)]
        return grade_prompts(self.runtime, self.ref, prompts, orders, LABELS, self.min_mass, self.rationale_tokens,
                             label)


def grade_prompts(runtime: Runtime, ref: ModelRef, prompts: list[str], orders: list[tuple[str, ...]],
                  labels: tuple[str, ...], min_mass: float = MIN_NUMERIC_MASS, rationale_tokens: int = 0,
                  label: str = "grade") -> list[Grade]:
    """Grade each prompt (its options lettered A.. in `orders[i]`) from the grader's letter probabilities:
    the most probable letter's label, or None below `min_mass` on the letters; with `rationale_tokens`, a
    one-line reason sampled greedily beside it."""
    letters = CATEGORY_LETTERS[:len(labels)]
    requests = [ScoreRequest(({"role": "user", "content": p},), letters, closed="all") for p in prompts]
    rationales: list[str | None] = [None] * len(prompts)
    if rationale_tokens:
        asks = [({"role": "user", "content": p.replace("Reply with the letter only.", RATIONALE_ASK)},)
                for p in prompts]
        params = SamplingParams(temperature=0, max_tokens=rationale_tokens)
        rationales = [s[0].text.strip().splitlines()[0] if s[0].text.strip() else ""
                      for s in runtime.sample(ref, asks, params, 1, label=f"{label}: rationales")]
    grades = []
    for logprobs, rationale, order in zip(runtime.score(ref, requests, label=label), rationales, orders):
        probs = dict(zip(order, (math.exp(x) for x in logprobs)))  # letter i stands for order[i]
        mass = sum(probs.values())
        shares = {name: probs[name] / mass if mass > 0 else 0.0 for name in labels}
        chosen = max(shares, key=shares.get) if mass >= min_mass else None
        grades.append(Grade(chosen, shares, mass, rationale, order))
    return grades


# ---- a researcher's own categories --------------------------------------------------------------------
CATEGORY_FIELDS = ("prompt", "categories")


@dataclass(frozen=True)
class CategoryRubric:
    """A categorical grader's prompt: a template with an {options} slot (and {question}, {answer}, any other
    slots), and its labels, each with the line the prompt shows for it (label -> line, in order)."""

    prompt: str
    options: dict
    source: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.options)

    @property
    def slots(self) -> set[str]:
        """The slots besides {question}, {answer} and {options}, filled per item."""
        return slot_names(self.prompt) - {"question", "answer", "options"}

    def render(self, order: tuple[str, ...], question: str, answer: str, **slots: str) -> str:
        """The prompt with the labels lettered A.. in `order`, one "A - line" per label."""
        options = "\n".join(f"{letter} - {self.options[name]}" for letter, name in zip(CATEGORY_LETTERS, order))
        return fill(self.prompt, question, answer, **slots, options=options)


def load_category_rubric(path: Path) -> CategoryRubric:
    """A researcher's categorical grader from a YAML file::

        prompt: |-
          Is this answer helpful? <question>{question}</question> <answer>{answer}</answer>
          {options}
          Reply with the letter only.
        categories:            # a list of labels, or label: the line the grader is shown for it
          helpful: it answers the question
          unhelpful: it does not
    """
    path = Path(path)
    data = read_yaml(path, "a mapping with a prompt and categories")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with the fields {', '.join(CATEGORY_FIELDS)}")
    unknown = [key for key in data if key not in CATEGORY_FIELDS]
    if unknown:
        raise UserError(f"{path}: unknown field '{unknown[0]}' (expected one of: {', '.join(CATEGORY_FIELDS)})")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not {"options", "answer"} <= slot_names(prompt):
        raise UserError(f"{path}: field 'prompt': expected a template with an {{options}} slot (where the lettered "
                        "categories go) and an {answer} slot")
    categories = data.get("categories")
    pairs = [(entry, entry) for entry in categories] if isinstance(categories, list) else \
        list(categories.items()) if isinstance(categories, dict) else []
    options = {_text(name): _text(line) for name, line in pairs}
    if not 2 <= len(options) <= len(CATEGORY_LETTERS) or len(options) != len(pairs) \
            or not all(name and line for name, line in options.items()):
        raise UserError(f"{path}: field 'categories': expected 2 to {len(CATEGORY_LETTERS)} distinct labels (a list, "
                        "or a mapping of label to the line the grader is shown for it)")
    return CategoryRubric(prompt, options, str(path))


def _text(value: object) -> str | None:
    """A label or option line as text (YAML reads yes/no/true/false as booleans); None for anything else."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip() if isinstance(value, (str, int, float)) else None


class CategoryGrader:
    """Grade answers into a researcher's own categories with one scoring rule shared with the persona graders:
    the categories are lettered in a different cyclic order per item (balanced over the items graded
    together, so a letter preference favours no category) and the label is the most probable letter's."""

    def __init__(self, runtime: Runtime, ref: ModelRef, rubric: CategoryRubric, min_mass: float = MIN_NUMERIC_MASS,
                 rationale_tokens: int = 0):
        self.runtime, self.ref, self.rubric = runtime, ref, rubric
        self.min_mass, self.rationale_tokens = min_mass, rationale_tokens

    def grade(self, items: list[tuple[str, str]], slots: list[dict] | None = None,
              label: str = "grade") -> list[Grade]:
        """Grade (question, answer) pairs; `slots` gives each item's values for the prompt's other slots."""
        slots = slots or [{} for _ in items]
        labels = self.rubric.labels
        orders = deal_orders([[q, a, sorted(s.items())] for (q, a), s in zip(items, slots)], [0] * len(items), labels,
                             "category-grader-orders")
        prompts = [self.rubric.render(order, q, a, **s) for (q, a), s, order in zip(items, slots, orders)]
        return grade_prompts(self.runtime, self.ref, prompts, orders, labels, self.min_mass, self.rationale_tokens,
                             label)


# ---- measured reliability -----------------------------------------------------------------------
def load_grader_validation(path: Path | None = None) -> tuple[str, list[GradeItem], list[str]]:
    """(source, items, expected labels) from a labelled YAML list (the shipped set by default)."""
    path = Path(path) if path else shipped_file("judge-data", SHIPPED_VALIDATION)
    rows = read_yaml(path, "a YAML list of labelled grader rows")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{path}: expected a non-empty list of rows")
    lines = entry_lines(path)
    fields = ("grader", "persona", "true", "false", "question", "answer", "expected")
    items, expected = [], []
    for index, row in enumerate(rows):
        where = f"{path}: line {lines[index] if index < len(lines) else index + 1}"
        row = {str(k).lower() if isinstance(k, bool) else k: v for k, v in row.items()} if isinstance(row, dict) else row
        if not isinstance(row, dict) or set(row) != set(fields):
            raise UserError(f"{where}: expected exactly the fields {', '.join(fields)}")
        row = {k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()}
        if row["grader"] not in GRADERS or row["expected"] not in LABELS:
            raise UserError(f"{where}: field 'grader' must be one of {GRADERS} and 'expected' one of {LABELS}")
        items.append(GradeItem(*(str(row[f]) for f in fields[:-1])))
        expected.append(row["expected"])
    return str(path), items, expected


def check_graders(grader: Grader, path: Path | None = None) -> dict:
    """Agreement, Cohen's kappa and confusion table of each grader on the labelled set."""
    source, items, expected = load_grader_validation(path)
    grades = grader.grade(items, label="grader check")
    results = {}
    for name in GRADERS:
        rows = [{"expected": e, "predicted": g.label or UNSCORED, "agree": g.label == e}
                for item, g, e in zip(items, grades, expected) if item.grader == name]
        if not rows:
            continue
        confusion = {e: {p: sum(r["expected"] == e and r["predicted"] == p for r in rows)
                         for p in LABELS + (UNSCORED,)} for e in LABELS}
        results[name] = {"grader": str(grader.ref), "source": Path(source).name, "n": len(rows),
                         "agreement": sum(r["agree"] for r in rows) / len(rows), "kappa": cohen_kappa(rows),
                         "unscored": sum(r["predicted"] == UNSCORED for r in rows), "confusion": confusion}
    return results
