"""Environment overrides of constants.py: parsed to the constant's type, printed, rejected when wrong."""
import subprocess
import sys

import pytest

import constants


def namespace():
    return {"SEED": 1, "RATIO": 0.5, "FLAG": False, "SPEAKERS": ["a"], "CORPUS_PATH": "", "SPLIT": "vctk",
            "WORKDIR": "w"}


def test_values_are_parsed_to_the_type_of_the_default():
    space = namespace()
    applied = constants.environment_overrides(space, {
        "DEEP_SPEAKER_SEED": "7", "DEEP_SPEAKER_RATIO": "1e-3", "DEEP_SPEAKER_FLAG": "true",
        "DEEP_SPEAKER_SPEAKERS": "p1, p2,", "VCTK_CORPUS_PATH": "/data/VCTK", "DEEP_SPEAKER_SPLIT": "auto",
        "DEEP_SPEAKER_WORKDIR": "/tmp/x", "UNRELATED": "1"})
    assert space["SEED"] == 7 and space["RATIO"] == 0.001 and space["FLAG"] is True
    assert space["SPEAKERS"] == ["p1", "p2"] and space["CORPUS_PATH"] == "/data/VCTK"
    assert space["SPLIT"] == "auto" and space["WORKDIR"] == "/tmp/x"
    assert set(applied) == {"SEED", "RATIO", "FLAG", "SPEAKERS", "CORPUS_PATH", "SPLIT", "WORKDIR"}


@pytest.mark.parametrize("variable, value, message", [
    ("DEEP_SPEAKER_NOPE", "1", "names no setting"),
    ("DEEP_SPEAKER_seed", "1", "names no setting"),
    ("DEEP_SPEAKER_SEED", "seven", "not a valid int"),
    ("DEEP_SPEAKER_RATIO", "half", "not a valid float"),
    ("DEEP_SPEAKER_FLAG", "maybe", "not a valid bool"),
    ("DEEP_SPEAKER_SPLIT", "random", "must be one of vctk, auto"),
])
def test_unknown_or_malformed_overrides_stop_with_a_message(variable, value, message):
    with pytest.raises(SystemExit, match=message):
        constants.environment_overrides(namespace(), {variable: value})


def test_a_script_prints_the_overrides_it_applies_and_rejects_bad_ones_without_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DEEP_SPEAKER_WORKDIR": str(tmp_path), "DEEP_SPEAKER_MAX_COUNT_PER_CLASS": "oops"}
    bad = subprocess.run([sys.executable, "ml/0_generate_inputs.py"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "DEEP_SPEAKER_MAX_COUNT_PER_CLASS='oops' is not a valid int" in bad.stderr
    env["DEEP_SPEAKER_MAX_COUNT_PER_CLASS"] = "300"
    good = subprocess.run([sys.executable, "ml/0_generate_inputs.py"], env=env, capture_output=True, text=True)
    assert "override: MAX_COUNT_PER_CLASS = 300" in good.stdout
    assert "no corpus path is set" in good.stderr and "Traceback" not in good.stderr
