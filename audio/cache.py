"""The on-disk feature cache: one float32 .npy file of (frames, 39) per utterance (and per speed copy).

The cache folder's name is a fingerprint of the feature settings and of the corpus root, and the folder
records both in settings.json, so a change in constants.py (or another corpus) gets a cache of its own.
Building runs over all cores, resumes (finished files are kept; each file is written under a temporary
name and renamed), and never stops for one bad file: those are skipped and reported with the reason.
Files are read with numpy's pickle-free loader, so a cache file cannot execute code.
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

    def path(self, key):
        """The .npy file of the utterance `key`."""
        return self.folder / f"{key}.npy"

    def has(self, key):
        """Whether the utterance's features are cached."""
        return self.path(key).is_file()

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
        keys = [(features.speed_key(u.key, factor), u, factor) for u, factor in items]
        todo = [(key, str(u.path), str(self.path(key)), factor) for key, u, factor in keys if not self.has(key)]
        report.already_cached = report.total - len(todo)
        workers = min(_worker_count(workers), max(len(todo), 1))
        start = time.perf_counter()
        results = _run_jobs(todo, workers)
        for key, reason, seconds in utils.progress(results, total=len(todo), desc="features", unit="utt",
                                          disable=not progress or not todo):
            if reason is None:
                report.built += 1
                report.audio_seconds += seconds
            else:
                report.skipped[key] = reason
        report.seconds = time.perf_counter() - start
        return report


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
