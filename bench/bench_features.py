"""Benchmark: MFCC feature extraction speed, original method vs ours, and feature-cache throughput.

a. Extraction alone. A fixed, seeded sample of utterances is loaded at SAMPLE_RATE and voice-trimmed once,
   before any timing. On that same audio two methods are timed, one after the other in each repeat:
   - the ORIGINAL's per-slice method, re-created here only: the voiced signal is cut into 25 ms slices at
     a 10 ms hop (complete slices only), python_speech_features.mfcc runs on each slice alone (one frame),
     and python_speech_features.delta of that single frame gives the delta and delta-delta (zero up to
     rounding: the original's bug), concatenated to 39 values per frame;
   - ours: audio.features.mfcc_frames over the whole voiced signal (deltas over the frame sequence).
   Reported: seconds per hour of (voiced) audio for both and their ratio (median over repeats), the frame
   counts of both, how large their deltas are, and how far their static coefficients c0..c12 differ.
b. The whole cache step (load + resample + trim + features + .npy write) over the full corpus, with
   audio.cache.FeatureCache(corpus_root, cache_root=<fresh temporary folder>).build(all utterances), timed
   with a wall clock around build() (so the start-up of its worker processes is included), default worker
   count (NUM_WORKERS; 0 = one per core). Reported: wall seconds, hours of audio (BuildReport.audio_seconds,
   the whole file before the trim), real-time factor, and that factor applied to VCTK's ~44 hours.

Run from the repository root:  VCTK_CORPUS_PATH=/path/to/corpus python bench/bench_features.py
"""
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click
import numpy as np
import threadpoolctl
import python_speech_features as psf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import constants  # noqa: E402
import utils  # noqa: E402
from audio import features  # noqa: E402
from audio.cache import FeatureCache  # noqa: E402
from audio.corpus import find_corpus  # noqa: E402
from bench import common  # noqa: E402

SAMPLE_SEED = 2018  # seeds the choice of utterances for part a, so every run times the same audio
VCTK_HOURS = 44.0  # hours of audio in VCTK (one microphone), for the extrapolation
TARGET_SPEEDUP = 50  # ours vs the original's per-slice method
TARGET_REAL_TIME = 500  # cache step, on 2 cores
TARGET_VCTK_MINUTES = 6  # cache step for all of VCTK (the original took ~2 hours)


# ----------------------------------------------------------------------------------------------------
# a. Extraction alone, original vs ours
# ----------------------------------------------------------------------------------------------------
def voiced_sample(corpus, count):
    """Voice-trimmed signals of `count` utterances drawn (seeded) from the corpus, loaded once."""
    utterances = [u for items in corpus.utterances.values() for u in items]
    rng = np.random.default_rng(SAMPLE_SEED)
    chosen = sorted(rng.choice(len(utterances), size=min(count, len(utterances)), replace=False))
    signals = []
    for index in chosen:
        try:
            signals.append(features.voice_only(features.load_audio(utterances[index].path)))
        except features.UnusableAudio as reason:
            print(f"sample: skipped {utterances[index].key}: {reason}")
    return signals


def original_per_slice(voiced):
    """(slices, 39) float64 the original's way: MFCC of every 25 ms slice alone, deltas of a single frame."""
    rate = constants.SAMPLE_RATE
    length, step = round(constants.FRAME_LENGTH_S * rate), round(constants.FRAME_STEP_S * rate)
    rows = []
    for begin in range(0, len(voiced) - length + 1, step):
        mfcc = psf.mfcc(voiced[begin:begin + length], rate, winlen=constants.FRAME_LENGTH_S,
                        winstep=constants.FRAME_STEP_S, numcep=constants.NUM_MFCC,
                        nfilt=constants.NUM_MEL_FILTERS, nfft=constants.FFT_SIZE,
                        preemph=constants.PRE_EMPHASIS, ceplifter=constants.CEPSTRAL_LIFTER, appendEnergy=True)
        delta = psf.delta(mfcc, constants.DELTA_WIDTH)
        rows.append(np.concatenate([mfcc, delta, psf.delta(delta, constants.DELTA_WIDTH)], axis=1))
    return np.concatenate(rows)


def timed(method, signals):
    """(seconds, outputs) of running `method` on every signal."""
    start = time.perf_counter()
    outputs = [method(signal) for signal in signals]
    return time.perf_counter() - start, outputs


def compare(original, ours):
    """Frame counts, delta sizes and the static-coefficient difference of the two methods' outputs."""
    statics = constants.NUM_MFCC
    common_frames = [(a[:len(b)], b[:len(a)]) for a, b in zip(original, ours)]
    difference = np.concatenate([np.abs(a[:, :statics] - b[:, :statics]) for a, b in common_frames])
    return {"frames_original": sum(len(a) for a in original), "frames_ours": sum(len(b) for b in ours),
            "extra_frames_in_ours": {str(extra): count for extra, count in  # per utterance: how many
                                     sorted(Counter(len(b) - len(a) for a, b in zip(original, ours)).items())},
            "original_max_abs_delta": float(max(np.abs(a[:, statics:]).max() for a in original)),
            "ours_deltas_nonzero_fraction": float(np.mean(np.concatenate([b[:, statics:] != 0 for b in ours]))),
            "static_c0_max_abs_difference": float(difference[:, 0].max()),
            "static_c1_c12_median_abs_difference": float(np.median(difference[:, 1:]))}


def extraction_benchmark(corpus, count, repeats):
    """Seconds per hour of audio of both methods (per repeat and median), their ratio, and the comparison.

    Both run with one BLAS thread, as the cache workers do (audio/cache.py).
    """
    with threadpoolctl.threadpool_limits(1):
        return _extraction_benchmark(corpus, count, repeats)


def _extraction_benchmark(corpus, count, repeats):
    """extraction_benchmark's measurements."""
    signals = voiced_sample(corpus, count)
    hours = sum(len(s) for s in signals) / constants.SAMPLE_RATE / 3600
    print(f"a. {len(signals)} utterances, {hours * 60:.1f} min of voiced audio at {constants.SAMPLE_RATE} Hz")
    timed(original_per_slice, signals[:1])  # warm-up: lazy imports and first-call costs stay out of the timings
    timed(features.mfcc_frames, signals[:1])
    original_s, ours_s = [], []
    for repeat in range(repeats):
        seconds, original = timed(original_per_slice, signals)
        original_s.append(seconds / hours)
        seconds, ours = timed(features.mfcc_frames, signals)
        ours_s.append(seconds / hours)
        print(f"  repeat {repeat + 1}: original {original_s[-1]:.1f} s/h, ours {ours_s[-1]:.2f} s/h, "
              f"ratio {original_s[-1] / ours_s[-1]:.0f}x")
    result = {"utterances": len(signals), "voiced_hours": hours, "original_s_per_hour": original_s,
              "ours_s_per_hour": ours_s, "original_s_per_hour_median": statistics.median(original_s),
              "ours_s_per_hour_median": statistics.median(ours_s), **compare(original, ours)}
    result["speedup"] = result["original_s_per_hour_median"] / result["ours_s_per_hour_median"]
    return result


# ----------------------------------------------------------------------------------------------------
# b. The whole cache step
# ----------------------------------------------------------------------------------------------------
def cache_benchmark(corpus, repeats):
    """Wall seconds and audio hours of building a fresh feature cache of the whole corpus, per repeat."""
    utterances = [u for items in corpus.utterances.values() for u in items]
    workers = constants.NUM_WORKERS or len(os.sched_getaffinity(0))
    print(f"b. cache build of {len(utterances)} utterances with {workers} workers, fresh cache each repeat")
    walls = []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as folder:
            start = time.perf_counter()
            report = FeatureCache(corpus.root, cache_root=folder).build(utterances, progress=False)
            walls.append(time.perf_counter() - start)
        print(f"  repeat {repeat + 1}: {walls[-1]:.1f} s for {report.audio_seconds / 3600:.2f} h "
              f"({report.audio_seconds / walls[-1]:.0f}x real time), {len(report.skipped)} skipped")
    wall = statistics.median(walls)
    real_time = report.audio_seconds / wall  # the same audio every repeat
    return {"utterances": len(utterances), "workers": workers, "skipped": len(report.skipped), "wall_s": walls,
            "wall_s_median": wall, "audio_hours": report.audio_seconds / 3600, "real_time_factor": real_time,
            "vctk_minutes": VCTK_HOURS * 3600 / real_time / 60}


def result_rows(extraction, cache):
    """The (measurement, value) rows of the README table."""
    e, c = extraction, cache
    extra = ", ".join(f"+{n} on {count}" for n, count in e["extra_frames_in_ours"].items())
    frames = (f"{e['frames_original']:,} vs {e['frames_ours']:,}; ours per utterance: {extra} utterances "
              f"(ours zero-pads a last partial frame)")
    return [
        (f"a. original per-slice MFCC ({e['utterances']} utterances, {e['voiced_hours'] * 60:.1f} min voiced)",
         f"{e['original_s_per_hour_median']:.1f} s per hour of audio"),
        ("a. ours, `audio.features.mfcc_frames`", f"{e['ours_s_per_hour_median']:.2f} s per hour of audio"),
        (f"a. speed-up (target >= {TARGET_SPEEDUP}x)", f"{e['speedup']:.0f}x"),
        ("a. frames, original vs ours", frames),
        ("a. deltas (26 of 39 values)", f"original: max abs {e['original_max_abs_delta']:.1e} (zero up to "
                                        f"rounding); ours: {e['ours_deltas_nonzero_fraction']:.1%} non-zero"),
        ("a. static c0..c12, frames both have",
         f"c0 max abs diff {e['static_c0_max_abs_difference']:.2f}, "
         f"c1..c12 median abs diff {e['static_c1_c12_median_abs_difference']:.2f}"),
        (f"b. cache build, {c['utterances']} utterances, {c['workers']} workers (wall, incl. worker start-up)",
         f"{c['wall_s_median']:.1f} s for {c['audio_hours']:.2f} h of audio"),
        (f"b. real-time factor (target >= {TARGET_REAL_TIME}x on 2 cores)", f"{c['real_time_factor']:.0f}x"),
        (f"b. extrapolated to VCTK's ~{VCTK_HOURS:.0f} h at this corpus's cost per audio second "
         f"(target < {TARGET_VCTK_MINUTES} min; original ~2 h)",
         f"{c['vctk_minutes']:.1f} min"),
    ]


@click.command()
@click.option("--corpus", "corpus_path", default=None,
              help="Corpus root (default: VCTK_CORPUS_PATH / constants.CORPUS_PATH).")
@click.option("--repeats", default=3, show_default=True, help="Repeats of each timing; medians are reported.")
@click.option("--utterances", default=100, show_default=True, help="Utterances in the sample of part a.")
@click.option("--out", default=None, help="JSON result file (default: <workdir>/bench/features.json).")
@utils.friendly_errors
def main(corpus_path, repeats, utterances, out):
    """Time MFCC extraction (original per-slice method vs ours) and the feature-cache build."""
    utils.print_overrides()
    machine = common.machine()
    corpus = find_corpus(corpus_path)
    print(f"corpus: {corpus.root} ({corpus.layout}), {len(corpus.speakers)} speakers, "
          f"{corpus.num_utterances()} utterances")
    extraction = extraction_benchmark(corpus, utterances, repeats)
    cache = cache_benchmark(corpus, repeats)
    record = {"machine": machine, "repeats": repeats, "corpus": str(corpus.root),
              "settings": features.feature_settings(), "extraction": extraction, "cache": cache}
    common.publish(record, result_rows(extraction, cache), out or utils.work_path("bench", "features.json"))


if __name__ == "__main__":
    main()
