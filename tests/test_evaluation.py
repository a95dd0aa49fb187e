"""Evaluation metrics and plots on synthetic embeddings whose answer is known."""
import numpy as np
import pytest

from ml import evaluation, plots


def clustered(rng, speakers=6, per_speaker=8, spread=0.05, size=16):
    centres = rng.normal(size=(speakers, size))
    points = np.repeat(centres, per_speaker, axis=0) + spread * rng.normal(size=(speakers * per_speaker, size))
    return points / np.linalg.norm(points, axis=1, keepdims=True), np.repeat([f"s{i}" for i in range(speakers)], per_speaker)


def test_perfectly_separated_speakers_give_zero_eer_and_min_dcf():
    rng = np.random.default_rng(0)
    embeddings, speakers = clustered(rng)
    scores, is_target = evaluation.verification_trials(embeddings, speakers, rng)
    assert is_target.sum() == 6 * 8 * 7 // 2 and len(scores) == 48 * 47 // 2
    eer, threshold = evaluation.equal_error_rate(scores, is_target)
    assert eer == pytest.approx(0, abs=1e-9) and scores[~is_target].max() <= threshold <= scores[is_target].min()
    assert evaluation.min_dcf(scores, is_target) == pytest.approx(0, abs=1e-9)


def test_random_embeddings_give_an_eer_near_one_half_and_min_dcf_near_one():
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(400, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    speakers = np.repeat(np.arange(40), 10)
    scores, is_target = evaluation.verification_trials(embeddings, speakers, rng, max_impostors=20000)
    assert len(scores) == is_target.sum() + 20000
    eer, _ = evaluation.equal_error_rate(scores, is_target)
    assert 0.4 < eer <= 0.5 + 1e-9
    assert 0.9 < evaluation.min_dcf(scores, is_target) <= 1.0


def test_equal_scores_of_a_collapsed_model_give_a_finite_threshold_that_accepts_nothing():
    """scikit-learn's first ROC threshold is +inf; written into report.json, stage 2 then refused its own report."""
    scores, is_target = np.full(6, 0.25), np.array([1, 0, 1, 0, 0, 1], bool)
    eer, threshold = evaluation.equal_error_rate(scores, is_target)
    assert eer == 0.5 and np.isfinite(threshold) and threshold > 0.25 and not (scores >= threshold).any()


def test_eer_of_known_scores():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.75, 0.5, 0.4, 0.3])
    is_target = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    eer, threshold = evaluation.equal_error_rate(scores, is_target)
    assert eer == pytest.approx(0.25) and threshold == pytest.approx(0.7)


def test_sap_is_far_below_san_for_separated_speakers():
    rng = np.random.default_rng(2)
    embeddings, speakers = clustered(rng, speakers=4, per_speaker=50)
    by_speaker = [embeddings[speakers == name] for name in sorted(set(speakers))]
    sap, san, matrix = evaluation.sap_san(by_speaker, rng, per_speaker=30)
    assert matrix.shape == (4, 4) and np.allclose(matrix, matrix.T)
    assert sap < 0.01 < 0.5 < san and np.allclose(np.diag(matrix).mean(), sap)


def test_classification_accuracy_per_window_and_per_utterance():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55], [0.2, 0.8], [0.3, 0.7]])
    labels, utterances = np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 2, 2])
    window, utterance = evaluation.classification_accuracy(probabilities, labels, utterances)
    assert window == pytest.approx(3 / 5) and utterance == pytest.approx(2 / 3)
    # one window all but excluding class 0 outvotes three mild votes for it by log-probability only
    probabilities = np.array([[0.7, 0.3], [0.7, 0.3], [0.7, 0.3], [0.001, 0.999]])
    labels, utterances = np.zeros(4, int), np.zeros(4, int)
    assert evaluation.classification_accuracy(probabilities, labels, utterances, "mean_probability")[1] == 1
    assert evaluation.classification_accuracy(probabilities, labels, utterances, "log_probability")[1] == 0


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(3)
    embeddings, speakers = clustered(rng, spread=0.5)
    scores, is_target = evaluation.verification_trials(embeddings, speakers, rng)
    eer, threshold = evaluation.equal_error_rate(scores, is_target)
    history = tmp_path / "history.csv"
    history.write_text("step,loss,test_loss\n" + "".join(f"{i},{1 / i:.4f},{1.1 / i:.4f}\n" for i in range(1, 30)))
    softmax = tmp_path / "softmax.csv"
    softmax.write_text("epoch,loss,softmax_accuracy,val_loss,val_softmax_accuracy\n0,2,0.3,2.1,0.25\n1,1,0.6,1.5,0.5\n")
    written = [plots.det_plot(scores, is_target, eer, tmp_path / "det.png"),
               plots.score_histograms(scores, is_target, threshold, tmp_path / "hist.png"),
               plots.embedding_map(embeddings, speakers, tmp_path / "map.png"),
               plots.embedding_map(embeddings, speakers, tmp_path / "pca.png", method="pca"),
               plots.training_curves({"triplet": history, "softmax": softmax, "frozen": None}, tmp_path / "curves.png")]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_utterance_pooling_gives_every_window_the_same_weight():
    from ml.embeddings import pool
    windows = np.array([[100.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(pool(windows), [np.sqrt(0.5), np.sqrt(0.5)])


def test_as_norm_statistics_and_scores_against_hand_computed_values():
    cohort = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0]])
    mean, std = evaluation.as_norm_statistics(embeddings, cohort, top_k=2)
    np.testing.assert_allclose(mean, [(1.0 + 0.6) / 2, (1.0 + 0.8) / 2])  # the two best scores of each
    np.testing.assert_allclose(std, [0.2, 0.1])
    scores = np.array([0.5])
    normalised = evaluation.as_norm(scores, np.array([0]), np.array([1]), (mean, std))
    np.testing.assert_allclose(normalised, [0.5 * ((0.5 - 0.8) / 0.2 + (0.5 - 0.9) / 0.1)])


@pytest.mark.parametrize("pooling", ["log_probability", "mean_probability"])
def test_closed_set_accuracy_in_batches_equals_it_over_every_window_at_once(small_inputs, pooling):
    from ml.model import build_model
    model = build_model(len(small_inputs.classes), input_shape=small_inputs.input_shape)
    everything = evaluation.predict_in_batches(model, small_inputs.test, "softmax")[:, :len(small_inputs.speakers)]
    expected = evaluation.classification_accuracy(everything, small_inputs.test.labels, small_inputs.test.utterances,
                                                  pooling)
    streamed = evaluation.closed_set_accuracy(model, small_inputs, batch_size=7, pooling=pooling)  # many batches
    assert streamed[0] == pytest.approx(expected[0], abs=1e-12) and streamed[1] == expected[1]
    assert 0 < len(small_inputs.test) and len(np.unique(small_inputs.test.starts)) > 7


def test_trial_pairs_of_many_utterances_are_drawn_without_listing_all(monkeypatch):
    rng = np.random.default_rng(3)
    speakers = np.repeat([f"s{k}" for k in range(40)], 12)  # 480 utterances, 114,960 pairs
    listed = evaluation.trial_pairs(speakers, np.random.default_rng(0), max_impostors=5000)
    monkeypatch.setattr(evaluation, "ALL_PAIRS_UP_TO", 1000)
    first, second, is_target = evaluation.trial_pairs(speakers, rng, max_impostors=5000)
    assert np.all(first < second) and np.all((speakers[first] == speakers[second]) == is_target)
    assert is_target.sum() == listed[2].sum() == 40 * 66  # every same-speaker pair, once
    assert (~is_target).sum() == 5000 and len(set(zip(first.tolist(), second.tolist()))) == len(first)
    same = list(zip(first[is_target].tolist(), second[is_target].tolist()))
    assert same == list(zip(listed[0][listed[2]].tolist(), listed[1][listed[2]].tolist()))  # the same, in order
    assert np.all(np.diff(first[~is_target] * 480 + second[~is_target]) > 0)  # in the order of the list of pairs
    assert (~evaluation.trial_pairs(speakers[:300], rng, max_impostors=10**6)[2]).sum() == 300 * 299 // 2 - 25 * 66


def test_trials_of_grouped_speakers_are_the_listed_ones_without_listing_every_pair():
    from ml.evaluation import _grouped_trial_pairs, _listed_trial_pairs, trial_pairs
    for seed in range(20):
        rng = np.random.default_rng(seed)
        counts = rng.integers(1, 12, rng.integers(2, 15))
        speakers = np.repeat([f"p{k}" for k in range(len(counts))], counts)
        for max_impostors in (5, 50, 10 ** 6):  # a sample of the impostors, or all of them
            listed = _listed_trial_pairs(speakers, np.random.default_rng(7), max_impostors)
            grouped = _grouped_trial_pairs(speakers, np.random.default_rng(7), max_impostors)
            assert all(np.array_equal(a, b) for a, b in zip(listed, grouped)), (seed, max_impostors)
    mixed = np.array(["a", "b", "a", "b"])  # not grouped: listed as before
    first, second, same = trial_pairs(mixed, np.random.default_rng(0))
    assert sorted(zip(first[same].tolist(), second[same].tolist())) == [(0, 2), (1, 3)]


def test_pair_scores_in_chunks_are_the_dot_products_of_the_pairs():
    from ml.evaluation import pair_scores
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(30, 8))
    first, second = rng.integers(0, 30, 100), rng.integers(0, 30, 100)
    expected = (vectors[first] * vectors[second]).sum(axis=1)
    for chunk in (1, 7, 100, 8192):
        np.testing.assert_allclose(pair_scores(vectors, first, second, chunk=chunk), expected, rtol=1e-12)
    assert pair_scores(vectors, first[:0], second[:0]).shape == (0,)


def test_as_norm_statistics_in_chunks_are_those_of_all_rows_at_once():
    from ml.evaluation import as_norm_statistics
    rng = np.random.default_rng(5)
    vectors, cohort = rng.normal(size=(50, 8)), rng.normal(size=(30, 8))
    top = np.sort(vectors @ cohort.T, axis=1)[:, -5:]
    for chunk in (1, 7, 50, 1000):  # a matrix product's last bits may differ with its shape
        mean, std = as_norm_statistics(vectors, cohort, top_k=5, chunk=chunk)
        np.testing.assert_allclose(mean, top.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(std, top.std(axis=1), rtol=1e-10)
