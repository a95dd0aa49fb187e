"""Back-end variants of a trained run's embeddings: which utterance embedding and score normalisation verify best?

For the validation speakers (they choose) and the unseen speakers (reported beside, never choosing), the EER and
minDCF of verification trials built as stage 2 builds them, with:
- the embedding: "fc1" (the model's embeddings, what stage 2 and 3 use) or "pool" (the 192 pooled conv features
  below fc1), each an utterance's mean of unit-length window embeddings, at unit length;
- the scores: plain cosine; adaptive S-norm with a cohort of 1,000 training utterances (the train split, as stage 2
  does) or of the training speakers' test-split utterances (never trained on), top 50 or 200; and centring on the
  cohort's mean before the cosine.

    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto DEEP_SPEAKER_WORKDIR=<work dir> \\
        python bench/backend_study.py --run softmax
"""
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402

utils.import_tensorflow_quietly()
import keras  # noqa: E402

import constants  # noqa: E402
from bench import common  # noqa: E402
from ml import embeddings, evaluation  # noqa: E402

COHORT_UTTERANCES = 1000
TOP_K = (50, 200)


def figures(vectors, speakers, cohorts):
    """{variant: (EER, minDCF)} of the trials of `vectors` (one per utterance, unit length) under each back-end."""
    first, second, is_target = evaluation.trial_pairs(speakers, np.random.default_rng(constants.SEED))
    scores = evaluation.pair_scores(vectors, first, second)
    out = {"cosine": scores}
    for name, cohort in cohorts.items():
        for top_k in TOP_K:
            statistics = evaluation.as_norm_statistics(vectors, cohort, top_k)
            out[f"AS-norm, {name} cohort, top {top_k}"] = evaluation.as_norm(scores, first, second, statistics)
        centred = embeddings.unit_length(vectors - cohort.mean(axis=0))
        out[f"centred on the {name} cohort"] = evaluation.pair_scores(centred, first, second)
    return {k: (evaluation.equal_error_rate(s, is_target)[0], evaluation.min_dcf(s, is_target)) for k, s in out.items()}


@click.command()
@click.option("--run", default="softmax", show_default=True, help="The run whose chosen checkpoint is studied.")
def main(run):
    inputs, trained, cache, speaker_of, usable, groups = common.study_setup(run)
    train_keys = usable(inputs.train.utterance_keys.tolist())
    train_keys = sorted(np.random.default_rng([constants.SEED, 4]).choice(
        train_keys, min(COHORT_UTTERANCES, len(train_keys)), replace=False).tolist())
    cohort_keys = {"train-split": train_keys, "test-split": usable(inputs.test.utterance_keys.tolist())}
    pool_model = keras.Model(trained.model.input, {"embeddings": trained.model.get_layer("pool").output})
    print(f"{trained.description}; {len(groups['validation'])} validation and {len(groups['unseen'])} unseen "
          f"utterances; cohorts: {', '.join(f'{n} {len(k)}' for n, k in cohort_keys.items())}")
    print("| embedding | scores | validation EER / minDCF | unseen EER / minDCF |\n|---|---|---|---|")
    for label, model in (("fc1", trained.model), ("pool", pool_model)):
        def embed(keys):
            frames = [embeddings.normalized_frames(cache.load(k), trained.norm, speaker_of[k]) for k in keys]
            return np.stack([embeddings.pool(w) for w in embeddings.embed_windows(model, frames)])
        cohorts = {name: embed(keys) for name, keys in cohort_keys.items()}
        results = {group: figures(embed(keys), [speaker_of[k] for k in keys], cohorts)
                   for group, keys in groups.items() if keys}
        for variant in results["unseen"]:
            cells = [f"{results[g][variant][0]:.2%} / {results[g][variant][1]:.3f}" if g in results else "-"
                     for g in ("validation", "unseen")]
            print(f"| {label} | {variant} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
