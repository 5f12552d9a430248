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
    """The 1-based line where each entry of a top-level YAML list starts (for error messages).

    Read from parser events rather than the composed tree, so an entry written as an alias
    (`- *name`) reports its own line, not the anchor's.
    """
    import yaml

    lines, depth = [], 0
    try:
        for event in yaml.parse(Path(path).read_text(encoding="utf-8")):
            starts = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
            ends = isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent))
            if depth == 1 and (starts or isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent))):
                lines.append(event.start_mark.line + 1)
            depth += starts - ends
    except yaml.YAMLError:
        return []
    return lines
