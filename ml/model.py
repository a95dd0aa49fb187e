"""The speaker models: one Keras model with two outputs, `embeddings` and `softmax`.

Both architectures read a window as (frames, features per frame), the shape the inputs hold (by default
FRAMES_PER_WINDOW x 3 * NUM_MFCC: MFCC, delta, delta-delta), and share the head: a 200-value embedding
layer "fc1", the layer "embeddings" (L2 normalisation when asked for, else the identity: the topology is
the same either way, so weights move between the two), and the classifier "softmax": a dense layer (the
original's) or, with SOFTMAX_HEAD = "cosine_margin", the additive-margin softmax's cosine classifier.
"""

import utils

utils.import_tensorflow_quietly()  # before Keras: TensorFlow's C++ start-up lines say nothing useful
import keras  # noqa: E402
from keras import layers  # noqa: E402

import constants  # noqa: E402
from ml.triplet_loss import loss_of_selection, unit_rows  # noqa: E402

@keras.saving.register_keras_serializable(package="deep_speaker")
class L2Normalization(layers.Layer):
    """Scale each embedding to unit L2 norm when `active`; pass it through unchanged otherwise."""

    def __init__(self, active=True, **kwargs):
        super().__init__(**kwargs)
        self.active = active

    def call(self, inputs):
        if not self.active:
            return inputs
        return unit_rows(inputs)

    def get_config(self):
        return {**super().get_config(), "active": self.active}


@keras.saving.register_keras_serializable(package="deep_speaker")
class CosineSoftmax(layers.Layer):
    """The additive-margin softmax's classifier: softmax over `scale` x the cosine of the input and each class's
    weight vector (no bias). Its probabilities are what closed-set identification reads; training subtracts the
    margin from the true class's cosine in the loss (AdditiveMarginLoss), which needs only these probabilities."""

    def __init__(self, units, scale=30.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = int(units), float(scale)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer="glorot_uniform")

    def call(self, inputs):
        cosines = keras.ops.matmul(unit_rows(inputs), unit_rows(self.kernel, axis=0))
        return keras.ops.softmax(self.scale * cosines, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


@keras.saving.register_keras_serializable(package="deep_speaker")
class AdditiveMarginLoss(keras.losses.Loss):
    """The additive-margin softmax loss (CosFace / AM-softmax) from CosineSoftmax's probabilities.

    With p = softmax(s cos) and q = p of the true class, subtracting the margin m from the true class's cosine
    gives the true class the probability q e^(-sm) / (q e^(-sm) + 1 - q); the loss is minus its log. A margin of 0
    is the plain cross-entropy."""

    def __init__(self, scale=30.0, margin=0.2, name="additive_margin", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale, self.margin = float(scale), float(margin)

    def call(self, y_true, y_pred):
        truth = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        q = keras.ops.take_along_axis(y_pred, truth[:, None], axis=-1)[:, 0]
        q = keras.ops.clip(q, 1e-37, 1.0 - 1e-7)  # float32: q = 0 or 1 exactly would make the logs infinite
        lowered = keras.ops.log(q) - self.scale * self.margin  # log(q e^(-sm)), in logs: no underflow
        return keras.ops.logaddexp(lowered, keras.ops.log1p(-q)) - lowered

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "margin": self.margin}


@keras.saving.register_keras_serializable(package="deep_speaker")
class StatisticsPooling(layers.Layer):
    """The mean and the standard deviation over time of each channel, side by side (x-vector style pooling)."""

    def call(self, inputs):
        mean = keras.ops.mean(inputs, axis=1)
        variance = keras.ops.mean(keras.ops.square(inputs - mean[:, None, :]), axis=1)
        return keras.ops.concatenate([mean, keras.ops.sqrt(variance + 1e-6)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


def conv_trunk(windows):
    """1-D convolutions over time (coefficients as channels), pooled by mean and max (or mean and standard
    deviation: POOLING), to 'fc1'. On more than one
    device, batch normalisation uses the statistics of the whole batch, not of each replica's share."""
    from ml.distribution import replicas
    synchronized = replicas() > 1
    x = windows
    for index, filters in enumerate(constants.CONV_FILTERS, start=1):
        x = layers.Conv1D(filters, constants.CONV_KERNEL, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(synchronized=synchronized, name=f"conv{index}_bn")(x)
        x = layers.ReLU(name=f"conv{index}_relu")(x)
    if constants.POOLING == "mean_std":
        pooled = StatisticsPooling(name="pool")(x)
    else:
        pooled = layers.Concatenate(name="pool")([layers.GlobalAveragePooling1D(name="mean_pool")(x),
                                                  layers.GlobalMaxPooling1D(name="max_pool")(x)])
    pooled = layers.Dropout(constants.DROPOUT, seed=constants.SEED, name="dropout")(pooled)
    return layers.Dense(constants.EMBEDDING_SIZE, name="fc1")(pooled)


def dense_trunk(windows):
    """The original: all 390 values into one sigmoid layer 'fc1'."""
    return layers.Dense(constants.EMBEDDING_SIZE, activation="sigmoid", name="fc1")(layers.Flatten(name="flat")(windows))


def default_input_shape():
    """(frames, features per frame) of a window under the current settings: MFCC, delta and delta-delta."""
    return constants.FRAMES_PER_WINDOW, 3 * constants.NUM_MFCC


def build_model(num_speakers, architecture=None, normalize_embeddings=False, input_shape=None, head=None):
    """The model of `architecture` ("conv" or "dense", default constants.MODEL) for `num_speakers` classes,
    reading windows of `input_shape` (frames, features; default: the current settings'), with the classifier
    `head` ("dense" or "cosine_margin", default constants.SOFTMAX_HEAD)."""
    architecture = architecture or constants.MODEL
    head = head or constants.SOFTMAX_HEAD
    trunks = {"conv": conv_trunk, "dense": dense_trunk}
    if architecture not in trunks:
        raise ValueError(f"unknown MODEL {architecture!r}; use one of {', '.join(trunks)}")
    windows = keras.Input(tuple(input_shape or default_input_shape()), name="windows")
    embeddings = L2Normalization(active=normalize_embeddings, name="embeddings")(trunks[architecture](windows))
    if head == "cosine_margin":
        softmax = CosineSoftmax(num_speakers, constants.MARGIN_SCALE, name="softmax")(embeddings)
    elif head == "dense":
        softmax = layers.Dense(num_speakers, activation="softmax", name="softmax")(embeddings)
    else:
        raise ValueError(f"unknown SOFTMAX_HEAD {head!r}; use dense or cosine_margin")
    return keras.Model(windows, {"embeddings": embeddings, "softmax": softmax}, name=f"deep_speaker_{architecture}")


def parameter_summary(model):
    """"N parameters (A in the embedding network, B in the softmax head over C classes)"."""
    head = model.get_layer("softmax")
    total, in_head = model.count_params(), head.count_params()
    return (f"{total:,} parameters ({total - in_head:,} in the embedding network, {in_head:,} in the softmax "
            f"head over {head.units} classes)")


def loss_of_head(model):
    """The loss of `model`'s classifier: cross-entropy (dense head) or the additive-margin loss (cosine head)."""
    head = model.get_layer("softmax")
    if isinstance(head, CosineSoftmax):
        return AdditiveMarginLoss(head.scale, constants.MARGIN)
    return keras.losses.SparseCategoricalCrossentropy()


def triplet_objective(model):
    """(labels, outputs) -> the triplet stage's loss of a batch, as compile_for sets it: TRIPLET_SELECTION's triplet
    loss on the embeddings, plus TRIPLET_SOFTMAX_WEIGHT x the mean of the classifier's per-window losses. For the
    steps outside Keras's fit (several devices): the mean is taken here, since a Keras loss object called within a
    distribution strategy divides by its replicas itself."""
    triplet, classifier, weight = loss_of_selection(), loss_of_head(model), constants.TRIPLET_SOFTMAX_WEIGHT

    def objective(labels, outputs):
        loss = triplet(labels, outputs["embeddings"])
        if weight > 0:
            loss = loss + weight * keras.ops.mean(classifier.call(labels, outputs["softmax"]))
        return loss
    return objective


def compile_for(model, loss, learning_rate, metrics=None):
    """Compile `model` with Adam at `learning_rate` and one of its two losses: "softmax" (sparse categorical
    cross-entropy on the classifier, or the additive-margin loss on a cosine head) or "triplet" (the cosine triplet
    loss on the embeddings, plus TRIPLET_SOFTMAX_WEIGHT x the classifier's loss when that is above 0)."""
    classifier_loss = loss_of_head(model)
    joint = loss == "triplet" and constants.TRIPLET_SOFTMAX_WEIGHT > 0
    losses = {"softmax": {"softmax": classifier_loss, "embeddings": None},
              "triplet": {"embeddings": loss_of_selection(), "softmax": classifier_loss if joint else None}}[loss]
    weights = {"embeddings": 1.0, "softmax": constants.TRIPLET_SOFTMAX_WEIGHT} if joint else None
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, loss_weights=weights,
                  metrics={"softmax": metrics} if metrics else None)
    return model


def freeze_below_softmax(model):
    """Make every layer but the 'softmax' head untrainable (frozen re-training)."""
    for layer in model.layers:
        layer.trainable = layer.name == "softmax"
