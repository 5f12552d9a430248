"""Training data on disk: OpenAI chat JSONL (`messages`) or documents (`text`), one row per line.

Every file written here gets a content hash, which is how trained adapters and runs name their data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Literal

from .errors import UserError
from .yamlio import read_text

ROLES = ("system", "user", "assistant")


def write_jsonl(rows: Iterable[dict], path: Path) -> str:
    """Write rows atomically and return the file's SHA-256."""
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    write_atomic(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file through a temporary one renamed into place: a crash or a full disk never leaves it
    half-written (readers see the old file or the new one), and the temporary file is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a malformed line is reported by its line number."""
    return [row for _, row in numbered_jsonl(path)]


def numbered_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line, so later checks can name the real line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (expected a JSONL file)")
    rows = []
    for number, line in enumerate(read_text(path).split("\n"), start=1):  # not splitlines: U+2028 is valid in JSON
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
        except RecursionError:
            raise UserError(f"{path}: line {number}: not valid JSON (nested too deeply)") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    if not rows:
        raise UserError(f"{path}: no rows (expected one JSON object per line)")
    return rows


def read_training_rows(path: Path) -> list[dict]:
    """A training JSONL's rows, each checked (chat or text, the same kind on every line; errors name the line)."""
    lines = numbered_jsonl(path)
    rows = [row for _, row in lines]
    dataset_format(rows, str(path), [number for number, _ in lines])
    return rows


def dataset_format(rows: list[dict], source: str, lines: list[int] | None = None) -> Literal["chat", "text"]:
    """Check every row and say whether the file is chat (`messages`) or documents (`text`).

    lines: each row's line in the file (from `numbered_jsonl`), for messages; by default row i is line i.
    """
    lines = lines or list(range(1, len(rows) + 1))
    first = "chat" if "messages" in rows[0] else "text" if "text" in rows[0] else None
    if first is None:
        raise UserError(f"{source}: line {lines[0]}: expected a 'messages' list (chat) or a 'text' string "
                        "(documents)")
    for number, row in zip(lines, rows):
        if first == "text":
            if not isinstance(row.get("text"), str) or not row["text"].strip():
                raise UserError(f"{source}: line {number}: expected a non-empty 'text' string like line {lines[0]}")
            continue
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UserError(f"{source}: line {number}: expected a non-empty 'messages' list like line {lines[0]}")
        for turn, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES \
                    or not isinstance(message.get("content"), str):
                raise UserError(f"{source}: line {number}: messages[{turn}] must have a role in {ROLES} "
                                "and a string content")
        if messages[-1]["role"] != "assistant":
            raise UserError(f"{source}: line {number}: the last message must be the assistant's (it is trained on)")
    return first

