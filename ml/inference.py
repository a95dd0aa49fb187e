"""Embed, verify, enroll and identify any recording with a trained model.

    from ml.inference import Speakers
    speakers = Speakers()                      # latest checkpoint, its normalisation, the EER threshold
    vector = speakers.embed("me.wav")          # (EMBEDDING_SIZE,) unit vector
    score, same = speakers.verify("a.flac", "b.wav")
    speakers.enroll("alice", ["alice1.wav", "alice2.wav"])
    name, scores = speakers.identify("who.wav")  # "unknown" below the threshold

Files of any sample rate and length are preprocessed as in training (8 kHz mono, voice-only trim,
MFCC + deltas, normalisation without knowing the speaker). Speakers need not be in the training set.
"""
import sys
from pathlib import Path

import numpy as np

import utils
from audio import features
from ml import embeddings

UNKNOWN = "unknown"


class Speakers:
    """A trained model with its normalisation, decision threshold and on-disk gallery of enrolled speakers."""

    def __init__(self, run=None, checkpoint=None, gallery=None):
        self.model, _, self.source = embeddings.load_trained_model(run, checkpoint)
        self.norm = embeddings.load_norm()
        if self.norm["method"] == "per_speaker":
            raise utils.PipelineError("the inputs were normalised per speaker (NORMALIZATION='per_speaker'), which "
                                      "needs to know who is speaking; rebuild them with a label-free NORMALIZATION "
                                      "and retrain to embed recordings of unknown speakers")
        self.gallery = Path(gallery or utils.work_path("gallery"))
        self._warned = False

    def embed(self, path):
        """The unit-length embedding of one audio file; PipelineError when the file gives no features."""
        try:
            frames = features.utterance_features(path)
        except features.UnusableAudio as reason:
            raise utils.PipelineError(f"{path}: {reason}") from None
        window_embeddings = embeddings.embed_windows(self.model, [embeddings.normalized_frames(frames, self.norm)])[0]
        return embeddings.pool(window_embeddings)

    def threshold(self):
        """The EER threshold of the last evaluation; PipelineError before any."""
        report = utils.read_json(utils.work_path("evaluation", "report.json"))
        if report is None:
            raise utils.PipelineError("no evaluation yet, so no decision threshold: run "
                                      "`python ml/2_evaluate_unseen_speakers.py` first")
        if report.get("checkpoint") != self.source and not self._warned:
            self._warned = True
            print(f"warning: the threshold comes from an evaluation of {report.get('checkpoint')}, not of {self.source}; "
                  f"re-run ml/2_evaluate_unseen_speakers.py for a threshold that fits this model", file=sys.stderr)
        return report["eer_threshold"]

    def verify(self, first, second):
        """(cosine score, same speaker?) of two files, decided at the evaluation's EER threshold."""
        score = float(self.embed(first) @ self.embed(second))
        return score, score >= self.threshold()

    def enroll(self, name, paths):
        """Store the mean embedding of `paths` under `name` in the gallery; returns the gallery file."""
        if not name or "/" in name or name.startswith(".") or name == UNKNOWN:
            raise utils.PipelineError(f"{name!r} cannot name a speaker (no '/', no leading '.', not {UNKNOWN!r})")
        if not paths:
            raise utils.PipelineError("enroll needs at least one audio file")
        vector = embeddings.pool(np.stack([self.embed(p) for p in paths]))
        utils.ensure_writable_dir(self.gallery)
        target = self.gallery / f"{name}.npy"
        with utils.atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, vector.astype(np.float32), allow_pickle=False)
        return target

    def enrolled(self):
        """{name: embedding} of the gallery."""
        return {p.stem: np.load(p, allow_pickle=False) for p in sorted(self.gallery.glob("*.npy"))}

    def identify(self, path):
        """(best-matching enrolled name, or "unknown" below the threshold; {name: score} best first)."""
        gallery = self.enrolled()
        if not gallery:
            raise utils.PipelineError(f"the gallery {self.gallery} is empty: enroll speakers first")
        vector = self.embed(path)
        scores = dict(sorted(((name, float(vector @ g)) for name, g in gallery.items()), key=lambda x: -x[1]))
        best = next(iter(scores))
        return (best if scores[best] >= self.threshold() else UNKNOWN), scores
