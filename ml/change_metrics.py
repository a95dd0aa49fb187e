"""Figures of speaker change detection: change-point precision, recall and F1 within a collar, and the
segment purity and coverage of two segmentations of the same recording.

Definitions:
- A detected change is a hit when it lies within `collar` seconds of a true change, each true change and each
  detection in at most one pair, as many pairs as possible. Precision = hits / detected, recall = hits / true.
  pyannote.metrics' SegmentationPrecision/Recall pair them by least total distance instead, which can count
  fewer hits: 20 of 300 random segmentations differed, ours higher in all 20 (bench/check_change_metrics.py,
  pyannote.metrics 4.2.0, 2026-12-02).
- Purity: each detected segment counts by its largest overlap with one true segment; purity is their sum over
  the total duration. Coverage is the same with the roles swapped. Purity falls when changes are missed,
  coverage when spurious ones split true segments. These equal pyannote.metrics' SegmentationPurity and
  SegmentationCoverage (the same 300 agreed to 2e-16).
Figures over many recordings pool their counts and durations (micro-averages). pyannote.metrics itself is
not a dependency: it would bring pandas, scipy, sympy and more beside the packages this project is built on.
"""
import numpy as np


def matched_changes(reference, hypothesis, collar):
    """The number of pairs (true change, detected change) within `collar` s, each change in at most one pair,
    as many pairs as possible.

    Both sorted, the earliest unmatched true change takes the earliest detected change within its collar: on a
    line, this greedy matching is a largest one (a change skipped by it can be matched by no later one).
    """
    reference, hypothesis = np.sort(np.asarray(reference, float)), np.sort(np.asarray(hypothesis, float))
    i = j = matched = 0
    while i < len(reference) and j < len(hypothesis):
        if hypothesis[j] < reference[i] - collar:
            j += 1  # too early for this and every later true change
        elif reference[i] < hypothesis[j] - collar:
            i += 1  # no detection left near this true change
        else:
            matched, i, j = matched + 1, i + 1, j + 1
    return matched


def detection_counts(reference, hypothesis, collar):
    """{"hits", "detected", "true"} of one recording."""
    return {"hits": matched_changes(reference, hypothesis, collar), "detected": len(hypothesis),
            "true": len(reference)}


def precision_recall_f1(counts):
    """(precision, recall, F1) of pooled counts (a list of detection_counts); 1 where nothing was to find or
    nothing was detected, as the ratio's limit would have it."""
    hits = sum(c["hits"] for c in counts)
    detected, true = sum(c["detected"] for c in counts), sum(c["true"] for c in counts)
    precision = hits / detected if detected else 1.0
    recall = hits / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def boundaries(changes, duration):
    """The edges of the segments that `changes` cut [0, duration] into: [0, c1, ..., duration]."""
    inner = np.sort(np.asarray([c for c in changes if 0 < c < duration], float))
    return np.concatenate([[0.0], inner, [float(duration)]])


def _largest_overlaps(edges, other):
    """For each segment of `edges`, its largest overlap with one segment of `other` (both boundaries())."""
    start, end = edges[:-1, None], edges[1:, None]
    overlap = np.minimum(end, other[None, 1:]) - np.maximum(start, other[None, :-1])
    return np.clip(overlap, 0, None).max(axis=1)


def purity_coverage_sums(reference, hypothesis, duration):
    """{"purity", "coverage", "duration"}: the overlap sums (seconds) of one recording, to pool."""
    truth, found = boundaries(reference, duration), boundaries(hypothesis, duration)
    return {"purity": float(_largest_overlaps(found, truth).sum()),
            "coverage": float(_largest_overlaps(truth, found).sum()), "duration": float(duration)}


def purity_coverage(sums):
    """(purity, coverage) of pooled sums (a list of purity_coverage_sums)."""
    duration = sum(s["duration"] for s in sums)
    return sum(s["purity"] for s in sums) / duration, sum(s["coverage"] for s in sums) / duration
