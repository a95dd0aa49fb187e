"""Benchmark: speed and memory of speaker change detection (ml/4_detect_speaker_changes.py detect) on long
recordings.

Recordings of each length in --minutes are written (16-bit wav at SAMPLE_RATE) by concatenating the voiced
parts of the corpus's utterances (VCTK_CORPUS_PATH, else the demo corpus of the work dir) with 0.3 s pauses.
For each length, a fresh subprocess loads the model of the work dir's default run, detects once to warm up,
then --repeats times; it reports the median time (real-time factor = audio seconds / median seconds) and its
peak resident memory (ru_maxrss) before and after detection. Another subprocess only loads the model: the
process baseline. Memory that does not grow with the recording beyond its samples and embeddings shows as
(peak after - baseline) growing no faster than the arrays a recording needs: its float32 samples and frames,
its float32 window embeddings and their float64 running sums.

Run from the repository root, after a trained run exists in the work dir:
    python bench/bench_speaker_changes.py --workdir work/demo --minutes 2,10
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import constants  # noqa: E402
import utils  # noqa: E402
from bench import common  # noqa: E402
from bench.common import MB  # noqa: E402

# The child: argv = repo, workdir, recording ("" = load the model only), repeats, out
CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import constants
constants.WORKDIR = sys.argv[2]
import utils
utils.import_tensorflow_quietly()
from ml.speaker_changes import ChangeDetector
detector = ChangeDetector(threshold=0.5)
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
times = []
if sys.argv[3]:
    detector.detect(sys.argv[3])  # warm-up: graph tracing, first allocations
    for _ in range(int(sys.argv[4])):
        start = time.perf_counter()
        found = detector.detect(sys.argv[3])
        times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
json.dump({"times": times, "peak_loaded": loaded, "peak": peak}, open(sys.argv[5], "w"))
"""


def write_recording(path, minutes, corpus, rng):
    """A `minutes`-long wav of the corpus's voiced utterances in a seeded order, 0.3 s pauses between them."""
    from audio import features
    rate = constants.SAMPLE_RATE
    utterances = [u for items in corpus.utterances.values() for u in items]
    pause = np.zeros(int(0.3 * rate), np.float32)
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        written = 0
        while written < minutes * 60 * rate:
            utterance = utterances[rng.integers(len(utterances))]
            try:
                speech = features.voice_only(features.load_audio(utterance.path))
            except features.UnusableAudio:
                continue
            chunk = np.concatenate([speech, pause])[: int(minutes * 60 * rate) - written]
            out.write(chunk)
            written += len(chunk)
    return written / rate


def child(workdir, recording, repeats):
    """Run CHILD in a fresh process; its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-c", CHILD, str(common.REPO), str(workdir), str(recording or ""),
                        str(repeats), out.name], check=True)
        return json.loads(Path(out.name).read_text())


@click.command()
@utils.workdir_option
@click.option("--minutes", default="2,10", show_default=True, help="Recording lengths, comma-separated.")
@click.option("--repeats", default=3, show_default=True, help="Timed detections per length.")
@click.option("--out", default="bench/results/speaker_changes.json", show_default=True)
@utils.friendly_errors
def main(minutes, repeats, out):
    """Real-time factor and peak memory of change detection on long recordings."""
    from audio.corpus import find_corpus
    workdir = utils.workdir()
    root = constants.CORPUS_PATH or (workdir / "corpus")
    corpus = find_corpus(root)
    record = {"machine": common.machine(), "repeats": repeats, "workdir": str(workdir), "corpus": str(root),
              "code_version": utils.code_version(), "lengths": []}
    baseline = child(workdir, None, 0)["peak"]
    rows = [("peak RSS, model loaded (no detection)", f"{baseline / MB:.0f} MB")]
    with tempfile.TemporaryDirectory() as folder:
        for length in [float(m) for m in minutes.split(",")]:
            path = Path(folder) / f"recording-{length:g}min.wav"
            seconds = write_recording(path, length, corpus, np.random.default_rng([constants.SEED, 16]))
            result = child(workdir, path, repeats)
            median = statistics.median(result["times"])
            frames = seconds / constants.FRAME_STEP_S
            windows = frames / constants.CHANGE_EMBED_HOP_FRAMES
            # float32 samples, float32 frames (39 values), float32 embeddings and their float64 running sums
            data = 4 * seconds * constants.SAMPLE_RATE + 4 * 3 * constants.NUM_MFCC * frames + \
                (4 + 8) * windows * (constants.EMBEDDING_SIZE + 1)
            entry = {"minutes": length, "audio_s": seconds, "times_s": result["times"], "median_s": median,
                     "real_time_factor": seconds / median, "peak_rss": result["peak"],
                     "growth_over_baseline": result["peak"] - baseline, "samples_and_embeddings_bytes": data}
            record["lengths"].append(entry)
            rows += [(f"{length:g} min: median detection time", f"{median:.2f} s ({seconds / median:.0f}x real time)"),
                     (f"{length:g} min: peak RSS over the baseline", f"{(result['peak'] - baseline) / MB:.0f} MB "
                      f"(its samples, frames and window embeddings: {data / MB:.0f} MB)")]
            os.remove(path)
    common.publish(record, rows, out)


if __name__ == "__main__":
    main()
