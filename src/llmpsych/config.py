"""Experiment configs: recipe defaults < named preset < YAML file < command-line flags.

Validation is strict (an unknown key is an error, not silently ignored) and every problem is
reported in one line naming the file, the field and what was expected.
"""

from __future__ import annotations

import collections.abc
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserError
from .yamlio import read_yaml

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, and values are re-checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def validate(model: type[Model], data: Any, source: str) -> Model:
    """Validate `data` against `model`; the first problem becomes a one-line UserError.

    A boolean where a number belongs (`seeds: true`, `rank: yes`) is refused: pydantic would read it as 1 or 0."""
    found = bool_for_number(model, data)
    if found:
        location, expected, value = found
        raise UserError(f"{source}: field '{'.'.join(location)}': expected {expected}, got {str(value).lower()}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        more = error.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UserError(f"{source}: {describe(model, problem)}{suffix}") from None


def describe(model: type[BaseModel], problem: dict) -> str:
    """Turn one pydantic error into words: the field path and what was expected."""
    # A union field's errors name the branch tried (conditions.list[str].1): the reader needs conditions.1.
    location = [str(part) for part in problem["loc"] if not _UNION_BRANCH.match(str(part))]
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
    if isinstance(got, bool):  # as YAML spells it
        shown = f", got {str(got).lower()}"
    return f"field '{field}': {message}{shown}"


_UNIONS = (Union, types.UnionType)
_UNION_BRANCH = re.compile(r"^[\w-]+\[.*\]$")
_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)
_MAPPINGS = (dict, collections.abc.Mapping)


def bool_for_number(annotation: Any, value: Any,
                    location: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str, bool] | None:
    """The first place in `value` (checked against the type `annotation`, nested models, lists and mappings
    included) where a boolean stands for a number: (field path, what was expected, the boolean), or None."""
    arms = _arms(annotation)
    if isinstance(value, bool):
        if bool in arms or Any in arms or float not in arms and int not in arms:
            return None
        return location, "an integer" if float not in arms else "a number", value
    for arm in arms:
        origin, args = typing.get_origin(arm), typing.get_args(arm)
        if isinstance(arm, type) and issubclass(arm, BaseModel) and isinstance(value, dict):
            for key, item in value.items():
                field = arm.model_fields.get(key) if isinstance(key, str) else None
                found = field and bool_for_number(field.annotation, item, (*location, key))
                if found:
                    return found
        elif origin in _SEQUENCES and args and isinstance(value, list):
            for index, item in enumerate(value):
                if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                    if index >= len(args):
                        break
                    inner = args[index]
                else:
                    inner = args[0]
                found = bool_for_number(inner, item, (*location, str(index)))
                if found:
                    return found
        elif origin in _MAPPINGS and len(args) == 2 and isinstance(value, dict):
            for key, item in value.items():
                found = bool_for_number(args[1], item, (*location, str(key)))
                if found:
                    return found
    return None


def _arms(annotation: Any) -> list:
    """The types a value may have: the arms of a union (Optional included), without Annotated wrappers."""
    if typing.get_origin(annotation) is Annotated:
        return _arms(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in _UNIONS:
        return [arm for inner in typing.get_args(annotation) for arm in _arms(inner)]
    return [annotation]


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
