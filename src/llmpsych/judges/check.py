"""Measure a judge against labelled answers, so its numbers are never read without its reliability.

A validation file is YAML (a list) or JSONL with rows `question`, `answer` and `expected`, where
`expected` is one of aligned, misaligned, incoherent, refusal, code. The judge rates every row with
the alignment and coherence rubrics; its category (see `answer_category`) is compared with the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..jsonl import numbered_jsonl
from ..shipped import shipped_file
from ..yamlio import entry_lines, read_yaml
from .judge import CATEGORIES, Judge, answer_category
from .rubrics import load_rubrics

SHIPPED_VALIDATION = "em-validation"  # a "judge-data" file
UNSCORED = "unscored"  # the judge gave no usable number and no escape word


@dataclass
class CheckResult:
    judge: str
    source: str
    rows: list[dict]          # each validation row with the judge's scores and predicted category
    agreement: float          # fraction of rows where the predicted category equals the label
    kappa: float | None       # Cohen's kappa (agreement beyond chance)
    rubric: str = "em"        # which rubric was checked: a shipped set's name, or the question file's prompts

    @property
    def n(self) -> int:
        return len(self.rows)

    def confusion(self):
        """Expected label (rows) by predicted category (columns), as a pandas DataFrame."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        columns = list(CATEGORIES) + [UNSCORED]
        table = pd.crosstab(frame["expected"], frame["predicted"]).reindex(
            index=list(CATEGORIES), columns=columns, fill_value=0)
        return table.loc[:, (table.sum(axis=0) > 0) | table.columns.isin(CATEGORIES)]

    def as_dict(self) -> dict:
        return {"judge": self.judge, "source": self.source, "rubric": self.rubric, "n": self.n,
                "agreement": self.agreement, "kappa": self.kappa, "unscored": sum(r["predicted"] == UNSCORED
                                                                                   for r in self.rows),
                "confusion": self.confusion().to_dict(orient="index")}


def shipped_validation_path() -> Path:
    return shipped_file("judge-data", SHIPPED_VALIDATION)


def load_validation(path: Path | None = None, labels: tuple[str, ...] = CATEGORIES) -> tuple[str, list[dict]]:
    """Read and check a labelled validation file (the shipped one by default) whose labels are `labels`."""
    path = Path(path) if path else shipped_validation_path()
    if path.suffix in (".jsonl", ".json"):
        numbered = numbered_jsonl(path)
        rows, lines = [row for _, row in numbered], [number for number, _ in numbered]
    else:
        rows, lines = read_yaml(path, "a YAML list of {question, answer, expected} rows"), entry_lines(path)
        if not isinstance(rows, list) or not rows:
            raise UserError(f"{path}: expected a non-empty list of rows with question, answer and expected")
    for index, row in enumerate(rows):
        where = f"{path}: line {lines[index] if index < len(lines) else index + 1}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a mapping with question, answer and expected")
        for key in ("question", "answer", "expected"):
            if not isinstance(row.get(key), str):
                raise UserError(f"{where}: field '{key}': expected a string")
        if row["expected"] not in labels:
            raise UserError(f"{where}: field 'expected': expected one of {', '.join(labels)}, "
                            f"got {row['expected']!r}")
        unknown = sorted(set(row) - {"question", "answer", "expected"})
        if unknown:
            raise UserError(f"{where}: unknown field '{unknown[0]}' (expected question, answer, expected)")
    return str(path), rows


def balanced_rows(rows: list[dict], limit: int | None) -> list[dict]:
    """At most `limit` rows, taken in turn from each label (the first rows of each, in file order), so a
    short check still sees every kind of answer; None: every row."""
    if limit is None or limit >= len(rows):
        return rows
    by_label: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_label.setdefault(row["expected"], []).append(index)
    chosen: list[int] = []
    for turn in range(max(len(indices) for indices in by_label.values())):
        chosen += [indices[turn] for indices in by_label.values() if turn < len(indices)]
    return [rows[index] for index in sorted(chosen[:limit])]


def check_judge(judge: Judge, path: Path | None = None, rubrics: dict[str, str] | None = None,
                rubric: str = "em", limit: int | None = None) -> CheckResult:
    """Rate every labelled row (or `limit` of them, see `balanced_rows`) with an alignment and a coherence
    rubric and measure agreement.

    rubrics: the templates that scored the run ({"aligned": ..., "coherent": ...}, e.g. a question
    file's own judge prompts); None: the shipped set named `rubric`. The check validates what it is given,
    so a run checks the very prompts that rated its answers."""
    templates = rubrics if rubrics is not None else load_rubrics(rubric)
    missing = [metric for metric in ("aligned", "coherent") if metric not in templates]
    if missing:
        raise UserError(f"judge check: rubric '{rubric}' has no '{missing[0]}' prompt (the labelled set is "
                        "checked with an aligned and a coherent rubric)")
    source, rows = load_validation(path)
    rows = balanced_rows(rows, limit)
    items = [(row["question"], row["answer"]) for row in rows]
    aligned = judge.rate(templates["aligned"], items, label="judge check: aligned")
    coherent = judge.rate(templates["coherent"], items, label="judge check: coherent")
    results = []
    for row, a, c in zip(rows, aligned, coherent):
        predicted = answer_category(a, c, judge.thresholds) or UNSCORED
        results.append({**row, "aligned": a.score, "coherent": c.score, "aligned_numeric_mass": a.numeric_mass,
                        "predicted": predicted, "agree": predicted == row["expected"]})
    agreement = sum(r["agree"] for r in results) / len(results)
    shipped = Path(source) == shipped_validation_path()
    return CheckResult(str(judge.ref), f"shipped:{Path(source).name}" if shipped else source, results, agreement,
                       cohen_kappa(results), rubric)


def check_threshold_rubric(judge: Judge, template: str, path: Path, labels: tuple[str, str], threshold: float,
                           rubric: str) -> dict:
    """A yes/no judgement made from a 0-100 rubric (labels[0] at or above `threshold`, labels[1] below),
    measured on a labelled file: a judge_check.json entry (agreement, kappa, confusion) shown beside its numbers."""
    import pandas as pd

    source, rows = load_validation(path, labels)
    ratings = judge.rate(template, [(row["question"], row["answer"]) for row in rows], label=f"judge check: {rubric}")
    results = []
    for row, rating in zip(rows, ratings):
        predicted = UNSCORED if rating.score is None else labels[0] if rating.score >= threshold else labels[1]
        results.append({**row, "score": rating.score, "predicted": predicted, "agree": predicted == row["expected"]})
    confusion = pd.crosstab(pd.Series([r["expected"] for r in results], name="expected"),
                            pd.Series([r["predicted"] for r in results], name="predicted"))
    return {"judge": str(judge.ref), "source": f"shipped:{Path(source).name}" if Path(source).parent ==
            shipped_validation_path().parent else source, "rubric": rubric, "n": len(results),
            "agreement": sum(r["agree"] for r in results) / len(results), "kappa": cohen_kappa(results),
            "unscored": sum(r["predicted"] == UNSCORED for r in results),
            "confusion": confusion.to_dict(orient="index")}


def cohen_kappa(rows: list[dict]) -> float | None:
    labels = sorted({r["expected"] for r in rows} | {r["predicted"] for r in rows})
    n = len(rows)
    observed = sum(r["agree"] for r in rows) / n
    chance = sum((sum(r["expected"] == label for r in rows) / n) * (sum(r["predicted"] == label for r in rows) / n)
                 for label in labels)
    return None if chance >= 1 else (observed - chance) / (1 - chance)
