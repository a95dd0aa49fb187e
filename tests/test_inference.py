"""Evaluation script and inference on a tiny demo corpus with a briefly trained model."""
import importlib.util
import json
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import constants
import utils
from audio.cache import FeatureCache
from audio.corpus import find_corpus, split_speakers
from audio.demo_corpus import write_demo_corpus
from ml import inputs as ml_inputs
from ml import training
from ml.inference import UNKNOWN, Speakers


def load_script(path):
    spec = importlib.util.spec_from_file_location(path.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A demo corpus of 5 speakers (3 train, 2 unseen), its inputs, a model trained for 2 epochs, evaluated."""
    root = tmp_path_factory.mktemp("inference")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"WORKDIR": str(root / "work"), "NUM_WORKERS": 1, "SPLIT": "auto", "BATCH_SIZE": 120,
                            "NUM_SPEAKERS_CLASSIFICATION_TASK": 3, "MAX_COUNT_PER_CLASS": 30,
                            "CORPUS_PATH": str(root / "corpus")}.items():
            patch.setattr(constants, name, value)
        write_demo_corpus(root / "corpus", num_speakers=5, utterances_per_speaker=5, progress=False)
        corpus = find_corpus()
        train, unseen = split_speakers(corpus.speakers)
        cache = FeatureCache(corpus.root)
        cache.build([u for s in corpus.speakers for u in corpus.utterances[s]], progress=False)
        built = ml_inputs.build_inputs(cache, corpus, train, unseen, progress=False)
        ml_inputs.save_inputs(built, ml_inputs.expected_record(cache, corpus, train, unseen))
        training.train_softmax(ml_inputs.load_inputs(), epochs=2, verbose=0)
        result = CliRunner().invoke(load_script("ml/2_evaluate_unseen_speakers.py").main, [])
        yield root, corpus, result


def test_the_evaluation_writes_a_report_with_every_field_and_the_plots(trained):
    root, _, result = trained
    assert result.exit_code == 0, result.output
    assert "EER = " in result.output and "SAP = " in result.output
    folder = root / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002"
    report = json.loads((folder / "report.json").read_text())
    for key in ("eer", "min_dcf", "sap", "san", "identification_accuracy", "num_unseen_speakers", "num_trials"):
        assert key in report
    assert report["asnorm"]["cohort_utterances"] > 0 and 0 <= report["asnorm"]["eer"] <= 1
    assert 0 <= report["eer"] <= 0.5 and 0 <= report["min_dcf"] <= 1 and 0 <= report["identification_accuracy"] <= 1
    assert report["num_unseen_speakers"] == 2 and report["num_trials"] == 10 * 9 // 2 and report["label_free"]
    assert 0 <= report["sap"] <= 2 and 0 <= report["san"] <= 2
    for name in ("det_curve", "score_histograms", "embedding_map", "training_curves"):
        assert (folder / f"{name}.png").stat().st_size > 5000


@pytest.fixture
def speakers(trained, monkeypatch):
    root, corpus, _ = trained
    monkeypatch.setattr(constants, "WORKDIR", str(root / "work"))
    return Speakers(), corpus


def test_embed_is_deterministic_unit_length_and_resampling_invariant(speakers, tmp_path):
    model, corpus = speakers
    path = corpus.utterances["p228"][0].path
    first, second = model.embed(path), model.embed(path)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (constants.EMBEDDING_SIZE,) and np.linalg.norm(first) == pytest.approx(1, abs=1e-5)
    audio, rate = sf.read(path)
    sf.write(tmp_path / "same-at-48k.wav", librosa.resample(audio, orig_sr=rate, target_sr=48000), 48000)
    assert float(first @ model.embed(tmp_path / "same-at-48k.wav")) > 0.99


def test_verify_enroll_and_identify_speakers_never_seen_in_training(speakers, monkeypatch):
    model, corpus = speakers
    monkeypatch.setattr(Speakers, "threshold", lambda self: 0.5)
    p228, p229 = corpus.utterances["p228"], corpus.utterances["p229"]
    score, same = model.verify(p228[0].path, p228[0].path)
    assert score == pytest.approx(1, abs=1e-5) and same
    model.enroll("p228", [p228[0].path])
    model.enroll("p229", [u.path for u in p229[:3]])
    assert set(model.enrolled()) == {"p228", "p229"} and model.listing() == {"p228": 1, "p229": 3}
    name, scores = model.identify(p228[0].path)  # its own enrollment: a perfect match
    assert name == "p228" and scores["p228"] == pytest.approx(1, abs=1e-5) and list(scores)[0] == "p228"
    name, scores = model.identify(p229[4].path)
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert name == (list(scores)[0] if list(scores.values())[0] >= 0.5 else UNKNOWN)
    monkeypatch.setattr(Speakers, "threshold", lambda self: 1.01)  # nobody reaches it
    assert model.identify(p228[0].path)[0] == UNKNOWN


def test_the_real_threshold_comes_from_the_evaluation(speakers, trained):
    model, _ = speakers
    folder = trained[0] / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002"
    report = json.loads((folder / "report.json").read_text())
    assert model.threshold() == report["eer_threshold"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not audio at all"), "unreadable"),
    (lambda p: sf.write(p, np.zeros(8000), 8000), "all-silent"),
    (lambda p: sf.write(p, 0.5 * np.sin(np.arange(400)), 8000), "too short"),
    (lambda p: None, "unreadable"),
])
def test_bad_files_give_clear_errors(speakers, tmp_path, make, message):
    model, _ = speakers
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(utils.PipelineError, match=message):
        model.embed(path)


def test_the_command_line_embeds_many_files_with_one_model_and_reports_errors_without_traceback(speakers, trained,
                                                                                               tmp_path):
    _, corpus = speakers
    script = load_script("ml/3_embed_verify_identify.py").main
    folder = corpus.utterances["p229"][0].path.parent
    listed = tmp_path / "list.txt"
    listed.write_text(f"{corpus.utterances['p228'][0].path}\n{tmp_path / 'missing.wav'}\n")
    out = tmp_path / "e.npz"
    result = CliRunner().invoke(script, ["embed", str(folder), str(listed), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "missing.wav: unreadable" in result.output and "6 embedding(s)" in result.output
    with np.load(out) as saved:
        assert saved["embeddings"].shape == (6, constants.EMBEDDING_SIZE) and len(saved["paths"]) == 6
    single = CliRunner().invoke(script, ["embed", str(corpus.utterances["p229"][0].path), "--output",
                                         str(tmp_path / "one.npy"), "--run", "softmax"])  # options after the command
    assert single.exit_code == 0 and np.load(tmp_path / "one.npy").shape == (constants.EMBEDDING_SIZE,)
    bad = CliRunner().invoke(script, ["verify", str(tmp_path / "missing.wav"), str(out)])
    assert bad.exit_code == 2 and "missing.wav" in bad.output
    enrol = CliRunner().invoke(script, ["enroll", "../escape", str(corpus.utterances["p229"][0].path)])
    assert enrol.exit_code == 2 and "cannot name a speaker" in enrol.output
    missing = CliRunner().invoke(script, ["--run", "triplet", "embed", str(corpus.utterances["p229"][0].path)])
    assert missing.exit_code == 2 and "triplet run has no checkpoint" in missing.output


def test_verify_answers_with_its_exit_code_and_the_gallery_grows_lists_and_shrinks(speakers, tmp_path):
    _, corpus = speakers
    shutil.rmtree(utils.work_path("gallery"), ignore_errors=True)  # another test enrolled into it
    script = load_script("ml/3_embed_verify_identify.py").main
    p228, p229 = corpus.utterances["p228"], corpus.utterances["p229"]
    same = CliRunner().invoke(script, ["verify", str(p228[0].path), str(p228[0].path), "--threshold", "0.5", "--json"])
    assert same.exit_code == 0 and json.loads(same.output)["same_speaker"] is True
    never = CliRunner().invoke(script, ["--threshold", "1.01", "verify", str(p228[0].path), str(p228[0].path)])
    assert never.exit_code == 1 and "different speakers" in never.output
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    first = CliRunner().invoke(script, ["enroll", "p228", str(p228[0].path), str(bad)])
    assert first.exit_code == 0 and f"skipped {bad}: unreadable" in first.output and "1 recording(s)" in first.output
    more = CliRunner().invoke(script, ["enroll", "p228", str(p228[1].path), str(p228[0].path)])  # p228[0] is known
    assert "2 recording(s)" in more.output
    replaced = CliRunner().invoke(script, ["enroll", "p228", str(p228[2].path), "--replace"])
    assert "1 recording(s)" in replaced.output
    CliRunner().invoke(script, ["enroll", "p229", str(p229[0].path)])
    listing = CliRunner().invoke(script, ["gallery", "list", "--json"])
    assert json.loads(listing.output) == {"p228": 1, "p229": 1}
    found = CliRunner().invoke(script, ["identify", str(p229[0].path), str(bad), "--threshold", "0.5", "--json"])
    assert found.exit_code == 0 and json.loads(found.stdout)[0]["speaker"] == "p229"
    assert CliRunner().invoke(script, ["gallery", "remove", "p229"]).exit_code == 0
    assert json.loads(CliRunner().invoke(script, ["gallery", "list", "--json"]).output) == {"p228": 1}
    gone = CliRunner().invoke(script, ["gallery", "remove", "p229"])
    assert gone.exit_code == 2 and "not enrolled" in gone.output


def evaluate(*arguments, env=None):
    return CliRunner().invoke(load_script("ml/2_evaluate_unseen_speakers.py").main, list(arguments), env=env)


def test_a_second_evaluation_of_the_same_checkpoint_is_shown_again_not_recomputed(speakers, trained):
    folder = trained[0] / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002"
    before = (folder / "report.json").read_text()
    again = evaluate()
    assert again.exit_code == 0, again.output
    assert "already evaluated" in again.output and "EER = " in again.output
    assert (folder / "report.json").read_text() == before


def test_changed_settings_are_refused_and_leave_the_evaluation_and_its_threshold_alone(speakers, trained,
                                                                                       monkeypatch):
    folder = trained[0] / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002"
    before = (folder / "report.json").read_text()
    monkeypatch.setattr(constants, "FRAMES_PER_WINDOW", 5)
    changed = evaluate()
    message = str(changed.exception) + changed.output
    assert changed.exit_code == 1 and "FRAMES_PER_WINDOW=10, but it is 5 now" in message
    assert (folder / "report.json").read_text() == before
    with pytest.raises(utils.PipelineError, match="FRAMES_PER_WINDOW=10, but it is 5 now"):
        Speakers()


def test_each_checkpoint_has_its_own_evaluation_and_threshold(speakers, trained):
    root = trained[0] / "work" / "runs" / "softmax"
    first = root / "weights" / "epoch-000001.weights.h5"
    with pytest.raises(utils.PipelineError, match="no evaluation of .*epoch-000001.*--run softmax"):
        Speakers(checkpoint=first).threshold()
    assert Speakers(checkpoint=first, threshold=0.3).threshold() == 0.3
    result = evaluate("--run", "softmax", "--checkpoint", str(first))
    assert result.exit_code == 0, result.output
    report = json.loads((root / "evaluation" / "epoch-000001" / "report.json").read_text())
    assert report["checkpoint"]["count"] == 1 and Speakers(checkpoint=first).threshold() == report["eer_threshold"]
    stranger = CliRunner().invoke(load_script("ml/2_evaluate_unseen_speakers.py").main,
                                  ["--checkpoint", str(trained[0] / "corpus" / "speaker-info.txt")])
    assert stranger.exit_code == 1 and "not a checkpoint of the softmax run" in stranger.output
    missing = evaluate("--run", "triplet")
    assert missing.exit_code == 1 and "triplet run has no checkpoint" in missing.output


def test_a_gallery_belongs_to_its_model_and_a_damaged_entry_is_named(speakers, tmp_path):
    model, corpus = speakers
    gallery = tmp_path / "gallery"
    enrolled = Speakers(gallery=gallery, threshold=0.5)
    enrolled.enroll("p228", [corpus.utterances["p228"][0].path])
    enrolled.enroll("p229", [corpus.utterances["p229"][0].path])
    assert set(enrolled.enrolled()) == {"p228", "p229"}
    record = json.loads((gallery / "gallery.json").read_text())
    assert record["model"]["mode"] == "softmax" and set(record["speakers"]) == {"p228", "p229"}
    rows_file = gallery / record["speakers"]["p229"]["rows_file"]
    np.save(rows_file, np.full((1, constants.EMBEDDING_SIZE), np.nan, np.float32))
    with pytest.raises(utils.PipelineError, match="p229-.*npy is not the file enrolled for p229.*enrol p229 again"):
        enrolled.identify(corpus.utterances["p228"][1].path)
    record["speakers"]["p229"].pop("sha256")  # a gallery enrolled before rows files were hashed: checked as it loads
    (gallery / "gallery.json").write_text(json.dumps(record))
    with pytest.raises(utils.PipelineError, match="p229-.*npy holds no valid embedding.*enrol p229 again"):
        enrolled.identify(corpus.utterances["p228"][1].path)
    rows_file.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(utils.PipelineError, match="p229-.*npy is unreadable or corrupt"):
        enrolled.enrolled()
    record["model"]["run_id"] = "another"
    (gallery / "gallery.json").write_text(json.dumps(record))
    with pytest.raises(utils.PipelineError, match="was enrolled with softmax .* not with this model"):
        enrolled.enrolled()


def test_a_damaged_report_is_recomputed_with_force_and_other_settings_do_not_replace_it(speakers, trained,
                                                                                        monkeypatch):
    folder = trained[0] / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002"
    good = (folder / "report.json").read_text()
    (folder / "report.json").write_text(good[:100])
    damaged = evaluate()
    assert damaged.exit_code == 1 and "report.json is unreadable or corrupt" in damaged.output
    assert "--force" in damaged.output
    assert evaluate("--force").exit_code == 0 and json.loads((folder / "report.json").read_text())["eer"] >= 0
    before = (folder / "report.json").read_text()
    monkeypatch.setattr(constants, "MAX_IMPOSTOR_TRIALS", 50)  # another evaluation setting
    other = evaluate()
    assert other.exit_code == 1 and "MAX_IMPOSTOR_TRIALS" in other.output and "--force" in other.output
    assert (folder / "report.json").read_text() == before


def test_the_training_curves_plot_skips_damaged_histories(tmp_path):
    from ml import plots
    broken = tmp_path / "history.csv"
    broken.write_text("epo\n1\n")
    other = tmp_path / "other.csv"
    other.write_text("epoch,learning_rate,loss\n0,0.1,2.0\nstep,loss\n")
    path = plots.training_curves({"softmax": broken, "frozen": other, "triplet": broken}, tmp_path / "curves.png")
    assert path.stat().st_size > 1000


def test_stage_2_refuses_a_corpus_other_than_the_inputs_one(speakers, trained, tmp_path, monkeypatch):
    import shutil as copier
    moved = tmp_path / "moved"
    copier.copytree(trained[0] / "corpus", moved)
    monkeypatch.setattr(constants, "CORPUS_PATH", str(moved))
    result = evaluate("--force")
    assert result.exit_code == 1 and "is not the one the inputs were built from" in result.output


def test_asnorm_scores_against_the_cohort_of_the_evaluation_at_its_own_threshold(speakers, trained, tmp_path):
    from ml import evaluation
    _, corpus = speakers
    folder = trained[0] / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002"
    report = json.loads((folder / "report.json").read_text())
    cohort = np.load(folder / report["asnorm"]["cohort_file"]["file"])
    assert cohort.shape == (report["asnorm"]["cohort_utterances"], constants.EMBEDDING_SIZE)
    model = Speakers(asnorm=True)
    assert model.threshold() == report["asnorm"]["eer_threshold"]
    first, second = corpus.utterances["p228"][0].path, corpus.utterances["p229"][1].path
    score, same = model.verify(first, second)
    a, b = model.embed(first), model.embed(second)
    mean, std = evaluation.as_norm_statistics(np.stack([a, b]).astype(np.float64), cohort.astype(np.float64),
                                              report["asnorm"]["top_k"])
    expected = 0.5 * ((a @ b - mean[0]) / std[0] + (a @ b - mean[1]) / std[1])
    assert score == pytest.approx(float(expected), rel=1e-6) and same == (score >= model.threshold())
    result = CliRunner().invoke(load_script("ml/3_embed_verify_identify.py").main,
                                ["verify", str(first), str(second), "--asnorm", "--json"])
    assert json.loads(result.output.strip().splitlines()[-1])["asnorm"] is True
    # a damaged or missing cohort is named, with the command that makes it again
    kept = folder / "kept.npy"
    (folder / report["asnorm"]["cohort_file"]["file"]).rename(kept)
    try:
        with pytest.raises(utils.PipelineError, match="asnorm_cohort.npy is missing.*--force"):
            Speakers(asnorm=True).verify(first, second)
        result = CliRunner().invoke(load_script("ml/3_embed_verify_identify.py").main,
                                    ["verify", str(first), str(second), "--asnorm"])
        assert result.exit_code == 2 and "Traceback" not in result.output
    finally:
        kept.rename(folder / report["asnorm"]["cohort_file"]["file"])
    assert Speakers(asnorm=False).threshold() == report["eer_threshold"]


def test_a_killed_enroll_changes_nothing_and_its_rerun_adds_each_file_once(speakers, tmp_path, monkeypatch):
    model, corpus = speakers
    gallery = tmp_path / "gallery"
    enrolled = Speakers(gallery=gallery, threshold=0.5)
    first, second = (u.path for u in corpus.utterances["p229"][:2])
    enrolled.enroll("p229", [first])
    before = enrolled.enrolled()["p229"]
    write_json = utils.write_json

    def killed(path, obj):
        if Path(path).name == "gallery.json":
            raise KeyboardInterrupt  # killed after the new rows file was written, before the record names it
        write_json(path, obj)
    monkeypatch.setattr(utils, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        enrolled.enroll("p229", [second])
    monkeypatch.setattr(utils, "write_json", write_json)
    assert len(list(gallery.glob("*.npy"))) == 2  # the unnamed rows file of the killed enroll
    np.testing.assert_array_equal(enrolled.enrolled()["p229"], before)  # the gallery is as it was
    assert enrolled.listing() == {"p229": 1}
    enrolled.enroll("p229", [second])  # the same command again
    assert enrolled.listing() == {"p229": 2} and len(enrolled._rows("p229")) == 2
    assert len(list(gallery.glob("*.npy"))) == 1  # the unnamed one removed


def test_the_gallery_is_locked_while_one_command_changes_it(speakers, tmp_path):
    model, corpus = speakers
    gallery = tmp_path / "gallery"
    enrolled = Speakers(gallery=gallery, threshold=0.5)
    with utils.folder_lock(gallery, "the gallery"):
        with pytest.raises(utils.PipelineError, match="the gallery .* is in use by process"):
            enrolled.enroll("p229", [corpus.utterances["p229"][0].path])
    enrolled.enroll("p229", [corpus.utterances["p229"][0].path])
    with utils.folder_lock(gallery, "the gallery"):
        with pytest.raises(utils.PipelineError, match="in use"):
            enrolled.remove("p229")


def test_embeddings_into_a_folder_keep_one_file_per_recording_and_their_model(speakers, trained, tmp_path):
    _, corpus = speakers
    script = load_script("ml/3_embed_verify_identify.py").main
    same_stem = tmp_path / "b" / corpus.utterances["p229"][0].path.name  # another recording with the same name
    same_stem.parent.mkdir()
    shutil.copyfile(corpus.utterances["p228"][0].path, same_stem)
    out = tmp_path / "folder"
    first = CliRunner().invoke(script, ["embed", str(corpus.utterances["p229"][0].path), str(same_stem),
                                        "--output", str(out)])
    assert first.exit_code == 0 and "2 embedding(s)" in first.output, first.output
    manifest = json.loads((out / "embeddings.json").read_text())
    assert sorted(e["path"] for e in manifest["files"].values()) == sorted(
        [str(corpus.utterances["p229"][0].path.resolve()), str(same_stem.resolve())])
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(manifest["files"])  # both kept, none overwritten
    again = CliRunner().invoke(script, ["embed", str(same_stem), "--output", str(out)])  # the same file: same name
    assert again.exit_code == 0 and json.loads((out / "embeddings.json").read_text()) == manifest
    manifest["model"]["run_id"] = "another"
    (out / "embeddings.json").write_text(json.dumps(manifest))
    other = CliRunner().invoke(script, ["embed", str(same_stem), "--output", str(out)])
    assert other.exit_code == 2 and "embeddings of two models do not compare" in other.output
    (tmp_path / "loose").mkdir()
    np.save(tmp_path / "loose" / "x.npy", np.zeros(3))
    loose = CliRunner().invoke(script, ["embed", str(same_stem), "--output", str(tmp_path / "loose")])
    assert loose.exit_code == 2 and "no embeddings.json describes" in loose.output


def test_a_recording_named_two_ways_is_enrolled_once_and_odd_names_are_refused(speakers, tmp_path, monkeypatch):
    _, corpus = speakers
    enrolled = Speakers(gallery=tmp_path / "gallery", threshold=0.5)
    path = corpus.utterances["p229"][0].path
    enrolled.enroll("p229", [path])
    monkeypatch.chdir(path.parent)
    enrolled.enroll("p229", [Path(path.name)])  # the same file, relative to here
    assert enrolled.listing() == {"p229": 1}
    for name in ("x\ny", "a" * 101):
        with pytest.raises(utils.PipelineError, match="cannot name a speaker"):
            enrolled.enroll(name, [path])


def test_stage_3_refuses_a_nan_threshold_and_a_bad_output_before_embedding(speakers, trained, tmp_path):
    _, corpus = speakers
    script = load_script("ml/3_embed_verify_identify.py").main
    path = str(corpus.utterances["p229"][0].path)
    nan = CliRunner().invoke(script, ["verify", path, path, "--threshold", "nan"])
    assert nan.exit_code == 2 and "a threshold is a finite score" in nan.output
    (tmp_path / "d.npz").mkdir()
    folder = CliRunner().invoke(script, ["embed", path, "--output", str(tmp_path / "d.npz")])
    assert folder.exit_code == 2 and "is a folder" in folder.output and "Traceback" not in folder.output
    upper = CliRunner().invoke(script, ["embed", path, "--output", str(tmp_path / "new" / "E.NPZ")])
    assert upper.exit_code == 0, upper.output
    with np.load(tmp_path / "new" / "E.NPZ") as saved:  # an .npz (the folder made), whatever the suffix's case
        assert saved["embeddings"].shape == (1, constants.EMBEDDING_SIZE)


def test_a_file_name_near_the_file_systems_limit_is_written_atomically(tmp_path):
    target = tmp_path / ("b" * 246 + ".json")
    utils.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1} and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("killed_at", ["before the record", "while saving the rows"])
def test_a_first_enroll_killed_before_its_record_does_not_lock_the_gallery(speakers, tmp_path, monkeypatch,
                                                                           killed_at):
    _, corpus = speakers
    gallery = tmp_path / "gallery"
    enrolled = Speakers(gallery=gallery, threshold=0.5)
    path = corpus.utterances["p229"][0].path
    if killed_at == "before the record":
        write_json = utils.write_json

        def killed_at_the_record(p, obj):  # the empty record goes first; killed as the rows are recorded
            if obj["speakers"]:
                raise KeyboardInterrupt
            write_json(p, obj)
        monkeypatch.setattr(utils, "write_json", killed_at_the_record)
        with pytest.raises(KeyboardInterrupt):
            enrolled.enroll("p229", [path])
        monkeypatch.setattr(utils, "write_json", write_json)
        assert [p.name for p in gallery.glob("p229-*.npy")]
        assert json.loads((gallery / "gallery.json").read_text())["speakers"] == {}
    else:  # a SIGKILL inside save_array leaves its temporary file (atomic_path cannot remove it)
        gallery.mkdir()
        np.save(gallery / ".tmp-999-p229-0123abcd.npy", np.zeros((1, constants.EMBEDDING_SIZE), np.float32))
    assert enrolled.listing() == {} and enrolled.enrolled() == {}  # an empty gallery, not "enrolled by an older version"
    enrolled.enroll("p229", [path])  # the same command again
    assert enrolled.listing() == {"p229": 1}
    record = json.loads((gallery / "gallery.json").read_text())
    assert sorted(p.name for p in gallery.glob("*.npy")) == [record["speakers"]["p229"]["rows_file"]]
    assert not list(gallery.glob(".tmp-*"))  # the leftovers are removed


@pytest.mark.parametrize("name", ["p229", "alice-20240101"])  # the second looks like a rows file of this version
def test_a_gallery_of_the_version_before_records_is_still_refused(speakers, tmp_path, name):
    """Never read as empty (the next enroll would delete its <name>.npy files as unnamed rows)."""
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    np.save(gallery / f"{name}.npy", np.ones(constants.EMBEDDING_SIZE, np.float32))  # <name>.npy, no gallery.json
    with pytest.raises(utils.PipelineError, match=r"records no model \(enrolled by an older version\)"):
        Speakers(gallery=gallery, threshold=0.5).listing()


def test_identify_reads_the_record_again_when_an_enroll_replaces_the_rows_file_under_it(speakers, tmp_path,
                                                                                        monkeypatch):
    _, corpus = speakers
    enrolled = Speakers(gallery=tmp_path / "gallery", threshold=0.5)
    enrolled.enroll("p229", [corpus.utterances["p229"][0].path])
    before = enrolled.enrolled()["p229"]
    stale = json.loads((tmp_path / "gallery" / "gallery.json").read_text())
    stale["speakers"]["p229"]["rows_file"] = "p229-0badf00d.npy"  # the record as read just before an enroll replaced it
    record, reads = Speakers._record, []

    def first_stale(self):
        reads.append(1)
        return stale if len(reads) == 1 else record(self)
    monkeypatch.setattr(Speakers, "_record", first_stale)
    exists = Path.exists  # the replaced file was there when looked at, and is gone when read (a real race, made certain)
    monkeypatch.setattr(Path, "exists", lambda self: self.name == "p229-0badf00d.npy" or exists(self))
    np.testing.assert_array_equal(enrolled.enrolled()["p229"], before)
    assert len(reads) >= 2


@pytest.mark.parametrize("damage, problem", [
    (lambda r: r["speakers"]["p229"].pop("files"), "the enrolment of p229 lists no files"),
    (lambda r: r.update(speakers=[]), "its speakers are not an object"),
    (lambda r: r["speakers"]["p229"].update(rows_file="../../elsewhere.npy"), "the enrolment of p229 names no rows file in the gallery"),
    (lambda r: r.update(model="softmax"), "its model is not an object"),
])
def test_a_gallery_record_with_values_of_the_wrong_type_is_named_not_a_traceback(speakers, tmp_path, damage, problem):
    _, corpus = speakers
    gallery = tmp_path / "gallery"
    Speakers(gallery=gallery, threshold=0.5).enroll("p229", [corpus.utterances["p229"][0].path])
    record = json.loads((gallery / "gallery.json").read_text())
    damage(record)
    (gallery / "gallery.json").write_text(json.dumps(record))
    with pytest.raises(utils.CorruptFile, match=f"gallery.json is not a valid gallery record \\({problem}"):
        Speakers(gallery=gallery, threshold=0.5).listing()


def test_gallery_list_names_a_damaged_record_in_one_line(speakers, tmp_path):
    _, corpus = speakers
    gallery = utils.work_path("gallery")
    shutil.rmtree(gallery, ignore_errors=True)  # another test enrolled into it
    script = load_script("ml/3_embed_verify_identify.py").main
    assert CliRunner().invoke(script, ["enroll", "p229", str(corpus.utterances["p229"][0].path)]).exit_code == 0
    record = json.loads((gallery / "gallery.json").read_text())
    del record["speakers"]["p229"]["files"]
    (gallery / "gallery.json").write_text(json.dumps(record))
    try:
        for command in (["gallery", "list"], ["identify", str(corpus.utterances["p229"][1].path), "--threshold", "0.5"]):
            result = CliRunner().invoke(script, command)
            assert result.exit_code == 2 and "lists no files" in result.output and "Traceback" not in result.output
    finally:
        shutil.rmtree(gallery)


@pytest.mark.parametrize("where, value, found", [
    ((), None, "missing"), ((), "0.8", "'0.8', not a finite number"), ((), float("nan"), "nan, not a finite number"),
    (("asnorm",), "0.8", "'0.8', not a finite number"), (("asnorm",), float("inf"), "inf, not a finite number"),
])
def test_a_reported_threshold_that_is_no_finite_number_is_named_with_the_command_that_recomputes_it(
        speakers, trained, where, value, found):
    _, corpus = speakers
    report_file = trained[0] / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002" / "report.json"
    good = report_file.read_text()
    report = json.loads(good)
    part = report[where[0]] if where else report
    part.pop("eer_threshold") if value is None else part.update(eer_threshold=value)
    report_file.write_text(json.dumps(report))
    path = str(corpus.utterances["p229"][0].path)
    try:
        message = f"report.json records no valid .*EER threshold .*\\({found}\\); evaluate the checkpoint again with " \
                  "`python ml/2_evaluate_unseen_speakers.py --run softmax --force`"
        with pytest.raises(utils.CorruptFile, match=message):
            Speakers(asnorm=bool(where)).threshold()
        command = ["verify", path, path] + (["--asnorm"] if where else [])
        result = CliRunner().invoke(load_script("ml/3_embed_verify_identify.py").main, command)
        assert result.exit_code == 2 and "records no valid" in result.output and "Traceback" not in result.output
    finally:
        report_file.write_text(good)


def test_an_asnorm_cohort_size_that_is_no_whole_number_is_named(speakers, trained):
    report_file = trained[0] / "work" / "runs" / "softmax" / "evaluation" / "epoch-000002" / "report.json"
    good = report_file.read_text()
    report = json.loads(good)
    report["asnorm"]["top_k"] = "ten"
    report_file.write_text(json.dumps(report))
    try:
        with pytest.raises(utils.CorruptFile, match=r"no valid AS-norm cohort size \(asnorm.top_k\) \('ten', not a whole"):
            Speakers(asnorm=True).cohort()
    finally:
        report_file.write_text(good)


@pytest.mark.parametrize("bad", [float("nan"), np.float32("inf"), "0.5", True])
def test_the_python_api_refuses_a_threshold_that_is_no_finite_number(speakers, bad):
    with pytest.raises(utils.PipelineError, match="a threshold is a finite score"):
        Speakers(threshold=bad)


def test_the_python_api_takes_a_numpy_threshold(speakers):
    assert Speakers(threshold=np.float32(0.5)).threshold() == 0.5


def test_a_recording_replaced_in_place_is_embedded_again_not_kept_stale(speakers, tmp_path):
    model, corpus = speakers
    recording = tmp_path / "rec.flac"
    shutil.copyfile(corpus.utterances["p229"][0].path, recording)
    shutil.rmtree(utils.work_path("gallery"), ignore_errors=True)  # the command line's gallery; others enrolled into it
    enrolled = Speakers(threshold=0.5)
    enrolled.enroll("bob", [recording, corpus.utterances["p229"][1].path])
    shutil.copyfile(corpus.utterances["p228"][0].path, recording)  # other audio under the same name
    done = enrolled.enroll("bob", [recording])
    assert done.updated == [recording] and not done.added and enrolled.listing() == {"bob": 2}
    rows = enrolled._rows("bob")
    np.testing.assert_allclose(rows[0], model.embed(recording), atol=1e-6)  # its row, in its place
    np.testing.assert_allclose(rows[1], model.embed(corpus.utterances["p229"][1].path), atol=1e-6)
    shutil.copyfile(corpus.utterances["p229"][0].path, recording)
    script = load_script("ml/3_embed_verify_identify.py").main
    result = CliRunner().invoke(script, ["enroll", "bob", str(recording)])
    assert result.exit_code == 0, result.output
    assert f"embedded {recording} again: it changed since it was enrolled" in result.output
    assert "enrolled bob: 2 recording(s)" in result.output
    record_file = utils.work_path("gallery") / "gallery.json"  # as an earlier version wrote it: no sizes and times
    record = json.loads(record_file.read_text())
    del record["speakers"]["bob"]["audio"]
    record_file.write_text(json.dumps(record))
    result = CliRunner().invoke(script, ["enroll", "bob", str(recording)])
    assert f"embedded {recording} again: enrolled by an earlier version, which kept no size and time" in result.output
    assert "nothing new to enroll" in CliRunner().invoke(script, ["enroll", "bob", str(recording)]).output


def test_an_enroll_that_adds_nothing_writes_nothing_and_one_whose_files_all_fail_is_an_error(speakers, tmp_path):
    _, corpus = speakers
    gallery = utils.work_path("gallery")  # the command line's
    shutil.rmtree(gallery, ignore_errors=True)
    path = corpus.utterances["p229"][0].path
    Speakers(threshold=0.5).enroll("bob", [path])
    before = {p.name: p.read_bytes() for p in gallery.iterdir() if p.name != ".lock"}
    silent, bad = tmp_path / "silent.wav", tmp_path / "bad.wav"
    sf.write(silent, np.zeros(8000), 8000)
    bad.write_bytes(b"not audio")
    script = load_script("ml/3_embed_verify_identify.py").main
    again = CliRunner().invoke(script, ["enroll", "bob", str(path), str(bad)])
    assert again.exit_code == 0 and "bob: nothing new to enroll (1 of the files given enrolled before" in again.output
    assert f"skipped {bad}: unreadable" in again.output
    failed = CliRunner().invoke(script, ["enroll", "bob", str(silent), str(bad)])
    assert failed.exit_code == 2 and "error: no usable recording to enroll bob from" in failed.output
    assert "enrolled bob" not in failed.output and "Traceback" not in failed.output
    assert {p.name: p.read_bytes() for p in gallery.iterdir() if p.name != ".lock"} == before  # nothing rewritten


def test_an_embeddings_folder_keeps_one_row_per_recording_and_never_gives_a_row_to_another(speakers, tmp_path,
                                                                                           monkeypatch):
    model, corpus = speakers
    script = load_script("ml/3_embed_verify_identify.py").main
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    good, other = tmp_path / "x" / "good.wav", tmp_path / "y" / "good.wav"  # two recordings, one name
    sf.write(good, sf.read(corpus.utterances["p229"][0].path)[0], 8000)
    sf.write(other, sf.read(corpus.utterances["p228"][0].path)[0], 8000)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path / "x")
    first = CliRunner().invoke(script, ["embed", "good.wav", str(good), "../x/good.wav", "--output", str(out)])
    assert first.exit_code == 0 and "1 embedding(s)" in first.output, first.output  # one recording, three spellings
    assert sorted(p.name for p in out.glob("*.npy")) == ["good.npy"]
    monkeypatch.chdir(tmp_path / "y")
    second = CliRunner().invoke(script, ["embed", "good.wav", "--output", str(out)])  # the other good.wav
    assert second.exit_code == 0, second.output
    manifest = json.loads((out / "embeddings.json").read_text())["files"]
    assert {name: entry["path"] for name, entry in manifest.items()} == {
        "good.npy": str(good.resolve()), "good-2.npy": str(other.resolve())}
    assert manifest["good.npy"]["stamp"] == [good.stat().st_size, good.stat().st_mtime_ns]
    np.testing.assert_allclose(np.load(out / "good.npy"), model.embed(good), atol=1e-6)  # not overwritten
    np.testing.assert_allclose(np.load(out / "good-2.npy"), model.embed(other), atol=1e-6)


@pytest.mark.parametrize("failure, message", [(KeyboardInterrupt, "error: interrupted"),
                                              (TypeError("a bug"), "error: unexpected TypeError at ")])
def test_an_interrupted_or_failing_verify_exits_2_never_1_which_means_different_speakers(speakers, monkeypatch,
                                                                                       failure, message):
    _, corpus = speakers
    path = str(corpus.utterances["p229"][0].path)

    def fails(*arguments):
        raise failure
    monkeypatch.setattr(Speakers, "verify", fails)
    monkeypatch.setattr(Speakers, "embed_many", fails)
    script = load_script("ml/3_embed_verify_identify.py").main
    for command in (["verify", path, path, "--threshold", "0.5"], ["embed", path, "--output", "x.npz"]):
        result = CliRunner().invoke(script, command)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
