"""Training on more than one device: tf.distribute.MirroredStrategy over every visible GPU when there are
several, else over CPU_DEVICES logical CPU devices (1: no strategy, the default device).

Softmax training (Keras fit) runs under the strategy: BATCH_SIZE stays the global batch, split across the
replicas, their gradients summed, and batch normalisation synchronises its statistics across them, so N
replicas compute what one device computes. The triplet loop stays on one device: Keras's train_on_batch
hands every replica the whole batch (no speed-up, the loss reported N times); sharding its batches into one
triplet batch per replica is not built yet.

The CPU is split into logical devices when TensorFlow is imported (utils.import_tensorflow_quietly), before
its runtime starts; DEEP_SPEAKER_CPU_DEVICES=2 lets tests and CI take the multi-device path without a GPU.
"""
import functools

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
