"""Recipes: one module per study. Each offers `Config`, `PRESETS`, `DEFAULT_PRESET`, `plan()` and `report()`."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UserError

RECIPES = {"emergent-misalignment": "llmpsych.recipes.emergent_misalignment",
           "persona-beliefs": "llmpsych.recipes.persona_beliefs",
           "introspection": "llmpsych.recipes.introspection",
           "self-awareness": "llmpsych.recipes.self_awareness",
           "ooc-reasoning": "llmpsych.recipes.ooc_reasoning"}
ALIASES = {"em": "emergent-misalignment", "persona": "persona-beliefs", "looking-inward": "introspection",
           "tell-me-about-yourself": "self-awareness", "connecting-the-dots": "ooc-reasoning",
           "oocr": "ooc-reasoning"}


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def get_recipe(name: str, source: str = "recipe") -> ModuleType:
    """The recipe module for a name or alias."""
    canonical = ALIASES.get(name, name)
    if canonical not in RECIPES:
        raise UserError(f"{source}: unknown recipe '{name}' (expected one of: {', '.join(recipe_names())}, "
                        "or a config .yaml file)")
    return importlib.import_module(RECIPES[canonical])
