"""Utterances shorter than one window: left out (and counted) in training and evaluation, refused by inference."""
import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

import constants
import utils
from audio import features
from audio.cache import FeatureCache
from audio.corpus import find_corpus, split_speakers
from ml import embeddings, inputs as ml_inputs, training
from ml.inference import Speakers
from tests.conftest import write_voice

SHORT_SECONDS = 0.35  # voiced: about 35 frames, less than one window of 50
WINDOW = 50


def load_script(path):
    spec = importlib.util.spec_from_file_location(path.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def long_windows(tmp_path, workdir, monkeypatch):
    """5 speakers (3 train, 2 unseen) x 5 utterances, the last of each shorter than one 50-frame window."""
    root = tmp_path / "corpus"
    for s, speaker in enumerate(["p225", "p226", "p227", "p228", "p229"]):
        for n in range(1, 6):
            seconds = SHORT_SECONDS if n == 5 else 1.0 + 0.1 * n
            write_voice(root / "wav48_silence_trimmed" / speaker / f"{speaker}_{n:03d}_mic1.flac", seconds=seconds,
                        f0=90 + 35 * s, seed=10 * s + n)
    for name, value in {"CORPUS_PATH": str(root), "SPLIT": "auto", "NUM_SPEAKERS_CLASSIFICATION_TASK": 3,
                        "FRAMES_PER_WINDOW": WINDOW, "WINDOW_HOP_FRAMES": 10, "MAX_COUNT_PER_CLASS": 20,
                        "BATCH_SIZE": 30, "SPEED_PERTURBATION": [], "MAX_VALIDATION_WINDOWS": 0}.items():
        monkeypatch.setattr(constants, name, value)
    return root


def test_short_utterances_are_left_out_of_training_and_evaluation_and_refused_by_inference(long_windows, capsys):
    corpus = find_corpus()
    cache = FeatureCache(corpus.root)
    report = cache.build([u for s in corpus.speakers for u in corpus.utterances[s]], progress=False)
    assert report.built == 25  # the cache keeps them: a shorter window setting can use them
    short_key = "p228/p228_005_mic1"
    assert features.too_short(cache.num_frames(short_key)) and not features.too_short(cache.num_frames("p228/p228_001_mic1"))

    train, unseen = split_speakers(corpus.speakers)
    built = ml_inputs.build_inputs(cache, corpus, train, unseen, progress=False)
    assert "3 training utterance(s) shorter than one window left out" in capsys.readouterr().out
    assert not any(key.endswith("_005_mic1") for key in built.train.utterance_keys.tolist()
                   + built.test.utterance_keys.tolist())
    ml_inputs.save_inputs(built, ml_inputs.expected_record(cache, corpus, train, unseen))
    training.train_softmax(ml_inputs.load_inputs(), epochs=1, verbose=0)

    result = CliRunner().invoke(load_script("ml/2_evaluate_unseen_speakers.py").main, ["--run", "softmax"])
    assert result.exit_code == 0, result.output
    assert "2 unseen utterance(s) shorter than one window left out" in result.output
    (folder,) = (utils.work_path("runs", "softmax", "evaluation")).iterdir()
    report = json.loads((folder / "report.json").read_text())
    assert report["num_short_utterances"] == 2 and short_key in report["short_utterances"]
    assert report["num_unseen_utterances"] == 8 and np.isfinite(report["eer"])
    assert "at least 50 needed" in report["short_utterances"][short_key]

    path = corpus.utterances["p228"][-1].path
    with pytest.raises(utils.PipelineError, match=r"p228_005_mic1.flac: too short \(0\.\d\d s voiced, \d+ frames; "
                                                  r"at least 50 needed: one window of FRAMES_PER_WINDOW=50"):
        Speakers(threshold=0.5).embed(path)
    stage3 = CliRunner().invoke(load_script("ml/3_embed_verify_identify.py").main,
                                ["--threshold", "0.5", "verify", str(path), str(corpus.utterances["p228"][0].path)])
    assert stage3.exit_code == 2 and "too short" in stage3.output


def test_pooling_no_windows_is_an_error_not_a_nan():
    with pytest.raises(utils.PipelineError, match="shorter than one window"):
        embeddings.pool(np.zeros((0, 8), np.float32))
