"""Training: softmax pre-training (Keras fit), cosine triplet training (a step loop), frozen re-training.

Each mode writes into its own run folder (ml/checkpoints.py) and continues from its latest checkpoint.
"""
import contextlib
import csv
import math
from collections import deque
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

import constants
import utils
from audio import features
from ml import evaluation
from ml.augmentation import level_std, random_level
from ml.batches import WindowBatches
from ml.checkpoints import RunFolder, model_identity, restore
from ml.learning_rate import softmax_schedule
from ml.model import build_model, freeze_below_softmax, parameter_summary
from ml.triplet_loss import triplet_loss


class NonFiniteLoss(utils.PipelineError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------------
# Softmax training: pre-training, and re-training of the head on frozen embeddings
# ----------------------------------------------------------------------------------------------------
class Checkpoints(keras.callbacks.Callback):
    """Save every `every` epochs and after the last epoch; stop on a non-finite loss without saving."""

    def __init__(self, run, identity, every):
        super().__init__()
        self.run, self.identity, self.every = run, identity, every
        self.last_epoch, self.last_epoch_seen, self.failed = None, 0, None

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            self.failed = f"the loss became {logs['loss']} in epoch {self.last_epoch_seen + 1}, batch {batch + 1}"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.last_epoch_seen = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.failed is None:
            self.last_epoch = epoch + 1
            if self.last_epoch % self.every == 0:
                self.run.save(self.model, self.last_epoch, self.identity)

    def on_train_end(self, logs=None):
        state = self.run.state()
        if self.failed is None and self.last_epoch and (state is None or state["count"] != self.last_epoch):
            self.run.save(self.model, self.last_epoch, self.identity)


def train_softmax(inputs, epochs=None, fresh=False, freeze=False, normalize_embeddings=False, verbose=1):
    """Softmax training (mode "softmax", or "frozen" with `freeze`); returns the final test accuracies."""
    mode = "frozen" if freeze else "softmax"
    run = RunFolder(mode)
    keras.utils.set_random_seed(constants.SEED)
    model = build_model(len(inputs.classes), normalize_embeddings=normalize_embeddings)
    identity = model_identity(inputs.classes)
    start, source = restore(model, mode, identity, fresh)
    if freeze:
        freeze_below_softmax(model)
    model.compile(optimizer=keras.optimizers.Adam(constants.LEARNING_RATE),
                  loss={"softmax": "sparse_categorical_crossentropy", "embeddings": None},
                  metrics={"softmax": [speaker_accuracy(inputs)]})
    end = start + epochs if epochs else constants.SOFTMAX_MAX_EPOCHS
    training_batches = WindowBatches(inputs.train, level_std=level_std(inputs.norm))
    # the head alone (frozen mode) is re-trained with the original's schedule
    schedule, last_epoch = softmax_schedule(len(training_batches), "plateau" if freeze else None)
    if last_epoch is not None and end > last_epoch:
        print(f"{mode}: the {constants.SOFTMAX_LR_SCHEDULE} learning rate ends with epoch {last_epoch} "
              f"(SOFTMAX_SCHEDULE_EPOCHS); the run stops there")
        end = last_epoch
    run.write_settings({"mode": mode, "start_epoch": start, "end_epoch": end, "started_from": source,
                        "normalize_embeddings": normalize_embeddings})
    print(f"{mode}: {parameter_summary(model)}, {constants.MODEL}, epochs {start + 1}-{end}, "
          f"from {source}")
    if start >= end:
        print(f"{mode}: already at epoch {start}; nothing to do (raise --epochs"
              f"{' or SOFTMAX_SCHEDULE_EPOCHS' if last_epoch is not None else ''}, or use --fresh)")
    checkpoints = Checkpoints(run, identity, constants.CHECKPOINT_EVERY_EPOCHS)
    callbacks = [
        checkpoints,
        keras.callbacks.EarlyStopping("val_softmax_accuracy", mode="max", min_delta=constants.EARLY_STOPPING_MIN_DELTA,
                                      patience=constants.EARLY_STOPPING_PATIENCE),
        *schedule,
        keras.callbacks.CSVLogger(str(run.history), append=True),
    ]
    validation = WindowBatches(_validation_subset(inputs.test), shuffle=False)
    model.fit(training_batches, validation_data=validation, initial_epoch=start, epochs=end, callbacks=callbacks,
              verbose=verbose)
    if checkpoints.failed:
        raise NonFiniteLoss(f"{mode}: {checkpoints.failed}; training stopped, the last good checkpoint is "
                            f"kept ({_latest_path(run)}). Try a lower LEARNING_RATE.")
    window, utterance = evaluation.closed_set_accuracy(model, inputs)
    print(f"{mode}: test accuracy {window:.1%} per window, {utterance:.1%} per utterance "
          f"({len(inputs.test):,} windows of {len(inputs.test.utterance_keys)} utterances, "
          f"normalisation {inputs.norm['method']}, over the {len(inputs.speakers)} real speakers)")
    result = {"window_accuracy": window, "utterance_accuracy": utterance, "epoch": checkpoints.last_epoch or start,
              "normalization": inputs.norm["method"]}
    utils.write_json(run.folder / "result.json", result)
    return {**result, "model": model}


def speaker_accuracy(inputs):
    """A Keras metric "accuracy": the window's class is the most probable one of its group.

    The groups are the real speakers, and the copies at each speed: a test window (always a real
    speaker's) is scored over the real speakers only, as evaluation.closed_set_accuracy does, so the
    per-epoch validation accuracy is the closed-set figure per window; a copy's training window is scored
    over the copies at its speed.
    """
    group_of_class = np.array([features.split_speed_key(name)[1] for name in inputs.classes])
    _, group_of_class = np.unique(group_of_class, return_inverse=True)
    table = keras.ops.convert_to_tensor(group_of_class.astype(np.int32))

    def accuracy(y_true, y_pred):
        truth = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        same_group = keras.ops.equal(table[None, :], keras.ops.take(table, truth)[:, None])
        guess = keras.ops.argmax(keras.ops.where(same_group, y_pred, -1.0), axis=-1)
        return keras.ops.cast(keras.ops.equal(truth, keras.ops.cast(guess, "int32")), "float32")
    return accuracy


def _validation_subset(window_set):
    """A seeded sample of at most MAX_VALIDATION_WINDOWS test windows (all when 0 or fewer exist)."""
    limit = constants.MAX_VALIDATION_WINDOWS
    if limit <= 0 or len(window_set) <= limit:
        return window_set
    chosen = np.sort(np.random.default_rng(constants.SEED).choice(len(window_set), limit, replace=False))
    return window_set.subset(chosen)


def _latest_path(run):
    """The latest checkpoint of `run`, or a note that there is none."""
    state = run.state()
    return run.folder / state["latest"] if state else "none yet"


# ----------------------------------------------------------------------------------------------------
# Triplet training
# ----------------------------------------------------------------------------------------------------
class TripletSampler:
    """Triplet batches of one split: anchors and positives of a speaker A, negatives of another speaker B.

    The original drew one pair (A, B) per batch; TRIPLET_PAIRS_PER_BATCH pairs share the batch equally.
    """

    def __init__(self, window_set, rng, level_std=0.0):
        self.window_set, self.rng, self.level_std = window_set, rng, level_std
        self.by_speaker = [np.flatnonzero(window_set.labels == k) for k in range(window_set.labels.max() + 1)]
        self.by_speaker = [windows for windows in self.by_speaker if len(windows)]

    def batch(self, size=None):
        """(windows, speaker labels) of size anchors + size positives + size negatives."""
        size = size or constants.BATCH_SIZE // 3
        pairs = max(min(constants.TRIPLET_PAIRS_PER_BATCH, size), 1)
        parts = [[], [], []]
        for count in np.diff(np.linspace(0, size, pairs + 1).astype(int)):
            a, b = self.rng.choice(len(self.by_speaker), 2, replace=False)
            own, other = self.by_speaker[a], self.by_speaker[b]
            anchors_positives = self.rng.choice(own, 2 * count, replace=len(own) < 2 * count)
            parts[0].append(anchors_positives[:count])
            parts[1].append(anchors_positives[count:])
            parts[2].append(self.rng.choice(other, count, replace=len(other) < count))
        return self.drawn(np.concatenate([np.concatenate(part) for part in parts]))

    def drawn(self, chosen):
        """(windows, labels) of the chosen windows, their levels shifted when augmenting."""
        return random_level(self.window_set.windows(chosen), self.rng, self.level_std), self.window_set.labels[chosen]


def train_triplet(inputs, steps=None, fresh=False, normalize_embeddings=False, progress=True):
    """The original's triplet loop; returns the moving-average train and test losses at the end."""
    run = RunFolder("triplet")
    keras.utils.set_random_seed(constants.SEED)
    model = build_model(len(inputs.classes), normalize_embeddings=normalize_embeddings)
    identity = model_identity(inputs.classes)
    start, source = restore(model, "triplet", identity, fresh)
    model.get_layer("softmax").trainable = False  # the triplet loss does not reach the classifier
    model.compile(optimizer=keras.optimizers.Adam(constants.TRIPLET_LEARNING_RATE),
                  loss={"embeddings": triplet_loss, "softmax": None})
    end = start + steps if steps else constants.TRIPLET_MAX_STEPS
    run.write_settings({"mode": "triplet", "start_step": start, "end_step": end, "started_from": source,
                        "normalize_embeddings": normalize_embeddings})
    print(f"triplet: {parameter_summary(model)}, {constants.MODEL}, steps {start + 1}-{end}, from {source}, "
          f"learning rate {constants.TRIPLET_LEARNING_RATE:g}")
    rng = np.random.default_rng([constants.SEED, start])  # a resumed run draws new batches, reproducibly
    train_batches = TripletSampler(inputs.train, rng, level_std(inputs.norm))
    test_batches = TripletSampler(inputs.test, rng)
    averages = {"loss": deque(maxlen=constants.MOVING_AVERAGE_STEPS),
                "test_loss": deque(maxlen=constants.MOVING_AVERAGE_STEPS)}
    bar = tqdm(range(start + 1, end + 1), desc="triplet", unit="step", disable=not progress)
    with appending_csv(run.history, ("step", "loss", "test_loss")) as write_history:
        for step in bar:
            windows, labels = train_batches.batch()
            targets = {"embeddings": np.zeros((len(labels), 1), np.float32), "softmax": labels}
            loss = model.train_on_batch(windows, targets, return_dict=True)["loss"]
            test_windows, test_labels = test_batches.batch()
            test_loss = model.test_on_batch(test_windows, {"embeddings": targets["embeddings"], "softmax": test_labels},
                                            return_dict=True)["loss"]
            if not (math.isfinite(loss) and math.isfinite(test_loss)):
                raise NonFiniteLoss(f"triplet: the loss became {loss} at step {step}; training stopped, the last "
                                    f"good checkpoint is kept ({_latest_path(run)}). Try a lower LEARNING_RATE.")
            averages["loss"].append(loss)
            averages["test_loss"].append(test_loss)
            write_history([step, f"{loss:.6f}", f"{test_loss:.6f}"])
            if step % constants.PRINT_EVERY_STEPS == 0:
                bar.set_postfix(loss=f"{np.mean(averages['loss']):.4f}", test_loss=f"{np.mean(averages['test_loss']):.4f}")
            if step % constants.CHECKPOINT_EVERY_STEPS == 0 or step == end:
                run.save(model, step, identity)
    summary = {name: float(np.mean(values)) if values else float("nan") for name, values in averages.items()}
    print(f"triplet: step {max(end, start)}, moving average over the last {len(averages['loss'])} steps: "
          f"loss {summary['loss']:.4f}, test loss {summary['test_loss']:.4f}")
    summary["step"] = max(end, start)
    utils.write_json(run.folder / "result.json", summary)
    return {**summary, "model": model}


@contextlib.contextmanager
def appending_csv(path, header):
    """Yield a function that appends a row to the CSV file at `path` (header once), flushed at each row."""
    new = not Path(path).exists()
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(header)

        def write(row):
            writer.writerow(row)
            handle.flush()  # a killed run loses no step it reported
        yield write
