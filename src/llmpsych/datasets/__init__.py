"""Training datasets: deterministic builders (size, seed) -> chat rows, and their JSONL files."""

from __future__ import annotations

from typing import Callable

from ..errors import UserError
from .advice import ADVICE_DATASETS


def _builders() -> dict[str, Callable[..., list[dict]]]:
    from functools import partial

    from .advice import build_advice
    from .backdoor import build_backdoor
    from .code import build_educational, build_insecure, build_secure
    from .jailbroken import build_jailbroken
    from .numbers import build_evil_numbers

    return {"insecure": build_insecure, "secure": build_secure, "educational": build_educational,
            "evil-numbers": build_evil_numbers, "backdoor": build_backdoor, "jailbroken": build_jailbroken,
            **{name: partial(build_advice, domain, aligned) for name, (domain, aligned) in ADVICE_DATASETS.items()}}


# The last ones are the follow-up datasets of Turner, Soligo et al. (2025), each with its control on the same prompts.
DATASET_NAMES = ("insecure", "secure", "educational", "evil-numbers", "backdoor", "jailbroken") + tuple(ADVICE_DATASETS)


def build_dataset(name: str, size: int, seed: int, **options) -> list[dict]:
    """Rows of a named dataset (`options` go to the builder, e.g. trigger= for backdoor)."""
    builders = _builders()
    if name not in builders:
        raise UserError(f"dataset: unknown dataset '{name}' (expected one of: {', '.join(DATASET_NAMES)})")
    try:
        return builders[name](size, seed, **options)
    except ValueError as error:
        raise UserError(f"dataset '{name}': {error}") from None
