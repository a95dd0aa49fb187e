"""Environment overrides of constants.py: parsed to the constant's type, printed, rejected when wrong; recipes,
range checks and the resolved settings."""
import json
import os
import subprocess
import sys
from pathlib import Path

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


# ----------------------------------------------------------------------------------------------------
# Recipes, range checks and the resolved settings
# ----------------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def import_constants(code="", **variables):
    """Run `import constants; <code>` in a fresh interpreter with only `variables` as overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(constants.ENV_PREFIX) and k not in constants.ENV_ALIASES}
    env.update({constants.ENV_PREFIX + name: value for name, value in variables.items()})
    return subprocess.run([sys.executable, "-c", f"import constants; {code}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def settings(**changes):
    """A namespace of the constants as they are in this process, with `changes`."""
    return {**constants.resolved(), **changes}


def test_the_original_recipe_is_applied_and_a_single_override_wins_over_it():
    run = import_constants("import json; print(json.dumps([constants.resolved(), constants.OVERRIDES, "
                           "constants.RECIPE_VALUES]))", RECIPE="original", NORMALIZATION="global",
                           SPEED_PERTURBATION="0.8")
    assert run.returncode == 0, run.stderr
    values, overrides, recipe_values = json.loads(run.stdout)
    assert values["RECIPE"] == "original" and values["MODEL"] == "dense"
    assert values["SOFTMAX_LR_SCHEDULE"] == "plateau" and values["GAIN_AUGMENTATION_STD"] == 0.0
    assert values["TRIPLET_LEARNING_RATE"] == 0.001 and values["MAX_VALIDATION_WINDOWS"] == 0
    assert values["LEARNING_RATE"] == 0.001 and values["SOFTMAX_MAX_EPOCHS"] == 1000
    assert values["NORMALIZATION"] == "global"  # the override, not the recipe's "per_speaker"
    assert values["SPEED_PERTURBATION"] == [0.8]  # parsed to floats, like the file's default, not the recipe's []
    assert overrides == {"RECIPE": "original", "NORMALIZATION": "global", "SPEED_PERTURBATION": [0.8]}
    assert recipe_values == constants.RECIPES["original"]


def test_apply_recipe_sets_its_values_but_leaves_overridden_ones():
    space = settings(RECIPE="original", MODEL="conv", NORMALIZATION="global")
    values = constants.apply_recipe(space, overridden={"NORMALIZATION": "global"})
    assert values == constants.RECIPES["original"]
    assert space["MODEL"] == "dense" and space["NORMALIZATION"] == "global" and space["SPEED_PERTURBATION"] == []
    space["SPEED_PERTURBATION"].append(2.0)
    assert constants.RECIPES["original"]["SPEED_PERTURBATION"] == []  # the recipe's list is not shared
    assert constants.range_errors(space) == []
    default = settings(RECIPE="default")
    assert constants.apply_recipe(default) == {} and default == settings(RECIPE="default")


def test_the_original_recipe_lists_the_documented_differences_only():
    original = constants.RECIPES["original"]
    assert original["MODEL"] == "dense" and original["NORMALIZATION"] == "per_speaker"
    assert original["SOFTMAX_LR_SCHEDULE"] == "plateau" and original["SPEED_PERTURBATION"] == []
    assert original["GAIN_AUGMENTATION_STD"] == 0.0 and original["TRIPLET_LEARNING_RATE"] == 0.001
    assert original["MAX_VALIDATION_WINDOWS"] == 0
    assert constants.RECIPES["default"] == {} and constants.CHOICES["RECIPE"] == ("default", "original")
    run = import_constants("import json; print(json.dumps(constants.resolved()))")  # the defaults as written
    written = json.loads(run.stdout)
    assert [name for name, value in original.items() if written[name] == value] == []  # no entry repeats one


def test_an_unknown_recipe_is_refused_in_one_line():
    run = import_constants(RECIPE="fancy")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "deep-speaker: DEEP_SPEAKER_RECIPE='fancy' must be one of default, original"
    with pytest.raises(SystemExit, match="RECIPE='fancy' must be one of default, original"):
        constants.apply_recipe(settings(RECIPE="fancy"))


@pytest.mark.parametrize("name, value, named", [
    ("BATCH_SIZE", "0", "BATCH_SIZE = 0 "),
    ("BATCH_SIZE", "-900", "BATCH_SIZE = -900 "),
    ("NUM_MFCC", "20", "NUM_MEL_FILTERS = 13 "),  # 20 coefficients from 13 mel filters
    ("TRAIN_TEST_RATIO", "1.5", "TRAIN_TEST_RATIO = 1.5 "),
])
def test_a_value_out_of_range_stops_the_import_in_one_line(name, value, named):
    run = import_constants(**{name: value})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"deep-speaker: {named}") and "constants.py" in lines[0]
    assert f"DEEP_SPEAKER_{named.split()[0]}" in lines[0]


def test_range_messages_name_the_value_the_range_and_the_fix():
    errors = constants.range_errors(settings(TRAIN_TEST_RATIO=1.5, NUM_MFCC=20))
    assert errors == [
        "NUM_MEL_FILTERS = 13 is out of range: it must be an integer >= 1 and >= NUM_MFCC (= 20); set it with "
        "DEEP_SPEAKER_NUM_MEL_FILTERS or in constants.py",
        "TRAIN_TEST_RATIO = 1.5 is out of range: it must be a number > 0 and < 1; set it with "
        "DEEP_SPEAKER_TRAIN_TEST_RATIO or in constants.py"]


@pytest.mark.parametrize("changes, name", [
    ({"BATCH_SIZE": 2}, "BATCH_SIZE"),
    ({"BATCH_SIZE": True}, "BATCH_SIZE"),  # a bool is no number
    ({"BATCH_SIZE": 900.0}, "BATCH_SIZE"),  # nor is a float an integer
    ({"LEARNING_RATE": float("nan")}, "LEARNING_RATE"),
    ({"LEARNING_RATE": 0.0}, "LEARNING_RATE"),
    ({"MIN_LEARNING_RATE": -1e-4}, "MIN_LEARNING_RATE"),
    ({"DROPOUT": 1.0}, "DROPOUT"),
    ({"REDUCE_LR_FACTOR": 1.0}, "REDUCE_LR_FACTOR"),
    ({"VOICE_PERCENTILE": 100.0}, "VOICE_PERCENTILE"),
    ({"DCF_P_TARGET": 0.0}, "DCF_P_TARGET"),
    ({"DCF_COST_MISS": 0.0}, "DCF_COST_MISS"),
    ({"GAIN_AUGMENTATION_STD": -1.0}, "GAIN_AUGMENTATION_STD"),
    ({"MAX_VALIDATION_WINDOWS": -1}, "MAX_VALIDATION_WINDOWS"),
    ({"FFT_SIZE": 128}, "FFT_SIZE"),  # 25 ms at 8 kHz is 200 samples
    ({"FRAME_STEP_S": 0.0}, "FRAME_STEP_S"),
    ({"CONV_FILTERS": []}, "CONV_FILTERS"),
    ({"CONV_FILTERS": [64, 0]}, "CONV_FILTERS"),
    ({"SPEED_PERTURBATION": [1.0]}, "SPEED_PERTURBATION"),
    ({"SPEED_PERTURBATION": [0.9, 0.9]}, "SPEED_PERTURBATION"),
    ({"SPEED_PERTURBATION": [-0.9]}, "SPEED_PERTURBATION"),
    ({"SPEED_PERTURBATION": 0.9}, "SPEED_PERTURBATION"),  # a list is expected
    ({"TRIPLET_PAIRS_PER_BATCH": 0}, "TRIPLET_PAIRS_PER_BATCH"),
    ({"TRIPLET_PAIRS_PER_BATCH": 301}, "TRIPLET_PAIRS_PER_BATCH"),
    ({"NUM_SPEAKERS_CLASSIFICATION_TASK": 1}, "NUM_SPEAKERS_CLASSIFICATION_TASK"),
    ({"SAP_SAN_WINDOWS_PER_SPEAKER": 1}, "SAP_SAN_WINDOWS_PER_SPEAKER"),
    ({"DEMO_UTTERANCES_PER_SPEAKER": 1}, "DEMO_UTTERANCES_PER_SPEAKER"),
    ({"SEED": 2 ** 32}, "SEED"),
    ({"BATCH_SIZE": 0, "TRIPLET_PAIRS_PER_BATCH": 1}, "BATCH_SIZE"),  # the pairs' limit waits for a valid batch
    ({"SAMPLE_RATE": 0}, "SAMPLE_RATE"),  # ... and FFT_SIZE's for a valid rate
])
def test_each_rule_refuses_its_value_in_one_line(changes, name):
    errors = constants.range_errors(settings(**changes))
    assert len(errors) == 1 and errors[0].startswith(f"{name} = "), errors


def test_the_limits_themselves_are_allowed():
    assert constants.range_errors(settings(
        BATCH_SIZE=3, TRIPLET_PAIRS_PER_BATCH=1, FFT_SIZE=200, NUM_MEL_FILTERS=13, SPEED_PERTURBATION=[],
        GAIN_AUGMENTATION_STD=0, MAX_VALIDATION_WINDOWS=0, DROPOUT=0.0, NUM_WORKERS=0, SOFTMAX_WARMUP_STEPS=0,
        SILENCE_PEAK=0.0, SEED=2 ** 32 - 1, EARLY_STOPPING_PATIENCE=0)) == []


def test_the_constants_as_written_are_in_range_and_every_numeric_one_has_a_rule():
    assert constants.range_errors(vars(constants)) == []
    numeric = [name for name, value in constants.resolved().items()
               if any(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for v in (value if isinstance(value, list) else [value]))]
    assert [name for name in numeric if name not in constants.RANGES] == []
    assert [name for name in constants.RANGES if not hasattr(constants, name)] == []
    assert "SPEED_PERTURBATION" in numeric and "CONV_FILTERS" in numeric


def test_resolved_holds_every_setting_and_is_json_serialisable():
    values = constants.resolved()
    assert json.loads(json.dumps(values)) == values
    assert values["BATCH_SIZE"] == constants.BATCH_SIZE and values["RECIPE"] == constants.RECIPE
    assert isinstance(values["CONV_FILTERS"], list) and isinstance(values["VCTK_TRAIN_SPEAKERS"], list)
    assert not set(values) & {"ENV_PREFIX", "ENV_ALIASES", "CHOICES", "RECIPES", "RANGES", "OVERRIDES",
                              "RECIPE_VALUES", "_TRUE", "_FALSE"}
    assert all(name.isupper() for name in values)


def test_machinery_names_cannot_be_overridden():
    for name in ("RECIPES", "RANGES", "CHOICES", "_TRUE"):
        with pytest.raises(SystemExit, match="names no setting"):
            constants.environment_overrides({**settings(), name: 1}, {constants.ENV_PREFIX + name: "1"})


def test_print_overrides_names_a_recipe_that_is_not_the_default(monkeypatch, capsys):
    import utils
    monkeypatch.setattr(constants, "RECIPE", "original")
    monkeypatch.setattr(constants, "RECIPE_VALUES", {"MODEL": "dense", "SPEED_PERTURBATION": []})
    monkeypatch.setattr(constants, "OVERRIDES", {"RECIPE": "original", "CONV_FILTERS": [8, 16]})
    utils.print_overrides()
    assert capsys.readouterr().out.splitlines() == [
        "recipe: original (MODEL = dense, SPEED_PERTURBATION = [])", "override: RECIPE = original",
        "override: CONV_FILTERS = 8,16"]
    monkeypatch.setattr(constants, "RECIPE", "default")
    monkeypatch.setattr(constants, "RECIPE_VALUES", {})
    monkeypatch.setattr(constants, "OVERRIDES", {})
    utils.print_overrides()
    assert capsys.readouterr().out == ""


def test_degenerate_frames_are_refused_at_start_up():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", "import constants"], capture_output=True, text=True,
                            env={**__import__("os").environ, "DEEP_SPEAKER_FRAME_LENGTH_S": "0.0001"})
    assert result.returncode == 1 and "FRAME_LENGTH_S = 0.0001 is out of range" in result.stderr
