"""Batches for Keras: windows gathered from the frames of a split when a batch is asked for."""
import keras
import numpy as np

import constants
from ml.augmentation import random_level


class WindowBatches(keras.utils.PyDataset):
    """(windows, {"softmax": labels, "embeddings": placeholder}) batches of one WindowSet.

    Like the original, an epoch covers the windows truncated to a multiple of the batch size; with
    `shuffle`, the order is drawn again each epoch from a generator seeded once. With `level_std` > 0
    (training batches), each window's level is shifted at random (ml/augmentation.py).
    """

    def __init__(self, window_set, batch_size=None, shuffle=True, seed=None, level_std=0.0):
        super().__init__()
        self.level_std = level_std
        self.window_set = window_set
        self.batch_size = batch_size or constants.BATCH_SIZE
        self.shuffle = shuffle
        self.rng = np.random.default_rng(constants.SEED if seed is None else seed)
        self.order = np.arange(len(window_set))
        self.on_epoch_end()

    def __len__(self):
        return max(len(self.window_set) // self.batch_size, 1)

    def __getitem__(self, index):
        chosen = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])  # sorted: faster gather
        labels = self.window_set.labels[chosen]
        windows = random_level(self.window_set.windows(chosen), self.rng, self.level_std)
        return windows, {"softmax": labels, "embeddings": np.zeros((len(chosen), 1), np.float32)}

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)
