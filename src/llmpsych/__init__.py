"""llmpsych: change a language model, then measure what it believes, does and says about itself.

The public names below are imported lazily, so `import llmpsych` (and the CLI) start fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ask": "llmpsych.api",
    "choose": "llmpsych.api",
    "finetune": "llmpsych.api",
    "dataset": "llmpsych.api",
    "Judge": "llmpsych.api",
    "Grader": "llmpsych.api",
    "summarise": "llmpsych.api",
    "load_run": "llmpsych.api",
    "ModelRef": "llmpsych.models.refs",
    "load_questions": "llmpsych.probes.questions",
    "Question": "llmpsych.probes.questions",
    "load_engine": "llmpsych.models",
    "parse_model_ref": "llmpsych.models",
    "SamplingParams": "llmpsych.models",
    "GenerateRequest": "llmpsych.models",
    "ScoreRequest": "llmpsych.models",
    "Runtime": "llmpsych.runtime.calls",
    "run_experiment": "llmpsych.experiment",
    "rebuild_report": "llmpsych.experiment",
    "UserError": "llmpsych.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llmpsych' has no attribute {name!r}")
