"""Where llmpsych keeps things that outlive a run: materialised models, the call cache, trained adapters."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache directory (``$LLMPSYCH_CACHE`` if set, else the platform's user cache dir)."""
    configured = os.environ.get("LLMPSYCH_CACHE")
    if configured:
        path = Path(configured).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("llmpsych"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Where embedded models are materialised (``$LLMPSYCH_MODELS`` if set, else <cache>/models).

    Kept separate so that a throwaway call cache (tests, experiments) can share one materialised copy.
    """
    configured = os.environ.get("LLMPSYCH_MODELS")
    path = Path(configured).expanduser() if configured else cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
