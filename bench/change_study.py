"""Change-detection variants, judged without the unseen speakers: does a threshold tuned on one kind of
conversation hold on conversations with longer turns, and on conversations of similar voices?

Stage 4 tunes its threshold on conversations of the validation speakers and measures on the unseen speakers'.
On the dev corpus the unseen speakers read longer utterances (6.5 s against 3.5 s), so their turns are longer,
and precision falls from tuning to test. This study builds, from the validation speakers only:
- the tuning conversations stage 4 tunes on (same seeds, same settings: like the test's, and as many with
  CONVERSATION_TUNING_LONG_TURNS utterances per turn; with --test-turns-only the first half alone, as stage 4 tuned
  up to `cf6b846`);
- "same turns": new conversations of the same kind (another seed);
- "long turns": new conversations whose turns hold 2-6 utterances instead of 1-3, the turn lengths of a corpus
  with utterances twice as long (since stage 4 tunes on such turns too, no longer beyond what it tuned on);
- "longer turns": 4-10 utterances per turn, beyond anything tuned on;
- "similar voices": conversations among validation speakers of the same gender and age group (adult from 18,
  as the corpus's speaker-info.txt gives them; groups of at least two speakers), the harder case of a real
  conversation; left out when the corpus has no such information or groups;
and for each detector variant tunes on the first, then reports precision, recall and F1 (0.5 s collar) on the
others. The unseen speakers are not read. Variants: the side length (CHANGE_WINDOW_S), the curve (CHANGE_CURVE
"cosine" or "contrast"), merging (CHANGE_MERGE_REACH_S 0, 3 or 6 s), clustering (CHANGE_CLUSTER_WEIGHT 0 = off,
0.25 to 2) and a spread-normalised distance ("dispersion"); each with its threshold tuned as stage 4 tunes it
(quantiles of the candidates' strengths).

    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto DEEP_SPEAKER_WORKDIR=<work dir> \\
        python bench/change_study.py --run softmax
"""
import json
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import utils  # noqa: E402

utils.import_tensorflow_quietly()

import constants  # noqa: E402
from audio.corpus import find_corpus  # noqa: E402
from ml import speaker_changes  # noqa: E402
from ml.inputs import load_inputs  # noqa: E402

SETS = {"same turns": ([15, 2], None), "long turns": ([15, 3], [2, 6]), "longer turns": ([15, 7], [4, 10])}
SIMILAR_SEED = [15, 4]


def tracks_of(detector, paths, seed, per_turn, count):
    """[(track, duration, true changes)] of `count` seeded conversations (`per_turn` utterances per turn, default
    CONVERSATION_UTTERANCES_PER_TURN)."""
    out = []
    for conversation in utils.progress(speaker_changes.conversations(paths, count, [constants.SEED] + seed,
                                                                     per_turn=per_turn),
                                       total=count, desc=f"conversations {seed}", unit="conversation"):
        curve = detector.curve(conversation.signal, "a conversation")
        out.append((curve.track, curve.duration, np.asarray(conversation.changes)))
    return out


def similar_groups(corpus, paths):
    """{(gender, "adult"/"child"): {speaker: paths}} of the speakers of `paths` by the corpus's speaker-info.txt
    (columns ID, AGE, GENDER), groups of at least two speakers; {} without that file."""
    info = next((f for f in (Path(corpus.root) / "speaker-info.txt", Path(corpus.root).parent / "speaker-info.txt")
                 if f.is_file()), None)
    if info is None:
        return {}
    groups = {}
    for line in info.read_text(errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] in paths and fields[1].isdigit():
            key = (fields[2].upper(), "adult" if int(fields[1]) >= 18 else "child")
            groups.setdefault(key, {})[fields[0]] = paths[fields[0]]
    return {key: members for key, members in sorted(groups.items()) if len(members) >= 2}


def similar_tracks(detector, groups, count):
    """The tracks of `count` conversations shared out among the similar-voice groups (a seed each)."""
    out = []
    for k, members in enumerate(groups.values()):
        share = count // len(groups) + (k < count % len(groups))
        out += tracks_of(detector, members, SIMILAR_SEED + [k], None, share)
    return out


def window_variant(width, curve="cosine", reach=0.0, cluster=0.0):
    """Changes as stage 4 ranks them with CHANGE_WINDOW_S = width, CHANGE_CURVE = curve, CHANGE_MERGE_REACH_S =
    reach and CHANGE_CLUSTER_WEIGHT = cluster, cut at the threshold."""
    def candidates(track, duration):
        names = ("CHANGE_WINDOW_S", "CHANGE_CURVE", "CHANGE_MERGE_REACH_S", "CHANGE_CLUSTER_WEIGHT")
        saved = [getattr(constants, n) for n in names]
        for name, value in zip(names, (width, curve, reach, cluster)):
            setattr(constants, name, value)
        try:
            return speaker_changes.ranked_changes(speaker_changes.embedding_curve(track, duration))
        finally:
            for name, value in zip(names, saved):
                setattr(constants, name, value)
    return candidates


def dispersion_variant(width):
    """Changes: the peaks of the squared distance of the sides' mean unit embeddings over their mean spread
    (1 - |mean|^2 of each side), cut at the threshold."""
    def candidates(track, duration):
        points = speaker_changes.candidate_points(duration)
        left, right = track.sums(points - width, points), track.sums(points, points + width)
        across = speaker_changes.cosine_distance(left[:, :-1], right[:, :-1], left[:, -1], right[:, -1])
        n_l, n_r = np.maximum(left[:, -1:], 1), np.maximum(right[:, -1:], 1)
        m_l, m_r = left[:, :-1] / n_l, right[:, :-1] / n_r
        spread = 2 - (m_l ** 2).sum(axis=1) - (m_r ** 2).sum(axis=1)
        values = np.where(np.isfinite(across), ((m_l - m_r) ** 2).sum(axis=1) / np.maximum(spread, 1e-6), -np.inf)
        return speaker_changes.peaks(speaker_changes.Curve(points, values, duration))
    return candidates


def tune_and_test(sets, candidates, collar):
    """Stage 4's tuning (speaker_changes.tune_threshold) of the changes `candidates(track, duration)` ranks, on the
    tuning set; (threshold, tuning F1, {other set: [precision, recall, F1]}) at `collar`."""
    curves = {}
    for name, items in sets.items():
        curves[name] = [speaker_changes.Curve(np.zeros(0), np.zeros(0), d, ranked=candidates(t, d)) for t, d, _ in items]
    truths = {name: [c for *_, c in items] for name, items in sets.items()}
    threshold, tuning = speaker_changes.tune_threshold(curves["tuning"], truths["tuning"], collar)
    tested = {}
    for name in sets:
        if name != "tuning":
            figure = speaker_changes.figures(curves[name], truths[name], threshold, [collar])[0][f"{collar:g}"]
            tested[name] = [figure["precision"], figure["recall"], figure["f1"]]
    return threshold, tuning, tested


@click.command()
@click.option("--run", default="softmax", show_default=True)
@click.option("--count", default=100, show_default=True, help="Conversations per set.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the figures as JSON here too.")
@click.option("--test-turns-only", is_flag=True,
              help="Tune on conversations like the test's only (stage 4 before it tuned on longer turns too).")
def main(run, count, output, test_turns_only):
    corpus = find_corpus()
    inputs = load_inputs()
    detector = speaker_changes.ChangeDetector(run=run)
    paths, described = speaker_changes.tuning_speakers(corpus, inputs)
    print(f"{described}: {len(paths)} speakers; model {detector.source}")
    like_test, longer = speaker_changes.TUNING_SEEDS
    sets = {"tuning": tracks_of(detector, paths, like_test, None, count)
            + ([] if test_turns_only else tracks_of(detector, paths, longer, constants.CONVERSATION_TUNING_LONG_TURNS, count))}
    sets.update({name: tracks_of(detector, paths, seed, per_turn, count) for name, (seed, per_turn) in SETS.items()})
    groups = similar_groups(corpus, paths)
    if groups:
        print("similar voices: " + "; ".join(f"{' '.join(key)}: {', '.join(members)}" for key, members in groups.items()))
        sets["similar voices"] = similar_tracks(detector, groups, count)
    collar = constants.CHANGE_COLLARS_S[0]
    rows = []

    def report(name, parameter, tuning, tested):
        row = {"variant": name, "parameter": parameter, "tuning_f1": tuning,
               **{f"{k} P/R/F1": [round(x, 3) for x in v] for k, v in tested.items()},
               "mean F1": round(float(np.mean([v[2] for v in tested.values()])), 4)}
        rows.append(row)
        print(json.dumps(row))

    def merging(reach):
        return "off" if reach == 0 else f"up to {reach:g} s"
    variants = [(f"window {w:g} s, {curve}, merging {merging(reach)}", window_variant(w, curve, reach))
                for curve in ("cosine", "contrast") for w in (1.5, 2.0) for reach in (0.0, 3.0, 6.0)]
    variants += [("window 2.5 s, cosine, merging off", window_variant(2.5))]
    variants += [(f"window {w:g} s, dispersion", dispersion_variant(w)) for w in (1.5, 2.0)]
    variants += [(f"window 1.5 s, contrast, merging {merging(reach)}, clustering weight {c:g}",
                  window_variant(1.5, "contrast", reach, c)) for reach in (3.0, 0.0) for c in (0.25, 0.5, 1.0, 2.0)]
    for name, candidates in variants:
        report(name, *tune_and_test(sets, candidates, collar))
    if output:
        utils.write_json(output, {"rows": rows, "count": count, "collar_s": collar, "code_version": utils.code_version(),
                                  "similar_voices": {" ".join(k): list(v) for k, v in groups.items()},
                                  "tuned_on_test_turns_only": test_turns_only})


if __name__ == "__main__":
    main()
