"""What the pipeline learns, end to end: the conv model beside the original dense one, label-free and not.

By default: the conv model with the default settings, then with the original's learning rate
(SOFTMAX_LR_SCHEDULE=plateau), then with that and without the speed copies (SPEED_PERTURBATION), beside
the original dense model in the last setting (the original's recipe), each label-free ("global") and with
the original's per-speaker normalisation. --epochs also sets the length of the default learning-rate
schedule (SOFTMAX_SCHEDULE_EPOCHS).

For each configuration (model x normalisation, optionally with settings overridden) the numbered
scripts run in order in a work dir of their own under --workdir: inputs, softmax pre-training
(--epochs), an evaluation of the softmax embeddings, triplet training (--steps), frozen re-training
(--frozen-epochs) and the final evaluation. The table collects the accuracies of the training
speakers' test utterances, the triplet test loss (moving average) at 2k and 5k steps, and the unseen
speakers' SAP/SAN, EER and minDCF.

    VCTK_CORPUS_PATH=../shared/data/so-dev-vctk092 DEEP_SPEAKER_SPLIT=auto python bench/quality.py

An ablation overrides constants for one configuration, e.g. `--configs conv:global:GAIN_AUGMENTATION_STD=0`
(several separated by ";"). A configuration that overrides triplet settings (TRIPLET_*) starts from the
softmax run of the same configuration without them, when that one exists in --workdir.

Each stage resumes and training stops at the given totals, so an interrupted run can be started again
with the same command (a finished one then only re-runs the evaluations).
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import utils  # noqa: E402
from bench import common  # noqa: E402

TRAIN = "ml/1_train_triplet_softmax_model.py"


def stage(env, *command):
    """Run one numbered script with `env`; stop with its output when it fails."""
    print(f"  $ {' '.join(command)}", flush=True)
    result = subprocess.run([sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise utils.PipelineError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def triplet_loss_at(history, step):
    """Moving-average test loss over the MOVING_AVERAGE_STEPS (100) steps up to `step`, or None."""
    if not history.exists():
        return None
    with open(history, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if step - 100 < int(r["step"]) <= step]
    return sum(float(r["test_loss"]) for r in rows) / len(rows) if len(rows) == 100 else None


def train_up_to(env, workdir, mode, total, *flags):
    """Train `mode` until its checkpoint count reaches `total` (a finished run trains nothing)."""
    stage(env, TRAIN, *flags, "--steps" if mode == "triplet" else "--epochs", str(total))


def chosen_checkpoint(workdir, mode):
    """The checkpoint stage 2 evaluates by default (ml/checkpoints.py, RunFolder.chosen)."""
    state = utils.read_json(workdir / "runs" / mode / "state.json")
    best = state.get("best")
    return best if mode == "triplet" and best and best["metric"]["name"] == "val_eer" else state["latest"]


def evaluation_report(workdir, mode):
    """The report of the evaluation of `mode`'s chosen checkpoint (runs/<mode>/evaluation/<checkpoint>/)."""
    chosen = chosen_checkpoint(workdir, mode)
    name = Path(chosen["file"]).name.removesuffix(".weights.h5")
    report = utils.read_json(workdir / "runs" / mode / "evaluation" / name / "report.json")
    evaluated = (report or {}).get("checkpoint") or {}
    if evaluated.get("file") != chosen["file"] or evaluated.get("sha256", chosen["sha256"]) != chosen["sha256"]:
        raise utils.PipelineError(f"the {mode} run's chosen checkpoint {chosen['file']} of {workdir} has no "
                                  f"evaluation of its own (stage 2 may have fallen back to an older one): see above")
    return report


def trained_count(workdir, mode):
    """The checkpoint count a run reached (its latest checkpoint), as its state records it."""
    return utils.read_json(workdir / "runs" / mode / "state.json")["latest"]["count"]


def parse_configuration(text):
    """(model, normalisation, {NAME: value}) from "model:normalisation[:NAME=value;NAME=value]"."""
    model, normalization, *rest = text.split(":", 2)
    overrides = dict(item.split("=", 1) for item in rest[0].split(";") if item) if rest else {}
    return model, normalization, overrides


def configuration_name(model, normalization, overrides):
    """The work dir name of a configuration: model-normalisation[-NAME=value...]."""
    return "-".join([model, normalization] + [f"{k}={v}" for k, v in sorted(overrides.items())])


def share_softmax(base, workdir):
    """Start `workdir` from the cache, inputs and softmax run of `base`, if it has one and workdir is new."""
    if workdir.exists() or not (base / "runs" / "softmax" / "state.json").exists():
        return
    for part in ("cache", "inputs", "runs/softmax"):
        shutil.copytree(base / part, workdir / part)


def run_configuration(model, normalization, overrides, workdir, epochs, steps, frozen_epochs):
    """All stages of one configuration; returns its row of results."""
    env = {**os.environ, "DEEP_SPEAKER_WORKDIR": str(workdir), "DEEP_SPEAKER_MODEL": model,
           "DEEP_SPEAKER_NORMALIZATION": normalization, "DEEP_SPEAKER_SOFTMAX_SCHEDULE_EPOCHS": str(epochs),
           **{f"DEEP_SPEAKER_{name}": value for name, value in overrides.items()}}
    start = time.perf_counter()
    stage(env, "ml/0_generate_inputs.py")
    train_up_to(env, workdir, "softmax", epochs, "--loss_on_softmax")
    stage(env, "ml/2_evaluate_unseen_speakers.py", "--run", "softmax")
    softmax_report = evaluation_report(workdir, "softmax")
    train_up_to(env, workdir, "triplet", steps, "--loss_on_embeddings", "--normalize_embeddings")
    train_up_to(env, workdir, "frozen", frozen_epochs, "--loss_on_softmax", "--freeze_embedding_weights",
                "--normalize_embeddings")
    stage(env, "ml/2_evaluate_unseen_speakers.py", "--run", "frozen")
    report = evaluation_report(workdir, "frozen")
    softmax = utils.read_json(workdir / "runs" / "softmax" / "result.json")
    frozen = utils.read_json(workdir / "runs" / "frozen" / "result.json")
    history = workdir / "runs" / "triplet" / "history.csv"
    return {"model": model, "normalization": normalization, "overrides": overrides, "label_free": report["label_free"],
            "softmax_epochs": trained_count(workdir, "softmax"), "triplet_steps": trained_count(workdir, "triplet"),
            "frozen_epochs": trained_count(workdir, "frozen"),
            "softmax_window": softmax["window_accuracy"], "softmax_utterance": softmax["utterance_accuracy"],
            "frozen_window": frozen["window_accuracy"], "frozen_utterance": frozen["utterance_accuracy"],
            "triplet_test_loss_2k": triplet_loss_at(history, 2000),
            "triplet_test_loss_5k": triplet_loss_at(history, 5000),
            "softmax_only_eer": softmax_report["eer"], "softmax_only_min_dcf": softmax_report["min_dcf"],
            "eer": report["eer"], "min_dcf": report["min_dcf"], "sap": report["sap"], "san": report["san"],
            "num_unseen_speakers": report["num_unseen_speakers"],
            "softmax_chosen": chosen_checkpoint(workdir, "softmax"), "triplet_chosen": chosen_checkpoint(workdir, "triplet"),
            "minutes": (time.perf_counter() - start) / 60}


def describe_override(name, value):
    """An override for the table: NAME=value, or what an empty list means."""
    if name == "SPEED_PERTURBATION" and value == "":
        return "no speed copies"
    if name == "SOFTMAX_LR_SCHEDULE" and value == "plateau":
        return "the original's learning rate"
    return f"{name}={value}"


def percent(value):
    """A fraction as a percentage for the table, or a dash."""
    return "-" if value is None else f"{value:.1%}"


@click.command()
@click.option("--configs", default="conv:global,conv:per_speaker,conv:global:SOFTMAX_LR_SCHEDULE=plateau,"
              "conv:per_speaker:SOFTMAX_LR_SCHEDULE=plateau,conv:global:SOFTMAX_LR_SCHEDULE=plateau;SPEED_PERTURBATION=,"
              "dense:global:SOFTMAX_LR_SCHEDULE=plateau;SPEED_PERTURBATION=,"
              "conv:per_speaker:SOFTMAX_LR_SCHEDULE=plateau;SPEED_PERTURBATION=,"
              "dense:per_speaker:SOFTMAX_LR_SCHEDULE=plateau;SPEED_PERTURBATION=",
              show_default=True, help="Comma-separated model:normalisation[:NAME=value;...] configurations.")
@click.option("--epochs", default=3, show_default=True,
              help="Softmax pre-training epochs (test accuracy peaks within 1-3 epochs on the dev corpus).")
@click.option("--steps", default=5000, show_default=True, help="Triplet steps.")
@click.option("--frozen-epochs", default=5, show_default=True, help="Frozen re-training epochs.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Parent of the configurations' work dirs [default: <work dir>/quality].")
@utils.friendly_errors
def main(configs, epochs, steps, frozen_epochs, workdir):
    """Run every configuration through all stages and print one table."""
    utils.print_overrides()
    workdir = workdir or utils.work_path("quality")
    rows = []
    for config in configs.split(","):
        model, normalization, overrides = parse_configuration(config)
        print(f"{model} model, {normalization} normalisation, overrides {overrides or 'none'}:", flush=True)
        name = configuration_name(model, normalization, overrides)
        softmax_overrides = {k: v for k, v in overrides.items() if not k.startswith("TRIPLET_")}
        if softmax_overrides != overrides:
            share_softmax(workdir / configuration_name(model, normalization, softmax_overrides), workdir / name)
        rows.append(run_configuration(model, normalization, overrides, workdir / name, epochs, steps, frozen_epochs))
        print(f"  done in {rows[-1]['minutes']:.0f} min: {json.dumps({k: v for k, v in rows[-1].items() if k != 'minutes'})}",
              flush=True)
    print(f"\n{time.strftime('%Y-%m-%d')}; softmax {epochs} epochs, triplet {steps} steps, frozen {frozen_epochs} "
          f"epochs; accuracies on the training speakers' test utterances, the rest on the unseen speakers\n")
    print("| model | normalisation | overrides | softmax acc. window / utterance | frozen acc. window / utterance | "
          "frozen / softmax | triplet test loss 2k / 5k | SAP / SAN | EER softmax only | EER | minDCF |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = r["normalization"] + ("" if r["label_free"] else " (uses the speaker's identity)")
        losses = " / ".join("-" if v is None else f"{v:.3f}" for v in (r["triplet_test_loss_2k"], r["triplet_test_loss_5k"]))
        changed = ", ".join(describe_override(k, v) for k, v in r["overrides"].items()) or "-"
        print(f"| {r['model']} | {label} | {changed} | {percent(r['softmax_window'])} / {percent(r['softmax_utterance'])} | "
              f"{percent(r['frozen_window'])} / {percent(r['frozen_utterance'])} | "
              f"{r['frozen_window'] / r['softmax_window']:.2f} | {losses} | {r['sap']:.3f} / {r['san']:.3f} | "
              f"{percent(r['softmax_only_eer'])} | {percent(r['eer'])} | {r['min_dcf']:.3f} |")
    out = common.write_results(workdir / "quality.json", rows,
                               key=lambda row: configuration_name(row["model"], row["normalization"], row["overrides"]))
    print(f"written to {out} (rows of other configurations run before into it are kept)")


if __name__ == "__main__":
    main()
