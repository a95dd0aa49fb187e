"""Speed-perturbed copies of the training utterances (SPEED_PERTURBATION): which utterances get copies (planned
once per stage-0 run), caching them, and the classes they make ("p225@0.9": each speed of each speaker is a
training class of its own, train split only)."""
import numpy as np

import constants
import utils
from audio import features
from ml import inputs


def factors():
    """The SPEED_PERTURBATION factors, checked: positive, not 1, no repeats; PipelineError otherwise."""
    chosen = [float(f) for f in constants.SPEED_PERTURBATION]
    if any(f <= 0 or f == 1 for f in chosen) or len(set(chosen)) < len(chosen):
        raise utils.PipelineError(f"SPEED_PERTURBATION={constants.SPEED_PERTURBATION}: speed factors must be "
                                  f"positive, other than 1 and distinct (e.g. 0.9,1.1; empty turns copies off)")
    return chosen


def plan(cache, corpus, train_speakers):
    """{speaker: [utterances to copy at every speed]}: a seeded choice of SPEED_PERTURBATION_UTTERANCES of
    its training utterances (all when 0); empty when SPEED_PERTURBATION is."""
    if not factors():
        return {}
    rng = np.random.default_rng([constants.SEED, 1])
    limit = constants.SPEED_PERTURBATION_UTTERANCES
    chosen_by_speaker = {}
    usable = inputs.usable_utterances(cache, corpus, train_speakers)
    for speaker, keys in inputs.trainable_speakers(usable, warn=False).items():
        train_keys = inputs.split_utterances(keys)[0]
        if 0 < limit < len(train_keys):
            train_keys = sorted(rng.choice(train_keys, limit, replace=False).tolist())
        chosen = set(train_keys)
        chosen_by_speaker[speaker] = [u for u in corpus.utterances[speaker] if u.key in chosen]
    return chosen_by_speaker


def cache_copies(cache, copy_plan, workers=None, progress=True):
    """Cache the copies of `copy_plan` (resumable, like the cache); its BuildReport, or None when off."""
    if not copy_plan:
        return None
    copies = [(u, factor) for factor in factors() for utterances in copy_plan.values() for u in utterances]
    return cache.build([], workers=workers, progress=progress, speed_copies=copies)


def classes(cache, copy_plan):
    """{class name "<speaker>@<factor>": its cached copy keys at least one window long}, speed by speed;
    classes without any are left out."""
    found = {}
    for factor in factors():
        for speaker, utterances in copy_plan.items():
            keys = [features.speed_key(u.key, factor) for u in utterances]
            keys = inputs.long_enough(cache, [k for k in keys if cache.has(k)])
            if keys:
                found[features.speed_key(speaker, factor)] = keys
    return found
