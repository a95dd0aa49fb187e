"""Which feature normalisation lets a model tell the training speakers apart best?

For each NORMALIZATION method, the inputs are rebuilt in memory from the feature cache (script 0 must
have cached the corpus), a fresh model is trained with softmax for --epochs, and the per-window and
per-utterance accuracy on the test utterances of the training speakers is printed. "per_speaker" is
the original's and scales each test window with its true speaker's statistics: its figures are
closed-set ones with the label leaking in, marked as such. The study compares normalisations on the
original's inputs: no speed copies (SPEED_PERTURBATION is set to empty) and no level augmentation.

    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto python bench/normalization_study.py
"""
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

import constants  # noqa: E402
import utils  # noqa: E402
from audio.cache import FeatureCache  # noqa: E402
from bench import common  # noqa: E402
from audio.corpus import find_corpus, split_speakers  # noqa: E402
from ml import evaluation  # noqa: E402
from ml.batches import WindowBatches  # noqa: E402
from ml.inputs import build_inputs  # noqa: E402
from ml.model import build_model, compile_for  # noqa: E402

METHODS = constants.CHOICES["NORMALIZATION"]


def train_and_score(inputs, architecture, epochs):
    """Train a fresh softmax model; return (per-window, per-utterance) test accuracy and seconds per epoch."""
    keras.utils.set_random_seed(constants.SEED)
    model = build_model(len(inputs.classes), architecture)
    compile_for(model, "softmax", constants.LEARNING_RATE)
    start = time.perf_counter()
    model.fit(WindowBatches(inputs.train), epochs=epochs, verbose=0)
    seconds = (time.perf_counter() - start) / epochs
    probabilities = evaluation.predict_in_batches(model, inputs.test, "softmax")
    return (*evaluation.classification_accuracy(probabilities, inputs.test.labels, inputs.test.utterances),
            seconds)


@click.command()
@click.option("--models", default="dense", show_default=True, help="Comma-separated: dense, conv.")
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Normalisations to compare.")
@click.option("--epochs", default=15, show_default=True)
@click.option("--segments", default=300, show_default=True, help="MAX_COUNT_PER_CLASS for this study.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON results (default: work dir).")
@utils.friendly_errors
def main(models, methods, epochs, segments, out):
    """Train one model per normalisation and architecture; print a markdown table of test accuracies."""
    utils.print_overrides()
    corpus = find_corpus()
    train, unseen = split_speakers(corpus.speakers)
    cache = FeatureCache(corpus.root)
    constants.MAX_COUNT_PER_CLASS = segments
    constants.SPEED_PERTURBATION = []  # the original's inputs: the real speakers only
    rows = []
    for method in methods.split(","):
        constants.NORMALIZATION = method
        inputs = build_inputs(cache, corpus, train, unseen, progress=False)
        for architecture in models.split(","):
            window, utterance, seconds = train_and_score(inputs, architecture, epochs)
            rows.append({"model": architecture, "normalization": method, "epochs": epochs, "segments": segments,
                         "speakers": len(inputs.speakers), "train_windows": len(inputs.train),
                         "window_accuracy": window, "utterance_accuracy": utterance, "seconds_per_epoch": seconds})
            print(f"{architecture:5s} {method:24s} window {window:6.1%}  utterance {utterance:6.1%}  "
                  f"({seconds:.1f} s/epoch)", flush=True)
    print(f"\n{len(train)} training speakers, {segments} segments per class, {epochs} epochs, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| model | normalisation | test accuracy per window | per utterance |\n|---|---|---|---|")
    for row in rows:
        label = " (uses the speaker's identity)" if row["normalization"] == "per_speaker" else ""
        print(f"| {row['model']} | {row['normalization']}{label} | {row['window_accuracy']:.1%} | "
              f"{row['utterance_accuracy']:.1%} |")
    out = common.write_results(out or utils.work_path("bench", "normalization_study.json"), rows)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
