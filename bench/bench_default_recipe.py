"""Benchmark: wall time of the default recipe's training on a corpus, stage by stage, with the README's commands.

In a fresh work dir (`--workdir`, default a temporary folder), one after the other, each timed by a wall clock
around its subprocess:
  0. python ml/0_generate_inputs.py                      (feature cache, speed copies, inputs)
  1. ... --loss_on_softmax                               (softmax pre-training, SOFTMAX_SCHEDULE_EPOCHS epochs)
  2. ... --loss_on_embeddings --normalize_embeddings     (triplet training, until early stopping)
  3. ... --loss_on_softmax --freeze_embedding_weights --normalize_embeddings --epochs N   (the accuracy check)
  4. python ml/2_evaluate_unseen_speakers.py             (the default run's evaluation)
Reported: each stage's seconds, training (1-3) and the whole in minutes, and stage 4's EER, beside the target
(training <= 20 minutes on 2 cores). Settings come from constants.py and the environment, as for the scripts.

Run from the repository root:
    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto python bench/bench_default_recipe.py
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import utils  # noqa: E402
from bench import common  # noqa: E402

TRAIN = "ml/1_train_triplet_softmax_model.py"
TARGET_MINUTES = 20


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A fresh work dir [default: a temporary folder, removed afterwards].")
@click.option("--frozen-epochs", default=1, show_default=True, help="Epochs of the frozen re-training.")
@click.option("--out", default="bench/results/default_recipe.json", show_default=True)
@utils.friendly_errors
def main(workdir, frozen_epochs, out):
    """Time the default recipe's stages on the corpus of VCTK_CORPUS_PATH."""
    with tempfile.TemporaryDirectory() as temporary:
        folder = workdir or Path(temporary) / "work"
        if folder.exists() and any(folder.iterdir()):
            raise utils.PipelineError(f"{folder} is not empty: the benchmark needs a fresh work dir")
        environment = {**os.environ, "DEEP_SPEAKER_WORKDIR": str(folder)}
        stages = [("inputs (stage 0)", ["ml/0_generate_inputs.py"]),
                  ("softmax", [TRAIN, "--loss_on_softmax"]),
                  ("triplet", [TRAIN, "--loss_on_embeddings", "--normalize_embeddings"]),
                  ("frozen", [TRAIN, "--loss_on_softmax", "--freeze_embedding_weights", "--normalize_embeddings",
                              "--epochs", str(frozen_epochs)]),
                  ("evaluation", ["ml/2_evaluate_unseen_speakers.py"])]
        record = {"machine": common.machine(), "repeats": 1, "code_version": utils.code_version(), "stages": {}}
        output = ""
        for name, command in stages:
            start = time.perf_counter()
            result = subprocess.run([sys.executable, *command], cwd=common.REPO, env=environment,
                                    capture_output=True, text=True)
            record["stages"][name] = time.perf_counter() - start
            print(f"{name}: {record['stages'][name]:.0f} s", flush=True)
            if result.returncode:
                raise utils.PipelineError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
            output = result.stdout
    training = sum(record["stages"][name] for name in ("softmax", "triplet", "frozen"))
    eer = re.search(r"EER = ([\d.]+)%", output)
    record.update({"training_s": training, "total_s": sum(record["stages"].values()),
                   "eer": float(eer.group(1)) / 100 if eer else None})
    rows = [(f"{name}", f"{seconds:.0f} s") for name, seconds in record["stages"].items()]
    rows += [("training (softmax + triplet + frozen)", f"**{training / 60:.1f} min** (target <= {TARGET_MINUTES} min)"),
             ("everything", f"{record['total_s'] / 60:.1f} min"),
             ("unseen-speaker EER of the default run", f"{record['eer']:.2%}" if eer else "not found")]
    common.publish(record, rows, out)


if __name__ == "__main__":
    main()
