"""Run folders: <workdir>/runs/<mode>/ with weights/*.weights.h5, history.csv, settings.json and state.json.

state.json lists the run's checkpoints (file, epoch or step, size and sha256, validation figure, the state of
the callbacks), the latest and the best, the model they fit (architecture, input shape, normalisation,
classes), the inputs they were trained on, and the checkpoint of the earlier mode the run started from.
settings.json records every resolved constant, the recipe, the overrides, the code version and the start
and end of every session of the run.

The rules (README, "Runs"): a run continues from its own newest intact checkpoint, with the settings it was
started with; a new run starts from the checkpoint of the mode before it (softmax -> triplet -> frozen);
--epochs/--steps N mean "until N in all". Whatever does not fit is refused in one line with the command
that fixes it. This module does not import TensorFlow, so a run that has nothing to do says so in a second.
"""
import secrets
import shutil
import sys
import time
from pathlib import Path

import constants
import utils

PREDECESSORS = {"softmax": (), "triplet": ("softmax",), "frozen": ("triplet", "softmax")}
UNITS = {"softmax": "epoch", "triplet": "step", "frozen": "epoch"}
CHAIN = ("softmax", "triplet", "frozen")  # the order the modes are trained in
SELECTING_METRICS = ("val_eer",)  # a run that measured one of these uses its best checkpoint, not its latest
SCRIPT = "python ml/1_train_triplet_softmax_model.py"
# Settings that may change while a run goes on: where things are, how often to save or print, evaluation.
FREE_SETTINGS = {"CORPUS_PATH", "WORKDIR", "NUM_WORKERS", "SOFTMAX_MAX_EPOCHS", "TRIPLET_MAX_STEPS",
                 "CHECKPOINT_EVERY_EPOCHS", "CHECKPOINT_EVERY_STEPS", "EVERY_EPOCH_CHECKPOINTS_UP_TO",
                 "KEEP_CHECKPOINTS", "PRINT_EVERY_STEPS", "UTTERANCE_POOLING", "SAP_SAN_WINDOWS_PER_SPEAKER",
                 "PROJECTION",
                 "DEMO_NUM_SPEAKERS", "DEMO_UTTERANCES_PER_SPEAKER", "DEMO_SAMPLE_RATE", "DEMO_LAYOUT",
                 "DEMO_SEED", "CPU_DEVICES", "STREAM_INPUTS", "INPUTS_MEMORY_BUDGET_MB", "ASNORM_COHORT_UTTERANCES",
                 "ASNORM_TOP_K"}
# Speaker change detection (stage 4: CHANGE_*, CONVERSATION*, BIC_PENALTY) uses a trained model, it changes none.
FREE_SETTINGS |= {name for name in vars(constants) if name.startswith(("CHANGE_", "CONVERSATION"))} | {"BIC_PENALTY"}
# The settings of the validation figures a run records every epoch or step (history.csv; the EER ranks its
# checkpoints and stops the triplet stage early): free for a finished run, which stage 2 may evaluate under other ones,
# but a run does not continue under other ones (its rows and checkpoints would be ranked by two different measures).
VALIDATION_SETTINGS = {"MAX_IMPOSTOR_TRIALS", "DCF_P_TARGET", "DCF_COST_MISS", "DCF_COST_FALSE_ALARM"}


# What state.json must hold (RunFolder.state), and each checkpoint entry in it: a damaged or hand-edited record is
# refused in one line, not met as a traceback further on.
STATE_KEYS = {"run_id": str, "unit": str, "checkpoints": list, "latest": (dict, None), "model": dict, "inputs": dict}
ENTRY_KEYS = {"file": str, "count": int, "sha256": str}


def _entries_problem(state):
    """What is wrong with a checkpoint entry of `state` (a state.json record holding STATE_KEYS), or None."""
    entries = state["checkpoints"] + [e for e in (state["latest"], state.get("best")) if e]
    return next((f"a checkpoint in it: {p}" for p in (utils.record_problem(e, ENTRY_KEYS) for e in entries) if p),
                None)


def command(mode, normalize_embeddings=None):
    """The stage-1 command that trains `mode` (for messages); by default with --normalize_embeddings for the
    triplet and frozen modes, as the documented chain runs them."""
    if normalize_embeddings is None:
        normalize_embeddings = mode != "softmax"
    flags = {"softmax": "--loss_on_softmax", "triplet": "--loss_on_embeddings",
             "frozen": "--loss_on_softmax --freeze_embedding_weights"}[mode]
    return f"{SCRIPT} {flags}{' --normalize_embeddings' if normalize_embeddings else ''}"


SKIP_WARNINGS = ("Skipping variable loading", "could not be loaded", "Skipping nested container")


def _load_weights_reporting_skips(model, path):
    """Load `path` into `model`; the messages of the variables Keras skipped instead of loading (it only warns: a
    resumed run would go on with fresh optimizer moments or layers, silently)."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    skipped = []
    for w in caught:
        if any(s in str(w.message) for s in SKIP_WARNINGS):
            skipped.append(str(w.message).strip())
        elif (key := (w.category, str(w.message), w.filename, w.lineno)) not in _REEMITTED:
            _REEMITTED.add(key)  # the other warnings once, as the default filter shows them (not on every load)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return skipped


_REEMITTED = set()  # (category, text, file, line) of the warnings a weights load has passed on


class RunFolder:
    """<workdir>/runs/<mode>: checkpoints, history.csv, settings.json and state.json of one mode."""

    def __init__(self, mode):
        self.mode = mode
        self.unit = UNITS[mode]
        self.folder = utils.work_path("runs", mode)
        self.history = self.folder / "history.csv"

    def __repr__(self):
        return f"runs/{self.mode}"

    def lock(self):
        """The exclusive lock of this run folder (training, evaluating or using it while it changes)."""
        return utils.folder_lock(self.folder, f"the {self.mode} run")

    def state(self):
        """The state record, or None before the first checkpoint; PipelineError when it is corrupt."""
        return utils.read_json(self.folder / "state.json", what=f"the record of the {self.mode} run's checkpoints",
                               keys=STATE_KEYS, check=_entries_problem,
                               fix=f"Start the run again with `{command(self.mode)} --fresh` (the old run is kept "
                                   f"under runs/archive/)")

    def result(self):
        """(result.json, whether it is of the run's latest checkpoint: its file and sha256)."""
        result = utils.read_json(self.folder / "result.json", default={}, what="the run's final test figures",
                                 fix="It is measured again when it is removed", keys={})
        latest = (self.state() or {}).get("latest")
        current = latest is not None and result.get("checkpoint") == latest["file"] and \
            result.get("sha256") == latest["sha256"]
        return result, current

    def settings(self):
        """The settings record of the run, or None."""
        return utils.read_json(self.folder / "settings.json", what=f"the settings record of the {self.mode} run",
                               keys={"run_id": str, "sessions": list, "constants": dict},
                               fix=f"Start the run again with `{command(self.mode)} --fresh`")

    # ------------------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------------------
    def save(self, model, count, state, metric=None, callbacks=None):
        """Write the weights (and optimizer state) at `count` atomically, record them in state.json, prune.

        `state` is the run's state record (see start_state); `metric` the validation figure that ranks
        checkpoints ({"name", "value", "higher_is_better"}); `callbacks` the callbacks' own state.
        """
        name = f"{self.unit}-{count:06d}.weights.h5"
        target = utils.ensure_writable_dir(self.folder / "weights") / name
        with utils.atomic_path(target) as tmp:
            model.save_weights(tmp)
        size, digest = utils.file_digest(target)
        entry = {"file": f"weights/{name}", "count": count, "bytes": size, "sha256": digest, "metric": metric,
                 "callbacks": callbacks or {}, "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
        previous_best = state.get("best")
        state["checkpoints"] = [c for c in state.get("checkpoints", []) if c["count"] < count] + [entry]
        state["latest"] = entry
        state["best"] = _next_best(previous_best, entry, state["checkpoints"])
        entry["best_count"] = state["best"]["count"] if state["best"] else None  # what a resume from it restores
        self._prune(state)
        return entry

    def _prune(self, state):
        """Keep the newest KEEP_CHECKPOINTS checkpoints and the best, record that in state.json, then delete the
        weights files it no longer names (so a kill in between never leaves a record naming a deleted file)."""
        keep = state["checkpoints"][-constants.KEEP_CHECKPOINTS:]
        if state.get("best") and state["best"] not in keep:
            keep = [state["best"]] + keep
        state["checkpoints"] = sorted(keep, key=lambda c: c["count"])
        utils.write_json(self.folder / "state.json", state)
        named = {Path(entry["file"]).name for entry in state["checkpoints"]}
        for path in (self.folder / "weights").glob(f"{self.unit}-*.weights.h5"):
            if path.name not in named:
                path.unlink(missing_ok=True)

    def intact(self, entry):
        """Whether the checkpoint's file exists with the size and sha256 recorded when it was written."""
        path = self.folder / entry["file"]
        return path.is_file() and utils.file_digest(path) == (entry["bytes"], entry["sha256"])

    def newest_intact(self, state, before=None):
        """The newest intact checkpoint of `state` (older than count `before`), warning about damaged ones."""
        for entry in sorted(state.get("checkpoints", []), key=lambda c: -c["count"]):
            if before is not None and entry["count"] >= before:
                continue
            if self.intact(entry):
                return entry
            print(f"warning: the checkpoint {self.folder / entry['file']} is missing or damaged (its size or "
                  f"sha256 differs from the record); falling back to an older one", file=sys.stderr)
        return None

    def load_into(self, model, state, entry=None, fallback=True):
        """Load `entry` (default: the newest checkpoint) into `model`; return the entry loaded.

        A damaged or unreadable file falls back (unless `fallback` is False) to the next older intact one,
        with a warning naming both.
        """
        ordered = sorted(state.get("checkpoints", []), key=lambda c: -c["count"])
        if entry is None:
            candidates = ordered
        else:
            candidates = [entry] + ([c for c in ordered if c["count"] < entry["count"]] if fallback else [])
        damaged = []
        for candidate in candidates:
            path = self.folder / candidate["file"]
            try:
                if not self.intact(candidate):
                    raise utils.CorruptFile(f"{path} is missing, or its size or sha256 differs from the record")
                skipped = utils.read_checked(path, lambda p: _load_weights_reporting_skips(model, p), "a checkpoint")
            except utils.PipelineError as error:
                damaged.append((path, str(error)))
                continue
            if candidate["count"] == 0:  # saved before any step, by an earlier version before the optimizer was
                skipped = [s for s in skipped if "for optimizer" not in s]  # built: its state is none at that point
            if skipped:  # intact, but not this model's (or optimizer's) variables: every checkpoint of the run alike
                raise utils.PipelineError(
                    f"{path} does not fit the model and optimizer built now (Keras: {skipped[0]}): the settings it was "
                    f"trained with differ; restore them, or start the run again with `{command(self.mode)} --fresh`")
            for path_damaged, _ in damaged:
                print(f"warning: the checkpoint {path_damaged} is damaged; using {path} "
                      f"({self.unit} {candidate['count']}) instead", file=sys.stderr)
            return candidate
        if damaged:
            raise utils.CorruptFile(f"no intact checkpoint in {self.folder}: {damaged[0][1]}. Start the run again "
                                    f"with `{command(self.mode)} --fresh`")
        raise utils.PipelineError(f"the {self.mode} run has no checkpoint yet: train it with `{command(self.mode)}`")

    def chosen(self, state=None):
        """The checkpoint that later modes start from and that evaluation and inference use.

        Triplet runs: the best by the validation speakers' EER (step 0, the starting point, included), so the
        triplet stage never hands on embeddings worse than it received. Softmax runs: the latest, the end of
        the learning-rate schedule (picking among its epochs by validation EER chose worse epochs on the dev
        corpus: docs/results.md). Frozen runs do not change the embeddings: the latest.
        """
        state = state if state is not None else self.state()
        if state is None:
            return None
        best = state.get("best")
        if self.mode == "triplet" and best and best["metric"]["name"] in SELECTING_METRICS:
            if self.intact(best):
                return best
            print(f"warning: the best checkpoint {self.folder / best['file']} is missing or damaged; using the "
                  f"latest instead", file=sys.stderr)
        return state.get("latest")

    # ------------------------------------------------------------------------------------------------
    # History and settings
    # ------------------------------------------------------------------------------------------------
    def trim_history(self, count):
        """Drop the history rows after checkpoint `count` (and duplicates, partial lines), atomically.

        Keras' CSVLogger numbers epochs from 0, so epoch row e belongs to count e + 1; steps count from 1.
        """
        if not self.history.exists():
            return
        text = self.history.read_bytes().decode(errors="replace")
        lines = text.splitlines()
        if not lines:
            return
        ending = "\r\n" if "\r\n" in text else "\n"  # as the CSV writers end their rows: one kind per file
        header, kept, seen = lines[0], [], set()
        width = header.count(",")
        for line in lines[1:]:
            first = line.split(",", 1)[0]
            if line == header or line.count(",") != width or not first.isdigit() or first in seen:
                continue
            if int(first) + (1 if self.unit == "epoch" else 0) <= count:
                kept.append(line)
                seen.add(first)
        with utils.atomic_path(self.history) as tmp:
            tmp.write_bytes((ending.join([header] + kept) + ending if kept or count else "").encode())
        if not kept and not count:
            self.history.unlink(missing_ok=True)

    def archive(self):
        """Move the run folder to runs/archive/<mode>-<time>/ (for --fresh); return where it went, or None."""
        if not self.folder.exists() or not any(p.name != ".lock" for p in self.folder.iterdir()):
            return None
        target = utils.work_path("runs", "archive", f"{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}")
        target.mkdir(parents=True, exist_ok=False)
        for item in self.folder.iterdir():
            if item.name != ".lock":
                shutil.move(str(item), str(target / item.name))
        return target

    def write_settings(self, plan, ended=None):
        """settings.json: every resolved constant, recipe, overrides, code version, the number of devices
        (replicas) and the sessions' times."""
        record = self.settings()
        if record is None or record.get("run_id") != plan["run_id"]:  # a new run (an earlier one died unsaved)
            record = {"run_id": plan["run_id"], "mode": self.mode, "sessions": []}
        if ended is None:
            record.update({"constants": constants.resolved(), "recipe": constants.RECIPE,
                           "overrides": utils.json_value(constants.OVERRIDES), "code_version": utils.code_version(),
                           "started_from": plan["started_from"], "normalize_embeddings": plan["normalize_embeddings"],
                           "inputs": plan["inputs"]})
            record["replicas"] = plan.get("replicas", 1)  # devices it trains on (ml/distribution.py)
            record["sessions"].append({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "from": plan["start"],
                                       "until": plan["end"], "code_version": record["code_version"],
                                       "replicas": record["replicas"]})
        else:
            record["sessions"][-1].update({"ended": time.strftime("%Y-%m-%d %H:%M:%S"), "reached": ended})
        utils.ensure_writable_dir(self.folder)
        utils.write_json(self.folder / "settings.json", record)


def beats(metric, incumbent, ties=True):
    """Whether a checkpoint's validation `metric` makes it the best instead of the `incumbent`'s: better by
    more than the incumbent's "margin" (its figure's uncertainty), or without a margin better, or equal when
    `ties` (so the latest wins a tie)."""
    if incumbent is None or incumbent.get("value") is None:
        return True
    if metric is None or metric.get("value") is None:
        return False
    improvement = (metric["value"] - incumbent["value"]) * (1 if incumbent["higher_is_better"] else -1)
    margin = incumbent.get("margin") or 0.0
    return improvement > margin or (ties and margin == 0 and improvement == 0)


def rewind(state, entry):
    """Make `state` what it was when `entry` was saved, for a run going on from it (after a damaged newer one): the
    later checkpoints dropped, and the best the one `entry` recorded (derived from the kept ones only when it has no
    record or that checkpoint is gone)."""
    kept = [c for c in state.get("checkpoints", []) if c["count"] <= entry["count"]]
    recorded = [c for c in kept if c["count"] == entry.get("best_count")]
    state.update(checkpoints=kept, latest=entry, best=recorded[0] if recorded else _best(kept))


def _next_best(previous_best, entry, entries):
    """The best checkpoint once `entry` joins `entries`: the new one when it beats the best so far, else that one.

    The best is carried from save to save, never re-derived from the checkpoints still kept: with a margin, which
    one is best depends on every earlier one, and pruning removes some (walking only the kept ones, an older kept
    checkpoint would come first and the real best might no longer beat it). Only when the best so far is gone
    (a run resumed before it) is it derived again from the kept ones."""
    if previous_best is None or previous_best not in entries:
        return _best(entries)
    if entry.get("metric") and entry["metric"].get("value") is not None and \
            beats(entry["metric"], previous_best.get("metric")):
        return entry
    return previous_best


def _best(entries):
    """The best checkpoint by validation figure, taking them in order: a later one replaces the best so far
    only when beats() says so. None when none has a figure."""
    best = None
    for entry in sorted(entries, key=lambda e: e["count"]):
        if entry.get("metric") and entry["metric"].get("value") is not None and \
                beats(entry["metric"], best["metric"] if best else None):
            best = entry
    return best


# ----------------------------------------------------------------------------------------------------
# Planning a training command: what it starts from, and whether there is anything to do
# ----------------------------------------------------------------------------------------------------
def model_identity(classes, input_shape, normalization):
    """What a checkpoint must match to be loaded: architecture, sizes, input shape, normalisation, classes."""
    cosine = constants.SOFTMAX_HEAD == "cosine_margin"
    return {"architecture": constants.MODEL, "head": constants.SOFTMAX_HEAD, "embedding_size": constants.EMBEDDING_SIZE,
            "conv_filters": list(constants.CONV_FILTERS), "conv_kernel": constants.CONV_KERNEL,
            "input_shape": list(input_shape), "normalization": normalization, "classes": list(classes),
            "margin_scale": constants.MARGIN_SCALE if cosine else None,  # the cosine head's probabilities depend on it
            "pooling": constants.POOLING if constants.MODEL == "conv" else None}


IDENTITY_SETTINGS = {"architecture": "MODEL", "head": "SOFTMAX_HEAD", "margin_scale": "MARGIN_SCALE", "pooling": "POOLING",
                     "embedding_size": "EMBEDDING_SIZE", "conv_filters": "CONV_FILTERS", "conv_kernel": "CONV_KERNEL",
                     "input_shape": "FRAMES_PER_WINDOW or NUM_MFCC", "normalization": "NORMALIZATION",
                     "classes": "the inputs' speakers"}


def check_compatible(stored, identity, path):
    """PipelineError naming the difference when a checkpoint was trained for another model or classes."""
    # checkpoints from before SOFTMAX_HEAD and POOLING existed: the dense head, the conv model's mean and max
    stored = {"head": "dense", "margin_scale": None,
              "pooling": "mean_max" if stored.get("architecture") == "conv" else None, **stored}
    different = [key for key in identity if stored.get(key) != identity[key]]
    if not different:
        return
    shown = "; ".join(f"{key} ({IDENTITY_SETTINGS.get(key, key)}): checkpoint {_short(stored.get(key))}, now "
                      f"{_short(identity[key])}" for key in different)
    raise utils.PipelineError(f"the checkpoint {path} does not fit this model ({shown}). Restore the setting it "
                              f"was trained with, train a new run with --fresh, or use another DEEP_SPEAKER_WORKDIR "
                              f"to keep both")


def _short(value):
    """A value for a message: long lists (of classes) are shortened."""
    if isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(map(str, value[:3]))}, ... {len(value)} in all]"
    return value


def checkpoint_reference(mode, state, entry):
    """How a later mode names the checkpoint it started from (compared on every re-run)."""
    return {"mode": mode, "run_id": state["run_id"], "count": entry["count"], "sha256": entry["sha256"],
            "file": entry["file"]}


def plan_training(mode, inputs_record, identity, end, fresh=False, normalize_embeddings=False):
    """What a training command will do, decided before TensorFlow is loaded.

    Returns a dict: run_id, start (the count it continues from), end, started_from (a checkpoint
    reference, or None for new weights), source ("own" / a predecessor mode / None), nothing_to_do (a
    message, or None), state (the state record to continue), normalize_embeddings and inputs. Refuses,
    in one line with the command that fixes it: settings changed since the run started, inputs rebuilt,
    the earlier mode's checkpoint changed, or a --normalize_embeddings that differs from the run's.
    """
    run = RunFolder(mode)
    plan = {"mode": mode, "end": end, "fresh": fresh, "normalize_embeddings": normalize_embeddings,
            "inputs": inputs_record, "identity": identity, "nothing_to_do": None}
    state = None if fresh else run.state()
    again = command(mode, normalize_embeddings)
    if state is not None:
        _check_resumable(run, state, inputs_record, identity, normalize_embeddings, again)
        entry = run.newest_intact(state)
        if entry is not None:
            plan.update(run_id=state["run_id"], start=entry["count"], started_from=state.get("started_from"),
                        source="own", state=state, entry=entry)
            if entry != state.get("latest"):
                print(f"warning: {run} continues from {entry['file']}, the newest intact checkpoint", file=sys.stderr)
            finished = state.get("finished")
            if entry["count"] >= end or (finished and entry == state.get("latest") and finished["target"] >= end):
                why = f" ({finished['reason']})" if finished and entry["count"] < end else ""
                longer = f"--{run.unit}s N with N > {entry['count']}"
                if mode == "softmax" and constants.SOFTMAX_LR_SCHEDULE == "warmup_cosine":
                    longer = ("a longer warmup_cosine schedule, which is a new run (DEEP_SPEAKER_SOFTMAX_SCHEDULE_EPOCHS"
                              "=N and --fresh)")
                plan["nothing_to_do"] = (f"{mode}: the run is complete at {run.unit} {entry['count']}{why}; nothing "
                                         f"to train. A longer run: {longer}; a new one: --fresh")
            else:  # it trains on: its validation figures measured as before
                recorded = run.settings().get("constants", {})
                utils.refuse_changed_settings({k: v for k, v in recorded.items() if k in VALIDATION_SETTINGS},
                                              f"the {run.mode} run in {run.folder} (its validation figures)",
                                              f"continuing it would mix two measures in its history; start a new "
                                              f"run with `{again} --fresh`")
            _check_predecessor_unchanged(mode, state, again)
            return plan
        print(f"warning: {run} has no intact checkpoint; it starts again", file=sys.stderr)
    plan.update(run_id=secrets.token_hex(4), start=0, state=None, entry=None, started_from=None, source=None)
    for source in PREDECESSORS[mode]:
        previous = RunFolder(source)
        holder = utils.lock_holder(previous.folder)
        if holder is not None:
            raise utils.PipelineError(f"the {source} run that {mode} training starts from is being written by "
                                      f"{holder}; wait for it to finish")
        previous_state = previous.state()
        chosen = previous.chosen(previous_state)
        if chosen is None:
            continue
        _check_inputs(previous_state, inputs_record, f"the {source} run's checkpoints", command(source) + " --fresh")
        check_compatible(previous_state["model"], identity, previous.folder / chosen["file"])
        if mode == "frozen" and previous_state.get("normalize_embeddings", False) != normalize_embeddings:
            flag = previous_state.get("normalize_embeddings", False)
            raise utils.PipelineError(
                f"the {source} run it starts from was trained {'with' if flag else 'without'} "
                f"--normalize_embeddings, and frozen re-training must use its embeddings as they are: run "
                f"`{command(mode, flag)}`")
        plan.update(started_from=checkpoint_reference(source, previous_state, chosen), source=source,
                    source_state=previous_state, source_entry=chosen)
        break
    if PREDECESSORS[mode] and plan["source"] is None:
        print(f"warning: no {' or '.join(PREDECESSORS[mode])} checkpoint to start from: the {mode} run starts from "
              f"new weights (train `{command(PREDECESSORS[mode][-1])}` first to start from pre-trained ones)",
              file=sys.stderr)
    return plan


# Settings that change what training does, with the value that gives what a run did before the setting existed: a
# run whose record predates one continues only under that value (a missing record is not a licence to change it).
# Those that shape the model (SOFTMAX_HEAD, POOLING) are checked with the model's identity (check_compatible).
SETTINGS_BEFORE_THEY_EXISTED = {"TRIPLET_SELECTION": "original", "TRIPLET_SOFTMAX_WEIGHT": 0.0,
                                "CHANNEL_AUGMENTATION_DB": 0.0}


def _check_resumable(run, state, inputs_record, identity, normalize_embeddings, again):
    """Refuse to continue a run under other settings, other inputs, another model or another normalisation flag.
    The triplet stage's settings (TRIPLET_*) do not change a softmax or frozen run: free there."""
    settings = run.settings()
    if settings is None or settings.get("run_id") != state.get("run_id"):  # a missing record licenses nothing
        raise utils.PipelineError(f"the {run.mode} run in {run.folder} has no record of the settings it was trained "
                                  f"with (settings.json is missing, or of another run): start a new run with "
                                  f"`{again} --fresh`")
    recorded = {**SETTINGS_BEFORE_THEY_EXISTED, **settings.get("constants", {})}
    free = FREE_SETTINGS | VALIDATION_SETTINGS | (set() if run.mode == "triplet" else
                                                  {k for k in recorded if k.startswith("TRIPLET_")})
    utils.refuse_changed_settings({k: v for k, v in recorded.items() if k not in free},
                                  f"the {run.mode} run in {run.folder}", f"start a new run with `{again} --fresh`")
    _check_inputs(state, inputs_record, f"the {run.mode} run in {run.folder}", f"{again} --fresh")
    check_compatible(state["model"], identity, run.folder)
    if state.get("normalize_embeddings", False) != normalize_embeddings:
        flag = state.get("normalize_embeddings", False)
        raise utils.PipelineError(f"the {run.mode} run was started {'with' if flag else 'without'} "
                                  f"--normalize_embeddings; continue it with `{command(run.mode, flag)}`, or start "
                                  f"a new one with `{again} --fresh`")


def _check_inputs(state, inputs_record, what, fix, after=""):
    """Refuse when `state` was trained on other inputs than the current ones, naming a setting that differs; the
    message names `fix` (a command), then `after`."""
    from ml.inputs import EARLIER_RECORD, RESTORE, earlier_record_changed, same_inputs
    if same_inputs(state.get("inputs"), inputs_record):
        return
    if earlier_record_changed(state.get("inputs"), inputs_record):
        raise utils.PipelineError(f"{what} may have been trained on other inputs than those in "
                                  f"{utils.work_path('inputs')} ({EARLIER_RECORD}): retrain with `{fix}`{after}, or "
                                  f"{RESTORE}")
    then = (state.get("inputs") or {}).get("settings", {})
    now = (inputs_record or {}).get("settings", {})
    changed = sorted(name for name in set(then) | set(now) if then.get(name) != now.get(name))
    if changed:
        also = f" (also {', '.join(changed[1:])})" if changed[1:] else ""
        why = (f"built with {changed[0]}={utils.shown_value(then.get(changed[0]))}, the inputs now hold "
               f"{changed[0]}={utils.shown_value(now.get(changed[0]))}{also}")
    else:
        why = f"the same settings, but {_what_else_differs(state.get('inputs') or {}, inputs_record or {})}"
    raise utils.PipelineError(f"{what} was trained on other inputs than those in {utils.work_path('inputs')} "
                              f"({why}): retrain with `{fix}`{after}, or rebuild the inputs it was trained on")


def _what_else_differs(then, now):
    """What differs between two inputs records of the same settings, in words (for _check_inputs)."""
    if then.get("cache") != now.get("cache"):
        return "from another corpus path"
    if any(then.get(k) != now.get(k) for k in ("train_speakers", "validation_speakers", "unseen_speakers")):
        return "from other speakers"
    if then.get("utterances_digest") == now.get("utterances_digest"):
        return ("from the same utterances, whose audio files differ: one was replaced, or its size or modification "
                "time changed (a copy without -p or a `touch` is enough)")
    return "from other utterances (files added, removed, or no longer usable)"


def _check_predecessor_unchanged(mode, state, again, other=""):
    """Refuse to continue (or use) a run whose starting checkpoint (of the mode before) has changed since;
    `other` names a way out besides `again`."""
    reference = state.get("started_from")
    if not reference:
        return
    previous = RunFolder(reference["mode"])
    previous_state = previous.state()
    now = previous.chosen(previous_state)
    if now is not None and previous_state["run_id"] == reference["run_id"] and now["sha256"] == reference["sha256"]:
        return
    where = (f"{previous.unit} {now['count']} of run {previous_state['run_id']}" if now is not None else "no checkpoint")
    raise utils.PipelineError(
        f"the {mode} run started from {reference['file']} ({previous.unit} {reference['count']} of the "
        f"{reference['mode']} run {reference['run_id']}), which has changed since (now {where}); start it again "
        f"from the current one with `{again} --fresh`{other}")


def identity_from_record(record):
    """The model identity of the inputs described by an inputs.json record (classes, input shape, normalisation)."""
    return model_identity(record["classes"], record["input_shape"], record["built_from"]["settings"]["NORMALIZATION"])


def softmax_end(epochs=None, freeze=False):
    """The epoch a softmax run trains until: --epochs N in all, else the schedule's end or SOFTMAX_MAX_EPOCHS.

    The warm-up/cosine schedule (softmax pre-training) ends with epoch SOFTMAX_SCHEDULE_EPOCHS: a larger N
    stops there, with a note. Frozen re-training keeps the original's plateau schedule.
    """
    if not freeze and constants.SOFTMAX_LR_SCHEDULE == "warmup_cosine":
        last = constants.SOFTMAX_SCHEDULE_EPOCHS
        if epochs and epochs > last:
            print(f"softmax: the warmup_cosine learning rate ends with epoch {last} (SOFTMAX_SCHEDULE_EPOCHS); the "
                  f"run stops there (a longer schedule needs DEEP_SPEAKER_SOFTMAX_SCHEDULE_EPOCHS and a new run)")
        return min(epochs or last, last)
    return epochs or constants.SOFTMAX_MAX_EPOCHS


def triplet_end(steps=None):
    """The step a triplet run trains until: --steps N in all, else TRIPLET_MAX_STEPS."""
    return steps or constants.TRIPLET_MAX_STEPS


def prepare(mode, built_from, identity, end, fresh=False, normalize_embeddings=False):
    """Plan a training command (the caller holds the run's lock); --fresh first moves the old run aside.

    `built_from` is what built the inputs (inputs.json), `identity` the model they need (model_identity).
    """
    run = RunFolder(mode)
    plan = plan_training(mode, built_from, identity, end, fresh, normalize_embeddings)  # refuses before anything moves
    if fresh:
        archived = run.archive()
        if archived is not None:
            print(f"{mode}: --fresh: the previous run is kept in {archived}; a new run starts")
    if run.folder.exists():
        utils.remove_stale_temporaries(run.folder)  # left by a killed writer; we hold the lock
    return plan


def start_state(plan):
    """The state record of a run that starts now (or continues `plan`'s)."""
    if plan.get("state") is not None:
        return plan["state"]
    return {"run_id": plan["run_id"], "mode": plan["mode"], "unit": UNITS[plan["mode"]], "checkpoints": [],
            "latest": None, "best": None, "model": plan["identity"], "inputs": plan["inputs"],
            "normalize_embeddings": plan["normalize_embeddings"], "started_from": plan["started_from"]}


# ----------------------------------------------------------------------------------------------------
# The run that evaluation and inference use
# ----------------------------------------------------------------------------------------------------
def default_run():
    """The last mode of the chain (frozen, else triplet, else softmax) that has a checkpoint."""
    for mode in reversed(CHAIN):
        if RunFolder(mode).chosen() is not None:
            return mode
    raise utils.PipelineError(f"no trained model in {utils.work_path('runs')}: run `{command('softmax')}` first")


def resolve_checkpoint(run=None, checkpoint=None):
    """(mode, state, entry) of `checkpoint` (a weights file of `run`) or the run's chosen checkpoint."""
    run = run or default_run()
    folder = RunFolder(run)
    state = folder.state()
    if state is None or folder.chosen(state) is None:
        raise utils.PipelineError(f"the {run} run has no checkpoint yet: train it with `{command(run)}`")
    # a run trained on from a checkpoint that has since been replaced is not the chain's result any more
    earlier = [m for m in CHAIN if m != run]
    _check_predecessor_unchanged(run, state, command(run, state.get("normalize_embeddings", False)),
                                 f", or use another run with --run ({' or '.join(earlier)})")
    if checkpoint is None:
        chosen = folder.chosen(state)
        if folder.intact(chosen):
            return run, state, chosen
        fallback = folder.newest_intact(state, before=chosen["count"])
        if fallback is None:
            raise utils.CorruptFile(f"{folder.folder / chosen['file']} is missing or damaged and the {run} run has "
                                    f"no older intact checkpoint: train it again with `{command(run)} --fresh`")
        print(f"warning: {folder.folder / chosen['file']} is missing or damaged (its size or sha256 differs from "
              f"the record); using {fallback['file']} instead", file=sys.stderr)
        return run, state, fallback
    path = Path(checkpoint).resolve()
    for entry in state["checkpoints"] + ([state["best"]] if state.get("best") else []):
        if (folder.folder / entry["file"]).resolve() == path:
            return run, state, entry
    kept = ", ".join(e["file"] for e in state["checkpoints"])
    raise utils.PipelineError(f"{checkpoint} is not a checkpoint of the {run} run (it keeps {kept}); choose one of "
                              f"those, or another --run")


def runs_left_behind(replaced, built_from):
    """The modes whose run was trained on the inputs `replaced` describes (an inputs record) and not on those of
    `built_from`, which stage 0 is about to build in their place: they will be refused from then on."""
    from ml.inputs import same_inputs
    left = []
    for mode in CHAIN:
        try:
            state = RunFolder(mode).state()
        except utils.PipelineError:  # a damaged record is reported where the run is used
            continue
        if state is not None and same_inputs(state.get("inputs"), replaced) and \
                not same_inputs(state.get("inputs"), built_from):
            left.append(mode)
    return left


def check_trained_on(mode, state, record):
    """PipelineError unless the run was trained on the inputs of `record` (inputs.json, as checked_record reads it)."""
    _check_inputs(state, record["built_from"], f"the {mode} run", f"{command(mode)} --fresh", " (and the modes after it)")


def existing_evaluation(path, mode, state, entry, settings, again, used_by, keys=(), unseen=None, audio=None):
    """The evaluation record at `path` when it is of this checkpoint and these `settings` (announced: it is
    shown again, not computed anew); None when there is none, or it is of another checkpoint. One of this
    checkpoint with other settings is refused: its threshold is what `used_by` uses, never replaced unasked
    (`again` is the command that replaces it).

    `unseen` is the current inputs' "unseen_sources_digest", which the report records as "unseen_sources_digest": a
    report of unseen speakers' audio that has changed since is refused the same way. A run is not refused for that
    change (ml/inputs.py, same_inputs), so this is where it is noticed. Reports without the record (earlier
    versions) are taken as they are: the runs of those versions were refused after any change of audio.

    `audio` is the digest of every corpus file now (inputs.checked_corpus), which the reports of stages 2 and
    4 record as "corpus_audio_digest" (stage 2 reads the unseen utterances from the corpus and cache, stage 4 makes its
    conversations of the corpus's audio): a report of other audio, a file removed since or one the inputs leave out,
    is refused the same way (reports without the record are taken as they are)."""
    keys = {"checkpoint": dict, "settings": dict, "created": str,
            **(keys if isinstance(keys, dict) else dict.fromkeys(keys, object))}
    report = utils.read_json(path, what="an evaluation report", fix=f"Compute it again with `{again}`", keys=keys)
    if report is None or report.get("checkpoint") != checkpoint_reference(mode, state, entry):
        return None
    changed = [n for n in settings if report["settings"].get(n) != settings[n]]  # what it records besides: no matter
    if changed:
        raise utils.PipelineError(f"{path} holds an evaluation of this checkpoint with other settings "
                                  f"({', '.join(changed)}); its threshold is the one {used_by} uses. Replace it "
                                  f"with `{again}`, or restore the settings")
    if unseen is not None and report.get("unseen_sources_digest", unseen) != unseen:
        raise utils.PipelineError(f"{path} holds an evaluation of this checkpoint on unseen speakers' audio that has "
                                  f"changed since (stage 0 rebuilt the inputs for it): its figures are of the old "
                                  f"audio. Replace it with `{again}`")
    if audio is not None and report.get("corpus_audio_digest", audio) != audio:
        raise utils.PipelineError(f"{path} holds an evaluation of this checkpoint made of corpus audio that has "
                                  f"changed since (a file added, removed or replaced, some of which the inputs leave "
                                  f"out): its figures are of the old audio. Replace it with `{again}`")
    print(f"model: {describe(mode, state, entry)}\nalready evaluated with these settings ({report['created']}); "
          f"shown again (--force computes it anew)")
    return report


def evaluation_folder(mode, entry):
    """Where the evaluation of one checkpoint is stored: runs/<mode>/evaluation/<checkpoint name>/."""
    return RunFolder(mode).folder / "evaluation" / Path(entry["file"]).name.removesuffix(".weights.h5")


def describe(mode, state, entry):
    """"runs/softmax/weights/epoch-000003.weights.h5 (softmax epoch 3, run 1a2b3c4d)"."""
    return f"{RunFolder(mode).folder / entry['file']} ({mode} {UNITS[mode]} {entry['count']}, run {state['run_id']})"
