"""Shared fixtures: tiny corpora written into temporary folders, and a work directory per test."""
import numpy as np
import pytest
import soundfile as sf

import constants


def write_voice(path, seconds=1.0, sample_rate=16000, f0=120.0, seed=0, subtype="PCM_16"):
    """Write a short harmonic 'voice' between two quiet stretches (enough for the voice trim and windows)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    voice = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
    voice *= 0.4 * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) / np.abs(voice).max()
    quiet = 0.001 * rng.standard_normal(int(0.2 * sample_rate))
    signal = np.concatenate([quiet, voice + 0.01 * rng.standard_normal(t.size), quiet])
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, signal, sample_rate, subtype=subtype)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh work directory, set for the code under test (constants) and for child processes (env)."""
    folder = tmp_path / "work"
    monkeypatch.setattr(constants, "WORKDIR", str(folder))
    monkeypatch.setenv("DEEP_SPEAKER_WORKDIR", str(folder))
    monkeypatch.setattr(constants, "NUM_WORKERS", 1)  # in-process: no pool start-up in unit tests
    return folder


@pytest.fixture
def tone_corpus(tmp_path):
    """A VCTK 0.92-shaped corpus of 4 speakers x 5 utterances of harmonic tones (one mic2 copy each)."""
    root = tmp_path / "tones"
    for s, speaker in enumerate(["p225", "p226", "p227", "p228"]):
        for n in range(1, 6):
            stem = f"{speaker}_{n:03d}"
            folder = root / "wav48_silence_trimmed" / speaker
            write_voice(folder / f"{stem}_mic1.flac", seconds=0.6 + 0.1 * n, f0=90 + 40 * s, seed=10 * s + n)
            if n == 1:
                write_voice(folder / f"{stem}_mic2.flac", f0=90 + 40 * s, seed=99)
    return root


@pytest.fixture
def built(tone_corpus, workdir, monkeypatch):
    """The tone corpus and its feature cache (no speed copies), 30 segments per class."""
    from audio.cache import FeatureCache
    from audio.corpus import find_corpus

    monkeypatch.setattr(constants, "MAX_COUNT_PER_CLASS", 30)
    corpus = find_corpus(tone_corpus)
    cache = FeatureCache(corpus.root)
    cache.build([u for s in corpus.speakers for u in corpus.utterances[s]], progress=False)
    return corpus, cache


@pytest.fixture
def small_inputs(tone_corpus, workdir, monkeypatch):
    """Inputs of 3 training speakers (p228 unseen) and their speed copies, saved in the work dir, small batches."""
    from audio.cache import FeatureCache
    from audio.corpus import find_corpus
    from ml import inputs as ml_inputs
    from ml import speed_copies

    monkeypatch.setattr(constants, "MAX_COUNT_PER_CLASS", 20)
    monkeypatch.setattr(constants, "BATCH_SIZE", 48)
    monkeypatch.setattr(constants, "MAX_VALIDATION_WINDOWS", 0)
    corpus = find_corpus(tone_corpus)
    cache = FeatureCache(corpus.root)
    cache.build([u for s in corpus.speakers for u in corpus.utterances[s]], progress=False)
    train, unseen = ["p225", "p226", "p227"], ["p228"]
    speed_copies.cache_copies(cache, speed_copies.plan(cache, corpus, train), progress=False)  # as script 0: 6 more classes
    built = ml_inputs.build_inputs(cache, corpus, train, unseen, progress=False)
    ml_inputs.save_inputs(built, ml_inputs.expected_record(cache, corpus, train, unseen))
    return ml_inputs.load_inputs()
