"""Stage 2: evaluate a trained model on the speakers it never saw, and on the training speakers' test split.

Reads  <workdir>/runs/<run>/ (the latest checkpoint, or --checkpoint), <workdir>/inputs/, the feature cache.
Writes <workdir>/evaluation/report.json (eer, min_dcf, sap, san, identification_accuracy, ... and the EER
       threshold that ml/3_embed_verify_identify.py uses), det_curve.png, score_histograms.png,
       embedding_map.png, training_curves.png
"""
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: find the project

import utils  # noqa: E402
from audio.cache import FeatureCache  # noqa: E402
from audio.corpus import find_corpus, split_speakers  # noqa: E402
from ml import embeddings, evaluation, plots  # noqa: E402
from ml.checkpoints import RunFolder  # noqa: E402
from ml.inputs import load_inputs  # noqa: E402


@click.command()
@click.option("--run", type=click.Choice(embeddings.RUN_ORDER), default=None,
              help="Which training run to evaluate [default: the one that saved last].")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A weights file of that run [default: its latest].")
@utils.friendly_errors
def main(run, checkpoint):
    """Closed-set identification, SAP/SAN and speaker verification (EER, minDCF) with plots."""
    start = time.perf_counter()
    utils.print_overrides()
    corpus = find_corpus()
    _, unseen_speakers = split_speakers(corpus.speakers)
    inputs = load_inputs()
    model, classes, source = embeddings.load_trained_model(run, checkpoint)
    if classes != inputs.classes:
        raise utils.PipelineError("the checkpoint was trained on other speakers than the current inputs hold; "
                                  "re-run training, or ml/0_generate_inputs.py with the settings it was trained with")
    print(f"model: {source}")

    window, utterance = evaluation.closed_set_accuracy(model, inputs)
    report, arrays = evaluation.unseen_speaker_report(model, FeatureCache(corpus.root), corpus, unseen_speakers,
                                                      inputs.norm)
    report.update({"identification_accuracy": utterance, "identification_window_accuracy": window,
                   "num_training_speakers": len(inputs.speakers), "num_classes": len(classes),
                   "checkpoint": source,
                   "created": time.strftime("%Y-%m-%d %H:%M:%S")})

    folder = utils.ensure_writable_dir(utils.work_path("evaluation"))
    plots.det_plot(arrays["scores"], arrays["is_target"], report["eer"], folder / "det_curve.png")
    plots.score_histograms(arrays["scores"], arrays["is_target"], report["eer_threshold"], folder / "score_histograms.png")
    plots.embedding_map(arrays["utterance_embeddings"], arrays["utterance_speakers"], folder / "embedding_map.png")
    plots.training_curves({mode: RunFolder(mode).history for mode in ("softmax", "triplet", "frozen")},
                          folder / "training_curves.png")
    utils.write_json(folder / "report.json", report)

    label = "" if report["label_free"] else " (per-speaker normalisation: uses each speaker's identity)"
    print(f"\nnormalisation {report['normalization']}{label}")
    print(f"closed set, {len(inputs.speakers)} training speakers: identification accuracy {utterance:.1%} per "
          f"utterance, {window:.1%} per window")
    print(f"unseen speakers: {report['num_unseen_speakers']}, {report['num_unseen_utterances']} utterances, "
          f"{report['num_trials']:,} trials ({report['num_target_trials']:,} same-speaker)")
    print(f"SAP = {report['sap']:.3f}   SAN = {report['san']:.3f}   (mean cosine distance of windows)")
    print(f"EER = {report['eer']:.2%}   minDCF(p={report['min_dcf_p_target']}) = {report['min_dcf']:.3f}   "
          f"threshold = {report['eer_threshold']:.3f}")
    print(f"report and plots in {folder} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
