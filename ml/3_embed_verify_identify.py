"""Stage 3: use a trained model on any recordings (wav or flac, any sample rate), many files per call.

    python ml/3_embed_verify_identify.py embed me.wav recordings/ list.txt [--output embeddings.npz]
    python ml/3_embed_verify_identify.py verify a.flac b.wav          # exit 0: same speaker, 1: different
    python ml/3_embed_verify_identify.py enroll alice alice1.wav alice2.wav [--replace]
    python ml/3_embed_verify_identify.py identify who.wav more/       # "unknown" below the threshold
    python ml/3_embed_verify_identify.py gallery list | gallery remove alice
    python ml/3_embed_verify_identify.py verify a.flac b.wav --run softmax --threshold 0.7 --json
    python ml/3_embed_verify_identify.py verify a.flac b.wav --asnorm   # adaptive S-norm scores

A FILE argument may be an audio file, a folder (its audio files, recursively) or a .txt list of paths.
Options (--workdir, --run, --threshold, --asnorm, --json) go before or after the command. Errors (Ctrl-C and
unexpected ones included) exit with code 2, in one line.

Reads  the chosen checkpoint of the default run (the last of frozen, triplet, softmax that has one) or of --run,
       its norm.json, and the EER threshold of its evaluation, runs/<run>/evaluation/<checkpoint>/report.json
       (verify and identify; --threshold instead); with --asnorm, the AS-norm threshold and the cohort stage 2
       kept beside it (asnorm_cohort.npy).
Writes embed: --output (.npz with "paths" and "embeddings", .csv, or a folder of .npy files with
       embeddings.json naming the model and each file's audio: its resolved path and [size, mtime_ns]; default
       embeddings.npz in the current folder), one row per recording however its path is written;
       enroll: <workdir>/gallery/gallery.json and a rows file per speaker (<name>-<token>.npy).
"""
import csv
import functools
import json
import math
import sys
import traceback
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import utils  # noqa: E402
from audio.cache import stamp  # noqa: E402
from audio.corpus import named_audio_files  # noqa: E402

RUNS = ("frozen", "triplet", "softmax")
ERROR = 2  # exit code of every error (verify uses 0 and 1 for its answer)


def common_options(function):
    """--workdir, --run, --threshold, --asnorm and --json, accepted on the group and on every command."""
    function = click.option("--json", "as_json", is_flag=True, default=None, help="Print the result as JSON.")(function)
    function = click.option("--asnorm", is_flag=True, default=None,
                            help="Score with adaptive S-norm against the cohort of the run's evaluation, decided at "
                                 "its AS-norm EER point [default: cosine].")(function)
    function = click.option("--threshold", type=float, default=None,
                            help="Decide at this score (cosine; with --asnorm, AS-norm) [default: the EER point of "
                                 "the run's evaluation].")(function)
    function = click.option("--run", type=click.Choice(RUNS), default=None,
                            help="Use this run [default: the last of frozen, triplet, softmax that has a checkpoint]."
                            )(function)
    return utils.workdir_option(function)


def errors_exit_2(function):
    """utils.friendly_errors with exit code ERROR (Ctrl-C too), and an unexpected exception also one line and ERROR:
    click would exit 1 on Ctrl-C ("Aborted!") and Python 1 on a traceback, which verify answers "different
    speakers" with."""
    friendly = utils.friendly_errors(function, code=ERROR, interrupted="error: interrupted (nothing was decided)")

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return friendly(*args, **kwargs)
        except click.exceptions.ClickException:
            raise  # click's own usage errors already exit 2 with their message
        except Exception as error:  # noqa: BLE001 - a bug: still one line and ERROR, never a wrong answer
            where = traceback.extract_tb(error.__traceback__)[-1]
            print(f"error: unexpected {type(error).__name__} at {Path(where.filename).name}:{where.lineno}: "
                  f"{str(error)[:300]}", file=sys.stderr)
        sys.exit(ERROR)
    return wrapper


def options(context, **given):
    """The group's options, overridden by those given after the command."""
    merged = dict(context.obj or {})
    merged.update({key: value for key, value in given.items() if value is not None})
    threshold = merged.get("threshold")
    if threshold is not None and not math.isfinite(threshold):  # NaN would answer "different" to every pair
        raise utils.PipelineError(f"--threshold {threshold}: a threshold is a finite score")
    return merged


def speakers(settings):
    """The model, loaded once (TensorFlow is imported only now)."""
    utils.import_tensorflow_quietly()
    from ml.inference import Speakers
    return Speakers(run=settings.get("run"), threshold=settings.get("threshold"), asnorm=bool(settings.get("asnorm")))


def report_skipped(failed):
    """Name every file that gave no embedding, on stderr."""
    for path, reason in failed.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)


@click.group()
@common_options
@click.pass_context
def main(context, run, threshold, as_json, asnorm):
    """Embed, verify, enroll and identify recordings with a trained model."""
    utils.print_overrides()
    context.obj = {"run": run, "threshold": threshold, "as_json": as_json, "asnorm": asnorm}


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--output", type=click.Path(path_type=Path), default=Path("embeddings.npz"), show_default=True,
              help="A .npz (paths, embeddings), a .csv (path, values) or a folder (one .npy per file).")
@common_options
@click.pass_context
@errors_exit_2
def embed(context, files, output, run, threshold, as_json, asnorm):
    """Write the embeddings of FILES (audio files, folders, .txt lists)."""
    settings = options(context, run=run, threshold=threshold, as_json=as_json, asnorm=asnorm)
    kind = output.suffix.lower() if output.suffix.lower() in (".npz", ".csv", ".npy") else "folder"
    if kind == "folder" and output.exists() and not output.is_dir():
        raise utils.PipelineError(f"--output {output} is a file: name a .npz, .csv or .npy, or a folder")
    if kind != "folder" and output.is_dir():
        raise utils.PipelineError(f"--output {output} is a folder: name a file (.npz, .csv, .npy) or another folder")
    utils.ensure_writable_dir(output.resolve().parent, f"the folder of --output {output}",
                              "write the embeddings elsewhere")  # checked before the work, not after
    model = speakers(settings)
    sources = unique_recordings(named_audio_files(files))
    stamps = {path: stamp(path) for path in sources}  # before embedding: a file changed meanwhile is not taken as seen
    vectors, failed = model.embed_many(sources)
    report_skipped(failed)
    if not vectors:
        raise utils.PipelineError("no file gave an embedding")
    paths, matrix = [str(p) for p in vectors], np.stack(list(vectors.values())).astype(np.float32)
    if kind == ".npz":
        with utils.atomic_path(output) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, paths=np.array(paths), embeddings=matrix)
    elif kind == ".csv":
        with utils.atomic_path(output) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path"] + [f"e{i}" for i in range(matrix.shape[1])])
                writer.writerows([path] + [f"{v:.6g}" for v in row] for path, row in zip(paths, matrix))
    elif kind == ".npy":
        if len(paths) != 1:
            raise utils.PipelineError(f"--output {output} holds one embedding, but {len(paths)} files were embedded: "
                                      f"use a .npz, a .csv or a folder")
        utils.save_array(output, matrix[0])
    else:
        write_folder(output, {path: (row, stamps[path]) for path, row in zip(vectors, matrix)}, model.trained.reference)
    if settings.get("as_json"):
        print(json.dumps({"output": str(output), "embedded": len(paths), "skipped": {str(k): v for k, v in failed.items()}}))
    else:
        print(f"{len(paths)} embedding(s) of {matrix.shape[1]} values written to {output}"
              f"{f'; {len(failed)} file(s) skipped' if failed else ''}")


MANIFEST = "embeddings.json"  # in an --output folder: the model, and the audio file of each .npy


def unique_recordings(paths):
    """`paths` with each file once, however it was written (a.wav, ./a.wav, /abs/a.wav, a link): the first
    spelling kept, in order. One recording, one row."""
    seen, unique = set(), []
    for path in paths:
        if Path(path).resolve() not in seen:
            seen.add(Path(path).resolve())
            unique.append(path)
    return unique


def manifest_problem(manifest):
    """What is wrong with a folder's manifest (read_json's check), or None."""
    return next((f"{name!r} names no audio file" for name, entry in manifest["files"].items()
                 if not isinstance(entry, str) and not (isinstance(entry, dict) and isinstance(entry.get("path"), str))),
                None)


def manifest_entries(manifest):
    """{.npy name: {"path": resolved audio path, "stamp": [size, mtime_ns]}} of a folder's manifest. A manifest of
    before listed each file as written ("good.wav"): kept, but an entry that is not absolute names no file for
    sure, so no recording is taken for it (and its .npy is never overwritten)."""
    files = manifest["files"] if manifest else {}
    return {name: {"path": entry} if isinstance(entry, str) else entry for name, entry in files.items()}


def write_folder(folder, rows, model):
    """One .npy per recording in `folder` (`rows`: {audio path: (embedding, [size, mtime_ns] before embedding)}),
    named after its file (stem, stem-2, ... for equal stems), listed in the folder's manifest under its resolved
    path and stamp, with the model that made them. The same recording embedded again keeps its name (its row
    replaced); another recording never takes one. A folder of another model's embeddings, or of .npy files no
    manifest lists, is refused: they would not compare."""
    utils.ensure_writable_dir(folder, f"the --output folder {folder}", "write the embeddings elsewhere")
    manifest = utils.read_json(folder / MANIFEST, what="the record of the embeddings in this folder",
                               fix="Write the embeddings into an empty folder", keys={"model": object, "files": dict},
                               check=manifest_problem)
    if manifest is None and any(path for path in folder.glob("*.npy") if not path.name.startswith(".")):
        raise utils.PipelineError(f"--output {folder} holds .npy files that no {MANIFEST} describes: write the "
                                  f"embeddings into an empty or new folder")
    if manifest is not None and manifest["model"] != model:
        made = manifest["model"] if isinstance(manifest["model"], dict) else {}
        raise utils.PipelineError(f"--output {folder} holds embeddings of {made.get('mode')} {made.get('file')} (run "
                                  f"{made.get('run_id')}), not of this model: embeddings of two models do not "
                                  f"compare; write them into another folder")
    files = manifest_entries(manifest)
    rows = {str(Path(path).resolve()): value for path, value in rows.items()}
    named = {entry["path"]: name for name, entry in files.items() if Path(entry["path"]).is_absolute()}
    taken = set(files)
    # The entries of the rows rewritten below leave the manifest until their new rows are written: a kill in between
    # never leaves an entry whose stamp is not that of its row. The folder is this model's from now on.
    files = {name: entry for name, entry in files.items() if entry["path"] not in rows}
    utils.write_json(folder / MANIFEST, {"model": model, "files": files})
    for source, (row, audio_stamp) in rows.items():
        name = named.get(source) or utils.unused_name(Path(source).stem, taken, ".npy")
        utils.save_array(folder / name, row)
        files[name] = {"path": source, "stamp": audio_stamp}
    utils.write_json(folder / MANIFEST, {"model": model, "files": files})


@main.command()
@click.argument("first", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("second", type=click.Path(dir_okay=False, path_type=Path))
@common_options
@click.pass_context
@errors_exit_2
def verify(context, first, second, run, threshold, as_json, asnorm):
    """Say whether FIRST and SECOND are spoken by the same speaker (exit 0: same, 1: different, 2: error)."""
    settings = options(context, run=run, threshold=threshold, as_json=as_json, asnorm=asnorm)
    model = speakers(settings)
    score, same = model.verify(first, second)
    if settings.get("as_json"):
        print(json.dumps({"first": str(first), "second": str(second), "score": score, "threshold": model.threshold(),
                          "asnorm": model.asnorm, "same_speaker": bool(same)}))
    else:
        kind = "AS-norm score" if model.asnorm else "score"
        print(f"{kind} {score:.3f}, threshold {model.threshold():.3f}: {'same speaker' if same else 'different speakers'}")
    sys.exit(0 if same else 1)


@main.command()
@click.argument("name")
@click.argument("files", nargs=-1, required=True)
@click.option("--replace", is_flag=True, help="Replace NAME's enrolment instead of adding to it.")
@common_options
@click.pass_context
@errors_exit_2
def enroll(context, name, files, replace, run, threshold, as_json, asnorm):
    """Enroll NAME from FILES (audio files, folders, .txt lists); unusable files are named and skipped."""
    settings = options(context, run=run, threshold=threshold, as_json=as_json, asnorm=asnorm)
    model = speakers(settings)
    done = model.enroll(name, named_audio_files(files), replace=replace)
    report_skipped(done.skipped)
    count = model.listing()[name]
    if settings.get("as_json"):
        print(json.dumps({"name": name, "recordings": count, "file": str(done.rows_file),
                          "written": bool(done.added or done.updated or replace),
                          "added": list(map(str, done.added)), "embedded_again": list(map(str, done.updated)),
                          "unchanged": list(map(str, done.unchanged)),
                          "skipped": {str(k): v for k, v in done.skipped.items()}}))
        return
    for path in done.updated:
        why = ("enrolled by an earlier version, which kept no size and time to tell a change by" if path in
               done.unstamped else "it changed since it was enrolled")
        print(f"embedded {path} again: {why} (its row is replaced)")
    if done.added or done.updated or replace:
        print(f"enrolled {name}: {count} recording(s) in the gallery {done.rows_file.parent}")
    else:
        print(f"{name}: nothing new to enroll ({len(done.unchanged)} of the files given enrolled before and "
              f"unchanged); the gallery {done.rows_file.parent} is as it was, {count} recording(s)")


@main.command()
@click.argument("files", nargs=-1, required=True)
@common_options
@click.pass_context
@errors_exit_2
def identify(context, files, run, threshold, as_json, asnorm):
    """Find the enrolled speaker of each of FILES ("unknown" when no score reaches the threshold)."""
    settings = options(context, run=run, threshold=threshold, as_json=as_json, asnorm=asnorm)
    model = speakers(settings)
    gallery, threshold_used = model.enrolled(), model.threshold()
    if not gallery:
        raise utils.PipelineError(f"the gallery {model.gallery} is empty: enroll speakers first")
    results, failed = [], {}
    for path in named_audio_files(files):
        try:
            name, scores = model.identify(path, gallery)
        except utils.PipelineError as error:
            failed[path] = str(error).removeprefix(f"{path}: ")
            continue
        results.append({"file": str(path), "speaker": name, "scores": dict(list(scores.items())[:5]),
                        "asnorm": model.asnorm})
        if not settings.get("as_json"):
            best = ", ".join(f"{n} {s:.3f}" for n, s in list(scores.items())[:3])
            print(f"{path}: {name}   ({best}; {'AS-norm ' if model.asnorm else ''}threshold {threshold_used:.3f})")
    report_skipped(failed)
    if settings.get("as_json"):
        print(json.dumps(results))
    if not results:
        raise utils.PipelineError("no file could be identified")


@main.group()
def gallery():
    """List or remove enrolled speakers."""


@gallery.command("list")
@common_options
@click.pass_context
@errors_exit_2
def gallery_list(context, run, threshold, as_json, asnorm):
    """The enrolled speakers and how many recordings each."""
    settings = options(context.find_root(), run=run, threshold=threshold, as_json=as_json, asnorm=asnorm)
    listing = speakers(settings).listing()
    if settings.get("as_json"):
        print(json.dumps(listing))
    for name, count in listing.items() if not settings.get("as_json") else ():
        print(f"{name}\t{count} recording(s)")
    if not listing and not settings.get("as_json"):
        print("the gallery is empty")


@gallery.command("remove")
@click.argument("name")
@common_options
@click.pass_context
@errors_exit_2
def gallery_remove(context, name, run, threshold, as_json, asnorm):
    """Take NAME out of the gallery."""
    settings = options(context.find_root(), run=run, threshold=threshold, as_json=as_json, asnorm=asnorm)
    speakers(settings).remove(name)
    print(f"removed {name}")


if __name__ == "__main__":
    main()
