"""Evaluation: closed-set accuracy on the training speakers, verification and SAP/SAN on unseen speakers.

Error rates come from scikit-learn's ROC and DET curves. The unseen speakers' features are normalised
with the inputs' method; under "per_speaker" that uses each speaker's own statistics (its identity), and
the report says so.
"""
import itertools

import numpy as np
from sklearn.metrics import det_curve, roc_curve

import constants
import utils
from audio import features
from ml import embeddings as emb
from ml.normalization import LABEL_FREE


# ----------------------------------------------------------------------------------------------------
# Closed set: the training speakers' test utterances
# ----------------------------------------------------------------------------------------------------
def predict_in_batches(model, window_set, output, batch_size=None):
    """The `output` ("softmax" or "embeddings") of `model` for every window of `window_set`, in order (all rows
    at once: for the studies in bench/; the pipeline goes through window_outputs).

    Random segments overlap, so a window often appears many times (about 29 times in the dev corpus's test
    split): each distinct window is computed once and the result repeated.
    """
    rows = None
    for mine, values in window_outputs(model, window_set, output, batch_size):
        rows = np.empty((len(window_set),) + values.shape[1:], values.dtype) if rows is None else rows
        rows[mine] = values
    return rows


def window_outputs(model, window_set, output, batch_size=None):
    """Yield (indices of windows of `window_set`, their `output` rows), a batch of distinct windows at a time:
    every window once in all, never the rows of all of them at once."""
    batch_size = batch_size or constants.BATCH_SIZE
    distinct, position = np.unique(window_set.starts, return_inverse=True)
    order = np.argsort(position, kind="stable")  # the windows, grouped by the distinct window they repeat
    edges = np.searchsorted(position[order], np.arange(0, len(distinct) + batch_size, batch_size))
    for number, begin in enumerate(range(0, len(distinct), batch_size)):
        windows = features.gather_windows(window_set.frames, distinct[begin:begin + batch_size])
        values = np.asarray(model(windows, training=False)[output])
        mine = order[edges[number]:edges[number + 1]]
        yield mine, values[position[mine] - begin]


def closed_set_accuracy(model, inputs, batch_size=None, pooling=None):
    """(per-window, per-utterance) accuracy on the test split, over the real training speakers' classes only.

    Speed-copy classes exist in training alone: a window is credited to the best real speaker. Computed a
    batch of distinct windows at a time: what it holds is (utterances x classes) evidence, never a matrix of
    (windows x classes) probabilities. The same figures as classification_accuracy over all of them.
    """
    pooling = pooling or constants.UTTERANCE_POOLING
    test, classes = inputs.test, len(inputs.speakers)
    count = int(test.utterances.max()) + 1
    pooled, correct = np.zeros((count, classes)), 0
    for mine, probabilities in window_outputs(model, test, "softmax", batch_size):
        chosen = probabilities[:, :classes]
        correct += int(np.sum(chosen.argmax(axis=1) == test.labels[mine]))
        np.add.at(pooled, test.utterances[mine],
                  np.log(np.maximum(chosen, 1e-12)) if pooling == "log_probability" else chosen)
    truth = np.full(count, -1)
    truth[test.utterances] = test.labels
    present = np.bincount(test.utterances, minlength=count) > 0
    return correct / len(test), float(np.mean(pooled[present].argmax(axis=1) == truth[present]))


def classification_accuracy(probabilities, labels, utterances, pooling=None):
    """(per-window accuracy, per-utterance accuracy); UTTERANCE_POOLING says how windows are combined."""
    pooling = pooling or constants.UTTERANCE_POOLING
    per_window = float(np.mean(probabilities.argmax(axis=1) == labels))
    count = utterances.max() + 1
    evidence = np.log(np.maximum(probabilities, 1e-12)) if pooling == "log_probability" else probabilities
    pooled = np.zeros((count, probabilities.shape[1]))
    np.add.at(pooled, utterances, evidence)
    truth = np.full(count, -1)
    truth[utterances] = labels
    present = np.bincount(utterances, minlength=count) > 0
    per_utterance = float(np.mean(pooled[present].argmax(axis=1) == truth[present]))
    return per_window, per_utterance


# ----------------------------------------------------------------------------------------------------
# Validation speakers: held out of training, they choose checkpoints
# ----------------------------------------------------------------------------------------------------
def pooled_utterance_embeddings(model, window_set):
    """(utterance embeddings, their speaker labels) of a WindowSet: the mean of each utterance's unit-length
    window embeddings, scaled to unit length (as embeddings.pool does for one utterance)."""
    count, sums = int(window_set.utterances.max()) + 1, None
    for mine, rows in window_outputs(model, window_set, "embeddings"):  # never every window embedding at once
        sums = np.zeros((count, rows.shape[1])) if sums is None else sums
        np.add.at(sums, window_set.utterances[mine], emb.unit_length(rows.astype(np.float64)))
    present = np.bincount(window_set.utterances, minlength=count) > 0
    speakers = np.full(count, -1)
    speakers[window_set.utterances] = window_set.labels
    pooled = emb.unit_length(sums[present])
    return pooled, speakers[present]


def eer_standard_error(eer, window_set):
    """The binomial standard error of an EER measured on every same-speaker utterance pair of a WindowSet's
    speakers: sqrt(eer (1 - eer) / target trials). NaN without a target trial or a finite EER."""
    per_utterance = np.unique(np.stack([window_set.utterances, window_set.labels]), axis=1)[1]
    counts = np.bincount(per_utterance)
    targets = int((counts * (counts - 1) // 2).sum())
    if not targets or not np.isfinite(eer):
        return float("nan")
    return float(np.sqrt(eer * (1 - eer) / targets))


def verification_figures(model, window_set, seed=None):
    """(EER, minDCF) of all utterance pairs of a WindowSet's speakers (the validation speakers)."""
    embeddings, speakers = pooled_utterance_embeddings(model, window_set)
    rng = np.random.default_rng(constants.SEED if seed is None else seed)
    scores, is_target = verification_trials(embeddings, speakers, rng)
    if is_target.all() or not is_target.any():
        return float("nan"), float("nan")
    return equal_error_rate(scores, is_target)[0], min_dcf(scores, is_target)


COHORT_FILE = "asnorm_cohort.npy"  # the AS-norm cohort's embeddings, beside a checkpoint's report.json (stages 2, 3)
UTTERANCES_PER_PASS = 256  # unseen utterances loaded and embedded at a time

# ----------------------------------------------------------------------------------------------------
# Unseen speakers
# ----------------------------------------------------------------------------------------------------
def sap_san(window_embeddings_by_speaker, rng, per_speaker=None):
    """The original's check: mean cosine distance of windows within a speaker (SAP) and across two (SAN).

    Returns (overall SAP, overall SAN, matrix): matrix[i, j] is the mean distance between windows of
    speakers i and j (SAP on the diagonal, pairs of a window with itself left out).
    """
    per_speaker = per_speaker or constants.SAP_SAN_WINDOWS_PER_SPEAKER
    samples = []
    for windows in window_embeddings_by_speaker:
        chosen = sap_san_choice(len(windows), rng, per_speaker)
        samples.append(emb.unit_length(windows[chosen]))
    return sap_san_of_samples(samples)


def sap_san_choice(count, rng, per_speaker=None):
    """Which of a speaker's `count` windows SAP/SAN samples (SAP_SAN_WINDOWS_PER_SPEAKER at most)."""
    per_speaker = per_speaker or constants.SAP_SAN_WINDOWS_PER_SPEAKER
    return rng.choice(count, min(per_speaker, count), replace=False)


def sap_san_of_samples(samples):
    """(SAP, SAN, matrix) of each speaker's sampled unit window embeddings."""
    count = len(samples)
    matrix = np.zeros((count, count))
    for i, j in itertools.combinations_with_replacement(range(count), 2):
        distances = 1 - samples[i] @ samples[j].T
        if i == j:
            n = len(distances)
            matrix[i, i] = (distances.sum() - np.trace(distances)) / max(n * (n - 1), 1)
        else:
            matrix[i, j] = matrix[j, i] = distances.mean()
    off_diagonal = matrix[~np.eye(count, dtype=bool)]
    return float(np.mean(np.diag(matrix))), float(off_diagonal.mean()) if count > 1 else float("nan"), matrix


ALL_PAIRS_UP_TO = 5_000_000  # utterance pairs enumerated at once; beyond, impostors are drawn without listing all


def trial_pairs(speakers, rng, max_impostors=None):
    """(first, second, is_target): every same-speaker pair of utterances and the different-speaker pairs (all,
    or a seeded sample of MAX_IMPOSTOR_TRIALS), each pair (i < j) in the order of the list of all pairs."""
    max_impostors = max_impostors or constants.MAX_IMPOSTOR_TRIALS
    speakers = np.asarray(speakers)
    if len(speakers) * (len(speakers) - 1) // 2 > ALL_PAIRS_UP_TO:
        return _drawn_trial_pairs(speakers, rng, max_impostors)
    if _grouped(speakers):
        return _grouped_trial_pairs(speakers, rng, max_impostors)
    return _listed_trial_pairs(speakers, rng, max_impostors)


def _grouped(speakers):
    """Whether each speaker's utterances are consecutive in `speakers` (as stages 1 and 2 list them)."""
    changes = np.count_nonzero(speakers[1:] != speakers[:-1]) if len(speakers) else 0
    return changes + 1 == len(np.unique(speakers)) if len(speakers) else True


def _grouped_trial_pairs(speakers, rng, max_impostors):
    """trial_pairs when each speaker's utterances are consecutive: the same pairs, in the same order, drawn with
    the same numbers as _listed_trial_pairs, without listing all pairs (for the 3,000 utterances of 80 validation
    speakers, the list and its masks took ~200 MB in every validation of a training run)."""
    n = len(speakers)
    starts = np.flatnonzero(np.concatenate([[True], speakers[1:] != speakers[:-1]]))
    ends = np.append(starts[1:], n)
    end = np.repeat(ends, ends - starts)  # per utterance: one past the last utterance of its speaker
    rows = np.arange(n)
    same_count = end - rows - 1  # row i: its speaker's later utterances, then every utterance after them
    first = np.repeat(rows, same_count)
    second = first + 1 + (np.arange(same_count.sum()) - np.repeat(np.cumsum(same_count) - same_count, same_count))
    impostor_count = n - end
    total = int(impostor_count.sum())
    if total > max_impostors:  # _listed_trial_pairs's rng.choice(impostors, k): the same k ordinals of the list
        ordinals = np.sort(rng.choice(total, max_impostors, replace=False))
    else:
        ordinals = np.arange(total)
    cumulative = np.cumsum(impostor_count)
    row = np.searchsorted(cumulative, ordinals, side="right")
    column = end[row] + ordinals - (cumulative[row] - impostor_count[row])
    return (np.concatenate([first, row]), np.concatenate([second, column]),
            np.concatenate([np.ones(len(first), bool), np.zeros(len(row), bool)]))


def _listed_trial_pairs(speakers, rng, max_impostors):
    """trial_pairs by listing every pair of utterances (any order of speakers)."""
    first, second = np.triu_indices(len(speakers), k=1)
    same = speakers[first] == speakers[second]
    impostors = np.flatnonzero(~same)
    if len(impostors) > max_impostors:
        impostors = np.sort(rng.choice(impostors, max_impostors, replace=False))
    pairs = np.concatenate([np.flatnonzero(same), impostors])
    return first[pairs], second[pairs], same[pairs]


def _drawn_trial_pairs(speakers, rng, max_impostors):
    """trial_pairs for many utterances: the same-speaker pairs speaker by speaker, and a seeded sample of
    different-speaker pairs drawn as numbers of the list of all pairs (never listed: 28 M pairs of 7,600
    utterances took GBs)."""
    n = len(speakers)
    codes = np.unique(speakers, return_inverse=True)[1]
    targets = []
    for code in range(codes.max() + 1):
        mine = np.flatnonzero(codes == code)
        a, b = np.triu_indices(len(mine), k=1)
        targets.append(np.stack([mine[a], mine[b]], axis=1))
    targets = np.concatenate(targets)
    targets = targets[np.lexsort((targets[:, 1], targets[:, 0]))]
    total = n * (n - 1) // 2
    impostor_total = total - len(targets)
    wanted = min(max_impostors, impostor_total)
    draw = min(total, int(wanted * total / max(impostor_total, 1) * 1.1) + 1000)
    numbers = np.sort(rng.choice(total, draw, replace=False))
    # the pair at number m of the row-major list of pairs i < j
    i = n - 2 - np.floor(np.sqrt(-8.0 * numbers + 4.0 * n * (n - 1) - 7) / 2.0 - 0.5).astype(np.int64)
    j = numbers + i + 1 - total + (n - i) * (n - i - 1) // 2
    different = codes[i] != codes[j]
    if different.sum() < wanted:  # too few drawn (a corpus of very few speakers): list them all after all
        first, second = np.triu_indices(n, k=1)
        impostors = np.flatnonzero(codes[first] != codes[second])
        keep = np.sort(rng.choice(impostors, wanted, replace=False))
        i, j = first[keep], second[keep]
    else:
        keep = np.sort(rng.choice(np.flatnonzero(different), wanted, replace=False))
        i, j = i[keep], j[keep]
    first = np.concatenate([targets[:, 0], i])
    second = np.concatenate([targets[:, 1], j])
    return first, second, np.concatenate([np.ones(len(targets), bool), np.zeros(len(i), bool)])


def verification_trials(utterance_embeddings, speakers, rng, max_impostors=None):
    """(scores, is_target): cosine of every same-speaker pair and of different-speaker pairs (all, or a sample)."""
    first, second, is_target = trial_pairs(speakers, rng, max_impostors)
    return pair_scores(utterance_embeddings, first, second), is_target


def pair_scores(embeddings, first, second, chunk=8192):
    """The dot product of embeddings[first[i]] and embeddings[second[i]] for every i, `chunk` pairs at a time
    (the pairs' embeddings gathered at once would be two (pairs x size) float64 arrays: GBs on large corpora; at
    65,536 pairs a chunk they were 210 MB, the largest part of a validation's memory)."""
    return np.concatenate([np.einsum("ij,ij->i", embeddings[first[i:i + chunk]], embeddings[second[i:i + chunk]])
                           for i in range(0, len(first), chunk)] or [np.zeros(0)])


def as_norm_statistics(embeddings, cohort, top_k=None, chunk=1024):
    """(mean, std) of each embedding's top_k cosine scores against the cohort: adaptive S-norm's statistics.
    `chunk` embeddings at a time (7,600 x 1,000 scores and their partition at once were ~180 MB)."""
    top_k = min(top_k or constants.ASNORM_TOP_K, len(cohort))
    means, stds = [], []
    for begin in range(0, len(embeddings), chunk):
        scores = embeddings[begin:begin + chunk] @ cohort.T
        top = -np.partition(-scores, top_k - 1, axis=1)[:, :top_k]
        means.append(top.mean(axis=1))
        stds.append(np.maximum(top.std(axis=1), 1e-6))
    if not means:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(means), np.concatenate(stds)


def as_norm(scores, first, second, statistics):
    """Adaptive S-norm of trial scores: the mean of the score normalised by each side's cohort statistics."""
    mean, std = statistics
    return 0.5 * ((scores - mean[first]) / std[first] + (scores - mean[second]) / std[second])


def equal_error_rate(scores, is_target):
    """(EER, the score threshold at that point) from scikit-learn's ROC curve. The threshold is a finite score: where
    the curve's "accept nothing" point (threshold +inf) is the EER's, as when every score is equal (a collapsed
    model), it is the next float above the highest score, which accepts nothing either."""
    false_alarm, hit, thresholds = roc_curve(is_target, scores, drop_intermediate=False)
    miss = 1 - hit
    index = int(np.nanargmin(np.abs(miss - false_alarm)))
    threshold = float(thresholds[index])
    if not np.isfinite(threshold):  # the report keeps it, and a report's threshold must read back as a number
        threshold = float(np.nextafter(np.max(scores), np.inf))
    return float((miss[index] + false_alarm[index]) / 2), threshold


def min_dcf(scores, is_target, p_target=None, cost_miss=None, cost_false_alarm=None):
    """Minimum normalised detection cost over thresholds, from scikit-learn's DET curve."""
    p_target = constants.DCF_P_TARGET if p_target is None else p_target
    cost_miss = constants.DCF_COST_MISS if cost_miss is None else cost_miss
    cost_false_alarm = constants.DCF_COST_FALSE_ALARM if cost_false_alarm is None else cost_false_alarm
    false_alarm, miss, _ = det_curve(is_target, scores)
    # the DET curve leaves out the two trivial thresholds (accept all, reject all): add them
    false_alarm, miss = np.concatenate([[1.0], false_alarm, [0.0]]), np.concatenate([[0.0], miss, [1.0]])
    cost = cost_miss * p_target * miss + cost_false_alarm * (1 - p_target) * false_alarm
    return float(cost.min() / min(cost_miss * p_target, cost_false_alarm * (1 - p_target)))


def cohort(corpus, inputs):
    """(speaker, key) of a seeded sample of ASNORM_COHORT_UTTERANCES training utterances (real speakers, train
    split): the cohort of adaptive S-norm."""
    speaker_of = {u.key: s for s, items in corpus.utterances.items() for u in items}
    keys = [k for k in inputs.train.utterance_keys.tolist() if k in speaker_of]
    limit = constants.ASNORM_COHORT_UTTERANCES
    if limit < len(keys):
        keys = sorted(np.random.default_rng([constants.SEED, 4]).choice(keys, limit, replace=False).tolist())
    return [(speaker_of[k], k) for k in keys]


def unseen_speaker_report(model, cache, corpus, unseen_speakers, norm, seed=None, cohort=()):
    """Embeddings, SAP/SAN and verification figures of the unseen speakers (dict, plus arrays for plots).

    `cohort` lists (speaker, key) of training utterances: with it, the figures with adaptive S-norm are
    reported beside the plain cosine ones (under "asnorm").
    """
    rng = np.random.default_rng(constants.SEED if seed is None else seed)
    cache.check_current([u for s in unseen_speakers for u in corpus.utterances.get(s, [])])
    speakers, keys, counts, short = [], [], [], {}
    for speaker in unseen_speakers:
        for utterance in corpus.utterances.get(speaker, []):
            if not cache.has(utterance.key):
                continue
            reason = features.too_short(cache.num_frames(utterance.key))
            if reason is not None:  # no window: no embedding (it would be NaN and poison every trial)
                short[utterance.key] = reason
                continue
            speakers.append(speaker)
            keys.append(utterance.key)
            counts.append(len(features.window_starts(cache.num_frames(utterance.key))))
    present = sorted(set(speakers))
    if len(present) < 2:
        raise utils.PipelineError(f"{len(present)} unseen speaker(s) with usable audio; the evaluation needs at "
                                      f"least 2 (with DEEP_SPEAKER_SPLIT=auto, lower NUM_SPEAKERS_CLASSIFICATION_TASK)")
    # SAP/SAN's sample of each speaker's windows, drawn before any is embedded (the draws of sap_san())
    wanted = {}  # utterance number -> [(window in it, speaker number, slot)]
    samples = []
    for number, name in enumerate(present):
        mine = [i for i, s in enumerate(speakers) if s == name]
        offsets = np.cumsum([0] + [counts[i] for i in mine])
        chosen = sap_san_choice(int(offsets[-1]), rng)
        samples.append(np.zeros((len(chosen), 0)))
        for slot, position in enumerate(chosen):
            k = int(np.searchsorted(offsets, position, side="right")) - 1
            wanted.setdefault(mine[k], []).append((int(position - offsets[k]), number, slot))
    utterance_embeddings = []
    for begin in range(0, len(keys), UTTERANCES_PER_PASS):  # never every window embedding at once
        part = range(begin, min(begin + UTTERANCES_PER_PASS, len(keys)))
        frame_list = [emb.normalized_frames(cache.load(keys[i]), norm, speakers[i]) for i in part]
        for i, windows in zip(part, emb.embed_windows(model, frame_list)):
            utterance_embeddings.append(emb.pool(windows))
            for window, number, slot in wanted.get(i, ()):
                if samples[number].shape[1] == 0:
                    samples[number] = np.zeros((len(samples[number]), windows.shape[1]), np.float32)
                samples[number][slot] = emb.unit_length(windows[window])
    utterance_embeddings = np.stack(utterance_embeddings)
    sap, san, matrix = sap_san_of_samples(samples)
    first, second, is_target = trial_pairs(speakers, rng)
    scores = pair_scores(utterance_embeddings, first, second)
    if is_target.all() or not is_target.any():
        raise utils.PipelineError("the unseen speakers need at least two utterances each for verification trials")
    eer, threshold = equal_error_rate(scores, is_target)
    report = {"eer": eer, "eer_threshold": threshold, "min_dcf": min_dcf(scores, is_target),
              "min_dcf_p_target": constants.DCF_P_TARGET, "sap": sap, "san": san,
              "num_unseen_speakers": len(present), "num_unseen_utterances": len(speakers),
              "num_short_utterances": len(short), "short_utterances": short,
              "num_trials": int(len(scores)), "num_target_trials": int(is_target.sum()),
              "normalization": norm["method"], "label_free": norm["method"] in LABEL_FREE,
              "sap_san_per_speaker": {"speakers": present, "mean_cosine_distance": matrix.round(4).tolist()}}
    arrays = {"scores": scores, "is_target": is_target, "utterance_embeddings": utterance_embeddings,
              "utterance_speakers": np.array(speakers), "distance_matrix": matrix, "speakers": present}
    if cohort:
        cohort_frames = [emb.normalized_frames(cache.load(key), norm, speaker) for speaker, key in cohort]
        cohort_embeddings = np.stack([emb.pool(w) for w in emb.embed_windows(model, cohort_frames)])
        normalised = as_norm(scores, first, second, as_norm_statistics(utterance_embeddings, cohort_embeddings))
        eer_normalised, threshold_normalised = equal_error_rate(normalised, is_target)
        report["asnorm"] = {"eer": eer_normalised, "eer_threshold": threshold_normalised,
                            "min_dcf": min_dcf(normalised, is_target), "cohort_utterances": len(cohort),
                            "top_k": min(constants.ASNORM_TOP_K, len(cohort))}
        arrays["cohort_embeddings"] = cohort_embeddings.astype(np.float32)
    return report, arrays
