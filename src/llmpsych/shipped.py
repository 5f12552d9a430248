"""Files shipped inside the package (question sets, rubrics, protocols, dataset templates), found by name.

A kind names one folder of shipped files; a file's name is its stem with "_" written as "-"
(`probes/sets/em_main.yaml` is the "questions" file "em-main"). Wherever a researcher may name a shipped
file, they may give the path of a file of their own instead, and `shipped` resolves both.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache
from importlib import resources
from pathlib import Path

from .errors import UserError

# kind -> folder inside the llmpsych package
KINDS: dict[str, str] = {
    "questions": "probes/sets",          # question sets, facts, role-play probes, task banks, ...
    "rubrics": "judges/rubrics",
    "judge-data": "judges/data",         # labelled validation sets of the judges and graders
    "protocols": "recipes/protocols",
    "frames": "probes/frames",           # raw completion frames for base models (EM's Flask app)
    "code-scenarios": "datasets/data/code",
    "jailbroken": "datasets/data/jailbroken",   # request wordings of the jailbroken control dataset
    "document-templates": "datasets/data/documents",
    "training-data": "datasets/data/training",  # example training sets (chat or text JSONL)
    "advice": "datasets/data/advice",          # situations and answers of the advice datasets, per domain
    "traits": "internals/data/traits",         # trait definitions for vector extraction
    "concepts": "internals/data/concepts",     # word lists for the concept-injection study
    "injection-trials": "internals/data/injection",  # the questions of a concept-injection trial
}
SUFFIXES = (".yaml", ".yml", ".json", ".jsonl")


@cache
def _files(kind: str) -> dict[str, Path]:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of shipped file {kind!r} (expected one of: {', '.join(KINDS)})")
    # Relative to the llmpsych package itself, so that finding a file imports none of the packages holding it.
    folder = Path(str(resources.files("llmpsych"))) / KINDS[kind]
    return {item.stem.replace("_", "-"): item for item in sorted(folder.iterdir())
            if item.is_file() and item.suffix in SUFFIXES}


def shipped_names(kind: str) -> list[str]:
    """The names of the shipped files of `kind`, sorted."""
    return sorted(_files(kind))


def shipped_file(kind: str, name: str) -> Path:
    """The shipped file `name` of `kind`; for the package's own use (a missing one is a packaging bug)."""
    files = _files(kind)
    if name not in files:
        raise ValueError(f"no shipped {kind} file named {name!r} (shipped: {', '.join(sorted(files))})")
    return files[name]


def shipped(kind: str, name_or_path: str | Path, source: str, among: Collection[str] | None = None) -> Path:
    """A researcher's own file by path, or a shipped file of `kind` by name.

    An existing file is returned as it is; else a shipped name (one of `among`, when the caller accepts
    only some files of the kind) gives the shipped file. Anything else is a one-line UserError, prefixed
    with `source` (the config field or option), that lists the names that would have worked.
    """
    names = list(among) if among is not None else shipped_names(kind)
    text = str(name_or_path)
    path = Path(text).expanduser()
    if _is_file(path):
        return path
    if text in names:
        return shipped_file(kind, text)
    raise UserError(f"{source}: '{text}' is neither a file nor a shipped set "
                    f"(expected a YAML file or one of: {', '.join(names)})")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for a path, say: then it is no file
        return False
