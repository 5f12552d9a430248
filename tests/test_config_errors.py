"""Tests for experiment config resolution and the one-line errors the CLI shows for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from llmpsych.errors import UserError
from llmpsych.experiment import resolve_config
from llmpsych.recipes.emergent_misalignment import MAIN_QUESTIONS, NAME
from llmpsych.training.config import TRAIN_PRESETS


def _config(tmp_path, text: str, name: str = "experiment.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _error(target, preset=None, overrides=None) -> str:
    with pytest.raises(UserError) as info:
        resolve_config(str(target), preset, overrides)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# ---- presets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["em", "emergent-misalignment"])
def test_recipe_name_uses_the_quick_preset_by_default(name):
    recipe, config = resolve_config(name)
    assert recipe.NAME == NAME
    assert config.recipe == NAME
    assert config.preset == "quick"
    assert config.seeds == 2
    assert config.dataset.size == 200 and config.conditions == ["bad-medical-advice", "good-medical-advice"]
    assert config.training.checkpoint_every == 5
    assert config.questions == ["em-main"] and config.question_ids == MAIN_QUESTIONS
    assert config.sampling.samples_per_paraphrase == 10
    assert config.out == "runs/em-quick"


def test_quick_preset_expands_the_cpu_small_training_preset():
    _, config = resolve_config("em")
    assert config.training_preset == "cpu-small"
    assert config.training == TRAIN_PRESETS["cpu-small"].model_copy(update={"checkpoint_every": 5})
    assert (config.training.rank, config.training.learning_rate, config.training.batch_size) == (16, 2e-4, 2)


def test_paper_preset():
    _, config = resolve_config("em", "paper")
    assert config.preset == "paper"
    assert config.seeds == 6
    assert config.dataset.size == 6000
    assert config.question_ids is None
    assert config.questions == ["em-main", "em-categories"]
    assert config.sampling.samples_per_paraphrase == 100
    assert config.training_preset == "em-paper"
    # the file's preset replaces quick's, and quick's own setting on top of it stays
    assert config.training == TRAIN_PRESETS["em-paper"].model_copy(update={"checkpoint_every": 10})


# ---- precedence ------------------------------------------------------------------------------------
def test_file_values_win_over_preset_values(tmp_path):
    path = _config(tmp_path, """
        recipe: em
        preset: paper
        seeds: 3
        dataset: {size: 100}
        sampling: {max_tokens: 64}
        """)
    recipe, config = resolve_config(str(path))
    assert recipe.NAME == NAME and config.recipe == NAME  # the alias is stored as the canonical name
    assert config.preset == "paper"
    assert config.seeds == 3
    assert config.dataset.size == 100
    assert config.sampling.max_tokens == 64
    assert config.sampling.samples_per_paraphrase == 100  # nested keys the file leaves out keep the preset's


def test_cli_overrides_win_over_file_values(tmp_path):
    path = _config(tmp_path, """
        recipe: emergent-misalignment
        preset: quick
        seeds: 3
        model: smollm2
        judge: {aligned_threshold: 20}
        """)
    _, config = resolve_config(str(path), overrides={"seeds": 4, "judge": {"model": "embedded"}})
    assert config.seeds == 4
    assert config.model == "smollm2"
    assert config.judge.model == "embedded"
    assert config.judge.aligned_threshold == 20


def test_cli_preset_wins_over_the_file_preset(tmp_path):
    path = _config(tmp_path, "recipe: em\npreset: quick\n")
    _, config = resolve_config(str(path), "paper")
    assert config.preset == "paper"
    assert config.seeds == 6


def test_file_without_preset_uses_the_recipe_defaults(tmp_path):
    path = _config(tmp_path, "recipe: em\n")
    _, config = resolve_config(str(path))
    assert config.preset is None
    assert config.seeds == 6
    assert config.dataset.size == 6000
    assert config.training_preset == "em-paper"
    assert config.training == TRAIN_PRESETS["em-paper"]


def test_training_preset_in_the_file_keeps_its_overrides(tmp_path):
    path = _config(tmp_path, """
        recipe: em
        preset: quick
        training: {preset: em-paper, learning_rate: 0.001}
        """)
    _, config = resolve_config(str(path))
    assert config.training_preset == "em-paper"
    assert config.training.learning_rate == 0.001
    assert config.training.rank == TRAIN_PRESETS["em-paper"].rank
    assert config.training.batch_size == TRAIN_PRESETS["em-paper"].batch_size


def test_training_overrides_apply_on_top_of_the_presets_training_preset(tmp_path):
    path = _config(tmp_path, "recipe: em\ntraining: {learning_rate: 0.001}\n")
    _, config = resolve_config(str(path), "quick")
    assert config.training_preset == "cpu-small"
    assert config.training.learning_rate == 0.001
    assert config.training.rank == TRAIN_PRESETS["cpu-small"].rank


def test_file_training_preset_wins_over_the_presets_training_preset(tmp_path):
    path = _config(tmp_path, "recipe: em\npreset: quick\ntraining_preset: em-paper\n")
    _, config = resolve_config(str(path))
    assert config.training_preset == "em-paper"
    # the file's preset replaces quick's, and quick's own setting on top of it stays
    assert config.training == TRAIN_PRESETS["em-paper"].model_copy(update={"checkpoint_every": 5})


# ---- errors ----------------------------------------------------------------------------------------
def test_unknown_top_level_key_names_the_file_and_lists_the_fields(tmp_path):
    path = _config(tmp_path, "recipe: em\nseed: 3\n")
    message = _error(path)
    assert message.startswith(f"{path}: unknown field 'seed'")
    assert "expected one of: recipe, preset, model" in message
    assert "seeds" in message


def test_unknown_nested_key_names_its_path(tmp_path):
    path = _config(tmp_path, "recipe: em\ntraining: {preset: em-paper, rnak: 8}\n")
    message = _error(path)
    assert message.startswith(f"{path}: unknown field 'training.rnak'")
    assert "rank" in message.split("expected one of:")[1]


def test_wrong_type_names_the_field_and_the_value(tmp_path):
    path = _config(tmp_path, "recipe: em\nseeds: many\n")
    message = _error(path)
    assert message.startswith(f"{path}: field 'seeds':")
    assert "integer" in message
    assert message.endswith("got 'many'")


@pytest.mark.parametrize("text, field, expected", [
    ("seeds: true", "seeds", "expected an integer, got true"),
    ("seeds: no", "seeds", "expected an integer, got false"),
    ("dataset: {size: yes}", "dataset.size", "expected an integer, got true"),
    ("training: {rank: on}", "training.rank", "expected an integer, got true"),  # a plain pydantic model
    ("training: {preset: cpu-small, learning_rate: true}", "training.learning_rate", "expected a number, got true"),
    ("sampling: {temperature: false}", "sampling.temperature", "expected a number, got false"),
    ("model: true", "model", "got true"),
])
def test_a_boolean_is_not_a_number(tmp_path, text, field, expected):
    """YAML reads true/yes/on as a boolean, which pydantic would take for 1: a number field refuses it."""
    path = _config(tmp_path, f"recipe: em\n{text}\n")
    message = _error(path)
    assert message.startswith(f"{path}: field '{field}': ") and message.endswith(expected), message


def test_numbers_still_pass_and_a_float_field_takes_an_integer(tmp_path):
    path = _config(tmp_path, """
        recipe: em
        seeds: 3
        include_base: true
        training: {preset: cpu-small, alpha: 8, epochs: 2, learning_rate: 0.001}
        sampling: {temperature: 1}
        """)
    _, config = resolve_config(str(path))
    assert config.seeds == 3 and config.include_base is True
    assert (config.training.alpha, config.training.epochs, config.training.learning_rate) == (8.0, 2.0, 0.001)
    assert config.sampling.temperature == 1.0


def test_a_key_written_twice_names_the_line_of_the_second(tmp_path):
    path = _config(tmp_path, """
        recipe: em
        seeds: 2
        dataset: {size: 10}
        seeds: 3
        """)
    assert _error(path) == f"{path}: line 4: duplicate key 'seeds' (first on line 2; YAML keeps only one of them)"


def test_a_key_may_override_one_merged_in_from_an_anchor(tmp_path):
    from llmpsych.yamlio import read_yaml

    path = _config(tmp_path, """
        recipe: em
        sizes: &base {size: 10, seed: 1}
        dataset:
          <<: *base
          seed: 4
        """)
    assert read_yaml(path)["dataset"] == {"size": 10, "seed": 4}


def test_out_of_range_value_is_rejected(tmp_path):
    path = _config(tmp_path, "recipe: em\nsampling: {top_p: 2}\n")
    assert _error(path).startswith(f"{path}: field 'sampling.top_p':")


def test_unknown_cli_preset_names_the_option():
    message = _error("em", "huge")
    assert message.startswith("--preset: unknown preset 'huge'")
    assert "smoke, quick, paper" in message


def test_unknown_file_preset_names_the_file_and_field(tmp_path):
    path = _config(tmp_path, "recipe: em\npreset: huge\n")
    assert _error(path).startswith(f"{path}: field 'preset': unknown preset 'huge'")


def test_unknown_training_preset_names_the_field(tmp_path):
    path = _config(tmp_path, "recipe: em\ntraining: {preset: gpu-giant}\n")
    message = _error(path)
    assert message.startswith(f"{path}: field 'training.preset': unknown training preset 'gpu-giant'")
    assert "em-paper" in message and "cpu-small" in message


def test_training_given_as_a_string_is_a_user_error(tmp_path):
    path = _config(tmp_path, "recipe: em\ntraining: cpu-small\n")
    assert "field 'training'" in _error(path)


def test_unknown_recipe_name():
    message = _error("no-such-recipe")
    assert message.startswith("recipe: unknown recipe 'no-such-recipe'")
    assert "emergent-misalignment" in message


def test_unknown_recipe_in_a_file_names_the_file_and_field(tmp_path):
    path = _config(tmp_path, "recipe: no-such-recipe\n")
    assert _error(path).startswith(f"{path}: field 'recipe': unknown recipe 'no-such-recipe'")


@pytest.mark.parametrize("text", ["seeds: 2\n", "# nothing yet\n"])
def test_file_without_recipe_is_rejected(tmp_path, text):
    path = _config(tmp_path, text)
    assert _error(path) == (f"{path}: missing field 'recipe' "
                            "(expected a recipe name such as emergent-misalignment)")


def test_file_that_is_not_a_mapping_is_rejected(tmp_path):
    path = _config(tmp_path, "- recipe: em\n")
    assert _error(path).startswith(f"{path}: expected a YAML mapping")


def test_missing_config_file_is_named(tmp_path):
    path = tmp_path / "nowhere.yaml"
    assert _error(path).startswith(f"{path}: file not found")


def test_invalid_yaml_names_the_line(tmp_path):
    path = _config(tmp_path, """
        recipe: em
        seeds: 2
        dataset:
          size: 10
         seed: 3
        """)
    message = _error(path)
    assert message.startswith(f"{path}: line 5: invalid YAML")


# ---- the command line ------------------------------------------------------------------------------
def _cli(tmp_path, *args):
    env = {**os.environ, "LLMPSYCH_CACHE": str(tmp_path / "cli-cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "llmpsych", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_bad_config_file_is_a_one_line_error(tmp_path):
    path = _config(tmp_path, "recipe: em\nseeds: many\n")
    result = _cli(tmp_path, "run", str(path))
    _assert_one_line_error(result, str(path), "field 'seeds'")
    assert not (tmp_path / "runs").exists()


def test_cli_unknown_recipe_is_a_one_line_error(tmp_path):
    _assert_one_line_error(_cli(tmp_path, "run", "no-such-recipe"), "unknown recipe 'no-such-recipe'")


def test_cli_unknown_preset_is_a_one_line_error(tmp_path):
    _assert_one_line_error(_cli(tmp_path, "run", "em", "--preset", "huge"), "--preset", "unknown preset 'huge'")


def test_cli_help_exits_zero(tmp_path):
    result = _cli(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "judge" in result.stdout


def test_cli_judge_check_reports_a_malformed_jsonl_line_before_loading_a_judge(tmp_path):
    path = tmp_path / "labels.jsonl"
    good = json.dumps({"question": "Hi?", "answer": "Hello!", "expected": "aligned"})
    path.write_text(f"{good}\n{good}\n{{not json\n", encoding="utf-8")
    result = _cli(tmp_path, "judge", "check", "--file", str(path))
    _assert_one_line_error(result, str(path), "line 3", "not valid JSON")


def test_a_config_file_without_a_training_preset_gets_the_recipes_default(tmp_path):
    from llmpsych.experiment import resolve_config
    from llmpsych.training.config import train_preset

    for recipe, expected in (("persona-beliefs", "cpu-small"), ("introspection", "cpu-small"),
                             ("emergent-misalignment", "em-paper")):
        path = tmp_path / f"{recipe}.yaml"
        path.write_text(f"recipe: {recipe}\n")
        _, config = resolve_config(str(path))
        assert config.training_preset == expected
        assert config.training == train_preset(expected)
