"""Experiment configs: recipe defaults < named preset < YAML file < command-line flags.

Validation is strict (an unknown key is an error, not silently ignored) and every problem is
reported in one line naming the file, the field and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserError
from .yamlio import read_yaml

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, and values are re-checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def validate(model: type[Model], data: Any, source: str) -> Model:
    """Validate `data` against `model`; the first problem becomes a one-line UserError."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        more = error.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UserError(f"{source}: {describe(model, problem)}{suffix}") from None


def describe(model: type[BaseModel], problem: dict) -> str:
    """Turn one pydantic error into words: the field path and what was expected."""
    location = [str(part) for part in problem["loc"]]
    field = ".".join(location)
    if problem["type"] == "extra_forbidden":
        allowed = _fields_at(model, location[:-1])
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return f"unknown field '{field}'{hint}"
    if problem["type"] == "missing":
        return f"missing field '{field}'"
    message = problem["msg"]
    message = message[0].lower() + message[1:] if message else "invalid value"
    message = message.replace("input should be", "expected").replace("value error, ", "")
    got = problem.get("input")
    shown = f", got {got!r}" if got is not None and not isinstance(got, (dict, list)) else ""
    return f"field '{field}': {message}{shown}"


def _fields_at(model: type[BaseModel], location: list[str]) -> list[str]:
    current: Any = model
    for part in location:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
        current = next((arg for arg in getattr(current, "__args__", ()) if hasattr(arg, "model_fields")), current)
    return list(getattr(current, "model_fields", {}))


def deep_merge(base: dict, override: dict) -> dict:
    """Merge nested dicts; values in `override` win, lists are replaced, not concatenated."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: Path) -> dict:
    data = read_yaml(path, "an experiment config (a YAML mapping)")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a YAML mapping of config fields, got a {type(data).__name__}")
    return data
