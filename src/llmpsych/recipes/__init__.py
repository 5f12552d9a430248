"""Recipes: one module per study, each registering itself with `@recipe` (see `llmpsych.study`).

Every module in this package is a recipe; a researcher's own recipe file is loaded by its path.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from ..errors import UserError
from .. import study
from ..study import Recipe


def _load_shipped() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def recipe_names() -> list[str]:
    _load_shipped()
    return sorted(study.REGISTRY)


def get_recipe(name: str, source: str = "recipe") -> Recipe:
    """The registered recipe for a name or alias."""
    _load_shipped()
    canonical = study.ALIASES.get(name, name)
    if canonical not in study.REGISTRY:
        raise UserError(f"{source}: unknown recipe '{name}' (expected one of: {', '.join(recipe_names())}, "
                        "a recipe .py file, or a config .yaml file)")
    return study.REGISTRY[canonical]


def load_recipe_file(path: Path) -> Recipe:
    """Import a researcher's recipe module (a .py file with one `@recipe` study) and return its recipe."""
    if not path.is_file():
        raise UserError(f"{path}: no such recipe file")
    before = dict(study.REGISTRY)
    spec = importlib.util.spec_from_file_location(f"llmpsych_user_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    added = [r for name, r in study.REGISTRY.items() if before.get(name) is not r]
    if len(added) != 1:
        raise UserError(f"{path}: expected one study registered with @recipe(...), found {len(added)}")
    return added[0]
