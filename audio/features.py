"""Audio to features: load at 8 kHz mono, keep the voice, MFCC + delta + delta-delta per frame, windows.

Features are computed once over the whole voiced signal of an utterance, so deltas follow the continuous
frame sequence (the original computed each 25 ms slice on its own and all its deltas came out zero).
"""
import os
import warnings

import librosa
import numpy as np
import python_speech_features as psf

import constants


class UnusableAudio(Exception):
    """An utterance that cannot give features: unreadable, empty, silent or too short. str() = reason."""


def load_audio(path, sample_rate=None):
    """Samples of `path` as float32 mono at `sample_rate` (default constants.SAMPLE_RATE)."""
    sample_rate = sample_rate or constants.SAMPLE_RATE
    if not os.path.isfile(path):
        raise UnusableAudio("unreadable (no such file)")
    if os.path.getsize(path) == 0:
        raise UnusableAudio("unreadable (an empty file, 0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns before its audioread fallback; the error says enough
            signal, _ = librosa.load(path, sr=sample_rate, mono=True, dtype=np.float32)
    except Exception as error:  # any decoder failure means the same thing here: the file is unusable
        detail = str(error).strip()[:120] or "not a format soundfile or audioread can decode"
        raise UnusableAudio(f"unreadable ({type(error).__name__}: {detail})") from None
    if signal.size == 0:
        raise UnusableAudio("empty (no samples)")
    if not np.all(np.isfinite(signal)):
        raise UnusableAudio("contains NaN or infinite samples")
    peak = float(np.abs(signal).max())
    if peak > FULL_SCALE_LIMIT:
        raise UnusableAudio(f"far beyond full scale (peak {peak:.3g}, full scale 1): a float file out of range, whose "
                            f"features would be of another level than any speech trained on; rescale it")
    return signal


# Samples beyond this (full scale 1) make a file unusable: integer formats cannot reach it, a float file scaled wrongly
# does (x 32768, say). Resampling a full-scale file overshoots 1 a little, far below it.
FULL_SCALE_LIMIT = 4.0


def at_speed(signal, factor, sample_rate=None):
    """`signal` played `factor` times faster at the same rate: duration / factor, pitch and formants x factor.

    It is resampled to sample_rate / factor and read back at sample_rate (speed perturbation), so a copy
    at 0.9 or 1.1 sounds like another speaker of the same accent and text.
    """
    if factor <= 0:
        raise ValueError(f"a speed factor must be positive, not {factor}")
    if factor == 1:
        return signal
    sample_rate = sample_rate or constants.SAMPLE_RATE
    return librosa.resample(signal, orig_sr=sample_rate, target_sr=int(round(sample_rate / factor))).astype(np.float32)


def speed_key(key, factor):
    """The cache key of an utterance played at `factor` (the key itself at 1): "<key>@<factor>"."""
    return key if factor == 1 else f"{key}@{factor:g}"


def split_speed_key(key):
    """The inverse of speed_key: (the key or speaker name played at speed 1, its factor)."""
    base, _, factor = key.rpartition("@")
    return (base, float(factor)) if base else (key, 1.0)


def voice_only(signal, percentile=None):
    """The part of `signal` from the first to the last sample whose |x| exceeds the percentile of |x|."""
    percentile = constants.VOICE_PERCENTILE if percentile is None else percentile
    magnitude = np.abs(signal)
    if magnitude.max() < constants.SILENCE_PEAK:
        raise UnusableAudio(f"all-silent (peak {magnitude.max():.1e} < SILENCE_PEAK {constants.SILENCE_PEAK})")
    loud = np.flatnonzero(magnitude > np.percentile(magnitude, percentile))
    if loud.size == 0:  # a constant-magnitude signal: nothing stands out, keep it whole
        return signal
    return signal[loud[0]:loud[-1] + 1]


def deltas(features, width=None):
    """Regression deltas over the frame axis with the edge frames repeated (python_speech_features' definition,
    N = DELTA_WIDTH), computed by librosa's Savitzky-Golay delta."""
    width = constants.DELTA_WIDTH if width is None else width
    return librosa.feature.delta(features, width=2 * width + 1, order=1, axis=0, mode="nearest").astype(features.dtype)


def mfcc_frames(signal, sample_rate=None, pre_emphasis=None):
    """(frames, 39) float32: 13 MFCC (c0 = log energy), their deltas and delta-deltas, per 25 ms frame.

    `pre_emphasis` defaults to PRE_EMPHASIS; 0 for a signal emphasised already (mfcc_frames_in_blocks)."""
    sample_rate = sample_rate or constants.SAMPLE_RATE
    pre_emphasis = constants.PRE_EMPHASIS if pre_emphasis is None else pre_emphasis
    mfcc = psf.mfcc(signal, samplerate=sample_rate, winlen=constants.FRAME_LENGTH_S,
                    winstep=constants.FRAME_STEP_S, numcep=constants.NUM_MFCC,
                    nfilt=constants.NUM_MEL_FILTERS, nfft=constants.FFT_SIZE,
                    preemph=pre_emphasis, ceplifter=constants.CEPSTRAL_LIFTER, appendEnergy=True)
    delta = deltas(mfcc)
    return np.concatenate([mfcc, delta, deltas(delta)], axis=1).astype(np.float32)


def frame_count(num_samples, sample_rate=None):
    """Frames python_speech_features makes of `num_samples` samples (the last one zero-padded)."""
    sample_rate = sample_rate or constants.SAMPLE_RATE
    length, step = frame_geometry(sample_rate)
    return 1 if num_samples <= length else 1 + int(np.ceil((num_samples - length) / step))


def frame_geometry(sample_rate=None):
    """(samples per frame, samples between frames), rounded as python_speech_features rounds them."""
    sample_rate = sample_rate or constants.SAMPLE_RATE
    return (int(psf.sigproc.round_half_up(constants.FRAME_LENGTH_S * sample_rate)),
            int(psf.sigproc.round_half_up(constants.FRAME_STEP_S * sample_rate)))


def mfcc_frames_in_blocks(signal, sample_rate=None, block_frames=6000):
    """mfcc_frames of a long signal, `block_frames` frames at a time: the same numbers, in memory that does
    not grow with the signal beyond the frames themselves (python_speech_features holds every frame's
    samples and spectrum as float64, ~5 KB per 10 ms frame).

    Each block is pre-emphasised with the sample before it and takes 2 * DELTA_WIDTH + 1 frames of context on
    both sides, so its numbers, deltas and delta-deltas included, are those of the whole signal.
    """
    sample_rate = sample_rate or constants.SAMPLE_RATE
    total = frame_count(len(signal), sample_rate)
    if total <= block_frames:
        return mfcc_frames(signal, sample_rate)
    length, step = frame_geometry(sample_rate)
    margin = 2 * constants.DELTA_WIDTH + 1
    frames = np.empty((total, 3 * constants.NUM_MFCC), np.float32)
    for first in range(0, total, block_frames):
        last = min(first + block_frames, total)
        begin, end = max(first - margin, 0), min(last + margin, total)
        block = mfcc_frames(_emphasised(signal, begin * step, (end - 1) * step + length), sample_rate,
                            pre_emphasis=0)
        frames[first:last] = block[first - begin:last - begin]
    return frames


def _emphasised(signal, start, stop):
    """signal[start:stop] pre-emphasised as python_speech_features emphasises the whole signal (float32)."""
    piece = np.asarray(signal[start:stop], np.float32)
    emphasised = piece.copy()
    emphasised[1:] -= constants.PRE_EMPHASIS * piece[:-1]
    if start > 0:
        emphasised[0] -= constants.PRE_EMPHASIS * signal[start - 1]
    return emphasised


def min_frames():
    """Frames an utterance (or a file, or a recording) needs to be used at all: one window of the current
    settings, and no fewer than the cache keeps. The one rule of "long enough", for training, evaluation and
    inference alike."""
    return max(constants.FRAMES_PER_WINDOW, constants.MIN_VOICED_FRAMES)


def too_short(num_frames, voiced_seconds=None):
    """Why an utterance of `num_frames` frames is too short to use (min_frames), or None when it is not."""
    need = min_frames()
    if num_frames >= need:
        return None
    voiced = "" if voiced_seconds is None else f"{voiced_seconds:.2f} s voiced, "
    return (f"too short ({voiced}{num_frames} frames; at least {need} needed: one window of FRAMES_PER_WINDOW="
            f"{constants.FRAMES_PER_WINDOW} frames of {constants.FRAME_STEP_S * 1000:g} ms)")


def signal_features(signal, sample_rate=None, minimum=None):
    """Features of the voiced part of a loaded signal; UnusableAudio says why when there are none.

    `minimum` frames are needed (default min_frames(); the cache keeps anything from MIN_VOICED_FRAMES on,
    so that a change of window length needs no new cache).
    """
    sample_rate = sample_rate or constants.SAMPLE_RATE
    voiced = voice_only(signal)
    frames = mfcc_frames(voiced, sample_rate)
    need = min_frames() if minimum is None else minimum
    if len(frames) < need:
        reason = too_short(len(frames), len(voiced) / sample_rate) if minimum is None else (
            f"too short ({len(voiced) / sample_rate:.3f} s voiced, {len(frames)} frames < MIN_VOICED_FRAMES {need})")
        raise UnusableAudio(reason)
    return frames


def utterance_features(path, sample_rate=None):
    """Features of the voiced part of one audio file, at least one window long; UnusableAudio says why not."""
    return signal_features(load_audio(path, sample_rate), sample_rate)


def feature_settings():
    """The constants that determine the features; the cache records them and is rebuilt when they change."""
    names = ("SAMPLE_RATE", "VOICE_PERCENTILE", "SILENCE_PEAK", "MIN_VOICED_FRAMES", "FRAME_LENGTH_S",
             "FRAME_STEP_S", "NUM_MFCC", "NUM_MEL_FILTERS", "FFT_SIZE", "PRE_EMPHASIS", "CEPSTRAL_LIFTER",
             "DELTA_WIDTH", "VCTK_MIC", "AUDIO_EXTENSIONS")
    return {name: getattr(constants, name) for name in names}


# ----------------------------------------------------------------------------------------------------
# Windows: FRAMES_PER_WINDOW consecutive frames, WINDOW_HOP_FRAMES apart
# ----------------------------------------------------------------------------------------------------
def window_starts(num_frames, frames_per_window=None, hop=None):
    """First-frame index of every window that fits in `num_frames` frames, in order."""
    frames_per_window = frames_per_window or constants.FRAMES_PER_WINDOW
    hop = hop or constants.WINDOW_HOP_FRAMES
    return np.arange(0, max(num_frames - frames_per_window + 1, 0), hop)


def gather_windows(frames, starts, frames_per_window=None):
    """(len(starts), frames_per_window, 39) copy of the windows beginning at `starts` in `frames`.

    From a memory-mapped .npy opened with readable_map (streamed inputs), the windows are read from the file
    (pread), not through the mapping: a page fault maps the page cache's whole folio around it (about 1 MB on this
    project's kernel), so one batch of 900 random windows made about 1 GB of a 1.6 GB file resident in the
    process. Read this way, the process holds the batch; the file stays in the OS's page cache."""
    frames_per_window = frames_per_window or constants.FRAMES_PER_WINDOW
    starts = np.asarray(starts)
    if getattr(frames, "reader", None) is not None:
        return _read_windows(frames, starts, frames_per_window)
    return frames[starts[:, None] + np.arange(frames_per_window)]


def readable_map(path, expected=None):
    """np.load(path, mmap_mode="r") with a read-only descriptor of the same file attached (`reader`), so that
    gather_windows reads the very file that was mapped, even if the path is replaced later. The descriptor is
    opened first; the map is refused unless the path still names the descriptor's file once it is made (a file
    replaced in between). With `expected` ([size, sha256]), the file is hashed through that descriptor: the bytes
    checked are the bytes read. OSError on a mismatch; the descriptor closes with the array."""
    import hashlib
    import weakref
    descriptor = os.open(path, os.O_RDONLY)
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        before, now = os.fstat(descriptor), os.stat(path)
        if (before.st_dev, before.st_ino) != (now.st_dev, now.st_ino):
            raise OSError(f"{path} was replaced while it was being opened")
        if mapped.ndim != 2 or not mapped.flags.c_contiguous:
            raise OSError(f"{path} is not a 2-D C-ordered array")
        if expected is not None:
            digest, offset = hashlib.sha256(), 0
            while block := os.pread(descriptor, 1 << 22, offset):
                digest.update(block)
                offset += len(block)
            if [offset, digest.hexdigest()] != list(expected):
                raise OSError(f"{path} differs from its record (size or sha256)")
    except BaseException:
        os.close(descriptor)
        raise
    weakref.finalize(mapped, os.close, descriptor)
    mapped.reader = descriptor
    return mapped


def _read_windows(frames, starts, frames_per_window):
    """gather_windows from the file behind a readable_map array: one pread per run of windows that overlap or
    touch (an utterance's consecutive windows, as evaluation gathers them, are one read), one per window otherwise."""
    row = frames.shape[1] * frames.itemsize
    out = np.empty((len(starts), frames_per_window, frames.shape[1]), frames.dtype)
    if len(starts) == 0:
        return out
    if starts.min() < 0 or starts.max() + frames_per_window > frames.shape[0]:
        raise IndexError(f"a window runs outside the {frames.shape[0]} frames of {frames.filename}")
    order = np.argsort(starts, kind="stable")
    ordered = starts[order]
    bounds = np.flatnonzero(np.diff(ordered) > frames_per_window) + 1  # a gap: the next window starts a new read
    bounds = np.concatenate([[0], bounds, [len(ordered)]]).tolist()
    ordered_list, order_list = ordered.tolist(), order.tolist()
    for begin, end in zip(bounds[:-1], bounds[1:]):
        first, last = ordered_list[begin], ordered_list[end - 1] + frames_per_window
        length = (last - first) * row
        data = os.pread(frames.reader, length, frames.offset + first * row)
        if len(data) != length:
            import utils
            raise utils.CorruptFile(f"{frames.filename} ended early: it is shorter than its header says (changed "
                                    f"since it was checked); rebuild the inputs with `python ml/0_generate_inputs.py "
                                    f"--force`")
        span = np.frombuffer(data, frames.dtype).reshape(last - first, frames.shape[1])
        if end - begin == 1:
            out[order_list[begin]] = span
        else:
            out[order[begin:end]] = span[(ordered[begin:end] - first)[:, None] + np.arange(frames_per_window)]
    return out
    flat = out.reshape(len(starts), -1).view(np.uint8)
    length = frames_per_window * row
    if len(starts) and (starts.min() < 0 or starts.max() + frames_per_window > frames.shape[0]):
        raise IndexError(f"a window runs outside the {frames.shape[0]} frames of {frames.filename}")
    for i, start in enumerate(starts.tolist()):
        data = os.pread(frames.reader, length, frames.offset + start * row)
        if len(data) != length:
            import utils
            raise utils.CorruptFile(f"{frames.filename} ended early: it is shorter than its header says (changed "
                                    f"since it was checked); rebuild the inputs with `python ml/0_generate_inputs.py "
                                    f"--force`")
        flat[i] = np.frombuffer(data, np.uint8)
    return out
