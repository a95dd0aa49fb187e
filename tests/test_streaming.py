"""Streamed inputs: each split's frames memory-mapped from disk instead of held in memory, the same numbers."""
import csv
import json

import numpy as np
import pytest

import constants
import utils
from ml import inputs as ml_inputs
from ml import training


def test_streamed_inputs_hold_the_same_windows_as_those_in_memory(small_inputs):
    streamed = ml_inputs.load_inputs(stream=True)
    held = ml_inputs.load_inputs(stream=False)
    for split in ("train", "test"):
        assert isinstance(getattr(streamed, split).frames, np.memmap)
        assert not isinstance(getattr(held, split).frames, np.memmap)
        np.testing.assert_array_equal(getattr(streamed, split).frames, getattr(held, split).frames)
        index = np.arange(0, len(getattr(held, split)), 7)
        np.testing.assert_array_equal(getattr(streamed, split).windows(index), getattr(held, split).windows(index))


def test_auto_streams_when_the_frames_exceed_the_memory_budget(small_inputs, monkeypatch):
    monkeypatch.setattr(constants, "STREAM_INPUTS", "auto")
    monkeypatch.setattr(constants, "INPUTS_MEMORY_BUDGET_MB", 1e-3)  # 1 kB: any frames exceed it
    assert ml_inputs.streams() and isinstance(ml_inputs.load_inputs().train.frames, np.memmap)
    monkeypatch.setattr(constants, "INPUTS_MEMORY_BUDGET_MB", 4000)
    assert not ml_inputs.streams() and not isinstance(ml_inputs.load_inputs().train.frames, np.memmap)
    monkeypatch.setattr(constants, "STREAM_INPUTS", "yes")
    assert ml_inputs.streams()


def test_training_on_streamed_inputs_gives_the_losses_of_inputs_in_memory(small_inputs, workdir, monkeypatch):
    losses = []
    for name, stream in (("memory", False), ("stream", True)):
        loaded = ml_inputs.load_inputs(workdir / "inputs", stream=stream)
        monkeypatch.setattr(constants, "WORKDIR", str(workdir.parent / name))
        monkeypatch.setattr(ml_inputs, "inputs_folder", lambda: workdir / "inputs")
        training.train_softmax(loaded, epochs=2, verbose=0)
        with open(workdir.parent / name / "runs" / "softmax" / "history.csv") as handle:
            losses.append([float(row["loss"]) for row in csv.DictReader(handle)])
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_inputs_of_the_older_layout_still_load_but_are_rebuilt(small_inputs, workdir):
    folder = workdir / "inputs"
    with np.load(folder / "data.npz") as data:
        arrays = dict(data)
    for split in ("train", "test"):
        arrays[f"{split}_frames"] = np.load(folder / f"{split}_frames.npy")
        (folder / f"{split}_frames.npy").unlink()
    np.savez(folder / "data.npz", **arrays)  # frames inside data.npz, as before
    record = json.loads((folder / "inputs.json").read_text())
    record["files"] = {name: list(utils.file_digest(folder / name)) for name in ("data.npz", "norm.json")}
    (folder / "inputs.json").write_text(json.dumps(record))
    loaded = ml_inputs.load_inputs(stream=True)  # nothing to map: held in memory
    np.testing.assert_array_equal(loaded.train.frames, small_inputs.train.frames)
    assert "older layout" in ml_inputs.stale_reason(record["built_from"])


def test_windows_of_a_memory_mapped_file_are_read_without_mapping_its_pages(tmp_path):
    import re

    from audio import features
    frames = np.random.default_rng(3).normal(size=(200_000, 39)).astype(np.float32)  # 31 MB
    np.save(tmp_path / "frames.npy", frames)
    mapped = features.readable_map(tmp_path / "frames.npy")
    starts = np.random.default_rng(4).integers(0, len(frames) - 10, 900)
    np.testing.assert_array_equal(features.gather_windows(mapped, starts, 10), frames[starts[:, None] + np.arange(10)])
    resident, current = 0, None
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            current = line.split()[-1]
        elif line.startswith("Rss:") and current == str(tmp_path / "frames.npy"):
            resident += int(line.split()[1])
    assert resident < 1024  # kB: the 900 windows did not fault the file in (through the mapping: most of its 31 MB)
    runs = np.concatenate([3 * np.arange(50), [400, 405, 420, 5000], 7000 + 3 * np.arange(20)])[::-1]  # overlapping
    np.testing.assert_array_equal(features.gather_windows(mapped, runs, 10), frames[runs[:, None] + np.arange(10)])
    np.testing.assert_array_equal(features.gather_windows(mapped[5:], starts, 10),  # a view: through the mapping
                                  frames[5:][starts[:, None] + np.arange(10)])
    with pytest.raises(IndexError):
        features.gather_windows(mapped, [len(frames) - 5], 10)
    # the file replaced under the same name (as stage 0 rebuilding inputs would): still the mapped file's windows
    np.save(tmp_path / "new.npy", frames + 1)
    (tmp_path / "new.npy").replace(tmp_path / "frames.npy")
    np.testing.assert_array_equal(features.gather_windows(mapped, starts, 10), frames[starts[:, None] + np.arange(10)])


def test_a_frames_file_replaced_while_opened_or_cut_short_is_named_not_read(tmp_path, monkeypatch):
    import utils
    from audio import features
    frames = np.arange(2000 * 39, dtype=np.float32).reshape(2000, 39)
    np.save(tmp_path / "frames.npy", frames)
    real_load = np.load

    def load_then_replace(path, *args, **kwargs):  # the path replaced right after the map is made
        mapped = real_load(path, *args, **kwargs)
        np.save(tmp_path / "new.npy", frames + 1000)
        (tmp_path / "new.npy").replace(tmp_path / "frames.npy")
        return mapped
    monkeypatch.setattr(np, "load", load_then_replace)
    with pytest.raises(OSError, match="replaced"):
        features.readable_map(tmp_path / "frames.npy")
    monkeypatch.setattr(np, "load", real_load)
    size, digest = utils.file_digest(tmp_path / "frames.npy")
    with pytest.raises(OSError, match="differs from its record"):
        features.readable_map(tmp_path / "frames.npy", [size, "0" * 64])
    mapped = features.readable_map(tmp_path / "frames.npy", [size, digest])
    assert features.gather_windows(mapped, np.array([], int), 10).shape == (0, 10, 39)  # as from memory
    with open(tmp_path / "frames.npy", "r+b") as handle:  # cut short after it was checked
        handle.truncate(size - 39 * 4 * 100)
    with pytest.raises(utils.CorruptFile, match="ended early.*0_generate_inputs"):
        features.gather_windows(mapped, np.array([1980]), 10)
