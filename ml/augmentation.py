"""Training-time augmentation: a random recording level and, optionally, a random channel per window.

A change of gain multiplies a frame's energy, so it shifts c0 (the log frame energy) and nothing else:
the other cepstra come from an orthonormal DCT of log mel energies, where a constant shift only reaches
the zeroth term, and deltas cancel it. Shifting c0 of each training window by a random amount teaches
the model that the level of a recording says little about who speaks (its effect: docs/results.md,
"Ablations").

A fixed linear filter (a microphone, its distance, the room: the channel) adds the same curve to the log mel
energies of every frame. A smooth curve is a sum of the DCT's low-order cosines, so it shifts the static cepstra
c1..cK by constants (times the lifter's weights) and, again, not their deltas. With CHANNEL_AUGMENTATION_DB > 0
each training window also gets a random smooth filter: cepstra 1..CHANNEL_AUGMENTATION_ORDER are shifted by
independent draws whose std is the amplitude, in dB, of that cosine over the mel bands.
"""
import numpy as np

import constants


def random_shifts(windows, rng, stds):
    """Shift the static cepstra c0, c1, ... of every (FRAMES_PER_WINDOW, 39) window in place, by one draw per window
    and coefficient of N(0, stds[k]) (`stds` as shift_stds gives them; a number shifts c0 only). The c0 draw
    comes first and alone, so a run without channel shifts draws exactly what it drew before they existed."""
    stds = np.atleast_1d(np.asarray(stds, np.float64))
    if stds[0] > 0:
        shift = rng.normal(0.0, stds[0], size=(len(windows), 1)).astype(windows.dtype)
        windows[:, :, 0] += shift
    if len(stds) > 1 and np.any(stds[1:] > 0):
        shift = (rng.standard_normal(size=(len(windows), len(stds) - 1)) * stds[1:]).astype(windows.dtype)
        windows[:, :, 1:len(stds)] += shift[:, None, :]
    return windows


def shift_stds(norm):
    """[c0, c1, ..., cK] the stds of the random shifts in the units of normalised inputs: GAIN_AUGMENTATION_STD on
    c0, then the channel's on cepstra 1..CHANNEL_AUGMENTATION_ORDER when CHANNEL_AUGMENTATION_DB > 0 (zeros are
    off).

    The frames were divided by a std: exact for "global" and "global_per_coefficient"; for the other
    methods, whose std differs per speaker or utterance, the global std of the same kind (scalar, or
    each coefficient's own) stands in for it.
    """
    per_coefficient = norm["method"] in ("global_per_coefficient", "per_utterance_cmvn")
    order = min(constants.CHANNEL_AUGMENTATION_ORDER, constants.NUM_MFCC - 1) \
        if constants.CHANNEL_AUGMENTATION_DB > 0 else 0
    raw = np.concatenate([[constants.GAIN_AUGMENTATION_STD], channel_cepstra_std(order)])
    if per_coefficient:
        return raw / np.asarray(norm["global_per_coefficient"][1][:order + 1], np.float64)
    return raw / norm["global"][1]


def channel_cepstra_std(order):
    """(order,) the raw std of cepstra 1..order under a random filter whose cosine components over the mel bands
    have an amplitude std of CHANNEL_AUGMENTATION_DB (power dB): an orthonormal DCT maps a cosine of amplitude a
    (natural-log energy) to a / sqrt(2 / filters), and the lifter multiplies c_n by 1 + L/2 sin(pi n / L)."""
    n = np.arange(1, order + 1)
    amplitude = constants.CHANNEL_AUGMENTATION_DB * np.log(10) / 10
    lifter = constants.CEPSTRAL_LIFTER
    weights = 1 + lifter / 2 * np.sin(np.pi * n / lifter) if lifter > 0 else np.ones(order)
    return amplitude / np.sqrt(2 / constants.NUM_MEL_FILTERS) * weights
