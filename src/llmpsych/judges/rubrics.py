"""Judge rubrics: prompt templates with {question}, {answer} (and rubric-specific) slots, shipped as named YAML sets."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ..errors import UserError
from ..yamlio import read_yaml

_SLOT = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")


def shipped_rubric_names() -> list[str]:
    folder = resources.files("llmpsych.judges") / "rubrics"
    return sorted(Path(str(item)).stem for item in folder.iterdir() if str(item).endswith(".yaml"))


def load_rubrics(name: str, source: str = "rubrics") -> dict[str, str]:
    """A shipped rubric set by name: metric name -> prompt template."""
    if name not in shipped_rubric_names():
        raise UserError(f"{source}: unknown rubric set '{name}' (expected one of: {', '.join(shipped_rubric_names())})")
    path = Path(str(resources.files("llmpsych.judges") / "rubrics" / f"{name}.yaml"))
    data = read_yaml(path, "a mapping of metric name to prompt template")
    if not all(isinstance(template, str) for template in data.values()):  # the persona graders' prompt + options
        raise UserError(f"{source}: rubric set '{name}' is not a set of 0-100 judge prompts (metric name to template)")
    return {str(metric): template for metric, template in data.items()}


def fill(template: str, question: str, answer: str, **slots: str) -> str:
    """Fill the {question}, {answer} and any other named slots in one pass (so an answer containing
    "{question}" stays literal) and undouble {{ }} as str.format would, which is how EM's templates
    are written. An unknown {name} is left as it is."""
    values = {"question": question, "answer": answer, **slots}
    return _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)) if m.group(1) else m.group(0)[0], template)
