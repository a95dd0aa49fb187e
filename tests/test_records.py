"""Records read back from disk (run state, inputs, reports): a damaged or hand-edited one is refused in one line
naming the file, never a traceback further on, and never a NaN threshold used as if it were one."""
import json

import pytest

import utils
from ml import checkpoints
from ml import inputs as ml_inputs


def write(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


@pytest.mark.parametrize("value, problem", [
    ([], "a JSON list, not an object"),
    ({"threshold": 0.5}, "it lacks checkpoint"),
    ({"checkpoint": "c", "threshold": float("nan")}, "its threshold is not a finite number"),
    ({"checkpoint": "c", "threshold": "0.5"}, "its threshold is not a finite number"),
    ({"checkpoint": "c", "threshold": True}, "its threshold is not a finite number"),
    ({"checkpoint": None, "threshold": 0.5}, "its checkpoint is not a string"),
])
def test_typed_keys_refuse_a_record_of_the_wrong_shape_in_one_line(tmp_path, value, problem):
    path = write(tmp_path / "report.json", value)
    with pytest.raises(utils.CorruptFile) as error:
        utils.read_json(path, what="a report", fix="Compute it again", keys={"checkpoint": str, "threshold": utils.NUMBER})
    message = str(error.value)
    assert problem in message and str(path) in message and "Compute it again" in message and "\n" not in message
    assert utils.read_json(write(path, {"checkpoint": "c", "threshold": 1}), keys={"threshold": utils.NUMBER})


@pytest.mark.parametrize("edit, problem", [
    (lambda s: s.update(checkpoints=None), "its checkpoints is not a list"),
    (lambda s: s.update(latest=[]), "its latest is not an object or null"),
    (lambda s: s["checkpoints"][0].pop("sha256"), "a checkpoint in it: it lacks sha256"),
    (lambda s: s["latest"].update(count="3"), "a checkpoint in it: its count is not an integer"),
])
def test_a_run_state_of_the_wrong_shape_is_refused_naming_fresh(workdir, edit, problem):
    entry = {"file": "weights/epoch-000001.weights.h5", "count": 1, "sha256": "s"}
    state = {"run_id": "r", "unit": "epoch", "checkpoints": [dict(entry)], "latest": dict(entry), "best": None,
             "model": {}, "inputs": {}}
    run = checkpoints.RunFolder("softmax")
    write(run.folder / "state.json", state)
    assert run.state() == state
    edit(state)
    write(run.folder / "state.json", state)
    with pytest.raises(utils.CorruptFile, match=f"state.json is not a valid record .*{problem}.*--fresh"):
        run.state()


def test_a_result_that_is_no_object_and_inputs_built_from_nothing_are_refused(workdir):
    run = checkpoints.RunFolder("softmax")
    write(run.folder / "result.json", [])
    with pytest.raises(utils.CorruptFile, match="result.json is not a valid record .*measured again"):
        run.result()
    folder = ml_inputs.inputs_folder()
    write(folder / "inputs.json", {"built_from": {}, "files": {}, "classes": [], "input_shape": [10, 39]})
    with pytest.raises(utils.CorruptFile, match="inputs.json is not a valid record .*built_from: it lacks settings"):
        ml_inputs.checked_record()


def test_a_stored_report_with_a_damaged_value_is_refused_naming_the_command_that_makes_it_anew(tmp_path):
    state, entry = {"run_id": "r1"}, {"count": 1, "sha256": "s", "file": "weights/epoch-000001.weights.h5"}
    report = {"checkpoint": checkpoints.checkpoint_reference("softmax", state, entry), "settings": None,
              "created": "then", "threshold": 0.3}
    path = write(tmp_path / "speaker_changes.json", report)
    with pytest.raises(utils.CorruptFile, match="its settings is not an object.*again --force"):
        checkpoints.existing_evaluation(path, "softmax", state, entry, {"SEED": 1}, "again --force", "detect")
    with pytest.raises(utils.CorruptFile, match="report.json is not a valid record \\(KeyError: 'baseline'\\); "
                                                "compute it again with `again --force`"):
        with utils.stored_record(tmp_path / "report.json", "again --force"):
            _ = report["baseline"]
