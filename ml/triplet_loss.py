"""The cosine triplet loss of the original: mean(max(cos(a, n) - cos(a, p) + margin, 0)).

A batch is stacked as anchors, positives, negatives (three equal thirds). Cosines are true cosines (each
embedding divided by its norm), so the loss means the same with or without --normalize_embeddings; the
original's plain dot product was a cosine only for unit-norm embeddings.
"""
import keras
from keras import ops

import constants


def cosine_rows(a, b):
    """Cosine similarity of each row of `a` with the same row of `b`."""
    a = a / ops.sqrt(ops.maximum(ops.sum(a * a, axis=-1), 1e-12))[:, None]
    b = b / ops.sqrt(ops.maximum(ops.sum(b * b, axis=-1), 1e-12))[:, None]
    return ops.sum(a * b, axis=-1)


@keras.saving.register_keras_serializable(package="deep_speaker")
def triplet_loss(y_true, y_pred, margin=None):
    """Loss of a batch of (anchors; positives; negatives) embeddings; `y_true` is ignored."""
    margin = constants.TRIPLET_MARGIN if margin is None else margin
    third = ops.shape(y_pred)[0] // 3
    anchors, positives, negatives = y_pred[:third], y_pred[third:2 * third], y_pred[2 * third:3 * third]
    return ops.mean(ops.maximum(cosine_rows(anchors, negatives) - cosine_rows(anchors, positives) + margin, 0.0))


@keras.saving.register_keras_serializable(package="deep_speaker")
def batch_hard_triplet_loss(y_true, y_pred, margin=None):
    """Batch-hard cosine triplet loss of a batch holding several speakers, several windows each.

    `y_true` holds each row's speaker label. Every row is an anchor; its positive is the least similar
    row of its own speaker and its negative the most similar row of any other speaker (Hermans et al.,
    2017, "In defense of the triplet loss"), so the loss is the original's with the hardest triplets
    the batch offers. Anchors without a positive or a negative in the batch are left out.
    """
    margin = constants.TRIPLET_MARGIN if margin is None else margin
    labels = ops.reshape(y_true, (-1,))
    unit = y_pred / ops.sqrt(ops.maximum(ops.sum(y_pred * y_pred, axis=-1, keepdims=True), 1e-12))
    cosines = ops.matmul(unit, ops.transpose(unit))
    same = ops.equal(labels[:, None], labels[None, :])
    not_self = ops.logical_not(ops.eye(ops.shape(labels)[0], dtype="bool"))
    positive_mask = ops.logical_and(same, not_self)
    hardest_positive = ops.min(ops.where(positive_mask, cosines, 2.0), axis=1)
    hardest_negative = ops.max(ops.where(same, -2.0, cosines), axis=1)
    valid = ops.cast(ops.logical_and(ops.any(positive_mask, axis=1), ops.any(ops.logical_not(same), axis=1)),
                     cosines.dtype)
    losses = ops.maximum(hardest_negative - hardest_positive + margin, 0.0) * valid
    return ops.sum(losses) / ops.maximum(ops.sum(valid), 1.0)
