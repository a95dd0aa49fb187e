"""Evaluation: what a model's outputs say about speakers it was trained on (and, later, unseen ones)."""
import numpy as np

import constants


def predict_in_batches(model, window_set, output, batch_size=None):
    """The `output` ("softmax" or "embeddings") of `model` for every window of `window_set`, in order."""
    batch_size = batch_size or constants.BATCH_SIZE
    parts = []
    for begin in range(0, len(window_set), batch_size):
        windows = window_set.windows(slice(begin, begin + batch_size))
        parts.append(np.asarray(model(windows, training=False)[output]))
    return np.concatenate(parts)


def classification_accuracy(probabilities, labels, utterances):
    """(per-window accuracy, per-utterance accuracy); an utterance's windows are pooled by mean probability."""
    per_window = float(np.mean(probabilities.argmax(axis=1) == labels))
    count = utterances.max() + 1
    pooled = np.zeros((count, probabilities.shape[1]))
    np.add.at(pooled, utterances, probabilities)
    truth = np.full(count, -1)
    truth[utterances] = labels
    present = np.bincount(utterances, minlength=count) > 0
    per_utterance = float(np.mean(pooled[present].argmax(axis=1) == truth[present]))
    return per_window, per_utterance
