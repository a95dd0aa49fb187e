"""Stage 4: find where the speaker changes in recordings, and measure how well it does on conversations.

    python ml/4_detect_speaker_changes.py detect meeting.wav recordings/ list.txt [--output changes.json]
    python ml/4_detect_speaker_changes.py detect call.flac --threshold 0.3 --output call.rttm
    python ml/4_detect_speaker_changes.py evaluate [--run R] [--checkpoint F] [--force]

detect: any wav or flac at any sample rate (ogg too, named directly; folders give their AUDIO_EXTENSIONS
files), loaded as in stage 3. Prints the change times and one RTTM
line per segment; --output writes them as .json, .csv (one row per segment) or .rttm; a PNG of each file's
change curve goes to --plots (default <workdir>/speaker_changes/). The threshold is the one `evaluate` tuned for
the checkpoint, or --threshold. Errors (a file that cannot be read, is all-silent or shorter than two
CHANGE_WINDOW_S windows) are one line each; the other files go on. Exit code 2 when no file could be used.

evaluate: CONVERSATIONS seeded synthetic conversations of the unseen speakers (2-4 speakers, 8-20 turns of 1-3
utterances, short pauses), and twice as many to tune the threshold on (half of them with longer turns, of
CONVERSATION_TUNING_LONG_TURNS utterances), of the validation speakers (held out of training) when there are enough
for the largest conversation, else of the training speakers' test utterances: the unseen speakers choose nothing.
Reports precision, recall and F1 of the change points within each collar,
segment purity and coverage, beside the delta-BIC baseline tuned the same way. Writes
runs/<run>/evaluation/<checkpoint>/speaker_changes.json and speaker_changes_<k>.png; an evaluation with the
same settings is shown again (--force computes it anew).
"""
import csv
import json
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import utils  # noqa: E402
from audio.corpus import named_audio_files  # noqa: E402

RUNS = ("frozen", "triplet", "softmax")
ERROR = 2


@click.group()
@utils.workdir_option
def main():
    """Speaker change detection with a trained model."""


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--threshold", type=float, default=None,
              help="Call a change where the curve reaches this [default: the threshold `evaluate` tuned].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results: .json, .csv (a row per segment) or .rttm.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the change-curve PNGs [default: <workdir>/speaker_changes].")
@click.option("--no-plots", is_flag=True, help="Write no PNG.")
@click.option("--run", type=click.Choice(RUNS), default=None,
              help="Use this run [default: the last of frozen, triplet, softmax that has a checkpoint].")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="A weights file of that run [default: its chosen one].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@utils.workdir_option
@utils.friendly_errors(code=ERROR)
def detect(files, threshold, output, plots, no_plots, run, checkpoint, as_json):
    """Find the speaker changes in FILES (audio files, folders, .txt lists)."""
    utils.print_overrides(file=sys.stderr if as_json else None)  # stdout carries only the JSON then
    if output is not None and output.suffix not in (".json", ".csv", ".rttm"):
        raise utils.PipelineError(f"--output {output}: write .json, .csv or .rttm")
    import constants
    lowest = 0 if constants.CHANGE_CURVE == "cosine" else -2  # a contrast is a cosine distance less another
    if threshold is not None and not lowest < threshold <= 2:  # NaN fails too
        raise utils.PipelineError(f"--threshold {threshold}: a change threshold of the {constants.CHANGE_CURVE} curve "
                                  f"lies above {lowest} and at most 2")
    if output is not None:
        utils.ensure_writable_dir(output.resolve().parent, f"the folder of --output {output}",
                                  "write the output elsewhere")
    folder = None if no_plots else (plots or utils.work_path("speaker_changes"))
    if folder is not None:
        utils.ensure_writable_dir(folder, f"the plots folder {folder}", "choose another with --plots, or --no-plots")
    paths = named_audio_files(files)
    utils.import_tensorflow_quietly()
    from ml import plots as figures
    from ml.speaker_changes import ChangeDetector
    detector = ChangeDetector(run=run, checkpoint=checkpoint, threshold=threshold)
    threshold = detector.threshold()
    made_by = detector.trained.reference
    model_name = f"{made_by['mode']} {Path(made_by['file']).name} (run {made_by['run_id']}), threshold {threshold:.3f}"
    results, failed, names = [], {}, set()
    for path in paths:
        try:
            found = detector.detect(path, threshold)
        except utils.PipelineError as error:
            failed[str(path)] = str(error).removeprefix(f"{path}: ")
            print(f"skipped {path}: {failed[str(path)]}", file=sys.stderr)
            continue
        found.file_id = unique_name(path, names)  # RTTM file id and plot name, distinct for equal stems
        results.append(found)
        if folder is not None:
            figures.change_curve(found.curve, threshold, found.changes, folder / f"{found.file_id}.png",
                                 title=f"{path.name}: {len(found.changes)} change(s); {model_name}")
        if not as_json:
            shown = ", ".join(f"{t:.2f}" for t in found.changes) or "none"
            print(f"{path}: {len(found.changes)} change(s) in {found.duration:.1f} s (threshold {threshold:.3f}): "
                  f"{shown}")
            print("\n".join(found.rttm(found.file_id)))
    if as_json:
        print(json.dumps([{**r.as_dict(), "model": made_by} for r in results], indent=1))
    if output is not None and results:
        write_results(results, output, made_by)
        print(f"written to {output}", file=sys.stderr if as_json else sys.stdout)
    if folder is not None and results and not as_json:
        print(f"change curves: {folder}")
    if not results:
        raise utils.PipelineError("no file could be used")


def unique_name(path, taken):
    """The file's RTTM id and plot name: its stem with spaces as "_", then "-2", "-3" ... until no earlier file of
    this call has it (`taken`: the set of ids given so far, updated)."""
    return utils.unused_name(path.stem.replace(" ", "_"), taken)


def write_results(results, output, model):
    """The detections as .json (a list of dicts, each naming the `model` checkpoint that found them besides its
    threshold), .csv (file, segment, start_s, end_s) or .rttm."""
    with utils.atomic_path(output) as tmp:
        with open(tmp, "w", newline="") as handle:
            if output.suffix == ".json":
                json.dump([{**r.as_dict(), "model": model} for r in results], handle, indent=1)
            elif output.suffix == ".csv":
                writer = csv.writer(handle)
                writer.writerow(["file", "segment", "start_s", "end_s"])
                for result in results:
                    writer.writerows([result.name, k + 1, f"{start:.3f}", f"{end:.3f}"]
                                     for k, (start, end) in enumerate(result.segments()))
            else:
                for result in results:
                    handle.write("\n".join(result.rttm(result.file_id)) + "\n")


@main.command()
@click.option("--run", type=click.Choice(RUNS), default=None,
              help="Evaluate this run [default: the last of frozen, triplet, softmax that has a checkpoint].")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="A weights file of that run [default: its chosen one].")
@click.option("--force", is_flag=True, help="Compute the evaluation again even when it exists.")
@utils.workdir_option
@utils.friendly_errors
def evaluate(run, checkpoint, force):
    """Precision, recall and F1 of change detection on synthetic conversations of the unseen speakers (the
    threshold tuned on the validation or training speakers)."""
    start = time.perf_counter()
    utils.stop_cleanly_on_termination()
    utils.print_overrides()
    from ml import checkpoints
    from ml.inputs import checked_corpus, checked_record
    from ml.speaker_changes import EVALUATION_SETTINGS, REPORT
    record = checked_record()
    mode, state, entry = checkpoints.resolve_checkpoint(run, checkpoint)
    folder = checkpoints.evaluation_folder(mode, entry)
    with checkpoints.RunFolder(mode).lock():
        checkpoints.check_trained_on(mode, state, record)
        settings = utils.settings_snapshot(EVALUATION_SETTINGS)
        again = (f"python ml/4_detect_speaker_changes.py evaluate --run {mode}"
                 + (f" --checkpoint {checkpoint}" if checkpoint else "") + " --force")
        # a report, stored or new, describes the corpus as stage 0 last saw it
        corpus, audio = checked_corpus(record["built_from"])
        report = None if force else checkpoints.existing_evaluation(
            folder / REPORT, mode, state, entry, settings, again, "detect",
            keys={"threshold": utils.NUMBER, "f1": utils.NUMBER, "baseline": dict, "by_collar": dict, "tuning": dict},
            unseen=record["built_from"].get("unseen_sources_digest"), audio=audio)
        if report is None:
            report = compute(mode, entry, folder, settings, record, corpus, audio)
        else:  # a stored report: one damaged inside is refused in one line
            with utils.stored_record(folder / REPORT, again):
                summary(report, folder, start)
            return
    summary(report, folder, start)


def compute(mode, entry, folder, settings, record, corpus, audio):
    """Run the evaluation of the checkpoint on `corpus` (checked_corpus) and write its report."""
    utils.import_tensorflow_quietly()
    import constants
    from ml import checkpoints, speaker_changes
    from ml.inference import label_free_model
    from ml.inputs import load_inputs

    unseen = record["built_from"]["unseen_speakers"]  # the corpus's split, as checked_corpus found it
    inputs = load_inputs(expected=record)
    trained = label_free_model(mode, settings="inputs", entry=entry)
    print(f"model: {trained.description}")
    tuning, described = speaker_changes.tuning_speakers(corpus, inputs)
    test = {s: [u.path for u in corpus.utterances.get(s, [])] for s in unseen}
    report = speaker_changes.evaluate(trained, tuning, test, folder, described)
    report.update({"checkpoint": trained.reference, "run": mode, "settings": settings, "recipe": constants.RECIPE,
                   "code_version": utils.code_version(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "checkpoint_file": checkpoints.describe(mode, trained.state, trained.entry),
                   "unseen_sources_digest": inputs.record.get("unseen_sources_digest"),  # the conversations' audio,
                   "corpus_audio_digest": audio})  # short files too, which the inputs leave out
    utils.write_json(folder / speaker_changes.REPORT, report)
    return report


def summary(report, folder, start):
    """The evaluation's figures, as lines for the terminal."""
    baseline = report["baseline"]
    print(f"tuned on {report['tuning']['num_conversations']} conversations of {report['tuning']['utterances']} "
          f"({report['tuning']['speakers']} speakers): threshold {report['threshold']:.3f} (F1 {report['tuning']['f1']:.3f}; delta-BIC "
          f"{baseline['threshold']:.1f}, F1 {report['tuning']['baseline_f1']:.3f})")
    print(f"test: {report['num_conversations']} conversations of {report['num_speakers']} unseen speakers, "
          f"{report['num_changes']} changes, {report['audio_s'] / 60:.1f} min of audio")
    for collar in [f"{c:g}" for c in report["settings"]["CHANGE_COLLARS_S"]]:  # the tuning collar first
        figures, other = report["by_collar"][collar], baseline["by_collar"][collar]
        print(f"collar {collar} s: precision {figures['precision']:.3f}  recall {figures['recall']:.3f}  F1 "
              f"{figures['f1']:.3f}   (delta-BIC: {other['precision']:.3f} / {other['recall']:.3f} / "
              f"{other['f1']:.3f})")
    print(f"purity {report['purity']:.3f}  coverage {report['coverage']:.3f}   (delta-BIC: {baseline['purity']:.3f} "
          f"/ {baseline['coverage']:.3f});  detection {report['real_time_factor']:.0f}x real time")
    if report.get("num_skipped_files"):
        print(f"{report['num_skipped_files']} unusable file(s) skipped (listed in {folder / 'speaker_changes.json'})")
    print(f"report and plots in {folder} ({time.perf_counter() - start:.0f} s)")
    if report.get("example"):
        shown = ", ".join(f"{t:.2f}" for t in report["example"]["changes_s"])
        print(f"try detect on test conversation 1 (true changes at {shown} s): python ml/4_detect_speaker_changes.py "
              f"detect {folder / report['example']['file']}")


if __name__ == "__main__":
    main()
