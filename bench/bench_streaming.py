"""Benchmark: training batches from inputs held in memory against inputs streamed from disk (STREAM_INPUTS).

For each mode, a fresh subprocess loads the work dir's inputs (`ml.inputs.load_inputs(stream=...)`), then
  a. draws --batches softmax training batches (WindowBatches: gather + level augmentation), timed: windows/s
     of the data path alone;
  b. trains the default model on --steps of them (train_on_batch after one warm-up step), timed: windows/s;
and reports its peak resident memory (ru_maxrss) after loading and at the end. Medians of --repeats runs,
streamed / in-memory ratios beside them. The OS's page cache is not dropped between runs (no root needed):
both modes read a file the cache holds, as a second epoch would.

Run from the repository root, after ml/0_generate_inputs.py:
    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto python bench/bench_streaming.py \\
      --workdir /tmp/dev/w
"""
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import constants  # noqa: E402
import utils  # noqa: E402
from bench import common  # noqa: E402
from bench.common import MB  # noqa: E402

# The child: argv = repo, workdir, stream (0/1), batches, steps, out
CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import constants
constants.WORKDIR = sys.argv[2]
import utils
utils.import_tensorflow_quietly()
import keras, numpy as np
from ml.augmentation import shift_stds
from ml.batches import WindowBatches
from ml.inputs import load_inputs
from ml.model import build_model, compile_for
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
inputs = load_inputs(stream=sys.argv[3] == "1")
loaded = peak()
batches = WindowBatches(inputs.train, shift_stds=shift_stds(inputs.norm))
count = min(int(sys.argv[4]), len(batches))
start = time.perf_counter()
for index in range(count):
    windows, _ = batches[index]
data_rate = count * batches.batch_size / (time.perf_counter() - start)
keras.utils.set_random_seed(constants.SEED)
model = compile_for(build_model(len(inputs.classes), input_shape=inputs.input_shape), "softmax", 1e-3)
model.train_on_batch(*batches[0])
steps = min(int(sys.argv[5]), len(batches) - 1)
start = time.perf_counter()
for index in range(1, steps + 1):
    model.train_on_batch(*batches[index])
train_rate = steps * batches.batch_size / (time.perf_counter() - start)
json.dump({"data_windows_per_s": data_rate, "train_windows_per_s": train_rate, "peak_loaded": loaded,
           "peak": peak(), "frames_mb": inputs.train.frames.nbytes / 1e6}, open(sys.argv[6], "w"))
"""


def child(workdir, stream, batches, steps):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-c", CHILD, str(common.REPO), str(workdir), "1" if stream else "0",
                        str(batches), str(steps), out.name], check=True)
        return json.loads(Path(out.name).read_text())


@click.command()
@utils.workdir_option
@click.option("--batches", default=1000, show_default=True, help="Batches drawn for the data path.")
@click.option("--steps", default=100, show_default=True, help="Training steps timed.")
@click.option("--repeats", default=3, show_default=True)
@click.option("--out", default="bench/results/streaming.json", show_default=True)
@utils.friendly_errors
def main(batches, steps, repeats, out):
    """Throughput and peak memory of streamed inputs against inputs in memory."""
    from ml.inputs import checked_record
    checked_record()
    workdir = utils.workdir()
    record = {"machine": common.machine(), "repeats": repeats, "workdir": str(workdir),
              "code_version": utils.code_version(), "batch_size": constants.BATCH_SIZE, "runs": {}}
    for _ in range(repeats):  # alternating, so that a change of the machine's load hits both modes
        for mode in ("memory", "stream"):
            record["runs"].setdefault(mode, []).append(child(workdir, mode == "stream", batches, steps))
    median = {mode: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
              for mode, runs in record["runs"].items()}
    memory, stream = median["memory"], median["stream"]
    rows = [("train frames", f"{memory['frames_mb']:.0f} MB"),
            ("data path, windows/s: memory / streamed", f"{memory['data_windows_per_s']:,.0f} / "
             f"{stream['data_windows_per_s']:,.0f} (**{stream['data_windows_per_s'] / memory['data_windows_per_s']:.2f}x**)"),
            ("training, windows/s: memory / streamed", f"{memory['train_windows_per_s']:,.0f} / "
             f"{stream['train_windows_per_s']:,.0f} (**{stream['train_windows_per_s'] / memory['train_windows_per_s']:.2f}x**, "
             f"target >= 0.7x)"),
            ("peak RSS after loading: memory / streamed", f"{memory['peak_loaded'] / MB:.0f} / "
             f"{stream['peak_loaded'] / MB:.0f} MB"),
            ("peak RSS at the end: memory / streamed", f"{memory['peak'] / MB:.0f} / {stream['peak'] / MB:.0f} MB")]
    record["median"] = median
    common.publish(record, rows, out)


if __name__ == "__main__":
    main()
