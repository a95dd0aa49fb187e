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


def test_random_shifts_shifts_c0_of_each_window_by_one_draw_of_the_given_std():
    windows = np.zeros((20000, constants.FRAMES_PER_WINDOW, 39), np.float32)
    shifted = augmentation.random_shifts(windows.copy(), np.random.default_rng(0), 0.5)
    assert np.all(shifted[:, :, 1:] == 0)
    assert np.all(shifted[:, :, 0] == shifted[:, :1, 0])  # one shift per window, the same for its frames
    assert shifted[:, 0, 0].std() == pytest.approx(0.5, rel=0.03)
    assert np.array_equal(augmentation.random_shifts(windows.copy(), np.random.default_rng(0), 0.0), windows)


def test_shift_stds_follows_the_normalisation_and_zero_turns_it_off(monkeypatch):
    norm = {"method": "global", "global": [0.0, 4.0], "global_per_coefficient": [[0.0] * 39, [2.0] + [1.0] * 38]}
    monkeypatch.setattr(constants, "GAIN_AUGMENTATION_STD", 1.0)
    assert augmentation.shift_stds(norm) == pytest.approx(0.25)
    assert augmentation.shift_stds({**norm, "method": "global_per_coefficient"}) == pytest.approx(0.5)
    monkeypatch.setattr(constants, "GAIN_AUGMENTATION_STD", 0.0)
    assert augmentation.shift_stds(norm) == 0.0


def test_training_batches_are_augmented_and_validation_batches_are_not(small_inputs):
    plain = WindowBatches(small_inputs.train, shuffle=False)[0][0]
    augmented = WindowBatches(small_inputs.train, shuffle=False, shift_stds=0.3)[0][0]
    assert not np.allclose(augmented[:, :, 0], plain[:, :, 0])
    np.testing.assert_array_equal(augmented[:, :, 1:], plain[:, :, 1:])


def test_a_smooth_filter_moves_low_cepstra_as_the_channel_shifts_say(tone_corpus, monkeypatch):
    """A filter that adds a cosine of the mel bands (amplitude a dB) to the log mel energies shifts c1 by
    a / sqrt(2 / filters) times the lifter's weight, the size channel_cepstra_std gives per dB."""
    import scipy.signal
    path = next((tone_corpus / "wav48_silence_trimmed" / "p225").glob("*_mic1.flac"))
    signal = features.load_audio(path).astype(np.float64)
    # a gentle tilt: a first-order shelf, whose log response is close to a low-order cosine over the mel bands
    tilted = scipy.signal.lfilter([1.0, -0.3], [1.0], signal).astype(np.float32)
    plain, shifted = features.signal_features(signal.astype(np.float32)), features.signal_features(tilted)
    moved = (shifted - plain)[:, 1:13].mean(axis=0)
    assert abs(moved[0]) > 3 * np.abs(moved[4:]).max()  # c1 (the tilt) moves most, the high cepstra little
    monkeypatch.setattr(constants, "CHANNEL_AUGMENTATION_DB", 1.0)
    per_db = augmentation.channel_cepstra_std(1)[0]
    lifter = constants.CEPSTRAL_LIFTER
    assert per_db == pytest.approx(np.log(10) / 10 / np.sqrt(2 / constants.NUM_MEL_FILTERS)
                                   * (1 + lifter / 2 * np.sin(np.pi / lifter)))


def test_channel_shifts_move_each_windows_low_static_cepstra_by_one_draw(monkeypatch):
    monkeypatch.setattr(constants, "GAIN_AUGMENTATION_STD", 1.0)
    monkeypatch.setattr(constants, "CHANNEL_AUGMENTATION_DB", 2.0)
    monkeypatch.setattr(constants, "CHANNEL_AUGMENTATION_ORDER", 3)
    norm = {"method": "global", "global": [0.0, 4.0]}
    stds = augmentation.shift_stds(norm)
    assert len(stds) == 4 and stds[0] == pytest.approx(0.25)
    np.testing.assert_allclose(stds[1:], augmentation.channel_cepstra_std(3) / 4.0)
    assert np.all(np.diff(stds[1:]) > 0)  # the lifter weighs higher cepstra more
    windows = np.zeros((20000, constants.FRAMES_PER_WINDOW, 39), np.float32)
    shifted = augmentation.random_shifts(windows.copy(), np.random.default_rng(0), stds)
    assert np.all(shifted[:, :, 4:] == 0)  # higher cepstra and every delta untouched
    assert np.all(shifted[:, :, :4] == shifted[:, :1, :4])  # one shift per window and coefficient
    np.testing.assert_allclose(shifted[:, 0, :4].std(axis=0), stds, rtol=0.03)
    # off, the c0 draws are exactly those a run drew before channel shifts existed
    monkeypatch.setattr(constants, "CHANNEL_AUGMENTATION_DB", 0.0)
    assert len(augmentation.shift_stds(norm)) == 1
    before = windows.copy()
    expected = np.random.default_rng(0).normal(0.0, 0.25, size=(len(windows), 1)).astype(np.float32)
    after = augmentation.random_shifts(before, np.random.default_rng(0), augmentation.shift_stds(norm))
    np.testing.assert_array_equal(after[:, 0, 0], expected[:, 0])


def test_a_run_recorded_before_channel_shifts_continues_only_without_them():
    from ml.checkpoints import SETTINGS_BEFORE_THEY_EXISTED
    assert SETTINGS_BEFORE_THEY_EXISTED["CHANNEL_AUGMENTATION_DB"] == 0.0
