"""Training modes on tiny inputs: files written, resuming, frozen weights, bad checkpoints, bad flags, NaN."""
import csv
import importlib.util

import numpy as np
import pytest
from click.testing import CliRunner

import constants
import utils
from ml import checkpoints, embeddings, evaluation, training
from ml.model import build_model


def load_script():
    spec = importlib.util.spec_from_file_location("train_script", "ml/1_train_triplet_softmax_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def history_rows(mode):
    with open(checkpoints.RunFolder(mode).history) as handle:
        return list(csv.DictReader(handle))


def test_softmax_then_triplet_then_frozen_write_their_run_folders_and_resume(small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "CHECKPOINT_EVERY_EPOCHS", 2)
    monkeypatch.setattr(constants, "CHECKPOINT_EVERY_STEPS", 4)
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 4)  # the default schedule's run: 4 epochs
    result = training.train_softmax(small_inputs, epochs=3, verbose=0)
    run = workdir / "runs" / "softmax"
    assert {p.name for p in (run / "weights").iterdir()} == {"epoch-000002.weights.h5", "epoch-000003.weights.h5"}
    assert utils.read_json(run / "state.json")["count"] == 3 and (run / "settings.json").exists()
    assert 0 <= result["window_accuracy"] <= 1 and len(history_rows("softmax")) == 3

    training.train_softmax(small_inputs, epochs=1, verbose=0)  # continues at epoch 4
    assert utils.read_json(run / "state.json")["count"] == 4
    assert [int(r["epoch"]) for r in history_rows("softmax")] == [0, 1, 2, 3]

    triplet = training.train_triplet(small_inputs, steps=5, normalize_embeddings=True, progress=False)
    state = utils.read_json(workdir / "runs" / "triplet" / "state.json")
    assert state["count"] == 5 and state["unit"] == "step" and np.isfinite(triplet["loss"])
    assert state["normalize_embeddings"] and not utils.read_json(run / "state.json")["normalize_embeddings"]
    assert "softmax/weights/epoch-000004" in utils.read_json(workdir / "runs" / "triplet" / "settings.json")["started_from"]
    training.train_triplet(small_inputs, steps=3, normalize_embeddings=True, progress=False)
    assert [int(r["step"]) for r in history_rows("triplet")] == list(range(1, 9))
    assert {p.name for p in (workdir / "runs" / "triplet" / "weights").iterdir()} == {
        "step-000004.weights.h5", "step-000005.weights.h5", "step-000008.weights.h5"}

    start = build_model(len(small_inputs.classes), normalize_embeddings=True)
    start.load_weights(workdir / "runs" / "triplet" / "weights" / "step-000008.weights.h5")
    result = training.train_softmax(small_inputs, epochs=2, freeze=True, normalize_embeddings=True, verbose=0)
    frozen = result["model"]
    # the checkpoint, loaded for use, is the model that was trained (L2 normalisation included)
    loaded, classes, _ = embeddings.load_trained_model("frozen")
    assert classes == small_inputs.classes and len(classes) == 3 * len(small_inputs.speakers)  # speakers + 2 speeds
    accuracy = evaluation.closed_set_accuracy(loaded, small_inputs)
    assert accuracy == (result["window_accuracy"], result["utterance_accuracy"])
    windows = small_inputs.test.windows(slice(0, 20))
    for output in ("embeddings", "softmax"):
        np.testing.assert_allclose(np.asarray(loaded(windows)[output]), np.asarray(frozen(windows)[output]), rtol=1e-5,
                                   atol=1e-6)
    for before, after in zip(start.weights, frozen.weights):
        if before.path.startswith("softmax/"):
            assert not np.allclose(before.numpy(), after.numpy()), before.path
        else:
            np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=before.path)


def test_fresh_ignores_checkpoints_and_the_same_seed_gives_the_same_first_epoch(small_inputs, workdir):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_softmax(small_inputs, epochs=1, fresh=True, verbose=0)
    first, second = history_rows("softmax")
    assert first["epoch"] == second["epoch"] == "0"
    assert float(first["loss"]) == pytest.approx(float(second["loss"]), rel=1e-4)


@pytest.mark.parametrize("pairs", [1, 4])
def test_triplet_batches_pair_each_anchor_with_its_speaker_and_another(small_inputs, monkeypatch, pairs):
    monkeypatch.setattr(constants, "TRIPLET_PAIRS_PER_BATCH", pairs)
    windows, labels = training.TripletSampler(small_inputs.train, np.random.default_rng(0)).batch()
    anchors, positives, negatives = np.split(labels, 3)
    assert len(windows) == constants.BATCH_SIZE // 3 * 3
    assert np.all(anchors == positives) and np.all(anchors != negatives)
    pair_count = len(set(zip(anchors.tolist(), negatives.tolist())))
    assert pair_count == 1 if pairs == 1 else pair_count > 1


def test_a_checkpoint_for_another_speaker_count_fails_clearly(small_inputs, workdir):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    small_inputs.classes.append("p999")
    with pytest.raises(utils.PipelineError, match="num_speakers: checkpoint 9, now 10.*--fresh"):
        training.train_triplet(small_inputs, steps=1, progress=False)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(small_inputs, workdir):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    small_inputs.train.frames[:] = np.nan
    with pytest.raises(training.NonFiniteLoss, match="last good checkpoint is kept .*epoch-000001"):
        training.train_softmax(small_inputs, epochs=2, verbose=0)
    assert utils.read_json(workdir / "runs" / "softmax" / "state.json")["count"] == 1
    with pytest.raises(training.NonFiniteLoss, match="step 1"):
        training.train_triplet(small_inputs, steps=3, progress=False)
    assert checkpoints.RunFolder("triplet").state() is None


@pytest.mark.parametrize("flags, message", [
    ([], "choose exactly one loss"),
    (["--loss_on_softmax", "--loss_on_embeddings"], "choose exactly one loss"),
    (["--loss_on_embeddings", "--freeze_embedding_weights"], "takes --steps"),
    (["--loss_on_embeddings", "--epochs", "2"], "takes --steps"),
    (["--loss_on_softmax", "--steps", "2"], "not --steps"),
])
def test_bad_flag_combinations_are_usage_errors(flags, message, workdir):
    result = CliRunner().invoke(load_script().main, flags)
    assert result.exit_code == 2 and message in result.output


def test_the_script_trains_and_says_when_inputs_are_missing(small_inputs, workdir, tmp_path, monkeypatch):
    script = load_script()
    result = CliRunner().invoke(script.main, ["--loss_on_embeddings", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "triplet:" in result.output and "moving average" in result.output
    monkeypatch.setattr(constants, "WORKDIR", str(tmp_path / "empty"))
    missing = CliRunner().invoke(script.main, ["--loss_on_softmax"])
    assert missing.exit_code == 1 and "0_generate_inputs.py" in str(missing.exception) + missing.output
