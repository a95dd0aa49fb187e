"""The feature cache: builds once, resumes after an interruption, skips bad files, follows the settings."""
import numpy as np
import pytest
import soundfile as sf

import constants
from utils import PipelineError
from audio import cache as cache_module
from audio.cache import FeatureCache
from audio.corpus import find_corpus


@pytest.fixture
def corpus(tone_corpus):
    return find_corpus(tone_corpus)


def all_utterances(corpus):
    return [u for s in corpus.speakers for u in corpus.utterances[s]]


def test_build_writes_one_float32_file_per_utterance_and_a_second_run_skips_them(corpus, workdir):
    cache = FeatureCache(corpus.root)
    first = cache.build(all_utterances(corpus), progress=False)
    assert (first.built, first.already_cached, first.skipped) == (20, 0, {})
    frames = cache.load("p225/p225_001_mic1")
    assert frames.dtype == np.float32 and frames.shape[1] == 39 and len(frames) >= 10
    assert cache.folder.parent == workdir / "cache" and (cache.folder / "settings.json").exists()
    second = cache.build(all_utterances(corpus), progress=False)
    assert (second.built, second.already_cached) == (0, 20)


def test_parallel_build_gives_the_same_features(corpus, workdir, tmp_path):
    serial = FeatureCache(corpus.root)
    serial.build(all_utterances(corpus), workers=1, progress=False)
    parallel = FeatureCache(corpus.root, cache_root=tmp_path / "parallel")
    report = parallel.build(all_utterances(corpus), workers=2, progress=False)
    assert report.built == 20
    for u in all_utterances(corpus):
        np.testing.assert_array_equal(serial.load(u.key), parallel.load(u.key))


def test_an_interrupted_build_resumes_without_corrupt_entries(corpus, workdir, monkeypatch):
    cache = FeatureCache(corpus.root)
    real, calls = cache_module._cache_one, []

    def dies_on_the_seventh(job):
        calls.append(job)
        if len(calls) == 7:
            # the process is killed while writing: a temporary file is left, the entry is not
            tmp = cache.path(job[0]).with_name(f".tmp-12345-{cache.path(job[0]).name}")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(b"\x93NUMPY half a file")
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(cache_module, "_cache_one", dies_on_the_seventh)
    with pytest.raises(KeyboardInterrupt):
        cache.build(all_utterances(corpus), progress=False)
    assert sum(cache.has(u.key) for u in all_utterances(corpus)) == 6
    assert len(list(cache.folder.rglob(".tmp-*"))) == 1  # what the killed write left
    monkeypatch.setattr(cache_module, "_cache_one", real)
    report = cache.build(all_utterances(corpus), progress=False)
    assert (report.already_cached, report.built) == (6, 14)
    assert not list(cache.folder.rglob(".tmp-*"))
    assert all(len(cache.load(u.key)) >= 10 for u in all_utterances(corpus))


def test_bad_files_are_skipped_counted_and_named_with_their_reason(corpus, workdir):
    folder = corpus.root / "wav48_silence_trimmed" / "p225"
    (folder / "p225_901_mic1.flac").write_bytes(b"fLaC not really")
    sf.write(folder / "p225_902_mic1.flac", np.zeros(16000), 16000)
    sf.write(folder / "p225_903_mic1.flac", 0.5 * np.sin(np.arange(600)), 16000)
    (folder / "p225_904_mic1.flac").write_bytes(b"")
    corpus = find_corpus(corpus.root)
    report = FeatureCache(corpus.root).build(all_utterances(corpus), progress=False)
    assert report.built == 20 and len(report.skipped) == 4
    assert report.skipped["p225/p225_902_mic1"].startswith("all-silent")
    assert report.skipped["p225/p225_903_mic1"].startswith("too short")
    assert report.skipped["p225/p225_901_mic1"].startswith("unreadable")
    summary = report.summary()
    assert "4 skipped" in summary and "skipped p225/p225_904_mic1: unreadable" in summary


def test_changed_feature_settings_or_corpus_get_a_new_cache(corpus, workdir, monkeypatch, tmp_path):
    before = FeatureCache(corpus.root)
    before.build(all_utterances(corpus), progress=False)
    monkeypatch.setattr(constants, "NUM_MEL_FILTERS", 20)
    after = FeatureCache(corpus.root)
    assert after.folder != before.folder and not after.has("p225/p225_001_mic1")
    assert after.build(all_utterances(corpus), progress=False).built == 20
    assert FeatureCache(tmp_path / "another-corpus").folder != after.folder


def test_cache_files_load_without_executing_code(corpus, workdir):
    cache = FeatureCache(corpus.root)
    cache.path("evil").parent.mkdir(parents=True, exist_ok=True)
    np.save(cache.path("evil"), np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(PipelineError, match="evil.npy is unreadable or corrupt .*allow_pickle"):
        cache.load("evil")


def test_a_corpus_file_replaced_since_is_named_then_computed_again(corpus, workdir):
    import shutil
    cache = FeatureCache(corpus.root)
    utterances = all_utterances(corpus)
    cache.build(utterances, progress=False)
    cache.check_current(utterances)  # nothing changed
    target, other = [u for u in utterances if u.key.startswith("p225/")][:2]  # two utterances of p225 ...
    before = cache.load(target.key)
    shutil.copyfile(other.path, target.path)  # ... one copied over the other: same name, other audio
    with pytest.raises(PipelineError, match=r"1 corpus file\(s\) changed since.*" + target.key + ".*0_generate_inputs"):
        FeatureCache(corpus.root).check_current(utterances)
    again = FeatureCache(corpus.root)
    report = again.build(utterances, progress=False)
    assert (report.built, report.already_cached) == (1, 19)
    assert not np.array_equal(again.load(target.key), before)
    np.testing.assert_array_equal(again.load(target.key), again.load(other.key))
    again.check_current(utterances)


def test_a_cache_without_its_record_of_audio_files_is_brought_up_to_date(corpus, workdir):
    cache = FeatureCache(corpus.root)
    cache.build(all_utterances(corpus), progress=False)
    (cache.folder / "sources.json").unlink()  # as an older version left it
    older = FeatureCache(corpus.root)
    assert not older.has(all_utterances(corpus)[0].key)
    with pytest.raises(PipelineError, match="no record of the audio files.*0_generate_inputs"):
        older.check_current(all_utterances(corpus))
    assert older.build(all_utterances(corpus), progress=False).built == 20


def test_utterances_missing_from_the_cache_are_named_and_unusable_ones_are_not(corpus, workdir):
    folder = corpus.root / "wav48_silence_trimmed" / "p225"
    bad = sorted(folder.glob("*_mic1.flac"))[0]
    bad.write_bytes(b"not audio")  # stage 0 skips it and says so
    cache = FeatureCache(corpus.root)
    report = cache.build(all_utterances(corpus), progress=False)
    assert len(report.skipped) == 1
    cache.check_current(all_utterances(corpus))  # the skipped one is known: not missing
    removed = next(u for u in all_utterances(corpus) if cache.has(u.key))
    cache.path(removed.key).unlink()  # a cache file removed since
    with pytest.raises(PipelineError, match=r"1 utterance\(s\) are not in the feature cache.*" + removed.key):
        FeatureCache(corpus.root).check_current(all_utterances(corpus))
