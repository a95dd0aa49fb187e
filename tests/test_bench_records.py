"""The result files of bench/ scripts: rows merged by configuration, never mixed or dropped, each with what made it."""
import json

import constants
from bench import common


def test_a_run_of_some_configurations_keeps_the_others_rows_and_replaces_its_own(tmp_path, monkeypatch):
    out = tmp_path / "results.json"
    common.write_results(out, [{"config": "a", "eer": 0.1}, {"config": "b", "eer": 0.2}], key=lambda r: r["config"])
    monkeypatch.setattr(constants, "OVERRIDES", {"SEED": 7})
    common.write_results(out, [{"config": "b", "eer": 0.3}], key=lambda r: r["config"], note="second run")
    written = json.loads(out.read_text())
    assert [(r["config"], r["eer"]) for r in written["rows"]] == [("a", 0.1), ("b", 0.3)]
    assert written["rows"][0]["provenance"]["overrides"] == {}  # each row names the run that made it
    assert written["rows"][1]["provenance"]["overrides"] == {"SEED": 7} and written["note"] == "second run"
    assert written["rows"][1]["provenance"]["code_version"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_without_a_key_a_run_writes_only_its_own_rows(tmp_path):
    out = tmp_path / "results.json"
    common.write_results(out, [{"x": 1}])
    common.write_results(out, [{"x": 2}])
    assert [r["x"] for r in json.loads(out.read_text())["rows"]] == [2]
