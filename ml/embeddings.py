"""From a trained checkpoint to embeddings: load the model, embed windows, pool them per utterance.

An utterance's embedding is the mean of its unit-length window embeddings, scaled to unit length, so that the cosine
of two utterances is their dot product.
"""
from dataclasses import dataclass

import numpy as np

import utils
from audio import features
from ml import checkpoints, normalization
from ml.checkpoints import RunFolder, check_compatible, model_identity
from ml.model import build_model

RUN_ORDER = ("frozen", "triplet", "softmax")  # --run choices; by default the last of the chain that has a checkpoint
CHUNK_WINDOWS = 8192  # windows per forward pass when embedding many utterances
# What turns audio into the model's input: a model is refused when any of these differs from its training.
FEATURE_PATH_SETTINGS = ("FRAMES_PER_WINDOW", "WINDOW_HOP_FRAMES", "NORMALIZATION")


@dataclass
class TrainedModel:
    """A checkpoint loaded for use: the model, its run and checkpoint record, and the normalisation it needs."""
    model: object
    mode: str
    state: dict
    entry: dict
    norm: dict

    @property
    def classes(self):
        """The classes it was trained on: the training speakers, then their speed copies (ml/inputs.py)."""
        return self.state["model"]["classes"]

    @property
    def description(self):
        """"runs/softmax/weights/epoch-000003.weights.h5 (softmax epoch 3, run 1a2b3c4d)"."""
        return checkpoints.describe(self.mode, self.state, self.entry)

    @property
    def reference(self):
        """How records (evaluations, galleries) name this checkpoint."""
        return checkpoints.checkpoint_reference(self.mode, self.state, self.entry)

    def evaluation_report(self, name, what, command, keys=()):
        """The record `name` in this checkpoint's evaluation folder (a threshold comes from it); PipelineError
        naming `command` when there is none, or it is of another checkpoint."""
        report = utils.read_json(checkpoints.evaluation_folder(self.mode, self.entry) / name, keys=keys,
                                 what=f"the {what} of this checkpoint",
                                 fix=f"Compute it again with `{command} --run {self.mode} --force`")
        if report is None or report.get("checkpoint") != self.reference:
            raise utils.PipelineError(f"no {what} of {self.description} yet, so no threshold: run `{command} --run "
                                      f"{self.mode}` first (or give a threshold)")
        return report


def load_trained_model(run=None, checkpoint=None, settings="features", entry=None):
    """The checkpoint `checkpoint` (a weights file of `run`), or the chosen one of `run` (default: the last mode
    of the chain that has one), checked against the current settings.

    `settings` = "features": the feature, window and normalisation settings must be those it was trained with
    (inference); "inputs": every setting of its inputs (evaluation). A damaged file falls back to the newest
    intact checkpoint of the run, with a warning.
    """
    if entry is None:
        mode, state, entry = checkpoints.resolve_checkpoint(run, checkpoint)
    else:  # a checkpoint the caller resolved (and checked) already
        mode, state = run, RunFolder(run).state()
    built_from = (state.get("inputs") or {}).get("settings", {})
    names = set(features.feature_settings()) | set(FEATURE_PATH_SETTINGS) if settings == "features" else set(built_from)
    retrain = "rebuild the inputs with `python ml/0_generate_inputs.py` and retrain"
    utils.refuse_changed_settings({k: v for k, v in built_from.items() if k in names},
                                  f"the model of the {mode} run", retrain)
    stored = state["model"]
    check_compatible(stored, model_identity(stored["classes"], stored["input_shape"], stored["normalization"]),
                     RunFolder(mode).folder / entry["file"])
    model = build_model(len(stored["classes"]), normalize_embeddings=state.get("normalize_embeddings", False),
                        input_shape=stored["input_shape"])
    loaded = RunFolder(mode).load_into(model, state, entry, fallback=False)
    norm_path = RunFolder(mode).folder / "norm.json"
    if state.get("norm_sha256") and norm_path.is_file() and utils.file_digest(norm_path)[1] != state["norm_sha256"]:
        raise utils.CorruptFile(f"{norm_path} is not the normalisation the {mode} run was trained with (its sha256 "
                                f"differs from state.json): restore it, or train the run again with "
                                f"`{checkpoints.command(mode)} --fresh`")
    norm = utils.read_json(norm_path, what="the normalisation statistics of the run",
                           keys=("method", "global", "global_per_coefficient", "per_speaker"),
                           fix=f"Train the run again with `{checkpoints.command(mode)} --fresh`")
    if norm is None:
        raise utils.PipelineError(f"the {mode} run has no norm.json (it was trained before runs kept one): train it "
                                  f"again with `{checkpoints.command(mode)} --fresh`")
    return TrainedModel(model, mode, state, loaded, norm)


def embed_windows(model, frame_list):
    """Window embeddings for each (frames, 39) array of `frame_list`: a list of (windows, size) arrays.

    Windows are gathered CHUNK_WINDOWS at a time, never all at once (390 float32 values each)."""
    starts = [features.window_starts(len(frames)) for frames in frame_list]
    outputs, pending = [], []

    def run():
        outputs.append(np.asarray(model(np.concatenate(pending), training=False)["embeddings"]))
        pending.clear()

    for frames, first_frames in zip(frame_list, starts):
        for i in range(0, len(first_frames), CHUNK_WINDOWS):
            pending.append(features.gather_windows(frames, first_frames[i:i + CHUNK_WINDOWS]))
            if sum(map(len, pending)) >= CHUNK_WINDOWS:
                run()
    if pending:
        run()
    return np.split(np.concatenate(outputs), np.cumsum([len(s) for s in starts])[:-1])


def unit_length(vectors):
    """`vectors` (one, or one per row) scaled to unit L2 length; a zero vector stays zero."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def pool(window_embeddings):
    """The utterance embedding: mean of the unit-length window embeddings, unit length.

    Each window counts the same, whatever its embedding's norm (without L2 normalisation in the model,
    a few loud windows would otherwise dominate the mean).
    """
    if len(window_embeddings) == 0:
        raise utils.PipelineError(f"nothing to pool: an utterance shorter than one window ({features.min_frames()} "
                                  f"frames) has no window embedding")
    return unit_length(unit_length(window_embeddings).mean(axis=0))


def normalized_frames(frames, norm, speaker=None):
    """Frames normalised as the model's inputs were; per_speaker needs the speaker (and says so)."""
    try:
        return normalization.normalize(frames, norm, speaker=speaker)
    except KeyError as error:
        raise utils.PipelineError(str(error).strip('"')) from None
