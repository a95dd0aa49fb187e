"""The random recording level of training windows."""
import numpy as np
import pytest

import constants
from audio import features
from ml import augmentation
from ml.batches import WindowBatches


def test_a_gain_change_moves_only_c0_which_is_what_the_augmentation_shifts(tone_corpus):
    path = next((tone_corpus / "wav48_silence_trimmed" / "p225").glob("*_mic1.flac"))
    signal = features.load_audio(path)
    quiet, loud = features.signal_features(signal), features.signal_features(signal * 2.0)
    np.testing.assert_allclose(loud[:, 0] - quiet[:, 0], np.log(4.0), atol=1e-3)  # energy x 4
    np.testing.assert_allclose(loud[:, 1:], quiet[:, 1:], atol=1e-3)


def test_random_level_shifts_c0_of_each_window_by_one_draw_of_the_given_std():
    windows = np.zeros((20000, constants.FRAMES_PER_WINDOW, 39), np.float32)
    shifted = augmentation.random_level(windows.copy(), np.random.default_rng(0), 0.5)
    assert np.all(shifted[:, :, 1:] == 0)
    assert np.all(shifted[:, :, 0] == shifted[:, :1, 0])  # one shift per window, the same for its frames
    assert shifted[:, 0, 0].std() == pytest.approx(0.5, rel=0.03)
    assert np.array_equal(augmentation.random_level(windows.copy(), np.random.default_rng(0), 0.0), windows)


def test_level_std_follows_the_normalisation_and_zero_turns_it_off(monkeypatch):
    norm = {"method": "global", "global": [0.0, 4.0], "global_per_coefficient": [[0.0] * 39, [2.0] + [1.0] * 38]}
    monkeypatch.setattr(constants, "GAIN_AUGMENTATION_STD", 1.0)
    assert augmentation.level_std(norm) == pytest.approx(0.25)
    assert augmentation.level_std({**norm, "method": "global_per_coefficient"}) == pytest.approx(0.5)
    monkeypatch.setattr(constants, "GAIN_AUGMENTATION_STD", 0.0)
    assert augmentation.level_std(norm) == 0.0


def test_training_batches_are_augmented_and_validation_batches_are_not(small_inputs):
    plain = WindowBatches(small_inputs.train, shuffle=False)[0][0]
    augmented = WindowBatches(small_inputs.train, shuffle=False, level_std=0.3)[0][0]
    assert not np.allclose(augmented[:, :, 0], plain[:, :, 0])
    np.testing.assert_array_equal(augmented[:, :, 1:], plain[:, :, 1:])
