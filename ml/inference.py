"""Embed, verify, enroll and identify any recording with a trained model.

    from ml.inference import Speakers
    speakers = Speakers()                      # the default run's model, its normalisation, its EER threshold
    vector = speakers.embed("me.wav")          # (EMBEDDING_SIZE,) unit vector
    score, same = speakers.verify("a.flac", "b.wav")
    speakers.enroll("alice", ["alice1.wav", "alice2.wav"])
    name, scores = speakers.identify("who.wav")  # "unknown" below the threshold

Files of any sample rate and length are preprocessed as in training (8 kHz mono, voice-only trim,
MFCC + deltas, normalisation without knowing the speaker). Speakers need not be in the training set.
"""
import time
from pathlib import Path

import numpy as np

import utils
from audio import features
from ml import checkpoints, embeddings

UNKNOWN = "unknown"


class Speakers:
    """A trained model with its normalisation, decision threshold and on-disk gallery of enrolled speakers.

    The threshold is the EER point of the evaluation of this very checkpoint (ml/2_evaluate_unseen_speakers.py
    stores it with the run), unless one is given. The gallery records the checkpoint it was enrolled with, and
    another model refuses it.
    """

    def __init__(self, run=None, checkpoint=None, gallery=None, threshold=None):
        self.trained = embeddings.load_trained_model(run, checkpoint, settings="features")
        self.model, self.norm, self.source = self.trained.model, self.trained.norm, self.trained.description
        if self.norm["method"] == "per_speaker":
            raise utils.PipelineError("the inputs were normalised per speaker (NORMALIZATION='per_speaker'), which "
                                      "needs to know who is speaking; rebuild them with a label-free NORMALIZATION "
                                      "and retrain to embed recordings of unknown speakers")
        self.gallery = Path(gallery or utils.work_path("gallery"))
        self._threshold = threshold

    def embed(self, path):
        """The unit-length embedding of one audio file; PipelineError when the file gives no features."""
        try:
            frames = features.utterance_features(path)
        except features.UnusableAudio as reason:
            raise utils.PipelineError(f"{path}: {reason}") from None
        window_embeddings = embeddings.embed_windows(self.model, [embeddings.normalized_frames(frames, self.norm)])[0]
        return embeddings.pool(window_embeddings)

    def threshold(self):
        """The given threshold, else the EER threshold of this checkpoint's evaluation; PipelineError before any."""
        if self._threshold is not None:
            return self._threshold
        folder = checkpoints.evaluation_folder(self.trained.mode, self.trained.entry)
        report = utils.read_json(folder / "report.json", what="the evaluation report of this checkpoint",
                                 fix=f"Compute it again with `python ml/2_evaluate_unseen_speakers.py --run "
                                     f"{self.trained.mode} --force`")
        if report is None or report.get("checkpoint") != self.trained.reference:
            raise utils.PipelineError(f"no evaluation of {self.source} yet, so no decision threshold: run "
                                      f"`python ml/2_evaluate_unseen_speakers.py --run {self.trained.mode}` first "
                                      f"(or give a threshold)")
        return report["eer_threshold"]

    def verify(self, first, second):
        """(cosine score, same speaker?) of two files, decided at the threshold."""
        score = float(self.embed(first) @ self.embed(second))
        return score, score >= self.threshold()

    # ------------------------------------------------------------------------------------------------
    # The gallery: <name>.npy per enrolled speaker, and gallery.json (the model it was enrolled with)
    # ------------------------------------------------------------------------------------------------
    def _record(self):
        """gallery.json, checked against this model; a new record when the gallery is empty."""
        record = utils.read_json(self.gallery / "gallery.json", what="the gallery's record (the model it was "
                                 "enrolled with)", fix=f"Enrol the speakers again into an empty folder "
                                                       f"(remove {self.gallery})")
        files = sorted(self.gallery.glob("*.npy")) if self.gallery.is_dir() else []
        if record is None:
            if files:
                raise utils.PipelineError(f"the gallery {self.gallery} records no model (enrolled by an older "
                                          f"version): move it away and enrol its speakers again")
            return {"model": self.trained.reference, "speakers": {}}
        if record["model"] != self.trained.reference:
            enrolled = record["model"]
            raise utils.PipelineError(
                f"the gallery {self.gallery} was enrolled with {enrolled['mode']} {enrolled['file']} (run "
                f"{enrolled['run_id']}), not with this model ({self.source}): embeddings of two models do not "
                f"compare. Use that model (--run {enrolled['mode']}), or enrol the speakers again with this one "
                f"into another gallery")
        return record

    def enroll(self, name, paths):
        """Store the mean embedding of `paths` under `name` in the gallery; returns the gallery file."""
        if not name or "/" in name or name.startswith(".") or name == UNKNOWN:
            raise utils.PipelineError(f"{name!r} cannot name a speaker (no '/', no leading '.', not {UNKNOWN!r})")
        if not paths:
            raise utils.PipelineError("enroll needs at least one audio file")
        record = self._record()
        vector = embeddings.pool(np.stack([self.embed(p) for p in paths]))
        utils.ensure_writable_dir(self.gallery)
        target = self.gallery / f"{name}.npy"
        with utils.atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, vector.astype(np.float32), allow_pickle=False)
        record["speakers"][name] = {"files": [str(p) for p in paths], "enrolled": time.strftime("%Y-%m-%d %H:%M:%S")}
        utils.write_json(self.gallery / "gallery.json", record)
        return target

    def enrolled(self):
        """{name: embedding} of the gallery, each checked (readable, finite, of this model's size)."""
        record = self._record()
        gallery = {}
        for name in sorted(record["speakers"]):
            path = self.gallery / f"{name}.npy"
            fix = f"Enrol {name} again with `python ml/3_embed_verify_identify.py enroll {name} FILE...`"
            vector = utils.read_checked(path, lambda p: np.load(p, allow_pickle=False), f"the embedding of {name}",
                                        fix)
            if vector.ndim != 1 or not np.all(np.isfinite(vector)) or abs(np.linalg.norm(vector) - 1) > 1e-3:
                raise utils.CorruptFile(f"{path} holds no valid embedding (not a finite unit vector of this model's "
                                        f"size); {fix[0].lower() + fix[1:]}")
            gallery[name] = vector
        return gallery

    def identify(self, path):
        """(best-matching enrolled name, or "unknown" below the threshold; {name: score} best first)."""
        gallery = self.enrolled()
        if not gallery:
            raise utils.PipelineError(f"the gallery {self.gallery} is empty: enroll speakers first")
        vector = self.embed(path)
        if any(g.shape != vector.shape for g in gallery.values()):
            raise utils.CorruptFile(f"the gallery {self.gallery} holds embeddings of another size than this model's "
                                    f"({vector.size}); enrol the speakers again")
        scores = dict(sorted(((name, float(vector @ g)) for name, g in gallery.items()), key=lambda x: -x[1]))
        best = next(iter(scores))
        return (best if scores[best] >= self.threshold() else UNKNOWN), scores
