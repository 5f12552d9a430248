"""The protocol audit: each step of a paper's method, what this run did, and whether that is the paper's.

A recipe declares its paper's method in a YAML file (`recipes/protocols/<recipe>.yaml`)::

    paper: Emergent Misalignment (Betley et al., 2025)
    steps:
      - step: Training rows                  # the method step, short
        paper: 6,000 rows per dataset        # what the paper did, in words
        setting: dataset.size                # optional: a dotted path into the run's resolved config
        expect: 6000                         # optional: the paper's value of that setting
      - step: Code data
        paper: 6,000 real completions filtered from a larger pool
        this_run: generated offline from templates
        differs: template programs, not the paper's released completions

A step's verdict is "differs: ..." when it names a fixed difference (`differs`), else it compares the
run's value of `setting` with the paper's: `expect` (equal), `at_least` (a minimum), `one_of` (a list)
or `not_null` (any value but null). With none of these the step is "as in the paper". A setting the
config lacks is a bug in the protocol file, never a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..yamlio import read_yaml

AS_IN_PAPER = "as in the paper"
CHECKS = ("expect", "at_least", "one_of", "not_null")
FIELDS = ("step", "paper", "setting", "this_run", "differs") + CHECKS


@dataclass(frozen=True)
class AuditRow:
    step: str
    paper: str
    this_run: str
    verdict: str  # "as in the paper" or "differs: how"

    @property
    def as_in_paper(self) -> bool:
        return self.verdict == AS_IN_PAPER


def load_protocol(path: Path) -> tuple[str, list[dict]]:
    """(the paper's name, its method steps) from a protocol file, checked."""
    data = read_yaml(path, "a protocol: paper and steps")
    if not isinstance(data, dict) or not isinstance(data.get("paper"), str) or not isinstance(data.get("steps"), list):
        raise UserError(f"{path}: expected a mapping with 'paper' (a string) and 'steps' (a list)")
    for index, step in enumerate(data["steps"]):
        where = f"{path}: field 'steps[{index}]'"
        if not isinstance(step, dict) or not isinstance(step.get("step"), str) or not isinstance(step.get("paper"), str):
            raise UserError(f"{where}: expected a mapping with the strings 'step' and 'paper'")
        unknown = sorted(set(step) - set(FIELDS))
        if unknown:
            raise UserError(f"{where}: unknown field '{unknown[0]}' (expected some of: {', '.join(FIELDS)})")
        if any(check in step for check in CHECKS) and "setting" not in step:
            raise UserError(f"{where}: a check ({', '.join(c for c in CHECKS if c in step)}) needs a 'setting'")
    return data["paper"], data["steps"]


def audit(steps: list[dict], config: dict) -> list[AuditRow]:
    """One row per method step: what the paper did, what this run did, and the verdict."""
    rows = []
    for step in steps:
        value = _setting(config, step["setting"]) if "setting" in step else None
        shown = step.get("this_run") or (f"{step['setting']} = {_show(value)}" if "setting" in step else "")
        rows.append(AuditRow(step["step"], step["paper"], shown, _verdict(step, value)))
    return rows


def audit_table(rows: list[AuditRow]) -> pd.DataFrame:
    return pd.DataFrame([{"step": r.step, "paper": r.paper, "this run": r.this_run, "verdict": r.verdict}
                         for r in rows], columns=["step", "paper", "this run", "verdict"])


def _verdict(step: dict, value: Any) -> str:
    if "differs" in step:
        return f"differs: {step['differs']}"
    if "expect" in step and value != step["expect"]:
        return f"differs: the paper used {_show(step['expect'])}, this run {_show(value)}"
    if "at_least" in step and (not isinstance(value, (int, float)) or value < step["at_least"]):
        return f"differs: the paper used at least {_show(step['at_least'])}, this run {_show(value)}"
    if "one_of" in step and value not in step["one_of"]:
        return f"differs: the paper used one of {_show(step['one_of'])}, this run {_show(value)}"
    if step.get("not_null") and value is None:
        return f"differs: the paper set {step['setting']}, this run left it unset"
    return AS_IN_PAPER


def _setting(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"protocol setting {dotted!r} is not in the run's config")
        node = node[part]
    return node


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 else f"{value:g}"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "unset"
    return str(value)
