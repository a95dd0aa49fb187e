"""Stage 3: use the trained model on any recordings (wav or flac, any sample rate).

    python ml/3_embed_verify_identify.py embed me.wav [--out me.npy]
    python ml/3_embed_verify_identify.py verify a.flac b.wav
    python ml/3_embed_verify_identify.py enroll alice alice1.wav alice2.wav
    python ml/3_embed_verify_identify.py identify who.wav
    python ml/3_embed_verify_identify.py --run softmax verify a.flac b.wav   # a given run, not the latest

Reads  the chosen checkpoint of the default run (the last of frozen, triplet, softmax that has one) or of --run,
       its norm.json, and the EER threshold of its evaluation, runs/<run>/evaluation/<checkpoint>/report.json
       (verify and identify; --threshold instead).
Writes embed: the .npy file; enroll: <workdir>/gallery/<name>.npy and gallery.json (the model enrolled with)
"""
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import numpy as np  # noqa: E402

import utils  # noqa: E402
from ml.inference import Speakers  # noqa: E402

RUNS = ("frozen", "triplet", "softmax")

AUDIO = click.Path(dir_okay=False, path_type=Path)


@click.group()
@utils.workdir_option
@click.option("--run", type=click.Choice(RUNS), default=None,
              help="Use this run's latest checkpoint [default: the last of frozen, triplet, softmax that has one].")
@click.option("--threshold", type=float, default=None,
              help="Decide verify/identify at this cosine score [default: the EER point of the run's evaluation].")
@click.pass_context
def main(context, run, threshold):
    """Embed, verify, enroll and identify recordings with a trained model (the default run's, or --run's)."""
    utils.print_overrides()
    context.obj = {"run": run, "threshold": threshold}


@main.command()
@click.argument("audio", type=AUDIO)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the embedding [default: AUDIO with .npy].")
@click.pass_obj
@utils.friendly_errors
def embed(options, audio, out):
    """Write the embedding of AUDIO as a .npy file."""
    vector = Speakers(run=options["run"], threshold=options["threshold"]).embed(audio)
    out = out or audio.with_suffix(".npy")
    with utils.atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, vector.astype(np.float32), allow_pickle=False)
    print(f"{audio}: embedding of {vector.size} values written to {out}")


@main.command()
@click.argument("first", type=AUDIO)
@click.argument("second", type=AUDIO)
@click.pass_obj
@utils.friendly_errors
def verify(options, first, second):
    """Say whether FIRST and SECOND are spoken by the same speaker."""
    speakers = Speakers(run=options["run"], threshold=options["threshold"])
    score, same = speakers.verify(first, second)
    print(f"score {score:.3f}, threshold {speakers.threshold():.3f} (EER point of its evaluation, or --threshold): "
          f"{'same speaker' if same else 'different speakers'}")


@main.command()
@click.argument("name")
@click.argument("audio", type=AUDIO, nargs=-1, required=True)
@click.pass_obj
@utils.friendly_errors
def enroll(options, name, audio):
    """Enroll NAME from one or more AUDIO files into the gallery."""
    target = Speakers(run=options["run"], threshold=options["threshold"]).enroll(name, list(audio))
    print(f"enrolled {name} from {len(audio)} file(s): {target}")


@main.command()
@click.argument("audio", type=AUDIO)
@click.pass_obj
@utils.friendly_errors
def identify(options, audio):
    """Find the enrolled speaker of AUDIO ("unknown" when no score reaches the threshold)."""
    speakers = Speakers(run=options["run"], threshold=options["threshold"])
    name, scores = speakers.identify(audio)
    for candidate, score in list(scores.items())[:5]:
        print(f"  {candidate:20s} {score:.3f}")
    print(f"{audio}: {name} (threshold {speakers.threshold():.3f})")


if __name__ == "__main__":
    main()
