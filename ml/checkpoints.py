"""Run folders and checkpoints: <workdir>/runs/<mode>/ with weights/*.weights.h5, history.csv,
settings.json and state.json (the latest checkpoint, its epoch or step, and the model it fits).

A run continues from its own latest checkpoint; a new run starts from the weights of the mode before it
(softmax -> triplet -> frozen). A checkpoint made for another architecture or other speakers is refused
with a message, never loaded half-way.
"""
import time

import constants
import utils

PREDECESSORS = {"softmax": (), "triplet": ("softmax",), "frozen": ("triplet", "softmax")}
UNITS = {"softmax": "epoch", "triplet": "step", "frozen": "epoch"}
TRAINING_SETTINGS = ("MODEL", "EMBEDDING_SIZE", "CONV_FILTERS", "CONV_KERNEL", "DROPOUT", "BATCH_SIZE", "LEARNING_RATE",
                     "SOFTMAX_MAX_EPOCHS", "CHECKPOINT_EVERY_EPOCHS", "EARLY_STOPPING_MIN_DELTA",
                     "EARLY_STOPPING_PATIENCE", "REDUCE_LR_FACTOR", "REDUCE_LR_PATIENCE", "MIN_LEARNING_RATE",
                     "MAX_VALIDATION_WINDOWS", "TRIPLET_MARGIN", "TRIPLET_MAX_STEPS", "CHECKPOINT_EVERY_STEPS",
                     "MOVING_AVERAGE_STEPS", "NORMALIZATION", "SEED")


class RunFolder:
    """<workdir>/runs/<mode>: checkpoints, history.csv, settings.json and state.json of one mode."""

    def __init__(self, mode):
        self.mode = mode
        self.folder = utils.work_path("runs", mode)
        self.history = self.folder / "history.csv"

    def state(self):
        """The state record (latest checkpoint, its count, the model it fits), or None before any."""
        return utils.read_json(self.folder / "state.json")

    def save(self, model, count, identity):
        """Write the weights at `count` (epoch or step) atomically, then point state.json at them."""
        name = f"{UNITS[self.mode]}-{count:06d}.weights.h5"
        target = utils.ensure_writable_dir(self.folder / "weights") / name
        with utils.atomic_path(target) as tmp:
            model.save_weights(tmp)
        utils.write_json(self.folder / "state.json", {
            "latest": f"weights/{name}", "count": count, "unit": UNITS[self.mode], "model": identity,
            "normalize_embeddings": bool(model.get_layer("embeddings").active)})  # how to rebuild it for use

    def write_settings(self, extra):
        """Record the settings this run used (overwritten by each run; history.csv keeps every epoch/step)."""
        utils.ensure_writable_dir(self.folder)
        utils.write_json(self.folder / "settings.json",
                         {**utils.settings_snapshot(TRAINING_SETTINGS), **extra,
                          "started": time.strftime("%Y-%m-%d %H:%M:%S")})


def model_identity(speakers):
    """What a checkpoint must match to be loaded: architecture, its sizes and the speakers (label order)."""
    return {"architecture": constants.MODEL, "embedding_size": constants.EMBEDDING_SIZE,
            "conv_filters": list(constants.CONV_FILTERS), "conv_kernel": constants.CONV_KERNEL,
            "num_speakers": len(speakers), "speakers": list(speakers)}


def restore(model, mode, identity, fresh=False):
    """Load the checkpoint this run continues from; return (count to continue from, where it came from)."""
    if fresh:
        return 0, "fresh weights (--fresh)"
    for source in (mode,) + PREDECESSORS[mode]:
        run = RunFolder(source)
        state = run.state()
        if state is None:
            continue
        check_compatible(state["model"], identity, run.folder / state["latest"])
        model.load_weights(run.folder / state["latest"])
        count = state["count"] if source == mode else 0
        return count, f"{run.folder / state['latest']} ({state['unit']} {state['count']})"
    return 0, "fresh weights (no checkpoint yet)"


def check_compatible(stored, identity, path):
    """PipelineError naming the difference when a checkpoint was trained for another model or speakers."""
    different = [key for key in identity if stored.get(key) != identity[key]]
    if not different:
        return
    shown = "; ".join(f"{key}: checkpoint {_short(stored.get(key))}, now {_short(identity[key])}" for key in different)
    raise utils.PipelineError(f"the checkpoint {path} does not fit this model ({shown}). Use --fresh to start "
                              f"again, or another DEEP_SPEAKER_WORKDIR to keep both")


def _short(value):
    """A value for a message: lists of speakers are shortened."""
    if isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(map(str, value[:3]))}, ... {len(value)} in all]"
    return value
