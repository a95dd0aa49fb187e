"""Stage 1: train the speaker model, in three commands run in this order (as the original did):

    python ml/1_train_triplet_softmax_model.py --loss_on_softmax                              # pre-training
    python ml/1_train_triplet_softmax_model.py --loss_on_embeddings --normalize_embeddings    # triplet loss
    python ml/1_train_triplet_softmax_model.py --loss_on_softmax --freeze_embedding_weights   # accuracy check

Reads  <workdir>/inputs/ (from ml/0_generate_inputs.py) and the latest checkpoints of earlier modes.
Writes <workdir>/runs/{softmax,triplet,frozen}/: weights/*.weights.h5, history.csv, settings.json, state.json
Each command continues from its own latest checkpoint; --fresh starts from new weights.
"""
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import utils  # noqa: E402
from ml import training  # noqa: E402
from ml.inputs import load_inputs  # noqa: E402


@click.command()
@click.option("--loss_on_softmax", is_flag=True, help="Train the softmax classifier (cross-entropy).")
@click.option("--loss_on_embeddings", is_flag=True, help="Train the embeddings with the cosine triplet loss.")
@click.option("--freeze_embedding_weights", is_flag=True,
              help="With --loss_on_softmax: freeze everything below the softmax head and re-train the head.")
@click.option("--normalize_embeddings", is_flag=True, help="L2-normalise the embeddings.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Softmax modes: epochs to train this time [default: up to SOFTMAX_MAX_EPOCHS in all].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Triplet mode: steps to train this time [default: up to TRIPLET_MAX_STEPS in all].")
@click.option("--fresh", is_flag=True, help="Ignore existing checkpoints and start from new weights.")
@utils.friendly_errors
def main(loss_on_softmax, loss_on_embeddings, freeze_embedding_weights, normalize_embeddings, epochs, steps, fresh):
    """Train with the chosen loss, continuing from the latest checkpoint."""
    if loss_on_softmax == loss_on_embeddings:
        raise click.UsageError("choose exactly one loss: --loss_on_softmax (softmax pre-training, or with "
                               "--freeze_embedding_weights the frozen re-training) or --loss_on_embeddings (triplet)")
    if loss_on_embeddings and (freeze_embedding_weights or epochs):
        raise click.UsageError("--loss_on_embeddings trains the embeddings: it takes --steps, not "
                               "--freeze_embedding_weights or --epochs")
    if loss_on_softmax and steps:
        raise click.UsageError("--loss_on_softmax trains for --epochs, not --steps")
    utils.print_overrides()
    inputs = load_inputs()
    print(f"inputs: {len(inputs.speakers)} speakers, {len(inputs.classes)} classes, {len(inputs.train):,} train / "
          f"{len(inputs.test):,} test windows, normalisation {inputs.norm['method']}")
    if loss_on_embeddings:
        training.train_triplet(inputs, steps=steps, fresh=fresh, normalize_embeddings=normalize_embeddings)
    else:
        training.train_softmax(inputs, epochs=epochs, fresh=fresh, freeze=freeze_embedding_weights,
                               normalize_embeddings=normalize_embeddings)


if __name__ == "__main__":
    main()
