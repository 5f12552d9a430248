"""The same config and seeds, run twice from empty caches at the same torch thread count, give the same
run: summary.json (apart from its creation time), every sample, judgement and choice, the adapters'
weights, tables and figures. The first run is the session's EM smoke reference (shared with the
crash-resume test), so this costs one run."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_same_config_and_seeds_give_the_same_run(tmp_path, crash_resume, em_smoke_reference):
    again = crash_resume.run_reference(tmp_path / "run", tmp_path / "cache")

    first, second = em_smoke_reference.out, again.out
    samples = [[json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
               for run in (first, second)]
    assert len(samples[0]) == 4 * 8 * 2 and samples[0] == samples[1]
    assert crash_resume.compare_runs(first, em_smoke_reference.cache, second, again.cache) == []
    # Both started from an empty cache, so even what they executed agrees.
    summaries = [json.loads((run / "summary.json").read_text()) for run in (first, second)]
    assert summaries[0]["calls"] == summaries[1]["calls"]
    assert {k: v for k, v in summaries[0].items() if k != "created"} == \
           {k: v for k, v in summaries[1].items() if k != "created"}
