"""The on-disk feature cache: one float32 .npy file of (frames, 39) per utterance (and per speed copy).

The cache folder's name is a fingerprint of the feature settings and of the corpus root, and the folder
records both in settings.json, so a change in constants.py (or another corpus) gets a cache of its own.
Building runs over all cores, resumes (finished files are kept; each file is written under a temporary
name and renamed), and never stops for one bad file: those are skipped and reported with the reason.
Files are read with numpy's pickle-free loader, so a cache file cannot execute code.

sources.json records, per cached key, the size and modification time (ns) of the audio file it was computed
from, skipped.json the same of each file that gave no features (and why): a corpus file replaced or edited since
is computed again by the next build, and check_current names changed, added or uncached files to the stages that
read the cache without building it.
"""
import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import threadpoolctl

import constants
import utils
from audio import features

CACHE_FORMAT = 1  # bump when the file layout changes, so old caches are not misread
REBUILD = "Delete it and run `python ml/0_generate_inputs.py`, which computes it again"


@dataclass
class BuildReport:
    """What one build did: counts, the skipped files with their reasons, time and audio duration."""
    total: int = 0
    already_cached: int = 0
    built: int = 0
    skipped: dict = field(default_factory=dict)  # key -> reason
    seconds: float = 0.0
    audio_seconds: float = 0.0

    def summary(self):
        """A few lines for the terminal, naming every skipped file and why."""
        speed = f", {self.audio_seconds / self.seconds:.0f}x real time" if self.built and self.seconds else ""
        lines = [f"feature cache: {self.total} utterances, {self.already_cached} cached before, "
                 f"{self.built} built in {self.seconds:.1f} s ({self.audio_seconds / 3600:.2f} h of audio"
                 f"{speed}), {len(self.skipped)} skipped"]
        lines += [f"  skipped {key}: {reason}" for key, reason in sorted(self.skipped.items())]
        return "\n".join(lines)


class FeatureCache:
    """The cache of one corpus under the current feature settings."""

    def __init__(self, corpus_root, cache_root=None):
        self.settings = {"format": CACHE_FORMAT, "corpus_root": str(corpus_root),
                         "features": features.feature_settings()}
        digest = hashlib.sha1(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:12]
        self.folder = Path(cache_root or utils.work_path("cache")) / f"features-{digest}"
        self._frames = {}  # key -> frames, filled by num_frames
        self._sources = None  # key -> [size, mtime_ns] of its audio when computed (sources.json), read when needed
        self._skipped = None  # key -> {"stamp", "reason"} of the audio files that gave no features (skipped.json)

    def path(self, key):
        """The .npy file of the utterance `key`."""
        return self.folder / f"{key}.npy"

    def has(self, key):
        """Whether the utterance's features are cached (from a source whose size and time are recorded)."""
        return key in self.sources() and self.path(key).is_file()

    def sources(self):
        """{key: [size, mtime_ns]} of the audio each cached key was computed from."""
        if self._sources is None:
            self._sources = utils.read_json(self.folder / "sources.json", default={},
                                            what="the feature cache's record of its audio files", fix=REBUILD)
        return self._sources

    def skipped(self):
        """{key: {"stamp": [size, mtime_ns], "reason": why}} of the audio files the last builds could not use."""
        if self._skipped is None:
            self._skipped = utils.read_json(self.folder / "skipped.json", default={},
                                            what="the feature cache's record of unusable audio files", fix=REBUILD)
        return self._skipped

    def missing(self, utterances):
        """The keys of `utterances` that are neither cached nor recorded as unusable, as their audio is now (added to
        the corpus, or their cache files removed, since the cache was built)."""
        skipped = self.skipped()
        return [u.key for u in utterances if not self.has(u.key)
                and (skipped.get(u.key) or {}).get("stamp") != stamp(u.path)]

    def check_current(self, utterances):
        """PipelineError when a cached one of `utterances` was computed from an audio file that has changed since,
        or the cache predates its record of audio files (stages that read the cache without building it)."""
        if not self.sources() and self.folder.is_dir() and next(self.folder.rglob("*.npy"), None) is not None:
            raise utils.PipelineError(f"the feature cache {self.folder} has no record of the audio files it was "
                                      f"computed from (made by an older version): run `python ml/0_generate_inputs.py`, "
                                      f"which brings it up to date")
        for keys, what in ((self.missing(utterances), "utterance(s) are not in the feature cache, added to the corpus or "
                                                       "their cache files removed since it was built"),
                           (self.changed(utterances), "corpus file(s) changed since their features were cached, which "
                                                      "stage 0 computes again (runs trained on them must be trained "
                                                      "again)")):
            if keys:
                shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
                raise utils.PipelineError(f"{len(keys)} {what} ({shown}): run `python ml/0_generate_inputs.py`")

    def changed(self, utterances):
        """The keys of `utterances` (corpus Utterances) cached from an audio file that has changed since."""
        sources = self.sources()
        return [u.key for u in utterances if u.key in sources and sources[u.key] != stamp(u.path)]

    def load(self, key):
        """(frames, 39) float32 features of the utterance `key` (pickle-free)."""
        return utils.read_checked(self.path(key), lambda p: np.load(p, allow_pickle=False), "a cached feature file",
                                  REBUILD)

    def num_frames(self, key):
        """Frames of the cached utterance `key`, read from the file's header (once: stage 0 asks several times)."""
        if key not in self._frames:
            self._frames[key] = utils.read_checked(self.path(key), lambda p: np.load(p, mmap_mode="r").shape[0],
                                                   "a cached feature file", REBUILD)
        return self._frames[key]

    def build(self, utterances, workers=None, progress=True, speed_copies=()):
        """Cache every utterance not cached yet, and each (utterance, factor) of `speed_copies` under
        features.speed_key(key, factor); return a BuildReport."""
        utils.ensure_writable_dir(self.folder)
        if not (self.folder / "settings.json").exists():
            utils.write_json(self.folder / "settings.json", self.settings)
        utils.remove_stale_temporaries(self.folder)

        items = [(u, 1.0) for u in utterances] + list(speed_copies)
        report = BuildReport(total=len(items))
        sources, skipped = self.sources(), self.skipped()
        stamps = {}  # taken before computing: a file changed while it is read is computed again next time
        todo = []
        for u, factor in items:
            key = features.speed_key(u.key, factor)
            stamps[key] = stamp(u.path)
            if not (self.path(key).is_file() and sources.get(key) == stamps[key]):
                todo.append((key, str(u.path), str(self.path(key)), factor))
        report.already_cached = report.total - len(todo)
        workers = min(_worker_count(workers), max(len(todo), 1))
        start = time.perf_counter()
        results = _run_jobs(todo, workers)
        last_write = time.monotonic()
        try:
            for key, reason, seconds in utils.progress(results, total=len(todo), desc="features", unit="utt",
                                              disable=not progress or not todo):
                if reason is None:
                    report.built += 1
                    report.audio_seconds += seconds
                    sources[key] = stamps[key]
                    skipped.pop(key, None)
                else:
                    report.skipped[key] = reason
                    sources.pop(key, None)
                    skipped[key] = {"stamp": stamps[key], "reason": reason}
                    self.path(key).unlink(missing_ok=True)  # a file that no longer gives features: none cached
                if time.monotonic() - last_write > 30:  # a killed build keeps what it recorded
                    self._write_records()
                    last_write = time.monotonic()
        finally:
            self._write_records()
        report.seconds = time.perf_counter() - start
        return report

    def _write_records(self):
        """sources.json and skipped.json, atomically each."""
        utils.write_json(self.folder / "sources.json", self.sources())
        utils.write_json(self.folder / "skipped.json", self.skipped())


def stamp(path):
    """[size, mtime_ns] of a file ([-1, -1] when it cannot be read): what tells a replaced corpus file."""
    try:
        info = os.stat(path)
    except OSError:
        return [-1, -1]
    return [info.st_size, info.st_mtime_ns]


def _worker_count(workers):
    """Processes to use: `workers`, else NUM_WORKERS, where 0 means one per available core."""
    workers = constants.NUM_WORKERS if workers is None else workers
    return workers if workers > 0 else len(os.sched_getaffinity(0))


def _run_jobs(todo, workers):
    """Yield the result of every job, in this process when one worker suffices, else from a pool."""
    settings = features.feature_settings()
    if workers <= 1:
        yield from map(_cache_one, todo)
        return
    # spawn, not fork: the caller may have TensorFlow loaded, whose threads do not survive a fork.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_use_settings, initargs=(settings,)) as pool:
        yield from pool.imap_unordered(_cache_one, todo, chunksize=max(1, min(16, len(todo) // (8 * workers))))


def _use_settings(settings):
    """Prepare a worker: one BLAS thread, and the feature settings of its parent (maybe not constants.py's)."""
    # The filterbank product inside python_speech_features is small: with one BLAS thread per core-sized
    # worker it runs ~7x faster than with threads that fight the other workers for the same cores.
    threadpoolctl.threadpool_limits(1)
    for name, value in settings.items():
        setattr(constants, name, value)


def _cache_one(job):
    """Compute and write one utterance's features; return (key, skip reason or None, audio seconds)."""
    key, source, target, factor = job
    try:
        signal = features.at_speed(features.load_audio(source), factor)
        frames = features.signal_features(signal, minimum=constants.MIN_VOICED_FRAMES)
    except features.UnusableAudio as reason:
        return key, str(reason), 0.0
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    utils.save_array(target, frames)
    return key, None, len(signal) / constants.SAMPLE_RATE
