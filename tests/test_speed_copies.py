"""Speed copies: speed perturbation, their cache keys, and the train-only classes they add to the inputs."""
import numpy as np
import pytest

import constants
from audio import features
from ml import evaluation
from ml import inputs as ml_inputs
from ml import speed_copies
from utils import PipelineError

TRAIN, UNSEEN = ["p225", "p226", "p227"], ["p228"]


def test_a_copy_at_speed_f_lasts_1_over_f_with_its_pitch_times_f():
    rate = constants.SAMPLE_RATE
    tone = np.sin(2 * np.pi * 200 * np.arange(rate) / rate).astype(np.float32)
    assert features.at_speed(tone, 1.0) is tone
    for factor in (0.9, 1.1):
        copy = features.at_speed(tone, factor)
        assert copy.dtype == np.float32 and abs(len(copy) - rate / factor) <= 1
        peak = np.argmax(np.abs(np.fft.rfft(copy))) * rate / len(copy)
        assert abs(peak - 200 * factor) < 2
    with pytest.raises(ValueError, match="positive"):
        features.at_speed(tone, 0)


def test_speed_keys_mark_the_factor_and_leave_the_original_alone():
    assert features.speed_key("p225/p225_001_mic1", 0.9) == "p225/p225_001_mic1@0.9"
    assert features.speed_key("p225", 1.1) == "p225@1.1" and features.speed_key("p225/x", 1.0) == "p225/x"


@pytest.mark.parametrize("factors", [[1.0], [0.9, 0.9], [-0.9, 1.1]])
def test_bad_speed_factors_are_refused_with_a_message(monkeypatch, factors):
    monkeypatch.setattr(constants, "SPEED_PERTURBATION", factors)
    with pytest.raises(PipelineError, match="positive, other than 1 and distinct"):
        speed_copies.factors()


@pytest.fixture
def copied(built):
    """The tone corpus cached with its speed copies, as script 0 leaves it."""
    corpus, cache = built
    report = speed_copies.cache_copies(cache, speed_copies.plan(cache, corpus, TRAIN), progress=False)
    assert report.built == 3 * 4 * 2 and not report.skipped  # 3 speakers x 4 training utterances x 2 speeds
    assert cache.has("p225/p225_001_mic1@0.9") and not cache.has("p225/p225_005_mic1@0.9")  # 005 is a test one
    return corpus, cache


def test_copies_are_train_only_classes_after_the_real_speakers(copied):
    corpus, cache = copied
    inputs = ml_inputs.build_inputs(cache, corpus, TRAIN, UNSEEN, progress=False)
    assert inputs.speakers == TRAIN
    assert inputs.classes == TRAIN + [f"{s}@0.9" for s in TRAIN] + [f"{s}@1.1" for s in TRAIN]
    assert set(inputs.train.labels.tolist()) == set(range(9)) and set(inputs.test.labels.tolist()) == {0, 1, 2}
    keys = inputs.train.utterance_keys[inputs.train.utterances]  # the utterance of every train window
    name_of_key = np.array([k.split("/")[0] + ("@" + k.split("@")[1] if "@" in k else "") for k in keys])
    assert np.all(name_of_key == np.array(inputs.classes)[inputs.train.labels])
    assert not any("@" in k for k in inputs.test.utterance_keys)


def test_the_real_speakers_windows_and_the_norm_do_not_change_with_copies(copied, monkeypatch):
    corpus, cache = copied
    with_copies = ml_inputs.build_inputs(cache, corpus, TRAIN, UNSEEN, progress=False)
    monkeypatch.setattr(constants, "SPEED_PERTURBATION", [])
    without = ml_inputs.build_inputs(cache, corpus, TRAIN, UNSEEN, progress=False)
    assert without.classes == TRAIN and with_copies.norm == without.norm
    real = np.flatnonzero(with_copies.train.labels < 3)
    np.testing.assert_array_equal(with_copies.train.windows(real), without.train.windows())
    np.testing.assert_array_equal(with_copies.test.windows(), without.test.windows())


def test_the_copy_plan_is_a_seeded_choice_of_at_most_the_limit(copied, monkeypatch):
    corpus, cache = copied
    every = speed_copies.plan(cache, corpus, TRAIN)
    assert {s: len(u) for s, u in every.items()} == {"p225": 4, "p226": 4, "p227": 4}
    monkeypatch.setattr(constants, "SPEED_PERTURBATION_UTTERANCES", 2)
    capped = speed_copies.plan(cache, corpus, TRAIN)
    assert all(len(u) == 2 and set(u) <= set(every[s]) for s, u in capped.items())
    assert capped == speed_copies.plan(cache, corpus, TRAIN)
    inputs = ml_inputs.build_inputs(cache, corpus, TRAIN, UNSEEN, progress=False)  # copies beyond the cap unused
    assert sum("@" in k for k in inputs.train.utterance_keys) == 3 * 2 * 2


def test_saved_inputs_keep_their_classes_and_a_changed_copy_setting_is_not_current(copied, monkeypatch):
    corpus, cache = copied
    inputs = ml_inputs.build_inputs(cache, corpus, TRAIN, UNSEEN, progress=False)
    record = ml_inputs.expected_record(cache, corpus, TRAIN, UNSEEN)
    ml_inputs.save_inputs(inputs, record)
    assert ml_inputs.load_inputs().classes == inputs.classes
    monkeypatch.setattr(constants, "SPEED_PERTURBATION", [0.9])
    assert not ml_inputs.is_current(ml_inputs.expected_record(cache, corpus, TRAIN, UNSEEN))


class FixedModel:
    """A stand-in model whose softmax output is the same for every window."""

    def __init__(self, row):
        self.row = np.asarray(row, np.float32)

    def __call__(self, windows, training=False):
        return {"softmax": np.tile(self.row, (len(windows), 1))}


def test_closed_set_accuracy_scores_the_real_speakers_only(copied):
    corpus, cache = copied
    inputs = ml_inputs.build_inputs(cache, corpus, TRAIN, UNSEEN, progress=False)
    inputs.test = inputs.test.subset(np.flatnonzero(inputs.test.labels == 1))  # p226's windows
    # a copy class (p227@1.1) wins overall; among the real speakers p226, the truth, wins
    row = [0.05, 0.2, 0.1, 0, 0, 0, 0, 0, 0.65]
    assert evaluation.closed_set_accuracy(FixedModel(row), inputs) == (1.0, 1.0)


def test_the_keras_accuracy_scores_each_window_within_its_group_of_classes():
    from ml.training import speaker_accuracy
    inputs = ml_inputs.Inputs(["a", "b"], None, None, {}, ["a", "b", "a@0.9", "b@0.9"])
    accuracy = speaker_accuracy(inputs)
    probabilities = np.array([[0.1, 0.2, 0.7, 0.0],   # a real window of a: b beats a among the real: wrong
                              [0.6, 0.3, 0.1, 0.0],   # a real window of a: a@0.9 does not compete: right
                              [0.2, 0.1, 0.3, 0.4],   # a copy of a: b@0.9 beats a@0.9: wrong
                              [0.5, 0.1, 0.0, 0.4]], np.float32)  # a copy of b: b@0.9 is its group's best: right
    labels = np.array([[0], [0], [2], [3]])
    np.testing.assert_array_equal(np.asarray(accuracy(labels, probabilities)), [0, 1, 0, 1])


def test_copies_that_gave_no_features_are_skipped_and_a_class_without_any_is_left_out(copied, monkeypatch):
    corpus, cache = copied
    for key in ("p225/p225_001_mic1@1.1", "p226/p226_001_mic1@1.1", "p226/p226_002_mic1@1.1",
                "p226/p226_003_mic1@1.1", "p226/p226_004_mic1@1.1"):
        cache.path(key).unlink()  # as if their features had failed (too short at 1.1x, say)
    def fails(signal, factor, sample_rate=None):
        raise features.UnusableAudio("too short at this speed")
    monkeypatch.setattr(features, "at_speed", fails)  # the (in-process) worker now skips every copy
    report = speed_copies.cache_copies(cache, speed_copies.plan(cache, corpus, TRAIN), progress=False)
    assert report.built == 0 and len(report.skipped) == 5 and "too short" in report.skipped["p226/p226_001_mic1@1.1"]
    inputs = ml_inputs.build_inputs(cache, corpus, TRAIN, UNSEEN, progress=False)
    assert "p226@1.1" not in inputs.classes and "p225@1.1" in inputs.classes and len(inputs.classes) == 8
    keys = inputs.train.utterance_keys[inputs.train.utterances]
    assert sum(k.startswith("p225/") and k.endswith("@1.1") for k in set(keys)) == 3
    assert np.all(np.array([k.split("/")[0] for k in keys]) == np.array([c.split("@")[0] for c in
                                                                         np.array(inputs.classes)[inputs.train.labels]]))
