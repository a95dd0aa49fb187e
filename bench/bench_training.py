"""Training throughput: windows per second of softmax batches and of triplet steps, conv vs. dense.

Both models are timed in the same run on the same inputs (the work dir's, from ml/0_generate_inputs.py),
after a warm-up, as the median over --repeats timings of --batches batches each. The softmax epoch time is
extrapolated from the batch rate to the number of batches of one epoch of these inputs.

    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto python bench/bench_training.py
"""
import os
import statistics
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import constants  # noqa: E402
import utils  # noqa: E402
from bench import common  # noqa: E402
from ml.batches import WindowBatches  # noqa: E402
from ml.inputs import load_inputs  # noqa: E402
from ml.model import build_model, compile_for  # noqa: E402
from ml.batches import TripletSampler  # noqa: E402


def time_batches(step, make_batch, batches, repeats):
    """Median seconds per batch of `step(make_batch())`, batches built outside the timed region."""
    step(*make_batch())  # warm-up: traces the function
    timings = []
    for _ in range(repeats):
        prepared = [make_batch() for _ in range(batches)]
        start = time.perf_counter()
        for batch in prepared:
            step(*batch)
        timings.append((time.perf_counter() - start) / batches)
    return statistics.median(timings)


def measure(inputs, architecture, batches, repeats):
    """{softmax/triplet windows per second, softmax epoch seconds} of one architecture."""
    keras.utils.set_random_seed(constants.SEED)
    model = build_model(len(inputs.classes), architecture)
    compile_for(model, "softmax", constants.LEARNING_RATE)
    softmax_batches = WindowBatches(inputs.train)
    rng = np.random.default_rng(0)
    softmax = time_batches(lambda x, y: model.train_on_batch(x, y),
                           lambda: softmax_batches[int(rng.integers(len(softmax_batches)))], batches, repeats)
    triplet_model = build_model(len(inputs.classes), architecture, normalize_embeddings=True)
    triplet_model.get_layer("softmax").trainable = False
    compile_for(triplet_model, "triplet", constants.LEARNING_RATE)
    sampler = TripletSampler(inputs.train, rng)

    def triplet_batch():
        windows, labels = sampler.batch()
        return windows, {"embeddings": np.zeros((len(labels), 1), np.float32), "softmax": labels}

    triplet = time_batches(lambda x, y: triplet_model.train_on_batch(x, y), triplet_batch, batches, repeats)
    return {"model": architecture, "parameters": model.count_params(),
            "softmax_windows_per_s": constants.BATCH_SIZE / softmax,
            "softmax_epoch_s": softmax * len(softmax_batches),
            "triplet_windows_per_s": constants.BATCH_SIZE / triplet, "triplet_step_s": triplet}


@click.command()
@click.option("--batches", default=30, show_default=True, help="Batches per timing.")
@click.option("--repeats", default=5, show_default=True, help="Timings per measurement (the median is kept).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON results (default: work dir).")
@utils.friendly_errors
def main(batches, repeats, out):
    """Time softmax and triplet training batches of the conv and dense models."""
    utils.print_overrides()
    inputs = load_inputs()
    rows = [measure(inputs, architecture, batches, repeats) for architecture in ("dense", "conv")]
    print(f"\n{common.machine()['cpu']}, {len(os.sched_getaffinity(0))} cores, {time.strftime('%Y-%m-%d')}; "
          f"{len(inputs.speakers)} speakers, {len(inputs.train):,} training windows, batch {constants.BATCH_SIZE}; "
          f"median of {repeats} x {batches} batches\n")
    print("| model | parameters | softmax windows/s | softmax epoch | triplet windows/s | triplet step |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['parameters']:,} | {row['softmax_windows_per_s']:,.0f} | "
              f"{row['softmax_epoch_s']:.0f} s | {row['triplet_windows_per_s']:,.0f} | {row['triplet_step_s'] * 1000:.0f} ms |")
    dense, conv = rows
    print(f"\nconv / dense time per softmax batch: {dense['softmax_windows_per_s'] / conv['softmax_windows_per_s']:.1f}x")
    out = common.write_results(out or utils.work_path("bench", "training.json"), rows, machine=common.machine(),
                               batch_size=constants.BATCH_SIZE, repeats=repeats, batches=batches)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
