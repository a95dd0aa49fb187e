"""Training modes on tiny inputs: files written, resuming, frozen weights, bad checkpoints, bad flags, NaN."""
import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import constants
import utils
from ml import checkpoints, embeddings, evaluation, training
from ml import inputs as ml_inputs
from ml.model import build_model


def load_script():
    spec = importlib.util.spec_from_file_location("train_script", "ml/1_train_triplet_softmax_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def history_rows(mode):
    with open(checkpoints.RunFolder(mode).history) as handle:
        return list(csv.DictReader(handle))


def weights(mode):
    return {p.name for p in (checkpoints.RunFolder(mode).folder / "weights").iterdir()}


def test_softmax_then_triplet_then_frozen_write_their_run_folders_and_resume(small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "CHECKPOINT_EVERY_STEPS", 4)
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 4)  # the default schedule's run: 4 epochs
    result = training.train_softmax(small_inputs, epochs=3, verbose=0)
    run = workdir / "runs" / "softmax"
    # a short run saves every epoch (a kill loses at most one), the last KEEP_CHECKPOINTS (3) are kept
    assert weights("softmax") == {"epoch-000001.weights.h5", "epoch-000002.weights.h5", "epoch-000003.weights.h5"}
    state = utils.read_json(run / "state.json")
    assert state["latest"]["count"] == 3 and state["best"]["metric"]["name"] == "val_softmax_accuracy"
    assert state["model"]["input_shape"] == [constants.FRAMES_PER_WINDOW, 39]
    settings = utils.read_json(run / "settings.json")
    assert settings["constants"]["BATCH_SIZE"] == constants.BATCH_SIZE and settings["recipe"] == "default"
    assert settings["code_version"] and settings["sessions"][0]["ended"] and settings["sessions"][0]["reached"] == 3
    assert 0 <= result["window_accuracy"] <= 1 and len(history_rows("softmax")) == 3

    again = training.train_softmax(small_inputs, epochs=3, verbose=0)  # "until 3 in all": nothing to do
    assert again["epoch"] == 3 and len(history_rows("softmax")) == 3 and "model" not in again
    training.train_softmax(small_inputs, epochs=4, verbose=0)  # continues at epoch 4
    assert utils.read_json(run / "state.json")["latest"]["count"] == 4
    assert [int(r["epoch"]) for r in history_rows("softmax")] == [0, 1, 2, 3]
    assert {"epoch-000002.weights.h5", "epoch-000003.weights.h5", "epoch-000004.weights.h5"} <= weights("softmax")

    triplet = training.train_triplet(small_inputs, steps=5, normalize_embeddings=True, progress=False)
    state = utils.read_json(workdir / "runs" / "triplet" / "state.json")
    assert state["latest"]["count"] == 5 and state["unit"] == "step" and np.isfinite(triplet["loss"])
    assert state["normalize_embeddings"] and not utils.read_json(run / "state.json")["normalize_embeddings"]
    assert state["started_from"]["mode"] == "softmax" and state["started_from"]["count"] == 4
    training.train_triplet(small_inputs, steps=5, normalize_embeddings=True, progress=False)  # nothing to do
    training.train_triplet(small_inputs, steps=8, normalize_embeddings=True, progress=False)
    assert [int(r["step"]) for r in history_rows("triplet")] == list(range(1, 9))
    assert weights("triplet") == {"step-000004.weights.h5", "step-000005.weights.h5", "step-000008.weights.h5"}

    start = build_model(len(small_inputs.classes), normalize_embeddings=True)
    start.load_weights(workdir / "runs" / "triplet" / "weights" / "step-000008.weights.h5")
    result = training.train_softmax(small_inputs, epochs=2, freeze=True, normalize_embeddings=True, verbose=0)
    frozen = result["model"]
    # the checkpoint, loaded for use, is the model that was trained (L2 normalisation included)
    loaded = embeddings.load_trained_model("frozen")
    assert loaded.classes == small_inputs.classes and len(loaded.classes) == 3 * len(small_inputs.speakers)
    accuracy = evaluation.closed_set_accuracy(loaded.model, small_inputs)
    assert accuracy == (result["window_accuracy"], result["utterance_accuracy"])
    windows = small_inputs.test.windows(slice(0, 20))
    for output in ("embeddings", "softmax"):
        np.testing.assert_allclose(np.asarray(loaded.model(windows)[output]), np.asarray(frozen(windows)[output]),
                                   rtol=1e-5, atol=1e-6)
    for before, after in zip(start.weights, frozen.weights):
        if before.path.startswith("softmax/"):
            assert not np.allclose(before.numpy(), after.numpy()), before.path
        elif "seed_generator" not in before.path:
            np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=before.path)


def test_fresh_keeps_the_old_run_aside_and_the_same_seed_gives_the_same_first_epoch(small_inputs, workdir, capsys):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    first = history_rows("softmax")
    training.train_softmax(small_inputs, epochs=1, fresh=True, verbose=0)
    assert "previous run is kept in" in capsys.readouterr().out
    (archived,) = (workdir / "runs" / "archive").iterdir()
    assert (archived / "weights" / "epoch-000001.weights.h5").exists() and (archived / "history.csv").exists()
    (second,) = history_rows("softmax")  # a new history, not appended to the old one
    assert first[0]["epoch"] == second["epoch"] == "0"
    assert float(first[0]["loss"]) == pytest.approx(float(second["loss"]), rel=1e-4)


def test_an_interrupted_softmax_run_ends_where_an_uninterrupted_one_does(small_inputs, workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 4)
    whole = training.train_softmax(small_inputs, epochs=4, verbose=0)
    whole_rows = history_rows("softmax")
    whole_steps = int(whole["model"].optimizer.iterations.numpy())
    monkeypatch.setattr(constants, "WORKDIR", str(tmp_path / "interrupted"))
    training.train_softmax(small_inputs, epochs=2, verbose=0)  # as if killed after epoch 2
    resumed = training.train_softmax(small_inputs, epochs=4, verbose=0)
    rows = history_rows("softmax")
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in whole_rows] == ["0", "1", "2", "3"]
    # the optimizer's moments and step, the schedule and the batch order came back with the checkpoint
    assert int(resumed["model"].optimizer.iterations.numpy()) == whole_steps
    for key in ("loss", "learning_rate", "val_softmax_accuracy"):
        assert float(rows[-1][key]) == pytest.approx(float(whole_rows[-1][key]), rel=0.05, abs=0.02), key
    assert resumed["window_accuracy"] == pytest.approx(whole["window_accuracy"], abs=0.05)
    # dropout's random generator came back too: the resumed run's weights are those of the uninterrupted one
    for a, b in zip(whole["model"].get_weights(), resumed["model"].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_killed_triplet_run_resumes_from_its_checkpoint_without_duplicate_rows(small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "CHECKPOINT_EVERY_STEPS", 4)
    calls = {"n": 0}
    real_batch = training.TripletSampler.batch

    def dies_at_step_7(self, size=None, rng=None):
        calls["n"] += 1
        if calls["n"] == 13:  # two batches per step (train, test): the 7th step's train batch
            raise KeyboardInterrupt
        return real_batch(self, size, rng)
    monkeypatch.setattr(training.TripletSampler, "batch", dies_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        training.train_triplet(small_inputs, steps=10, progress=False)
    assert [int(r["step"]) for r in history_rows("triplet")] == list(range(1, 7))
    assert not list(checkpoints.RunFolder("triplet").folder.rglob(".tmp-*"))
    resumed = training.train_triplet(small_inputs, steps=10, progress=False)  # the same command: to step 10, not 14
    assert [int(r["step"]) for r in history_rows("triplet")] == list(range(1, 11))
    assert utils.read_json(workdir / "runs" / "triplet" / "state.json")["latest"]["count"] == 10
    history = (workdir / "runs" / "triplet" / "history.csv").read_bytes()  # trimmed, then appended: one line ending
    assert history.count(b"\n") == history.count(b"\r\n") == 11
    monkeypatch.setattr(training.TripletSampler, "batch", real_batch)
    monkeypatch.setattr(constants, "WORKDIR", str(workdir.parent / "uninterrupted"))
    whole = training.train_triplet(small_inputs, steps=10, progress=False)
    for a, b in zip(whole["model"].get_weights(), resumed["model"].get_weights()):  # dropout's draws resumed too
        np.testing.assert_array_equal(a, b)
    # the moving averages of the last steps came back with the checkpoint: the checkpoints' metric (no validation
    # speakers here) and the final figures are the uninterrupted run's
    runs = {name: workdir.parent / name / "runs" / "triplet" for name in ("work", "uninterrupted")}
    metrics = {n: [c["metric"] for c in utils.read_json(r / "state.json")["checkpoints"]] for n, r in runs.items()}
    assert metrics["work"] == metrics["uninterrupted"]
    results = {n: utils.read_json(r / "result.json") for n, r in runs.items()}
    assert {k: results["work"][k] for k in ("loss", "test_loss")} == {k: results["uninterrupted"][k]
                                                                      for k in ("loss", "test_loss")}


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(small_inputs, workdir, capsys):
    training.train_softmax(small_inputs, epochs=2, verbose=0)
    latest = workdir / "runs" / "softmax" / "weights" / "epoch-000002.weights.h5"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated, as by a full disk
    loaded = embeddings.load_trained_model("softmax")
    assert loaded.entry["count"] == 1
    assert "epoch-000002" in capsys.readouterr().err
    training.train_softmax(small_inputs, epochs=3, verbose=0)  # continues from epoch 1
    assert [int(r["epoch"]) for r in history_rows("softmax")] == [0, 1, 2]
    (workdir / "runs" / "softmax" / "state.json").write_text("{ not json")
    with pytest.raises(utils.PipelineError, match="state.json is unreadable or corrupt.*--fresh"):
        training.train_softmax(small_inputs, epochs=4, verbose=0)


def test_settings_changed_since_the_run_started_are_refused_in_one_line(small_inputs, workdir, monkeypatch):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    monkeypatch.setattr(constants, "BATCH_SIZE", 24)
    with pytest.raises(utils.PipelineError, match="built with BATCH_SIZE=48, but it is 24 now.*--fresh"):
        training.train_softmax(small_inputs, epochs=2, verbose=0)
    monkeypatch.setattr(constants, "BATCH_SIZE", 48)
    monkeypatch.setattr(constants, "FRAMES_PER_WINDOW", 5)  # inputs of another window length
    with pytest.raises(utils.PipelineError, match="FRAMES_PER_WINDOW=10, but it is 5 now.*0_generate_inputs"):
        ml_inputs.load_inputs()


def test_a_run_continues_only_under_the_settings_of_its_validation_figures_but_a_finished_one_is_left_alone(
        small_inputs, workdir, monkeypatch):
    """MAX_IMPOSTOR_TRIALS and the DCF costs shape the validation EER that ranks checkpoints (and minDCF in the
    history): a run continued under others would rank its rows by two measures. Stage 2 may evaluate a finished run
    under other ones, so re-running a finished run's command is no refusal."""
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    trials = constants.MAX_IMPOSTOR_TRIALS
    monkeypatch.setattr(constants, "MAX_IMPOSTOR_TRIALS", 3)
    training.train_softmax(small_inputs, epochs=1, verbose=0)  # complete: nothing to train, nothing refused
    with pytest.raises(utils.PipelineError, match=f"validation figures.*MAX_IMPOSTOR_TRIALS={trials}, but it is 3 "
                                                  f"now.*--fresh"):
        training.train_softmax(small_inputs, epochs=2, verbose=0)
    monkeypatch.setattr(constants, "MAX_IMPOSTOR_TRIALS", trials)
    training.train_softmax(small_inputs, epochs=2, verbose=0)
    assert [int(r["epoch"]) for r in history_rows("softmax")] == [0, 1]


def test_a_later_mode_notices_when_the_checkpoint_it_started_from_changed(small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 3)
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, progress=False)
    training.train_softmax(small_inputs, epochs=2, verbose=0)
    with pytest.raises(utils.PipelineError, match="epoch 1 of the softmax run.*changed since.*--fresh"):
        training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, progress=False)
    # nor do evaluation and inference take it for the chain's result, by default or by name
    for run in (None, "triplet"):
        with pytest.raises(utils.PipelineError, match="changed since.*--fresh`, or use another run with --run"):
            checkpoints.resolve_checkpoint(run)
    assert checkpoints.resolve_checkpoint("softmax")[0] == "softmax"
    training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, fresh=True, progress=False)
    with pytest.raises(utils.PipelineError, match="with --normalize_embeddings.*--freeze_embedding_weights "
                                                  "--normalize_embeddings"):
        training.train_softmax(small_inputs, epochs=1, freeze=True, normalize_embeddings=False, verbose=0)


def test_a_second_command_on_the_same_run_stops_at_once_naming_the_holder(small_inputs, workdir):
    with checkpoints.RunFolder("softmax").lock():
        with pytest.raises(utils.PipelineError, match=f"in use by process {os.getpid()}"):
            training.train_softmax(small_inputs, epochs=1, verbose=0)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, utils, constants; "
                               f"constants.WORKDIR = {str(workdir)!r}; "
                               "from ml.checkpoints import RunFolder\n"
                               "with RunFolder('softmax').lock(): print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(utils.PipelineError, match=f"in use by process {holder.pid}"):
        training.train_softmax(small_inputs, epochs=1, verbose=0)
    holder.kill()
    holder.wait()
    training.train_softmax(small_inputs, epochs=1, verbose=0)  # a dead holder's lock is taken over
    assert history_rows("softmax")


@pytest.mark.parametrize("pairs", [1, 4])
def test_triplet_batches_pair_each_anchor_with_its_speaker_and_another(small_inputs, monkeypatch, pairs):
    monkeypatch.setattr(constants, "TRIPLET_PAIRS_PER_BATCH", pairs)
    windows, labels = training.TripletSampler(small_inputs.train, np.random.default_rng(0)).batch()
    anchors, positives, negatives = np.split(labels, 3)
    assert len(windows) == constants.BATCH_SIZE // 3 * 3
    assert np.all(anchors == positives) and np.all(anchors != negatives)
    pair_count = len(set(zip(anchors.tolist(), negatives.tolist())))
    assert pair_count == 1 if pairs == 1 else pair_count > 1


def test_a_checkpoint_for_other_classes_fails_clearly(small_inputs, workdir):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    small_inputs.classes.append("p999")
    with pytest.raises(utils.PipelineError, match="classes .*: checkpoint .*9 in all.*, now .*10 in all.*--fresh"):
        training.train_triplet(small_inputs, steps=1, progress=False)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(small_inputs, workdir):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    small_inputs.train.frames[:] = np.nan
    with pytest.raises(training.NonFiniteLoss, match="last good checkpoint is kept .*epoch-000001"):
        training.train_softmax(small_inputs, epochs=2, verbose=0)
    assert utils.read_json(workdir / "runs" / "softmax" / "state.json")["latest"]["count"] == 1
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


def test_a_refused_fresh_run_leaves_the_old_run_in_place(small_inputs, workdir):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, progress=False)
    training.train_softmax(small_inputs, epochs=1, freeze=True, normalize_embeddings=True, verbose=0)
    before = sorted(p.name for p in (workdir / "runs" / "frozen" / "weights").iterdir())
    with pytest.raises(utils.PipelineError, match="--normalize_embeddings"):
        training.train_softmax(small_inputs, epochs=2, freeze=True, fresh=True, verbose=0)  # the flag is missing
    assert sorted(p.name for p in (workdir / "runs" / "frozen" / "weights").iterdir()) == before
    assert not (workdir / "runs" / "archive").exists()


def test_retraining_after_a_fallback_keeps_one_record_per_checkpoint(small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 4)
    training.train_softmax(small_inputs, epochs=3, verbose=0)
    latest = workdir / "runs" / "softmax" / "weights" / "epoch-000003.weights.h5"
    latest.write_bytes(latest.read_bytes()[:20000])
    training.train_softmax(small_inputs, epochs=4, verbose=0)  # from epoch 2, through a new epoch 3, to 4
    state = utils.read_json(workdir / "runs" / "softmax" / "state.json")
    counts = [c["count"] for c in state["checkpoints"]]
    assert counts == sorted(set(counts)) and counts[-3:] == [2, 3, 4]
    assert all(checkpoints.RunFolder("softmax").intact(c) for c in state["checkpoints"])


@pytest.mark.parametrize("name, content", [("state.json", "{}"), ("state.json", "[]"), ("settings.json", "[1]")])
def test_a_record_of_the_wrong_shape_is_named_not_a_traceback(small_inputs, workdir, name, content):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    (workdir / "runs" / "softmax" / name).write_text(content)
    with pytest.raises(utils.PipelineError, match=f"{name} is not a valid record .*--fresh"):
        training.train_softmax(small_inputs, epochs=2, verbose=0)


def test_a_later_mode_waits_for_the_run_it_starts_from(small_inputs, workdir):
    with checkpoints.RunFolder("softmax").lock():
        with pytest.raises(utils.PipelineError, match="softmax run that triplet training starts from is being "
                                                      f"written by process {os.getpid()}"):
            training.train_triplet(small_inputs, steps=1, fresh=True, progress=False)


def test_a_finished_scheduled_softmax_run_says_a_longer_one_needs_a_longer_schedule(small_inputs, workdir, capsys):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    assert "complete at epoch 1" in capsys.readouterr().out
    training.train_softmax(small_inputs, verbose=0)  # to the schedule's end (3)
    training.train_softmax(small_inputs, epochs=5, verbose=0)
    out = capsys.readouterr().out
    assert "complete at epoch 3" in out and "SOFTMAX_SCHEDULE_EPOCHS=N and --fresh" in out


def test_a_run_killed_before_its_first_checkpoint_leaves_no_stale_settings(small_inputs, workdir, monkeypatch):
    def dies(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(training.TripletSampler, "batch", dies)
        with pytest.raises(KeyboardInterrupt):
            training.train_triplet(small_inputs, steps=5, progress=False)
    training.train_triplet(small_inputs, steps=2, progress=False)
    run = workdir / "runs" / "triplet"
    assert utils.read_json(run / "settings.json")["run_id"] == utils.read_json(run / "state.json")["run_id"]
    assert len(utils.read_json(run / "settings.json")["sessions"]) == 1


def test_a_damaged_chosen_checkpoint_is_not_shown_as_evaluated(small_inputs, workdir, capsys):
    training.train_softmax(small_inputs, epochs=2, verbose=0)
    mode, state, entry = checkpoints.resolve_checkpoint("softmax")
    assert entry["count"] == 2
    latest = workdir / "runs" / "softmax" / "weights" / "epoch-000002.weights.h5"
    latest.write_bytes(latest.read_bytes()[:5000])
    mode, state, entry = checkpoints.resolve_checkpoint("softmax")
    assert entry["count"] == 1 and "epoch-000002.weights.h5 is missing or damaged" in capsys.readouterr().err


def test_a_later_checkpoint_is_the_best_only_when_it_beats_the_best_by_its_margin():
    from ml.checkpoints import _best, beats

    def entry(count, value, margin=None):
        return {"count": count, "metric": {"name": "val_eer", "value": value, "higher_is_better": False,
                                           **({"margin": margin} if margin is not None else {})}}
    start, slightly, clearly = entry(0, 0.0895, 0.007), entry(100, 0.0875, 0.007), entry(200, 0.0800, 0.007)
    assert _best([start, slightly]) is start  # 0.2 points: within the noise of the validation speakers
    assert _best([start, slightly, clearly]) is clearly  # 0.95 points: beyond it
    assert _best([entry(0, 0.09), entry(1, 0.09)])["count"] == 1  # no margin: better or equal, the latest on ties
    assert _best([entry(0, 0.09), entry(1, 0.10)])["count"] == 0
    assert not beats(entry(1, 0.09)["metric"], entry(0, 0.09)["metric"], ties=False)
    assert beats(entry(1, 0.05)["metric"], None) and _best([]) is None


def test_the_standard_error_of_an_eer_counts_the_same_speaker_pairs():
    from ml import evaluation
    from ml.inputs import WindowSet
    utterances = np.repeat(np.arange(7), 3)  # speaker 0: utterances 0-3 (6 pairs); speaker 1: 4-6 (3 pairs)
    labels = np.repeat([0, 0, 0, 0, 1, 1, 1], 3)
    window_set = WindowSet(np.zeros((30, 39), np.float32), np.zeros(21, np.int32), labels, utterances,
                           np.array([f"u{i}" for i in range(7)]))
    assert evaluation.eer_standard_error(0.1, window_set) == pytest.approx(np.sqrt(0.1 * 0.9 / 9))
    assert np.isnan(evaluation.eer_standard_error(float("nan"), window_set))


def test_the_cosine_margin_head_trains_then_triplet_and_frozen_continue_and_another_head_is_refused(
        small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "SOFTMAX_HEAD", "cosine_margin")
    monkeypatch.setattr(constants, "CHECKPOINT_EVERY_STEPS", 2)
    result = training.train_softmax(small_inputs, epochs=2, verbose=0)
    losses = [float(row["loss"]) for row in history_rows("softmax")]
    assert all(np.isfinite(losses)) and losses[1] < losses[0] and 0 <= result["window_accuracy"] <= 1
    assert utils.read_json(workdir / "runs" / "softmax" / "state.json")["model"]["head"] == "cosine_margin"
    training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, progress=False)
    training.train_softmax(small_inputs, epochs=1, freeze=True, normalize_embeddings=True, verbose=0)
    monkeypatch.setattr(constants, "MARGIN_SCALE", 64.0)  # the head's probabilities would change
    with pytest.raises(utils.PipelineError, match="MARGIN_SCALE"):
        embeddings.load_trained_model("softmax")
    monkeypatch.setattr(constants, "SOFTMAX_HEAD", "dense")  # the runs' checkpoints have the other head
    with pytest.raises(utils.PipelineError, match="SOFTMAX_HEAD"):
        embeddings.load_trained_model("softmax")


def test_segment_batches_hold_whole_segments_of_distinct_classes_within_their_utterances(small_inputs, monkeypatch):
    from ml.batches import SegmentSampler
    monkeypatch.setattr(constants, "TRIPLET_SEGMENT_WINDOWS", 4)
    monkeypatch.setattr(constants, "TRIPLET_SEGMENTS_PER_SPEAKER", 2)
    monkeypatch.setattr(constants, "BATCH_SIZE", 48)  # 6 classes x 2 segments x 4 windows
    train = small_inputs.train
    windows, labels = SegmentSampler(train, np.random.default_rng(0)).batch()
    assert windows.shape == (48, constants.FRAMES_PER_WINDOW, 39) and labels.shape == (48,)
    per_segment = labels.reshape(-1, 4)
    assert (per_segment == per_segment[:, :1]).all()  # a segment is one class
    classes = per_segment[::2, 0]
    assert len(set(classes.tolist())) == 6 and (per_segment[1::2, 0] == classes).all()  # 2 segments per class
    # each segment: consecutive windows WINDOW_HOP_FRAMES apart, inside one utterance of its class
    starts_of = {}
    for start, utterance in zip(train.starts, train.utterances):
        starts_of.setdefault(int(utterance), []).append(int(start))
    extents = {u: (min(s), max(s)) for u, s in starts_of.items()}
    frames = np.asarray(train.frames)
    for segment, label in zip(windows.reshape(-1, 4, *windows.shape[1:]), per_segment[:, 0]):
        first = np.flatnonzero((frames[:len(frames) - constants.FRAMES_PER_WINDOW + 1, None, :] ==
                                segment[0][None, :1, :]).all(axis=(1, 2)))
        found = False
        for begin in first:
            chain = [begin + k * constants.WINDOW_HOP_FRAMES for k in range(4)]
            if all(np.array_equal(frames[c:c + constants.FRAMES_PER_WINDOW], w) for c, w in zip(chain, segment)):
                owners = [u for u, (lo, hi) in extents.items() if lo <= chain[0] and chain[-1] <= hi]
                found = any(train.labels[train.utterances == u][0] == label for u in owners)
        assert found


def test_segment_triplet_training_runs_and_its_settings_are_recorded(small_inputs, workdir, monkeypatch, capsys):
    monkeypatch.setattr(constants, "TRIPLET_SELECTION", "segments")
    monkeypatch.setattr(constants, "TRIPLET_SEGMENT_WINDOWS", 5)
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    result = training.train_triplet(small_inputs, steps=3, normalize_embeddings=True, progress=False)
    assert np.isfinite(result["loss"]) and np.isfinite(result["test_loss"])
    assert "batch-hard segment triplets" in capsys.readouterr().out
    settings = utils.read_json(workdir / "runs" / "triplet" / "settings.json")["constants"]
    assert settings["TRIPLET_SELECTION"] == "segments" and settings["TRIPLET_SEGMENT_WINDOWS"] == 5
    monkeypatch.setattr(constants, "TRIPLET_SELECTION", "original")  # a run goes on with its own triplets only
    with pytest.raises(utils.PipelineError, match="TRIPLET_SELECTION"):
        training.train_triplet(small_inputs, steps=4, normalize_embeddings=True, progress=False)


def test_the_best_checkpoint_survives_pruning_the_ones_it_was_measured_against(workdir, monkeypatch):
    """Checkpoints 0-900 with the validation EERs below, three kept besides the best: step 800 is the first to
    beat step 0 by its margin and stays the best, though steps 600 and 700 (kept as the newest) came before it."""
    import keras
    monkeypatch.setattr(constants, "KEEP_CHECKPOINTS", 3)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    run, state = checkpoints.RunFolder("triplet"), {"checkpoints": []}
    eers = [0.0895, 0.089, 0.0885, 0.089, 0.0887, 0.0884, 0.0835, 0.0880, 0.0810, 0.0830]
    chosen = []
    for step, eer in zip(range(0, 1000, 100), eers):
        metric = {"name": "val_eer", "value": eer, "higher_is_better": False, "margin": 0.007}
        run.save(model, step, state, metric)
        chosen.append(state["best"]["count"])
    assert chosen == [0] * 8 + [800, 800]
    assert state["best"]["count"] == 800 and {c["count"] for c in state["checkpoints"]} == {700, 800, 900}
    assert utils.read_json(run.folder / "state.json")["best"]["count"] == 800


def test_a_run_going_on_from_an_older_checkpoint_gets_back_the_best_it_had_then():
    def entry(count, value, best):
        return {"count": count, "best_count": best,
                "metric": {"name": "val_eer", "value": value, "higher_is_better": False, "margin": 0.007}}
    # kept: 300, 600 (the best since it beat step 0, pruned since), 700, and 800 (a newer best, damaged)
    state = {"checkpoints": [entry(300, 0.0880, 0), entry(600, 0.0835, 600), entry(700, 0.0840, 600),
                             entry(800, 0.0750, 800)]}
    state["best"] = state["checkpoints"][3]
    checkpoints.rewind(state, state["checkpoints"][2])  # going on from step 700
    assert [c["count"] for c in state["checkpoints"]] == [300, 600, 700]
    assert state["best"]["count"] == 600 and state["latest"]["count"] == 700
    assert checkpoints._best(state["checkpoints"])["count"] == 300  # what a walk over the kept ones would say


def test_triplet_training_with_the_softmax_loss_beside_it_trains_the_head_too(small_inputs, workdir, monkeypatch):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    head_before = np.asarray(embeddings.load_trained_model("softmax").model.get_layer("softmax").kernel)
    monkeypatch.setattr(constants, "TRIPLET_SOFTMAX_WEIGHT", 1.0)
    monkeypatch.setattr(constants, "TRIPLET_SELECTION", "segments")
    monkeypatch.setattr(constants, "TRIPLET_SEGMENT_WINDOWS", 5)
    result = training.train_triplet(small_inputs, steps=2, progress=False)
    assert np.isfinite(result["loss"])
    head_after = np.asarray(embeddings.load_trained_model("triplet").model.get_layer("softmax").kernel)
    assert not np.allclose(head_before, head_after)


def test_segment_labels_are_the_real_classes_when_a_class_has_no_segment_long_enough(monkeypatch):
    from ml.batches import SegmentSampler
    from ml.inputs import WindowSet
    monkeypatch.setattr(constants, "TRIPLET_SEGMENT_WINDOWS", 3)
    monkeypatch.setattr(constants, "TRIPLET_SEGMENTS_PER_SPEAKER", 2)
    monkeypatch.setattr(constants, "BATCH_SIZE", 18)  # 3 classes x 2 segments x 3 windows
    hop = constants.WINDOW_HOP_FRAMES
    # class 0: one utterance with two windows (too short for a segment); classes 1-3: ten windows each
    starts = [0, hop] + [100 * u + hop * k for u in (1, 2, 3) for k in range(10)]
    utterances = [0, 0] + [u for u in (1, 2, 3) for _ in range(10)]
    window_set = WindowSet(np.random.default_rng(0).normal(size=(400, 39)).astype(np.float32),
                           np.array(starts, np.int32), np.array(utterances, np.int32), np.array(utterances, np.int32),
                           np.array(["a", "b", "c", "d"]))
    sampler = SegmentSampler(window_set, np.random.default_rng(1))
    windows, labels = sampler.batch()
    assert sorted(set(labels.tolist())) == [1, 2, 3]
    for segment, label in zip(windows.reshape(-1, 3, *windows.shape[1:]), labels[::3]):
        begin = np.flatnonzero((window_set.frames == segment[0][0]).all(axis=1))[0]
        assert 100 * label <= begin <= 100 * label + 9 * hop - 2 * hop  # inside its own class's utterance


def test_a_run_from_before_a_setting_existed_goes_on_only_with_its_old_value(small_inputs, workdir, monkeypatch):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, progress=False)
    path = workdir / "runs" / "triplet" / "settings.json"
    record = utils.read_json(path)
    for name in ("TRIPLET_SOFTMAX_WEIGHT", "TRIPLET_SELECTION"):  # as written before these settings existed
        del record["constants"][name]
    utils.write_json(path, record)
    monkeypatch.setattr(constants, "TRIPLET_SOFTMAX_WEIGHT", 1.0)
    with pytest.raises(utils.PipelineError, match="TRIPLET_SOFTMAX_WEIGHT=0.0"):
        training.train_triplet(small_inputs, steps=3, normalize_embeddings=True, progress=False)
    monkeypatch.setattr(constants, "TRIPLET_SOFTMAX_WEIGHT", 0.0)
    training.train_triplet(small_inputs, steps=3, normalize_embeddings=True, progress=False)  # its old value: goes on


def test_a_segment_triplet_run_goes_on_only_on_as_many_devices_as_it_began(small_inputs, workdir, monkeypatch):
    monkeypatch.setattr(constants, "TRIPLET_SELECTION", "segments")
    monkeypatch.setattr(constants, "TRIPLET_SEGMENT_WINDOWS", 5)
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, progress=False)
    path = workdir / "runs" / "triplet" / "settings.json"
    utils.write_json(path, {**utils.read_json(path), "replicas": 2})  # as if it had begun on two devices
    with pytest.raises(utils.PipelineError, match="DEEP_SPEAKER_CPU_DEVICES=2"):
        training.train_triplet(small_inputs, steps=3, normalize_embeddings=True, progress=False)


def test_a_run_killed_after_its_last_checkpoint_measures_its_accuracy_when_run_again(small_inputs, workdir,
                                                                                     monkeypatch, capsys):
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 2)
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    first = utils.read_json(workdir / "runs" / "softmax" / "result.json")
    real = evaluation.closed_set_accuracy

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(evaluation, "closed_set_accuracy", killed)
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 2's checkpoint, before its accuracy was written
        training.train_softmax(small_inputs, epochs=2, verbose=0)
    assert utils.read_json(workdir / "runs" / "softmax" / "result.json") == first  # epoch 1's, not epoch 2's
    monkeypatch.setattr(evaluation, "closed_set_accuracy", real)
    capsys.readouterr()
    again = training.train_softmax(small_inputs, epochs=2, verbose=0)  # the same command
    out = capsys.readouterr().out
    assert "nothing to train" in out and "were not recorded (interrupted); measuring them" in out
    state = utils.read_json(workdir / "runs" / "softmax" / "state.json")
    assert again["epoch"] == 2 and again["checkpoint"] == state["latest"]["file"]
    assert utils.read_json(workdir / "runs" / "softmax" / "result.json") == again
    training.train_softmax(small_inputs, epochs=2, verbose=0)
    assert "measuring" not in capsys.readouterr().out  # recorded now: read, not measured again
    # the command does the same (it answers a finished run before loading TensorFlow unless this is missing)
    (workdir / "runs" / "softmax" / "result.json").unlink()
    result = CliRunner().invoke(load_script().main, ["--loss_on_softmax", "--epochs", "2"])
    assert result.exit_code == 0 and "measuring them" in result.output, result.output
    assert utils.read_json(workdir / "runs" / "softmax" / "result.json") == again
    again_cli = CliRunner().invoke(load_script().main, ["--loss_on_softmax", "--epochs", "2"])
    assert "nothing to train" in again_cli.output and "measuring" not in again_cli.output


def test_pruned_checkpoints_leave_the_record_before_their_files_go(workdir, monkeypatch):
    monkeypatch.setattr(constants, "KEEP_CHECKPOINTS", 1)
    run = checkpoints.RunFolder("triplet")
    state = {"checkpoints": [], "latest": None, "best": None}
    model = build_model(3)
    for count in (1, 2):
        run.save(model, count, state, {"name": "loss", "value": 1.0 / count, "higher_is_better": False})
    real_unlink = Path.unlink

    def killed_while_deleting(self, missing_ok=False):
        raise KeyboardInterrupt
    monkeypatch.setattr(Path, "unlink", killed_while_deleting)
    with pytest.raises(KeyboardInterrupt):
        run.save(model, 3, state, {"name": "loss", "value": 1.0 / 3, "higher_is_better": False})
    monkeypatch.setattr(Path, "unlink", real_unlink)
    recorded = utils.read_json(run.folder / "state.json")
    assert all((run.folder / entry["file"]).exists() for entry in recorded["checkpoints"])
    assert [entry["count"] for entry in recorded["checkpoints"]] == [3] and recorded["best"]["count"] == 3
    run.save(model, 4, state, {"name": "loss", "value": 0.25, "higher_is_better": False})
    assert sorted(p.name for p in (run.folder / "weights").iterdir()) == ["step-000004.weights.h5"]


def test_triplet_settings_never_stop_a_softmax_run_but_do_stop_a_triplet_run(small_inputs, workdir, monkeypatch,
                                                                             capsys):
    monkeypatch.setattr(constants, "SOFTMAX_SCHEDULE_EPOCHS", 1)
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    training.train_triplet(small_inputs, steps=2, normalize_embeddings=True, progress=False)
    monkeypatch.setattr(constants, "TRIPLET_LEARNING_RATE", 0.001)
    capsys.readouterr()
    training.train_softmax(small_inputs, epochs=1, verbose=0)  # an ablation of the triplet stage shares it
    assert "nothing to train" in capsys.readouterr().out
    with pytest.raises(utils.PipelineError, match="TRIPLET_LEARNING_RATE"):
        training.train_triplet(small_inputs, steps=4, normalize_embeddings=True, progress=False)


def test_a_run_whose_settings_record_is_gone_is_not_continued_under_any_settings(small_inputs, workdir):
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    (workdir / "runs" / "softmax" / "settings.json").unlink()
    with pytest.raises(utils.PipelineError, match="no record of the settings it was trained with.*--fresh"):
        training.train_softmax(small_inputs, epochs=2, verbose=0)


def test_an_edited_norm_json_is_refused_not_used(small_inputs, workdir):
    """Both copies (the inputs' and the run's) stay valid JSON of the same size: only their sha256 tells."""
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    run_norm = workdir / "runs" / "softmax" / "norm.json"
    embeddings.load_trained_model("softmax")  # intact: loads
    text = run_norm.read_text()
    digit = next(i for i, c in enumerate(text) if c.isdigit() and c != "1")
    run_norm.write_text(text[:digit] + "1" + text[digit + 1:])
    with pytest.raises(utils.PipelineError, match="not the normalisation the softmax run was trained with"):
        embeddings.load_trained_model("softmax")
    inputs_norm = workdir / "inputs" / "norm.json"
    text = inputs_norm.read_text()
    digit = next(i for i, c in enumerate(text) if c.isdigit() and c != "1")
    inputs_norm.write_text(text[:digit] + "1" + text[digit + 1:])
    with pytest.raises(utils.PipelineError, match="norm.json is damaged.*0_generate_inputs"):
        ml_inputs.load_inputs()


def test_a_checkpoint_whose_optimizer_state_keras_would_skip_is_refused(small_inputs, workdir, monkeypatch):
    """Keras only warns when a weights file's optimizer variables do not match the optimizer's, and goes on with fresh
    moments: the resumed run would silently differ from an uninterrupted one."""
    training.train_softmax(small_inputs, epochs=1, verbose=0)
    import keras
    adam = keras.optimizers.Adam
    monkeypatch.setattr(keras.optimizers, "Adam", lambda rate: keras.optimizers.SGD(rate, momentum=0.9))
    with pytest.raises(utils.PipelineError, match="does not fit the model and optimizer.*Skipping variable loading.*"
                                                  "--fresh"):
        training.train_softmax(small_inputs, epochs=2, verbose=0)
    monkeypatch.setattr(keras.optimizers, "Adam", adam)  # as trained: it loads, and goes on
    checkpoint = workdir / "runs" / "softmax" / "weights" / "epoch-000001.weights.h5"
    assert checkpoints._load_weights_reporting_skips(embeddings.load_trained_model("softmax").model, checkpoint) == []
    training.train_softmax(small_inputs, epochs=2, verbose=0)
    assert [int(r["epoch"]) for r in history_rows("softmax")] == [0, 1]


def test_a_weights_load_passes_other_warnings_on_once_and_keeps_keras_skips_for_its_refusal():
    """The skip messages are the load's result; any other warning is passed on as the default filter shows it, once per
    place, not again on every load."""
    import warnings

    class Model:
        def load_weights(self, path):
            warnings.warn("Skipping variable loading for optimizer 'adam', because it has 2 variables", UserWarning)
            warnings.warn(f"an unrelated notice {id(Model)}", UserWarning)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        first = checkpoints._load_weights_reporting_skips(Model(), "any.weights.h5")
        second = checkpoints._load_weights_reporting_skips(Model(), "any.weights.h5")
    assert first == second == ["Skipping variable loading for optimizer 'adam', because it has 2 variables"]
    assert [str(w.message) for w in shown] == [f"an unrelated notice {id(Model)}"]
