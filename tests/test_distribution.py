"""Training on two logical CPU devices (tf.distribute.MirroredStrategy) computes what one device computes."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audio.demo_corpus import write_demo_corpus

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"SPLIT": "auto", "NUM_SPEAKERS_CLASSIFICATION_TASK": "4", "MAX_COUNT_PER_CLASS": "40",
            "BATCH_SIZE": "120", "DROPOUT": "0", "SPEED_PERTURBATION": "", "VALIDATION_FRACTION": "0",
            "SOFTMAX_SCHEDULE_EPOCHS": "2", "SOFTMAX_WARMUP_STEPS": "2", "NUM_WORKERS": "1"}


def script(path, workdir, corpus, devices, *arguments, settings=()):
    environment = {**os.environ, **{f"DEEP_SPEAKER_{k}": v for k, v in {**SETTINGS, **dict(settings)}.items()},
                   "DEEP_SPEAKER_WORKDIR": str(workdir), "VCTK_CORPUS_PATH": str(corpus),
                   "DEEP_SPEAKER_CPU_DEVICES": str(devices), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, path, *arguments], cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def losses(workdir, mode="softmax", column="loss"):
    with open(workdir / "runs" / mode / "history.csv") as handle:
        return [float(row[column]) for row in csv.DictReader(handle)]


def test_two_logical_cpu_devices_train_with_the_losses_of_one_and_record_replicas(tmp_path):
    """Softmax fit (each batch split across the replicas) and triplet steps (a triplet batch per replica)."""
    corpus = tmp_path / "corpus"
    write_demo_corpus(corpus, num_speakers=5, utterances_per_speaker=4, progress=False)
    one = tmp_path / "one"
    script("ml/0_generate_inputs.py", one, corpus, 1)
    two = tmp_path / "two"
    shutil.copytree(one, two)  # the same cache and inputs
    for workdir, devices in ((one, 1), (two, 2)):
        script("ml/1_train_triplet_softmax_model.py", workdir, corpus, devices, "--loss_on_softmax")
        script("ml/1_train_triplet_softmax_model.py", workdir, corpus, devices, "--loss_on_embeddings",
               "--normalize_embeddings", "--steps", "3")
    settings = [json.loads((w / "runs" / "softmax" / "settings.json").read_text()) for w in (one, two)]
    assert [s["replicas"] for s in settings] == [1, 2] and settings[1]["sessions"][-1]["replicas"] == 2
    assert settings[1]["constants"]["CPU_DEVICES"] == 2
    first, second = losses(one), losses(two)
    assert len(first) == len(second) == 2
    # the same numbers up to the order of float sums (measured: 6e-6 after one epoch, 3e-4 after two)
    assert second[0] == pytest.approx(first[0], rel=1e-4) and second[1] == pytest.approx(first[1], rel=2e-3)
    triplet = [losses(w, "triplet") for w in (one, two)]  # each replica its own triplet batch: the same losses
    assert len(triplet[0]) == 3 and triplet[1] == pytest.approx(triplet[0], rel=1e-2), triplet  # from 2 start points
    assert json.loads((two / "runs" / "triplet" / "settings.json").read_text())["replicas"] == 2
    # the softmax loss beside the triplet one: the same losses on two devices as on one (train and test)
    joint = {"TRIPLET_SOFTMAX_WEIGHT": "1"}
    for workdir, devices in ((one, 1), (two, 2)):
        script("ml/1_train_triplet_softmax_model.py", workdir, corpus, devices, "--loss_on_embeddings",
               "--normalize_embeddings", "--steps", "2", "--fresh", settings=joint)
    with_head = [losses(w, "triplet") for w in (one, two)]
    assert with_head[1] == pytest.approx(with_head[0], rel=1e-2), with_head
    test_losses = [losses(w, "triplet", "test_loss") for w in (one, two)]
    assert test_losses[1] == pytest.approx(test_losses[0], rel=1e-2), test_losses
    # segment triplets: each replica takes whole classes (4 in a batch here, 2 per device)
    segments = {"TRIPLET_SELECTION": "segments", "TRIPLET_SEGMENT_WINDOWS": "5", "TRIPLET_SEGMENTS_PER_SPEAKER": "2",
                "TRIPLET_SOFTMAX_WEIGHT": "1"}  # and the softmax loss beside the triplet one
    output = script("ml/1_train_triplet_softmax_model.py", two, corpus, 2, "--loss_on_embeddings",
                    "--normalize_embeddings", "--steps", "2", "--fresh", settings=segments)
    assert "batch-hard segment triplets" in output and len(losses(two, "triplet")) == 2


def test_a_triplet_batch_is_cut_into_one_triplet_batch_per_replica():
    import numpy as np

    from ml.distribution import triplet_shards
    batch = np.arange(12)  # anchors 0-3, positives 4-7, negatives 8-11
    first, second = triplet_shards(batch, 2)
    assert first.tolist() == [0, 1, 4, 5, 8, 9] and second.tolist() == [2, 3, 6, 7, 10, 11]
    assert [s.tolist() for s in triplet_shards(batch, 1)] == [batch.tolist()]
