"""The result table every recipe writes: its columns and types, joining the steps' parts, and what a
report does when a run's table is incomplete."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from llmpsych import load_run
from llmpsych.errors import UserError
from llmpsych.runtime.results import COLUMNS, clear_results, combine_results, result_frame, write_results
from llmpsych.runtime.store import RunStore

ROW = {"model": "m-s0", "arm": "m", "seed": 0, "probe": "p", "cluster": "c", "item": "i"}


def test_rows_get_the_shared_columns_in_order_with_their_types_and_extras_after():
    table = result_frame([{**ROW, "value": 1, "cluster": 3, "flag": True, "count": 2, "share": 0.5, "note": "x"},
                          {**ROW, "item": "j", "value": None, "flag": None, "count": None, "seed": None}])
    assert list(table.columns) == list(COLUMNS) + ["flag", "count", "share", "note"]
    assert table["variant"].tolist() == ["plain", "plain"] and table["sample"].tolist() == [0, 0]
    assert table["cluster"].tolist() == ["3", "c"]  # ids are text, whatever the step wrote
    assert pd.isna(table.loc[1, "value"]) and table.loc[0, "value"] == 1.0  # missing stays missing, never 0
    assert str(table["flag"].dtype) == "boolean" and str(table["count"].dtype) == "Int64"
    with pytest.raises(ValueError, match="without 'probe'"):
        result_frame([{k: v for k, v in ROW.items() if k != "probe"}])


def test_parts_join_into_one_table_keeping_integers_and_mixing_types_as_text(tmp_path):
    store = RunStore(tmp_path / "run").create()
    write_results(store, "a", [{**ROW, "value": 0.5, "count": 2, "mixed": True}])
    write_results(store, "b", [{**ROW, "probe": "q", "value": 1.0, "mixed": "text"}])
    table = combine_results(store)
    assert table["probe"].tolist() == ["p", "q"] and store.path("results.parquet").is_file()
    assert str(table["count"].dtype) == "Int64" and pd.isna(table.loc[1, "count"])
    assert table["mixed"].tolist() == ["true", "text"]  # one column, one type: mixed values as JSON text
    store.write_text("config.yaml", yaml.safe_dump({"recipe": "emergent-misalignment"}))
    assert load_run(store.root).equals(table)


def test_a_rerun_starts_from_no_parts_so_a_dropped_arm_leaves_no_rows(tmp_path):
    store = RunStore(tmp_path / "run").create()
    write_results(store, "old-arm", [{**ROW, "arm": "dropped", "value": 1.0}])
    clear_results(store)  # what run_experiment does before the plan runs again
    write_results(store, "kept", [{**ROW, "value": 0.0}])
    assert combine_results(store)["arm"].tolist() == ["m"]


def test_a_report_of_an_incomplete_table_is_one_line_not_a_traceback(tmp_path):
    from llmpsych.recipes.persona_beliefs import persona_beliefs

    store = RunStore(tmp_path / "run").create()
    store.write_text("config.yaml", yaml.safe_dump({"recipe": "persona-beliefs", "model": "smollm2"}))
    store.write_json("models.json", [])
    write_results(store, "over-refusal", [{**ROW, "probe": "over-refusal", "value": 1.0}])  # no choices part
    with pytest.raises(UserError, match=r"run: the result table has no '\w+' column \(the run did not finish"):
        persona_beliefs.report(store)
