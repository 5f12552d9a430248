"""`llmpsych runs [FOLDER]`: the run directories under a folder, newest first, one line each (no model)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from llmpsych.runs import find_runs, format_runs, primary_result

PRIMARY = "misaligned: insecure - secure [em-main/plain]"


def contrast(name: str, estimate, low=None, high=None, primary: bool = False) -> dict:
    return {"name": name, "family": "misaligned fraction", "estimate": estimate, "ci_low": low, "ci_high": high,
            "p": None, "p_adjusted": 0.01, "primary": primary, "verdict": "distinguishable"}


def make_run(folder: Path, recipe: str, preset: str | None, created: str | None = None,
             contrasts: list | None = None, mtime: float | None = None) -> Path:
    """A fake run directory: config.yaml, and summary.json when `created` is given (a finished run)."""
    folder.mkdir(parents=True)
    config = folder / "config.yaml"
    config.write_text(f"recipe: {recipe}\npreset: {preset if preset else 'null'}\nseeds: 2\n", encoding="utf-8")
    if mtime is not None:
        os.utime(config, (mtime, mtime))
    if created is not None:
        summary = {"recipe": recipe, "preset": preset, "created": created, "contrasts": contrasts or []}
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`llmpsych ARGS` in this process: (exit status, stdout, stderr)."""
    from llmpsych.cli import main

    monkeypatch.setattr(sys, "argv", ["llmpsych", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    captured = capsys.readouterr()
    return exit.value.code, captured.out, captured.err


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    make_run(root / "em-quick", "emergent-misalignment", "quick", "2025-03-02T10:00:00+00:00",
             [contrast("misaligned: insecure - base [em-main/plain]", 0.3, 0.1, 0.5),
              contrast(PRIMARY, 0.12, 0.034, 0.2, primary=True)])
    make_run(root / "em-smoke", "emergent-misalignment", "smoke", "2025-01-05T09:00:00+00:00",
             [contrast(PRIMARY, None, primary=True)])
    make_run(root / "nested" / "persona", "persona-beliefs", None, "2025-02-01T12:00:00+00:00", [])
    # no summary.json yet: dated by its config.yaml, between the other two
    make_run(root / "still-going", "introspection", "smoke", mtime=1739000000.0)  # 2025-02-08
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run\n")
    return root


def test_lists_every_run_directory_newest_first_with_its_primary_result(runs):
    found = find_runs(runs)
    assert [run.path.relative_to(runs).as_posix() for run in found] == [
        "em-quick", "still-going", "nested/persona", "em-smoke"]
    assert [run.finished for run in found] == [True, False, True, True]
    assert found[0].result == f"{PRIMARY} = 0.12 [0.03, 0.20]"
    assert found[1].recipe == "introspection" and found[1].result == "-"
    assert found[2].preset is None and found[2].result == "-"
    assert found[3].result == f"{PRIMARY} = -"


def test_the_command_prints_one_aligned_line_per_run(runs, monkeypatch, capsys):
    status, out, err = cli(monkeypatch, capsys, "runs", str(runs))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 4
    first = lines[0].split()
    assert first[:3] == [str(runs / "em-quick"), "emergent-misalignment", "quick"]
    assert first[3] == "2025-03-02" or first[3].startswith("2025-03-0")  # local time of 10:00 UTC
    assert lines[0].endswith(f"{PRIMARY} = 0.12 [0.03, 0.20]")
    assert "(unfinished)" in lines[1] and lines[1].startswith(str(runs / "still-going"))
    assert "(unfinished)" not in lines[0] + lines[2] + lines[3]
    assert lines[2].split()[2] == "-"  # no preset
    result_column = {line.index(PRIMARY) for line in (lines[0], lines[3])}
    assert len(result_column) == 1, "the columns line up"


def test_the_folder_defaults_to_runs(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.parent)
    status, out, _ = cli(monkeypatch, capsys, "runs")
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == [
        "runs/em-quick", "runs/still-going", "runs/nested/persona", "runs/em-smoke"]


def test_a_run_directory_itself_lists_that_run(runs):
    assert [run.path for run in find_runs(runs / "em-quick")] == [runs / "em-quick"]


def test_a_folder_without_runs_says_so(tmp_path, monkeypatch, capsys):
    status, out, err = cli(monkeypatch, capsys, "runs", str(tmp_path))
    assert (status, out) == (0, "")
    assert err.startswith(f"No runs under {tmp_path}")


@pytest.mark.parametrize("make, problem", [(lambda path: None, "no such folder"),
                                           (lambda path: path.write_text("x\n"), "not a folder")])
def test_a_missing_folder_is_a_one_line_error(tmp_path, monkeypatch, capsys, make, problem):
    make(tmp_path / "runs")
    status, out, err = cli(monkeypatch, capsys, "runs", str(tmp_path / "runs"))
    assert status == 2 and out == ""
    assert err == f"error: {tmp_path / 'runs'}: {problem} (expected a folder of run directories, such as runs)\n"


def test_damaged_files_show_as_missing_values_not_errors(tmp_path):
    run = make_run(tmp_path / "a", "emergent-misalignment", "quick", mtime=1700000000.0)
    (run / "summary.json").write_text("{not json")
    broken = make_run(tmp_path / "b", "x", "y")
    (broken / "config.yaml").write_text("recipe: [\n")
    os.utime(broken / "config.yaml", (1600000000.0, 1600000000.0))
    found = find_runs(tmp_path)
    assert [(r.path.name, r.recipe, r.finished, r.result) for r in found] == [
        ("a", "emergent-misalignment", False, "-"), ("b", None, False, "-")]
    assert len(format_runs(found)) == 2


@pytest.mark.parametrize("summary, shown", [
    ({}, "-"),
    ({"contrasts": "nope"}, "-"),
    ({"contrasts": [contrast("a - b", 0.5, 0.1, 0.9)]}, "-"),  # no primary contrast
    ({"contrasts": [contrast("a - b", -0.051, -0.1, 0.0, primary=True)]}, "a - b = -0.05 [-0.10, 0.00]"),
    ({"contrasts": [contrast("a - b", 0.5, None, None, primary=True)]}, "a - b = 0.50"),
    ({"contrasts": [contrast("a - b", True, 0, 1, primary=True)]}, "a - b = -"),
    ({"contrasts": [contrast("a - b", 0.1, primary=False), contrast("c - d", 0.2, 0.1, 0.3, primary=True),
                    contrast("e - f", 0.3, 0.2, 0.4, primary=True)]}, "c - d = 0.20 [0.10, 0.30]"),
])
def test_the_primary_result(summary, shown):
    assert primary_result(summary) == shown


def test_listing_runs_imports_no_recipe():
    import subprocess

    code = ("import sys, llmpsych.runs, llmpsych.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('llmpsych.recipes', 'llmpsych.experiment', "
            "'torch', 'pandas'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
