"""Clip preprocessing: real clips in, shards out; bad clips fail alone with one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import tone, write_video
from memface_hub.arrays_io import load_arrays, save_arrays
from memface_hub.data.preprocess import preprocess_clip, preprocess_clips, summarise, unique_clip_ids
from memface_hub.errors import MemFaceInputError
from memface_hub.io import read_frames
from memface_hub.io.shards import fit_mouth_model, is_complete_shard, load_shard


@pytest.fixture(scope="module")
def carphone_with_audio(carphone_path, tmp_path_factory):
    """The carphone clip re-encoded at 25 fps with a tone as its sound track."""
    path = tmp_path_factory.mktemp("clips") / "carphone talk.mp4"
    return write_video(path, read_frames(carphone_path), audio=tone(4.0))


def test_shard_contents(carphone_with_audio, tmp_path, tracker):
    result = preprocess_clip(carphone_with_audio, tmp_path, tracker=tracker)
    assert result.status == "done" and result.clip_id == "carphone_talk"
    assert result.frames == 100 and result.frames_tracked >= 95
    shard = load_shard(tmp_path / "carphone_talk")
    assert shard.num_frames == 100 and shard.valid.sum() >= 95
    assert shard.mouth_vertices.shape == (100, 102, 3)
    crops = read_frames(shard.crops_path)
    assert crops.shape == (100, 256, 256, 3)
    assert shard.audio_path is not None and shard.meta["audio_samples"] == pytest.approx(64_000, abs=800)
    assert shard.meta["source_sha256"] and shard.meta["landmarker"]
    # Stored vertices agree with the stored poses (catches arrays saved scrambled).
    recomputed = shard.poses.invert(shard.landmarks[:, [0, 13, 14]].astype(np.float64))
    np.testing.assert_allclose(recomputed[:, 1], shard.mouth_vertices[:, 25], atol=1e-3)
    # Resumable: a second run skips the finished shard and leaves it untouched.
    before = (tmp_path / "carphone_talk" / "meta.json").stat().st_mtime_ns
    again = preprocess_clips([carphone_with_audio], tmp_path, progress=False)
    assert again[0].status == "skipped"
    assert (tmp_path / "carphone_talk" / "meta.json").stat().st_mtime_ns == before


def test_batch_isolates_bad_clips(carphone_with_audio, carphone_path, tmp_path):
    clips = tmp_path / "in"
    clips.mkdir()
    no_face = write_video(clips / "wall.mp4", [np.full((96, 96, 3), 120, np.uint8)] * 10, audio=tone(0.4))
    not_video = clips / "notes.mp4"
    not_video.write_text("hello\n")
    empty = clips / "empty.mp4"
    empty.touch()
    out = tmp_path / "shards"
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    videos = [no_face, carphone_path, not_video, clips / "missing.mp4", empty, carphone_with_audio]
    results = preprocess_clips(videos, out, progress=False)
    status = {os.path.basename(r.video): r for r in results}
    assert status["carphone talk.mp4"].status == "done"
    expected = {"wall.mp4": "no face found", "carphone_pristine.mp4": "no audio stream",
                "notes.mp4": "not a readable", "missing.mp4": "file not found", "empty.mp4": "empty file"}
    for name, problem in expected.items():
        assert status[name].status == "failed", name
        assert problem in status[name].error and name in status[name].error
        assert "\n" not in status[name].error
    summary = summarise(results)
    assert summary["clips_done"] == 1 and summary["clips_failed"] == 5
    assert (out / "keep.txt").read_text() == "earlier output"
    assert sorted(p.name for p in out.iterdir()) == ["carphone_talk", "keep.txt"]  # no partial folders


def test_silent_clip_allowed_on_request(carphone_path, tmp_path, tracker):
    result = preprocess_clip(carphone_path, tmp_path, tracker=tracker, require_audio=False)
    shard = load_shard(tmp_path / result.clip_id)
    assert shard.audio_path is None and shard.meta["sample_rate"] is None


def test_clip_ids_are_unique():
    ids = unique_clip_ids(["a/x y.mp4", "b/x y.mp4", "c/z.mov"])
    assert ids[2] == "z" and ids[0] != ids[1] and all(i.startswith("x_y-") for i in ids[:2])


def test_malformed_shards_are_refused(carphone_with_audio, tmp_path, tracker):
    preprocess_clip(carphone_with_audio, tmp_path, tracker=tracker)
    good = tmp_path / "carphone_talk"
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    arrays = load_arrays(bad / "track.safetensors")
    arrays["mouth_vertices"] = arrays["mouth_vertices"][:, :10]
    save_arrays(bad / "track.safetensors", arrays)
    with pytest.raises(MemFaceInputError, match="mouth_vertices"):
        load_shard(bad)
    (bad / "track.safetensors").write_bytes(b"\x80\x04pickle-ish bytes")
    with pytest.raises(MemFaceInputError, match="not a valid safetensors"):
        load_shard(bad)
    meta = json.loads((good / "meta.json").read_text())
    meta["format_version"] = 99
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(MemFaceInputError, match="unsupported shard format"):
        load_shard(bad)
    (bad / "meta.json").unlink()
    assert not is_complete_shard(bad)
    with pytest.raises(MemFaceInputError, match="exists but is not a finished shard"):
        preprocess_clip(carphone_with_audio, tmp_path, clip_id="bad", tracker=tracker)


def test_strided_arrays_survive_saving(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    strided = np.einsum("abc->cba", base)  # a non-contiguous view
    save_arrays(tmp_path / "a.safetensors", {"x": strided})
    np.testing.assert_array_equal(load_arrays(tmp_path / "a.safetensors")["x"], strided)


def test_mouth_model_from_shards(tiny_shards):
    model = fit_mouth_model(tiny_shards, num_components=8)
    assert model.num_components == 8 and model.explained_variance.sum() > 0.95


@pytest.mark.slow
def test_accelerate_launch_splits_the_clip_list(carphone_with_audio, tmp_path):
    """Two processes under `accelerate launch` each take their share of the clips."""
    second = tmp_path / "second.mp4"
    shutil.copy(carphone_with_audio, second)
    out = tmp_path / "shards"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "memface_hub.cli", "preprocess", str(carphone_with_audio), str(second), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert is_complete_shard(out / "carphone_talk") and is_complete_shard(out / "second")
    sources = {json.loads((out / name / "meta.json").read_text())["source"] for name in ("carphone_talk", "second")}
    assert len(sources) == 2
