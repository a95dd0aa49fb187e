"""PNG figures of an evaluation: DET curve, score histograms, a 2-D map of embeddings, training curves."""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from sklearn.metrics import DetCurveDisplay  # noqa: E402

import constants  # noqa: E402


def _save(figure, path):
    """Write `figure` to `path` atomically (a killed run leaves the old file or the new one) and release it."""
    import utils
    figure.tight_layout()
    with utils.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
    return Path(path)


def det_plot(scores, is_target, eer, path):
    """DET curve of the verification trials (normal-deviate axes), with the EER marked in the legend."""
    figure, axis = plt.subplots(figsize=(5, 5))
    DetCurveDisplay.from_predictions(is_target, scores, ax=axis, name=f"unseen speakers (EER {eer:.1%})")
    axis.set(title="Speaker verification, utterance embeddings", xlabel="false alarm rate (impostor accepted)",
             ylabel="miss rate (same speaker rejected)")
    return _save(figure, path)


def score_histograms(scores, is_target, threshold, path):
    """Histograms of same-speaker and different-speaker cosine scores, and the EER threshold."""
    figure, axis = plt.subplots(figsize=(6, 4))
    bins = np.linspace(min(scores.min(), -1e-3), max(scores.max(), 1e-3), 60)
    axis.hist(scores[~is_target], bins=bins, density=True, alpha=0.6, label=f"different speakers ({(~is_target).sum():,})")
    axis.hist(scores[is_target], bins=bins, density=True, alpha=0.6, label=f"same speaker ({is_target.sum():,})")
    axis.axvline(threshold, color="k", linestyle="--", label=f"EER threshold {threshold:.3f}")
    axis.set_xlabel("cosine score")
    axis.set_ylabel("density")
    axis.legend()
    return _save(figure, path)


def embedding_map(embeddings, speakers, path, method=None):
    """The utterance embeddings in 2-D (t-SNE or PCA), one colour per speaker."""
    method = method or constants.PROJECTION
    if method == "tsne" and len(embeddings) > 5:
        points = TSNE(2, perplexity=min(30.0, (len(embeddings) - 1) / 3), init="pca",
                      random_state=constants.SEED).fit_transform(embeddings)
    else:
        method, points = "pca", PCA(2, random_state=constants.SEED).fit_transform(embeddings)
    figure, axis = plt.subplots(figsize=(6, 6))
    names = sorted(set(speakers))
    colours = plt.get_cmap("tab20" if len(names) <= 20 else "gist_ncar", len(names))
    for index, name in enumerate(names):
        mine = np.asarray(speakers) == name
        axis.scatter(points[mine, 0], points[mine, 1], s=14, color=colours(index), label=name)
    if len(names) <= 20:
        axis.legend(fontsize=7, markerscale=1.2, ncol=2)
    axis.set_title(f"Unseen speakers' utterance embeddings ({method.upper() if method == 'pca' else 't-SNE'})")
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)


def training_curves(histories, path):
    """Loss and accuracy per epoch of the softmax runs, and the triplet loss per step (moving average)."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode in ("softmax", "frozen"):
        rows = _read_csv(histories.get(mode), ("epoch", "softmax_accuracy", "val_softmax_accuracy"))
        if rows:
            epochs = [int(r["epoch"]) + 1 for r in rows]
            axes[0].plot(epochs, [float(r["softmax_accuracy"]) for r in rows], label=f"{mode} train")
            axes[0].plot(epochs, [float(r["val_softmax_accuracy"]) for r in rows], "--", label=f"{mode} test")
    axes[0].set(xlabel="epoch", ylabel="accuracy per window", title="Softmax training")
    rows = _read_csv(histories.get("triplet"), ("step", "loss", "test_loss"))
    if rows:
        steps = np.array([int(r["step"]) for r in rows])
        for key in ("loss", "test_loss"):
            values = np.array([float(r[key]) for r in rows])
            width = min(constants.MOVING_AVERAGE_STEPS, len(values))
            smooth = np.convolve(values, np.ones(width) / width, mode="valid")
            axes[1].plot(steps[width - 1:], smooth, label=key.replace("_", " "))
    axes[1].set(xlabel="step", ylabel="triplet loss (moving average)", title="Triplet training")
    for axis in axes:
        if axis.lines:
            axis.legend()
    return _save(figure, path)


def _read_csv(path, columns):
    """Rows of a history CSV file whose `columns` all hold numbers, or [] when there is none.

    A plot is a view: a damaged row or header (a repeated header, a line cut by a kill) is left out, never fatal.
    """
    if path is None or not Path(path).exists():
        return []
    with open(path, newline="", errors="replace") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if all(_is_number(r.get(c)) for c in columns)]


def _is_number(value):
    """Whether a CSV cell holds a number."""
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _strength_note():
    """How the detected changes were scored beyond the curve drawn (merging, clustering), for the threshold's label."""
    parts = (["merged segments"] if constants.CHANGE_MERGE_REACH_S > 0 else []) + \
        (["clusters"] if constants.CHANGE_CLUSTER_WEIGHT > 0 else [])
    return f" (scored over {' and '.join(parts)})" if parts else ""


def change_curve(curve, threshold, changes, path, truth=None, baseline=None, title=None):
    """The change curve of a recording, its threshold and detected changes (and the true ones when known);
    `baseline` = (curve, threshold, changes) of another detector, drawn in a second panel. With merging or clustering
    the threshold applies to the candidates' strengths (curve.ranked), drawn as dots beside the curve."""
    rows = 2 if baseline is not None else 1
    figure, axes = plt.subplots(rows, 1, figsize=(12.5, 2.6 * rows), sharex=True, squeeze=False)
    label = {"cosine": "cosine distance, left vs right", "contrast": "distance beyond each side's spread"}
    panels = [(curve, threshold, changes, label.get(constants.CHANGE_CURVE, "change curve"),
               _strength_note())]
    if baseline is not None:
        panels.append((*baseline, "delta-BIC (baseline)", ""))
    for axis, (values, level, found, label, note) in zip(axes[:, 0], panels):
        finite = np.where(np.isfinite(values.values), values.values, np.nan)
        axis.plot(values.times, finite, color="tab:blue", linewidth=1)
        if note and getattr(values, "ranked", None) is not None:  # the threshold cuts these, not the curve
            times, strengths = values.ranked
            shown = np.isfinite(strengths)
            axis.plot(times[shown], strengths[shown], "o", markersize=3, color="tab:orange",
                      label="candidate change: its strength")
        axis.axhline(level, color="k", linestyle=":", linewidth=1, label=f"threshold {level:.3g}{note}")
        for k, time in enumerate(truth if truth is not None else []):
            axis.axvline(time, color="tab:green", linewidth=3, alpha=0.35, label="true change" if k == 0 else None)
        for k, time in enumerate(found):
            axis.axvline(time, color="tab:red", linestyle="--", linewidth=1, label="detected" if k == 0 else None)
        axis.set_ylabel(label, fontsize=8)
        axis.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)  # beside the panel: hides no change
    axes[0, 0].set_title(title or "speaker change detection")
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 0].set_xlim(0, curve.duration)
    return _save(figure, path)
