"""The one error type a user should ever see.

A `UserError` is a bad input (config, question file, dataset, model name, API answer). The CLI prints
its message as a single line and exits with status 2, without a traceback. Anything else is a bug.
"""

from __future__ import annotations


class UserError(Exception):
    """A bad input, described in one line that names the file, field or line and what was expected."""

    exit_code = 2


def where(source: str | None, field: str | None = None, line: int | None = None) -> str:
    """Format the location prefix of an error message: ``file.yaml: line 3: field 'x.y'``."""
    parts = [p for p in (source, f"line {line}" if line is not None else None,
                         f"field '{field}'" if field else None) if p]
    return ": ".join(parts)
