"""Contrasts: the comparisons a study is about, declared primary or corrected as exploratory.

A recipe computes its contrasts (a difference with its interval and p-value) and groups them in
families; its config names the primary ones. Primary contrasts are the study's claims: with several,
they are Holm-corrected among themselves. Every other contrast is exploratory, Holm-corrected within
its family, and its verdict says so. One contrast that could not be computed stays in the list with
missing numbers, never as 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import pandas as pd

from .stats import Estimate, holm

ALPHA = 0.05
PRIMARY = "primary"


@dataclass(frozen=True)
class Contrast:
    name: str                  # unique in a run, e.g. "misaligned: insecure - secure [main/plain]"
    family: str                # the set it is corrected within, e.g. "free-form contrasts"
    unit: str                  # the cluster level the interval resamples: fact, prompt, question ...
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    p_adjusted: float | None = None
    primary: bool = False
    scale: str = "points"      # points: a difference of proportions, shown x100; r: a correlation; projection
    caveat: str | None = None  # what the interval leaves out, said beside the verdict

    @classmethod
    def of(cls, name: str, family: str, unit: str, result: Estimate, scale: str = "points") -> "Contrast":
        return cls(name, family, unit, result.estimate, result.ci_low, result.ci_high, result.p, scale=scale,
                   caveat=result.caveat)

    @property
    def distinguishable(self) -> bool | None:
        """Is it distinguishable from zero after correction? None when it could not be tested."""
        return None if self.p_adjusted is None else self.p_adjusted < ALPHA

    def verdict(self) -> str:
        """One line: the difference, its interval, the corrected p-value and the verdict."""
        if self.estimate is None:
            return "missing: could not be computed in this run"
        shown = _number(self.estimate, self.scale)
        if self.ci_low is None:
            return f"{shown}: no interval (a single reading on a side)"
        interval = f"{shown} [{_number(self.ci_low, self.scale)}, {_number(self.ci_high, self.scale)}]"
        which = "primary" if self.primary else "exploratory"
        tested = "distinguishable from zero" if self.distinguishable else "not distinguishable from zero"
        caveat = f" ({self.caveat})" if self.caveat else ""
        return f"{interval}, p = {self.p:.3g}, Holm-adjusted {self.p_adjusted:.3g} ({which}): {tested}{caveat}"

    def as_dict(self) -> dict:
        return {**asdict(self), "distinguishable": self.distinguishable, "verdict": self.verdict()}


def _number(value: float, scale: str) -> str:
    if scale == "r":
        return f"{value:+.2f}"
    if scale == "projection":  # a length along a direction in activation space, in its own units
        return f"{value:+.3g}"
    points = 100 * value
    return f"{points:+.1f} points" if abs(points) >= 1 or points == 0 else f"{points:+.2g} points"


def declared(name: str, primary: list[str]) -> bool:
    """Is a contrast declared primary? By its full name, or by the name before its bracket: "self - cross"
    declares every "self - cross [M1 by M2]"."""
    return any(name == entry or name.startswith(f"{entry} [") for entry in primary)


def finalise(contrasts: list[Contrast], primary: list[str]) -> list[Contrast]:
    """Mark the declared primary contrasts, add those that could not be computed (missing), and
    Holm-correct the primary ones together and every other family within itself."""
    marked = [replace(c, primary=declared(c.name, primary)) for c in contrasts]
    marked += [Contrast(name, PRIMARY, "", None, None, None, None, primary=True)
               for name in primary if not any(declared(c.name, [name]) for c in contrasts)]
    families: dict[str, list[int]] = {}
    for index, contrast in enumerate(marked):
        families.setdefault(PRIMARY if contrast.primary else contrast.family, []).append(index)
    adjusted = list(marked)
    for members in families.values():
        for index, p in zip(members, holm([marked[i].p for i in members])):
            adjusted[index] = replace(marked[index], p_adjusted=p)
    return sorted(adjusted, key=lambda c: not c.primary)  # primary first, each group in its own order


def contrast_table(contrasts: list[Contrast]) -> pd.DataFrame:
    """The contrasts as a report table: numbers on their scale, the verdict beside them."""
    rows = [{"contrast": c.name, "family": c.family, "unit": c.unit, "estimate": c.estimate, "ci_low": c.ci_low,
             "ci_high": c.ci_high, "p": c.p, "p_adjusted": c.p_adjusted, "verdict": c.verdict()} for c in contrasts]
    return pd.DataFrame(rows, columns=["contrast", "family", "unit", "estimate", "ci_low", "ci_high", "p",
                                       "p_adjusted", "verdict"])
