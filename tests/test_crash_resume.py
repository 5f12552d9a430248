"""A run killed with SIGKILL in every phase and resumed each time finishes with the results of a run that
was never interrupted: the same summary, every sample, judgement and choice exactly once and unchanged,
the same adapters, tables and figures. benchmarks/crash_resume.py does the work (and its long version,
11 kills, is run by hand); this is its short version, one kill per phase. Both runs start from empty
caches at the same torch thread count, so this is also the determinism check: the same config and seeds,
computed again in other processes, give the same run. Also: an append-only log cut short by a kill does
not break the process that resumes it."""

from __future__ import annotations

import io
import json
import random
from types import SimpleNamespace

import pytest


@pytest.mark.integration
def test_killed_in_every_phase_and_resumed_equals_an_uninterrupted_run(tmp_path, crash_resume, em_smoke_reference):
    targets = crash_resume.choose_targets(5)
    assert [t.phase for t in targets] == ["datasets", "training", "sampling", "judging", "report"]

    result = crash_resume.crash_and_resume(tmp_path / "run", tmp_path / "cache", targets, em_smoke_reference,
                                           random.Random(0))
    print(crash_resume.table(result), "\nnot killed:", result.missed)

    assert result.failure is None, result.failure
    assert len(result.kills) >= 4, result.missed
    for kill in result.kills:
        assert kill.intact == [], f"kill {kill.number} in {kill.phase}: {kill.intact}"
        assert kill.resumed, f"the start after kill {kill.number} ({kill.phase}) did not carry on"
    # Where a kill lands is read from the run's own output; the model-running phases are long enough
    # that a kill aimed at one always lands in it.
    assert {"training", "sampling", "judging"} <= {kill.phase for kill in result.kills}
    differences = crash_resume.compare_runs(em_smoke_reference.out, em_smoke_reference.cache,
                                            tmp_path / "run", tmp_path / "cache")
    assert differences == []
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 3 * 8 * 2


def test_a_server_killed_mid_append_leaves_an_events_log_that_still_reads_and_grows(tmp_path):
    from llmpsych.serve.jobs import Jobs

    jobs = Jobs(SimpleNamespace(models={}, log=io.StringIO()), state_dir=tmp_path)
    jobs._event("ftjob-1", "Created")
    log = tmp_path / "fine_tuning" / "ftjob-1.events.jsonl"
    with open(log, "a") as handle:  # what a SIGKILL in the middle of the next append leaves
        handle.write('{"object": "fine_tuning.job.event", "id": "ftevent-torn", "mess')
    assert [e["message"] for e in jobs._events_page("ftjob-1", {})["data"]] == ["Created"]

    jobs._event("ftjob-1", "The server restarted")  # the torn line is cut, not glued to this one
    assert [e["message"] for e in jobs._events_page("ftjob-1", {})["data"]] == ["The server restarted", "Created"]
    assert [json.loads(line)["message"] for line in log.read_text().splitlines()] == ["Created", "The server restarted"]
