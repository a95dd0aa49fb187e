"""Stage 2: evaluate a trained model on the speakers it never saw, and on the training speakers' test split.

Reads  <workdir>/runs/<run>/ (its chosen checkpoint, or --checkpoint), <workdir>/inputs/, the feature cache.
Writes <workdir>/runs/<run>/evaluation/<checkpoint>/: report.json (eer, min_dcf, sap, san,
       identification_accuracy, ... and the EER threshold that ml/3_embed_verify_identify.py uses with this
       checkpoint, and the AS-norm figures and threshold), asnorm_cohort.npy (the AS-norm cohort's embeddings, for
       stage 3's --asnorm), det_curve.png, score_histograms.png, embedding_map.png, training_curves.png.
The default run is the last of the chain that has a checkpoint (frozen, else triplet, else softmax). An
evaluation that exists for the same checkpoint, inputs and settings is shown again, not recomputed.
"""
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import constants  # noqa: E402
import utils  # noqa: E402
from ml import checkpoints  # noqa: E402
from ml.inputs import checked_corpus, checked_record  # noqa: E402

RUNS = ("frozen", "triplet", "softmax")
REPORT_KEYS = {"eer": utils.NUMBER, "eer_threshold": utils.NUMBER}  # besides its checkpoint, settings and time
# Settings that change an evaluation's figures without changing the model or the inputs. The corpus is not named by
# its path (one corpus has many spellings): the inputs' cache and the report's corpus_audio_digest pin it.
EVALUATION_SETTINGS = ("UTTERANCE_POOLING", "SAP_SAN_WINDOWS_PER_SPEAKER", "MAX_IMPOSTOR_TRIALS", "DCF_P_TARGET",
                       "DCF_COST_MISS", "DCF_COST_FALSE_ALARM", "PROJECTION", "SEED", "SPLIT",
                       "NUM_SPEAKERS_CLASSIFICATION_TASK", "ASNORM_COHORT_UTTERANCES", "ASNORM_TOP_K")


@click.command()
@utils.workdir_option
@click.option("--run", type=click.Choice(RUNS), default=None,
              help="Which training run to evaluate [default: the last of the chain that has a checkpoint: "
                   "frozen, else triplet, else softmax].")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="A weights file of that run [default: its latest].")
@click.option("--force", is_flag=True, help="Compute the evaluation again even when it exists.")
@utils.friendly_errors
def main(run, checkpoint, force):
    """Closed-set identification, SAP/SAN and speaker verification (EER, minDCF) with plots."""
    start = time.perf_counter()
    utils.stop_cleanly_on_termination()
    utils.print_overrides()
    record = checked_record()
    mode, state, entry = checkpoints.resolve_checkpoint(run, checkpoint)
    folder = checkpoints.evaluation_folder(mode, entry)
    with checkpoints.RunFolder(mode).lock():
        checkpoints.check_trained_on(mode, state, record)
        settings = utils.settings_snapshot(EVALUATION_SETTINGS)
        again = f"python ml/2_evaluate_unseen_speakers.py --run {mode}" + (f" --checkpoint {checkpoint}" if checkpoint
                                                                          else "") + " --force"
        # a report, stored or new, describes the corpus as stage 0 last saw it
        corpus, audio = checked_corpus(record["built_from"])
        report = None if force else checkpoints.existing_evaluation(
            folder / "report.json", mode, state, entry, settings, again, "stage 3", keys=REPORT_KEYS,
            unseen=record["built_from"].get("unseen_sources_digest"), audio=audio)
        if report is not None:
            with utils.stored_record(folder / "report.json", again):  # one damaged inside: refused in one line
                summary(report, folder, start)
            return
        report = evaluate(mode, entry, folder, settings, record, corpus, audio)
    summary(report, folder, start)


def evaluate(mode, entry, folder, settings, record, corpus, audio):
    """Compute the evaluation of the run's checkpoint on `corpus` (checked_corpus), write report.json and the plots
    into `folder`."""
    utils.import_tensorflow_quietly()
    from ml import embeddings, evaluation, plots
    from ml.inputs import corpus_cache, load_inputs

    unseen_speakers = record["built_from"]["unseen_speakers"]  # the corpus's split, as checked_corpus found it
    inputs = load_inputs(expected=record)
    cache = corpus_cache(corpus, inputs.record)
    trained = embeddings.load_trained_model(mode, entry=entry, settings="inputs")
    print(f"model: {trained.description}")
    window, utterance = evaluation.closed_set_accuracy(trained.model, inputs)
    report, arrays = evaluation.unseen_speaker_report(trained.model, cache, corpus,
                                                      unseen_speakers, trained.norm,
                                                      cohort=evaluation.cohort(corpus, inputs))
    report.update({"identification_accuracy": utterance, "identification_window_accuracy": window,
                   "num_training_speakers": len(inputs.speakers), "num_classes": len(trained.classes),
                   "checkpoint": trained.reference, "run": trained.mode, "settings": settings,
                   "checkpoint_metric": trained.entry.get("metric"),
                   # which unseen audio: a report of other audio is not shown as this checkpoint's (existing_evaluation)
                   "unseen_sources_digest": inputs.record.get("unseen_sources_digest"),
                   "corpus_audio_digest": audio,  # the corpus as evaluated: files removed since stage 0 too
                   "recipe": constants.RECIPE, "code_version": utils.code_version(),
                   "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    utils.ensure_writable_dir(folder)
    # the old report goes first and the new one comes last: a kill in between leaves no report (computed again
    # next time), never an old report beside new plots and cohort
    (folder / "report.json").unlink(missing_ok=True)
    if "cohort_embeddings" in arrays:  # stage 3's AS-norm (--asnorm) scores against the same cohort
        path = utils.save_array(folder / evaluation.COHORT_FILE, arrays["cohort_embeddings"])
        report["asnorm"]["cohort_file"] = {"file": evaluation.COHORT_FILE, "sha256": utils.file_digest(path)[1]}
    else:  # no cohort this time: none of an earlier evaluation left beside this report
        (folder / evaluation.COHORT_FILE).unlink(missing_ok=True)
    plots.det_plot(arrays["scores"], arrays["is_target"], report["eer"], folder / "det_curve.png")
    plots.score_histograms(arrays["scores"], arrays["is_target"], report["eer_threshold"],
                           folder / "score_histograms.png")
    plots.embedding_map(arrays["utterance_embeddings"], arrays["utterance_speakers"], folder / "embedding_map.png")
    plots.training_curves({m: checkpoints.RunFolder(m).history for m in checkpoints.CHAIN},
                          folder / "training_curves.png")
    utils.write_json(folder / "report.json", report)
    return report


def summary(report, folder, start):
    """The evaluation's figures, as lines for the terminal."""
    label = "" if report["label_free"] else " (per-speaker normalisation: uses each speaker's identity)"
    print(f"\nnormalisation {report['normalization']}{label}")
    print(f"closed set, {report['num_training_speakers']} training speakers: identification accuracy "
          f"{report['identification_accuracy']:.1%} per utterance, {report['identification_window_accuracy']:.1%} "
          f"per window")
    print(f"unseen speakers: {report['num_unseen_speakers']}, {report['num_unseen_utterances']} utterances, "
          f"{report['num_trials']:,} trials ({report['num_target_trials']:,} same-speaker)")
    if report.get("num_short_utterances"):
        print(f"  {report['num_short_utterances']} unseen utterance(s) shorter than one window left out "
              f"(listed in report.json), e.g. {next(iter(report['short_utterances']))}")
    print(f"SAP = {report['sap']:.3f}   SAN = {report['san']:.3f}   (mean cosine distance of windows)")
    print(f"EER = {report['eer']:.2%}   minDCF(p={report['min_dcf_p_target']}) = {report['min_dcf']:.3f}   "
          f"threshold = {report['eer_threshold']:.3f}")
    if report.get("asnorm"):
        print(f"with AS-norm (cohort {report['asnorm']['cohort_utterances']} training utterances, top "
              f"{report['asnorm']['top_k']}): EER = {report['asnorm']['eer']:.2%}   minDCF = "
              f"{report['asnorm']['min_dcf']:.3f}")
    print(f"report and plots in {folder} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
