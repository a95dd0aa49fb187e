"""Stage 0: corpus -> feature cache -> train/test inputs of the training speakers.

Reads  the corpus at VCTK_CORPUS_PATH (constants.CORPUS_PATH).
Writes <workdir>/cache/features-<fingerprint>/<speaker>/<utterance>.npy  (one per utterance, resumable)
       ... <speaker>/<utterance>@<speed>.npy  (speed copies of training utterances, SPEED_PERTURBATION)
       <workdir>/inputs/data.npz, norm.json, inputs.json             (skipped when current; --force redoes)
"""
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import constants  # noqa: E402
import utils  # noqa: E402
from audio.cache import FeatureCache  # noqa: E402
from audio.corpus import find_corpus  # noqa: E402
from ml import checkpoints  # noqa: E402
from ml import inputs as ml_inputs  # noqa: E402
from ml import speed_copies  # noqa: E402


@click.command()
@utils.workdir_option
@click.option("--force", is_flag=True, help="Rebuild the inputs even when they are current.")
@click.option("--workers", type=int, default=None, help="Processes for the feature cache (default: NUM_WORKERS).")
@utils.friendly_errors
def main(force, workers):
    """Build the feature cache, then the train/test inputs."""
    start = time.perf_counter()
    utils.stop_cleanly_on_termination()
    utils.print_overrides()
    corpus = find_corpus()
    train_speakers, validation_speakers, unseen_speakers = ml_inputs.corpus_split(corpus)
    print(f"corpus: {corpus.root} ({corpus.layout}), {len(corpus.speakers)} speakers, "
          f"{corpus.num_utterances()} utterances; split {constants.SPLIT}: {len(train_speakers)} training, "
          f"{len(validation_speakers)} validation, {len(unseen_speakers)} unseen speakers")
    # one stage 0 at a time per work dir: the cache, the speed copies and the inputs are written here
    with utils.folder_lock(utils.ensure_writable_dir(utils.workdir()) / "inputs", "stage 0 (cache and inputs)"):
        utils.remove_stale_temporaries(ml_inputs.inputs_folder())  # a killed stage 0's partial files (we hold the lock)
        inputs = build(corpus, train_speakers, unseen_speakers, validation_speakers, force, workers)
    if inputs is None:
        return
    summary = ml_inputs.describe(inputs)
    for split in [name for name in ("train", "test", "validation") if name in summary]:
        part = summary[split]
        print(f"{split}: windows {tuple(part['windows'])} from {part['utterances']} utterances, frames "
              f"{tuple(part['frames'])} float32, {part['mebibytes']} MiB")
    classes = f" ({summary['classes']} classes with the speed copies)" if summary["classes"] > summary["speakers"] else ""
    print(f"inputs: {summary['speakers']} speakers{classes}, normalisation {summary['normalization']}, written to "
          f"{ml_inputs.inputs_folder()} in {time.perf_counter() - start:.1f} s, peak memory {utils.peak_memory_mib():.0f} MiB "
          f"(cache workers {utils.peak_memory_mib(children=True):.0f} MiB)")


def build(corpus, train_speakers, unseen_speakers, validation_speakers, force, workers):
    """Cache the features and speed copies, then build the inputs unless current; the Inputs built, or None."""
    cache = FeatureCache(corpus.root)
    wanted = [u for s in train_speakers + validation_speakers + unseen_speakers for u in corpus.utterances[s]]
    report = cache.build(wanted, workers=workers)
    print(report.summary())
    plan = speed_copies.plan(cache, corpus, train_speakers)  # once per run: which utterances get copies
    copies = speed_copies.cache_copies(cache, plan, workers=workers)
    if copies:
        print(f"speed copies at {', '.join(f'{f:g}' for f in speed_copies.factors())} of up to "
              f"{constants.SPEED_PERTURBATION_UTTERANCES or 'all'} training utterances per speaker: "
              f"{copies.summary().removeprefix('feature cache: ')}")

    record = ml_inputs.expected_record(cache, corpus, train_speakers, unseen_speakers, validation_speakers, plan)
    folder = ml_inputs.inputs_folder()
    stale = ml_inputs.stale_reason(record)
    if stale is None and not force:
        print(f"inputs in {folder} are current: nothing to rebuild (use --force to rebuild anyway)")
        return None
    print(f"inputs: building them ({'--force' if stale is None else stale})")
    replaced = None if stale is None else _readable_record()
    left = [] if replaced is None else checkpoints.runs_left_behind(replaced["built_from"], record)
    if left:  # said now, not found out at the next training command
        print(f"warning: the {', '.join(left)} run(s) in {utils.work_path('runs')} were trained on the inputs replaced "
              f"now: they are refused from now on, until the inputs are rebuilt as they were (or the runs are trained "
              f"again with --fresh)", file=sys.stderr)
    inputs = ml_inputs.build_inputs(cache, corpus, train_speakers, unseen_speakers, validation_speakers=validation_speakers,
                                    plan=plan)
    ml_inputs.save_inputs(inputs, record)
    return inputs


def _readable_record():
    """The inputs' record as it is before they are rebuilt, or None when there is none or it is damaged."""
    try:
        return ml_inputs.read_record()
    except utils.PipelineError:
        return None


if __name__ == "__main__":
    main()
