"""Training on more than one device: tf.distribute.MirroredStrategy over every visible GPU when there are
several, else over CPU_DEVICES logical CPU devices (1: no strategy, the default device).

BATCH_SIZE stays the global batch. Softmax training (Keras fit) splits each batch across the replicas and
sums their gradients; batch normalisation synchronises its statistics across them, so N replicas compute
what one device computes. The triplet loop cuts each batch (anchors; positives; negatives) into one triplet
batch per replica, the same rows of each third, and averages their losses: the loss of the whole batch,
since the triplet loss is a mean over its rows; segment triplets go to the replicas class by class, each
replica's batch-hard choice within its share. (Keras's train_on_batch would hand every replica the whole
batch: no speed-up, and the loss reported N times.)

The CPU is split into logical devices when TensorFlow is imported (utils.import_tensorflow_quietly), before
its runtime starts; DEEP_SPEAKER_CPU_DEVICES=2 lets tests and CI take the multi-device path without a GPU.
"""
import functools

import numpy as np

import constants
import utils


def split_cpu(tf):
    """Make CPU_DEVICES logical CPU devices of the first physical one (right after TensorFlow's import)."""
    if constants.CPU_DEVICES <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()]
                                                   * constants.CPU_DEVICES)
    except RuntimeError as error:  # the runtime had started: the devices are what they are
        raise utils.PipelineError(f"CPU_DEVICES = {constants.CPU_DEVICES} cannot be set once TensorFlow has "
                                  f"started ({error}); set DEEP_SPEAKER_CPU_DEVICES before the process starts")


@functools.lru_cache(maxsize=None)
def strategy():
    """The distribution strategy of this process: mirrored over the GPUs (more than one), or over CPU_DEVICES
    logical CPUs (more than one), else TensorFlow's default strategy (one device)."""
    import tensorflow as tf
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and constants.CPU_DEVICES > 1:
        if len(cpus) < constants.CPU_DEVICES:
            raise utils.PipelineError(f"CPU_DEVICES = {constants.CPU_DEVICES}, but TensorFlow shows {len(cpus)} "
                                      f"CPU device(s): set DEEP_SPEAKER_CPU_DEVICES before the process starts")
        return tf.distribute.MirroredStrategy([device.name for device in cpus[:constants.CPU_DEVICES]])
    return tf.distribute.get_strategy()


def replicas():
    """How many devices a training step runs on."""
    return strategy().num_replicas_in_sync


def check_triplet_batch():
    """PipelineError unless a triplet batch's third (BATCH_SIZE // 3), or its classes (segment triplets), split
    evenly across the replicas."""
    count, third = replicas(), constants.BATCH_SIZE // 3
    if constants.TRIPLET_SELECTION == "segments":
        per_class = constants.TRIPLET_SEGMENT_WINDOWS * constants.TRIPLET_SEGMENTS_PER_SPEAKER
        classes = constants.BATCH_SIZE // per_class
        if classes // count < 2:
            raise utils.PipelineError(
                f"a batch of segment triplets holds {classes} class(es) (BATCH_SIZE // (TRIPLET_SEGMENT_WINDOWS x "
                f"TRIPLET_SEGMENTS_PER_SPEAKER) = {constants.BATCH_SIZE} // {per_class}), and needs two per device "
                f"({count}): set BATCH_SIZE to {2 * count * per_class} or more, or lower TRIPLET_SEGMENT_WINDOWS")
        return
    if third % count:
        raise utils.PipelineError(f"BATCH_SIZE // 3 = {third} triplets do not split evenly across {count} devices: "
                                  f"set BATCH_SIZE to a multiple of {3 * count}")


def triplet_shards(windows, count):
    """One (anchors; positives; negatives) batch per replica from a whole one: rows [r * n, (r + 1) * n) of each
    third, n = third / count."""
    third = len(windows) // 3
    size = third // count
    parts = (windows[:third], windows[third:2 * third], windows[2 * third:3 * third])
    return [np.concatenate([part[r * size:(r + 1) * size] for part in parts]) for r in range(count)]


def segment_shards(rows, count):
    """One batch of segment triplets per replica: `count` equal runs of rows, whole classes each (a batch is
    laid out class by class, and its classes split evenly: check_triplet_batch)."""
    return np.split(rows, count)


def triplet_step(model):
    """A function (windows, labels) -> loss that trains `model` (built and compiled in strategy()'s scope, its
    optimizer built) on one triplet batch, each replica on its share (triplet_shards, or segment_shards)."""
    import tensorflow as tf

    from ml.model import triplet_objective
    objective = triplet_objective(model)
    shards_of = segment_shards if constants.TRIPLET_SELECTION == "segments" else triplet_shards
    mirrored = strategy()
    count = mirrored.num_replicas_in_sync

    def replica_step(windows, labels):
        with tf.GradientTape() as tape:
            loss = objective(labels, model(windows, training=True))
            share = loss / count  # the replicas' gradients are summed: each contributes its share of the mean
        gradients = tape.gradient(share, model.trainable_variables)
        model.optimizer.apply(gradients, model.trainable_variables)
        return loss

    @tf.function
    def step(windows, labels):
        losses = mirrored.run(replica_step, args=(windows, labels))
        return mirrored.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    def distributed(shards):
        return mirrored.experimental_distribute_values_from_function(
            lambda context: tf.constant(shards[context.replica_id_in_sync_group]))

    def run(windows, labels):
        labels = labels.astype(np.float32)[:, None]
        return float(step(distributed(shards_of(windows, count)), distributed(shards_of(labels, count))))
    return run
