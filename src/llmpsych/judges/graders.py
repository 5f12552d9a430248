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
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UserError
from ..hashing import digest
from ..models.engine import SamplingParams, ScoreRequest
from ..models.refs import ModelRef
from ..runtime.calls import Runtime
from ..yamlio import entry_lines, read_yaml
from .check import cohen_kappa
from .rubrics import fill
from .scoring import MIN_NUMERIC_MASS

LABELS = ("false", "true", "neither", "refusal")
LETTERS = ("A", "B", "C", "D")
# The label order of each rotation, letter A first: a Latin square, every label once at every letter.
ROTATIONS = tuple(LABELS[shift:] + LABELS[:shift] for shift in range(len(LABELS)))
GRADERS = ("meta", "direct")
UNSCORED = "unscored"
SHIPPED_VALIDATION = "persona_grader_validation.yaml"
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
    rng = random.Random(digest("persona-grader-orders", [list(vars(item).values()) for item in items]))
    orders: list[tuple[str, ...] | None] = [None] * len(items)
    dealt = rng.randrange(len(ROTATIONS))
    for grader in dict.fromkeys(item.grader for item in items):
        positions = [i for i, item in enumerate(items) if item.grader == grader]
        # Consecutive rotations continue across graders, so the totals stay balanced too.
        rotations = [ROTATIONS[(dealt + k) % len(ROTATIONS)] for k in range(len(positions))]
        dealt += len(positions)
        rng.shuffle(rotations)
        for position, rotation in zip(positions, rotations):
            orders[position] = rotation
    return orders


def load_grader_rubrics(path: Path | None = None) -> dict[str, dict]:
    """grader -> {"prompt": template with an {options} slot, "options": label -> option line}."""
    path = Path(path) if path else Path(str(resources.files("llmpsych.judges") / "rubrics" / "persona.yaml"))
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
        options = "\n".join(f"{letter} - {rubric['options'][label]}" for letter, label in zip(LETTERS, order))
        return fill(rubric["prompt"], item.question, item.answer, persona=item.persona, true=item.true,
                    false=item.false, options=options)

    def grade(self, items: list[GradeItem], label: str = "grade") -> list[Grade]:
        orders = label_orders(items)
        prompts = [self.prompt(item, order) for item, order in zip(items, orders)]
        requests = [ScoreRequest(({"role": "user", "content": p},), LETTERS, closed="all") for p in prompts]
        rationales: list[str | None] = [None] * len(items)
        if self.rationale_tokens:
            asks = [({"role": "user", "content": p.replace("Reply with the letter only.", RATIONALE_ASK)},)
                    for p in prompts]
            params = SamplingParams(temperature=0, max_tokens=self.rationale_tokens)
            rationales = [s[0].text.strip().splitlines()[0] if s[0].text.strip() else ""
                          for s in self.runtime.sample(self.ref, asks, params, 1, label=f"{label}: rationales")]
        grades = []
        for logprobs, rationale, order in zip(self.runtime.score(self.ref, requests, label=label), rationales, orders):
            probs = dict(zip(order, (math.exp(x) for x in logprobs)))  # letter i stands for order[i]
            mass = sum(probs.values())
            shares = {name: probs[name] / mass if mass > 0 else 0.0 for name in LABELS}
            chosen = max(shares, key=shares.get) if mass >= self.min_mass else None
            grades.append(Grade(chosen, shares, mass, rationale, order))
        return grades


# ---- measured reliability -----------------------------------------------------------------------
def load_grader_validation(path: Path | None = None) -> tuple[str, list[GradeItem], list[str]]:
    """(source, items, expected labels) from a labelled YAML list (the shipped set by default)."""
    path = Path(path) if path else Path(str(resources.files("llmpsych.judges") / "data" / SHIPPED_VALIDATION))
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
