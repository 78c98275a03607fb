"""SpeakerMemory: Alg. 1 selection, the artifact folder, and refusal of malformed folders."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from memface_hub.arrays_io import load_arrays, save_arrays
from memface_hub.errors import MemFaceInputError
from memface_hub.io import read_frames
from memface_hub.speaker import SpeakerMemory, farthest_point_selection


def naive_farthest_points(points: np.ndarray, count: int, first: int) -> list[int]:
    chosen = [first]
    while len(chosen) < count:
        distances = [min(np.sqrt(((points[i] - points[j]) ** 2).mean()) for j in chosen) for i in range(len(points))]
        chosen.append(int(np.argmax(distances)))
    return chosen


def test_selection_matches_the_greedy_definition():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(60, 102, 3))
    fast = farthest_point_selection(vertices, 12, start=5)
    assert fast.tolist() == naive_farthest_points(vertices.reshape(60, -1), 12, 5)
    valid = np.ones(60, bool)
    valid[::2] = False
    assert all(index % 2 == 1 for index in farthest_point_selection(vertices, 10, valid))
    assert len(farthest_point_selection(vertices, 500)) == 60  # never more than the frames
    with pytest.raises(ValueError, match="no valid frames"):
        farthest_point_selection(vertices, 3, np.zeros(60, bool))


def test_selection_spreads_over_distinct_shapes():
    # 3 clusters of shapes, one far larger than the others: 3 picks take one from each cluster.
    rng = np.random.default_rng(1)
    centres = np.array([0.0, 1.0, 2.0])[:, None, None] * np.ones((3, 102, 3))
    vertices = np.concatenate([c + 0.01 * rng.normal(size=(100, 102, 3)) for c in centres])
    picks = farthest_point_selection(vertices, 3)
    assert sorted(index // 100 for index in picks) == [0, 1, 2]


@pytest.fixture(scope="module")
def speaker(tiny_shards, tiny_corpus, tmp_path_factory):
    _, index = tiny_corpus
    clip = index["clips"][0]["clip_id"]
    memory = SpeakerMemory.build(tiny_shards / clip, num_entries=24, name="astronaut")
    folder = tmp_path_factory.mktemp("speaker") / "astronaut"
    memory.save_pretrained(folder)
    return memory, folder


def test_build_save_and_load(speaker):
    memory, folder = speaker
    assert memory.num_entries == 24 and memory.values.dtype == np.uint8
    top, bottom, left, right = memory.meta["patch_box"]
    assert memory.values.shape == (24, 3, bottom - top, right - left)
    loaded = SpeakerMemory.from_pretrained(folder)
    np.testing.assert_array_equal(loaded.values, memory.values)
    np.testing.assert_array_equal(loaded.keys, memory.keys)
    assert loaded.meta["name"] == "astronaut" and loaded.meta["format_version"] == 2
    assert len(read_frames(loaded.template_path)) == len(loaded.poses)
    # Keys are the canonical mouth vertices of the entries' own frames (no mix-up on the way).
    assert len(set(loaded.frame_indices.tolist())) == 24


def test_detail_patches_hold_the_entries_mouths_at_the_videos_resolution(tiny_corpus, tiny_shards, tmp_path):
    from memface_hub.speaker import native_detail_scale

    _, index = tiny_corpus
    shard = tiny_shards / index["clips"][0]["clip_id"]
    memory = SpeakerMemory.build(shard, num_entries=6, detail_scale=2)
    top, bottom, left, right = memory.meta["patch_box"]
    assert memory.details.shape == (6, 3, 2 * (bottom - top), 2 * (right - left)) and memory.meta["detail_scale"] == 2
    # the same mouth boxes as the values, twice as fine: halved, they are the values (up to resampling)
    for entry in range(6):
        patch, to_crop = memory.detail_patch(entry)
        halved = cv2.resize(patch, (right - left, bottom - top), interpolation=cv2.INTER_AREA).astype(float)
        assert np.abs(halved - memory.values[entry].transpose(1, 2, 0)).mean() < 4
        assert np.allclose(to_crop @ [0.5, 0.5, 1], [left, top])          # patch pixel (0.5, 0.5) is crop (left, top)
    loaded = SpeakerMemory.from_pretrained(memory.save_pretrained(tmp_path / "detailed"))
    np.testing.assert_array_equal(loaded.details, memory.details)
    assert loaded.meta["detail_scale"] == 2
    # at the crop's own resolution (faces smaller than the crop): cut from the frames, as the values are
    plain = SpeakerMemory.build(shard, num_entries=6, detail_scale=1)
    assert plain.details.shape == plain.values.shape
    assert np.abs(plain.details.astype(float) - plain.values).mean() < 4
    # the scale follows the face's size in the video: frame pixels per crop pixel, rounded up, at most 2
    affine = lambda scale: np.array([[[scale, 0, 0], [0, scale, 0]]], np.float32)   # noqa: E731 (crop px per frame px)
    assert [native_detail_scale(affine(s)) for s in (2.0, 1.0, 0.7, 0.5, 0.2)] == [1, 1, 2, 2, 2]
    _edit_meta(tmp_path / "detailed", detail_scale=3)
    with pytest.raises(MemFaceInputError, match="'detail_scale'"):
        SpeakerMemory.from_pretrained(tmp_path / "detailed")
    _edit_meta(tmp_path / "detailed", detail_scale=2)
    _edit_array(tmp_path / "detailed", "memory.safetensors", "details", lambda v: v[:, :, ::2])
    with pytest.raises(MemFaceInputError, match="'details'"):
        SpeakerMemory.from_pretrained(tmp_path / "detailed")


def test_version_1_folders_still_load(speaker, tmp_path):
    _, folder = speaker
    copy = tmp_path / "v1"
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "speaker.json").read_text())
    meta.pop("detail_scale", None)
    (copy / "speaker.json").write_text(json.dumps({**meta, "format_version": 1}))
    arrays = load_arrays(copy / "memory.safetensors")
    arrays.pop("details", None)                                        # version 1 had no detail patches
    save_arrays(copy / "memory.safetensors", arrays)
    loaded = SpeakerMemory.from_pretrained(copy)
    assert loaded.details is None and loaded.detail_patch(0)[0].shape == loaded.values.shape[2:] + (3,)


def test_contact_sheet(speaker, tmp_path):
    memory, _ = speaker
    path = memory.contact_sheet(tmp_path / "sheet.png", columns=6, scale=1.0)
    image = cv2.imread(str(path))
    height, width = memory.values.shape[2:]
    assert image.shape == (4 * height, 6 * width, 3)


@pytest.mark.parametrize("damage, expected", [
    (lambda f: (f / "speaker.json").write_text("[1, 2"), "not valid JSON"),
    (lambda f: _edit_meta(f, format_version=99), "format version 99"),
    (lambda f: _edit_meta(f, format="something-else"), "not a memface speaker memory"),
    (lambda f: _edit_meta(f, patch_box=[0, 9999, 0, 10]), "out of range"),
    (lambda f: _edit_array(f, "memory.safetensors", "values", lambda v: v.astype(np.float32)), "'values'"),
    (lambda f: _edit_array(f, "memory.safetensors", "frame_indices", lambda v: v + 10_000), "outside the template"),
    (lambda f: (f / "memory.safetensors").write_bytes(b"\x80\x04\x95 pickle"), "not a valid safetensors"),
    (lambda f: (f / "template.mp4").unlink(), "no template.mp4"),
    (lambda f: _edit_meta(f, fps=1e9), "field 'fps'"),           # an ffmpeg frame-rate bomb
    (lambda f: _edit_meta(f, fps=0), "field 'fps'"),
    (lambda f: _edit_meta(f, fps=-25), "field 'fps'"),
    (lambda f: _edit_meta(f, fps="25"), "field 'fps'"),
    (lambda f: _edit_meta(f, fps=True), "field 'fps'"),
])
def test_malformed_folders_are_refused(speaker, tmp_path, damage, expected):
    _, folder = speaker
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    damage(copy)
    with pytest.raises(MemFaceInputError) as info:
        SpeakerMemory.from_pretrained(copy)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_saving_never_clobbers_other_folders(speaker, tmp_path):
    memory, _ = speaker
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(MemFaceInputError, match="refusing to overwrite"):
        memory.save_pretrained(other)
    assert (other / "notes.txt").read_text() == "keep me"


def _edit_meta(folder, **changes):
    meta = json.loads((folder / "speaker.json").read_text())
    meta.update(changes)
    (folder / "speaker.json").write_text(json.dumps(meta))


def _edit_array(folder, file, name, change):
    arrays = load_arrays(folder / file)
    arrays[name] = change(arrays[name])
    save_arrays(folder / file, arrays)
