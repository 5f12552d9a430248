"""A plan is an ordered list of named steps; an executor runs them.

Steps are pure functions of their inputs (the results of the steps they need) and every model call
inside them goes through the run cache, so running a plan twice executes nothing the second time.
The local executor below runs steps in order in this process; `executors` fans the same graph out
over a Ray cluster or SLURM jobs, for example every fine-tune of every condition in parallel.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Step:
    name: str
    action: Callable[[dict[str, Any]], Any]  # receives {name: result} of the steps in `needs`
    needs: tuple[str, ...] = ()
    light: bool = False  # runs no model (writes data files): distributed executors run it in the driver


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, action: Callable[[dict[str, Any]], Any], needs: tuple[str, ...] = (),
            light: bool = False) -> str:
        known = {step.name for step in self.steps}
        missing = [n for n in needs if n not in known]
        if name in known or missing:
            raise ValueError(f"plan: step {name!r} is a duplicate or needs unknown steps {missing}")
        self.steps.append(Step(name, action, tuple(needs), light))
        return name

    def names(self, prefix: str) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps if step.name.startswith(prefix))


def run_local(plan: Plan, log=None) -> dict[str, Any]:
    """Run every step in order, printing one line per step to `log` (default: sys.stderr as it is when called)."""
    log = log or sys.stderr
    results: dict[str, Any] = {}
    total = len(plan.steps)
    for number, step in enumerate(plan.steps, start=1):
        started = time.time()
        print(f"[{number}/{total}] {step.name}", file=log, flush=True)
        results[step.name] = step.action({name: results[name] for name in step.needs})
        elapsed = time.time() - started
        if elapsed > 5:
            print(f"[{number}/{total}] {step.name} done in {elapsed:.0f} s", file=log, flush=True)
    return results
