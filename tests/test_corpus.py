"""The multi-person corpus: the people file, the by-person split, refusals; small faces in large frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tone, write_video
from memface_hub.data.corpus import PEOPLE_FORMAT, build_corpus, load_people
from memface_hub.errors import MemFaceInputError
from memface_hub.io import read_frames


def _people_file(path, people):
    path.write_text(json.dumps({"format": PEOPLE_FORMAT, "format_version": 1, "people": people}))
    return path


def test_the_committed_people_file_is_valid_and_splits_by_person():
    people = load_people()
    splits = {person.split for person in people.values()}
    assert splits == {"train", "val", "test"}
    names = [item for person in people.values() for item in (*person.clips, *person.portraits)]
    assert len(names) == len(set(names))                  # every clip and portrait belongs to one person
    assert sum(person.split == "test" for person in people.values() if person.clips) >= 5


@pytest.mark.parametrize("people, problem", [
    ({"a": {"split": "train", "clips": ["x"]}, "b": {"split": "test", "clips": ["x"]}}, "listed for both"),
    ({"a": {"split": "holdout", "clips": ["x"]}}, "needs a split"),
    ({"a": {"split": "train", "clips": "x"}}, "must be a list"),
])
def test_bad_people_files_are_refused(tmp_path, people, problem):
    with pytest.raises(MemFaceInputError, match=problem):
        load_people(_people_file(tmp_path / "people.json", people))


def test_build_corpus_splits_by_person_and_refuses_unlisted_clips(carphone_path, tmp_path):
    frames = read_frames(carphone_path, fps=25, max_frames=40, scale=2.0)
    clips = tmp_path / "clips"
    clips.mkdir()
    sounds = {"anna_1": tone(len(frames) / 25), "anna_2": np.zeros(len(frames) * 640, np.float32),
              "ben_1": None, "stranger": tone(len(frames) / 25)}
    for name, sound in sounds.items():
        write_video(clips / f"{name}.mp4", frames, audio=sound)
    people = _people_file(tmp_path / "people.json", {
        "anna": {"split": "train", "clips": ["anna_1", "anna_2"]},
        "ben": {"split": "test", "clips": ["ben_1"]}})
    report = build_corpus(tmp_path / "corpus", real_clips=clips, people_file=people, include_astronaut=False,
                          progress=False)
    index = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert index == report.index
    assert index["splits"] == {"train": ["anna_1", "anna_2"], "val": [], "test": ["ben_1"]}
    assert index["clips"]["ben_1"]["has_audio"] is False            # silent clips are kept (renderer-only)
    assert index["clips"]["anna_1"]["has_audio"] is True
    assert index["clips"]["anna_2"]["audio_track"] is True and index["clips"]["anna_2"]["has_audio"] is False
    assert index["clips"]["anna_1"]["frames_tracked"] == index["clips"]["anna_1"]["frames"] == 40
    assert [item["input"].endswith("stranger.mp4") for item in report.refused] == [True]
    assert "not listed" in report.refused[0]["reason"]
    assert (tmp_path / "corpus" / "shards" / "anna_2" / "meta.json").is_file()
    # the a2e model's split: real clips by person, the test person's clip in its held-out group
    assert index["a2e_splits"]["train"] == ["anna_1", "anna_2"] and index["a2e_splits"]["test_real"] == ["ben_1"]


def test_a_small_face_in_a_large_frame_is_found_and_tracked(carphone_path, tracker):
    """A whole-body shot in portrait video: the face is a few per cent of the frame, too small for the
    landmarker's full-frame detector; the tile search finds it and later frames are tracked around it."""
    small = read_frames(carphone_path, fps=25, max_frames=6)                     # (6, 144, 176, 3), face ~60 px
    canvas = np.full((6, 1280, 720, 3), 200, np.uint8)
    canvas[:, 700:844, 400:576] = small
    track = tracker.track(list(canvas))
    assert track.detected.all()
    centre = track.landmarks[:, :, :2].mean(axis=1)
    assert (centre[:, 0] > 400).all() and (centre[:, 0] < 576).all()
    assert (centre[:, 1] > 700).all() and (centre[:, 1] < 844).all()
