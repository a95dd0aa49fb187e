"""From a trained checkpoint to embeddings: load the model, embed windows, pool them per utterance.

An utterance's embedding is the mean of its unit-length window embeddings, scaled to unit length, so that the cosine
of two utterances is their dot product.
"""
import os

import numpy as np

import utils
from audio import features
from ml import normalization
from ml.model import build_model
from ml.checkpoints import RunFolder, check_compatible, model_identity

RUN_ORDER = ("frozen", "triplet", "softmax")  # the later stage first, when several wrote at the same time
CHUNK_WINDOWS = 8192  # windows per forward pass when embedding many utterances


def latest_run():
    """The mode whose checkpoint was written last (state.json time), or PipelineError when none exists."""
    written = [(os.path.getmtime(RunFolder(m).folder / "state.json"), -i, m)
               for i, m in enumerate(RUN_ORDER) if RunFolder(m).state()]
    if not written:
        raise utils.PipelineError(f"no trained model in {utils.work_path('runs')}: run "
                                  f"`python ml/1_train_triplet_softmax_model.py --loss_on_softmax` first")
    return max(written)[2]


def load_trained_model(run=None, checkpoint=None):
    """(model, classes it was trained on, description) of `checkpoint` (a weights file of `run`) or the latest.

    The classes are the training speakers, then their speed copies (ml/inputs.py).
    """
    run = run or latest_run()
    state = RunFolder(run).state()
    if state is None:
        raise utils.PipelineError(f"the {run} run has no checkpoint yet")
    path = RunFolder(run).folder / state["latest"] if checkpoint is None else checkpoint
    if not os.path.exists(path):
        raise utils.PipelineError(f"no checkpoint file {path}")
    stored = state["model"]
    check_compatible(stored, model_identity(stored["speakers"]), path)
    model = build_model(stored["num_speakers"], normalize_embeddings=state.get("normalize_embeddings", False))
    model.load_weights(path)
    return model, stored["speakers"], f"{path} ({run})"


def embed_windows(model, frame_list):
    """Window embeddings for each (frames, 39) array of `frame_list`: a list of (windows, size) arrays."""
    starts = [features.window_starts(len(frames)) for frames in frame_list]
    windows = np.concatenate([features.gather_windows(f, s) for f, s in zip(frame_list, starts)])
    outputs = [np.asarray(model(windows[i:i + CHUNK_WINDOWS], training=False)["embeddings"])
               for i in range(0, len(windows), CHUNK_WINDOWS)]
    return np.split(np.concatenate(outputs), np.cumsum([len(s) for s in starts])[:-1])


def pool(window_embeddings):
    """The utterance embedding: mean of the unit-length window embeddings, unit length.

    Each window counts the same, whatever its embedding's norm (without L2 normalisation in the model,
    a few loud windows would otherwise dominate the mean).
    """
    unit = window_embeddings / np.maximum(np.linalg.norm(window_embeddings, axis=1, keepdims=True), 1e-12)
    mean = unit.mean(axis=0)
    return mean / max(np.linalg.norm(mean), 1e-12)


def normalized_frames(frames, norm, speaker=None):
    """Frames normalised as the model's inputs were; per_speaker needs the speaker (and says so)."""
    try:
        return normalization.normalize(frames, norm, speaker=speaker)
    except KeyError as error:
        raise utils.PipelineError(str(error).strip('"')) from None


def load_norm():
    """The normalisation record written by ml/0_generate_inputs.py."""
    norm = utils.read_json(utils.work_path("inputs", "norm.json"))
    if norm is None:
        raise utils.PipelineError("no inputs/norm.json in the work dir: run `python ml/0_generate_inputs.py` first")
    return norm

