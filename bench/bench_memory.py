"""Benchmark: peak memory of script 0 (ml/0_generate_inputs.py) and of loading its inputs; a VCTK estimate.

Each repeat uses a fresh temporary DEEP_SPEAKER_WORKDIR and DEEP_SPEAKER_SPLIT=auto (the first
NUM_SPEAKERS_CLASSIFICATION_TASK = 80 speakers train); every other setting comes from constants.py and the
environment (MAX_COUNT_PER_CLASS = 1000 by default). Four subprocesses run one after the other, and the peak
resident memory of each is read from the OS when it ends (ru_maxrss of os.wait4: the largest of the
process itself and of the children it waited for):
  1. python ml/0_generate_inputs.py          feature cache (its worker processes count) + inputs
  2. python ml/0_generate_inputs.py --force  the cache is complete, so no workers: building the inputs alone
  3. python -c "... ml.inputs.load_inputs()" holding the inputs
  4. python -c "... from ml import inputs"   the same imports without the data: the process baseline
Reported: the medians of those peaks; from the loaded inputs, their bytes, windows and frames per split;
from the corpus's file headers, the audio seconds of the training speakers, hence the frames kept per second
of audio after the voice trim (x FRAME_STEP_S = the voiced fraction).

VCTK estimate with the original settings (80 of 109 speakers train, ~44 h in all so ~32 h theirs,
MAX_COUNT_PER_CLASS = 1000): the frames' bytes scale with the training speakers' hours x voiced fraction,
the speed copies' frames with speakers x speeds x copied utterances (SPEED_PERTURBATION_UTTERANCES of
VCTK's ~320 training utterances per speaker) x VCTK's frames per utterance x the measured ratio of a
copy's frames to its source's, the window index's bytes with (speakers x 2 splits + copy classes) x
segments x measured windows per segment, plus the measured baseline; shown with the measured voiced fraction and with 1.0 (VCTK 0.92 is already
silence-trimmed), against the 2 GB target and the original's layout (390 float64 per window; float32 too).

Run from the repository root:  VCTK_CORPUS_PATH=/path/to/corpus python bench/bench_memory.py
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import constants  # noqa: E402
import utils  # noqa: E402
from audio.corpus import find_corpus  # noqa: E402
from bench import common  # noqa: E402
from bench.common import GB, MB  # noqa: E402

VCTK_HOURS = 44.0  # hours of audio in VCTK (one microphone)
VCTK_SPEAKERS = 109  # speakers in VCTK (the original's count)
VCTK_TRAIN_SPEAKERS = 80  # of which the original trained on these
VCTK_SEGMENTS = 1000  # the original's MAX_COUNT_PER_CLASS: segments per speaker and split
VCTK_UTTERANCES = 44000  # utterances in VCTK (one microphone): ~400 per speaker, ~320 of them training ones
TARGET_GB = 2.0  # peak memory target for the inputs of VCTK
ORIGINAL_VALUES_PER_WINDOW = 390  # the original held every window as 390 values (10 frames x 39)

# The child that loads the inputs, or (argument "imports") only imports the same modules; argv: repo, mode, out
CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ml import inputs
if sys.argv[2] == "load":
    loaded = inputs.load_inputs()
    arrays = {split: {name: int(getattr(getattr(loaded, split), name).nbytes) for name in inputs.ARRAYS}
              for split in ("train", "test")}
    summary = {"speakers": loaded.speakers, "classes": loaded.classes, "describe": inputs.describe(loaded),
               "arrays": arrays, "train_keys": loaded.train.utterance_keys.tolist()}
    open(sys.argv[3], "w").write(json.dumps(summary))
"""


# ----------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------
def run_peak(command, env, log_path):
    """(peak resident bytes, wall seconds) of `command` and the children it waited for; stops on failure."""
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=common.REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if process.returncode != 0:
        tail = "\n".join(Path(log_path).read_text().splitlines()[-15:])
        raise utils.PipelineError(f"{' '.join(command)} failed (exit {process.returncode}):\n{tail}")
    return usage.ru_maxrss * 1024, seconds  # Linux reports KiB


def one_repeat(corpus_root, folder):
    """Peaks (bytes) and wall seconds of the four subprocesses in the work directory `folder`; the summary."""
    env = {**os.environ, "DEEP_SPEAKER_WORKDIR": str(folder), "DEEP_SPEAKER_SPLIT": "auto",
           "VCTK_CORPUS_PATH": str(corpus_root)}
    script, summary = [sys.executable, "ml/0_generate_inputs.py"], folder / "summary.json"
    runs = {"script0_cache_and_inputs": script, "script0_inputs_only": script + ["--force"],
            "load_inputs": [sys.executable, "-c", CHILD, str(common.REPO), "load", str(summary)],
            "imports_only": [sys.executable, "-c", CHILD, str(common.REPO), "imports"]}
    peaks, seconds = {}, {}
    for name, command in runs.items():
        peaks[name], seconds[name] = run_peak(command, env, folder / f"{name}.log")
    record = utils.read_json(folder / "inputs" / "inputs.json")
    summary = utils.read_json(summary)
    return peaks, seconds, {**summary, **copy_frames(folder / "cache" / record["built_from"]["cache"], summary),
                            "settings": record["built_from"]["settings"]}


def copy_frames(cache_folder, summary):
    """Frames of the speed copies in the train split, and of the utterances they were made from."""
    def frames(key):
        return np.load(cache_folder / f"{key}.npy", mmap_mode="r").shape[0]
    copies = [k for k in summary["train_keys"] if "@" in k]
    return {"copy_utterances": len(copies), "copy_frames": sum(frames(k) for k in copies),
            "copy_source_frames": sum(frames(k.rsplit("@", 1)[0]) for k in copies)}


def audio_seconds(corpus, speakers):
    """Seconds of audio of every utterance of `speakers`, from the files' headers."""
    return sum(soundfile.info(str(u.path)).duration for s in speakers for u in corpus.utterances[s])


# ----------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------
def data_figures(summary, training_audio_s):
    """Windows, frames and bytes per split; frames per second of audio; windows per segment; bytes per unit."""
    splits = ("train", "test")
    describe, arrays = summary["describe"], summary["arrays"]
    windows = {s: describe[s]["windows"][0] for s in splits}
    frames = {s: describe[s]["frames"][0] for s in splits}
    all_frames, all_windows = sum(frames.values()), sum(windows.values())
    copy_classes = len(summary["classes"]) - len(summary["speakers"])
    segments = (len(summary["speakers"]) * len(splits) + copy_classes) * summary["settings"]["MAX_COUNT_PER_CLASS"]
    frame_bytes = sum(arrays[s]["frames"] for s in splits)
    index_bytes = sum(arrays[s][name] for s in splits for name in ("starts", "labels", "utterances"))
    frames_per_second = (all_frames - summary["copy_frames"]) / training_audio_s  # the real utterances' frames
    copy_ratio = summary["copy_frames"] / summary["copy_source_frames"] if summary["copy_utterances"] else 1.0
    return {"speakers": len(summary["speakers"]), "classes": len(summary["classes"]), "copy_classes": copy_classes,
            "copy_utterances": summary["copy_utterances"], "copy_frames": summary["copy_frames"],
            "copy_frame_ratio": copy_ratio, "windows": windows, "frames": frames,
            "bytes": {s: sum(arrays[s].values()) for s in splits}, "arrays": arrays,
            "training_audio_hours": training_audio_s / 3600, "frames_per_audio_second": frames_per_second,
            "voiced_fraction": frames_per_second * constants.FRAME_STEP_S,
            "windows_per_segment": all_windows / segments, "bytes_per_frame": frame_bytes / all_frames,
            "index_bytes_per_window": index_bytes / all_windows}


def vctk_estimate(figures, settings, baseline_bytes, voiced_fraction):
    """Estimated peak bytes of holding VCTK's inputs, each term with its arithmetic spelled out."""
    hours = VCTK_HOURS * VCTK_TRAIN_SPEAKERS / VCTK_SPEAKERS
    frames_per_second = 1 / constants.FRAME_STEP_S
    frames = hours * 3600 * frames_per_second * voiced_fraction
    frame_bytes = frames * figures["bytes_per_frame"]
    speeds = len(settings["SPEED_PERTURBATION"])
    train_utterances = VCTK_UTTERANCES / VCTK_SPEAKERS * settings["TRAIN_TEST_RATIO"]
    limit = settings["SPEED_PERTURBATION_UTTERANCES"]
    copied = min(limit, train_utterances) if limit > 0 else train_utterances
    frames_per_utterance = VCTK_HOURS * 3600 * frames_per_second * voiced_fraction / VCTK_UTTERANCES
    copies = VCTK_TRAIN_SPEAKERS * speeds * copied * frames_per_utterance * figures["copy_frame_ratio"]
    copy_bytes = copies * figures["bytes_per_frame"]
    per_segment = figures["windows_per_segment"]
    classes = VCTK_TRAIN_SPEAKERS * (2 + speeds)  # 2 splits of the real speakers, and the copies' train classes
    windows = classes * VCTK_SEGMENTS * per_segment
    index_bytes = windows * figures["index_bytes_per_window"]
    total = baseline_bytes + frame_bytes + copy_bytes + index_bytes
    arithmetic = [
        f"training audio = {VCTK_HOURS:.0f} h x {VCTK_TRAIN_SPEAKERS}/{VCTK_SPEAKERS} speakers = {hours:.1f} h",
        f"frames = {hours:.1f} h x 3600 s x {frames_per_second:.0f} frames/s x voiced {voiced_fraction:.3f} = "
        f"{frames / 1e6:.2f} M; x {figures['bytes_per_frame']:.0f} B = {frame_bytes / GB:.3f} GB",
        f"speed copies = {VCTK_TRAIN_SPEAKERS} speakers x {speeds} speeds x {copied:.0f} utterances x "
        f"{frames_per_utterance:.0f} frames x {figures['copy_frame_ratio']:.3f} (a copy's frames / its source's) = "
        f"{copies / 1e6:.2f} M; x {figures['bytes_per_frame']:.0f} B = {copy_bytes / GB:.3f} GB",
        f"windows = ({VCTK_TRAIN_SPEAKERS} speakers x 2 splits + {VCTK_TRAIN_SPEAKERS * speeds} copy classes) x "
        f"{VCTK_SEGMENTS} segments x {per_segment:.1f} windows/segment = {windows / 1e6:.2f} M; x "
        f"{figures['index_bytes_per_window']:.0f} B = {index_bytes / GB:.3f} GB",
        f"peak = baseline {baseline_bytes / GB:.3f} + frames {frame_bytes / GB:.3f} + copies {copy_bytes / GB:.3f} "
        f"+ index {index_bytes / GB:.3f} = {total / GB:.2f} GB (target <= {TARGET_GB:.0f} GB)",
    ]
    return {"voiced_fraction": voiced_fraction, "training_hours": hours, "frames": frames,
            "frame_bytes": frame_bytes, "copy_frames": copies, "copy_bytes": copy_bytes, "windows": windows,
            "real_windows": VCTK_TRAIN_SPEAKERS * 2 * VCTK_SEGMENTS * per_segment,
            "index_bytes": index_bytes, "total_bytes": total, "arithmetic": arithmetic}


def original_layout(windows):
    """Bytes of `windows` windows held as the original did (390 float64 each), and as 390 float32."""
    values = windows * ORIGINAL_VALUES_PER_WINDOW
    return {"windows": windows, "float64_bytes": values * 8, "float32_bytes": values * 4,
            "arithmetic": f"{windows / 1e6:.2f} M windows x {ORIGINAL_VALUES_PER_WINDOW} values x 8 B = "
                          f"{values * 8 / GB:.1f} GB (x 4 B as float32: {values * 4 / GB:.1f} GB)"}


def result_rows(peaks, seconds, figures, measured, conservative, original):
    """The (measurement, value) rows of the README table."""
    f = figures
    split = {s: f"{f['windows'][s]:,} windows, {f['frames'][s]:,} frames, {f['bytes'][s] / MB:.1f} MB"
             for s in ("train", "test")}
    return [
        ("script 0, cache build + inputs (peak incl. cache workers)",
         f"{peaks['script0_cache_and_inputs'] / MB:.0f} MB ({seconds['script0_cache_and_inputs']:.0f} s)"),
        ("script 0 `--force`, inputs alone (cache complete)",
         f"{peaks['script0_inputs_only'] / MB:.0f} MB ({seconds['script0_inputs_only']:.0f} s)"),
        ("`ml.inputs.load_inputs()`", f"{peaks['load_inputs'] / MB:.0f} MB"),
        ("same imports, no data (baseline)", f"{peaks['imports_only'] / MB:.0f} MB"),
        (f"inputs of {f['speakers']} speakers ({f['classes']} classes): train", split["train"]),
        ("... of which speed copies", f"{f['copy_utterances']:,} utterances, {f['copy_frames']:,} frames "
                                      f"({f['copy_frame_ratio']:.3f} x their sources' frames)"),
        ("inputs: test", split["test"]),
        ("frames per second of audio after the voice trim",
         f"{f['frames_per_audio_second']:.1f} (voiced fraction {f['voiced_fraction']:.2f}); "
         f"{f['windows_per_segment']:.1f} windows per segment"),
        (f"VCTK estimate, voiced fraction {measured['voiced_fraction']:.2f} (target <= {TARGET_GB:.0f} GB)",
         f"{measured['total_bytes'] / GB:.2f} GB"),
        (f"VCTK estimate, voiced fraction 1.0 (target <= {TARGET_GB:.0f} GB)",
         f"{conservative['total_bytes'] / GB:.2f} GB"),
        ("VCTK, original layout: 390 float64 (float32) per window",
         f"{original['float64_bytes'] / GB:.1f} GB ({original['float32_bytes'] / GB:.1f} GB)"),
    ]


@click.command()
@click.option("--corpus", "corpus_path", default=None,
              help="Corpus root (default: VCTK_CORPUS_PATH / constants.CORPUS_PATH).")
@click.option("--repeats", default=3, show_default=True,
              help="Repeats of every measurement; medians are reported.")
@click.option("--out", default=None, help="JSON result file (default: <workdir>/bench/memory.json).")
@utils.friendly_errors
def main(corpus_path, repeats, out):
    """Measure the peak memory of script 0 and of loading its inputs; estimate it for VCTK."""
    utils.print_overrides()
    machine = common.machine()
    corpus = find_corpus(corpus_path)
    print(f"corpus: {corpus.root} ({corpus.layout}), {len(corpus.speakers)} speakers, "
          f"{corpus.num_utterances()} utterances")
    all_peaks, all_seconds = [], []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
            peaks, seconds, summary = one_repeat(corpus.root, Path(folder))
        all_peaks.append(peaks)
        all_seconds.append(seconds)
        print(f"repeat {repeat + 1}: " + ", ".join(f"{name} {peak / MB:.0f} MB" for name, peak in peaks.items()))
    peaks = {name: statistics.median(p[name] for p in all_peaks) for name in all_peaks[0]}
    seconds = {name: statistics.median(s[name] for s in all_seconds) for name in all_seconds[0]}

    figures = data_figures(summary, audio_seconds(corpus, summary["speakers"]))
    measured = vctk_estimate(figures, summary["settings"], peaks["imports_only"], figures["voiced_fraction"])
    conservative = vctk_estimate(figures, summary["settings"], peaks["imports_only"], 1.0)
    original = original_layout(measured["real_windows"])  # the original had no speed copies
    print(f"\nsettings of the inputs: {summary['settings']}")
    print(f"dev corpus: {figures['training_audio_hours']:.2f} h of audio of the {figures['speakers']} training "
          f"speakers -> {sum(figures['frames'].values()):,} frames = {figures['frames_per_audio_second']:.1f} "
          f"frames per second of audio (voiced fraction {figures['voiced_fraction']:.3f})")
    for name, estimate in (("measured voiced fraction", measured), ("voiced fraction 1.0", conservative)):
        print(f"VCTK estimate, {name}:\n  " + "\n  ".join(estimate["arithmetic"]))
    print(f"VCTK, original layout: {original['arithmetic']}")
    record = {"machine": machine, "repeats": repeats, "corpus": str(corpus.root), "settings": summary["settings"],
              "peak_bytes": all_peaks, "peak_bytes_median": peaks, "seconds": all_seconds,
              "seconds_median": seconds, "data": figures, "vctk_estimate_measured_voiced_fraction": measured,
              "vctk_estimate_voiced_fraction_1": conservative, "vctk_original_layout": original}
    common.publish(record, result_rows(peaks, seconds, figures, measured, conservative, original),
                   out or utils.work_path("bench", "memory.json"))


if __name__ == "__main__":
    main()
