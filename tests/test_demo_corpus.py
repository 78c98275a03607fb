"""The synthetic demo corpus: split by sentence, labelled synthetic, and it teaches lip-sync."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memface_hub.data.demo_corpus import build_demo_corpus, plan_corpus
from memface_hub.errors import MemFaceInputError
from memface_hub.face.geometry import mouth_opening
from memface_hub.io import probe, read_frames
from memface_hub.io.shards import load_shard
from memface_hub.io.video import SYNTHETIC_LABEL


def test_plan_is_deterministic_and_split_by_sentence():
    plans = plan_corpus(minutes=20, seed=0)
    assert plans == plan_corpus(minutes=20, seed=0)
    assert plans != plan_corpus(minutes=20, seed=1)
    minutes = sum(0.76 * len(p.text.split()) * 60 / p.rate + 0.7 for p in plans) / 60
    assert 19.5 <= minutes <= 21
    by_split = {name: {p.text for p in plans if p.split == name} for name in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["val"])
    assert len({p.voice for p in plans}) >= 3 and len({p.rate for p in plans}) >= 2
    assert len({p.clip_id for p in plans}) == len(plans)
    with pytest.raises(MemFaceInputError, match="minutes"):
        plan_corpus(minutes=0)


def test_tiny_corpus_files(tiny_corpus):
    root, index = tiny_corpus
    assert {name for name, ids in index["splits"].items() if ids} == {"train", "val", "test"}
    clip = index["clips"][0]
    info = probe(root / clip["video"])
    assert info.has_audio and info.has_video and info.fps == 25
    timeline = json.loads((root / clip["timeline"]).read_text())
    assert timeline["synthetic"] is True and timeline["num_frames"] == len(timeline["mouth_open"])
    assert abs(len(read_frames(root / clip["video"])) - timeline["num_frames"]) <= 1
    starts = [start for _, start, _ in timeline["phonemes"]]
    assert starts == sorted(starts) and starts[0] >= timeline["pad_seconds"] - 1e-6
    import subprocess

    from memface_hub.io.video import ffmpeg_exe

    tags = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(root / clip["video"])],
                          capture_output=True, text=True).stderr
    assert SYNTHETIC_LABEL in tags


def test_rebuild_is_resumable_and_refuses_other_settings(tiny_corpus):
    root, index = tiny_corpus
    video = root / index["clips"][0]["video"]
    before = video.stat().st_mtime_ns
    again = build_demo_corpus(root, minutes=0.1, seed=3, progress=False)
    assert again["splits"] == index["splits"] and video.stat().st_mtime_ns == before
    with pytest.raises(MemFaceInputError, match="other settings"):
        build_demo_corpus(root, minutes=0.1, seed=4, progress=False)


def test_a_corpus_of_another_version_is_refused_untouched(tiny_corpus, tmp_path):
    """Clips rendered by another corpus version (e.g. v1's wider bilabial closures) are never mixed in."""
    root, index = tiny_corpus
    old = json.loads((root / "corpus.json").read_text())
    old["format_version"] = 1
    (tmp_path / "corpus.json").write_text(json.dumps(old))
    before = (tmp_path / "corpus.json").read_bytes()
    with pytest.raises(MemFaceInputError, match="another corpus version"):
        build_demo_corpus(tmp_path, minutes=0.1, seed=3, progress=False)
    assert (tmp_path / "corpus.json").read_bytes() == before and not list((tmp_path / "clips").glob("*.mp4"))


def test_tracked_mouth_follows_the_tts_schedule(tiny_corpus, tiny_shards):
    """The corpus teaches lip-sync: re-tracked mouth opening correlates with the viseme schedule."""
    root, index = tiny_corpus
    tracked, schedule = [], []
    for clip in index["clips"]:
        shard = load_shard(tiny_shards / clip["clip_id"])
        assert shard.detected.mean() >= 0.95
        timeline = json.loads((root / clip["timeline"]).read_text())
        count = min(shard.num_frames, len(timeline["mouth_open"]))
        tracked.append(mouth_opening(shard.mouth_vertices[:count]))
        schedule.append(np.asarray(timeline["mouth_open"][:count]))
    correlation = np.corrcoef(np.concatenate(tracked), np.concatenate(schedule))[0, 1]
    assert correlation >= 0.8
