"""Embed, verify, enroll and identify any recording with a trained model.

    from ml.inference import Speakers
    speakers = Speakers()                      # the default run's model, its normalisation, its EER threshold
    # Speakers(asnorm=True): scores normalised against stage 2's cohort (adaptive S-norm), at its AS-norm threshold
    vector = speakers.embed("me.wav")          # (EMBEDDING_SIZE,) unit vector
    score, same = speakers.verify("a.flac", "b.wav")
    speakers.enroll("alice", ["alice1.wav", "alice2.wav"])
    name, scores = speakers.identify("who.wav")  # "unknown" below the threshold

Files of any sample rate and length are preprocessed as in training (8 kHz mono, voice-only trim,
MFCC + deltas, normalisation without knowing the speaker). Speakers need not be in the training set.
"""
import hashlib
import io
import math
import numbers
import secrets
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

import utils
from audio import features
from audio.cache import stamp
from ml import checkpoints, embeddings, evaluation

UNKNOWN = "unknown"
EVALUATE = "python ml/2_evaluate_unseen_speakers.py"  # the command that makes the report (and the cohort) again


class Enrolment(NamedTuple):
    """What an enroll did: the speaker's rows file, {path: reason} of the files skipped, and the (resolved) paths
    added, embedded again because they changed since they were enrolled (or an earlier version enrolled them without
    their size and time: `unstamped`, among the `updated`), and enrolled before and unchanged."""
    rows_file: Path
    skipped: dict
    added: list
    updated: list
    unchanged: list
    unstamped: list = []


def is_speaker_name(name):
    """Whether `name` can name an enrolled speaker (and, in galleries of before, its <name>.npy file)."""
    return (isinstance(name, str) and bool(name) and "/" not in name and not name.startswith(".") and name != UNKNOWN
            and len(name) <= 100 and name.isprintable())


def finite_number(value):
    """Whether `value` (read from JSON) is a finite int or float; not a bool, string, null or NaN."""
    return utils.is_of_kind(value, utils.NUMBER)


def gallery_record_problem(record):
    """What makes gallery.json's `record` (an object holding "model" and "speakers") unusable, or None: each value
    this code reads must have its type, so that a damaged record is named rather than ending in a traceback."""
    if not isinstance(record["model"], dict):
        return "its model is not an object"
    if not isinstance(record["speakers"], dict):
        return "its speakers are not an object of name: enrolment"
    for name, entry in record["speakers"].items():
        if not is_speaker_name(name):
            return f"{name!r} cannot name a speaker"
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), list) or not all(
                isinstance(path, str) for path in entry["files"]):
            return f"the enrolment of {name} lists no files"
        rows_file = entry.get("rows_file", f"{name}.npy")
        if not isinstance(rows_file, str) or not rows_file.endswith(".npy") or "/" in rows_file or rows_file[0] == ".":
            return f"the enrolment of {name} names no rows file in the gallery"
        if not isinstance(entry.get("sha256", ""), str):
            return f"the sha256 of {name}'s rows is not a string"
        audio = entry.get("audio", {})
        if not isinstance(audio, dict) or not all(isinstance(value, list) for value in audio.values()):
            return f"the enrolment of {name} records no [size, time] of its files"
    return None


def label_free_model(run=None, checkpoint=None, settings="features", entry=None):
    """The chosen (or given) checkpoint of `run` for use on recordings of unknown speakers (load_trained_model's
    arguments): its normalisation must not need to know who speaks."""
    trained = embeddings.load_trained_model(run, checkpoint, settings=settings, entry=entry)
    if trained.norm["method"] == "per_speaker":
        raise utils.PipelineError("the inputs were normalised per speaker (NORMALIZATION='per_speaker'), which "
                                  "needs to know who is speaking; rebuild them with a label-free NORMALIZATION "
                                  "and retrain to embed recordings of unknown speakers")
    return trained


class Speakers:
    """A trained model with its normalisation, decision threshold and on-disk gallery of enrolled speakers.

    The threshold is the EER point of the evaluation of this very checkpoint (ml/2_evaluate_unseen_speakers.py
    stores it with the run), unless one is given. The gallery records the checkpoint it was enrolled with, and
    another model refuses it.
    """

    def __init__(self, run=None, checkpoint=None, gallery=None, threshold=None, asnorm=False):
        self.trained = label_free_model(run, checkpoint)
        self.model, self.norm, self.source = self.trained.model, self.trained.norm, self.trained.description
        self.gallery = Path(gallery or utils.work_path("gallery"))
        if threshold is not None:  # any real number (a NumPy float too); NaN would answer "different" to every pair
            if not (isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
                    and math.isfinite(threshold)):
                raise utils.PipelineError(f"threshold {threshold!r}: a threshold is a finite score")
            threshold = float(threshold)
        self._threshold = threshold
        self.asnorm = asnorm
        self._cohort = None

    def embed(self, path):
        """The unit-length embedding of one audio file; PipelineError when the file gives no features."""
        try:
            frames = features.utterance_features(path)
        except features.UnusableAudio as reason:
            raise utils.PipelineError(f"{path}: {reason}") from None
        window_embeddings = embeddings.embed_windows(self.model, [embeddings.normalized_frames(frames, self.norm)])[0]
        return embeddings.pool(window_embeddings)

    def _report(self):
        """This checkpoint's evaluation report (ml/2_evaluate_unseen_speakers.py); PipelineError before there is one."""
        return self.trained.evaluation_report("report.json", "evaluation", EVALUATE)

    def _reported(self, record, key, what, check=finite_number, need="a finite number"):
        """record[key] of this checkpoint's report (or of a part of it), which must pass `check` (be `need`): a
        missing, non-numeric or NaN threshold would end in a traceback or answer "different" to every pair."""
        if key not in record:
            found = "missing"
        elif not check(record[key]):
            found = f"{record[key]!r:.40}, not {need}"
        else:
            return record[key]
        raise utils.CorruptFile(
            f"{checkpoints.evaluation_folder(self.trained.mode, self.trained.entry) / 'report.json'} records no "
            f"valid {what} ({found}); evaluate the checkpoint again with `{EVALUATE} --run {self.trained.mode} "
            f"--force`")

    def threshold(self):
        """The given threshold, else the EER threshold of this checkpoint's evaluation (of its AS-norm scores with
        `asnorm`); PipelineError before any, or when it is not a finite number."""
        if self._threshold is not None:
            return self._threshold
        if self.asnorm:
            return self.cohort()[2]
        return self._reported(self._report(), "eer_threshold", "EER threshold (eer_threshold)")

    def cohort(self):
        """(cohort embeddings, top k, AS-norm EER threshold) that stage 2 used with this checkpoint, checked."""
        if self._cohort is None:
            report = self._report()
            record = report.get("asnorm") or {}
            again = f"{EVALUATE} --run {self.trained.mode} --force"
            if not isinstance(record, dict) or "cohort_file" not in record or "eer_threshold" not in record:
                raise utils.PipelineError(
                    f"the evaluation of {self.source} kept no AS-norm cohort (ASNORM_COHORT_UTTERANCES was 0, or it "
                    f"was made before stage 3 could use one): evaluate it again with `{again}`")
            threshold = self._reported(record, "eer_threshold", "AS-norm EER threshold (asnorm.eer_threshold)")
            top_k = self._reported(record, "top_k", "AS-norm cohort size (asnorm.top_k)",
                                   lambda k: isinstance(k, int) and not isinstance(k, bool) and k >= 1,
                                   "a whole number from 1")
            named = record["cohort_file"]
            if not (isinstance(named, dict) and isinstance(named.get("file"), str) and isinstance(named.get("sha256"), str)
                    and named["file"] and "/" not in named["file"]):
                raise utils.CorruptFile(f"the evaluation of {self.source} names no valid cohort file (asnorm."
                                        f"cohort_file: {named!r:.60}); evaluate it again with `{again}`")
            folder = checkpoints.evaluation_folder(self.trained.mode, self.trained.entry)
            path = folder / named["file"]
            data = path.read_bytes() if path.is_file() else b""  # read once: the bytes checked are the bytes used
            if hashlib.sha256(data).hexdigest() != named["sha256"]:
                raise utils.CorruptFile(f"{path} is missing, or not the cohort its evaluation recorded; evaluate the "
                                        f"checkpoint again with `{again}`")
            cohort = utils.read_checked(path, lambda _: np.load(io.BytesIO(data), allow_pickle=False),
                                        "the AS-norm cohort")
            self._cohort = (cohort.astype(np.float64), top_k, float(threshold))
        return self._cohort

    def scores(self, vector, others):
        """The scores of `vector` against each row of `others`: cosines, or with `asnorm` their adaptive S-norm
        against the cohort (the cohort statistics of `vector` computed once for all rows)."""
        others = np.atleast_2d(others)
        cosines = others @ vector
        if not self.asnorm:
            return cosines
        cohort, top_k, _ = self.cohort()
        statistics = evaluation.as_norm_statistics(np.vstack([vector, others]).astype(np.float64), cohort, top_k)
        return evaluation.as_norm(cosines, np.zeros(len(others), int), np.arange(1, len(others) + 1), statistics)

    def verify(self, first, second):
        """(score, same speaker?) of two files, decided at the threshold (cosine, or AS-norm with `asnorm`)."""
        score = float(self.scores(self.embed(first), self.embed(second))[0])
        return score, score >= self.threshold()

    # ------------------------------------------------------------------------------------------------
    # The gallery: gallery.json (the model, each speaker's files and the rows file it names) and the rows files
    # ------------------------------------------------------------------------------------------------
    def _record(self):
        """gallery.json, checked against this model; a new record when the gallery is empty."""
        record = utils.read_json(self.gallery / "gallery.json", keys=("model", "speakers"),
                                 what="the gallery's record (the model it was "
                                 "enrolled with)", fix=f"Enrol the speakers again into an empty folder "
                                                       f"(remove {self.gallery})")
        if record is None:
            if self._old_rows_files():
                raise utils.PipelineError(f"the gallery {self.gallery} records no model (enrolled by an older "
                                          f"version): move it away and enrol its speakers again")
            return {"model": self.trained.reference, "speakers": {}}
        problem = gallery_record_problem(record)
        if problem:
            raise utils.CorruptFile(f"{self.gallery / 'gallery.json'} is not a valid gallery record ({problem}); it "
                                    f"is the gallery's record. Enrol the speakers again into an empty folder "
                                    f"(remove {self.gallery})")
        if record["model"] != self.trained.reference:
            enrolled = record["model"]
            raise utils.PipelineError(
                f"the gallery {self.gallery} was enrolled with {enrolled.get('mode')} {enrolled.get('file')} (run "
                f"{enrolled.get('run_id')}), not with this model ({self.source}): embeddings of two models do not "
                f"compare. Use that model (--run {enrolled.get('mode')}), or enrol the speakers again with this one "
                f"into another gallery")
        return record

    def _old_rows_files(self):
        """The <name>.npy files of a gallery enrolled before gallery.json existed. A first enroll writes gallery.json
        before any rows file, so a gallery without one holds no rows file of this version (its temporary files,
        .tmp-..., left by a kill, are no rows: the next enroll removes them)."""
        files = self.gallery.glob("*.npy") if self.gallery.is_dir() else []
        return [path for path in files if not path.name.startswith(".")]

    def embed_many(self, paths):
        """({path: embedding} of the files that give one, {path: reason} of those that do not), one model load."""
        vectors, failed = {}, {}
        for path in paths:
            try:
                vectors[path] = self.embed(path)
            except utils.PipelineError as error:
                failed[path] = str(error).removeprefix(f"{path}: ")
        return vectors, failed

    def enroll(self, name, paths, replace=False):
        """Add the embeddings of `paths` to `name`'s enrolment (or replace it); an Enrolment saying what changed.

        A speaker's gallery file holds one embedding per enrolled recording; identification compares with
        their pooled mean. Unreadable or too short files are skipped and named (PipelineError when every file
        is); a file already enrolled is not added twice, but embedded again (its row replaced) when its size or
        time changed since. Nothing is written when nothing changed, unless `replace`.
        """
        if not is_speaker_name(name):
            raise utils.PipelineError(f"{name!r} cannot name a speaker (no '/', no leading '.', no control "
                                      f"characters, at most 100 characters, not {UNKNOWN!r})")
        if not paths:
            raise utils.PipelineError("enroll needs at least one audio file")
        paths = list(dict.fromkeys(Path(p).resolve() for p in paths))  # one recording, one name: however written
        with utils.folder_lock(self.gallery, "the gallery"):
            record = self._record()
            if not (self.gallery / "gallery.json").exists():  # before any rows file: a kill leaves a gallery of this
                utils.write_json(self.gallery / "gallery.json", record)  # version (empty), never an "older" one
            entry = {} if replace else record["speakers"].get(name, {})
            files, audio = list(entry.get("files", [])), dict(entry.get("audio", {}))
            stamps = {path: stamp(path) for path in paths}  # before embedding: a file changed meanwhile is seen next time
            unchanged = [p for p in paths if str(p) in files and audio.get(str(p)) == stamps[p]]
            unstamped = [p for p in paths if str(p) in files and str(p) not in audio]
            vectors, skipped = self.embed_many([p for p in paths if p not in unchanged])
            if not vectors and not unchanged:
                raise utils.PipelineError(f"no usable recording to enroll {name} from: " + "; ".join(
                    f"{path}: {reason}" for path, reason in skipped.items()))
            if not vectors and not replace:  # nothing new: the record, its rows file and its time stay as they are
                self._remove_unnamed_rows(record)
                return Enrolment(self._rows_file(name, record), skipped, [], [], unchanged)
            rows = list(self._rows(name, record)) if files else []
            if len(rows) != len(files):
                raise utils.CorruptFile(f"{self._rows_file(name, record)} holds {len(rows)} embeddings for the "
                                        f"{len(files)} files enrolled for {name}; enrol {name} again with `python "
                                        f"ml/3_embed_verify_identify.py enroll --replace {name} FILE...`")
            added, updated = [], []
            for path, vector in vectors.items():
                if str(path) in files:  # enrolled before, changed since: its row is replaced, not added to
                    rows[files.index(str(path))] = vector
                    updated.append(path)
                else:
                    files.append(str(path))
                    rows.append(vector)
                    added.append(path)
                audio[str(path)] = stamps[path]
            target = self._write_rows(record, name, files, audio, rows)
        return Enrolment(target, skipped, added, updated, unchanged, [p for p in updated if p in unstamped])

    def _write_rows(self, record, name, files, audio, rows):
        """Record `name`'s enrolment (its files, their [size, mtime_ns], one row each) in the gallery; its rows file.
        Called under the gallery's lock."""
        # The rows go to a new file, which the record names only once it is complete: a kill at any point
        # leaves the record and the rows it names as they were (at worst an unnamed file, removed next time).
        target = self.gallery / f"{name}-{secrets.token_hex(4)}.npy"
        utils.save_array(target, np.stack(rows).astype(np.float32))
        record["speakers"][name] = {"files": files, "audio": {path: audio[path] for path in files if path in audio},
                                    "rows_file": target.name, "sha256": utils.file_digest(target)[1],
                                    "enrolled": time.strftime("%Y-%m-%d %H:%M:%S")}
        utils.write_json(self.gallery / "gallery.json", record)
        self._remove_unnamed_rows(record)
        return target

    def remove(self, name):
        """Take `name` out of the gallery."""
        with utils.folder_lock(self.gallery, "the gallery"):
            record = self._record()
            if name not in record["speakers"]:
                raise utils.PipelineError(f"{name!r} is not enrolled in {self.gallery} (enrolled: "
                                          f"{', '.join(sorted(record['speakers'])) or 'nobody'})")
            del record["speakers"][name]
            utils.write_json(self.gallery / "gallery.json", record)
            self._remove_unnamed_rows(record)

    def _rows_file(self, name, record):
        """The file of `name`'s rows: the one its record names (<name>.npy in galleries enrolled before)."""
        return self.gallery / record["speakers"][name].get("rows_file", f"{name}.npy")

    def _remove_unnamed_rows(self, record):
        """Delete the rows files no enrolment names (replaced ones, and those of a killed enroll or remove), and the
        temporary files of a killed one (called under the gallery's lock: no other command is writing them)."""
        named = {self._rows_file(n, record).name for n in record["speakers"]}
        for path in self.gallery.glob("*.npy"):
            if path.name not in named:
                path.unlink(missing_ok=True)
        utils.remove_stale_temporaries(self.gallery)

    def listing(self):
        """{name: number of recordings enrolled} of the gallery."""
        return {name: len(entry["files"]) for name, entry in sorted(self._record()["speakers"].items())}

    def _rows(self, name, record=None):
        """The per-recording embeddings of `name`, checked: the file its record names, as it was written (sha256,
        one row per enrolled file), readable, finite unit vectors of this model's size."""
        record = record or self._record()
        entry = record["speakers"][name]
        path = self._rows_file(name, record)
        fix = f"Enrol {name} again with `python ml/3_embed_verify_identify.py enroll --replace {name} FILE...`"
        # Read once, then hash and decode the bytes read: an enroll may replace the file at any moment, and a file
        # gone by now is then a CorruptFile, which enrolled() answers by reading the record again.
        data = utils.read_checked(path, lambda p: Path(p).read_bytes(), f"the embeddings of {name}", fix)
        if "sha256" in entry and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise utils.CorruptFile(f"{path} is not the file enrolled for {name} (its sha256 differs from the "
                                    f"gallery's record); {fix[0].lower() + fix[1:]}")
        rows = utils.read_checked(path, lambda _: np.load(io.BytesIO(data), allow_pickle=False),
                                  f"the embeddings of {name}", fix)
        rows = rows[None, :] if rows.ndim == 1 else rows
        size = self.model.get_layer("embeddings").output.shape[-1]
        if (rows.ndim != 2 or rows.shape[1] != size or not np.all(np.isfinite(rows))
                or np.any(np.abs(np.linalg.norm(rows, axis=1) - 1) > 1e-3)):
            raise utils.CorruptFile(f"{path} holds no valid embedding (not finite unit vectors of this model's "
                                    f"size, {size}); {fix[0].lower() + fix[1:]}")
        if "sha256" in entry and len(rows) != len(entry["files"]):
            raise utils.CorruptFile(f"{path} holds {len(rows)} embeddings for the {len(entry['files'])} files "
                                    f"enrolled for {name}; {fix[0].lower() + fix[1:]}")
        return rows

    def enrolled(self):
        """{name: pooled embedding} of the gallery, each checked. An enroll that finishes while this reads replaces
        a rows file: the record is read again (a few times) rather than the gallery called damaged."""
        for attempt in range(5):
            record = self._record()
            try:
                return {name: embeddings.pool(self._rows(name, record)) for name in sorted(record["speakers"])}
            except utils.CorruptFile:
                if attempt == 4 or self._record() == record:  # the record did not change: the damage is real
                    raise
                time.sleep(0.05)

    def identify(self, path, gallery=None):
        """(best-matching enrolled name, or "unknown" below the threshold; {name: score} best first).

        `gallery` ({name: embedding}, from enrolled()) saves reading the gallery again for every file.
        """
        gallery = self.enrolled() if gallery is None else gallery
        if not gallery:
            raise utils.PipelineError(f"the gallery {self.gallery} is empty: enroll speakers first")
        vector = self.embed(path)
        values = self.scores(vector, np.stack(list(gallery.values())))
        scores = dict(sorted(zip(gallery, map(float, values)), key=lambda x: -x[1]))
        best = next(iter(scores))
        return (best if scores[best] >= self.threshold() else UNKNOWN), scores
