"""Tests of audio/demo_corpus.py: layout, determinism, resumption, sane audio and a voice per speaker."""
import itertools
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import constants
from audio import demo_corpus
from audio.demo_corpus import utterance_paths, write_demo_corpus

SPEAKERS, UTTERANCES, SEED = 3, 2, 7


def write(root, **settings):
    """Write a tiny corpus (3 speakers x 2 utterances at 16 kHz unless told otherwise) without a bar."""
    arguments = {"num_speakers": SPEAKERS, "utterances_per_speaker": UTTERANCES, "sample_rate": 16000,
                 "layout": "0.92", "seed": SEED, "progress": False}
    return write_demo_corpus(root, **{**arguments, **settings})


def tree(root):
    """{relative path: bytes} of every file under root."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def mtimes(root):
    """{relative path: modification time in ns} of every file under root."""
    return {path.relative_to(root).as_posix(): path.stat().st_mtime_ns
            for path in root.rglob("*") if path.is_file()}


def read(root, speaker_index, number, layout="0.92"):
    """(samples as float, sample rate) of one utterance."""
    return sf.read(utterance_paths(root, layout, speaker_index, number)[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny default-shaped corpus, written once for the read-only tests."""
    return write(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("layout, sample_rate, audio_folder, suffix, file_format", [
    ("0.92", 16000, "wav48_silence_trimmed", "_mic1.flac", "FLAC"),
    ("0.80", 48000, "wav48", ".wav", "WAV"),
])
def test_layout(tmp_path, layout, sample_rate, audio_folder, suffix, file_format):
    """Every release's folders, names, format, sample rate and channel count."""
    root = write(tmp_path, layout=layout, sample_rate=sample_rate)
    assert root == tmp_path
    expected = {"speaker-info.txt", "demo-corpus.json"}  # the record of the settings the files were made with
    for number, speaker in itertools.product((1, 2), ("p225", "p226", "p227")):
        expected.add(f"{audio_folder}/{speaker}/{speaker}_{number:03d}{suffix}")
        expected.add(f"txt/{speaker}/{speaker}_{number:03d}.txt")
    assert set(tree(root)) == expected
    for name in expected - {"speaker-info.txt", "demo-corpus.json"}:
        if name.startswith(audio_folder):
            info = sf.info(root / name)
            assert (info.samplerate, info.channels) == (sample_rate, 1)
            assert (info.format, info.subtype) == (file_format, "PCM_16")


def test_defaults_come_from_constants_at_call_time(tmp_path, monkeypatch):
    """Unset arguments take constants.DEMO_*, read when the function runs."""
    for name, value in {"DEMO_NUM_SPEAKERS": 2, "DEMO_UTTERANCES_PER_SPEAKER": 1, "DEMO_SAMPLE_RATE": 22050,
                        "DEMO_LAYOUT": "0.80", "DEMO_SEED": 3}.items():
        monkeypatch.setattr(constants, name, value)
    write_demo_corpus(tmp_path, progress=False)
    audio = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*.wav"))
    assert audio == ["wav48/p225/p225_001.wav", "wav48/p226/p226_001.wav"]
    assert sf.info(tmp_path / audio[0]).samplerate == 22050
    assert tree(tmp_path) == tree(write_demo_corpus(tmp_path / "again", 2, 1, 22050, "0.80", 3, progress=False))


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path, corpus):
    """The same arguments write byte-identical files; another seed writes other audio."""
    assert tree(write(tmp_path / "same")) == tree(corpus)
    other = write(tmp_path / "other", seed=SEED + 1)
    for speaker_index, number in itertools.product(range(SPEAKERS), range(1, UTTERANCES + 1)):
        first, second = read(corpus, speaker_index, number)[0], read(other, speaker_index, number)[0]
        assert len(first) != len(second) or not np.array_equal(first, second)


def test_a_voice_does_not_depend_on_the_number_of_speakers(tmp_path):
    """Speaker p226 says the same first utterance whether 2 or 3 speakers are written."""
    two, three = write(tmp_path / "two", num_speakers=2), write(tmp_path / "three", num_speakers=3)
    audio, text = utterance_paths(".", "0.92", 1, 1)
    for path in (audio, text):
        assert (two / path).read_bytes() == (three / path).read_bytes()


def test_speaker_info_lists_every_speaker(corpus):
    """speaker-info.txt has VCTK's header and one ID AGE GENDER ACCENTS REGION line per speaker."""
    header, *lines = (corpus / "speaker-info.txt").read_text().splitlines()
    assert header.split() == ["ID", "AGE", "GENDER", "ACCENTS", "REGION"]
    assert [line.split()[0] for line in lines] == ["p225", "p226", "p227"]
    for line in lines:
        _, age, gender, *_ = line.split()
        assert age.isdigit() and gender in ("F", "M")


def test_transcripts_are_sentences(corpus):
    """Each txt file holds one capitalised pseudo-sentence with a full stop."""
    for path in (corpus / "txt").rglob("*.txt"):
        text = path.read_text()
        assert text.endswith(".\n") and text[0].isupper() and text[:-2].replace(" ", "").isalpha()


def test_resume_skips_existing_files_and_completes_the_corpus(tmp_path):
    """An interrupted run (fewer utterances, lost files, a stale partial file) resumes to the full corpus."""
    reference = tree(write(tmp_path / "reference"))
    root = write(tmp_path / "resumed", utterances_per_speaker=1)
    (root / "txt/p226/p226_001.txt").unlink()
    (root / "wav48_silence_trimmed/p227/p227_001_mic1.flac").unlink()
    (root / "wav48_silence_trimmed/p227/.tmp-12345-p227_001_mic1.flac").write_bytes(b"interrupted")
    before = mtimes(root)
    write(root)
    assert tree(root) == reference
    after = mtimes(root)
    kept = [name for name in before if ".tmp-" not in name and name != "speaker-info.txt"]
    assert kept and all(after[name] == before[name] for name in kept)


def test_audio_is_finite_unclipped_and_framed_by_near_silence(corpus):
    """Peaks in 0.5-0.9 of full scale, speech well above a quiet (but not digital zero) noise floor."""
    for speaker_index, number in itertools.product(range(SPEAKERS), range(1, UTTERANCES + 1)):
        samples, rate = read(corpus, speaker_index, number)
        assert np.all(np.isfinite(samples))
        assert 0.45 < np.max(np.abs(samples)) < 0.95
        assert 1.2 < len(samples) / rate < 4.0
        rms = np.sqrt(np.mean(samples ** 2))
        for edge in (samples[: int(0.15 * rate)], samples[-int(0.15 * rate):]):
            edge_rms = np.sqrt(np.mean(edge ** 2))
            assert 0 < edge_rms < 0.02 * rms


def test_speakers_differ_more_than_utterances_of_one_speaker(tmp_path):
    """Mean log-mel spectra (shape only) are farther apart between speakers than within one."""
    root = write(tmp_path, num_speakers=4, utterances_per_speaker=3)
    shapes = {}
    for speaker_index, number in itertools.product(range(4), range(1, 4)):
        samples, rate = read(root, speaker_index, number)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=samples, sr=rate, n_mels=40))
        loud = mel.max(axis=0) > mel.max() - 40  # frames of speech, not of the noise floor
        mean = mel[:, loud].mean(axis=1)
        shapes[speaker_index, number] = mean - mean.mean()  # the level is random per file
    within, between = [], []
    for a, b in itertools.combinations(shapes, 2):
        (within if a[0] == b[0] else between).append(np.linalg.norm(shapes[a] - shapes[b]))
    assert np.mean(between) > np.mean(within)


def test_bad_arguments_are_refused(tmp_path):
    """An unknown layout or a negative seed is an error, not a strange corpus."""
    with pytest.raises(ValueError):
        write(tmp_path, layout="0.99")
    with pytest.raises(ValueError):
        write(tmp_path, seed=-1)


def test_command_line_prints_a_summary(tmp_path):
    """python -m audio.demo_corpus OUT_DIR ... writes the corpus and ends with one summary line."""
    result = CliRunner().invoke(demo_corpus.main, [str(tmp_path), "--speakers", "2", "--utterances", "1",
                                                   "--sample-rate", "8000", "--layout", "0.80", "--seed", "5"])
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert "2 speakers, 2 utterances" in summary and str(Path(tmp_path)) in summary
    assert sorted(path.name for path in tmp_path.rglob("*.wav")) == ["p225_001.wav", "p226_001.wav"]


def test_a_folder_holding_a_corpus_of_other_settings_is_refused_not_mixed(tmp_path):
    import utils
    root = tmp_path / "c1"
    write_demo_corpus(root, num_speakers=2, utterances_per_speaker=2, seed=1, progress=False)
    before = sorted(p.read_bytes() for p in root.rglob("*.flac"))
    for other in ({"seed": 2}, {"sample_rate": 8000}, {"layout": "0.80"}):
        with pytest.raises(utils.PipelineError, match="made with .* files of both would mix"):
            write_demo_corpus(root, num_speakers=2, utterances_per_speaker=3, progress=False,
                              **{"seed": 1, **other})
    assert sorted(p.read_bytes() for p in root.rglob("*.flac")) == before  # nothing added or changed
    write_demo_corpus(root, num_speakers=2, utterances_per_speaker=3, seed=1, progress=False)  # the same: grows
    assert len(list(root.rglob("*.flac"))) == 6
    refused = CliRunner().invoke(demo_corpus.main, [str(root), "--seed", "2"])
    assert refused.exit_code == 1 and "made with seed 1" in refused.output and "Traceback" not in refused.output
    # a corpus written before the record existed is adopted when its speakers are this seed's
    (root / demo_corpus.RECORD_FILE).unlink()
    write_demo_corpus(root, num_speakers=2, utterances_per_speaker=3, seed=1, progress=False)
    (root / demo_corpus.RECORD_FILE).unlink()
    with pytest.raises(utils.PipelineError, match="not empty and holds no demo corpus of these settings"):
        write_demo_corpus(root, num_speakers=2, utterances_per_speaker=3, seed=2, progress=False)
