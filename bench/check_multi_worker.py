"""Does Keras 3 train under tf.distribute.MultiWorkerMirroredStrategy here? Two worker processes on localhost.

Each worker (this file with argument 0 or 1) sets TF_CONFIG for a two-worker cluster on localhost, builds a
tiny Keras model in the strategy's scope and fits it on a tf.data dataset. Run from the repository root:
    python bench/check_multi_worker.py
which starts both workers and prints each one's last line: its losses, or the error it stopped with.
On 2026-12-02 (TensorFlow 2.21.0, Keras 3.15.1) both stopped in fit with "ValueError: Attempt to convert a
value (PerReplica:{...}) with an unsupported type", as reported upstream: keras-team/keras#20585 (open),
tensorflow/tensorflow#72388. The pipeline therefore offers MirroredStrategy on one machine only.
"""
import json
import os
import subprocess
import sys

PORTS = (23456, 23457)


def worker(index):
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in PORTS]},
                                          "task": {"type": "worker", "index": index}})
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras
    import numpy as np
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices((rng.normal(size=(256, 8)).astype("float32"),
                                               rng.normal(size=(256, 1)).astype("float32"))).batch(32)
    try:
        history = model.fit(data, epochs=2, verbose=0)
        print(f"worker {index}: trained, {strategy.num_replicas_in_sync} replicas, losses {history.history['loss']}")
    except Exception as error:  # the answer, not a crash: print it
        print(f"worker {index}: fit failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}")


def main():
    workers = [subprocess.Popen([sys.executable, __file__, str(i)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True) for i in range(2)]
    for process in workers:
        output, _ = process.communicate(timeout=300)
        print((output.strip().splitlines() or ["(no output)"])[-1])


if __name__ == "__main__":
    worker(int(sys.argv[1])) if len(sys.argv) > 1 else main()
