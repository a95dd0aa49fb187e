"""The cosine triplet loss of the original: mean(max(cos(a, n) - cos(a, p) + margin, 0)).

A batch is stacked as anchors, positives, negatives (three equal thirds). Cosines are true cosines (each
embedding divided by its norm), so the loss means the same with or without --normalize_embeddings; the
original's plain dot product was a cosine only for unit-norm embeddings.

With TRIPLET_WINDOWS_PER_EMBEDDING = G > 1 each third holds groups of G consecutive windows of one
utterance, and each group is scored as one embedding, pooled the way the evaluation pools an utterance
(the mean of the unit-length window embeddings).

TRIPLET_NEGATIVES chooses each anchor's negative: "sampled" (the original) takes the one in the
negatives' third; "semi_hard" and "hardest" search every embedding of the batch whose speaker differs
from the anchor's (the speaker labels come in as y_true): "hardest" takes the most similar one,
"semi_hard" the most similar one that is still less similar than the anchor's positive (FaceNet), or,
where there is none, the least similar one.
"""
import keras
from keras import ops

import constants

def unit_rows(x):
    """Each row of `x` divided by its norm."""
    return x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1), 1e-12))[:, None]


def cosine_rows(a, b):
    """Cosine similarity of each row of `a` with the same row of `b`."""
    return ops.sum(unit_rows(a) * unit_rows(b), axis=-1)


def pooled(embeddings, group):
    """Mean of every run of `group` consecutive rows, each scaled to unit length first (1: unchanged)."""
    if group == 1:
        return embeddings
    return ops.mean(ops.reshape(unit_rows(embeddings), (-1, group, ops.shape(embeddings)[-1])), axis=1)


def mined_negative_similarities(anchors, positive_similarities, candidates, anchor_labels, candidate_labels,
                                negatives):
    """Per anchor, the cosine of the negative chosen among `candidates` (see the module docstring)."""
    similarities = ops.matmul(unit_rows(anchors), ops.transpose(unit_rows(candidates)))
    other = ops.not_equal(anchor_labels[:, None], candidate_labels[None, :])
    if negatives == "hardest":
        return ops.max(ops.where(other, similarities, -2.0), axis=1)
    farther = ops.logical_and(other, similarities < positive_similarities[:, None])
    semi_hard = ops.max(ops.where(farther, similarities, -2.0), axis=1)
    easiest = ops.min(ops.where(other, similarities, 2.0), axis=1)
    return ops.where(ops.any(farther, axis=1), semi_hard, easiest)


@keras.saving.register_keras_serializable(package="deep_speaker")
def triplet_loss(y_true, y_pred, margin=None, group=None, negatives=None):
    """Loss of a batch of (anchors; positives; negatives) embeddings.

    `group` windows make one embedding (default TRIPLET_WINDOWS_PER_EMBEDDING); a third of the batch
    must be a whole number of groups. `y_true` (the speaker label of each row) is read only when the
    negatives are mined (`negatives`, default TRIPLET_NEGATIVES).
    """
    margin = constants.TRIPLET_MARGIN if margin is None else margin
    group = constants.TRIPLET_WINDOWS_PER_EMBEDDING if group is None else group
    negatives = negatives or constants.TRIPLET_NEGATIVES
    third = ops.shape(y_pred)[0] // 3
    anchors, positives, sampled = (pooled(y_pred[k * third:(k + 1) * third], group) for k in range(3))
    positive_similarities = cosine_rows(anchors, positives)
    if negatives == "sampled":
        negative_similarities = cosine_rows(anchors, sampled)
    else:
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))[:3 * third:group]
        candidates = ops.concatenate([anchors, positives, sampled], axis=0)
        negative_similarities = mined_negative_similarities(anchors, positive_similarities, candidates,
                                                            labels[:ops.shape(anchors)[0]], labels, negatives)
    return ops.mean(ops.maximum(negative_similarities - positive_similarities + margin, 0.0))
