"""Batches: softmax batches for Keras (WindowBatches) and triplet batches (TripletSampler), their windows
gathered from the frames of a split when a batch is asked for."""
import utils

utils.import_tensorflow_quietly()  # before Keras: TensorFlow's C++ start-up lines say nothing useful
import keras  # noqa: E402
import numpy as np  # noqa: E402

import constants  # noqa: E402
from ml.augmentation import random_level  # noqa: E402


class WindowBatches(keras.utils.PyDataset):
    """(windows, {"softmax": labels, "embeddings": placeholder}) batches of one WindowSet.

    Like the original, an epoch covers the windows truncated to a multiple of the batch size; with
    `shuffle`, each epoch's order is drawn from a generator seeded with (seed, epoch), and each batch's
    level shifts (`level_std` > 0, training batches: ml/augmentation.py) from one seeded with (seed, epoch,
    batch), so a run resumed at epoch e sees the batches an uninterrupted run would. EpochTracker tells the
    batches which epoch Keras is in (fit with shuffle=False: the order is ours).
    """

    def __init__(self, window_set, batch_size=None, shuffle=True, seed=None, level_std=0.0):
        super().__init__()
        self.level_std = level_std
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
        windows = random_level(self.window_set.windows(chosen), rng, self.level_std)
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

    def __init__(self, window_set, rng, level_std=0.0):
        self.window_set, self.rng, self.level_std = window_set, rng, level_std
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
        return random_level(self.window_set.windows(chosen), self.rng, self.level_std), self.window_set.labels[chosen]
