"""Training-time augmentation: a random recording level per window.

A change of gain multiplies a frame's energy, so it shifts c0 (the log frame energy) and nothing else:
the other cepstra come from an orthonormal DCT of log mel energies, where a constant shift only reaches
the zeroth term, and deltas cancel it. Shifting c0 of each training window by a random amount teaches
the model that the level of a recording says little about who speaks (its effect: docs/results.md,
"Ablations").
"""

import constants


def random_level(windows, rng, std_in_inputs):
    """Shift c0 of every (FRAMES_PER_WINDOW, 39) window in place by a draw of N(0, std_in_inputs)."""
    if std_in_inputs > 0:
        shift = rng.normal(0.0, std_in_inputs, size=(len(windows), 1)).astype(windows.dtype)
        windows[:, :, 0] += shift
    return windows


def level_std(norm):
    """GAIN_AUGMENTATION_STD in the units of normalised inputs (0 when augmentation is off).

    The frames were divided by a std: exact for "global" and "global_per_coefficient"; for the other
    methods, whose std differs per speaker or utterance, the global std of the same kind (scalar, or
    c0's own) stands in for it.
    """
    if norm["method"] in ("global_per_coefficient", "per_utterance_cmvn"):
        std = norm["global_per_coefficient"][1][0]
    else:
        std = norm["global"][1]
    return constants.GAIN_AUGMENTATION_STD / std
