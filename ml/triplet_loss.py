"""The cosine triplet loss of the original: mean(max(cos(a, n) - cos(a, p) + margin, 0)).

A batch is stacked as anchors, positives, negatives (three equal thirds). Cosines are true cosines (each
embedding divided by its norm), so the loss means the same with or without --normalize_embeddings; the
original's plain dot product was a cosine only for unit-norm embeddings.
"""
import utils

utils.import_tensorflow_quietly()  # before Keras: TensorFlow's C++ start-up lines say nothing useful
import keras  # noqa: E402
from keras import ops  # noqa: E402

import constants  # noqa: E402


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
