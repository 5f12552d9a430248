"""Crash and resume: SIGKILL `llmpsych run` in every phase, resume the same command each time, and check
that the finished run equals an uninterrupted one.

    python benchmarks/crash_resume.py                      # 11 kills over every phase of the EM smoke run
    python benchmarks/crash_resume.py --kills 5 --seed 3   # one kill per phase, as the CI test does

First an uninterrupted reference run, with a cache of its own. Then the same command (same --out, same
fresh cache) is started again and again, and killed each time at the next target: a line of the run's
progress output (each step prints `[k/N] name`, each batch of model calls a progress bar named after
its work, `train insecure-s0`, `sample base`, `judge aligned`, ...) plus a random delay, a fraction of
how long that stretch took in the reference. The report phase prints nothing until it ends: it starts
when the run writes calls.json, which the harness watches for. Where a kill landed is read afterwards
from everything the child printed before it died, so the table says where it was, not where it was aimed.

After every kill: the cache passes SQLite's integrity check and kept every call it had committed, and
every result file in the run directory is whole (JSON and JSONL parse, tables, figures and reports end
where they should). At the end the run must equal the reference: summary.json (its `created` time and
the executed/cached counts aside; the totals of those counts must match), the rows of samples,
judgements and choices (each key exactly once), the judge check, datasets, adapters (weights byte for
byte), tables and figures.

Every child runs with OMP_NUM_THREADS=1: CPU sampling depends on torch's thread count, so the reference
and the killed runs must use the same.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPORT_EVENT = "<run wrote calls.json: report writing starts>"
STEP = re.compile(r"^\[(\d+)/(\d+)\] (\S+)$")  # a step starts (its "... done in N s" line does not match)
BAR = re.compile(r"^((?:train|sample|judge|choices) .*):\s+\d+%\|")  # a progress bar of llmpsych's (not
# transformers' "Loading weights"): its label is what comes before ": NN%|"
PHASES = ("startup", "datasets", "training", "sampling", "judging", "choices", "in-distribution", "dynamics",
          "judge-check", "models", "report", "finished")


@dataclass(frozen=True)
class Target:
    """Kill when a progress line matches `pattern`, after a random part of that stretch of the reference."""

    phase: str
    pattern: str


# Canonical order: the order the run reaches them.
TARGETS = (
    Target("datasets", r"^\[\d+/\d+\] datasets$"),
    Target("training", r"^\[\d+/\d+\] train/insecure-s0$"),  # loading the model, then training
    Target("training", r"^\[\d+/\d+\] train/secure-s0$"),
    Target("sampling", r"^sample base: "),
    Target("sampling", r"^sample secure-s0: "),
    Target("judging", r"^judge aligned: "),
    Target("judging", r"^judge coherent: "),
    Target("choices", r"^choices \S+: "),
    Target("judge-check", r"^judge check: aligned: "),
    Target("judge-check", r"^judge check: coherent: "),
    Target("report", "^" + re.escape(REPORT_EVENT) + "$"),
)
# Which targets a shorter sequence keeps: one per phase of the method first.
PRIORITY = (0, 1, 3, 5, 10, 8, 7, 2, 4, 6, 9)


def choose_targets(kills: int) -> list[Target]:
    """`kills` targets in run order: one per phase first, then more within phases (repeating if asked)."""
    order = [PRIORITY[i % len(PRIORITY)] for i in range(kills)]
    return [TARGETS[i] for i in sorted(order)]


# ---- a child run, watched ----------------------------------------------------------------------------
@dataclass
class Event:
    t: float  # seconds since the attempt started (when the harness read it)
    stream: str  # stderr, stdout or watch
    text: str


def step_phase(name: str) -> str:
    if name.startswith("train/"):
        return "training"
    return {"datasets": "datasets", "sample": "sampling", "judge": "judging", "choices": "choices",
            "judge-check": "judge-check"}.get(name, name)


def event_phase(event: Event) -> str | None:
    """The phase an event starts, or None when it starts none."""
    if event.stream == "watch":
        return "report"
    if event.stream == "stdout" and event.text.startswith("Report: "):
        return "finished"
    match = STEP.match(event.text) if event.stream == "stderr" else None
    return step_phase(match.group(3)) if match else None


def label(event: Event) -> str | None:
    """What a stretch of the run is called: a progress bar's name, or a line that starts a phase or a step.
    Other lines (warnings, a step's "done in" line) are None: they neither start nor end a stretch."""
    bar = BAR.match(event.text) if event.stream == "stderr" else None
    if bar:
        return bar.group(1)
    return event.text if event_phase(event) else None


def child_env(cache: Path) -> dict:
    env = dict(os.environ, LLMPSYCH_CACHE=str(cache), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if "LLMPSYCH_MODELS" not in env:  # share the materialised embedded model, as the tests do
        import platformdirs

        env["LLMPSYCH_MODELS"] = str(Path(platformdirs.user_cache_dir("llmpsych")) / "models")
    return env


class Attempt:
    """One start of the command: its output as timestamped events, read by threads as it comes."""

    def __init__(self, argv: list[str], out: Path, cache: Path):
        self.out = out
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.log: list[Event] = []
        self.started = time.time()
        self.process = subprocess.Popen(argv, env=child_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True)
        self._open = 2
        self._stop = threading.Event()
        for stream in ("stdout", "stderr"):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()
        threading.Thread(target=self._watch_calls, daemon=True).start()

    def _read(self, name: str) -> None:
        handle = getattr(self.process, name)
        pending = b""
        while chunk := os.read(handle.fileno(), 65536):
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for line in lines:
                if line.strip():
                    self.events.put(Event(time.time() - self.started, name, line.decode(errors="replace").strip()))
        if pending.strip():
            self.events.put(Event(time.time() - self.started, name, pending.decode(errors="replace").strip()))
        self.events.put(None)

    def _watch_calls(self) -> None:
        """calls.json is written when every step has run, just before the report: the report phase's start."""
        path = self.out / "calls.json"
        while not self._stop.is_set():
            try:
                if path.stat().st_mtime >= self.started:
                    self.events.put(Event(time.time() - self.started, "watch", REPORT_EVENT))
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.002)

    def next_event(self, timeout: float) -> Event | None | bool:
        """The next event; None when both streams have ended; False when none came within `timeout`."""
        while self._open:
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                return False
            if event is not None:
                self.log.append(event)
                return event
            self._open -= 1
        return None

    def kill(self) -> float:
        """SIGKILL the child (and anything it started); the seconds since the attempt started."""
        at = time.time() - self.started
        os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the group is the child and its children
        return at

    def finish(self) -> int:
        """Wait for the child, then read what it printed before it ended."""
        code = self.process.wait()
        while self.next_event(timeout=10) not in (None, False):
            pass
        self._stop.set()
        return code

    def phase_reached(self) -> str:
        """The last phase the child had started when it ended, from its output and the run directory."""
        phase = max((event_phase(e) or "startup" for e in self.log), key=PHASES.index, default="startup")
        calls = self.out / "calls.json"
        if phase != "finished" and calls.exists() and calls.stat().st_mtime >= self.started:
            phase = "report"
        return phase

    def report_progress(self) -> str:
        """Which report files this attempt had replaced, for a kill in the report phase."""
        names = ("tables", "summary.json", "figures", "report.html", "report.md")
        fresh = [n for n in names if (self.out / n).exists() and _newest_mtime(self.out / n) >= self.started]
        return "wrote " + (", ".join(fresh) if fresh else "nothing yet")

    def stderr_tail(self, lines: int = 15) -> str:
        return "\n".join([e.text for e in self.log if e.stream == "stderr"][-lines:])


def _newest_mtime(path: Path) -> float:
    if path.is_dir():
        return max((p.stat().st_mtime for p in path.iterdir()), default=0.0)
    return path.stat().st_mtime


def command(out: Path, recipe: str, preset: str) -> list[str]:
    return [sys.executable, "-m", "llmpsych", "run", recipe, "--preset", preset, "--out", str(out)]


# ---- the uninterrupted reference ----------------------------------------------------------------------
@dataclass
class Reference:
    out: Path
    cache: Path
    seconds: float
    log: list[Event]

    def stretch(self, pattern: str) -> float | None:
        """How long the reference spent from the first line matching `pattern` to the start of the next
        stretch (another progress bar, step or phase)."""
        found = re.compile(pattern)
        for number, event in enumerate(self.log):
            if found.search(event.text):
                ends = (lambda e: event_phase(e) is not None) if event_phase(event) else \
                       (lambda e: label(e) not in (None, label(event)))  # a step runs to the next step
                later = [e.t for e in self.log[number + 1:] if ends(e)]
                return (later[0] if later else self.seconds) - event.t
        return None


def run_reference(out: Path, cache: Path, recipe: str = "emergent-misalignment", preset: str = "smoke") -> Reference:
    attempt = Attempt(command(out, recipe, preset), out, cache)
    while attempt.next_event(timeout=5) is not None:
        pass
    code = attempt.finish()
    if code != 0:
        raise RuntimeError(f"the reference run exited with {code}:\n{attempt.stderr_tail()}")
    return Reference(out, cache, time.time() - attempt.started, attempt.log)


# ---- killing and resuming -----------------------------------------------------------------------------
@dataclass
class Kill:
    number: int
    aimed: str
    phase: str
    detail: str
    attempt_seconds: float
    total_seconds: float
    intact: list[str]  # problems found right after the kill (none: every file whole, the cache consistent)
    resumed: bool | None = None  # did the next start carry on (killed later, or finished) without an error?


@dataclass
class CrashRun:
    kills: list[Kill] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # targets passed (their work already done) or never reached
    attempts: int = 0
    seconds: float = 0.0
    failure: str | None = None  # an attempt that exited with an error on its own


def crash_and_resume(out: Path, cache: Path, targets: list[Target], reference: Reference, rng: random.Random,
                     recipe: str = "emergent-misalignment", preset: str = "smoke",
                     delay: tuple[float, float] = (0.05, 0.9), log=sys.stderr) -> CrashRun:
    """Start the command, kill it at each target in turn, resume; finally let it finish."""
    result = CrashRun()
    first_start = time.time()
    committed = 0
    pending = list(targets)
    while True:
        attempt = Attempt(command(out, recipe, preset), out, cache)
        result.attempts += 1
        deadline = None
        killed_at = None
        while pending or deadline is not None:
            event = attempt.next_event(timeout=0.002 if deadline is not None else 1.0)
            if event is None:
                break  # the child ended on its own
            if deadline is None and event:
                # Skip targets whose work this attempt has already passed (it was done before the last kill).
                phase = event_phase(event)
                while pending and phase and PHASES.index(phase) > PHASES.index(pending[0].phase):
                    result.missed.append(f"{pending.pop(0).pattern} (its phase was over)")
                if pending and re.search(pending[0].pattern, event.text):
                    stretch = reference.stretch(pending[0].pattern) or 0.0
                    deadline = time.time() + rng.uniform(*delay) * stretch
            if deadline is not None and time.time() >= deadline:
                killed_at = attempt.kill()
                break
        code = attempt.finish()
        if killed_at is None or code != -signal.SIGKILL:
            if killed_at is not None:  # the child ended by itself just before the kill
                pending.pop(0)
            if result.kills and result.kills[-1].resumed is None:
                result.kills[-1].resumed = code == 0
            if code != 0:
                result.failure = f"attempt {result.attempts} exited with {code}:\n{attempt.stderr_tail()}"
            result.missed += [f"{t.pattern} (the run finished first)" for t in pending]
            break
        if result.kills and result.kills[-1].resumed is None:
            result.kills[-1].resumed = True  # that resume ran until this kill without an error
        target = pending.pop(0)
        phase = attempt.phase_reached()
        problems = check_intact(out)
        rows, problem = check_cache(cache / "calls.sqlite", committed)
        committed = max(committed, rows)
        problems += [problem] if problem else []
        kill = Kill(len(result.kills) + 1, target.phase, phase, attempt.report_progress() if phase == "report" else "",
                    killed_at, attempt.started + killed_at - first_start, problems)
        result.kills.append(kill)
        print(f"kill {kill.number}: aimed at {kill.aimed}, landed in {kill.phase} {kill.detail} "
              f"{kill.attempt_seconds:.1f} s into attempt {result.attempts}; cache rows {rows}"
              + (f"; PROBLEMS: {problems}" if problems else ""), file=log, flush=True)
    result.seconds = time.time() - first_start
    return result


# ---- checks -------------------------------------------------------------------------------------------
def check_cache(database: Path, committed_before: int) -> tuple[int, str | None]:
    """(rows in the cache, a problem or None): SQLite's integrity check, and no committed call lost."""
    if not database.exists():
        return 0, None
    # Read-only, so that closing it checkpoints nothing: the resume finds the cache as the kill left it.
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)
    try:
        verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
        rows = connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        connection.close()
    if verdict != "ok":
        return rows, f"cache integrity check: {verdict}"
    if rows < committed_before:
        return rows, f"cache lost rows: {committed_before} -> {rows}"
    return rows, None


ENDINGS = {".png": b"IEND\xaeB`\x82", ".html": b"</html>\n", ".csv": b"\n", ".jsonl": b"\n", ".md": b"\n",
           ".yaml": b"\n", ".parquet": b"PAR1"}


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "training_log.jsonl", "training_meta.json")


def hidden(path: Path, root: Path) -> bool:
    """A temporary file or folder (a write cut short before its rename): not a result."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def check_intact(run_dir: Path) -> list[str]:
    """Every result in the run directory is whole: JSON parses, other files end as their kind must, an
    adapter folder holds every file of an adapter. Hidden temporary files are skipped."""
    problems = []
    adapters = run_dir / "adapters"
    for folder in sorted(adapters.iterdir()) if adapters.is_dir() else []:
        missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
        if not hidden(folder, run_dir) and missing:
            problems.append(f"{folder.relative_to(run_dir)}: no {', '.join(missing)}")
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or hidden(path, run_dir) or path.is_relative_to(adapters):
            continue
        data = path.read_bytes()
        name = path.relative_to(run_dir)
        try:
            if path.suffix == ".json":
                json.loads(data)
            elif path.suffix == ".jsonl":
                for line in data.decode().splitlines():
                    json.loads(line)
        except ValueError as error:
            problems.append(f"{name}: {error}")
            continue
        ending = ENDINGS.get(path.suffix)
        if ending and data and not data.endswith(ending):
            problems.append(f"{name}: cut short")
        if not data and path.suffix != ".jsonl":
            problems.append(f"{name}: empty")
    return problems


def _normalise(value, run_dir: Path, cache: Path):
    """Paths inside the run directory or the cache, written the same way for both runs."""
    if isinstance(value, dict):
        return {k: _normalise(v, run_dir, cache) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, run_dir, cache) for v in value]
    if isinstance(value, str):
        return value.replace(str(run_dir.resolve()), "RUN").replace(str(run_dir), "RUN").replace(str(cache), "CACHE")
    return value


# training_meta: wall time, and whether a killed fine-tune resumed from a checkpoint: how it ran, not a result
TIMINGS = ("seconds", "tokens_per_second", "resumed_from_step")


def _json(path: Path, run_dir: Path, cache: Path):
    value = _normalise(json.loads(path.read_text()), run_dir, cache)
    if path.name == "training_meta.json":
        value = {k: v for k, v in value.items() if k not in TIMINGS}
    if path.name == "adapter_config.json" and isinstance(value.get("target_modules"), list):
        value["target_modules"] = sorted(value["target_modules"])  # PEFT writes a set, in hash-seed order
    if path.name == "models.json":
        for model in value:
            if "training" in model:
                model["training"] = {k: v for k, v in model["training"].items() if k not in TIMINGS}
    return value


ROW_KEYS = {"samples.jsonl": ("id",), "judgements.jsonl": ("sample_id", "metric", "judge"),
            "choices.jsonl": ("model", "item_id")}


def _rows(path: Path, keys: tuple[str, ...]) -> tuple[dict, list]:
    """{key: row} and the keys that occur more than once."""
    rows: dict = {}
    duplicated = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        key = tuple(row[k] for k in keys)
        if key in rows:
            duplicated.append(key)
        rows[key] = row
    return rows, duplicated


def compare_runs(reference: Path, reference_cache: Path, run: Path, cache: Path) -> list[str]:
    """Differences between two finished runs of the same config (empty: the same results)."""
    differences = []

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not hidden(p, root)}

    expected, found = files(reference), files(run)
    if expected != found:
        differences.append(f"files: missing {sorted(expected - found)}, extra {sorted(found - expected)}")
    for name in sorted(expected & found):
        a, b = reference / name, run / name
        if name == "summary.json":
            left, right = (json.loads(p.read_text()) for p in (a, b))
            left_calls, right_calls = left.pop("calls"), right.pop("calls")
            left.pop("created"), right.pop("created")
            if left != right:
                keys = sorted(k for k in left if left.get(k) != right.get(k))
                differences.append(f"summary.json differs in {keys}")
            totals = [{kind: c["executed"] + c["cached"] for kind, c in calls.items() if isinstance(c, dict)}
                      for calls in (left_calls, right_calls)]
            if totals[0] != totals[1]:
                differences.append(f"summary.json: calls made (executed + cached) {totals[0]} != {totals[1]}")
        elif name == "calls.json":
            continue  # executed/cached counts: compared as totals in summary.json
        elif name in ROW_KEYS:
            (left, _), (right, duplicated) = (_rows(p, ROW_KEYS[name]) for p in (a, b))
            if duplicated:
                differences.append(f"{name}: {len(duplicated)} duplicated rows, e.g. {duplicated[0]}")
            if set(left) != set(right):
                differences.append(f"{name}: missing rows {sorted(set(left) - set(right))[:3]}, "
                                   f"extra rows {sorted(set(right) - set(left))[:3]}")
            changed = [k for k in left.keys() & right.keys() if left[k] != right[k]]
            if changed:
                differences.append(f"{name}: {len(changed)} rows differ, e.g. {changed[0]}")
        elif name.endswith(".parquet"):  # the result table: the same rows, whatever the file's bytes
            import pandas as pd

            if not pd.read_parquet(a).equals(pd.read_parquet(b)):
                differences.append(f"{name} differs")
        elif name.endswith(".json"):
            if _json(a, reference, reference_cache) != _json(b, run, cache):
                differences.append(f"{name} differs")
        elif name in ("report.md", "report.html"):
            continue  # they show the creation time and training seconds; their inputs are compared
        elif _normalise(a.read_bytes().decode("latin-1"), reference, reference_cache) != \
                _normalise(b.read_bytes().decode("latin-1"), run, cache):
            differences.append(f"{name} differs")
    return differences


def leftovers(run_dir: Path, cache: Path) -> list[str]:
    """Temporary files a killed write left behind (harmless: never read, but not cleaned up)."""
    return sorted(str(p) for root in (run_dir, cache) for p in root.rglob("*")
                  if p.name.startswith(".") and p.name.endswith(".tmp") or p.name.endswith(".partial"))


# ---- the table ----------------------------------------------------------------------------------------
def table(result: CrashRun) -> str:
    lines = ["kill  aimed at     landed in    detail                                   attempt s  total s  "
             "files+cache  resumed OK"]
    for k in result.kills:
        lines.append(f"{k.number:>4}  {k.aimed:<11}  {k.phase:<11}  {k.detail[:40]:<40}  {k.attempt_seconds:>9.1f}  "
                     f"{k.total_seconds:>7.1f}  {'ok' if not k.intact else 'BROKEN':<11}  "
                     f"{'yes' if k.resumed else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=len(TARGETS))
    parser.add_argument("--seed", type=int, default=None, help="for the kill delays (default: random, printed)")
    parser.add_argument("--recipe", default="emergent-misalignment")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    print(f"seed {seed}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="crash-resume-") as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        reference = run_reference(work / "reference", work / "reference-cache", args.recipe, args.preset)
        print(f"reference run: {reference.seconds:.0f} s", file=sys.stderr, flush=True)
        result = crash_and_resume(work / "run", work / "cache", choose_targets(args.kills), reference,
                                  random.Random(seed), args.recipe, args.preset)
        differences = [] if result.failure else compare_runs(reference.out, reference.cache, work / "run",
                                                               work / "cache")
        print(table(result))
        by_phase: dict[str, int] = {}
        for kill in result.kills:
            by_phase[kill.phase] = by_phase.get(kill.phase, 0) + 1
        print(f"\nkills survived per phase: {json.dumps(by_phase)}")
        print(f"reference {reference.seconds:.0f} s; killed and resumed run {result.seconds:.0f} s over "
              f"{result.attempts} starts; seed {seed}")
        for missed in result.missed:
            print(f"not killed: {missed}")
        for path in leftovers(work / "run", work / "cache"):
            print(f"left behind: {path}")
        if result.failure:
            print(f"RESUME FAILED: {result.failure}")
        print("final run equals the reference" if not differences else "DIFFERENCES:\n  " + "\n  ".join(differences))
        broken = [k for k in result.kills if k.intact or not k.resumed]
        return 1 if result.failure or differences or broken else 0


if __name__ == "__main__":
    sys.exit(main())
