"""Benchmark: peak memory of training (one softmax epoch) and evaluation with streamed inputs, on a corpus and
on a synthetic one ten times its size.

The large corpus: the demo generator writes `--base-speakers` speakers whose utterances add up to the
reference corpus's hours, and ten copies of them under other speaker names (hard links: no disk space) make
ten times its hours and speakers. The copies sound alike; memory depends on the sizes, not on the voices.
For each corpus, in a fresh work dir with STREAM_INPUTS=yes, MAX_COUNT_PER_CLASS=--segments and 80 % of the
speakers training: ml/0_generate_inputs.py, then ml/1_train_triplet_softmax_model.py --loss_on_softmax
--epochs 1 and ml/2_evaluate_unseen_speakers.py, each in a subprocess whose peak resident memory the OS
reports (os.wait4). Reported: the peaks and their ratio, large / reference (target <= 1.3x); with --repeats,
medians.

Run from the repository root:
    python bench/bench_scale.py --reference ../shared/data/so-dev-vctk092 --folder /tmp/scale
"""
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import utils  # noqa: E402
from bench import common  # noqa: E402
from bench.common import MB  # noqa: E402

# --fresh and --force: a second run of the bench measures again instead of finding the work done
STAGES = (("inputs", ["ml/0_generate_inputs.py"]),
          ("softmax, 1 epoch", ["ml/1_train_triplet_softmax_model.py", "--loss_on_softmax", "--epochs", "1", "--fresh"]),
          ("evaluation", ["ml/2_evaluate_unseen_speakers.py", "--force"]))


def hours(root):
    """Hours of audio and number of speakers of a corpus, from the files' headers."""
    from audio.corpus import find_corpus
    corpus = find_corpus(root)
    seconds = sum(soundfile.info(u.path).duration for items in corpus.utterances.values() for u in items)
    return seconds / 3600, len(corpus.speakers)


def large_corpus(folder, target_hours, base_speakers, copies):
    """The demo generator's voices adding up to `target_hours`, then `copies` copies under new speaker names."""
    from audio.demo_corpus import write_demo_corpus
    base = folder / "base"
    per_speaker = max(2, round(target_hours * 3600 / 2.38 / base_speakers))  # demo utterances last ~2.38 s
    write_demo_corpus(base, num_speakers=base_speakers, utterances_per_speaker=per_speaker, progress=True)
    large = folder / "large" / "wav48_silence_trimmed"
    for copy in range(copies):
        for speaker in sorted((base / "wav48_silence_trimmed").iterdir()):
            name = f"c{copy}{speaker.name}"
            (large / name).mkdir(parents=True, exist_ok=True)
            for path in speaker.iterdir():
                target = large / name / path.name.replace(speaker.name, name)
                if not target.exists():
                    os.link(path, target)
    return folder / "large"


def run_stages(corpus, workdir, training_speakers, segments, repeats=1, only=None):
    """{stage: (seconds, peak RSS bytes)} of the three stages (or the `only` ones, the earlier stages' work
    being in `workdir` already) on `corpus`, medians of `repeats` runs of each."""
    environment = {**os.environ, "VCTK_CORPUS_PATH": str(corpus), "DEEP_SPEAKER_WORKDIR": str(workdir),
                   "DEEP_SPEAKER_SPLIT": "auto", "DEEP_SPEAKER_STREAM_INPUTS": "yes",
                   "DEEP_SPEAKER_NUM_SPEAKERS_CLASSIFICATION_TASK": str(training_speakers),
                   "DEEP_SPEAKER_MAX_COUNT_PER_CLASS": str(segments)}
    results = {}
    for name, command in STAGES:
        if only and name.split(",")[0] not in only:  # "inputs", "softmax", "evaluation"
            continue
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            process = subprocess.Popen([sys.executable, *command], cwd=common.REPO, env=environment,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _, status, usage = os.wait4(process.pid, 0)
            error = process.stderr.read()
            if os.waitstatus_to_exitcode(status):
                raise utils.PipelineError(f"{' '.join(command)} on {corpus} failed:\n{error[-2000:]}")
            runs.append((time.perf_counter() - start, usage.ru_maxrss * 1024))
            print(f"{corpus.name}: {name}: {runs[-1][0]:.0f} s, peak {runs[-1][1] / MB:.0f} MB", flush=True)
        results[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    return results


@click.command()
@click.option("--reference", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The reference corpus (the dev corpus).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where the large corpus and the work dirs go (hard links need the same file system).")
@click.option("--base-speakers", default=100, show_default=True)
@click.option("--copies", default=10, show_default=True)
@click.option("--segments", default=100, show_default=True, help="MAX_COUNT_PER_CLASS of both runs.")
@click.option("--out", default="bench/results/scale.json", show_default=True)
@click.option("--repeats", default=1, show_default=True, help="Runs of each stage; medians reported.")
@click.option("--stages", default="", help='Only these stages, comma-separated: inputs, softmax, evaluation (the '
                                            'earlier ones\' work being in the work dirs from a previous run).')
@utils.friendly_errors
def main(reference, folder, base_speakers, copies, segments, out, repeats, stages):
    """Peak memory of training and evaluation, a corpus against one ten times its size."""
    only = [name.strip() for name in stages.split(",")] if stages else None
    unknown = set(only or ()) - {name.split(",")[0] for name, _ in STAGES}
    if unknown:
        raise click.UsageError(f"--stages: no stage {', '.join(sorted(unknown))} (inputs, softmax, evaluation)")
    reference_hours, reference_speakers = hours(reference)
    large = large_corpus(folder, reference_hours, base_speakers, copies)
    large_hours, large_speakers = hours(large)
    record = {"machine": common.machine(), "repeats": repeats, "code_version": utils.code_version(),
              "reference": {"hours": reference_hours, "speakers": reference_speakers},
              "large": {"hours": large_hours, "speakers": large_speakers}, "segments": segments}
    record["reference"]["stages"] = run_stages(reference, folder / "work-reference", int(reference_speakers * 0.8),
                                               segments, repeats, only)
    record["large"]["stages"] = run_stages(large, folder / "work-large", int(large_speakers * 0.8), segments, repeats,
                                           only)
    rows = [("corpora", f"reference {reference_hours:.2f} h, {reference_speakers} speakers; large {large_hours:.2f} h, "
                        f"{large_speakers} speakers")]
    for name in record["large"]["stages"]:
        small, big = record["reference"]["stages"][name][1], record["large"]["stages"][name][1]
        rows.append((f"{name}: peak RSS reference / large", f"{small / MB:.0f} / {big / MB:.0f} MB (**{big / small:.2f}x**)"))
    common.publish(record, rows, out)


if __name__ == "__main__":
    main()
