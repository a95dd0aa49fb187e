"""Feature normalisation: statistics from training frames, applied to frames of any split or file.

NORMALIZATION in constants.py chooses the method. "per_speaker" is the original's and needs to know who is
speaking (each frame is scaled with its true speaker's statistics), so its accuracies are closed-set
figures with the label leaking in; every other method works without knowing the speaker.
"""
import numpy as np

import constants

LABEL_FREE = ("global", "global_per_coefficient", "per_utterance", "per_utterance_cmvn")
CHUNK_ROWS = 1 << 20  # frames per block when summing, so statistics need no float64 copy of the data


def _sums(frames, per_coefficient):
    """(count, sum, sum of squares) of `frames` in float64, scalar or per coefficient, block by block."""
    axis = 0 if per_coefficient else None
    count, total, squares = 0, 0.0, 0.0
    for begin in range(0, len(frames), CHUNK_ROWS):
        block = frames[begin:begin + CHUNK_ROWS].astype(np.float64)
        count += block.shape[0] if per_coefficient else block.size
        total = total + block.sum(axis=axis)
        squares = squares + np.square(block).sum(axis=axis)
    return count, total, squares


def _mean_std(count, total, squares):
    """Mean and standard deviation (floored at 1e-8) from running sums."""
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean ** 2, 0.0))
    return mean, np.maximum(std, 1e-8)


def moments(frames, per_coefficient):
    """(mean, std) of `frames`, scalar or one per coefficient."""
    return _mean_std(*_sums(frames, per_coefficient))


def fit(train_frames_by_speaker, other_frames_by_speaker):
    """The norm record: global statistics of all training frames, and per-speaker scalars for every speaker.

    `train_frames_by_speaker` maps each training speaker to a list of its training utterances' frames (the
    global statistics come from these alone); `other_frames_by_speaker` maps every other speaker to all of
    its utterances' frames.
    """
    scalar, coefficient = np.zeros(3), [0, 0.0, 0.0]
    per_speaker = {}
    for speaker, utterances in {**train_frames_by_speaker, **other_frames_by_speaker}.items():
        sums = np.zeros(3)
        for frames in utterances:
            sums += _sums(frames, per_coefficient=False)
            if speaker in train_frames_by_speaker:
                count, total, squares = _sums(frames, per_coefficient=True)
                coefficient = [coefficient[0] + count, coefficient[1] + total, coefficient[2] + squares]
        if speaker in train_frames_by_speaker:
            scalar += sums
        per_speaker[speaker] = [float(v) for v in _mean_std(*sums)]
    scalar_mean, scalar_std = _mean_std(*scalar)
    coefficient_mean, coefficient_std = _mean_std(*coefficient)
    return {"method": constants.NORMALIZATION,
            "global": [float(scalar_mean), float(scalar_std)],
            "global_per_coefficient": [coefficient_mean.tolist(), coefficient_std.tolist()],
            "per_speaker": per_speaker}


def normalize(frames, norm, speaker=None, method=None):
    """Normalised float32 copy of one utterance's (frames, 39) under `method` (default: the norm's own)."""
    method = method or norm["method"]
    if method == "per_speaker":
        if speaker not in norm["per_speaker"]:
            raise KeyError(f"no per-speaker statistics for {speaker!r}: per_speaker normalisation needs a "
                           f"known speaker; use a label-free NORMALIZATION ({', '.join(LABEL_FREE)})")
        mean, std = norm["per_speaker"][speaker]
    elif method in ("global", "global_per_coefficient"):
        mean, std = (np.asarray(v, dtype=np.float32) for v in norm[method])
    elif method in ("per_utterance", "per_utterance_cmvn"):
        mean, std = moments(frames, per_coefficient=method == "per_utterance_cmvn")
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    scaled = (frames - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return scaled.astype(np.float32, copy=False)
