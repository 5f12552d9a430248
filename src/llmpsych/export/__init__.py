"""Exports of finished runs to other tools' formats."""

from __future__ import annotations

from .inspect_log import export_inspect

__all__ = ["export_inspect"]
