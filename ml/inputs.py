"""Train/test inputs of the training speakers, built from the feature cache and held without repetition.

Per speaker, utterances in sorted order are split TRAIN_TEST_RATIO train / rest test; from each split,
MAX_COUNT_PER_CLASS random segments (two uniform cut points in a random utterance) are cut, and every
segment yields its windows of FRAMES_PER_WINDOW frames, WINDOW_HOP_FRAMES apart. With SPEED_PERTURBATION,
each speed copy of a speaker's training utterances is a class of its own after the real speakers (train
split only; its segments come from a generator of their own, so the real speakers' windows are the same
with and without copies). The original stored
every 390-value window as float64 (16 GB for VCTK); here each split keeps its frames once, normalised,
as float32, plus the first-frame index, speaker label and utterance of every window. A window is
gathered from the frames when a batch needs it.

Written to the inputs folder of the work directory: data.npz (arrays), norm.json (normalisation
statistics for every speaker) and inputs.json (what built them; written last, so it marks completion).
"""
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import constants
import utils
from audio import features
from ml import normalization, speed_copies

INPUT_SETTINGS = ("SPLIT", "NUM_SPEAKERS_CLASSIFICATION_TASK", "VALIDATION_FRACTION", "TRAIN_TEST_RATIO",
                  "MAX_COUNT_PER_CLASS",
                  "FRAMES_PER_WINDOW", "WINDOW_HOP_FRAMES", "NORMALIZATION", "SEED", "SPEED_PERTURBATION",
                  "SPEED_PERTURBATION_UTTERANCES")
ARRAYS = ("frames", "starts", "labels", "utterances", "utterance_keys")
INDEX_ARRAYS = ARRAYS[1:]  # in data.npz; each split's frames are <split>_frames.npy, memory-mappable


@dataclass
class WindowSet:
    """The windows of one split: frames once, and per window its first frame, speaker label, utterance."""
    frames: np.ndarray  # (num_frames, 39) float32, normalised
    starts: np.ndarray  # (num_windows,) int32, first frame of each window in `frames`
    labels: np.ndarray  # (num_windows,) int32, speaker index
    utterances: np.ndarray  # (num_windows,) int32, index into utterance_keys
    utterance_keys: np.ndarray  # (num_utterances,) str

    def __len__(self):
        return len(self.starts)

    def windows(self, index=slice(None)):
        """(n, FRAMES_PER_WINDOW, 39) float32 copy of the selected windows (from streamed inputs, read from the
        file: features.gather_windows)."""
        return features.gather_windows(self.frames, self.starts[index])

    def subset(self, index):
        """The WindowSet of the selected windows (sharing the frames)."""
        return WindowSet(self.frames, self.starts[index], self.labels[index], self.utterances[index],
                         self.utterance_keys)

    def nbytes(self):
        """Bytes held by the arrays."""
        return sum(getattr(self, name).nbytes for name in ARRAYS)


@dataclass
class Inputs:
    """Training speakers, the model's classes, the train and test windows, and the normalisation record.

    `classes` (label order) starts with `speakers`; speed copies ("p225@0.9") follow, in the train split
    only, so test labels are always real speakers and label < len(speakers) marks a real speaker.
    """
    speakers: list
    train: WindowSet
    test: WindowSet
    norm: dict
    classes: list = None
    record: dict = None  # what built them (inputs.json's "built_from"), when loaded from disk
    validation: WindowSet = None  # every window of every utterance of the validation speakers, or None

    def __post_init__(self):
        self.classes = list(self.speakers) if self.classes is None else list(self.classes)

    @property
    def input_shape(self):
        """(frames per window, features per frame) of the model's input."""
        return constants.FRAMES_PER_WINDOW, int(self.train.frames.shape[1])


# ----------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------
def split_utterances(keys, ratio=None):
    """(train keys, test keys): the first `ratio` of the sorted keys, at least one on each side."""
    ratio = constants.TRAIN_TEST_RATIO if ratio is None else ratio
    keys = sorted(keys)
    cut = min(max(int(len(keys) * ratio), 1), len(keys) - 1)
    return keys[:cut], keys[cut:]


def sample_segments(lengths, count, rng, min_frames=None):
    """`count` random segments (utterance, first frame, end frame) spanning at least `min_frames` frames.

    A segment is a random utterance cut at two uniform points; pairs too close to hold one window are drawn
    again (an utterance exactly one window long can only give itself).
    """
    min_frames = min_frames or constants.FRAMES_PER_WINDOW
    lengths = np.asarray(lengths)
    utterance = rng.integers(len(lengths), size=count)
    begin, end = np.zeros(count, np.int64), np.zeros(count, np.int64)
    todo = np.arange(count)
    for _ in range(1000):
        if todo.size == 0:
            break
        cuts = np.sort(rng.integers(0, lengths[utterance[todo]][:, None] + 1, size=(todo.size, 2)), axis=1)
        begin[todo], end[todo] = cuts[:, 0], cuts[:, 1]
        todo = todo[end[todo] - begin[todo] < min_frames]
    begin[todo], end[todo] = 0, lengths[utterance[todo]]
    return utterance, begin, end


def segment_window_starts(begin, end, frames_per_window=None, hop=None):
    """First frame of every window of every segment [begin, end), segment by segment, in order."""
    frames_per_window = frames_per_window or constants.FRAMES_PER_WINDOW
    hop = hop or constants.WINDOW_HOP_FRAMES
    counts = np.maximum((end - begin - frames_per_window) // hop + 1, 0)
    first_of_segment = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(counts.sum()) - first_of_segment
    return np.repeat(begin, counts) + hop * position, counts


# ----------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------
def usable_utterances(cache, corpus, speakers, short=None):
    """{speaker: sorted keys of its cached utterances at least one window long} for `speakers`; the cached
    ones that are too short (features.too_short) go into the dict `short` as {key: reason}."""
    usable = {}
    for speaker in speakers:
        keys = [u.key for u in corpus.utterances.get(speaker, []) if cache.has(u.key)]
        usable[speaker] = sorted(long_enough(cache, keys, short))
    return usable


def long_enough(cache, keys, short=None):
    """The cached `keys` whose utterances hold at least one window; the others go into `short`."""
    kept = []
    for key in keys:
        reason = features.too_short(cache.num_frames(key))
        if reason is None:
            kept.append(key)
        elif short is not None:
            short[key] = reason
    return kept


def build_split(cache, groups, progress=True, name="split"):
    """The WindowSet of one split, raw (not normalised) frames, and the utterances' frame offsets.

    `groups` is a list of ({class: keys}, generator): classes are labelled in order across the groups,
    and each group's segments are drawn from its own generator.
    """
    all_keys = [k for keys_by_class, _ in groups for keys in keys_by_class.values() for k in keys]
    lengths = np.array([cache.num_frames(k) for k in all_keys], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = np.empty((offsets[-1], 3 * constants.NUM_MFCC), np.float32)  # filled in place: no 2nd copy
    starts, labels, utterances = [], [], []
    classes = [(keys, rng) for keys_by_class, rng in groups for keys in keys_by_class.values()]
    first = 0
    for label, (keys, rng) in enumerate(utils.progress(classes, desc=f"{name} classes", unit="class", disable=not progress)):
        mine = slice(first, first + len(keys))
        for index in range(mine.start, mine.stop):
            frames[offsets[index]:offsets[index + 1]] = cache.load(all_keys[index])
        utterance, begin, end = sample_segments(lengths[mine], constants.MAX_COUNT_PER_CLASS, rng)
        local_starts, counts = segment_window_starts(begin, end)
        window_utterance = np.repeat(utterance, counts) + first
        starts.append((offsets[window_utterance] + local_starts).astype(np.int32))
        utterances.append(window_utterance.astype(np.int32))
        labels.append(np.full(len(local_starts), label, np.int32))
        first = mine.stop
    return WindowSet(frames, np.concatenate(starts), np.concatenate(labels),
                     np.concatenate(utterances), np.array(all_keys)), offsets


def _normalize_in_place(window_set, offsets, speakers_of_utterances, norm):
    """Normalise every utterance's frames of `window_set` in place with the norm's method."""
    for index, speaker in enumerate(speakers_of_utterances):
        block = window_set.frames[offsets[index]:offsets[index + 1]]
        block[:] = normalization.normalize(block, norm, speaker=speaker)


def trainable_speakers(usable, warn=True):
    """{speaker: usable keys} of the speakers with 2 usable utterances (one for train, one for test)."""
    for speaker, keys in usable.items():
        if len(keys) < 2 and warn:
            print(f"warning: speaker {speaker} has {len(keys)} usable utterance(s) and needs 2 (one "
                  f"for train, one for test): it is left out of training")
    return {s: keys for s, keys in usable.items() if len(keys) >= 2}


def split_validation(train_speakers, fraction=None):
    """(training speakers, validation speakers): a seeded choice of `fraction` (VALIDATION_FRACTION) of the
    training speakers, at least 2 when above 0 (an impostor trial needs two), never leaving fewer than 2."""
    fraction = constants.VALIDATION_FRACTION if fraction is None else fraction
    count = max(2, round(len(train_speakers) * fraction)) if fraction > 0 else 0
    if count == 0 or len(train_speakers) - count < 2:
        return list(train_speakers), []
    chosen = set(np.random.default_rng([constants.SEED, 3]).choice(sorted(train_speakers), count, replace=False))
    return [s for s in train_speakers if s not in chosen], [s for s in train_speakers if s in chosen]


def build_validation(cache, corpus, validation_speakers, norm):
    """The WindowSet of every window (WINDOW_HOP_FRAMES apart) of every usable utterance of the validation
    speakers, normalised; labels are the validation speakers' indices. None without validation speakers."""
    usable = {s: keys for s, keys in usable_utterances(cache, corpus, validation_speakers).items() if keys}
    if len(usable) < 2:
        return None
    keys = [k for s in usable for k in usable[s]]
    blocks = [normalization.normalize(cache.load(k), norm, speaker=s) for s in usable for k in usable[s]]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blocks])])
    starts = [features.window_starts(len(b)) + offsets[i] for i, b in enumerate(blocks)]
    speaker_index = {s: i for i, s in enumerate(usable)}
    labels = [np.full(len(st), speaker_index[s], np.int32) for st, s in zip(starts, [s for s in usable
                                                                                    for _ in usable[s]])]
    return WindowSet(np.concatenate(blocks).astype(np.float32), np.concatenate(starts).astype(np.int32),
                     np.concatenate(labels), np.repeat(np.arange(len(keys), dtype=np.int32), [len(st) for st in starts]),
                     np.array(keys))


def build_inputs(cache, corpus, train_speakers, unseen_speakers, progress=True, validation_speakers=(), plan=None):
    """Inputs of `train_speakers` (those without two usable utterances are dropped, with a warning), with
    the speed-copy classes of `plan` (default: speed_copies.plan) whose features are cached, and the windows
    of the validation speakers."""
    validation_speakers = list(validation_speakers)
    short = {}
    usable = trainable_speakers(usable_utterances(cache, corpus, train_speakers, short))
    if short:
        print(f"inputs: {len(short)} training utterance(s) shorter than one window left out, e.g. "
              f"{next(iter(short))}: {next(iter(short.values()))}")
    dropped = [s for s in train_speakers if s not in usable]
    if len(usable) < 2:
        raise utils.PipelineError(f"only {len(usable)} training speaker(s) have usable audio; a speaker "
                                  f"classifier needs at least 2")
    halves = {s: split_utterances(keys) for s, keys in usable.items()}
    plan = speed_copies.plan(cache, corpus, train_speakers) if plan is None else plan
    copies = speed_copies.classes(cache, plan)
    rng = np.random.default_rng(constants.SEED)
    groups = [({s: h[0] for s, h in halves.items()}, rng), (copies, np.random.default_rng([constants.SEED, 2]))]
    train, train_offsets = build_split(cache, groups, progress, "train")
    test, test_offsets = build_split(cache, [({s: h[1] for s, h in halves.items()}, rng)], progress, "test")

    speaker_of = {k: s for s, keys in usable.items() for k in keys}
    speaker_of.update({k: features.split_speed_key(name)[0] for name, keys in copies.items() for k in keys})
    train_blocks = {s: [] for s in usable}
    real = {k for h in halves.values() for k in h[0]}
    for index, key in enumerate(train.utterance_keys):  # the statistics come from the real utterances only
        if key in real:
            train_blocks[speaker_of[key]].append(train.frames[train_offsets[index]:train_offsets[index + 1]])
    others = usable_utterances(cache, corpus, [s for s in unseen_speakers + dropped + validation_speakers])
    other_blocks = {s: (cache.load(k) for k in keys) for s, keys in others.items() if keys}
    norm = normalization.fit(train_blocks, other_blocks)
    _normalize_in_place(train, train_offsets, [speaker_of[k] for k in train.utterance_keys], norm)
    _normalize_in_place(test, test_offsets, [speaker_of[k] for k in test.utterance_keys], norm)
    validation = build_validation(cache, corpus, validation_speakers, norm)
    return Inputs(list(usable), train, test, norm, list(usable) + list(copies), validation=validation)


# ----------------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------------
def corpus_cache(corpus, built_from):
    """The feature cache of `corpus` (a FeatureCache); PipelineError when it is not the cache the inputs were built
    from (`built_from`, inputs.json's record: another corpus path, or other feature settings)."""
    from audio.cache import FeatureCache
    cache = FeatureCache(corpus.root)
    if (built_from or {}).get("cache") != cache.folder.name:
        raise utils.PipelineError(f"the corpus at {corpus.root} (VCTK_CORPUS_PATH) is not the one the inputs were "
                                  f"built from (another path or other feature settings): point VCTK_CORPUS_PATH at "
                                  f"that corpus, or rebuild the inputs with `python ml/0_generate_inputs.py` and "
                                  f"retrain")
    return cache


def checked_corpus(built_from):
    """(the corpus, the digest of its audio now); PipelineError naming the fix when the corpus is not the one the inputs were built from (corpus_cache), or a
    corpus file was added, removed from the cache, or changed since stage 0 cached the features: the inputs' record
    (and so a report's) cannot know it yet. Stages 2 and 4 call it before they show a stored report or compute one
    (stage 4's conversations are made of the corpus's audio itself).

    Speakers added or removed refuse too when they change the split (SPLIT "auto" takes them in sorted order): the
    unseen speakers evaluated would not be the inputs' ones.

    The digest covers every corpus file as it is now (key, size, time: corpus_audio_digest). The reports of stages 2
    and 4 record it: a file removed since stage 0 is in no digest of the inputs yet, and stage 4's conversations also
    read files the inputs leave out (utterances too short for a window). The corpus is the one they then evaluate
    (its split is the inputs' one): it is walked once."""
    from audio.corpus import find_corpus
    corpus = find_corpus()
    train, validation, unseen = corpus_split(corpus)
    built = {k: list((built_from or {}).get(k) or []) for k in ("train_speakers", "unseen_speakers", "validation_speakers")}
    if built != {"train_speakers": train, "unseen_speakers": unseen, "validation_speakers": validation}:
        raise utils.PipelineError(f"the corpus's speakers changed since stage 0 built the inputs (the split is now "
                                  f"{len(train)} training, {len(validation)} validation, {len(unseen)} unseen against "
                                  f"{len(built['train_speakers'])}, {len(built['validation_speakers'])}, "
                                  f"{len(built['unseen_speakers'])}): restore the corpus, or run "
                                  f"`python ml/0_generate_inputs.py` and retrain")
    utterances = [u for us in corpus.utterances.values() for u in us]
    corpus_cache(corpus, built_from).check_current(utterances)
    return corpus, corpus_audio_digest(utterances)


def corpus_audio_digest(utterances):
    """A digest of `utterances` (corpus Utterances) and their audio files (size, time) as they are now: another
    digest when one is added, removed or replaced, whether or not the inputs use it."""
    from audio.cache import stamp
    return _digest(sorted(f"{u.key} {stamp(u.path)}" for u in utterances))


def _digest(lines):
    """The sha1 of `lines` joined by newlines: the inputs' and reports' records of what they were made of."""
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def corpus_split(corpus):
    """(training, validation, unseen speakers) of `corpus` under SPLIT, as stage 0 builds the inputs of them."""
    from audio.corpus import split_speakers
    train, unseen = split_speakers(corpus.speakers)
    train, validation = split_validation(train)
    return train, validation, unseen


def inputs_folder():
    """The inputs folder of the work directory."""
    return utils.work_path("inputs")


# Digests of every speaker's utterances and audio files, the unseen speakers' too: all that earlier versions recorded,
# kept so that their runs are still recognised (same_inputs).
ALL_SPEAKER_DIGESTS = ("utterances_digest", "sources_digest")
# The same split in two: what a run trains on, and the unseen speakers' utterances, which only evaluation reads.
SPLIT_DIGESTS = ("training_sources_digest", "unseen_sources_digest")


def expected_record(cache, corpus, train_speakers, unseen_speakers, validation_speakers=(), plan=None):
    """What the inputs built now would be made of; inputs whose record matches it are current.

    Each digest names utterances and, with "sources", the audio file (size, time) each was cached from: a replaced
    or damaged file gives other inputs. "training_sources_digest" covers what a run trains on (the training and
    validation speakers' utterances and the speed copies), "unseen_sources_digest" the unseen speakers' (read by
    evaluation only), and "utterances_digest" and "sources_digest" all of them, as earlier versions recorded.
    """
    keys = usable_utterances(cache, corpus, train_speakers + unseen_speakers + list(validation_speakers))
    plan = speed_copies.plan(cache, corpus, train_speakers) if plan is None else plan
    copies = speed_copies.classes(cache, plan)
    copied = [k for name in copies for k in copies[name]]
    listed = [k for s in sorted(keys) for k in keys[s]] + copied
    unseen = [k for s in sorted(keys) if s in unseen_speakers for k in keys[s]]
    trained = [k for s in sorted(keys) if s not in unseen_speakers for k in keys[s]] + copied
    recorded = cache.sources()  # each key's audio file (size, time) as cached: a replaced file gives other inputs

    def sources(listed_keys):
        return _digest(f"{k} {recorded.get(k)}" for k in listed_keys)

    return {"settings": utils.settings_snapshot(INPUT_SETTINGS + tuple(features.feature_settings())),
            "cache": cache.folder.name,
            "train_speakers": list(train_speakers), "unseen_speakers": list(unseen_speakers),
            "validation_speakers": list(validation_speakers),
            "utterances_digest": _digest(listed), "sources_digest": sources(listed),
            "training_sources_digest": sources(trained), "unseen_sources_digest": sources(unseen)}


def _without(record, names):
    """`record` less the keys `names`."""
    return {k: v for k, v in record.items() if k not in names}


def same_inputs(trained_on, built_from):
    """Whether a run trained on inputs recorded as `trained_on` was trained on the inputs `built_from` describes.

    A run is what it was trained on: the settings, the speakers, and the training and validation speakers'
    utterances and audio files ("training_sources_digest"). The unseen speakers' audio is no part of it: stage 0
    rebuilds the inputs when an unseen file goes bad or is replaced, and that must not make every run trained on the
    very same frames start again; stage 2 checks the unseen utterances against the cache and refuses a report of
    other unseen audio. The exception is per_speaker normalisation: the run keeps each unseen speaker's statistics
    (its norm.json) and evaluates with them, so there the unseen audio stays part of it.

    Records of earlier versions digest every speaker's audio at once ("utterances_digest", "sources_digest"): they
    match while those do, and a change to any file, an unseen one too, makes them differ (they cannot tell which;
    earlier_record_changed names that case). One recorded before the inputs named their audio files (no
    "sources_digest") is judged on the rest.
    """
    if trained_on == built_from:
        return True
    if not (isinstance(trained_on, dict) and isinstance(built_from, dict)):
        return False
    if "training_sources_digest" in trained_on:
        ignored = set(ALL_SPEAKER_DIGESTS)
        if (trained_on.get("settings") or {}).get("NORMALIZATION") != "per_speaker":
            ignored.add("unseen_sources_digest")
        return _without(trained_on, ignored) == _without(built_from, ignored)
    ignored = set(SPLIT_DIGESTS) | ({"sources_digest"} if "sources_digest" not in trained_on else set())
    return _without(built_from, ignored) == trained_on


def earlier_record_changed(trained_on, built_from):
    """Whether `trained_on`, recorded by an earlier version, differs from `built_from` in its all-speaker digests
    alone: some corpus file changed, maybe only an unseen speaker's, which that record cannot tell apart."""
    if not (isinstance(trained_on, dict) and isinstance(built_from, dict)) or "training_sources_digest" in trained_on \
            or same_inputs(trained_on, built_from):
        return False
    return _without(built_from, SPLIT_DIGESTS + ALL_SPEAKER_DIGESTS) == _without(trained_on, ALL_SPEAKER_DIGESTS)


EARLIER_RECORD = ("its record of them, written by an earlier version, digests every speaker's audio, the unseen "
                  "speakers' too, and a corpus file has changed since, so it cannot tell whether its training audio "
                  "did")
RESTORE = ("restore the changed corpus file as it was (its modification time too, as `cp -p` keeps it) and run "
           "`python ml/0_generate_inputs.py`")

REBUILD = "rebuild them with `python ml/0_generate_inputs.py --force`"
NORM_KEYS = ("method", "global", "global_per_coefficient", "per_speaker")


def read_record(folder=None):
    """The inputs.json record of `folder` (None when absent); PipelineError naming the fix when corrupt."""
    folder = Path(folder or inputs_folder())
    def built_from_problem(record):
        problem = utils.record_problem(record["built_from"], {"settings": dict})
        return problem and f"its built_from: {problem}"

    return utils.read_json(folder / "inputs.json", what="the record of the inputs (what built them)",
                           fix=REBUILD[0].upper() + REBUILD[1:], check=built_from_problem,
                           keys={"built_from": dict, "files": dict, "classes": list, "input_shape": list})


def is_current(record, folder=None):
    """Whether the inputs folder holds complete, intact inputs built from `record`."""
    return stale_reason(record, folder) is None


def stale_reason(record, folder=None):
    """Why the inputs folder does not hold complete, intact inputs built from `record`; None when it does.

    Intact means data.npz and norm.json have the sizes and sha256 that inputs.json recorded when they were
    written; a damaged or unreadable file makes the inputs not current, and stage 0 rebuilds them.
    """
    folder = Path(folder or inputs_folder())
    try:
        stored = read_record(folder)
    except utils.PipelineError as error:
        return str(error)
    if stored is None:
        return "there are none yet"
    built_from = stored.get("built_from") if isinstance(stored.get("built_from"), dict) else {}
    if built_from != record:
        settings = [n for n, *_ in utils.settings_mismatches(built_from.get("settings", {}))]
        changed = sorted(k for k in record if built_from.get(k) != record[k])
        if not settings and set(changed) <= set(SPLIT_DIGESTS) and "training_sources_digest" not in built_from:
            return "an earlier version recorded them without telling the training speakers' audio from the unseen ones'"
        return f"they were built from other {', '.join(settings) or ', '.join(changed)}"
    if not stored.get("files"):
        return "inputs.json records no files"
    for name, (size, digest) in stored["files"].items():
        path = folder / name
        if not path.is_file() or utils.file_digest(path) != (size, digest):
            return f"{path} is missing or damaged (its size or sha256 differs from inputs.json)"
    if "train_frames.npy" not in stored["files"]:
        return "they hold the frames inside data.npz (an older layout that cannot be streamed)"
    return None


def save_inputs(inputs, record, folder=None):
    """Write data.npz, norm.json, then inputs.json (the completion mark), each atomically."""
    folder = utils.ensure_writable_dir(folder or inputs_folder())
    (folder / "inputs.json").unlink(missing_ok=True)  # until the new data is complete, nothing is current
    arrays = {"speakers": np.array(inputs.speakers), "classes": np.array(inputs.classes)}
    names = ["data.npz", "norm.json"]
    for split in ("train", "test", "validation"):
        part = getattr(inputs, split)
        (folder / f"{split}_frames.npy").unlink(missing_ok=True)
        if part is not None:
            for name in INDEX_ARRAYS:
                arrays[f"{split}_{name}"] = getattr(part, name)
            utils.save_array(folder / f"{split}_frames.npy", np.ascontiguousarray(part.frames, np.float32))
            names.append(f"{split}_frames.npy")
    with utils.atomic_path(folder / "data.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    utils.write_json(folder / "norm.json", inputs.norm)
    files = {name: list(utils.file_digest(folder / name)) for name in names}
    utils.write_json(folder / "inputs.json", {"built_from": record, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                                              "speakers": inputs.speakers, "summary": describe(inputs),
                                              "files": files, "code_version": utils.code_version(),
                                              "classes": inputs.classes, "input_shape": list(inputs.input_shape)})


def checked_record(folder=None):
    """The inputs.json record, refused in one line when the inputs are missing or the settings changed since."""
    folder = Path(folder or inputs_folder())
    record = read_record(folder)
    if record is None or not (folder / "data.npz").exists():
        raise utils.PipelineError(f"no inputs in {folder}: run `python ml/0_generate_inputs.py` first")
    utils.refuse_changed_settings(record["built_from"]["settings"], f"the inputs in {folder}",
                                  "rebuild them with `python ml/0_generate_inputs.py`")
    for name, (size, _) in record.get("files", {}).items():
        if not (folder / name).is_file() or (folder / name).stat().st_size != size:
            raise utils.CorruptFile(f"{folder / name} is missing or truncated (inputs.json recorded {size:,} bytes); "
                                    f"{REBUILD}")
    return record


def streams(folder=None, record=None):
    """Whether the inputs in `folder` are read from disk as needed (memory-mapped frames) rather than held in
    memory: STREAM_INPUTS "yes", or "auto" when their frames exceed INPUTS_MEMORY_BUDGET_MB."""
    if constants.STREAM_INPUTS != "auto":
        return constants.STREAM_INPUTS == "yes"
    folder = Path(folder or inputs_folder())
    record = record or read_record(folder) or {}
    frames = sum(size for name, (size, _) in record.get("files", {}).items() if name.endswith("_frames.npy"))
    return frames > constants.INPUTS_MEMORY_BUDGET_MB * 1e6


def load_inputs(folder=None, stream=None, expected=None):
    """The Inputs saved in `folder` (default: the work directory's); PipelineError if there are none, if they
    were built with other settings than the current ones, or if a file is damaged. With `stream` (default:
    streams()), each split's frames are memory-mapped, not read into memory.

    `expected` is the inputs.json record a command checked before (checked_record): inputs that stage 0 rebuilt
    since, or rebuilds while they load, are refused, not used under the record of the old ones."""
    folder = Path(folder or inputs_folder())
    rebuilt = utils.PipelineError(f"the inputs in {folder} were rebuilt (python ml/0_generate_inputs.py) after this "
                                  f"command checked them: run it again")
    record = checked_record(folder)
    if expected is not None and record != expected:
        raise rebuilt
    try:
        inputs = _load_checked(folder, record, stream)
    except utils.PipelineError:
        if read_record(folder) != record:  # the files changed under the load: stage 0 rewrote them
            raise rebuilt from None
        raise
    if read_record(folder) != record:
        raise rebuilt
    return inputs


def _load_checked(folder, record, stream):
    """The Inputs of `folder`, whose checked inputs.json is `record`."""
    stream = streams(folder, record) if stream is None else stream
    fix = REBUILD[0].upper() + REBUILD[1:]

    def read(path):
        with np.load(path, allow_pickle=False) as data:
            splits = {}
            for split in ("train", "test", "validation"):
                if f"{split}_starts" not in data:
                    continue
                arrays = {name: data[f"{split}_{name}"] for name in INDEX_ARRAYS}
                if f"{split}_frames" in data:  # the older layout: frames inside data.npz, held in memory
                    arrays["frames"] = data[f"{split}_frames"]
                else:
                    name = f"{split}_frames.npy"
                    if stream:  # hashed through the descriptor the windows will be read with
                        try:
                            arrays["frames"] = features.readable_map(folder / name, record["files"].get(name))
                        except OSError as error:
                            raise utils.CorruptFile(f"{error}; {REBUILD}") from None
                    else:
                        if list(utils.file_digest(folder / name)) != record["files"].get(name):  # no CRC, unlike .npz
                            raise utils.CorruptFile(f"{folder / name} is damaged (its sha256 differs from inputs.json);"
                                                    f" {REBUILD}")
                        arrays["frames"] = utils.read_checked(folder / name, lambda p: np.load(p, allow_pickle=False),
                                                              f"the {split} frames", fix)
                splits[split] = WindowSet(**arrays)
            return splits, data["speakers"].tolist(), data["classes"].tolist()
    splits, speakers, classes = utils.read_checked(folder / "data.npz", read, "the train/test inputs", fix)
    norm = read_norm(folder, record)
    return Inputs(speakers, splits["train"], splits["test"], norm, classes, record["built_from"],
                  splits.get("validation"))


def read_norm(folder=None, record=None):
    """The normalisation record of the inputs (norm.json), checked: against the sha256 inputs.json recorded for it
    (`record`, or the folder's), and its keys."""
    folder = Path(folder or inputs_folder())
    record = record or read_record(folder) or {}
    expected = (record.get("files") or {}).get("norm.json")
    if expected and (folder / "norm.json").is_file() and list(utils.file_digest(folder / "norm.json")) != expected:
        raise utils.CorruptFile(f"{folder / 'norm.json'} is damaged (its sha256 differs from inputs.json); {REBUILD}")
    norm = utils.read_json(folder / "norm.json", what="the normalisation statistics of the inputs",
                           fix=REBUILD[0].upper() + REBUILD[1:], keys=NORM_KEYS)
    return norm


def describe(inputs):
    """Shapes and counts of the inputs, as a dict for the record and the terminal."""
    width = constants.FRAMES_PER_WINDOW * inputs.train.frames.shape[1]
    summary = {"speakers": len(inputs.speakers), "classes": len(inputs.classes), "normalization": inputs.norm["method"]}
    for split in ("train", "test", "validation"):
        part = getattr(inputs, split)
        if part is None:
            continue
        summary[split] = {"windows": [len(part), width], "frames": list(part.frames.shape),
                          "utterances": len(part.utterance_keys), "mebibytes": round(part.nbytes() / 2**20, 1)}
    return summary
