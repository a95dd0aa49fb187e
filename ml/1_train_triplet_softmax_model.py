"""Stage 1: train the speaker model, in three commands run in this order (as the original did):

    python ml/1_train_triplet_softmax_model.py --loss_on_softmax                              # pre-training
    python ml/1_train_triplet_softmax_model.py --loss_on_embeddings --normalize_embeddings    # triplet loss
    python ml/1_train_triplet_softmax_model.py --loss_on_softmax --freeze_embedding_weights   # accuracy check

Reads  <workdir>/inputs/ (from ml/0_generate_inputs.py) and the latest checkpoints of earlier modes.
Writes <workdir>/runs/{softmax,triplet,frozen}/: weights/*.weights.h5, history.csv, settings.json, state.json
Each command continues its run from the newest intact checkpoint, until --epochs/--steps N in all; a finished
run trains nothing. --fresh moves the run to runs/archive/ and starts a new one. One command per run folder
at a time (a lock).
"""
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import utils  # noqa: E402
from ml import checkpoints  # noqa: E402
from ml.inputs import checked_record  # noqa: E402


@click.command()
@utils.workdir_option
@click.option("--loss_on_softmax", is_flag=True, help="Train the softmax classifier (cross-entropy).")
@click.option("--loss_on_embeddings", is_flag=True, help="Train the embeddings with the cosine triplet loss.")
@click.option("--freeze_embedding_weights", is_flag=True,
              help="With --loss_on_softmax: freeze everything below the softmax head and re-train the head.")
@click.option("--normalize_embeddings", is_flag=True, help="L2-normalise the embeddings.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Softmax modes: train until epoch N in all (a finished run trains nothing) [default: the end "
                   "of the learning-rate schedule, or SOFTMAX_MAX_EPOCHS].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Triplet mode: train until step N in all (a finished run trains nothing) [default: "
                   "TRIPLET_MAX_STEPS].")
@click.option("--fresh", is_flag=True, help="Start this mode's run anew, from the earlier mode's chosen checkpoint "
              "(softmax: from new weights); the old run moves to runs/archive/.")
@utils.friendly_errors
def main(loss_on_softmax, loss_on_embeddings, freeze_embedding_weights, normalize_embeddings, epochs, steps, fresh):
    """Train with the chosen loss, continuing the run from its latest checkpoint."""
    if loss_on_softmax == loss_on_embeddings:
        raise click.UsageError("choose exactly one loss: --loss_on_softmax (softmax pre-training, or with "
                               "--freeze_embedding_weights the frozen re-training) or --loss_on_embeddings (triplet)")
    if loss_on_embeddings and (freeze_embedding_weights or epochs):
        raise click.UsageError("--loss_on_embeddings trains the embeddings: it takes --steps, not "
                               "--freeze_embedding_weights or --epochs")
    if loss_on_softmax and steps:
        raise click.UsageError("--loss_on_softmax trains for --epochs, not --steps")
    utils.stop_cleanly_on_termination()
    utils.print_overrides()
    mode = "triplet" if loss_on_embeddings else "frozen" if freeze_embedding_weights else "softmax"
    end = checkpoints.triplet_end(steps) if loss_on_embeddings else checkpoints.softmax_end(epochs,
                                                                                         freeze_embedding_weights)
    record = checked_record()
    with checkpoints.RunFolder(mode).lock():
        plan = checkpoints.prepare(mode, record["built_from"], checkpoints.identity_from_record(record), end, fresh,
                                   normalize_embeddings)
        if plan["nothing_to_do"]:  # said before TensorFlow is loaded: a finished run answers in a second
            print(plan["nothing_to_do"])
            if loss_on_embeddings or checkpoints.RunFolder(mode).result()[1]:
                return
        utils.import_tensorflow_quietly()
        from ml import training
        from ml.inputs import load_inputs
        inputs = load_inputs(expected=record)  # not inputs stage 0 rebuilt since the check
        if plan["nothing_to_do"]:  # killed after its last checkpoint, before its accuracies were recorded
            training.final_accuracy(inputs, checkpoints.RunFolder(mode), normalize_embeddings)
            return
        print(f"inputs: {len(inputs.speakers)} speakers, {len(inputs.classes)} classes, {len(inputs.train):,} train / "
              f"{len(inputs.test):,} test windows, normalisation {inputs.norm['method']}")
        if loss_on_embeddings:
            training.train_triplet(inputs, normalize_embeddings=normalize_embeddings, plan=plan)
        else:
            training.train_softmax(inputs, freeze=freeze_embedding_weights, normalize_embeddings=normalize_embeddings,
                                   plan=plan)


if __name__ == "__main__":
    main()
