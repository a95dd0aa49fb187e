"""The pipeline learns: a short schedule on a small demo corpus, through the numbered scripts, must beat chance
clearly (a model that learns nothing fails these), for the conv model and for the original's dense one."""
import importlib.util
import json

import pytest
from click.testing import CliRunner

import constants
import utils
from audio.demo_corpus import write_demo_corpus
from ml import checkpoints

TRAINING_SPEAKERS, UNSEEN_SPEAKERS = 8, 4


def run_script(path, *arguments):
    spec = importlib.util.spec_from_file_location(path.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = CliRunner().invoke(module.main, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning") / "corpus"
    write_demo_corpus(root, num_speakers=TRAINING_SPEAKERS + UNSEEN_SPEAKERS, utterances_per_speaker=8,
                      progress=False)
    return root


@pytest.mark.parametrize("model, epochs, max_eer", [("conv", 4, 0.25), ("dense", 6, 0.40)])  # chance: 50 %
def test_a_short_schedule_beats_chance_in_identification_and_verification(corpus, tmp_path, monkeypatch, model,
                                                                          epochs, max_eer):
    for name, value in {"WORKDIR": str(tmp_path / "work"), "CORPUS_PATH": str(corpus), "NUM_WORKERS": 1,
                        "SPLIT": "auto", "NUM_SPEAKERS_CLASSIFICATION_TASK": TRAINING_SPEAKERS,
                        "MAX_COUNT_PER_CLASS": 100, "BATCH_SIZE": 300, "SPEED_PERTURBATION": [], "MODEL": model,
                        "SOFTMAX_SCHEDULE_EPOCHS": epochs, "SOFTMAX_WARMUP_STEPS": 10}.items():
        monkeypatch.setattr(constants, name, value)
    run_script("ml/0_generate_inputs.py")
    run_script("ml/1_train_triplet_softmax_model.py", "--loss_on_softmax")
    run_script("ml/2_evaluate_unseen_speakers.py")
    state = checkpoints.RunFolder("softmax").state()
    chosen = checkpoints.RunFolder("softmax").chosen(state)
    report = json.loads((checkpoints.evaluation_folder("softmax", chosen) / "report.json").read_text())
    chance = 1 / report["num_training_speakers"]  # some of the 8 are validation speakers
    assert report["identification_window_accuracy"] >= 3 * chance, report["identification_window_accuracy"]
    print(f"{model}: accuracy {report['identification_window_accuracy']:.3f}, EER {report['eer']:.3f}")
    assert report["eer"] <= max_eer, report["eer"]


def test_the_chain_never_ends_with_a_model_worse_than_its_start_on_the_validation_speakers(corpus, tmp_path,
                                                                                            monkeypatch):
    for name, value in {"WORKDIR": str(tmp_path / "work"), "CORPUS_PATH": str(corpus), "NUM_WORKERS": 1,
                        "SPLIT": "auto", "NUM_SPEAKERS_CLASSIFICATION_TASK": TRAINING_SPEAKERS,
                        "MAX_COUNT_PER_CLASS": 100, "BATCH_SIZE": 300, "SPEED_PERTURBATION": [],
                        "SOFTMAX_SCHEDULE_EPOCHS": 3, "SOFTMAX_WARMUP_STEPS": 10, "CHECKPOINT_EVERY_STEPS": 2,
                        "TRIPLET_PATIENCE": 3, "TRIPLET_LEARNING_RATE": 0.5}.items():  # a rate that ruins it
        monkeypatch.setattr(constants, name, value)
    assert "2 validation" in run_script("ml/0_generate_inputs.py")
    run_script("ml/1_train_triplet_softmax_model.py", "--loss_on_softmax")
    softmax = checkpoints.RunFolder("softmax").state()
    assert softmax["best"]["metric"]["name"] == "val_eer"
    output = run_script("ml/1_train_triplet_softmax_model.py", "--loss_on_embeddings", "--normalize_embeddings",
                        "--steps", "40")
    triplet = checkpoints.RunFolder("triplet").state()
    assert "stopped at step" in output and triplet["latest"]["count"] < 40 and triplet["finished"]
    start = next(c for c in triplet["checkpoints"] if c["count"] == 0)
    chosen = checkpoints.RunFolder("triplet").chosen(triplet)
    assert chosen["metric"]["value"] <= start["metric"]["value"]
    assert all(chosen["metric"]["value"] <= c["metric"]["value"] for c in triplet["checkpoints"])
    again = run_script("ml/1_train_triplet_softmax_model.py", "--loss_on_embeddings", "--normalize_embeddings",
                       "--steps", "40")
    assert "complete" in again and "early stopping" in again  # a stopped run is finished: nothing to train
    run_script("ml/2_evaluate_unseen_speakers.py")  # the default run, triplet: its chosen checkpoint
    assert (checkpoints.evaluation_folder("triplet", chosen) / "report.json").exists()


def test_a_triplet_run_killed_after_its_starting_checkpoint_resumes_from_it(corpus, tmp_path, monkeypatch):
    """With validation speakers the triplet stage saves its starting point (step 0) first. Saved before the optimizer
    had its variables, that checkpoint was refused on resume ("does not fit the model and optimizer"), so a run killed
    before its next checkpoint could only start again with --fresh."""
    from ml import training
    settings = {"WORKDIR": str(tmp_path / "work"), "CORPUS_PATH": str(corpus), "NUM_WORKERS": 1, "SPLIT": "auto",
                "NUM_SPEAKERS_CLASSIFICATION_TASK": TRAINING_SPEAKERS, "MAX_COUNT_PER_CLASS": 60, "BATCH_SIZE": 300,
                "SPEED_PERTURBATION": [], "SOFTMAX_SCHEDULE_EPOCHS": 1, "SOFTMAX_WARMUP_STEPS": 2,
                "CHECKPOINT_EVERY_STEPS": 3}
    for name, value in settings.items():
        monkeypatch.setattr(constants, name, value)
    run_script("ml/0_generate_inputs.py")
    run_script("ml/1_train_triplet_softmax_model.py", "--loss_on_softmax")
    triplet = ("ml/1_train_triplet_softmax_model.py", "--loss_on_embeddings", "--normalize_embeddings", "--steps", "3")
    sampled = training.TripletSampler.batch

    def killed(self, size=None, rng=None):
        raise KeyboardInterrupt  # the first step's batch: after the step-0 checkpoint, before step 3's

    monkeypatch.setattr(training.TripletSampler, "batch", killed)
    spec = importlib.util.spec_from_file_location("stage1_killed", triplet[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = CliRunner().invoke(module.main, list(triplet[1:]))
    assert result.exit_code == 1 and "interrupted; nothing half-written is kept, and the same command run again goes on" \
        in result.output, result.output  # one line saying what a re-run does, not click's bare "Aborted!"
    run = checkpoints.RunFolder("triplet")
    assert [c["count"] for c in run.state()["checkpoints"]] == [0]
    monkeypatch.setattr(training.TripletSampler, "batch", sampled)
    assert "steps 1-3, from" in run_script(*triplet)
    assert [c["count"] for c in run.state()["checkpoints"]] == [0, 3]
    assert (run.folder / "history.csv").read_text().split()[1:] and \
        [line.split(",")[0] for line in (run.folder / "history.csv").read_text().split()[1:]] == ["1", "2", "3"]


def test_a_step_0_checkpoint_of_an_earlier_version_loads_without_its_optimizer_state(workdir):
    """Earlier versions saved step 0 before the optimizer existed: Keras skips its (absent) optimizer variables, which
    at step 0 hold nothing to lose; at any later step the same file is refused."""
    import keras

    def compiled():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
        model.compile(optimizer=keras.optimizers.Adam(0.001), loss="mse")
        return model

    run = checkpoints.RunFolder("triplet")
    (run.folder / "weights").mkdir(parents=True)
    compiled().save_weights(run.folder / "weights" / "step-000000.weights.h5")  # no optimizer variables yet
    model = compiled()
    model.optimizer.build(model.trainable_variables)  # as the triplet stage builds it before loading
    for count in (0, 100):
        path = run.folder / "weights" / f"step-{count:06d}.weights.h5"
        if count:
            path.write_bytes((run.folder / "weights" / "step-000000.weights.h5").read_bytes())
        size, digest = utils.file_digest(path)
        entry = {"file": f"weights/{path.name}", "count": count, "bytes": size, "sha256": digest}
        if count == 0:
            assert run.load_into(model, {"checkpoints": [entry]}) == entry
        else:
            with pytest.raises(utils.PipelineError, match="does not fit the model and optimizer.*for optimizer"):
                run.load_into(model, {"checkpoints": [entry]}, fallback=False)
