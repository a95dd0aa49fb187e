"""The models and the cosine triplet loss."""
import keras
import numpy as np
import pytest

from ml.model import L2Normalization, build_model, freeze_below_softmax
from ml.triplet_loss import triplet_loss


def reference_loss(embeddings, margin=0.2):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    a, p, n = np.split(unit, 3)
    return np.mean(np.maximum((a * n).sum(1) - (a * p).sum(1) + margin, 0))


def test_triplet_loss_matches_a_numpy_reference_and_is_scale_free():
    embeddings = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    loss = float(triplet_loss(None, embeddings))
    assert loss == pytest.approx(reference_loss(embeddings), abs=1e-6)
    scales = np.random.default_rng(1).uniform(0.1, 10, size=(30, 1)).astype(np.float32)
    assert float(triplet_loss(None, embeddings * scales)) == pytest.approx(loss, abs=1e-5)


def test_anchor_positive_negative_of_one_speaker_give_exactly_the_margin():
    one = np.tile(np.random.default_rng(2).normal(size=(1, 8)).astype(np.float32), (3 * 5, 1))
    assert float(triplet_loss(None, one)) == pytest.approx(0.2, abs=1e-6)
    separated = np.concatenate([np.eye(8)[:1].repeat(10, 0), np.eye(8)[:1].repeat(10, 0), np.eye(8)[1:2].repeat(10, 0)])
    assert float(triplet_loss(None, separated.astype(np.float32))) == pytest.approx(0.0, abs=1e-6)


def test_parameter_counts_with_80_speakers():
    conv, dense = build_model(80, "conv"), build_model(80, "dense")
    print(f"conv {conv.count_params():,} parameters, dense {dense.count_params():,}")
    assert 80_000 <= conv.count_params() <= 130_000
    assert dense.count_params() == 390 * 200 + 200 + 200 * 80 + 80  # the original's 94,280
    assert set(conv.output_names) == {"embeddings", "softmax"}


def test_normalised_embeddings_have_unit_norm_and_softmax_sums_to_one():
    model = build_model(5, normalize_embeddings=True)
    out = model(np.random.default_rng(3).normal(size=(7, 10, 39)).astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out["embeddings"]), axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out["softmax"]).sum(axis=1), 1, rtol=1e-5)


def test_models_save_and_load_in_keras_safe_mode(tmp_path):
    model = build_model(4, "conv", normalize_embeddings=True)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    x = np.random.default_rng(4).normal(size=(3, 10, 39)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)["embeddings"]), np.asarray(model(x)["embeddings"]), rtol=1e-5)
    assert isinstance(loaded.get_layer("embeddings"), L2Normalization)


def test_weights_move_between_normalised_and_plain_embeddings(tmp_path):
    plain, normalised = build_model(4, normalize_embeddings=False), build_model(4, normalize_embeddings=True)
    plain.save_weights(tmp_path / "w.weights.h5")
    normalised.load_weights(tmp_path / "w.weights.h5")
    x = np.ones((2, 10, 39), np.float32)
    raw = np.asarray(plain(x)["embeddings"])
    np.testing.assert_allclose(np.asarray(normalised(x)["embeddings"]), raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               rtol=1e-5)


def test_freezing_leaves_only_the_softmax_head_trainable():
    model = build_model(4)
    freeze_below_softmax(model)
    assert [w.path for w in model.trainable_weights] == ["softmax/kernel", "softmax/bias"]


def reference_additive_margin(embeddings, kernel, labels, scale, margin):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosines = unit @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True))
    logits = scale * (cosines - margin * np.eye(kernel.shape[1])[labels])
    logits -= logits.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(labels)), labels])


@pytest.mark.parametrize("scale, margin", [(30.0, 0.0), (30.0, 0.2), (30.0, 0.35), (64.0, 0.35), (64.0, 0.9)])
def test_the_additive_margin_loss_from_probabilities_equals_the_textbook_one_from_logits(scale, margin):
    from ml.model import AdditiveMarginLoss, CosineSoftmax
    rng = np.random.default_rng(5)
    embeddings, labels = rng.normal(size=(64, 200)).astype(np.float32), rng.integers(0, 6, 64)
    head = CosineSoftmax(6, scale=scale)
    probabilities = head(embeddings)
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1, rtol=1e-5)
    loss = float(AdditiveMarginLoss(scale, margin)(labels, probabilities))  # s m up to 58: no underflow to inf
    expected = reference_additive_margin(embeddings.astype(np.float64), np.asarray(head.kernel, np.float64), labels,
                                         scale, margin)
    assert loss == pytest.approx(expected, rel=1e-4)
    if margin == 0:  # no margin: the plain cross-entropy of the same probabilities
        plain = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
        assert loss == pytest.approx(float(plain), rel=1e-4)
    # cosines far apart (8 values: up to +-1): the true class's probability may underflow float32, the loss stays finite
    few = rng.normal(size=(64, 8)).astype(np.float32)
    far = CosineSoftmax(6, scale=scale)
    values = np.asarray(AdditiveMarginLoss(scale, margin).call(labels, far(few)))
    assert np.isfinite(values).all()


def test_the_cosine_head_model_has_no_bias_saves_loads_and_freezes(tmp_path):
    from ml.model import CosineSoftmax, parameter_summary
    model = build_model(4, head="cosine_margin")
    assert isinstance(model.get_layer("softmax"), CosineSoftmax)
    assert model.get_layer("softmax").count_params() == 200 * 4
    assert "over 4 classes" in parameter_summary(model)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    x = np.random.default_rng(6).normal(size=(3, 10, 39)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)["softmax"]), np.asarray(model(x)["softmax"]), rtol=1e-5)
    freeze_below_softmax(model)
    assert [w.path for w in model.trainable_weights] == ["softmax/kernel"]


def reference_batch_hard(windows, labels, per_segment, margin=0.2):
    unit = windows / np.linalg.norm(windows, axis=1, keepdims=True)
    segments = unit.reshape(-1, per_segment, unit.shape[1]).mean(axis=1)
    segments /= np.linalg.norm(segments, axis=1, keepdims=True)
    classes = labels.reshape(-1, per_segment)[:, 0]
    cosines = segments @ segments.T
    losses = []
    for i in range(len(segments)):
        positives = [cosines[i, j] for j in range(len(segments)) if j != i and classes[j] == classes[i]]
        negatives = [cosines[i, j] for j in range(len(segments)) if classes[j] != classes[i]]
        losses.append(max(max(negatives) - min(positives) + margin, 0.0))
    return np.mean(losses)


def test_the_segment_triplet_loss_is_batch_hard_over_pooled_segments():
    from ml.triplet_loss import segment_triplet_loss
    rng = np.random.default_rng(7)
    windows = rng.normal(size=(4 * 3 * 5, 8)).astype(np.float32)  # 4 classes x 3 segments x 5 windows
    labels = np.repeat(np.repeat([3, 0, 7, 1], 3), 5).astype(np.float32)[:, None]
    loss = float(segment_triplet_loss(labels, windows, windows_per_segment=5, margin=0.2))
    assert loss == pytest.approx(reference_batch_hard(windows, labels, 5), abs=1e-5)
    # segments whose classes point different ways, windows scattered around them: no violated triplet
    directions = np.eye(8, dtype=np.float32)[[0, 1, 2, 3]]
    spread = np.repeat(directions, 15, axis=0) + 0.05 * rng.normal(size=(60, 8)).astype(np.float32)
    assert float(segment_triplet_loss(labels, spread, windows_per_segment=5)) == pytest.approx(0.0, abs=1e-6)
    # every segment alike: each triplet scores the margin
    same = np.ones((60, 8), np.float32)
    assert float(segment_triplet_loss(labels, same, windows_per_segment=5)) == pytest.approx(0.2, abs=1e-6)


def test_statistics_pooling_gives_each_channel_its_mean_and_standard_deviation(monkeypatch):
    import constants
    from ml.model import StatisticsPooling
    x = np.random.default_rng(8).normal(size=(4, 10, 6)).astype(np.float32)
    pooled = np.asarray(StatisticsPooling()(x))
    np.testing.assert_allclose(pooled[:, :6], x.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled[:, 6:], np.sqrt(x.var(axis=1) + 1e-6), rtol=1e-4)
    mean_max = build_model(80).count_params()
    monkeypatch.setattr(constants, "POOLING", "mean_std")
    model = build_model(80)
    assert isinstance(model.get_layer("pool"), StatisticsPooling) and model.count_params() == mean_max


def test_a_checkpoint_of_another_pooling_is_refused_and_older_ones_are_mean_max(monkeypatch):
    import constants
    import utils
    from ml.checkpoints import check_compatible, model_identity
    identity = model_identity(["a", "b"], [10, 39], "global")
    older = {k: v for k, v in identity.items() if k not in ("pooling", "head", "margin_scale")}
    check_compatible(older, identity, "old.weights.h5")  # written before POOLING existed: mean and max
    monkeypatch.setattr(constants, "POOLING", "mean_std")
    with pytest.raises(utils.PipelineError, match="POOLING"):
        check_compatible(older, model_identity(["a", "b"], [10, 39], "global"), "old.weights.h5")
