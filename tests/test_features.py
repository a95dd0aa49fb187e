"""Features: MFCC + deltas over the whole signal, the voice trim, bad audio, windows and their layout."""
import numpy as np
import pytest
import python_speech_features as psf
import soundfile as sf

import constants
from audio import features
from audio.features import UnusableAudio

from conftest import write_voice


@pytest.fixture
def signal():
    rng = np.random.default_rng(3)
    t = np.arange(8000) / 8000
    return (np.sin(2 * np.pi * 150 * t * (1 + t)) * (1 + t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_features_match_python_speech_features_on_the_whole_signal(signal):
    frames = features.mfcc_frames(signal)
    reference = psf.mfcc(signal, 8000, winlen=0.025, winstep=0.01, numcep=13, nfilt=13, nfft=512)
    delta = psf.delta(reference, 2)
    assert frames.shape == (1 + int(np.ceil((8000 - 200) / 80)), 39) and frames.dtype == np.float32
    np.testing.assert_allclose(frames[:, :13], reference, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(frames[:, 13:26], delta, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(frames[:, 26:], psf.delta(delta, 2), rtol=1e-5, atol=1e-4)
    assert np.abs(frames[:, 13:]).mean(axis=0).min() > 1e-3  # the original's deltas were all zero


def test_voice_only_cuts_from_first_to_last_sample_above_the_percentile():
    signal = np.full(1000, 0.001, np.float32)
    signal[300:701:50] = [0.5, -0.2, 0.3, 0.9, -0.4, 0.2, 0.6, -0.3, 0.25]  # 9 loud samples < 5 %
    voiced = features.voice_only(signal, percentile=95)
    assert len(voiced) == 401 and voiced[0] == np.float32(0.5) and voiced[-1] == np.float32(0.25)
    ramp = np.linspace(0, 1, 1001, dtype=np.float32)
    assert len(features.voice_only(ramp, percentile=90)) == 100  # samples above 0.9


def test_loading_resamples_any_rate_to_8khz_mono(tmp_path):
    stereo = np.stack([np.sin(np.arange(48000) / 10), np.zeros(48000)], axis=1) * 0.5
    sf.write(tmp_path / "stereo.wav", stereo, 48000)
    loaded = features.load_audio(tmp_path / "stereo.wav")
    assert loaded.dtype == np.float32 and loaded.shape == (8000,)
    write_voice(tmp_path / "a22.wav", sample_rate=22050, seed=1)
    write_voice(tmp_path / "a16.flac", sample_rate=16000, seed=1)
    a, b = (features.utterance_features(tmp_path / name) for name in ("a22.wav", "a16.flac"))
    assert abs(len(a) - len(b)) <= 1
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n, 1:13].ravel(), b[:n, 1:13].ravel())[0, 1] > 0.95


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b"RIFF\x00\x01garbage that is not audio" * 10), r"unreadable \(\w+: \w"),
    (lambda p: p.write_bytes(b""), r"unreadable \(an empty file, 0 bytes\)"),
    (lambda p: None, r"unreadable \(no such file\)"),
    (lambda p: sf.write(p, np.zeros(0), 16000), "empty"),
    (lambda p: sf.write(p, np.zeros(16000), 16000), "all-silent"),
    (lambda p: sf.write(p, 0.5 * np.sin(np.arange(800) / 3), 16000), "too short"),
    (lambda p: sf.write(p, 3e4 * np.sin(np.arange(16000) / 3), 16000, subtype="FLOAT"),
     r"far beyond full scale \(peak 3\.\d+e\+04, full scale 1\)"),
])
def test_bad_audio_gives_a_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(UnusableAudio, match=reason):
        features.utterance_features(path)


def test_a_float_file_a_little_over_full_scale_is_still_audio(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, 1.2 * np.sin(np.arange(16000) / 3), 16000, subtype="FLOAT")
    assert 1.1 < np.abs(features.load_audio(path)).max() < features.FULL_SCALE_LIMIT


def test_window_count_and_order():
    frames = np.arange(25 * 39, dtype=np.float32).reshape(25, 39)
    starts = features.window_starts(len(frames))
    assert starts.tolist() == [0, 3, 6, 9, 12, 15]  # (25 - 10) // 3 + 1 windows, 3 frames apart
    windows = features.gather_windows(frames, starts)
    assert windows.shape == (6, 10, 39)
    np.testing.assert_array_equal(windows[2], frames[6:16])
    assert len(features.window_starts(9)) == 0 and len(features.window_starts(10)) == 1


def test_feature_settings_track_the_constants(monkeypatch):
    before = features.feature_settings()
    monkeypatch.setattr(constants, "NUM_MEL_FILTERS", 26)
    assert features.feature_settings() != before


@pytest.mark.parametrize("frames", [1, 3, 40])
def test_deltas_are_python_speech_features_regression_deltas(frames):
    values = np.random.default_rng(frames).standard_normal((frames, 13)).astype(np.float32)
    padded = np.pad(values, ((2, 2), (0, 0)), mode="edge")  # the definition, N = 2: edge frames repeated
    expected = sum(n * (padded[2 + n:2 + n + frames] - padded[2 - n:2 - n + frames]) for n in (1, 2)) / 10
    np.testing.assert_allclose(features.deltas(values, width=2), expected, atol=1e-6)
