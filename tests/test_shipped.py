"""The one resolver of shipped files: a shipped name or a researcher's own file, and nothing else."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from llmpsych.datasets.self_prediction import load_banks
from llmpsych.errors import UserError
from llmpsych.shipped import KINDS, shipped, shipped_file, shipped_names

ROOT = Path(__file__).resolve().parents[1]


def test_every_kind_lists_its_files_by_name():
    for kind in KINDS:
        names = shipped_names(kind)
        assert names, kind
        assert all(shipped_file(kind, name).is_file() for name in names)
    assert {"em-main", "persona-facts", "introspection-tasks"} <= set(shipped_names("questions"))
    assert {"em", "persona"} <= set(shipped_names("rubrics"))
    assert "scenarios" in shipped_names("code-scenarios") and "fillers" in shipped_names("document-templates")


def test_every_shipped_folder_is_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["llmpsych"]
    for kind, folder in KINDS.items():
        suffixes = {shipped_file(kind, name).suffix for name in shipped_names(kind)}
        assert all(f"{folder}/*{suffix}" in patterns for suffix in suffixes), kind


def test_a_name_gives_the_shipped_file_and_a_path_the_researchers_own(tmp_path):
    assert shipped("questions", "em-main", "questions") == shipped_file("questions", "em-main")
    own = tmp_path / "mine.yaml"
    own.write_text("- x\n")
    assert shipped("questions", own, "questions") == own
    assert shipped("questions", str(own), "questions", among=("em-main",)) == own


def test_anything_else_is_one_line_naming_the_source_and_the_shipped_names(tmp_path):
    with pytest.raises(UserError) as info:
        shipped("questions", tmp_path / "nowhere.yaml", "config: field 'facts'", among=("persona-facts",))
    message = str(info.value)
    assert message.startswith("config: field 'facts': ") and "nowhere.yaml" in message
    assert "neither a file nor a shipped set" in message and message.endswith("one of: persona-facts)")
    with pytest.raises(UserError, match="em-main"):
        shipped("questions", "persona-facts", "questions", among=("em-main",))  # shipped, but not of this loader
    with pytest.raises(UserError, match="one of: " + ", ".join(shipped_names("rubrics"))):
        shipped("rubrics", "nope", "judge.rubric")


# ---- the introspection banks: a shipped bank's name or a researcher's own bank file --------------------
def _bank_copies(tmp_path) -> tuple[Path, Path]:
    paths = []
    for name in ("introspection-tasks", "introspection-stances"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(shipped_file("questions", name).read_text(encoding="utf-8"), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def test_banks_accept_shipped_names_and_researchers_files_alike(tmp_path):
    shipped_banks = load_banks()
    assert load_banks("introspection-tasks", "introspection-stances") == shipped_banks
    tasks, stances = _bank_copies(tmp_path)
    assert load_banks(tasks, str(stances)) == shipped_banks
    assert load_banks(str(tasks)) == shipped_banks


def test_a_researchers_bank_file_is_checked_as_the_shipped_one(tmp_path):
    tasks, _ = _bank_copies(tmp_path)
    data = yaml.safe_load(tasks.read_text(encoding="utf-8"))
    data["trivia_choice"][0]["options"] = ["only", "three", "options"]
    tasks.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(UserError, match=r"tasks.yaml: field 'trivia_choice\[0\]': expected a question and 4 distinct"):
        load_banks(tasks)


def test_a_missing_bank_file_names_the_field_and_the_shipped_bank(tmp_path):
    with pytest.raises(UserError, match=r"^stances_file: '.*nowhere.yaml' is neither a file nor a shipped set "
                                        r"\(expected a YAML file or one of: introspection-stances\)$"):
        load_banks(None, tmp_path / "nowhere.yaml")
    with pytest.raises(UserError, match="one of: introspection-tasks"):
        load_banks("introspection-stances")  # the other bank's name is not a task bank
