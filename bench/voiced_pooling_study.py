"""Pool only the voiced windows of an utterance? Verification of a trained run's embeddings when an utterance's
embedding is the mean of its windows whose frames are mostly voiced, against the mean of all its windows.

A frame is voiced when its energy (c0) is within DB dB of the utterance's loud frames (the CHANGE_VAD_QUANTILE
quantile of its c0), a window when at least half of its frames are: the voice-activity rule of change detection
(ml/speaker_changes.py) applied per utterance. An utterance with no voiced window keeps all of them. The
validation speakers choose; the unseen speakers are reported beside.

    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto DEEP_SPEAKER_WORKDIR=<work dir> \\
        python bench/voiced_pooling_study.py --run softmax
"""
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402

utils.import_tensorflow_quietly()

import constants  # noqa: E402
from audio import features  # noqa: E402
from bench import common  # noqa: E402
from ml import embeddings, evaluation, speaker_changes  # noqa: E402

THRESHOLDS_DB = (None, 40.0, 30.0, 20.0)  # None: every window (what stage 2 does)


def voiced_windows(frames, db):
    """Per window of `frames` (raw, c0 = log energy), whether at least half its frames are within `db` of the loud
    ones: change detection's rule (ml/speaker_changes.py)."""
    starts = features.window_starts(len(frames))
    return speaker_changes.window_voicing(speaker_changes.voiced_frames(frames, db), starts)


@click.command()
@click.option("--run", default="softmax", show_default=True, help="The run whose chosen checkpoint is studied.")
def main(run):
    _, trained, cache, speaker_of, _, groups = common.study_setup(run)
    print(f"{trained.description}; {len(groups['validation'])} validation and {len(groups['unseen'])} unseen utterances")
    results = {}
    for group, keys in groups.items():
        raw = [cache.load(k) for k in keys]
        windows = embeddings.embed_windows(trained.model, [embeddings.normalized_frames(f, trained.norm, speaker_of[k])
                                                           for f, k in zip(raw, keys)])
        speakers = [speaker_of[k] for k in keys]
        first, second, is_target = evaluation.trial_pairs(speakers, np.random.default_rng(constants.SEED))
        for db in THRESHOLDS_DB:
            pooled, kept = [], []
            for frames, vectors in zip(raw, windows):
                mask = np.ones(len(vectors), bool) if db is None else voiced_windows(frames, db)
                mask = mask if mask.any() else np.ones(len(vectors), bool)
                kept.append(mask.mean())
                pooled.append(embeddings.pool(vectors[mask]))
            scores = evaluation.pair_scores(np.stack(pooled), first, second)
            results[(group, db)] = (evaluation.equal_error_rate(scores, is_target)[0],
                                    evaluation.min_dcf(scores, is_target), float(np.mean(kept)))
    print("| windows pooled | validation EER / minDCF (windows kept) | unseen EER / minDCF (windows kept) |")
    print("|---|---|---|")
    for db in THRESHOLDS_DB:
        cells = [f"{results[(g, db)][0]:.2%} / {results[(g, db)][1]:.3f} ({results[(g, db)][2]:.0%})"
                 if (g, db) in results else "-" for g in ("validation", "unseen")]
        print(f"| {'all' if db is None else f'voiced, within {db:g} dB'} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
