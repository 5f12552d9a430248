"""The one error type a user should ever see.

A `UserError` is a bad input (config, question file, dataset, model name, API answer). The CLI prints
its message as a single line and exits with status 2, without a traceback. Anything else is a bug.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from typing import Iterator

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


# What a write that finds no room fails with: a full disk, a full quota, a file size limit (RLIMIT_FSIZE).
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says a write found no room: an OSError's errno, or the system's words inside the
    message of a library that wraps it (safetensors, torch's file writers, SQLite)."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in _NO_ROOM
    text = str(error)
    return "database or disk is full" in text or any(os.strerror(code) in text for code in _NO_ROOM)


@contextlib.contextmanager
def writing(what: object) -> Iterator[None]:
    """Turn a full disk met inside the block into a one-line UserError naming `what` was being written."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        if not is_disk_full(error):
            raise
        raise disk_full_error(what, error) from None


def disk_full_error(what: object, error: BaseException) -> UserError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else \
        (str(error).strip().splitlines() or [type(error).__name__])[0]
    return UserError(f"{what}: could not be written, the disk is full ({reason[:160]}); free some space and run "
                     "again (finished steps are cached)")
