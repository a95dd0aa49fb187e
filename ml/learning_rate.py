"""The learning rate of softmax pre-training: the original's plateau schedule, or warm-up then cosine decay.

"plateau" (the original): Adam at LEARNING_RATE, halved by Keras' ReduceLROnPlateau when the validation
loss stalls. "warmup_cosine": the rate rises linearly from 0 to SOFTMAX_PEAK_LEARNING_RATE over the first
SOFTMAX_WARMUP_STEPS batches (at most a tenth of the run), then falls along a half cosine to 0 at the end
of epoch SOFTMAX_SCHEDULE_EPOCHS, where the run stops. The rate depends only on the batch's position in
the whole run, so a run resumed from a checkpoint continues the same curve.
"""
import math

import utils

utils.import_tensorflow_quietly()  # before Keras: TensorFlow's C++ start-up lines say nothing useful
import keras  # noqa: E402

import constants  # noqa: E402

SCHEDULES = constants.CHOICES["SOFTMAX_LR_SCHEDULE"]  # "plateau", "warmup_cosine"


def warmup_cosine(step, total_steps, peak, warmup_steps):
    """The rate at batch `step` (0-based) of `total_steps`: linear warm-up to `peak` (over at most a tenth of
    the run, so a short run still decays), then cosine decay to 0."""
    warmup_steps = max(1, min(warmup_steps, total_steps // 10))
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


class WarmupCosine(keras.callbacks.Callback):
    """Set the optimizer's rate before every batch from its position in the whole scheduled run."""

    def __init__(self, steps_per_epoch, epochs, peak, warmup_steps):
        super().__init__()
        self.steps_per_epoch, self.total_steps = steps_per_epoch, steps_per_epoch * epochs
        self.peak, self.warmup_steps, self.epoch = peak, warmup_steps, 0

    def rate(self, epoch, batch):
        return warmup_cosine(epoch * self.steps_per_epoch + batch, self.total_steps, self.peak, self.warmup_steps)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(self.epoch, batch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # the history's learning_rate column: the rate of the epoch's last batch
            logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())


def softmax_schedule(steps_per_epoch, name=None):
    """The callbacks that set the rate of schedule `name` (default SOFTMAX_LR_SCHEDULE); where a run ends is
    decided by ml/checkpoints.softmax_end."""
    name = name or constants.SOFTMAX_LR_SCHEDULE
    if name not in SCHEDULES:
        raise ValueError(f"unknown SOFTMAX_LR_SCHEDULE {name!r}; use one of {', '.join(SCHEDULES)}")
    if name == "plateau":
        return [keras.callbacks.ReduceLROnPlateau("val_loss", factor=constants.REDUCE_LR_FACTOR,
                                                  patience=constants.REDUCE_LR_PATIENCE,
                                                  min_lr=constants.MIN_LEARNING_RATE)]
    return [WarmupCosine(steps_per_epoch, constants.SOFTMAX_SCHEDULE_EPOCHS, constants.SOFTMAX_PEAK_LEARNING_RATE,
                         constants.SOFTMAX_WARMUP_STEPS)]
