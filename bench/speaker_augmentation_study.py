"""Does playing the training utterances at other speeds help, as new speakers or as the same ones?

Speed perturbation resamples a recording to SAMPLE_RATE / f and plays it back at SAMPLE_RATE: it is f
times faster, and its pitch and formants are f times higher, so it sounds like another speaker. Each arm
trains a fresh softmax model (the level augmentation on, as in the pipeline) on every window (hop
WINDOW_HOP_FRAMES) of the training speakers' training utterances:
  none            the utterances as they are (80 classes on the dev corpus)
  new_speakers    plus a copy at each --speeds factor, each speed of each speaker a class of its own
  same_speakers   plus the same copies, labelled as their speaker
Every --eval-every steps it prints the closed-set accuracy on the test utterances of the real training
speakers (scored over their classes only) and the unseen speakers' EER and minDCF (ml/2's figures). This
study measured whether the pipeline should use speed copies, before it did (SPEED_PERTURBATION); it makes
its own copies in memory and uses only the real utterances of the inputs. Script 0 must have run.

    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto python bench/speaker_augmentation_study.py
"""
import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
from tqdm import tqdm  # noqa: E402

import constants  # noqa: E402
import utils  # noqa: E402
from audio import features  # noqa: E402
from audio.cache import FeatureCache  # noqa: E402
from bench import common  # noqa: E402
from audio.corpus import find_corpus, split_speakers  # noqa: E402
from ml import embeddings as emb, evaluation  # noqa: E402
from ml.augmentation import shift_stds, random_shifts  # noqa: E402
from ml.inputs import load_inputs  # noqa: E402
from ml.model import build_model, compile_for  # noqa: E402

ARMS = ("none", "new_speakers", "same_speakers")


def training_frames(inputs, corpus, cache, arm, speeds):
    """(list of normalised frame arrays, class of each): the training utterances and, by arm, speed copies."""
    keys = set(inputs.train.utterance_keys.tolist())
    frame_list, classes = [], []
    utterances = [u for s in inputs.speakers for u in corpus.utterances[s] if u.key in keys]
    for utterance in tqdm(utterances, desc=f"{arm}: features", unit="utt", leave=False):
        label = inputs.speakers.index(utterance.speaker)
        frame_list.append(emb.normalized_frames(cache.load(utterance.key), inputs.norm, utterance.speaker))
        classes.append(label)
        if arm == "none":
            continue
        signal = features.load_audio(utterance.path)
        for copy, factor in enumerate(speeds, start=1):
            try:
                frames = features.signal_features(features.at_speed(signal, factor))
            except features.UnusableAudio:
                continue
            frame_list.append(emb.normalized_frames(frames, inputs.norm, utterance.speaker))
            classes.append(label + copy * len(inputs.speakers) if arm == "new_speakers" else label)
    return frame_list, classes


def run_arm(arm, speeds, steps, eval_every, inputs, corpus, cache, unseen):
    """Train one arm; a list of rows, one per evaluation."""
    frame_list, classes = training_frames(inputs, corpus, cache, arm, speeds)
    offsets = np.cumsum([0] + [len(f) for f in frame_list[:-1]])
    frames = np.concatenate(frame_list)
    per_utterance = [features.window_starts(len(f)) for f in frame_list]
    starts = np.concatenate([o + s for o, s in zip(offsets, per_utterance)])
    labels = np.concatenate([np.full(len(s), c) for s, c in zip(per_utterance, classes)])
    real = len(inputs.speakers)
    num_classes = real * (1 + len(speeds)) if arm == "new_speakers" else real
    print(f"{arm}: {len(frame_list)} utterances, {len(starts):,} windows, {num_classes} classes", flush=True)
    rng = np.random.default_rng(constants.SEED)
    keras.utils.set_random_seed(constants.SEED)
    model = build_model(num_classes)
    compile_for(model, "softmax", constants.LEARNING_RATE)
    shift = shift_stds(inputs.norm)
    order, rows, started = np.array([], dtype=int), [], time.perf_counter()
    for step in tqdm(range(1, steps + 1), desc=arm, unit="step", leave=False):
        if len(order) < constants.BATCH_SIZE:
            order = np.concatenate([order, rng.permutation(len(starts))])
        chosen, order = np.sort(order[:constants.BATCH_SIZE]), order[constants.BATCH_SIZE:]
        windows = random_shifts(features.gather_windows(frames, starts[chosen]), rng, shift)
        model.train_on_batch(windows, {"softmax": labels[chosen], "embeddings": np.zeros((len(chosen), 1), np.float32)})
        if step % eval_every == 0 or step == steps:
            probabilities = evaluation.predict_in_batches(model, inputs.test, "softmax")[:, :real]
            window, utterance = evaluation.classification_accuracy(probabilities, inputs.test.labels,
                                                                   inputs.test.utterances)
            report, _ = evaluation.unseen_speaker_report(model, cache, corpus, unseen, inputs.norm)
            rows.append({"arm": arm, "step": step, "classes": num_classes, "window_accuracy": window,
                         "utterance_accuracy": utterance, "eer": report["eer"], "min_dcf": report["min_dcf"],
                         "seconds": time.perf_counter() - started})
            tqdm.write(f"{arm:13s} step {step:6d}: window {window:6.1%}  utterance {utterance:6.1%}  "
                       f"EER {report['eer']:6.2%}  minDCF {report['min_dcf']:.3f}")
    return rows


@click.command()
@click.option("--arms", default="none,new_speakers", show_default=True, help=f"Comma-separated: {', '.join(ARMS)}.")
@click.option("--speeds", default="0.9,1.1", show_default=True, help="Speed factors of the copies.")
@click.option("--steps", default=8400, show_default=True, help="Batches of BATCH_SIZE windows per arm.")
@click.option("--eval-every", default=2100, show_default=True, help="Steps between evaluations.")
@click.option("--seed", type=int, default=None, help="Initialisation and batch order [default: SEED]; the inputs stay.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON results (default: work dir).")
@utils.friendly_errors
def main(arms, speeds, steps, eval_every, seed, out):
    """Train one softmax model per arm; print a markdown table of accuracies and unseen-speaker EER."""
    utils.print_overrides()
    arms = arms.split(",")
    if not set(arms) <= set(ARMS):
        raise click.BadParameter(f"arms must be among {', '.join(ARMS)}", param_hint="--arms")
    speeds = [float(s) for s in speeds.split(",")]
    corpus = find_corpus()
    _, unseen = split_speakers(corpus.speakers)
    cache = FeatureCache(corpus.root)
    inputs = load_inputs()
    constants.SEED = constants.SEED if seed is None else seed
    rows = [row for arm in arms for row in run_arm(arm, speeds, steps, eval_every, inputs, corpus, cache, unseen)]
    print(f"\n{len(inputs.speakers)} training speakers, speeds {speeds}, seed {constants.SEED}, normalisation "
          f"{inputs.norm['method']}, {time.strftime('%Y-%m-%d')}\n")
    print("| arm | classes | steps | test accuracy per window / utterance | unseen EER | minDCF |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['arm']} | {row['classes']} | {row['step']} | {row['window_accuracy']:.1%} / "
              f"{row['utterance_accuracy']:.1%} | {row['eer']:.2%} | {row['min_dcf']:.3f} |")
    out = common.write_results(out or utils.work_path("bench", f"speaker_augmentation_study-seed{constants.SEED}.json"),
                               rows, seed=constants.SEED, speeds=speeds, steps=steps, eval_every=eval_every)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
