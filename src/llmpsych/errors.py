"""The one error type a user should ever see.

A `UserError` is a bad input (config, question file, dataset, model name, API answer). The CLI prints
its message as a single line and exits with status 2, without a traceback. Anything else is a bug.
"""

from __future__ import annotations

import re

# Everything str.splitlines() breaks on: a value quoted from a file may hold any of them.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


class UserError(Exception):
    """A bad input, described in one line that names the file, field or line and what was expected."""

    exit_code = 2

    def __init__(self, message: object = "", *args: object) -> None:
        # Line breaks inside quoted values are escaped (a\nb -> a\\nb), so the message stays one line.
        super().__init__(_LINE_BREAKS.sub(lambda m: m.group().encode("unicode_escape").decode(), str(message)),
                         *args)


def where(source: str | None, field: str | None = None, line: int | None = None) -> str:
    """Format the location prefix of an error message: ``file.yaml: line 3: field 'x.y'``."""
    parts = [p for p in (source, f"line {line}" if line is not None else None,
                         f"field '{field}'" if field else None) if p]
    return ": ".join(parts)
