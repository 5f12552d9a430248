"""Reading YAML files with errors a user can act on: the file, the line and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserError


def read_yaml(path: Path, what: str = "a YAML file") -> Any:
    """Parse a YAML file; a missing file or a syntax error becomes a one-line UserError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (expected {what})")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}: {line}invalid YAML ({problem})") from None


def entry_lines(path: Path) -> list[int]:
    """The 1-based line where each entry of a top-level YAML list starts (for error messages)."""
    import yaml

    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]
