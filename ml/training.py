"""Training: softmax pre-training (Keras fit), cosine triplet training (a step loop), frozen re-training.

Each mode writes into its own run folder (ml/checkpoints.py) and continues from its latest checkpoint.
"""
import contextlib
import csv
import math
import sys
from collections import deque
from pathlib import Path

import utils

utils.import_tensorflow_quietly()  # before Keras: TensorFlow's C++ start-up lines say nothing useful
import keras  # noqa: E402
import numpy as np  # noqa: E402

import constants  # noqa: E402
from audio import features  # noqa: E402
from ml import checkpoints, distribution, evaluation  # noqa: E402
from ml.augmentation import shift_stds  # noqa: E402
from ml.batches import EpochTracker, SegmentSampler, TripletSampler, WindowBatches  # noqa: E402
from ml.checkpoints import RunFolder  # noqa: E402
from ml.learning_rate import softmax_schedule  # noqa: E402
from ml.model import build_model, compile_for, freeze_below_softmax, parameter_summary  # noqa: E402


class NonFiniteLoss(utils.PipelineError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------------
# Softmax training: pre-training, and re-training of the head on frozen embeddings
# ----------------------------------------------------------------------------------------------------
class ValidationEER(keras.callbacks.Callback):
    """Add the validation speakers' verification EER and minDCF to each epoch's logs (val_eer, val_min_dcf)."""

    def __init__(self, window_set):
        super().__init__()
        self.window_set = window_set

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_eer"], logs["val_min_dcf"] = evaluation.verification_figures(self.model, self.window_set)


def checkpoint_metric(logs, validation):
    """The figure that ranks checkpoints: the validation speakers' EER when there are some, else the test
    windows' accuracy."""
    if validation:
        return {"name": "val_eer", "value": _finite(logs.get("val_eer")), "higher_is_better": False}
    return {"name": "val_softmax_accuracy", "value": _finite(logs.get("val_softmax_accuracy")), "higher_is_better": True}


def _finite(value):
    """A float, or None when missing or not finite."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


class Checkpoints(keras.callbacks.Callback):
    """Save a checkpoint every `every` epochs and after the last one, with the validation accuracy and the
    state of the stateful callbacks (early stopping, plateau); stop on a non-finite loss without saving.

    It must come last among the callbacks, so that what it saves is what they decided for the epoch.
    """

    def __init__(self, run, state, every, end, stateful, validation=False):
        super().__init__()
        self.run, self.state, self.every, self.end, self.stateful = run, state, every, end, stateful
        self.validation = validation
        self.last_epoch, self.last_epoch_seen, self.failed = None, 0, None

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            self.failed = f"the loss became {logs['loss']} in epoch {self.last_epoch_seen + 1}, batch {batch + 1}"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.last_epoch_seen = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.failed is not None:
            return
        self.last_epoch = epoch + 1
        if self.last_epoch % self.every == 0 or self.last_epoch == self.end or self.model.stop_training:
            stopped = [c for c in self.stateful if isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch]
            if stopped and self.last_epoch < self.end:  # recorded with this checkpoint: a kill cannot split them
                self.state["finished"] = {"reason": f"early stopping: val_softmax_accuracy stalled for "
                                                    f"{constants.EARLY_STOPPING_PATIENCE} epochs", "target": self.end}
            metric = checkpoint_metric(logs or {}, self.validation)
            self.run.save(self.model, self.last_epoch, self.state, metric,
                          {**callback_state(self.stateful), "generators": generator_states(self.model)})


STATEFUL_ATTRIBUTES = {"EarlyStopping": ("wait", "best", "best_epoch"),
                       "ReduceLROnPlateau": ("wait", "best", "cooldown_counter")}


def callback_state(callbacks):
    """{class name: {attribute: value}} of the callbacks whose counters a resumed run must continue."""
    state = {}
    for callback in callbacks:
        names = STATEFUL_ATTRIBUTES.get(type(callback).__name__, ())
        values = {name: getattr(callback, name, None) for name in names}
        state[type(callback).__name__] = {k: (None if v is None else float(v) if k == "best" else int(v))
                                          for k, v in values.items()}
    return state


def write_norm(run, norm):
    """Write the run's norm.json (the statistics it trains with, for inference); its sha256, which state.json
    records so that a damaged or edited copy is refused (ml/embeddings.py)."""
    utils.write_json(run.folder / "norm.json", norm)
    return utils.file_digest(run.folder / "norm.json")[1]


def generator_states(model):
    """{layer name: state} of the random generators of the model's layers that draw (dropout): saved with every
    checkpoint, so that a resumed run draws what an uninterrupted one would have drawn."""
    return {layer.name: np.asarray(layer.seed_generator.state.numpy()).tolist() for layer in model.layers
            if getattr(layer, "seed_generator", None) is not None}


def restore_generator_states(model, saved):
    """Put back the generators' states of generator_states (a checkpoint from before they were saved: none)."""
    for layer in model.layers:
        if getattr(layer, "seed_generator", None) is not None and layer.name in (saved or {}):
            state = layer.seed_generator.state
            state.assign(np.asarray(saved[layer.name], dtype=state.dtype))


class RestoreCallbackState(keras.callbacks.Callback):
    """Put back the counters of early stopping and the plateau schedule after fit() has reset them."""

    def __init__(self, callbacks, saved):
        super().__init__()
        self.callbacks, self.saved = callbacks, saved or {}

    def on_train_begin(self, logs=None):
        for callback in self.callbacks:
            for name, value in self.saved.get(type(callback).__name__, {}).items():
                setattr(callback, name, value)


def softmax_identity(inputs):
    """The model identity the inputs need: classes, input shape, normalisation (ml/checkpoints.py)."""
    return checkpoints.model_identity(inputs.classes, inputs.input_shape, inputs.norm["method"])


def train_softmax(inputs, epochs=None, fresh=False, freeze=False, normalize_embeddings=False, verbose=None, plan=None):
    """Softmax training (mode "softmax", or "frozen" with `freeze`) until epoch `epochs` in all.

    Returns the final test accuracies (and the model); when the run is already complete, what it recorded.
    With `plan` (checkpoints.prepare), the caller holds the run's lock and has planned the run.
    """
    mode = "frozen" if freeze else "softmax"
    if plan is None:
        with RunFolder(mode).lock():
            plan = checkpoints.prepare(mode, inputs.record, softmax_identity(inputs),
                                       checkpoints.softmax_end(epochs, freeze), fresh, normalize_embeddings)
            return train_softmax(inputs, freeze=freeze, normalize_embeddings=normalize_embeddings, verbose=verbose,
                                 plan=plan)
    run = RunFolder(mode)
    if plan["nothing_to_do"]:
        print(plan["nothing_to_do"])
        return final_accuracy(inputs, run, normalize_embeddings)
    with distribution.strategy().scope():  # the model, its optimizer and fit on every replica (ml/distribution.py)
        return _train_softmax(inputs, run, plan, mode, freeze, normalize_embeddings, verbose)


def _train_softmax(inputs, run, plan, mode, freeze, normalize_embeddings, verbose):
    """train_softmax's training itself, within the distribution strategy's scope."""
    end = plan["end"]
    keras.utils.set_random_seed(constants.SEED)
    model, start, source = _start_model(inputs, plan, normalize_embeddings, freeze)
    compile_for(model, "softmax", constants.LEARNING_RATE, [speaker_accuracy(inputs)])
    state = checkpoints.start_state(plan)
    if plan["source"] == "own":  # the optimizer's moments and step come back with the weights
        model.optimizer.build(model.trainable_variables)
        entry = run.load_into(model, state)
        restore_generator_states(model, (entry.get("callbacks") or {}).get("generators"))
        checkpoints.rewind(state, entry)
        start, source = entry["count"], checkpoints.describe(mode, state, entry)
    run.trim_history(start)
    run.write_settings({**plan, "start": start, "replicas": distribution.replicas()})
    state["norm_sha256"] = write_norm(run, inputs.norm)  # inference normalises as this run was trained
    print(f"{mode}: {parameter_summary(model)}, {constants.MODEL}, epochs {start + 1}-{end}, from {source}")

    training_batches = WindowBatches(inputs.train, shift_stds=shift_stds(inputs.norm))
    # the head alone (frozen mode) is re-trained with the original's schedule
    schedule = softmax_schedule(len(training_batches), "plateau" if freeze else None)
    stateful = [keras.callbacks.EarlyStopping("val_softmax_accuracy", mode="max",
                                              min_delta=constants.EARLY_STOPPING_MIN_DELTA,
                                              patience=constants.EARLY_STOPPING_PATIENCE), *schedule]
    every = 1 if end <= constants.EVERY_EPOCH_CHECKPOINTS_UP_TO else constants.CHECKPOINT_EVERY_EPOCHS
    validate = inputs.validation is not None and not freeze  # frozen re-training leaves the embeddings as they are
    saver = Checkpoints(run, state, every, end, stateful, validation=validate)
    saved = (plan.get("entry") or {}).get("callbacks") if plan["source"] == "own" else None
    validation_eer = [ValidationEER(inputs.validation)] if validate else []
    callbacks = [EpochTracker(training_batches), *validation_eer, *stateful, RestoreCallbackState(stateful, saved),
                 keras.callbacks.CSVLogger(str(run.history), append=True), saver]
    validation = WindowBatches(_validation_subset(inputs.test), shuffle=False)
    if verbose is None:  # a bar per batch in a terminal, one line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(training_batches, validation_data=validation, initial_epoch=start, epochs=end, callbacks=callbacks,
              verbose=verbose, shuffle=False)
    if saver.failed:
        raise NonFiniteLoss(f"{mode}: {saver.failed}; training stopped, the last good checkpoint is "
                            f"kept ({_latest_path(run)}). Try a lower LEARNING_RATE.")
    reached = saver.last_epoch or start
    run.write_settings(plan, ended=reached)
    return {**final_accuracy(inputs, run, normalize_embeddings, model), "model": model}


def final_accuracy(inputs, run, normalize_embeddings, model=None):
    """The closed-set test accuracies of the run's latest checkpoint (`model`: it, in memory), as result.json
    records them: read when the record is that checkpoint's, else measured and written (a run killed after its
    last checkpoint, before this, gets them when the command is run again; never an older checkpoint's)."""
    state = run.state() or {}
    latest = state.get("latest")
    result, current = run.result()
    if latest is None or (model is None and current):
        return result
    if model is None:
        print(f"{run.mode}: the final test accuracies of {latest['file']} were not recorded (interrupted); "
              f"measuring them")
        model = build_model(len(inputs.classes), normalize_embeddings=normalize_embeddings,
                            input_shape=inputs.input_shape)
        run.load_into(model, state, latest, fallback=False)
    window, utterance = evaluation.closed_set_accuracy(model, inputs)
    print(f"{run.mode}: test accuracy {window:.1%} per window, {utterance:.1%} per utterance "
          f"({len(inputs.test):,} windows of {len(inputs.test.utterance_keys)} utterances, "
          f"normalisation {inputs.norm['method']}, over the {len(inputs.speakers)} real speakers)")
    result = {"window_accuracy": window, "utterance_accuracy": utterance, "epoch": latest["count"],
              "normalization": inputs.norm["method"], "checkpoint": latest["file"], "sha256": latest["sha256"]}
    utils.write_json(run.folder / "result.json", result)
    return result


def _start_model(inputs, plan, normalize_embeddings, freeze):
    """(model, count, where it came from): new weights, or the earlier mode's checkpoint loaded (not yet one's own)."""
    model = build_model(len(inputs.classes), normalize_embeddings=normalize_embeddings, input_shape=inputs.input_shape)
    if plan["source"] is None:
        source = "fresh weights" + (" (--fresh)" if plan.get("fresh") else " (no checkpoint to start from)")
    elif plan["source"] == "own":
        source = "its own checkpoint"
    else:
        previous_state, entry = plan["source_state"], plan["source_entry"]
        RunFolder(plan["source"]).load_into(model, previous_state, entry, fallback=False)
        source = checkpoints.describe(plan["source"], previous_state, entry)
    if freeze:
        freeze_below_softmax(model)
    return model, 0, source


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
    return run.folder / state["latest"]["file"] if state and state.get("latest") else "none yet"


# ----------------------------------------------------------------------------------------------------
# Triplet training
# ----------------------------------------------------------------------------------------------------
def train_triplet(inputs, steps=None, fresh=False, normalize_embeddings=False, progress=True, plan=None):
    """The original's triplet loop until step `steps` in all; returns the moving-average train and test losses.

    With `plan` (checkpoints.prepare), the caller holds the run's lock and has planned the run.
    """
    run = RunFolder("triplet")
    if plan is None:
        with run.lock():
            plan = checkpoints.prepare("triplet", inputs.record, softmax_identity(inputs),
                                       checkpoints.triplet_end(steps), fresh, normalize_embeddings)
            return train_triplet(inputs, normalize_embeddings=normalize_embeddings, progress=progress, plan=plan)
    if plan["nothing_to_do"]:
        print(plan["nothing_to_do"])
        result = utils.read_json(run.folder / "result.json", default={}, what="the run's final losses", keys={})
        latest = (run.state() or {}).get("latest") or {}
        if result.get("step") != latest.get("count"):  # killed after its last checkpoint: not recorded, not guessed
            print(f"triplet: the final moving-average losses of step {latest.get('count')} were not recorded "
                  f"(interrupted); history.csv has the losses of every step")
            return {}
        return result
    distribution.check_triplet_batch()
    with distribution.strategy().scope():
        return _train_triplet(inputs, run, plan, normalize_embeddings, progress)


def _train_triplet(inputs, run, plan, normalize_embeddings, progress):
    """train_triplet's loop itself, within the distribution strategy's scope."""
    end = plan["end"]
    keras.utils.set_random_seed(constants.SEED)
    model, start, source = _start_model(inputs, plan, normalize_embeddings, freeze=False)
    # the triplet loss does not reach the classifier; with TRIPLET_SOFTMAX_WEIGHT its own loss goes on training it
    model.get_layer("softmax").trainable = constants.TRIPLET_SOFTMAX_WEIGHT > 0
    compile_for(model, "triplet", constants.TRIPLET_LEARNING_RATE)
    state = checkpoints.start_state(plan)
    # built before anything is saved: the step-0 checkpoint then holds the optimizer's (initial) state, as every later
    # one does, and a run killed before its next checkpoint resumes from it
    model.optimizer.build(model.trainable_variables)
    if plan["source"] == "own":
        _check_same_replicas(run)
        entry = run.load_into(model, state)
        restore_generator_states(model, (entry.get("callbacks") or {}).get("generators"))
        checkpoints.rewind(state, entry)
        start, source = entry["count"], checkpoints.describe("triplet", state, entry)
    train_step, test_loss_of = _triplet_steps(model)
    run.trim_history(start)
    run.write_settings({**plan, "start": start, "replicas": distribution.replicas()})
    state["norm_sha256"] = write_norm(run, inputs.norm)
    train_batches = triplet_sampler(inputs.train, shift_stds(inputs.norm))
    test_batches = triplet_sampler(inputs.test)
    print(f"triplet: {parameter_summary(model)}, {constants.MODEL}, steps {start + 1}-{end}, from {source}, "
          f"learning rate {constants.TRIPLET_LEARNING_RATE:g}, {_selection(train_batches)}")
    # the losses of the last steps as the checkpoint continued from held them: a resumed run's moving averages (its
    # checkpoints' metric without validation speakers, and result.json) are those of an uninterrupted one
    held = ((entry.get("callbacks") or {}).get("averages")) if plan["source"] == "own" else None
    averages = {name: deque((held or {}).get(name) or _history_losses(run, start, name),
                            maxlen=constants.MOVING_AVERAGE_STEPS) for name in ("loss", "test_loss")}
    bar = utils.progress(range(start + 1, end + 1), desc="triplet", unit="step", disable=not progress)
    reached = start
    validation = inputs.validation
    if validation is not None and start == 0:  # the starting point is a candidate: triplet training must beat it
        eer, _ = evaluation.verification_figures(model, validation)
        run.save(model, 0, state, validation_metric(eer, validation), {"since_best": 0})
        print(f"triplet: validation EER {eer:.2%} at the start ({len(set(validation.labels.tolist()))} validation "
              f"speakers); training stops after {constants.TRIPLET_PATIENCE} checkpoints without a better one")
    since_best = ((plan.get("entry") or {}).get("callbacks") or {}).get("since_best", 0)
    with appending_csv(run.history, ("step", "loss", "test_loss")) as write_history:
        for step in bar:
            rng = np.random.default_rng([constants.SEED, step])  # a resumed run draws the same batches
            windows, labels = train_batches.batch(rng=rng)
            loss = train_step(windows, labels)
            test_loss = test_loss_of(*test_batches.batch(rng=rng))
            if not (math.isfinite(loss) and math.isfinite(test_loss)):
                raise NonFiniteLoss(f"triplet: the loss became {loss} at step {step}; training stopped, the last "
                                    f"good checkpoint is kept ({_latest_path(run)}). Try a lower LEARNING_RATE.")
            averages["loss"].append(loss)
            averages["test_loss"].append(test_loss)
            write_history([step, f"{loss:.6f}", f"{test_loss:.6f}"])
            if step % constants.PRINT_EVERY_STEPS == 0:
                bar.set_postfix(loss=f"{np.mean(averages['loss']):.4f}", test_loss=f"{np.mean(averages['test_loss']):.4f}",
                                refresh=sys.stderr.isatty())  # a log gets the bar's timed lines only
            reached = step
            if step % constants.CHECKPOINT_EVERY_STEPS == 0 or step == end:
                if validation is not None:
                    eer, _ = evaluation.verification_figures(model, validation)
                    metric = validation_metric(eer, validation)
                    new_best = checkpoints.beats(metric, (state.get("best") or {}).get("metric"), ties=False)
                    since_best = 0 if new_best and math.isfinite(eer) else since_best + 1
                    bar.set_postfix(loss=f"{np.mean(averages['loss']):.4f}", val_eer=f"{eer:.2%}",
                                    refresh=sys.stderr.isatty())
                else:
                    metric = {"name": "test_loss_moving_average", "value": float(np.mean(averages["test_loss"])),
                              "higher_is_better": False}
                stopping = validation is not None and since_best >= constants.TRIPLET_PATIENCE
                if stopping:  # recorded with the checkpoint: a kill cannot leave one without the other
                    state["finished"] = {"reason": f"early stopping: no better validation EER in "
                                                   f"{constants.TRIPLET_PATIENCE} checkpoints", "target": end}
                run.save(model, step, state, metric, {"since_best": since_best, "generators": generator_states(model),
                                                      "averages": {k: list(v) for k, v in averages.items()}})
                if stopping:
                    print(f"triplet: stopped at step {step}: no better validation EER in {constants.TRIPLET_PATIENCE} "
                          f"checkpoints; the best is {state['best']['file']} "
                          f"({state['best']['metric']['value']:.2%})")
                    break
    run.write_settings(plan, ended=reached)
    summary = {name: float(np.mean(values)) if values else float("nan") for name, values in averages.items()}
    print(f"triplet: step {reached}, moving average over the last {len(averages['loss'])} steps: "
          f"loss {summary['loss']:.4f}, test loss {summary['test_loss']:.4f}")
    summary["step"] = reached
    utils.write_json(run.folder / "result.json", summary)
    return {**summary, "model": model}


def validation_metric(eer, validation):
    """The record of a triplet checkpoint's validation EER, with the margin a later one must beat it by:
    VALIDATION_SIGNIFICANCE binomial standard errors of the EER over the validation speakers' same-speaker
    trials (with 8 speakers of 20 utterances, an EER of 9 % is known to about +-0.7 points)."""
    error = evaluation.eer_standard_error(eer, validation)
    return {"name": "val_eer", "value": _finite(eer), "higher_is_better": False,
            "margin": _finite(constants.VALIDATION_SIGNIFICANCE * error)}


def _check_same_replicas(run):
    """Segment triplets are mined within each device's share of a batch, so a run of them goes on only on as many
    devices as it began on (window triplets give every device the same rows on any count: no limit)."""
    before = (run.settings() or {}).get("replicas")
    if constants.TRIPLET_SELECTION == "segments" and before not in (None, distribution.replicas()):
        raise utils.PipelineError(
            f"the triplet run in {run.folder} mines segment triplets within each of {before} device(s), and "
            f"{distribution.replicas()} are in use now: its batches would change. Continue it on {before} (GPUs, or "
            f"DEEP_SPEAKER_CPU_DEVICES={before}), or start a new run with `{checkpoints.command('triplet')} --fresh`")


def triplet_sampler(window_set, level=0.0):
    """The triplet batches of TRIPLET_SELECTION from one split: single windows (the original's) or segments."""
    if constants.TRIPLET_SELECTION == "segments":
        return SegmentSampler(window_set, None, level, replicas=distribution.replicas())
    return TripletSampler(window_set, None, level)


def _selection(sampler):
    """How the triplets are made, for the run's first line."""
    if isinstance(sampler, SegmentSampler):
        return (f"batch-hard segment triplets ({sampler.classes_per_batch} classes x "
                f"{constants.TRIPLET_SEGMENTS_PER_SPEAKER} segments of {sampler.windows_per_segment} windows)")
    return f"window triplets ({constants.TRIPLET_PAIRS_PER_BATCH} speaker pair(s) per batch)"


def _triplet_steps(model):
    """(train step, test loss), each taking (windows, labels) of a triplet batch and giving its loss. One device:
    Keras's train_on_batch and test_on_batch. More: every replica trains on a triplet batch of its own
    (ml/distribution.py), and the test loss is computed on one device."""
    if distribution.replicas() > 1:
        from ml.model import triplet_objective
        objective = triplet_objective(model)

        def test_loss(windows, labels):  # what test_on_batch computes on one device
            return float(objective(labels.astype(np.float32)[:, None], model(windows, training=False)))
        return distribution.triplet_step(model), test_loss

    def targets(labels):  # the window triplet loss ignores the labels; the segment one reads them
        return {"embeddings": labels.astype(np.float32)[:, None], "softmax": labels}
    return (lambda windows, labels: model.train_on_batch(windows, targets(labels), return_dict=True)["loss"],
            lambda windows, labels: model.test_on_batch(windows, targets(labels), return_dict=True)["loss"])


def _history_losses(run, start, name):
    """The column `name` of the history rows of steps up to `start` (the last MOVING_AVERAGE_STEPS): a checkpoint of
    an earlier version holds no averages; the history keeps them to 6 decimals."""
    if start == 0 or not run.history.exists():
        return []
    with open(run.history, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if (r.get("step") or "").isdigit() and int(r["step"]) <= start]
    return [float(r[name]) for r in rows[-constants.MOVING_AVERAGE_STEPS:] if r.get(name)]


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
