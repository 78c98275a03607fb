"""Real-people metrics (docs/EVALUATION.md "Real people"): lip correlation and lag, loudness, ΔE, mouth sharpness."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from memface_hub.evaluation.real_people import (
    LabAccumulator,
    compare_videos,
    delta_e,
    fill_missing,
    lip_correlation,
    lip_gaps,
    loudness,
    lower_face_mask,
    mouth_sharpness,
    video_statistics,
)
from memface_hub.io import read_frames


def test_lip_correlation_finds_the_lag():
    rng = np.random.default_rng(0)
    real = np.convolve(rng.normal(size=200), np.ones(5) / 5, mode="same")
    late = np.concatenate([np.zeros(2), real[:-2]])          # the generated lips move 2 frames late
    result = lip_correlation(late, real)
    assert result.lag == 2 and result.best > 0.99 and result.at_zero < result.best
    assert lip_correlation(real, real).at_zero == pytest.approx(1.0)
    assert np.isnan(lip_correlation(np.ones(50), real).at_zero)   # a still mouth has no correlation


def test_loudness_follows_the_envelope():
    rate, fps = 16_000, 25
    envelope = np.repeat([0.01, 0.5, 0.01, 0.5], rate // 2)
    waveform = envelope * np.sin(np.arange(len(envelope)) * 0.3)
    values = loudness(waveform, rate, 50, fps)
    assert values.shape == (50,)
    assert values[15] - values[5] > 3                      # loud half second vs quiet one, in log units


def test_fill_missing_interpolates_untracked_frames():
    np.testing.assert_allclose(fill_missing(np.array([np.nan, 1.0, np.nan, 3.0, np.nan])), [1, 1, 2, 3, 3])


@pytest.fixture(scope="module")
def face(carphone_path, tracker):
    frames = read_frames(carphone_path, fps=25, max_frames=8, scale=3.0)
    return frames, tracker.track(list(frames))


def test_colour_error_and_sharpness_on_a_real_face(face, tracker):
    frames, track = face
    frame, points = frames[0], track.landmarks[0]
    mask = lower_face_mask(points, frame.shape[:2])
    assert mask.any() and not mask[:int(points[1, 1])].any()       # nothing above the nose tip
    tinted = frame.copy()
    tinted[mask] = np.clip(tinted[mask].astype(int) + [30, -10, -10], 0, 255).astype(np.uint8)
    same, other = LabAccumulator(), LabAccumulator()
    same.add(frame, points)
    other.add(tinted, points)
    assert delta_e(same.mean, same.mean) == 0.0
    assert delta_e(same.mean, other.mean) > 5                       # a visible tint is well above 2.3
    blurred = cv2.GaussianBlur(frame, (0, 0), 3)
    assert mouth_sharpness(blurred, points) < 0.5 * mouth_sharpness(frame, points)
    gaps = lip_gaps(track.landmarks)
    assert gaps.shape == (len(frames),) and (gaps >= 0).all() and (gaps < 0.3).all()
    real = video_statistics(list(frames), tracker)
    figures = compare_videos(video_statistics([cv2.GaussianBlur(f, (0, 0), 3) for f in frames], tracker), real)
    assert figures["sharpness_ratio"] < 0.5 and figures["delta_e"] < 2.3    # blur: soft, same colour
