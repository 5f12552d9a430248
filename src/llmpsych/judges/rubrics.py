"""Judge rubrics: prompt templates with {question}, {answer} (and rubric-specific) slots, shipped as named YAML
sets or written by a researcher in a YAML file of their own."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError
from ..shipped import shipped_file, shipped_names
from ..yamlio import read_yaml

_SLOT = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")


def shipped_rubric_names() -> list[str]:
    return shipped_names("rubrics")


def load_rubrics(name: str | Path, source: str = "rubrics") -> dict[str, str]:
    """A rubric set: metric name -> prompt template. `name` is a shipped set ("em") or a researcher's own
    YAML file (a mapping of metric name to a template with {question} and {answer} slots)."""
    if str(name) not in shipped_rubric_names():
        if _is_path(name):
            return load_rubric_file(Path(name))
        raise UserError(f"{source}: unknown rubric set '{name}' (expected one of: {', '.join(shipped_rubric_names())}; "
                        "or a YAML file of metric name to prompt template)")
    path = shipped_file("rubrics", str(name))
    data = read_yaml(path, "a mapping of metric name to prompt template")
    if not all(isinstance(template, str) for template in data.values()):  # the persona graders' prompt + options
        raise UserError(f"{source}: rubric set '{name}' is not a set of 0-100 judge prompts (metric name to template)")
    return {str(metric): template for metric, template in data.items()}


def load_rubric_file(path: Path) -> dict[str, str]:
    """A researcher's rubric file, checked as the shipped sets are: a non-empty mapping of metric name to a
    prompt template holding an {answer} slot (and usually {question}); errors name the file and the field."""
    data = read_yaml(path, "a mapping of metric name to prompt template")
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected a mapping of metric name to prompt template "
                        "(e.g. helpful: \"...{question}...{answer}...\")")
    rubrics = {}
    for metric, template in data.items():
        if not isinstance(template, str):
            raise UserError(f"{path}: field '{metric}': expected a prompt template (a string with an {{answer}} "
                            f"slot), got {type(template).__name__}")
        if "answer" not in slot_names(template):
            raise UserError(f"{path}: field '{metric}': the prompt template has no {{answer}} slot")
        unknown = slot_names(template) - {"question", "answer"}
        if unknown:
            raise UserError(f"{path}: field '{metric}': unknown slot {{{sorted(unknown)[0]}}} (a 0-100 rubric fills "
                            "{question} and {answer}; write a literal brace as {{ or }})")
        rubrics[str(metric)] = template
    return rubrics


def slot_names(template: str) -> set[str]:
    """The {name} slots of a template (doubled braces are literal, as `fill` reads them)."""
    return {match.group(1) for match in _SLOT.finditer(template) if match.group(1)}


def _is_path(name: str | Path) -> bool:
    text = str(name)
    return isinstance(name, Path) or text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file()


def fill(template: str, question: str, answer: str, **slots: str) -> str:
    """Fill the {question}, {answer} and any other named slots in one pass (so an answer containing
    "{question}" stays literal) and undouble {{ }} as str.format would, which is how EM's templates
    are written. An unknown {name} is left as it is."""
    values = {"question": question, "answer": answer, **slots}
    return _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)) if m.group(1) else m.group(0)[0], template)
