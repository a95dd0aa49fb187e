"""The cosine triplet loss of the original: mean(max(cos(a, n) - cos(a, p) + margin, 0)).

A batch is stacked as anchors, positives, negatives (three equal thirds). Cosines are true cosines (each
embedding divided by its norm), so the loss means the same with or without --normalize_embeddings; the
original's plain dot product was a cosine only for unit-norm embeddings.

With TRIPLET_WINDOWS_PER_EMBEDDING = G > 1 each third holds groups of G consecutive windows of one
utterance, and each group is scored as one embedding, pooled the way the evaluation pools an utterance
(the mean of the unit-length window embeddings).
"""
import keras
from keras import ops

import constants


def cosine_rows(a, b):
    """Cosine similarity of each row of `a` with the same row of `b`."""
    a = a / ops.sqrt(ops.maximum(ops.sum(a * a, axis=-1), 1e-12))[:, None]
    b = b / ops.sqrt(ops.maximum(ops.sum(b * b, axis=-1), 1e-12))[:, None]
    return ops.sum(a * b, axis=-1)


def pooled(embeddings, group):
    """Mean of every run of `group` consecutive rows, each scaled to unit length first (1: unchanged)."""
    if group == 1:
        return embeddings
    unit = embeddings / ops.sqrt(ops.maximum(ops.sum(embeddings * embeddings, axis=-1), 1e-12))[:, None]
    return ops.mean(ops.reshape(unit, (-1, group, ops.shape(unit)[-1])), axis=1)


@keras.saving.register_keras_serializable(package="deep_speaker")
def triplet_loss(y_true, y_pred, margin=None, group=None):
    """Loss of a batch of (anchors; positives; negatives) embeddings; `y_true` is ignored.

    `group` windows make one embedding (default TRIPLET_WINDOWS_PER_EMBEDDING); a third of the batch
    must be a whole number of groups.
    """
    margin = constants.TRIPLET_MARGIN if margin is None else margin
    group = constants.TRIPLET_WINDOWS_PER_EMBEDDING if group is None else group
    third = ops.shape(y_pred)[0] // 3
    anchors, positives, negatives = (pooled(y_pred[k * third:(k + 1) * third], group) for k in range(3))
    return ops.mean(ops.maximum(cosine_rows(anchors, negatives) - cosine_rows(anchors, positives) + margin, 0.0))
