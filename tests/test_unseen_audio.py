"""A run is what it trained on: an unseen speaker's audio file that goes bad or is replaced (and the inputs stage 0
rebuilds for it) leaves the trained runs usable, a training speaker's file does not, and stage 2 still notices the
unseen change (in the cache before stage 0 has run, in its report's record after)."""
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import constants
import utils
from audio.cache import FeatureCache
from audio.corpus import find_corpus, split_speakers
from audio.demo_corpus import write_demo_corpus
from ml import checkpoints
from ml import inputs as ml_inputs

SETTINGS = {"NUM_WORKERS": 1, "SPLIT": "auto", "NUM_SPEAKERS_CLASSIFICATION_TASK": 4, "MAX_COUNT_PER_CLASS": 30,
            "BATCH_SIZE": 120, "SPEED_PERTURBATION": [], "SOFTMAX_SCHEDULE_EPOCHS": 2, "SOFTMAX_WARMUP_STEPS": 2}
TRAIN = "ml/1_train_triplet_softmax_model.py"


def script(path, *arguments):
    spec = importlib.util.spec_from_file_location(path.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return CliRunner().invoke(module.main, list(arguments))


def ran(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def refused(result):
    assert result.exit_code == 1, result.output
    return " ".join((str(result.exception or "") + result.output).split())


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A demo corpus of 6 speakers (2 training, 2 validation, 2 unseen), its inputs (stage 0), a softmax run trained
    for one epoch of two (stage 1) and its evaluation (stage 2); a copy of corpus and work dir to start each test from."""
    root = tmp_path_factory.mktemp("unseen")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**SETTINGS, "WORKDIR": str(root / "work"), "CORPUS_PATH": str(root / "corpus")}.items():
            patch.setattr(constants, name, value)
        write_demo_corpus(root / "corpus", num_speakers=6, utterances_per_speaker=4, progress=False)
        assert "2 training, 2 validation, 2 unseen" in ran(script("ml/0_generate_inputs.py"))
        ran(script(TRAIN, "--loss_on_softmax", "--epochs", "1"))
        ran(script("ml/2_evaluate_unseen_speakers.py"))
    for name in ("corpus", "work"):  # copy2: the audio files keep their times, so the cache's stamps still match
        shutil.copytree(root / name, root / "pristine" / name, copy_function=shutil.copy2)
    return root


@pytest.fixture
def pipeline(pristine, tmp_path, monkeypatch):
    """The pristine corpus and work dir, restored in place (the cache is named after the corpus path): (corpus, split)."""
    for name in ("corpus", "work"):
        shutil.rmtree(pristine / name, ignore_errors=True)
        shutil.copytree(pristine / "pristine" / name, pristine / name, copy_function=shutil.copy2)
    for name, value in {**SETTINGS, "WORKDIR": str(pristine / "work"), "CORPUS_PATH": str(pristine / "corpus")}.items():
        monkeypatch.setattr(constants, name, value)
    corpus = find_corpus()
    train, unseen = split_speakers(corpus.speakers)
    training, validation = ml_inputs.split_validation(train)
    assert len(training) == len(validation) == len(unseen) == 2
    return corpus, {"training": training, "validation": validation, "unseen": unseen}


def corrupt(path):
    path.write_bytes(b"not audio at all")  # as a truncated download or a bad disk leaves it


def replace(path):
    """Other audio under the same name: another utterance of the same speaker."""
    other = next(p for p in sorted(path.parent.iterdir()) if p != path and p.suffix == path.suffix)
    path.write_bytes(other.read_bytes())


def first_file(corpus, speaker):
    return corpus.utterances[speaker][0].path


def softmax_state():
    return checkpoints.RunFolder("softmax").state()


@pytest.mark.parametrize("change", [corrupt, replace])
def test_an_unseen_speakers_file_changed_and_the_inputs_rebuilt_leave_the_trained_run_usable(pipeline, change):
    corpus, speakers = pipeline
    change(first_file(corpus, speakers["unseen"][0]))
    rebuilt = ran(script("ml/0_generate_inputs.py"))
    assert "inputs: building them" in rebuilt, rebuilt
    record = ml_inputs.checked_record()
    checkpoints.check_trained_on("softmax", softmax_state(), record)  # stages 2 and 4 accept it
    assert "nothing to train" in ran(script(TRAIN, "--loss_on_softmax", "--epochs", "1"))  # accepted, and complete
    ran(script(TRAIN, "--loss_on_softmax", "--epochs", "2"))  # it goes on from its checkpoint, not anew
    state = softmax_state()
    assert state["latest"]["count"] == 2 and [c["count"] for c in state["checkpoints"]] == [1, 2]


@pytest.mark.parametrize("role", ["training", "validation"])
@pytest.mark.parametrize("change", [corrupt, replace])
def test_a_training_or_validation_speakers_file_changed_still_makes_the_run_refused(pipeline, change, role):
    corpus, speakers = pipeline
    change(first_file(corpus, speakers[role][0]))
    assert "inputs: building them" in ran(script("ml/0_generate_inputs.py"))
    with pytest.raises(utils.PipelineError, match="softmax run was trained on other inputs"):
        checkpoints.check_trained_on("softmax", softmax_state(), ml_inputs.checked_record())
    message = refused(script(TRAIN, "--loss_on_softmax", "--epochs", "2"))
    assert "was trained on other inputs" in message and "--fresh" in message
    assert "trained on other inputs" in refused(script("ml/2_evaluate_unseen_speakers.py", "--force"))
    assert ("files added, removed, or no longer usable" if change is corrupt else "audio files differ") in message


def test_a_touched_training_file_is_named_as_the_reason_a_run_is_refused(pipeline):
    """The inputs record each file's size and time, not its content: a touch makes other inputs, and the refusal
    says so rather than "another corpus path, other utterances or other speakers"."""
    corpus, speakers = pipeline
    path = first_file(corpus, speakers["training"][0])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    output = ran(script("ml/0_generate_inputs.py"))
    assert "warning: the softmax run(s)" in output and "are refused from now on" in output, output
    message = refused(script(TRAIN, "--loss_on_softmax", "--epochs", "2"))
    assert "its size or modification time changed" in message and "touch" in message, message
    assert "warning" not in ran(script("ml/0_generate_inputs.py", "--force"))  # the run was refused already before


def test_stage_2_notices_a_changed_unseen_file_before_and_after_stage_0(pipeline):
    corpus, speakers = pipeline
    report_file = checkpoints.RunFolder("softmax").folder / "evaluation" / "epoch-000001" / "report.json"
    before = json.loads(report_file.read_text())
    assert before["num_unseen_utterances"] == 8
    corrupt(first_file(corpus, speakers["unseen"][0]))
    # before stage 0: the cache is older than the file, and an evaluation refuses to use it
    message = refused(script("ml/2_evaluate_unseen_speakers.py", "--force"))
    assert "1 corpus file(s) changed since their features were cached" in message and "0_generate_inputs" in message
    ran(script("ml/0_generate_inputs.py"))
    # after stage 0: the report of the old audio is not shown as this checkpoint's, nor replaced unasked (stage 3
    # takes its threshold from it)
    message = refused(script("ml/2_evaluate_unseen_speakers.py"))
    assert "unseen speakers' audio" in message and "--force" in message
    assert json.loads(report_file.read_text()) == before
    output = ran(script("ml/2_evaluate_unseen_speakers.py", "--force"))
    after = json.loads(report_file.read_text())
    assert after["num_unseen_utterances"] == 7 and "EER = " in output
    assert after["unseen_sources_digest"] == ml_inputs.checked_record()["built_from"]["unseen_sources_digest"]
    assert "already evaluated" in ran(script("ml/2_evaluate_unseen_speakers.py"))  # its own record: shown again


def legacy(record):
    """A record as the previous version wrote it: digests of every speaker's utterances and audio files only."""
    return {k: v for k, v in record.items() if k not in ml_inputs.SPLIT_DIGESTS}


def test_stage_4_refuses_conversations_of_audio_changed_since_stage_0(pipeline):
    """Stage 4 builds its conversations from the corpus's audio itself: audio replaced since the inputs were built
    would be evaluated under the record of the old (the report's unseen digest), silently."""
    corpus, speakers = pipeline
    replace(first_file(corpus, speakers["unseen"][0]))
    message = refused(script("ml/4_detect_speaker_changes.py", "evaluate"))
    assert "1 corpus file(s) changed since their features were cached" in message and "0_generate_inputs" in message
    assert not list(checkpoints.RunFolder("softmax").folder.rglob("speaker_changes.json"))


def test_stored_reports_are_not_shown_as_current_once_the_corpus_changed(pipeline, monkeypatch):
    """Before stage 0 has seen the change the inputs' digests cannot know it; after, the reports' own record of the
    unseen audio tells them apart (stage 2's and stage 4's alike)."""
    corpus, speakers = pipeline
    monkeypatch.setattr(constants, "CONVERSATIONS", 2)
    ran(script("ml/4_detect_speaker_changes.py", "evaluate"))
    assert "shown again" in ran(script("ml/4_detect_speaker_changes.py", "evaluate"))
    corrupt(first_file(corpus, speakers["unseen"][0]))
    for stage in (("ml/2_evaluate_unseen_speakers.py",), ("ml/4_detect_speaker_changes.py", "evaluate")):
        message = refused(script(*stage))
        assert "1 corpus file(s) changed since their features were cached" in message, message
    ran(script("ml/0_generate_inputs.py"))
    for stage in (("ml/2_evaluate_unseen_speakers.py",), ("ml/4_detect_speaker_changes.py", "evaluate")):
        message = refused(script(*stage))
        assert "unseen speakers' audio that has changed since" in message and "--force" in message, message
    assert "shown again" not in ran(script("ml/4_detect_speaker_changes.py", "evaluate", "--force"))
    assert "shown again" in ran(script("ml/4_detect_speaker_changes.py", "evaluate"))


def test_a_stored_change_report_is_refused_once_a_file_the_inputs_leave_out_joins_its_conversations(pipeline,
                                                                                                  monkeypatch):
    """An utterance too short for a window is in no digest of the inputs, yet stage 4's conversations draw from every
    file of a speaker: one added (and cached by stage 0) changes them, and the report of the old ones is refused."""
    import soundfile
    corpus, speakers = pipeline
    monkeypatch.setattr(constants, "CONVERSATIONS", 2)
    ran(script("ml/4_detect_speaker_changes.py", "evaluate"))
    record = ml_inputs.checked_record()["built_from"]
    source = first_file(corpus, speakers["unseen"][0])
    samples, rate = soundfile.read(source)
    added = source.with_name(source.name.replace("_001", "_999"))
    assert added != source
    soundfile.write(added, samples[:int(0.05 * rate)], rate)  # too short for a window
    assert "1 utterance(s) are not in the feature cache" in refused(script("ml/4_detect_speaker_changes.py", "evaluate"))
    ran(script("ml/0_generate_inputs.py"))
    assert ml_inputs.checked_record()["built_from"]["unseen_sources_digest"] == record["unseen_sources_digest"]
    message = refused(script("ml/4_detect_speaker_changes.py", "evaluate"))
    assert "corpus audio that has changed since" in message and "--force" in message, message
    message = refused(script("ml/2_evaluate_unseen_speakers.py"))  # its report counts the utterances left out
    assert "corpus audio that has changed since" in message, message
    ran(script("ml/4_detect_speaker_changes.py", "evaluate", "--force"))
    assert "shown again" in ran(script("ml/4_detect_speaker_changes.py", "evaluate"))


def test_a_report_of_a_corpus_with_a_file_removed_is_not_shown_as_current_once_the_file_is_back(pipeline):
    """A removed file is in no digest of the inputs until stage 0 runs; stage 2 evaluates the corpus as it is, so its
    report records that corpus, and is not shown as current for the corpus with the file restored."""
    corpus, speakers = pipeline
    report_file = checkpoints.RunFolder("softmax").folder / "evaluation" / "epoch-000001" / "report.json"
    removed = first_file(corpus, speakers["unseen"][0])
    aside = Path(corpus.root).parent / "aside.flac"  # outside the corpus
    removed.rename(aside)  # moved away and back: the same file, size and time (as the cache recorded them)
    message = refused(script("ml/2_evaluate_unseen_speakers.py"))
    assert "corpus audio that has changed since" in message and "--force" in message, message
    ran(script("ml/2_evaluate_unseen_speakers.py", "--force"))
    assert json.loads(report_file.read_text())["num_unseen_utterances"] == 7
    aside.rename(removed)
    assert "are current" in ran(script("ml/0_generate_inputs.py"))
    message = refused(script("ml/2_evaluate_unseen_speakers.py"))
    assert "corpus audio that has changed since" in message, message
    ran(script("ml/2_evaluate_unseen_speakers.py", "--force"))
    assert json.loads(report_file.read_text())["num_unseen_utterances"] == 8


@pytest.mark.parametrize("role", ["training", "unseen"])
def test_stages_2_and_4_refuse_a_corpus_whose_speakers_changed_the_split(pipeline, role):
    """With SPLIT "auto" the unseen speakers are the last in sorted order: a speaker folder removed would make the
    stages evaluate other speakers (a training speaker among the "unseen") under the inputs' record."""
    corpus, speakers = pipeline
    folder = first_file(corpus, speakers[role][0]).parent
    folder.rename(folder.with_name("removed"))  # no longer a speaker's folder name of this layout
    for stage in (("ml/2_evaluate_unseen_speakers.py", "--force"), ("ml/4_detect_speaker_changes.py", "evaluate")):
        message = refused(script(*stage))
        assert "the corpus's speakers changed since stage 0" in message and "0_generate_inputs" in message, message


def test_inputs_rebuilt_after_a_command_checked_them_are_refused(pipeline, monkeypatch):
    """A command checks the inputs' record before its lock and loads them after (TensorFlow in between): stage 0 may
    rebuild them meanwhile, or while they load; they must not be used under the record of the old ones."""
    record = ml_inputs.checked_record()
    path = ml_inputs.inputs_folder() / "inputs.json"
    assert ml_inputs.load_inputs(expected=record).record == record["built_from"]
    rebuilt = dict(json.loads(path.read_text()), created="later")
    path.write_text(json.dumps(rebuilt))
    with pytest.raises(utils.PipelineError, match="were rebuilt .* after this command checked them"):
        ml_inputs.load_inputs(expected=record)
    load = ml_inputs._load_checked

    def rebuilt_while_loading(folder, checked, stream):
        inputs = load(folder, checked, stream)
        path.write_text(json.dumps(dict(rebuilt, created="later still")))
        return inputs

    monkeypatch.setattr(ml_inputs, "_load_checked", rebuilt_while_loading)
    with pytest.raises(utils.PipelineError, match="were rebuilt"):
        ml_inputs.load_inputs(expected=ml_inputs.checked_record())


def test_the_same_corpus_spelt_another_way_is_the_same_corpus_for_a_stored_report(pipeline, monkeypatch, tmp_path):
    """A trailing slash or a symbolic link is the same corpus (the cache, named by the resolved path, says so): its
    stored report is shown, not refused as one of other settings."""
    corpus, _ = pipeline
    monkeypatch.setattr(constants, "CORPUS_PATH", str(corpus.root) + "/")
    assert "already evaluated" in ran(script("ml/2_evaluate_unseen_speakers.py"))
    (tmp_path / "link").symlink_to(corpus.root)
    monkeypatch.setattr(constants, "CORPUS_PATH", str(tmp_path / "link"))
    assert "already evaluated" in ran(script("ml/2_evaluate_unseen_speakers.py"))


def test_stage_0_removes_the_partial_files_a_killed_stage_0_left_in_the_inputs(pipeline):
    """Each inputs file is written to .tmp-<pid>-<name> and renamed: a kill leaves the partial file, which nothing
    else would remove (gigabytes of frames on a large corpus)."""
    left = ml_inputs.inputs_folder() / ".tmp-12345-train_frames.npy"
    left.write_bytes(b"partial")
    assert "are current" in ran(script("ml/0_generate_inputs.py"))
    assert not left.exists()


def test_a_run_recorded_by_the_previous_version_is_accepted_while_nothing_changed_and_told_apart_when_a_file_did(
        pipeline):
    corpus, speakers = pipeline
    record = ml_inputs.checked_record()["built_from"]
    old = legacy(record)
    cache = FeatureCache(corpus.root)
    # the previous version's own all-speaker digests, unchanged: its runs are still recognised, and so are those
    # recorded before the inputs named their audio files
    assert ml_inputs.same_inputs(old, record)
    oldest = {k: v for k, v in old.items() if k != "sources_digest"}
    for earlier in (old, oldest):
        checkpoints.check_trained_on("softmax", dict(softmax_state(), inputs=earlier), {"built_from": record})
    # inputs that the previous version built are rebuilt once (the same frames), saying why
    stored = json.loads((ml_inputs.inputs_folder() / "inputs.json").read_text())
    (ml_inputs.inputs_folder() / "inputs.json").write_text(json.dumps(dict(stored, built_from=old)))
    assert "an earlier version recorded them" in ml_inputs.stale_reason(record)
    assert old["sources_digest"] == ml_inputs.expected_record(
        cache, corpus, speakers["training"], speakers["unseen"], speakers["validation"])["sources_digest"]
    corrupt(first_file(corpus, speakers["unseen"][0]))
    ran(script("ml/0_generate_inputs.py"))
    now = ml_inputs.checked_record()
    assert ml_inputs.same_inputs(record, now["built_from"])  # recorded by this version: only the unseen audio changed
    assert not ml_inputs.same_inputs(old, now["built_from"])  # the old record cannot tell which file changed
    state = dict(softmax_state(), inputs=old)
    with pytest.raises(utils.PipelineError) as error:
        checkpoints.check_trained_on("softmax", state, now)
    message = str(error.value)
    assert "earlier version" in message and "unseen" in message and "--fresh" in message
    assert "0_generate_inputs.py" in message and "\n" not in message
    with pytest.raises(utils.PipelineError, match="earlier version.*--fresh"):
        checkpoints._check_inputs(state, now["built_from"], "the softmax run", checkpoints.command("softmax") + " --fresh")


def test_under_per_speaker_normalisation_the_unseen_audio_stays_part_of_the_run():
    """The run keeps the per-speaker statistics of every unseen speaker (its norm.json) and evaluates with them."""
    base = {"settings": {"NORMALIZATION": "global"}, "utterances_digest": "a", "sources_digest": "b",
            "training_sources_digest": "t", "unseen_sources_digest": "u"}
    unseen_changed = dict(base, utterances_digest="a2", sources_digest="b2", unseen_sources_digest="u2")
    assert ml_inputs.same_inputs(base, unseen_changed)
    assert not ml_inputs.same_inputs(base, dict(unseen_changed, training_sources_digest="t2"))
    per_speaker = {**base, "settings": {"NORMALIZATION": "per_speaker"}}
    assert not ml_inputs.same_inputs(per_speaker, {**unseen_changed, "settings": {"NORMALIZATION": "per_speaker"}})
    assert ml_inputs.same_inputs(per_speaker, dict(per_speaker))


def test_an_evaluation_report_of_other_unseen_audio_is_refused_and_one_of_an_earlier_version_is_shown(workdir, tmp_path):
    """Stages 2 and 4 (existing_evaluation): a report records the unseen audio it measured."""
    state, entry = {"run_id": "r1"}, {"count": 1, "sha256": "s", "file": "weights/epoch-000001.weights.h5"}
    report = {"checkpoint": checkpoints.checkpoint_reference("softmax", state, entry), "settings": {"SEED": 1},
              "created": "then", "unseen_sources_digest": "u1"}
    path = tmp_path / "report.json"

    def existing(recorded, unseen):
        path.write_text(json.dumps(recorded))
        return checkpoints.existing_evaluation(path, "softmax", state, entry, {"SEED": 1}, "again --force", "stage 3",
                                               unseen=unseen)

    assert existing(report, "u1") == report
    with pytest.raises(utils.PipelineError, match="unseen speakers' audio that has changed since.*again --force"):
        existing(report, "u2")
    earlier = {k: v for k, v in report.items() if k != "unseen_sources_digest"}
    assert existing(earlier, "u2") == earlier  # an earlier version's: its run was refused after any change of audio
