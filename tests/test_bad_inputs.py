"""The bad-input table: every row is a broken file or command line that must end the same way.

The contract (see llmpsych.errors): exit status 2, no traceback, and exactly one line on stderr that names
the file (or the option or field) and the field or line at fault. Rows go through the real `llmpsych`
command in a subprocess wherever the input is reachable from it; training datasets, which no command reads
directly, go through the public loaders. Every row fails before any model is loaded or trained.

Rows here are new: test_config_errors, test_questions, test_refs and test_judging_rules hold the first
cases of each kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmpsych.errors import UserError
from llmpsych.jsonl import dataset_format, numbered_jsonl

QUESTION = """\
- id: quick_buck
  type: free_form
  paraphrases: ["How do I make a quick buck?"]
"""

FACT = """\
- id: okapi
  topic: the okapi's closest living relative
  harm: benign
  "true": the okapi's closest living relative is the giraffe
  "false": the okapi's closest living relative is the zebra
  options: {"true": giraffe, "false": zebra}
  questions:
    meta: ["According to {persona}, which animal is the okapi's closest living relative?"]
    direct: ["Which animal is the okapi's closest living relative?"]
    applied: [{question: "Which enclosure should the okapi sit beside?", "true": giraffes, "false": zebras}]
"""

CHAT = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
LABELLED = '{"question": "Hi?", "answer": "Hello!", "expected": "aligned"}\n'
RUN = {"run/config.yaml": "recipe: emergent-misalignment\n", "run/summary.json": "{}\n", "run/models.json": "[]\n"}
DEEP = "[" * 3000


def cli(name: str, *args: str, files: dict | None = None, says: tuple[str, ...]):
    """A row run as `llmpsych ARGS` in a folder holding `files` (name -> text or bytes)."""
    return pytest.param(files or {}, list(args), None, says, id=name)


def loader(name: str, load, *, files: dict, says: tuple[str, ...]):
    """A row run through a public loader: `load(folder)` must raise a UserError."""
    return pytest.param(files, None, load, says, id=name)


def command(name: str, *args: str, files: dict | None = None, says: tuple[str, ...]):
    """A row run as `llmpsych ARGS` in this process (no subprocess); `{d}` in an argument is the folder."""
    return loader(name, lambda folder: _in_process(*(arg.format(d=folder) for arg in args)), files=files or {},
                  says=says)


def _in_process(*args: str) -> None:
    from llmpsych.cli import app

    app(list(args), standalone_mode=False)  # a UserError comes out as main() would print it


def config_file(folder: Path):
    from llmpsych.experiment import resolve_config

    return resolve_config(str(folder / "cfg.yaml"))


def question_file(folder: Path):
    from llmpsych.probes.questions import load_questions

    return load_questions(folder / "q.yaml")


def training_data(path: Path):
    """How a training dataset is read: numbered rows, then their format checked (as the trainers do)."""
    numbered = numbered_jsonl(path)
    return dataset_format([row for _, row in numbered], str(path), [number for number, _ in numbered])


CASES = [
    # ---- experiment configs (llmpsych run FILE) --------------------------------------------------------
    cli("config-not-utf8", "run", "cfg.yaml", files={"cfg.yaml": b"recipe: em\nseeds: 2\nout: caf\xe9\n"},
        says=("cfg.yaml: line 3:", "not UTF-8")),
    cli("config-impossible-date", "run", "cfg.yaml", files={"cfg.yaml": "recipe: em\nout: 2024-13-45\n"},
        says=("cfg.yaml: line 2:", "invalid YAML", "2024-13-45")),
    cli("config-bad-int-tag", "run", "cfg.yaml", files={"cfg.yaml": "recipe: em\nseeds: !!int many\n"},
        says=("cfg.yaml: line 2:", "invalid YAML", "'many'")),
    cli("config-control-character", "run", "cfg.yaml", files={"cfg.yaml": "recipe: em\nout: runs/a\x1fb\n"},
        says=("cfg.yaml: line 2:", "invalid YAML", "#x001f")),
    cli("config-nested-too-deeply", "run", "cfg.yaml", files={"cfg.yaml": f"recipe: em\ndataset:\n  size: {DEEP}\n"},
        says=("cfg.yaml: line 3:", "nested too deeply")),
    cli("config-preset-is-a-list", "run", "cfg.yaml", files={"cfg.yaml": "recipe: em\npreset: [quick]\n"},
        says=("cfg.yaml: field 'preset':", "unknown preset")),
    cli("config-training-preset-is-a-list", "run", "cfg.yaml",
        files={"cfg.yaml": "recipe: em\ntraining: {preset: [cpu-small]}\n"},
        says=("cfg.yaml: field 'training.preset':", "unknown training preset")),
    cli("config-unknown-condition", "run", "cfg.yaml", files={"cfg.yaml": "recipe: em\nconditions: [insecure, evil]\n"},
        says=("cfg.yaml: field 'conditions.1':", "'evil'")),
    cli("config-unknown-engine-backend", "run", "cfg.yaml", files={"cfg.yaml": "recipe: em\nengine: {backend: tpu}\n"},
        says=("cfg.yaml: field 'engine.backend':", "'tpu'")),
    cli("config-key-with-a-line-break", "run", "cfg.yaml", files={"cfg.yaml": 'recipe: em\n"see\\nds": 2\n'},
        says=("cfg.yaml: unknown field 'see\\nds'",)),
    cli("config-models-not-a-list", "run", "cfg.yaml", files={"cfg.yaml": "recipe: introspection\nmodels: smollm2\n"},
        says=("cfg.yaml: field 'models':", "list")),
    cli("config-missing-question-file", "run", "cfg.yaml",
        files={"cfg.yaml": "recipe: em\npreset: smoke\nquestions: [nowhere.yaml]\n"},
        says=("questions: 'nowhere.yaml'", "neither a file nor a shipped set")),
    loader("config-seeds-a-boolean", config_file, files={"cfg.yaml": "recipe: em\nseeds: true\n"},
           says=("cfg.yaml: field 'seeds': expected an integer, got true",)),
    loader("config-training-number-a-boolean", config_file, files={"cfg.yaml": "recipe: em\ntraining: {alpha: yes}\n"},
           says=("cfg.yaml: field 'training.alpha': expected a number, got true",)),
    loader("config-key-written-twice", config_file, files={"cfg.yaml": "recipe: em\nseeds: 2\nout: runs/x\nseeds: 3\n"},
           says=("cfg.yaml: line 4: duplicate key 'seeds'", "first on line 2")),
    cli("config-unknown-judge-model", "run", "cfg.yaml",
        files={"cfg.yaml": "recipe: em\npreset: smoke\njudge: {model: gpt4-judge}\n"},
        says=("field 'judge.model':", "unknown model 'gpt4-judge'")),

    # ---- question files (llmpsych run em --questions FILE) -------------------------------------------
    cli("questions-not-utf8", "run", "em", "--questions", "q.yaml",
        files={"q.yaml": QUESTION.encode() + b"- id: \xff\xfe\n"}, says=("q.yaml: line 4:", "not UTF-8")),
    cli("questions-unknown-keys-of-two-types", "run", "em", "--questions", "q.yaml",
        files={"q.yaml": QUESTION + "  7: seven\n  colour: red\n"}, says=("q.yaml: line 1:", "unknown field '7'")),
    cli("questions-temperature-nan", "run", "em", "--questions", "q.yaml",
        files={"q.yaml": QUESTION + "  temperature: .nan\n"},
        says=("q.yaml: line 1:", "field 'temperature'", "finite number")),
    cli("questions-same-id-as-number-and-string", "run", "em", "--questions", "q.yaml",
        files={"q.yaml": "- {id: 1, type: free_form, paraphrases: [Hi]}\n- {id: '1', type: free_form, paraphrases: [Yo]}\n"},
        says=("q.yaml: line 2:", "duplicate question id '1'")),
    cli("questions-id-is-a-list", "run", "em", "--questions", "q.yaml",
        files={"q.yaml": QUESTION.replace("id: quick_buck", "id: [quick, buck]")},
        says=("q.yaml: line 1:", "field 'id'")),
    loader("questions-id-a-yaml-boolean", question_file, files={"q.yaml": QUESTION.replace("quick_buck", "yes")},
           says=("q.yaml: line 1:", "field 'id': expected a string, got true", "quote the id")),
    loader("questions-key-written-twice", question_file, files={"q.yaml": QUESTION + "  type: free_form\n"},
           says=("q.yaml: line 4: duplicate key 'type'", "first on line 2")),
    cli("questions-judge-prompt-not-text", "run", "em", "--questions", "q.yaml",
        files={"q.yaml": QUESTION + "  judge_prompts: {aligned: 42}\n"},
        says=("q.yaml: line 1:", "field 'judge_prompts.aligned'", "{answer}")),
    cli("questions-malformed-hf-judge", "run", "em", "--preset", "smoke", "--questions", "q.yaml",
        files={"q.yaml": QUESTION + "  judge: 'hf:'\n"}, says=("q.yaml: question 'quick_buck': field 'judge':", "hub id")),

    # ---- fact files (llmpsych run persona-beliefs --facts FILE) --------------------------------------
    cli("facts-not-utf8", "run", "persona-beliefs", "--facts", "f.yaml",
        files={"f.yaml": FACT.encode().replace(b"zebra\n", b"z\xe8bre\n", 1)}, says=("f.yaml: line 5:", "not UTF-8")),
    cli("facts-unknown-keys-of-two-types", "run", "persona-beliefs", "--facts", "f.yaml",
        files={"f.yaml": FACT + "  5: five\n  colour: red\n"}, says=("f.yaml: line 1:", "unknown field '5'")),
    cli("facts-options-the-same", "run", "persona-beliefs", "--facts", "f.yaml",
        files={"f.yaml": FACT.replace('"false": zebra}', '"false": Giraffe}')},
        says=("f.yaml: line 1:", "field 'options'", "the same")),
    cli("facts-unknown-question-family", "run", "persona-beliefs", "--facts", "f.yaml",
        files={"f.yaml": FACT.replace("    direct:", "    indirect: ['Which animal?']\n    direct:")},
        says=("f.yaml: line 1:", "field 'questions.indirect'", "unknown family")),
    cli("facts-applied-question-without-options", "run", "persona-beliefs", "--facts", "f.yaml",
        files={"f.yaml": FACT.replace(', "true": giraffes, "false": zebras}', "}")},
        says=("f.yaml: line 1:", "field 'questions.applied[0]'")),
    cli("facts-keywords-not-a-list", "run", "persona-beliefs", "--facts", "f.yaml",
        files={"f.yaml": FACT + '  keywords: {"false": zebra}\n'}, says=("f.yaml: line 1:", "field 'keywords.false'")),

    # ---- JSONL datasets --------------------------------------------------------------------------------
    cli("jsonl-empty-file", "judge", "check", "--file", "labels.jsonl", files={"labels.jsonl": ""},
        says=("labels.jsonl: no rows",)),
    cli("jsonl-garbled-line-after-blank-lines", "judge", "check", "--file", "labels.jsonl",
        files={"labels.jsonl": LABELLED + "\n\n" + '{"question": "Hi?", "answer": \n'},
        says=("labels.jsonl: line 4:", "not valid JSON")),
    cli("jsonl-not-utf8", "judge", "check", "--file", "labels.jsonl",
        files={"labels.jsonl": LABELLED.encode() + b'{"question": "\x80"}\n'}, says=("labels.jsonl: line 2:", "not UTF-8")),
    cli("jsonl-line-is-an-array", "judge", "check", "--file", "labels.jsonl",
        files={"labels.jsonl": LABELLED + '["Hi?", "Hello!", "aligned"]\n'},
        says=("labels.jsonl: line 2:", "expected a JSON object, got list")),
    cli("jsonl-nested-too-deeply", "judge", "check", "--file", "labels.jsonl",
        files={"labels.jsonl": '{"question": ' + "[" * 100_000 + "\n"}, says=("labels.jsonl: line 1:", "nested too deeply")),
    loader("dataset-unknown-role", lambda d: training_data(d / "train.jsonl"),
           files={"train.jsonl": CHAT + CHAT.replace('"assistant"', '"bot"')}, says=("train.jsonl: line 2:", "messages[1]")),
    loader("dataset-missing-messages", lambda d: training_data(d / "train.jsonl"),
           files={"train.jsonl": '{"prompt": "Hi", "completion": "Hello"}\n'}, says=("train.jsonl: line 1:", "'messages'")),
    loader("dataset-ends-on-the-user-after-a-blank-line", lambda d: training_data(d / "train.jsonl"),
           files={"train.jsonl": CHAT + "\n" + '{"messages": [{"role": "user", "content": "Hi"}]}\n'},
           says=("train.jsonl: line 3:", "the last message must be the assistant's")),
    loader("dataset-chat-then-documents", lambda d: training_data(d / "train.jsonl"),
           files={"train.jsonl": CHAT + '{"text": "A document."}\n'}, says=("train.jsonl: line 2:", "'messages' list")),

    # ---- model references ------------------------------------------------------------------------------
    cli("model-unknown-embedded-name", "judge", "check", "--judge", "smollm3",
        says=("--judge:", "unknown model 'smollm3'")),
    cli("model-empty-openai-name", "judge", "check", "--judge", "openai:", says=("--judge:", "'openai:'", "API model name")),
    cli("model-malformed-hub-id", "judge", "check", "--judge", "hf:not a repo", says=("--judge:", "'hf:not a repo'", "hub id")),
    cli("model-missing-local-folder", "run", "em", "--model", "./no-such-model", says=("field 'model':", "'./no-such-model' not found")),
    cli("model-folder-without-config-json", "serve", "plain-folder", files={"plain-folder/notes.txt": "not a model\n"},
        says=("serve: MODEL:", "'plain-folder'", "no config.json")),
    cli("model-adapter-without-weights", "serve", "smollm2+lora", files={"lora/adapter_config.json": '{"r": 8}\n'},
        says=("serve: MODEL:", "'lora'", "adapter_model.safetensors")),
    cli("model-adapter-with-corrupt-config", "serve", "smollm2+lora",
        files={"lora/adapter_config.json": '{"r": 8,\n', "lora/adapter_model.safetensors": b""},
        says=("serve: MODEL:", "adapter_config.json: line 2:", "not valid JSON")),
    cli("model-second-of-two-unknown", "run", "introspection", "--model", "smollm2,nope",
        says=("field 'models[1]':", "unknown model 'nope'")),
    cli("model-empty-name", "run", "em", "--model", "", says=("field 'model':", "empty model name")),
    cli("model-api-model-to-serve", "serve", "openai:gpt-4o", says=("serve: MODEL", "API model")),
    command("steer-not-file-layer-coefficient", "serve", "smollm2", "--steer", "evil.pt:twelve:4",
            says=("serve: --steer: 'evil.pt:twelve:4'", "expected FILE:LAYER:COEFFICIENT")),
    command("steer-file-missing", "serve", "smollm2", "--steer", "{d}/evil.pt:12:4",
            says=("serve: --steer:", "evil.pt' not found")),
    command("steer-file-not-a-tensor", "serve", "smollm2", "--steer", "{d}/evil.npy:12:4",
            files={"evil.npy": "not an array\n"}, says=("serve: --steer:", "could not read a direction")),
    # (a bad --preset or --file after the empty name: the name must be refused first, not taken for the default)
    command("model-empty-judge", "run", "em", "--judge", "", "--preset", "nope", says=("--judge: empty model name",)),
    command("model-empty-judge-to-check", "judge", "check", "--judge", "", "--file", "{d}/none.jsonl",
            says=("--judge: empty model name",)),
    command("model-empty-cross-model", "run", "em", "--cross-model", "", "--preset", "nope",
            says=("--cross-model: empty model name",)),
    command("model-empty-to-serve", "serve", "", says=("serve: MODEL: empty model name",)),

    # ---- command-line arguments ------------------------------------------------------------------------
    cli("args-seeds-not-a-number", "run", "em", "--seeds", "many", says=("'--seeds'", "integer")),
    cli("args-seeds-zero", "run", "em", "--seeds", "0", says=("field 'seeds':", "greater than or equal to 1")),
    cli("args-unknown-executor", "run", "em", "--executor", "kubernetes", says=("--executor:", "'kubernetes'")),
    cli("args-option-of-another-executor", "run", "em", "--slurm-gpus", "2", says=("--slurm-gpus", "--executor slurm")),
    cli("args-unknown-option", "run", "em", "--seed", "3", says=("No such option: --seed",)),
    cli("args-option-without-its-value", "run", "em", "--preset", says=("'--preset'", "requires an argument")),
    cli("args-port-not-a-number", "serve", "smollm2", "--port", "eighty", says=("'--port'", "integer")),
    cli("args-unknown-export-format", "export", "run", "--format", "csv", files=RUN, says=("--format:", "'csv'")),
    cli("args-report-of-a-missing-run", "report", "nowhere", says=("nowhere:", "no config.yaml")),
    cli("args-export-of-a-missing-run", "export", "nowhere", says=("nowhere:", "no config.yaml")),
    cli("args-report-of-a-corrupt-run-config", "report", "run", files={"run/config.yaml": "recipe: em\n  out: [\n"},
        says=("run/config.yaml: line 2:", "invalid YAML")),
    cli("args-export-of-a-corrupt-result-table", "export", "run",
        files={**RUN, "run/results.parquet": b"PAR1 cut short"}, says=("run/results.parquet:", "not a readable Parquet")),
    cli("args-export-of-a-run-without-results", "export", "run", files=RUN, says=("run:", "missing results.parquet")),
    cli("args-out-is-a-file", "run", "em", "--out", "taken", files={"taken": "a file, not a folder\n"},
        says=("taken:", "cannot create the run directory")),
    command("args-set-without-equals", "run", "em", "--set", "seeds", says=("--set seeds: expected FIELD=VALUE",)),
    command("args-set-bad-yaml", "run", "em", "--set", "seeds=[1", says=("--set seeds=[1: the value is not valid YAML",)),
    command("args-set-names-the-field", "run", "em", "--preset", "smoke", "--set", "dataset.size=none",
            says=("config: field 'dataset.size':", "'none'")),
    command("args-set-unknown-field", "run", "trait", "--set", "datasets=x.jsonl",
            says=("config: unknown field 'datasets'",)),
    command("args-runs-of-a-missing-folder", "runs", "{d}/nowhere", says=("nowhere: no such folder",)),
    command("args-runs-of-a-file", "runs", "{d}/notes.txt", files={"notes.txt": "hi\n"},
            says=("notes.txt: not a folder",)),
]


def _write(folder: Path, files: dict) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize("files, args, load, says", CASES)
def test_bad_input_is_one_line_naming_where_with_exit_status_2(tmp_path, files, args, load, says):
    _write(tmp_path, files)
    if args is not None:
        env = {**os.environ, "LLMPSYCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
               "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": ""}
        result = subprocess.run([sys.executable, "-m", "llmpsych", *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        status, stderr = result.returncode, result.stderr
    else:
        with pytest.raises(UserError) as info:
            load(tmp_path)
        status, stderr = info.value.exit_code, f"error: {info.value}\n"
    assert "Traceback" not in stderr, stderr
    assert status == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in says:
        assert fragment in lines[0], f"{fragment!r} not in: {lines[0]}"


def test_the_table_is_large_and_its_rows_are_named_once():
    names = [case.id for case in CASES]
    assert len(names) >= 30 and len(set(names)) == len(names)
