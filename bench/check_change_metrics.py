"""Cross-check ml/change_metrics.py against pyannote.metrics on seeded random segmentations.

pyannote.metrics is not one of this project's packages: install it in a virtual environment of its own
(`python -m venv /tmp/pyv && /tmp/pyv/bin/pip install pyannote.metrics`), then run from the repository root:
    /tmp/pyv/bin/python bench/check_change_metrics.py
Prints the largest difference of each figure and how many segmentations differ in precision or recall
(ours: the largest one-to-one matching within the collar; pyannote: the least-total-distance one).
"""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

try:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.segmentation import (SegmentationCoverage, SegmentationPrecision, SegmentationPurity,
                                               SegmentationRecall)
except ImportError:
    sys.exit("pyannote.metrics is not installed here: see this script's docstring")

# ml/change_metrics.py needs numpy only: load it without the project's other imports
_spec = importlib.util.spec_from_file_location("change_metrics", Path(__file__).resolve().parents[1] / "ml" /
                                               "change_metrics.py")
change_metrics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(change_metrics)
TRIALS, COLLAR = 300, 0.5


def annotation(changes, duration):
    """The segmentation of [0, duration] at `changes` as a pyannote Annotation."""
    result, edges = Annotation(), [0.0] + sorted(changes) + [duration]
    for k, (start, end) in enumerate(zip(edges[:-1], edges[1:])):
        result[Segment(start, end)] = f"s{k}"
    return result


def main():
    rng = np.random.default_rng(0)
    worst = dict.fromkeys(("purity", "coverage", "precision", "recall"), 0.0)
    differ = ours_higher = 0
    for _ in range(TRIALS):
        duration = float(rng.uniform(10, 60))
        truth = sorted(rng.uniform(0.5, duration - 0.5, rng.integers(0, 10)).round(3).tolist())
        found = sorted(set((np.array(truth) + rng.normal(0, 0.4, len(truth))).clip(0.1, duration - 0.1).round(3)
                           .tolist() + rng.uniform(0.5, duration - 0.5, rng.integers(0, 5)).round(3).tolist()))
        reference, hypothesis = annotation(truth, duration), annotation(found, duration)
        purity, coverage = change_metrics.purity_coverage([change_metrics.purity_coverage_sums(truth, found,
                                                                                               duration)])
        precision, recall, _ = change_metrics.precision_recall_f1([change_metrics.detection_counts(truth, found,
                                                                                                   COLLAR)])
        theirs = {"purity": SegmentationPurity()(reference, hypothesis),
                  "coverage": SegmentationCoverage()(reference, hypothesis),
                  "precision": SegmentationPrecision(tolerance=COLLAR)(reference, hypothesis),
                  "recall": SegmentationRecall(tolerance=COLLAR)(reference, hypothesis)}
        mine = {"purity": purity, "coverage": coverage, "precision": precision, "recall": recall}
        for name in worst:
            worst[name] = max(worst[name], abs(mine[name] - theirs[name]))
        if abs(precision - theirs["precision"]) > 1e-9 or abs(recall - theirs["recall"]) > 1e-9:
            differ += 1
            ours_higher += precision >= theirs["precision"] and recall >= theirs["recall"]
    print(json.dumps({"trials": TRIALS, "largest_difference": worst, "precision_or_recall_differ": differ,
                      "ours_at_least_as_high_where_they_differ": ours_higher}))


if __name__ == "__main__":
    main()
