"""Corpus discovery (VCTK 0.92, VCTK 0.80, any speaker-folder tree) and the speaker split."""
import pytest

import constants
from audio.corpus import find_corpus, split_speakers
from utils import PipelineError



def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_vctk_092_takes_mic1_only_and_names_speakers_by_folder(tmp_path):
    audio = tmp_path / "wav48_silence_trimmed"
    for speaker in ("p225", "s5"):
        for n in (2, 1):
            touch(audio / speaker / f"{speaker}_{n:03d}_mic1.flac")
            touch(audio / speaker / f"{speaker}_{n:03d}_mic2.flac")
    touch(tmp_path / "txt" / "p225" / "p225_001.txt")
    corpus = find_corpus(tmp_path)
    assert corpus.layout == "vctk-0.92" and corpus.speakers == ["p225", "s5"]
    assert [u.key for u in corpus.utterances["p225"]] == ["p225/p225_001_mic1", "p225/p225_002_mic1"]
    assert find_corpus(tmp_path, mic="mic2").utterances["s5"][0].key == "s5/s5_001_mic2"


def test_vctk_080_layout(tmp_path):
    for speaker in ("p226", "p225"):
        touch(tmp_path / "wav48" / speaker / f"{speaker}_001.wav")
    touch(tmp_path / "wav16" / "p999" / "p999_001.wav")  # beside wav48: not part of the corpus
    corpus = find_corpus(tmp_path)
    assert corpus.layout == "vctk-0.80" and corpus.speakers == ["p225", "p226"]
    assert corpus.utterances["p226"][0].path == tmp_path / "wav48" / "p226" / "p226_001.wav"


def test_any_speaker_folder_tree_at_any_depth_with_mixed_extensions(tmp_path):
    touch(tmp_path / "set-a" / "alice" / "one.WAV")
    touch(tmp_path / "set-a" / "alice" / "two.flac")
    touch(tmp_path / "set-b" / "deep" / "bob" / "x.wav")
    touch(tmp_path / "set-b" / "deep" / "bob" / "notes.txt")
    touch(tmp_path / "set-b" / "deep" / "bob" / "._x.wav")  # macOS metadata, not audio
    corpus = find_corpus(tmp_path)
    assert corpus.layout == "speaker-folders" and corpus.speakers == ["alice", "bob"]
    assert [u.key for u in corpus.utterances["alice"]] == ["set-a/alice/one", "set-a/alice/two"]
    assert corpus.num_utterances() == 3


def test_missing_or_unset_or_empty_corpus_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "CORPUS_PATH", "")
    with pytest.raises(PipelineError, match="VCTK_CORPUS_PATH"):
        find_corpus()
    with pytest.raises(PipelineError, match="does not exist"):
        find_corpus(tmp_path / "nowhere")
    (tmp_path / "empty" / "p225").mkdir(parents=True)
    with pytest.raises(PipelineError, match="no audio files"):
        find_corpus(tmp_path / "empty")


def test_vctk_split_names_missing_speakers_and_suggests_auto():
    with pytest.raises(PipelineError) as error:
        split_speakers(["p225", "p226"], split="vctk")
    assert "p227" in str(error.value) and "DEEP_SPEAKER_SPLIT=auto" in str(error.value)
    everyone = constants.VCTK_TRAIN_SPEAKERS + constants.VCTK_UNSEEN_SPEAKERS + ["s5"]
    train, unseen = split_speakers(everyone, split="vctk")
    assert len(train) == 80 and len(unseen) == 29 and "s5" not in train + unseen


def test_auto_split_takes_the_first_speakers_in_sorted_order():
    train, unseen = split_speakers(["c", "a", "d", "b"], split="auto", num_train=3)
    assert train == ["a", "b", "c"] and unseen == ["d"]


def test_discovered_files_are_real_audio(tone_corpus):
    corpus = find_corpus(tone_corpus)
    assert corpus.num_utterances() == 20 and all(u.path.stat().st_size > 0 for u in corpus.utterances["p225"])


def test_a_file_named_like_a_speed_copy_is_refused_in_one_line(tmp_path):
    """"p226_001_mic1@0.9" is the cache's name of p226_001_mic1 played at 0.9: another file under that name would take
    its place (stage 0 rebuilt one of them on every run, then failed)."""
    audio = tmp_path / "wav48_silence_trimmed" / "p226"
    touch(audio / "p226_001_mic1.flac")
    assert find_corpus(tmp_path).num_utterances() == 1
    touch(audio / "p226_001_mic1@0.9.flac")
    with pytest.raises(PipelineError, match=r"1 corpus file name\(s\) hold '@' \(p226/p226_001_mic1@0.9\).*rename"):
        find_corpus(tmp_path)
