"""The cosine triplet loss of the original: mean(max(cos(a, n) - cos(a, p) + margin, 0)), and its segment form.

The original's batch is stacked as anchors, positives, negatives (three equal thirds) of single windows. Cosines
are true cosines (each embedding divided by its norm), so the loss means the same with or without
--normalize_embeddings; the original's plain dot product was a cosine only for unit-norm embeddings.

The segment form (TRIPLET_SELECTION = "segments") scores what verification compares: a segment's embedding is
the mean of its unit-length window embeddings, at unit length (as embeddings.pool makes an utterance's), and
every segment of the batch is an anchor with its hardest positive (the least similar segment of its class) and
its hardest negative (the most similar segment of another class): "batch-hard" triplets.
"""
import utils

utils.import_tensorflow_quietly()  # before Keras: TensorFlow's C++ start-up lines say nothing useful
import keras  # noqa: E402
from keras import ops  # noqa: E402

import constants  # noqa: E402


def unit_rows(x, axis=-1):
    """`x` scaled to unit L2 length along `axis` (a zero vector stays zero); the models and losses share it."""
    return x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=axis, keepdims=True), 1e-12))


def cosine_rows(a, b):
    """Cosine similarity of each row of `a` with the same row of `b`."""
    return ops.sum(unit_rows(a) * unit_rows(b), axis=-1)


@keras.saving.register_keras_serializable(package="deep_speaker")
def triplet_loss(y_true, y_pred, margin=None):
    """Loss of a batch of (anchors; positives; negatives) embeddings; `y_true` is ignored."""
    margin = constants.TRIPLET_MARGIN if margin is None else margin
    third = ops.shape(y_pred)[0] // 3
    anchors, positives, negatives = y_pred[:third], y_pred[third:2 * third], y_pred[2 * third:3 * third]
    return ops.mean(ops.maximum(cosine_rows(anchors, negatives) - cosine_rows(anchors, positives) + margin, 0.0))


def segment_triplet_loss(y_true, y_pred, windows_per_segment=None, margin=None):
    """Batch-hard loss of a batch of segments (SegmentSampler): `y_pred` holds the window embeddings, segment by
    segment (`windows_per_segment` each), `y_true` every window's class label."""
    margin = constants.TRIPLET_MARGIN if margin is None else margin
    windows_per_segment = windows_per_segment or constants.TRIPLET_SEGMENT_WINDOWS
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1, windows_per_segment))[:, 0]
    segments = unit_rows(ops.mean(ops.reshape(unit_rows(y_pred), (-1, windows_per_segment, ops.shape(y_pred)[-1])),
                                  axis=1))
    cosines = ops.matmul(segments, ops.transpose(segments))
    same = ops.equal(labels[:, None], labels[None, :])
    itself = ops.eye(ops.shape(labels)[0], dtype="bool")
    hardest_positive = ops.min(ops.where(ops.logical_and(same, ops.logical_not(itself)), cosines, 2.0), axis=1)
    hardest_negative = ops.max(ops.where(same, -2.0, cosines), axis=1)
    return ops.mean(ops.maximum(hardest_negative - hardest_positive + margin, 0.0))


def loss_of_selection(selection=None):
    """The triplet loss of TRIPLET_SELECTION ("original" or "segments")."""
    selection = selection or constants.TRIPLET_SELECTION
    return segment_triplet_loss if selection == "segments" else triplet_loss
