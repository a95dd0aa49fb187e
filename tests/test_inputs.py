"""Inputs: utterance split, segments and their windows, normalisations, saving, and script 0 end to end."""
import os
import subprocess
import sys

import numpy as np
import pytest

import constants
from ml import inputs as ml_inputs
from ml import normalization
import utils
from utils import PipelineError


def test_utterance_split_is_sorted_80_20_with_one_on_each_side():
    keys = [f"u{n:02d}" for n in range(10, 0, -1)]
    train, test = ml_inputs.split_utterances(keys, 0.8)
    assert train == sorted(keys)[:8] and test == sorted(keys)[8:]
    assert ml_inputs.split_utterances(["b", "a"], 0.8) == (["a"], ["b"])


def test_segments_hold_at_least_one_window_and_their_windows_stay_inside():
    rng = np.random.default_rng(0)
    lengths = np.array([10, 40, 300])
    utterance, begin, end = ml_inputs.sample_segments(lengths, 500, rng)
    assert np.all(end - begin >= 10) and np.all(end <= lengths[utterance]) and np.all(begin >= 0)
    assert set(utterance.tolist()) == {0, 1, 2}
    starts, counts = ml_inputs.segment_window_starts(begin, end)
    assert counts.tolist() == ((end - begin - 10) // 3 + 1).tolist()
    segment = np.repeat(np.arange(len(begin)), counts)
    assert np.all(starts >= begin[segment]) and np.all(starts + 10 <= end[segment])
    assert np.all(np.diff(starts)[np.diff(segment) == 0] == 3)  # consecutive windows 3 frames apart


def build(built, train=("p225", "p226", "p227"), unseen=("p228",)):
    corpus, cache = built
    return ml_inputs.build_inputs(cache, corpus, list(train), list(unseen), progress=False)


def test_inputs_are_float32_labelled_and_deterministic(built):
    first, second = build(built), build(built)
    assert first.speakers == ["p225", "p226", "p227"]
    for split in ("train", "test"):
        a, b = getattr(first, split), getattr(second, split)
        assert a.frames.dtype == np.float32 and a.windows(slice(0, 5)).shape == (5, 10, 39)
        np.testing.assert_array_equal(a.starts, b.starts)
        np.testing.assert_array_equal(a.frames, b.frames)
        assert set(a.labels.tolist()) == {0, 1, 2}
    train_keys, test_keys = set(first.train.utterance_keys), set(first.test.utterance_keys)
    assert not train_keys & test_keys and len(train_keys) == 12 and len(test_keys) == 3
    # every window lies inside the frames of its own utterance, whose speaker is its label
    speaker_of_utterance = np.array([k.split("/")[0] for k in first.train.utterance_keys])
    assert np.all(speaker_of_utterance[first.train.utterances] == np.array(first.speakers)[first.train.labels])


@pytest.mark.parametrize("method", ["global", "global_per_coefficient", "per_speaker"])
def test_training_frames_are_standardised_by_each_normalisation(built, monkeypatch, method):
    monkeypatch.setattr(constants, "NORMALIZATION", method)
    inputs = build(built)
    frames = inputs.train.frames
    assert inputs.norm["method"] == method and set(inputs.norm["per_speaker"]) == {"p225", "p226", "p227", "p228"}
    if method == "global":
        assert abs(frames.mean()) < 1e-3 and abs(frames.std() - 1) < 1e-3
        assert frames.std(axis=0).max() > 2 * frames.std(axis=0).min()  # one scalar: coefficients differ
    elif method == "global_per_coefficient":
        np.testing.assert_allclose(frames.mean(axis=0), 0, atol=1e-3)
        np.testing.assert_allclose(frames.std(axis=0), 1, atol=1e-3)
    else:
        keys = inputs.train.utterance_keys
        lengths = np.array([len(built[1].load(k)) for k in keys])
        speaker = np.repeat([k.split("/")[0] for k in keys], lengths)
        for name in ("p225", "p226", "p227"):
            mine = frames[speaker == name]
            assert abs(mine.mean()) < 1e-3 and abs(mine.std() - 1) < 1e-3


@pytest.mark.parametrize("method", ["per_utterance", "per_utterance_cmvn"])
def test_per_utterance_normalisations_need_no_statistics(method):
    frames = np.random.default_rng(1).normal(5, 3, size=(200, 39)) * np.arange(1, 40)
    out = normalization.normalize(frames, {"method": method})
    assert out.dtype == np.float32 and abs(out.mean()) < 1e-4
    if method == "per_utterance_cmvn":
        np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-4)


def test_per_speaker_normalisation_of_an_unknown_speaker_is_refused():
    with pytest.raises(KeyError, match="label-free"):
        normalization.normalize(np.zeros((3, 39), np.float32), {"method": "per_speaker", "per_speaker": {}}, "x")


def test_a_speaker_without_two_usable_utterances_is_left_out_with_a_warning(built, capsys):
    corpus, cache = built
    for u in corpus.utterances["p227"][1:]:
        cache.path(u.key).unlink()
    inputs = build(built)
    assert inputs.speakers == ["p225", "p226"] and "p227" in capsys.readouterr().out
    with pytest.raises(PipelineError, match="at least 2"):
        build(built, train=("p227", "p225"))


def test_saved_inputs_load_back_and_know_when_they_are_current(built):
    corpus, cache = built
    inputs = build(built)
    record = ml_inputs.expected_record(cache, corpus, ["p225", "p226", "p227"], ["p228"])
    assert not ml_inputs.is_current(record)
    ml_inputs.save_inputs(inputs, record)
    assert ml_inputs.is_current(record)
    loaded = ml_inputs.load_inputs()
    assert loaded.speakers == inputs.speakers and loaded.norm == inputs.norm
    np.testing.assert_array_equal(loaded.test.windows(), inputs.test.windows())
    changed = dict(record, settings=dict(record["settings"], MAX_COUNT_PER_CLASS=31))
    assert not ml_inputs.is_current(changed)
    cache.path("p228/p228_005_mic1").unlink()  # the cache changed: the utterances differ
    assert not ml_inputs.is_current(ml_inputs.expected_record(cache, corpus, ["p225", "p226", "p227"], ["p228"]))


def test_loading_missing_inputs_says_which_script_to_run(workdir):
    with pytest.raises(PipelineError, match="0_generate_inputs.py"):
        ml_inputs.load_inputs()


def run_script(env_extra, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEP_SPEAKER_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "ml/0_generate_inputs.py", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_script_0_builds_skips_when_current_and_rebuilds_with_force(tone_corpus, tmp_path):
    env = {"VCTK_CORPUS_PATH": str(tone_corpus), "DEEP_SPEAKER_WORKDIR": str(tmp_path / "w"),
           "DEEP_SPEAKER_SPLIT": "auto", "DEEP_SPEAKER_NUM_SPEAKERS_CLASSIFICATION_TASK": "3",
           "DEEP_SPEAKER_MAX_COUNT_PER_CLASS": "20"}
    first = run_script(env)
    assert first.returncode == 0, first.stderr
    assert "3 training, 0 validation, 1 unseen" in first.stdout and "20 built" in first.stdout
    assert "train: windows (" in first.stdout and ", 390)" in first.stdout and "peak memory" in first.stdout
    assert {p.name for p in (tmp_path / "w" / "inputs").iterdir()} == {"data.npz", "norm.json", "inputs.json", ".lock",
                                                                     "train_frames.npy", "test_frames.npy"}
    second = run_script(env)
    assert "20 cached before" in second.stdout and "are current" in second.stdout
    assert "train: windows" in run_script(env, "--force").stdout
    # a corpus file replaced by other audio under the same name: computed again, and the inputs are rebuilt
    replaced = sorted((tone_corpus / "wav48_silence_trimmed" / "p225").glob("*_mic1.flac"))
    replaced[0].write_bytes(replaced[1].read_bytes())
    third = run_script(env)
    assert "19 cached before, 1 built" in third.stdout and "sources_digest" in third.stdout, third.stdout


def test_a_run_recorded_before_the_inputs_named_their_audio_files_is_judged_on_the_rest():
    built_from = {"settings": {"SEED": 1}, "utterances_digest": "a", "sources_digest": "b"}
    older = {k: v for k, v in built_from.items() if k != "sources_digest"}
    assert ml_inputs.same_inputs(built_from, built_from) and ml_inputs.same_inputs(older, built_from)
    assert not ml_inputs.same_inputs(dict(built_from, sources_digest="c"), built_from)
    assert not ml_inputs.same_inputs(dict(older, utterances_digest="z"), built_from)


def test_script_0_reports_missing_speakers_and_an_unwritable_workdir_clearly(tone_corpus, tmp_path):
    missing = run_script({"VCTK_CORPUS_PATH": str(tone_corpus), "DEEP_SPEAKER_WORKDIR": str(tmp_path / "w")})
    assert missing.returncode == 1 and "lacks" in missing.stderr and "DEEP_SPEAKER_SPLIT=auto" in missing.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = run_script({"VCTK_CORPUS_PATH": str(tone_corpus), "DEEP_SPEAKER_SPLIT": "auto",
                             "DEEP_SPEAKER_WORKDIR": str(blocker / "work")})
    assert unwritable.returncode == 1 and "not writable" in unwritable.stderr
    assert "Traceback" not in missing.stderr + unwritable.stderr


@pytest.mark.parametrize("name, damage, message", [
    ("data.npz", lambda p: p.write_bytes(p.read_bytes()[:-100]), "data.npz is missing or truncated"),
    ("data.npz", lambda p: p.write_bytes(p.read_bytes()[:200] + b"x" * (p.stat().st_size - 200)),
     "data.npz is unreadable or corrupt"),
    ("norm.json", lambda p: p.write_text("{ truncated"), "norm.json is missing or truncated|norm.json is unreadable"),
    ("inputs.json", lambda p: p.write_bytes(b"\xff\xfe not json"), "inputs.json is unreadable or corrupt"),
    ("train_frames.npy", lambda p: p.write_bytes(p.read_bytes()[:-100]), "train_frames.npy is missing or truncated"),
    ("test_frames.npy", lambda p: p.write_bytes(p.read_bytes()[:100] + b"x" * (p.stat().st_size - 100)),
     "test_frames.npy is damaged"),
    ("train_frames.npy", lambda p: p.write_bytes(p.read_bytes()[:-8] + b"\x00" * 8), "train_frames.npy is damaged"),
])
def test_damaged_inputs_are_named_with_the_fix_and_are_not_current(small_inputs, workdir, tone_corpus, name, damage,
                                                                     message):
    folder = workdir / "inputs"
    record = ml_inputs.read_record(folder)["built_from"]
    assert ml_inputs.is_current(record)
    damage(folder / name)
    with pytest.raises(utils.PipelineError, match=message) as error:
        ml_inputs.load_inputs()
    assert "0_generate_inputs.py --force" in str(error.value)
    assert not ml_inputs.is_current(record)  # stage 0 rebuilds them (and --force works with a corrupt record)
