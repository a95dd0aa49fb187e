"""Speaker change detection: the metrics against hand-computed cases, peak picking, the delta-BIC baseline,
detection on a demo conversation with a briefly trained model, the command line and bad inputs."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import constants
import utils
from audio import features
from audio.corpus import find_corpus
from audio.demo_corpus import write_demo_corpus
from ml import change_metrics, speaker_changes
from ml.speaker_changes import Curve


def load_script(path):
    spec = importlib.util.spec_from_file_location(path.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------
# Metrics, by hand
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reference, hypothesis, collar, hits", [
    ([], [], 0.5, 0),
    ([1.0], [], 0.5, 0),
    ([], [1.0], 0.5, 0),
    ([10.0], [10.4], 0.5, 1),
    ([10.0], [10.6], 0.5, 0),
    ([10.0], [10.5], 0.5, 1),  # the collar's edge counts
    ([10.0], [9.8, 10.2], 0.5, 1),  # one true change matches one detection only
    ([10.0, 10.8], [10.4], 0.5, 1),  # and one detection one true change
    ([10.0, 10.8], [10.4, 11.2], 0.5, 2),  # greedy on sorted lists finds the matching of two
    ([10.0, 10.8], [10.7, 10.4], 0.5, 2),  # order of the input does not matter
    ([1.0, 5.0, 9.0], [1.2, 4.0, 9.3, 12.0], 0.25, 1),
])
def test_matched_changes_by_hand(reference, hypothesis, collar, hits):
    assert change_metrics.matched_changes(reference, hypothesis, collar) == hits


def test_precision_recall_f1_pool_the_counts_of_many_recordings():
    counts = [change_metrics.detection_counts([1.0, 5.0], [1.1, 3.0, 5.3], 0.5),  # 2 hits of 3 found, 2 true
              change_metrics.detection_counts([2.0, 7.0], [7.2], 0.5)]  # 1 hit of 1 found, 2 true
    precision, recall, f1 = change_metrics.precision_recall_f1(counts)
    assert precision == pytest.approx(3 / 4) and recall == pytest.approx(3 / 4) and f1 == pytest.approx(3 / 4)
    assert change_metrics.precision_recall_f1([change_metrics.detection_counts([], [], 0.5)]) == (1.0, 1.0, 1.0)
    assert change_metrics.precision_recall_f1([change_metrics.detection_counts([1.0], [3.0], 0.5)]) == (0, 0, 0)


def test_purity_and_coverage_by_hand():
    # True segments [0,4) [4,10); detected [0,6) [6,10): purity counts 4 of [0,6) and 4 of [6,10) -> 8/10;
    # coverage counts 4 of [0,4) and 4 of [4,10) ([4,6) or [6,10)) -> 8/10.
    sums = change_metrics.purity_coverage_sums([4.0], [6.0], 10.0)
    assert change_metrics.purity_coverage([sums]) == pytest.approx((0.8, 0.8))
    # Nothing detected: one segment, pure only by its largest overlap (6 of 10); true segments fully covered
    assert change_metrics.purity_coverage([change_metrics.purity_coverage_sums([4.0], [], 10.0)]) == \
        pytest.approx((0.6, 1.0))
    # Over-segmented: every detected segment is pure; true [4,10) is split into 2 + 4
    assert change_metrics.purity_coverage([change_metrics.purity_coverage_sums([4.0], [4.0, 6.0], 10.0)]) == \
        pytest.approx((1.0, 0.8))
    pooled = [change_metrics.purity_coverage_sums([4.0], [6.0], 10.0),
              change_metrics.purity_coverage_sums([], [], 30.0)]
    assert change_metrics.purity_coverage(pooled) == pytest.approx(((8 + 30) / 40, (8 + 30) / 40))


# ----------------------------------------------------------------------------------------------------
# Peaks, segments and the baseline
# ----------------------------------------------------------------------------------------------------
def test_peaks_keep_the_highest_points_apart_and_off_the_ends(monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_HOP_S", 0.1)
    monkeypatch.setattr(constants, "CHANGE_MIN_SEGMENT_S", 1.0)
    times = np.round(np.arange(1, 100) * 0.1, 10)  # 0.1 .. 9.9 s
    values = np.zeros_like(times)
    for time, value in [(0.5, 9.0), (3.0, 0.8), (3.5, 0.9), (4.5, 0.7), (6.0, 0.4), (9.5, 5.0)]:
        values[np.argmin(np.abs(times - time))] = value
    peak_times, peak_values = speaker_changes.peaks(Curve(times, values, 10.0))
    assert peak_values.tolist() == sorted(peak_values.tolist(), reverse=True)
    assert list(peak_times[:3]) == pytest.approx([3.5, 4.5, 6.0])  # 0.5 and 9.5 are too near an end; 3.0 too near 3.5
    assert list(speaker_changes.changes_at((peak_times, peak_values), 0.5)) == pytest.approx([3.5, 4.5])
    assert all(abs(a - b) >= 1.0 - 1e-9 for i, a in enumerate(peak_times) for b in peak_times[:i])
    assert speaker_changes.segments([3.5, 4.5], 10.0) == [(0.0, 3.5), (3.5, 4.5), (4.5, 10.0)]


def test_the_shoulders_of_a_broad_peak_are_no_changes(monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_HOP_S", 0.05)
    monkeypatch.setattr(constants, "CHANGE_MIN_SEGMENT_S", 1.0)
    times = np.round(np.arange(1, 200) * 0.05, 10)  # 0.05 .. 9.95 s
    values = np.clip(1.2 - np.abs(times - 5.0) / 1.5, 0, None)  # a change's bump: 1.5 s wide on each side
    peak_times, peak_values = speaker_changes.peaks(Curve(times, values, 10.0))
    assert list(speaker_changes.changes_at((peak_times, peak_values), 0.1)) == pytest.approx([5.0])


def two_voices(seconds=4.0, rate=8000, seed=0):
    """Two harmonic voices, one after the other: the true change is at `seconds`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    first = sum(np.sin(2 * np.pi * k * 110 * t) / k for k in range(1, 15)) * (1 + 0.3 * np.sin(2 * np.pi * 4 * t))
    second = sum(np.sin(2 * np.pi * k * 230 * t) * (k % 3 == 0) for k in range(1, 15)) * (1 + 0.3 * np.sin(5 * t))
    signal = np.concatenate([first / np.abs(first).max(), second / np.abs(second).max()]) * 0.4
    return (signal + 0.01 * rng.standard_normal(signal.size)).astype(np.float32)


def test_the_delta_bic_baseline_peaks_at_the_change_of_two_voices():
    signal = two_voices()
    curve = speaker_changes.baseline_curve(signal)
    assert abs(curve.times[np.nanargmax(np.where(np.isfinite(curve.values), curve.values, np.nan))] - 4.0) <= 0.25


def test_blocked_mfccs_are_the_mfccs_of_the_whole_signal():
    signal = two_voices(seconds=7.3)
    np.testing.assert_array_equal(features.mfcc_frames_in_blocks(signal, block_frames=97),
                                  features.mfcc_frames(signal))


def test_conversations_are_seeded_and_their_changes_lie_between_turns_of_different_speakers(tone_corpus,
                                                                                               monkeypatch):
    monkeypatch.setattr(constants, "CONVERSATION_TURNS", [3, 5])
    paths = {s.name: sorted(s.glob("*_mic1.flac")) for s in (tone_corpus / "wav48_silence_trimmed").iterdir()}
    paths["p228"].append(tone_corpus / "missing.flac")
    skipped = {}
    first = list(speaker_changes.conversations(paths, 3, seed=5, skipped=skipped))
    again = list(speaker_changes.conversations(paths, 3, seed=5))
    for one, other in zip(first, again):
        np.testing.assert_array_equal(one.signal, other.signal)
    for conversation in first:
        assert 3 <= len(conversation.turns) <= 5 and len(conversation.changes) == len(conversation.turns) - 1
        for (_, end, speaker), (start, _, following), change in zip(conversation.turns, conversation.turns[1:],
                                                                    conversation.changes):
            assert speaker != following and end < change < start
        assert 2 <= len({t[2] for t in conversation.turns}) <= 4
    assert all("missing.flac" in k for k in skipped)


# ----------------------------------------------------------------------------------------------------
# With a trained model (the session's demo-corpus model)
# ----------------------------------------------------------------------------------------------------
TRAINING_SPEAKERS, UNSEEN_SPEAKERS = 10, 4
SETTINGS = {"NUM_WORKERS": 1, "SPLIT": "auto", "NUM_SPEAKERS_CLASSIFICATION_TASK": TRAINING_SPEAKERS,
            "MAX_COUNT_PER_CLASS": 100, "BATCH_SIZE": 300, "SPEED_PERTURBATION": [], "VALIDATION_FRACTION": 0.1,
            "SOFTMAX_SCHEDULE_EPOCHS": 4, "SOFTMAX_WARMUP_STEPS": 10}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A demo corpus of 14 speakers x 8 utterances (10 train, 2 of them validation speakers; 4 unseen) and a conv
    model trained for 4 epochs by the numbered scripts (as in test_learning: well above chance)."""
    root = tmp_path_factory.mktemp("changes")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**SETTINGS, "WORKDIR": str(root / "work"), "CORPUS_PATH": str(root / "corpus")}.items():
            patch.setattr(constants, name, value)
        write_demo_corpus(root / "corpus", num_speakers=TRAINING_SPEAKERS + UNSEEN_SPEAKERS, utterances_per_speaker=8,
                          progress=False)
        for arguments in (["ml/0_generate_inputs.py"], ["ml/1_train_triplet_softmax_model.py", "--loss_on_softmax"]):
            result = CliRunner().invoke(load_script(arguments[0]).main, arguments[1:])
            assert result.exit_code == 0, result.output
    return root, find_corpus(root / "corpus")


@pytest.fixture
def detector(trained, monkeypatch):
    root, corpus = trained
    for name, value in {**SETTINGS, "WORKDIR": str(root / "work"), "CORPUS_PATH": str(root / "corpus")}.items():
        monkeypatch.setattr(constants, name, value)
    return speaker_changes.ChangeDetector(), corpus


def demo_conversation(corpus, path, first="p236", second="p238"):
    """Three utterances of `first`, then three of `second`, with 0.3 s pauses; the true change time."""
    pause = np.zeros(int(0.3 * constants.SAMPLE_RATE), np.float32)
    parts, change = [], None
    for speaker in (first, second):
        if parts:
            change = (sum(map(len, parts)) + len(pause) / 2) / constants.SAMPLE_RATE
            parts.append(pause)
        for utterance in corpus.utterances[speaker][:3]:
            parts += [features.voice_only(features.load_audio(utterance.path)), pause]
        parts.pop()
    sf.write(path, np.concatenate(parts), constants.SAMPLE_RATE)
    return change


def test_a_two_speaker_conversation_gets_its_change_within_the_collar(detector, tmp_path):
    model, corpus = detector
    change = demo_conversation(corpus, tmp_path / "talk.wav")
    curve = model.curve(features.load_audio(tmp_path / "talk.wav"))
    peak_times, peak_values = speaker_changes.peaks(curve)
    assert abs(peak_times[0] - change) <= constants.CHANGE_COLLARS_S[0], (peak_times[:3], change)
    times, strengths = speaker_changes.ranked_changes(curve)  # with merging: the candidate merged away last
    assert abs(times[np.argmax(strengths)] - change) <= constants.CHANGE_COLLARS_S[0], (times, strengths, change)
    found = model.detect(tmp_path / "talk.wav", threshold=float(strengths.max()))  # the strongest only
    assert len(found.changes) == 1 and found.segments()[0] == (0.0, pytest.approx(found.changes[0]))
    assert found.rttm("talk")[1].startswith(f"SPEAKER talk 1 {found.changes[0]:.3f} ")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not audio at all"), "unreadable"),
    (lambda p: sf.write(p, np.zeros(8000 * 5), 8000), "all-silent"),
    (lambda p: sf.write(p, 0.5 * np.sin(np.arange(8000 * 2)), 8000), "too short for change detection"),
    (lambda p: None, "unreadable"),
])
def test_bad_recordings_give_one_clear_line(detector, tmp_path, make, message):
    model, _ = detector
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(utils.PipelineError, match=message):
        model.detect(path, threshold=0.5)


def test_without_an_evaluation_detect_asks_for_one_or_a_threshold(detector):
    model, _ = detector
    with pytest.raises(utils.PipelineError, match="evaluate"):
        model.threshold()


def test_the_command_line_writes_json_csv_rttm_and_plots_and_names_bad_files(detector, tmp_path):
    _, corpus = detector
    demo_conversation(corpus, tmp_path / "talk.wav")
    (tmp_path / "broken.wav").write_bytes(b"RIFF nonsense")
    script = load_script("ml/4_detect_speaker_changes.py").main
    for suffix in ("json", "csv", "rttm"):
        result = CliRunner().invoke(script, ["detect", str(tmp_path / "talk.wav"), str(tmp_path / "broken.wav"),
                                             "--threshold", "0.2", "--output", str(tmp_path / f"out.{suffix}"),
                                             "--plots", str(tmp_path / "plots")])
        assert result.exit_code == 0, result.output
        assert "broken.wav: unreadable" in result.output and "SPEAKER talk 1 0.000" in result.output
    saved = json.loads((tmp_path / "out.json").read_text())
    assert len(saved) == 1 and saved[0]["threshold"] == 0.2 and saved[0]["segments"][0]["start_s"] == 0
    assert saved[0]["model"] == detector[0].trained.reference  # which checkpoint found them, beside its threshold
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0] == "file,segment,start_s,end_s" and len(rows) == len(saved[0]["segments"]) + 1
    assert len((tmp_path / "out.rttm").read_text().splitlines()) == len(saved[0]["segments"])
    assert (tmp_path / "plots" / "talk.png").stat().st_size > 5000
    nothing = CliRunner().invoke(script, ["detect", str(tmp_path / "broken.wav"), "--threshold", "0.2"])
    assert nothing.exit_code == 2 and "no file could be used" in nothing.output and "Traceback" not in nothing.output
    wrong = CliRunner().invoke(script, ["detect", str(tmp_path / "talk.wav"), "--output", str(tmp_path / "x.txt")])
    assert wrong.exit_code == 2 and ".json, .csv or .rttm" in wrong.output
    for bad in ("-2.5", "nan", "3"):  # the contrast curve lies in [-2, 2]
        refused = CliRunner().invoke(script, ["detect", str(tmp_path / "talk.wav"), "--threshold", bad])
        assert refused.exit_code == 2 and "--threshold" in refused.output and "Traceback" not in refused.output
    unwritable = CliRunner().invoke(script, ["detect", str(tmp_path / "talk.wav"), "--threshold", "0.2", "--output",
                                             str(tmp_path / "talk.wav" / "out.json")])  # under a file
    assert unwritable.exit_code == 2 and "not writable" in unwritable.output, unwritable.output


def test_files_of_the_same_name_get_their_own_plots_and_rttm_ids(detector, tmp_path):
    _, corpus = detector
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        demo_conversation(corpus, tmp_path / folder / "talk.wav")
    result = CliRunner().invoke(load_script("ml/4_detect_speaker_changes.py").main, [
        "detect", str(tmp_path / "a"), str(tmp_path / "b"), "--threshold", "0.2", "--plots", str(tmp_path / "plots"),
        "--output", str(tmp_path / "both.rttm")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["talk-2.png", "talk.png"]
    assert {line.split()[1] for line in (tmp_path / "both.rttm").read_text().splitlines()} == {"talk", "talk-2"}


def test_evaluate_tunes_on_training_speakers_reports_every_key_and_is_shown_again(detector, trained, monkeypatch):
    root, _ = trained
    for name, value in {"CONVERSATIONS": 4, "CONVERSATION_TURNS": [3, 4], "CONVERSATION_PLOTS": 1}.items():
        monkeypatch.setattr(constants, name, value)
    script = load_script("ml/4_detect_speaker_changes.py").main
    result = CliRunner().invoke(script, ["evaluate"])
    assert result.exit_code == 0, result.output
    folder = root / "work" / "runs" / "softmax" / "evaluation" / "epoch-000004"
    report = json.loads((folder / "speaker_changes.json").read_text())
    for key in ("precision", "recall", "f1", "purity", "coverage", "collar_s", "num_conversations", "num_changes",
                "threshold"):
        assert key in report
    assert set(report["baseline"]) >= {"precision", "recall", "f1"} and report["num_conversations"] == 4
    # 2 validation speakers cannot make a 4-speaker conversation: the training speakers' test utterances tune
    assert report["tuning"]["speakers"] == TRAINING_SPEAKERS - 2 and "test utterances" in report["tuning"]["utterances"]
    # tuned on conversations like the test's and as many with longer turns
    assert report["tuning"]["num_conversations"] == 8 and report["tuning"]["utterances_per_turn"] == [
        constants.CONVERSATION_UTTERANCES_PER_TURN, constants.CONVERSATION_TUNING_LONG_TURNS]
    assert report["num_speakers"] == UNSEEN_SPEAKERS and report["by_collar"].keys() == \
        {"0.5", "0.25"}
    assert (folder / "speaker_changes_1.png").exists() and not (folder / "speaker_changes_2.png").exists()
    example = features.load_audio(folder / report["example"]["file"])  # the first conversation, to try detect on
    assert len(report["example"]["changes_s"]) == len(report["example"]["turns"]) - 1
    assert report["example"]["turns"][-1][1] <= len(example) / constants.SAMPLE_RATE + 0.01
    assert speaker_changes.ChangeDetector().threshold() == report["threshold"]
    again = CliRunner().invoke(script, ["evaluate"])
    assert again.exit_code == 0 and "shown again" in again.output
    monkeypatch.setattr(constants, "CHANGE_WINDOW_S", 1.0)
    refused = CliRunner().invoke(script, ["evaluate"])
    assert refused.exit_code == 1 and "CHANGE_WINDOW_S" in refused.output and "--force" in refused.output
    with pytest.raises(utils.PipelineError, match="CHANGE_WINDOW_S = 1.5, now 1.0"):  # a threshold of other curves
        speaker_changes.ChangeDetector().threshold()
    assert speaker_changes.ChangeDetector(threshold=0.3).threshold() == 0.3
    # evaluated again without plots: nothing of the earlier evaluation is left beside the new report
    monkeypatch.setattr(constants, "CONVERSATION_PLOTS", 0)
    forced = CliRunner().invoke(script, ["evaluate", "--force"])
    assert forced.exit_code == 0, forced.output
    assert not list(folder.glob("speaker_changes_*")) and "example" not in json.loads(
        (folder / "speaker_changes.json").read_text())


def test_the_validation_speakers_tune_when_there_are_enough_and_never_the_unseen(detector, monkeypatch):
    from ml.inputs import load_inputs
    _, corpus = detector
    inputs = load_inputs()
    validation = inputs.record["validation_speakers"]
    monkeypatch.setattr(constants, "CONVERSATION_SPEAKERS", [2, 2])
    tuning, described = speaker_changes.tuning_speakers(corpus, inputs)
    assert sorted(tuning) == sorted(validation) and "validation" in described
    assert all(len(paths) == len(corpus.utterances[s]) for s, paths in tuning.items())
    monkeypatch.setattr(constants, "CONVERSATION_SPEAKERS", [2, 3])
    tuning, described = speaker_changes.tuning_speakers(corpus, inputs)
    assert sorted(tuning) == sorted(inputs.speakers) and not set(tuning) & set(validation)
    test_keys = set(inputs.test.utterance_keys.tolist())
    assert all(p.stem.removesuffix("_mic1") in {k.split("/")[-1].removesuffix("_mic1") for k in test_keys}
               for paths in tuning.values() for p in paths)


def test_change_detection_settings_never_stop_a_training_run_from_resuming(detector, monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_WINDOW_S", 1.0)
    monkeypatch.setattr(constants, "CONVERSATIONS", 7)
    result = CliRunner().invoke(load_script("ml/1_train_triplet_softmax_model.py").main, ["--loss_on_softmax"])
    assert result.exit_code == 0 and "nothing to train" in result.output, result.output


def test_the_contrast_curve_is_the_step_beyond_each_sides_own_spread(monkeypatch):
    """By hand: 2-D unit embeddings every 0.1 s; at the point t = 2 s with 1 s sides."""
    monkeypatch.setattr(constants, "CHANGE_WINDOW_S", 1.0)
    monkeypatch.setattr(constants, "CHANGE_HOP_S", 0.5)
    monkeypatch.setattr(constants, "CHANGE_MIN_VOICED_S", 0.0)
    times = np.arange(0.05, 4.0, 0.1)
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])

    def value_at_2s(vectors, curve):
        monkeypatch.setattr(constants, "CHANGE_CURVE", curve)
        found = speaker_changes.embedding_curve(speaker_changes.Track.of(times, vectors, np.ones(len(times))), 4.0)
        return found.values[np.argmin(np.abs(found.times - 2.0))]

    clean = np.where((times < 2.0)[:, None], e1, e2)  # one speaker, then another
    assert value_at_2s(clean, "cosine") == pytest.approx(1.0) and value_at_2s(clean, "contrast") == pytest.approx(1.0)
    varied = np.where((times < 1.5)[:, None], e1, e2)  # the left side's first half differs from its second
    cosine = 1 - 0.5 / np.sqrt(0.5)  # mean of the left side (0.5, 0.5) against e2
    assert value_at_2s(varied, "cosine") == pytest.approx(cosine)
    assert value_at_2s(varied, "contrast") == pytest.approx(cosine - (1.0 + 0.0) / 2)


def test_merging_removes_candidates_weakest_first_and_its_strengths_give_each_thresholds_result(monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_MERGE_REACH_S", 3.0)
    monkeypatch.setattr(constants, "CHANGE_MIN_VOICED_S", 0.0)
    monkeypatch.setattr(constants, "CHANGE_CURVE", "cosine")
    times = np.arange(0.05, 8.0, 0.1)
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    track = speaker_changes.Track.of(times, np.where((times < 4.0)[:, None], e1, e2), np.ones(len(times)))
    # by hand: the candidate at 2 s lies inside the first speaker (0 between [0, 2) and [2, 4)): removed first;
    # the one at 4 s then scores 1 between [1, 4) and [4, 7)
    np.testing.assert_allclose(speaker_changes.merge_strengths(track, np.array([2.0, 4.0]), 8.0), [0.0, 1.0], atol=1e-9)

    # on noisy embeddings, keeping the candidates of strength >= t is what merging down to threshold t keeps
    rng = np.random.default_rng(3)
    noisy = rng.standard_normal((len(times), 4)) + np.where((times < 4.0)[:, None], 1.0, -1.0) * np.array([1, 0, 0, 0])
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    track = speaker_changes.Track.of(times, noisy, np.ones(len(times)))
    candidates = np.array([1.2, 2.5, 4.0, 5.3, 6.6])
    strengths = speaker_changes.merge_strengths(track, candidates, 8.0)

    def merged_down_to(threshold):
        kept = list(candidates)
        while kept:
            edges = [0.0] + kept + [8.0]
            scores = [speaker_changes.side_distance(track, np.array([max(edges[i], c - 3.0)]), np.array([c]),
                                                    np.array([min(edges[i + 2], c + 3.0)]))[0]
                      for i, c in enumerate(kept)]
            if min(scores) >= threshold:
                break
            del kept[int(np.argmin(scores))]
        return kept
    for threshold in np.linspace(-0.1, 1.5, 33):
        assert list(candidates[strengths >= threshold]) == merged_down_to(threshold), threshold


def test_every_file_of_a_detect_call_gets_its_own_id_and_plot_name():
    script = load_script("ml/4_detect_speaker_changes.py")
    taken = set()
    names = [script.unique_name(Path(p), taken) for p in ("a/x.wav", "b/x-2.wav", "c/x.wav", "a/a b.wav", "b/a_b.wav")]
    assert len(set(names)) == 5 and names[:2] == ["x", "x-2"] and all(" " not in n for n in names)


def _segment_track(segment_vectors, seconds=2.0, voiced=None):
    """A track of one window every 0.1 s whose segments of `seconds` each hold one vector (a row)."""
    segment_vectors = np.asarray(segment_vectors, float)
    times = np.arange(0.05, seconds * len(segment_vectors), 0.1)
    index = np.minimum((times // seconds).astype(int), len(segment_vectors) - 1)
    return speaker_changes.Track.of(times, segment_vectors[index], np.ones(len(times)) if voiced is None else voiced)


def test_clustering_recognises_a_speaker_heard_before(monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_MIN_VOICED_S", 0.0)
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # by hand, segments A A B A: the two first join at 0; the last A joins them at 0 (not adjacent: no candidate);
    # B joins at distance 1, which both candidates around it get
    track = _segment_track([e1, e1, e2, e1])
    np.testing.assert_allclose(speaker_changes.cluster_strengths(track, [2.0, 4.0, 6.0], 8.0, np.zeros(3)),
                               [0.0, 1.0, 1.0], atol=1e-12)


def test_cluster_strengths_give_each_thresholds_clustering(monkeypatch):
    """Keeping the candidates of strength >= t is what average-linkage clustering stopped at t keeps apart,
    computed here from scratch at every t."""
    monkeypatch.setattr(constants, "CHANGE_MIN_VOICED_S", 0.0)
    rng = np.random.default_rng(11)
    for _ in range(5):
        speakers = rng.standard_normal((3, 6))
        vectors = speakers[rng.integers(0, 3, 9)] + 0.6 * rng.standard_normal((9, 6))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        track = _segment_track(vectors)
        candidates = np.arange(1, 9) * 2.0
        strengths = speaker_changes.cluster_strengths(track, candidates, 18.0, np.zeros(8))
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        between = 1 - unit @ unit.T

        def apart_at(threshold, between=between):
            clusters = [[i] for i in range(9)]
            while len(clusters) > 1:
                pairs = [(between[np.ix_(a, b)].mean(), i, j) for i, a in enumerate(clusters)
                         for j, b in enumerate(clusters) if i < j]
                distance, i, j = min(pairs)
                if distance >= threshold:
                    break
                clusters[i] += clusters.pop(j)
            label = {s: k for k, members in enumerate(clusters) for s in members}
            return [label[k] != label[k + 1] for k in range(8)]
        for threshold in np.unique(strengths) + 1e-9:  # just above each strength: the clusterings differ there
            assert list(strengths >= threshold) == apart_at(threshold), threshold
        assert list(strengths >= strengths.min() - 1e-9) == apart_at(strengths.min() - 1e-9)


def test_a_segment_too_short_to_judge_is_joined_across_its_weaker_candidate(monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_MIN_VOICED_S", 0.3)
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    voiced = np.ones(80)
    voiced[40:60] = 0  # the third segment, [4, 6) s, is silent
    track = _segment_track([e1, e2, e1, e2], voiced=voiced)
    local = np.array([0.9, 0.2, 0.5])  # the silent segment's candidates: 4 s (0.2) is weaker than 6 s (0.5)
    strengths = speaker_changes.cluster_strengths(track, [2.0, 4.0, 6.0], 8.0, local)
    assert strengths[1] == -np.inf and np.isfinite(strengths[[0, 2]]).all()


def test_long_recordings_are_clustered_in_bounded_blocks(monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_MIN_VOICED_S", 0.0)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((40, 6))
    track = _segment_track(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    candidates, duration = np.arange(1, 40) * 2.0, 80.0
    seen = []
    original = speaker_changes._average_linkage_strengths
    monkeypatch.setattr(speaker_changes, "_average_linkage_strengths", lambda means: seen.append(len(means))
                        or original(means))
    monkeypatch.setattr(constants, "CHANGE_CLUSTER_SEGMENTS", 10)
    blocked = speaker_changes.cluster_strengths(track, candidates, duration, np.zeros(39))
    assert max(seen) == 10 and len(seen) == 7 and np.isfinite(blocked).all()
    # the candidates nearest the first block's middle are scored by that block alone
    first = original(track.sums(np.arange(10) * 2.0, np.arange(1, 11) * 2.0)[:, :-1])
    np.testing.assert_allclose(blocked[:6], first[:6])


def test_ranked_changes_add_the_cluster_strength_to_the_local_one(monkeypatch):
    monkeypatch.setattr(constants, "CHANGE_MIN_VOICED_S", 0.0)
    monkeypatch.setattr(constants, "CHANGE_CURVE", "cosine")
    rng = np.random.default_rng(2)
    speakers = rng.standard_normal((2, 8))
    vectors = speakers[np.array([0, 1, 0, 1, 1, 0])] + 0.3 * rng.standard_normal((6, 8))
    track = _segment_track(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), seconds=4.0)
    curve = speaker_changes.embedding_curve(track, 24.0)
    monkeypatch.setattr(constants, "CHANGE_CLUSTER_WEIGHT", 0.0)
    times, local = speaker_changes.ranked_changes(curve)
    monkeypatch.setattr(constants, "CHANGE_CLUSTER_WEIGHT", 0.5)
    same_times, combined = speaker_changes.ranked_changes(curve)
    np.testing.assert_array_equal(times, same_times)
    clustered = speaker_changes.cluster_strengths(track, times, 24.0, local)
    np.testing.assert_allclose(combined, (local + 0.5 * clustered) / 1.5)


def test_conversations_hold_the_utterances_per_turn_asked_for(tone_corpus, monkeypatch):
    drawn = []
    original = features.voice_only
    monkeypatch.setattr(features, "voice_only", lambda signal: drawn.append(1) or original(signal))
    paths = {s.name: sorted(s.glob("*_mic1.flac")) for s in (tone_corpus / "wav48_silence_trimmed").iterdir()}
    for per_turn in ([1, 1], [4, 4]):
        drawn.clear()
        conversation = next(speaker_changes.conversations(paths, 1, [7], per_turn=per_turn))
        assert len(drawn) == per_turn[0] * len(conversation.turns)


def test_the_tuning_sets_have_their_own_seeds_and_the_second_the_long_turns(monkeypatch):
    calls = []
    monkeypatch.setattr(speaker_changes, "conversation_curves",
                        lambda detector, paths, seed, desc, skipped, keep=0, per_turn=None:
                        calls.append((tuple(seed), per_turn)) or ([], [], [], [], 0.0))
    speaker_changes.tuning_curves(None, {}, {})
    seeds = [seed for seed, _ in calls]
    assert len(set(seeds)) == 2 and (constants.SEED, 15, 1) not in seeds  # nor the test conversations' seed
    assert [per_turn for _, per_turn in calls] == [None, constants.CONVERSATION_TUNING_LONG_TURNS]
