"""Find the speakers and utterances of a corpus, and split the speakers into training and unseen ones.

Three layouts are read:
  VCTK 0.92   <root>/wav48_silence_trimmed/<speaker>/<speaker>_<nnn>_mic1.flac (and _mic2)
  VCTK 0.80   <root>/wav48/<speaker>/<speaker>_<nnn>.wav
  any other   <root>/.../<speaker>/<utterance>.(wav|flac), the speaker being the parent folder's name
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

import constants
from utils import PipelineError

VCTK_AUDIO_FOLDERS = {"wav48_silence_trimmed": "vctk-0.92", "wav48": "vctk-0.80"}
MIC_SUFFIX = re.compile(r"_(mic\d+)$")


@dataclass(frozen=True)
class Utterance:
    """One audio file: its speaker, a key unique in the corpus (relative path, no suffix), its path."""
    speaker: str
    key: str
    path: Path


@dataclass
class Corpus:
    """The utterances of a corpus, per speaker, each list sorted by key."""
    root: Path
    layout: str
    utterances: dict

    @property
    def speakers(self):
        """Speaker names in sorted order."""
        return sorted(self.utterances)

    def num_utterances(self):
        """Number of utterances over all speakers."""
        return sum(len(items) for items in self.utterances.values())


def find_corpus(root=None, mic=None, extensions=None):
    """Discover the corpus under `root` (default constants.CORPUS_PATH); PipelineError if there is none."""
    root = constants.CORPUS_PATH if root is None else root
    mic = constants.VCTK_MIC if mic is None else mic
    extensions = {f".{e.lower().lstrip('.')}" for e in (extensions or constants.AUDIO_EXTENSIONS)}
    if not str(root).strip():
        raise PipelineError("no corpus path is set: set VCTK_CORPUS_PATH=/path/to/VCTK (or CORPUS_PATH in "
                            "constants.py)")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise PipelineError(f"the corpus path {root} does not exist or is not a folder (VCTK_CORPUS_PATH)")

    audio_root, layout = root, "speaker-folders"
    for folder, name in VCTK_AUDIO_FOLDERS.items():
        if (root / folder).is_dir():
            audio_root, layout = root / folder, name
            break

    utterances = {}
    for path in _audio_files(audio_root, extensions):
        relative = path.relative_to(audio_root).with_suffix("")
        found_mic = MIC_SUFFIX.search(relative.name)
        if mic and found_mic and found_mic.group(1) != mic:
            continue
        speaker = path.parent.name if path.parent != audio_root else audio_root.name
        utterances.setdefault(speaker, []).append(Utterance(speaker, relative.as_posix(), path))
    if not utterances:
        raise PipelineError(f"no audio files ({', '.join(sorted(extensions))}) under {root}; expected VCTK "
                            f"(wav48/ or wav48_silence_trimmed/) or <root>/<speaker>/<utterance> files")
    clashing = [u.key for items in utterances.values() for u in items if "@" in u.key]
    if clashing:  # "p226_001@0.9" would be taken for the speed copy of p226_001 (features.speed_key)
        shown = ", ".join(clashing[:3]) + (f" and {len(clashing) - 3} more" if len(clashing) > 3 else "")
        raise PipelineError(f"{len(clashing)} corpus file name(s) hold '@' ({shown}), which the feature cache keeps "
                            f"for the speed copies of utterances (<name>@<factor>): rename them")
    for items in utterances.values():
        items.sort(key=lambda u: u.key)
    return Corpus(root, layout, dict(sorted(utterances.items())))


def _audio_files(folder, extensions):
    """Every non-hidden file below `folder` whose extension is in `extensions`, in sorted order."""
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory, f) for f in sorted(files)
                     if not f.startswith(".") and Path(f).suffix.lower() in extensions)
    return found


def named_audio_files(arguments):
    """The audio files that command-line arguments name: files, folders (their AUDIO_EXTENSIONS files,
    recursively) and .txt lists of paths, in order."""
    extensions = {f".{e.lower()}" for e in constants.AUDIO_EXTENSIONS}
    found = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found += _audio_files(path, extensions)
        elif path.suffix.lower() == ".txt" and path.is_file():
            found += [Path(line.strip()) for line in path.read_text(errors="replace").splitlines() if line.strip()]
        else:
            found.append(path)
    if not found:
        raise PipelineError(f"no audio files in {', '.join(map(str, arguments))}")
    return found


def split_speakers(speakers, split=None, num_train=None):
    """(training speakers, unseen speakers) of the split "vctk" (original lists) or "auto" (sorted order)."""
    split = constants.SPLIT if split is None else split
    num_train = constants.NUM_SPEAKERS_CLASSIFICATION_TASK if num_train is None else num_train
    speakers = sorted(speakers)
    if split == "auto":
        if num_train < 1:
            raise PipelineError("NUM_SPEAKERS_CLASSIFICATION_TASK must be at least 1")
        return speakers[:num_train], speakers[num_train:]
    if split != "vctk":
        raise PipelineError(f"unknown SPLIT {split!r}; use 'vctk' or 'auto'")
    train, unseen = list(constants.VCTK_TRAIN_SPEAKERS), list(constants.VCTK_UNSEEN_SPEAKERS)
    missing = [s for s in train + unseen if s not in set(speakers)]
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        raise PipelineError(
            f"the corpus lacks {len(missing)} of the speakers that the original VCTK split names ({shown}). "
            f"For another corpus, set DEEP_SPEAKER_SPLIT=auto: the first NUM_SPEAKERS_CLASSIFICATION_TASK "
            f"(now {num_train}) speakers in sorted order train, the rest are unseen.")
    return train, unseen
