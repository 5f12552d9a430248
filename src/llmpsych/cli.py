"""The `llmpsych` command. Heavy libraries are imported inside commands, so `--help` stays fast."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import UserError, disk_full_error, is_disk_full

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Change a language model, then measure what it believes, does and says about itself.")
judge_app = typer.Typer(no_args_is_help=True, help="Judge utilities.")
app.add_typer(judge_app, name="judge")


@app.command()
def run(
    target: str = typer.Argument(..., help="A recipe name (emergent-misalignment, persona-beliefs, introspection, "
                                           "self-awareness, ooc-reasoning, trait-elicitation), a study .py file of "
                                           "your own, or an experiment config .yaml."),
    preset: Optional[str] = typer.Option(None, help="smoke (install check), quick (the flagship) or paper."),
    model: Optional[str] = typer.Option(None, help="Base model reference (see `llmpsych models`); introspection "
                                                   "takes a comma-separated list (M1,M2,...)."),
    judge: Optional[str] = typer.Option(None, help="Judge or grader model reference (default: the embedded model; "
                                                   "the paper preset needs another)."),
    seeds: Optional[int] = typer.Option(None, help="Fine-tunes per condition."),
    questions: Optional[Path] = typer.Option(None, help="A question file (EM YAML format) to ask instead."),
    facts: Optional[Path] = typer.Option(None, help="A fact file (persona-beliefs) to use instead of the shipped facts."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default: the preset's, e.g. runs/em-quick)."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Any config field, as FIELD=VALUE (dotted for "
                                                                     "sections, YAML values): --set dataset=my.jsonl "
                                                                     "--set training.epochs=2. Repeatable."),
    cross_model: Optional[str] = typer.Option(None, help="Also train this second model on the same data and "
                                                         "compare its answers (cross-prediction control)."),
    equivalence_margin: Optional[float] = typer.Option(None, help="With --cross-model: the largest difference (a "
                                                                  "share: 0.05 is 5 points) that counts as the same "
                                                                  "answer in the equivalence test (default 0.05)."),
    executor: str = typer.Option("local", help="Where the steps run: local (this process), ray (a Ray cluster) or "
                                               "slurm (SLURM job arrays); workers must see the run directory and "
                                               "the cache at the same paths."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a new "
                                                         "local cluster)."),
    slurm_partition: Optional[str] = typer.Option(None, help="SLURM partition (default: the cluster's)."),
    slurm_gpus: Optional[int] = typer.Option(None, help="GPUs per SLURM job (default 1)."),
    slurm_time: Optional[int] = typer.Option(None, help="Time limit per SLURM job in minutes (default 240)."),
    cpus_per_step: Optional[int] = typer.Option(None, help="CPU cores per step with ray or slurm; torch uses as "
                                                           "many threads (default 1)."),
) -> None:
    """Run an experiment end to end: datasets, fine-tunes, samples, judges, statistics, report."""
    judge, cross_model = _model_option(judge, "--judge"), _model_option(cross_model, "--cross-model")
    from .experiment import run_experiment
    from .runtime.executors import make_executor

    overrides: dict = {}
    if model is not None:  # an empty --model is an error, not the default
        overrides["model"] = model
    if judge:
        overrides["judge"] = {"model": judge}
    if seeds is not None:
        overrides["seeds"] = seeds
    if questions:
        overrides.update(questions=[str(questions)], question_ids=None)
    if facts:
        overrides["facts"] = str(facts)
    if settings:
        from .config import deep_merge

        for setting in settings:
            overrides = deep_merge(overrides, _setting(setting))
    chosen = make_executor(executor, ray_address, slurm_partition, slurm_gpus, slurm_time, cpus_per_step)
    if equivalence_margin is not None and not cross_model:
        raise UserError("--equivalence-margin applies to --cross-model runs")
    if cross_model:
        from .cross_prediction import MARGIN, run_cross_prediction

        run_cross_prediction(target, cross_model, preset, overrides, str(out) if out else None, chosen,
                             MARGIN if equivalence_margin is None else equivalence_margin)
        return
    run_experiment(target, preset, overrides, str(out) if out else None, chosen)


def _setting(text: str) -> dict:
    """`a.b=value` as {"a": {"b": value}}, the value read as YAML (numbers, true/false, lists)."""
    import yaml

    field, equals, value = text.partition("=")
    if not equals or not field.strip() or any(not part for part in field.strip().split(".")):
        raise UserError(f"--set {text}: expected FIELD=VALUE, e.g. --set seeds=3 or --set training.epochs=2")
    try:
        parsed = yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        raise UserError(f"--set {text}: the value is not valid YAML (quote it)") from None
    for part in reversed(field.strip().split(".")):
        parsed = {part: parsed}
    return parsed


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory written by `llmpsych run`.")) -> None:
    """Rebuild a run's tables, figures and report from its stored results (no model calls)."""
    from .experiment import rebuild_report

    print(f"Report: {rebuild_report(run_dir)}")


@app.command()
def export(run_dir: Path = typer.Argument(..., help="A run directory written by `llmpsych run`."),
           fmt: str = typer.Option("inspect", "--format", help="inspect: Inspect .eval logs, one per condition."),
           out: Optional[Path] = typer.Option(None, help="Output folder (default: RUN_DIR/inspect).")) -> None:
    """Export a finished run's samples, scores and headline metrics for other tools (no model calls)."""
    from .export import export_inspect

    if fmt != "inspect":
        raise UserError(f"--format: unknown format '{fmt}' (expected: inspect)")
    paths = export_inspect(run_dir, out)
    print(f"Wrote {len(paths)} Inspect logs; browse them with: inspect view --log-dir {paths[0].parent}")


@judge_app.command("check")
def judge_check(
    file: Optional[Path] = typer.Option(None, "--file", help="Labelled YAML/JSONL rows: question, answer, expected."),
    judge: Optional[str] = typer.Option(None, help="Judge or grader model reference (default: the embedded model; "
                                                   "the paper preset needs another)."),
) -> None:
    """Score a labelled validation set with a judge; print its agreement and confusion table."""
    judge = _model_option(judge, "--judge")
    from .judges.check import check_judge
    from .judges.judge import Judge
    from .models.refs import DEFAULT_MODEL, parse_model_ref
    from .runtime.calls import Runtime

    ref = parse_model_ref(DEFAULT_MODEL if judge is None else judge, "--judge")
    result = check_judge(Judge(Runtime(), ref), file)
    print(f"Judge {result.judge} on {result.n} labelled answers ({result.source}):")
    print(f"  agreement {result.agreement:.1%}, Cohen's kappa "
          f"{'n/a' if result.kappa is None else f'{result.kappa:.3f}'}")
    print(result.confusion().to_string())


@app.command("runs")
def runs_command(folder: Path = typer.Argument(Path("runs"), help="A folder holding run directories (searched "
                                                                   "recursively; a run directory holds config.yaml).")
                 ) -> None:
    """List the runs under a folder, newest first: path, recipe, preset, date and the primary result."""
    from .runs import find_runs, format_runs

    found = find_runs(folder)
    if not found:
        print(f"No runs under {folder} (a run directory holds config.yaml)", file=sys.stderr)
    for line in format_runs(found):
        print(line)


@app.command()
def models() -> None:
    """List the embedded models and explain the model reference syntax."""
    from .models import refs
    from .models.embedded import EMBEDDED_MODELS, installed_file
    from .paths import models_dir

    print(refs.__doc__.split("Syntax", 1)[1].split("::", 1)[1].rstrip())
    print("\nEmbedded models:")
    for name, model in EMBEDDED_MODELS.items():
        try:
            status = f"installed ({installed_file(model)})"
        except UserError:
            status = f"not installed: {model.install_hint}"
        materialised = sorted(models_dir().glob(f"{name}-*"))
        print(f"  {name}: {model.description}\n    {status}; "
              f"{'materialised in ' + str(materialised[0]) if materialised else 'not materialised yet'}")


@app.command()
def serve(model: str = typer.Argument(..., help="A model reference (embedded name, local folder, hub id, "
                                                 "with an adapter as in `llmpsych models`)."),
          host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
          port: int = typer.Option(8000, help="Port; 0 picks a free one."),
          state_dir: Optional[Path] = typer.Option(None, help="Folder for uploaded files, fine-tuning jobs (with "
                                                              "their adapters) and batches; a server restarted on "
                                                              "the same folder serves its fine-tunes again "
                                                              "(default: a temporary folder)."),
          inject_faults: float = typer.Option(0.0, help="Testing clients: answer this fraction of requests with "
                                                        "429, 500 or a late reply."),
          fault_delay: float = typer.Option(2.0, help="Seconds a late reply waits (with --inject-faults)."),
          dtype: str = typer.Option("auto", help="auto, bfloat16 or float32."),
          device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
          batch_size: int = typer.Option(64, min=1, help="Most generation requests decoded together. A reply can "
                                                         "differ in rounding, and so in its sampled tokens, with "
                                                         "the requests batched with it; 1 decodes each alone, "
                                                         "as a local run with engine.generate_batch_size 1 does."),
          steer: list[str] = typer.Option([], help="Serve the model steered: FILE:LAYER:COEFFICIENT adds "
                                                   "COEFFICIENT x the direction (a .safetensors, .pt or .npy file, "
                                                   "one vector or one row per layer) after block LAYER. "
                                                   "Repeatable.")
          ) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (chat completions with logprobs, models list, files,
    fine-tuning jobs that train a LoRA and serve it, batches)."""
    from .models import load_engine, parse_model_ref
    from .models.options import EngineOptions
    from .serve import Faults, make_server

    from .models.refs import parse_steering
    from .models.steering import read_directions

    ref = parse_model_ref(model, "serve: MODEL")
    if ref.kind == "openai":
        raise UserError(f"serve: MODEL '{model}' is an API model; serve a local one")
    for text in steer:
        spec = parse_steering(text, "serve: --steer")
        read_directions(spec.vector, "serve: --steer")  # a bad file fails now, not at the first request
        ref = ref.with_steering(spec.vector, spec.layer, spec.coefficient)
    engine = load_engine(ref, EngineOptions(device=device, dtype=dtype, generate_batch_size=batch_size))
    server = make_server(engine, model, host, port, faults=Faults(inject_faults, fault_delay),
                         state_dir=state_dir)
    print(f"Serving {model} at http://{server.server_address[0]}:{server.server_address[1]}/v1 (Ctrl-C stops)",
          file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _model_option(value: Optional[str], option: str) -> Optional[str]:
    """A model reference given on the command line, or None when the option is absent. An empty one is
    refused: it would otherwise quietly mean the default model."""
    if value is not None and not value.strip():
        raise UserError(f"{option}: empty model name (expected a model reference such as 'smollm2', a folder or "
                        "'hf:Org/Name'; see 'llmpsych models')")
    return value


def main() -> None:
    # Model hubs are only contacted for hub ids the user names; everything else stays offline.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # click's own exceptions (typer vendors click as typer._click in recent versions, imports it in older ones)
    click = sys.modules[typer.BadParameter.__module__]
    try:
        code = app(standalone_mode=False)  # so that a bad option or value comes here, to be one line too
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except click.UsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # `llmpsych` alone: the help
            error.show()
        else:  # a bad option, value, argument or command: name it, and where the help is
            command = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            print(f"error: {UserError(error.format_message())}{command}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except click.ClickException as error:
        print(f"error: {UserError(error.format_message())}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except Exception as error:  # a full disk met where no write names itself: still one line, not a bug
        if not is_disk_full(error):
            raise
        print(f"error: {disk_full_error(getattr(error, 'filename', None) or 'a file', error)}", file=sys.stderr)
        raise SystemExit(UserError.exit_code) from None
    if code == 130:  # typer turns Ctrl-C during a command into exit code 130
        print("interrupted: finished steps are cached; rerun the same command to resume", file=sys.stderr)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
