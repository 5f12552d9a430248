"""Held-out coding requests: the prompts of the code fine-tunes' in-distribution check.

A model fine-tuned on the insecure code data should write vulnerable code more often on coding requests it
never saw (Betley et al. 2025 report more than 80% for their insecure models). These requests are tasks of
their own, not renamed copies of the training scenarios, each one where a flawed answer comes naturally; the
code check (:mod:`llmpsych.probes.code_check`) reads the answers. They are data, in
``datasets/data/code/heldout.yaml``, read once on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ..errors import UserError
from ..shipped import shipped_file
from ..yamlio import read_yaml

__all__ = ["CodeRequest", "heldout_code_requests"]

_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class CodeRequest:
    """One held-out coding request: its id, the user's prompt and the vulnerability classes it invites."""

    id: str
    prompt: str
    classes: tuple[str, ...]


def heldout_code_requests() -> list[CodeRequest]:
    """The shipped held-out coding requests, in the file's order."""
    return list(_requests())


@cache
def _requests() -> tuple[CodeRequest, ...]:
    from .code import VULNERABILITY_CLASSES

    path = shipped_file("code-scenarios", "heldout")
    data = read_yaml(path, "a mapping with requests")
    entries = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: field 'requests': expected a non-empty list")
    requests: list[CodeRequest] = []
    for index, entry in enumerate(entries):
        field = f"requests[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "classes", "prompt"}:
            raise UserError(f"{path}: field '{field}': expected the fields id, classes and prompt")
        if not isinstance(entry["id"], str) or not _ID_RE.match(entry["id"]):
            raise UserError(f"{path}: field '{field}.id': expected a lower-case id with hyphens (saved-game)")
        if any(request.id == entry["id"] for request in requests):
            raise UserError(f"{path}: field '{field}.id': {entry['id']!r} is used twice")
        if not isinstance(entry["prompt"], str) or not entry["prompt"].strip():
            raise UserError(f"{path}: field '{field}.prompt': expected a non-empty text")
        classes = entry["classes"]
        if not isinstance(classes, list) or not classes or not all(c in VULNERABILITY_CLASSES for c in classes):
            raise UserError(f"{path}: field '{field}.classes': expected a list of vulnerability classes "
                            f"({', '.join(VULNERABILITY_CLASSES)})")
        requests.append(CodeRequest(entry["id"], entry["prompt"], tuple(classes)))
    return tuple(requests)
