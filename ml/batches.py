"""Batches: softmax batches for Keras (WindowBatches) and triplet batches (TripletSampler of windows, the
original's; SegmentSampler of segments), their windows gathered from the frames of a split when a batch is asked
for."""
import utils

utils.import_tensorflow_quietly()  # before Keras: TensorFlow's C++ start-up lines say nothing useful
import keras  # noqa: E402
import numpy as np  # noqa: E402

import constants  # noqa: E402
from audio import features  # noqa: E402
from ml.augmentation import random_shifts  # noqa: E402


class WindowBatches(keras.utils.PyDataset):
    """(windows, {"softmax": labels, "embeddings": placeholder}) batches of one WindowSet.

    Like the original, an epoch covers the windows truncated to a multiple of the batch size; with
    `shuffle`, each epoch's order is drawn from a generator seeded with (seed, epoch), and each batch's
    level shifts (`shift_stds` > 0, training batches: ml/augmentation.py) from one seeded with (seed, epoch,
    batch), so a run resumed at epoch e sees the batches an uninterrupted run would. EpochTracker tells the
    batches which epoch Keras is in (fit with shuffle=False: the order is ours).
    """

    def __init__(self, window_set, batch_size=None, shuffle=True, seed=None, shift_stds=0.0):
        super().__init__()
        self.shift_stds = shift_stds
        self.window_set = window_set
        self.batch_size = batch_size or constants.BATCH_SIZE
        self.shuffle = shuffle
        self.seed = constants.SEED if seed is None else seed
        self.set_epoch(0)

    def __len__(self):
        return max(len(self.window_set) // self.batch_size, 1)

    def __getitem__(self, index):
        chosen = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])  # sorted: faster gather
        labels = self.window_set.labels[chosen]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        windows = random_shifts(self.window_set.windows(chosen), rng, self.shift_stds)
        return windows, {"softmax": labels, "embeddings": np.zeros((len(chosen), 1), np.float32)}

    def set_epoch(self, epoch):
        """Draw the order of `epoch` (0-based)."""
        self.epoch = epoch
        self.order = np.arange(len(self.window_set))
        if self.shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(self.order)


class EpochTracker(keras.callbacks.Callback):
    """Set the epoch of WindowBatches when Keras begins it (Keras fetches an epoch's batches after this)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


class TripletSampler:
    """Triplet batches of one split: anchors and positives of a speaker A, negatives of another speaker B.

    The original drew one pair (A, B) per batch; TRIPLET_PAIRS_PER_BATCH pairs share the batch equally.
    """

    def __init__(self, window_set, rng, shift_stds=0.0):
        self.window_set, self.rng, self.shift_stds = window_set, rng, shift_stds
        self.by_speaker = [np.flatnonzero(window_set.labels == k) for k in range(window_set.labels.max() + 1)]
        self.by_speaker = [windows for windows in self.by_speaker if len(windows)]

    def batch(self, size=None, rng=None):
        """(windows, speaker labels) of size anchors + size positives + size negatives (drawn with `rng`, else
        the sampler's own generator)."""
        if rng is not None:
            self.rng = rng
        size = size or constants.BATCH_SIZE // 3
        pairs = max(min(constants.TRIPLET_PAIRS_PER_BATCH, size), 1)
        parts = [[], [], []]
        for count in np.diff(np.linspace(0, size, pairs + 1).astype(int)):
            a, b = self.rng.choice(len(self.by_speaker), 2, replace=False)
            own, other = self.by_speaker[a], self.by_speaker[b]
            anchors_positives = self.rng.choice(own, 2 * count, replace=len(own) < 2 * count)
            parts[0].append(anchors_positives[:count])
            parts[1].append(anchors_positives[count:])
            parts[2].append(self.rng.choice(other, count, replace=len(other) < count))
        return self.drawn(np.concatenate([np.concatenate(part) for part in parts]))

    def drawn(self, chosen):
        """(windows, labels) of the chosen windows, their levels shifted when augmenting."""
        return random_shifts(self.window_set.windows(chosen), self.rng, self.shift_stds), self.window_set.labels[chosen]


class SegmentSampler:
    """Batches of segments for the segment triplet loss (TRIPLET_SELECTION = "segments", ml/triplet_loss.py).

    A segment is TRIPLET_SEGMENT_WINDOWS consecutive windows (WINDOW_HOP_FRAMES apart, as an utterance's are
    embedded) of one utterance, from a uniform start; a batch is TRIPLET_SEGMENTS_PER_SPEAKER segments of each of
    as many distinct classes as fit in BATCH_SIZE windows (a multiple of `replicas`), class by class, segment by
    segment. An utterance's
    segment starts between its first and last window of the split, so every window lies within its frames;
    utterances shorter than a segment are not drawn.
    """

    def __init__(self, window_set, rng, shift_stds=0.0, replicas=1):
        self.window_set, self.rng, self.shift_stds = window_set, rng, shift_stds
        self.windows_per_segment = constants.TRIPLET_SEGMENT_WINDOWS
        self.span = constants.WINDOW_HOP_FRAMES * (self.windows_per_segment - 1)
        count = int(window_set.utterances.max()) + 1 if len(window_set) else 0
        first = np.full(count, np.iinfo(np.int64).max)
        last = np.full(count, -1, np.int64)
        np.minimum.at(first, window_set.utterances, window_set.starts)
        np.maximum.at(last, window_set.utterances, window_set.starts)
        label = np.full(count, -1, np.int64)
        label[window_set.utterances] = window_set.labels
        long_enough = (last >= 0) & (last - first >= self.span)
        self.first, self.room = first, last - first - self.span
        by_class = {}
        for utterance in np.flatnonzero(long_enough):
            by_class.setdefault(int(label[utterance]), []).append(utterance)
        self.class_ids = np.array(sorted(by_class), np.int32)  # the classes that have a segment's worth of audio
        self.by_class = [np.array(by_class[c]) for c in self.class_ids]
        # as many classes as the batch holds and the split has, a multiple of the replicas (each takes whole classes)
        classes = min(constants.BATCH_SIZE // (self.windows_per_segment * constants.TRIPLET_SEGMENTS_PER_SPEAKER),
                      len(self.by_class))
        self.classes_per_batch = classes - classes % replicas
        if self.classes_per_batch < 2 * replicas:
            raise utils.PipelineError(
                f"segment triplets need {2 * replicas} classes ({'two per device' if replicas > 1 else 'two'}) with an "
                f"utterance of at least one segment ({self.windows_per_segment} windows, "
                f"{self.span + constants.FRAMES_PER_WINDOW} frames); {len(self.by_class)} have one: lower "
                f"TRIPLET_SEGMENT_WINDOWS or use TRIPLET_SELECTION=original")

    def batch(self, size=None, rng=None):
        """(windows, per-window class labels) of one batch, drawn with `rng` (else the sampler's generator)."""
        if rng is not None:
            self.rng = rng
        per_class = constants.TRIPLET_SEGMENTS_PER_SPEAKER
        classes = self.rng.choice(len(self.by_class), self.classes_per_batch, replace=False)
        utterances = np.concatenate([self.rng.choice(self.by_class[c], per_class) for c in classes])
        begin = self.first[utterances] + self.rng.integers(0, self.room[utterances] + 1)
        starts = (begin[:, None] + constants.WINDOW_HOP_FRAMES * np.arange(self.windows_per_segment)).reshape(-1)
        windows = random_shifts(features.gather_windows(self.window_set.frames, starts), self.rng, self.shift_stds)
        labels = np.repeat(np.repeat(self.class_ids[classes], per_class), self.windows_per_segment)
        return windows, labels
