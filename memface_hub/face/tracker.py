"""Per-frame face tracking with MediaPipe Face Landmarker in VIDEO mode.

Output per frame: 478 landmarks in pixels, 52 ARKit blendshape scores, the 4×4 face
transform, and masks saying which frames had a face (``detected``) and which are usable
(``valid``: detected, or filled across a short gap).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm.auto import tqdm

from .landmarks import NUM_BLENDSHAPES, NUM_LANDMARKS
from .model_file import resolve_landmarker_model

logger = logging.getLogger(__name__)



@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 briefly: MediaPipe's C++ start-up chatter ignores log levels."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class FaceTrack:
    """A tracked clip. ``T`` = frames.

    landmarks: ``(T, 478, 3)`` float32, x and y in pixels of the original frame; z in the same
        pixel scale (MediaPipe's normalised z times the frame width).
    blendshapes: ``(T, 52)`` float32 scores in [0, 1], names in ``blendshape_names``.
    transforms: ``(T, 4, 4)`` float32 facial transformation matrices.
    detected: ``(T,)`` bool, a face was found in this frame.
    valid: ``(T,)`` bool, detected or filled in (interpolated inside / held at the ends of
        a gap of at most ``max_gap`` frames). Frames of longer gaps hold the nearest values
        but are not valid.
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    transforms: np.ndarray
    detected: np.ndarray
    valid: np.ndarray
    width: int
    height: int
    fps: float
    blendshape_names: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def tracked_fraction(self) -> float:
        return float(self.detected.mean()) if self.num_frames else 0.0


def fill_gaps(values: np.ndarray, detected: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill undetected frames of ``values`` ``(T, ...)``; returns ``(filled, valid)``.

    Interior gaps of ≤ ``max_gap`` frames are linearly interpolated; gaps at the start or end of
    ≤ ``max_gap`` frames hold the nearest detection. Longer gaps hold the nearest detection
    (so arrays stay finite) but stay invalid. With no detection at all nothing is valid.
    """
    filled = values.copy()
    valid = detected.copy()
    indices = np.flatnonzero(detected)
    if indices.size == 0:
        return filled, valid
    num_frames = len(detected)
    start = 0
    while start < num_frames:
        if detected[start]:
            start += 1
            continue
        end = start
        while end < num_frames and not detected[end]:
            end += 1
        # gap is [start, end)
        before, after = start - 1, end
        length = end - start
        if before >= 0 and after < num_frames:
            weights = (np.arange(1, length + 1) / (length + 1)).reshape(-1, *([1] * (values.ndim - 1)))
            filled[start:end] = (1 - weights) * values[before] + weights * values[after]
        else:
            filled[start:end] = values[before if before >= 0 else after]
        if length <= max_gap:
            valid[start:end] = True
        start = end
    return filled, valid


class FaceTracker:
    """MediaPipe Face Landmarker (VIDEO mode) over a sequence of RGB frames.

    Small frames are upscaled for detection so that the face is at least ``detect_min_side``
    pixels of frame height (landmarks are returned in the original frame's pixels).
    With several faces, the one that continues the track (nearest to the previous face,
    else the largest) is kept.

    Small faces in large frames (a whole body in 1080×1920 video): when the full frame gives no
    face, overlapping square tiles of the frame are searched (at most every ``search_every``
    frames while the face is lost); once a face is found, later frames are tracked inside a
    square region around it (``roi_scale`` × the face's height), read at ``detect_min_side``
    pixels or more, so the face fills the detector's view.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, max_gap: int = 5,
                 detect_min_side: int = 256, min_confidence: float = 0.4, max_faces: int = 2,
                 small_face_fraction: float = 0.2, roi_scale: float = 2.5, search_every: int = 5):
        self.model_path = resolve_landmarker_model(model_path)
        self.max_gap = int(max_gap)
        self.detect_min_side = int(detect_min_side)
        self.min_confidence = float(min_confidence)
        self.max_faces = int(max_faces)
        self.small_face_fraction = float(small_face_fraction)   # face height / frame side below which the ROI is used
        self.roi_scale = float(roi_scale)
        self.search_every = max(1, int(search_every))

    def _create(self, video: bool = True):
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=self.max_faces,
            min_face_detection_confidence=self.min_confidence,
            min_face_presence_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        return vision.FaceLandmarker.create_from_options(options)

    def track(self, frames: Iterable[np.ndarray], fps: float = 25.0, progress: bool = False,
              total: int | None = None) -> FaceTrack:
        """Track every frame ``(H, W, 3)`` uint8 RGB of ``frames``. Returns a :class:`FaceTrack`."""
        landmarks, blendshapes, transforms, detected = [], [], [], []
        names: list[str] = []
        previous_centre: np.ndarray | None = None
        roi: tuple[int, int, int] | None = None          # (x0, y0, side) of the small-face region
        lost_since = 0
        width = height = 0
        with _quiet_native_stderr():
            landmarker = self._create(video=True)
            region_landmarker = self._create(video=False)
        with landmarker, region_landmarker:
            for index, frame in enumerate(tqdm(frames, total=total, disable=not progress,
                                               desc="tracking", unit="frame")):
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                    raise ValueError(f"frame {index} must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
                height, width = frame.shape[:2]
                timestamp_ms = int(round(index * 1000.0 / fps))
                choice = None
                if roi is not None:                                   # 1. inside the small face's region
                    choice = self._detect_region(region_landmarker, frame, roi, previous_centre)
                if choice is None:                                    # 2. the whole frame
                    with _quiet_native_stderr() if index == 0 else contextlib.nullcontext():
                        choice = self._detect_video(landmarker, frame, timestamp_ms, previous_centre)
                if choice is None and lost_since % self.search_every == 0:
                    choice = self._search_tiles(region_landmarker, frame)   # 3. tiles, for small faces
                if choice is None:
                    lost_since += 1
                    roi = None
                    landmarks.append(np.zeros((NUM_LANDMARKS, 3), np.float32))
                    blendshapes.append(np.zeros(NUM_BLENDSHAPES, np.float32))
                    transforms.append(np.eye(4, dtype=np.float32))
                    detected.append(False)
                    continue
                lost_since = 0
                points, scores, matrix, score_names = choice
                previous_centre = points[:, :2].mean(axis=0)
                roi = self._region_around(points, width, height)
                names = names or score_names
                landmarks.append(points)
                blendshapes.append(scores)
                transforms.append(matrix)
                detected.append(True)
        if not detected:
            raise ValueError("no frames to track")
        detected_mask = np.array(detected, bool)
        landmark_array, valid = fill_gaps(np.stack(landmarks), detected_mask, self.max_gap)
        blendshape_array, _ = fill_gaps(np.stack(blendshapes), detected_mask, self.max_gap)
        transform_array, _ = fill_gaps(np.stack(transforms), detected_mask, self.max_gap)
        logger.debug("tracked %d/%d frames", detected_mask.sum(), len(detected_mask))
        return FaceTrack(landmark_array.astype(np.float32), blendshape_array.astype(np.float32),
                         transform_array.astype(np.float32), detected_mask, valid,
                         width, height, float(fps), names)

    # -- detection at three scales: the frame, a region around the last face, tiles -------------
    def _read(self, landmarker, image: np.ndarray, timestamp_ms: int | None):
        """Run ``landmarker`` (VIDEO mode with ``timestamp_ms``, else IMAGE mode) on ``image``, upscaled
        so its shorter side is at least ``detect_min_side`` (landmarks are normalised, so unaffected)."""
        import mediapipe as mp

        height, width = image.shape[:2]
        factor = max(1.0, self.detect_min_side / min(height, width))
        if factor > 1.0:
            image = cv2.resize(image, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_CUBIC)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        result = (landmarker.detect(image) if timestamp_ms is None
                  else landmarker.detect_for_video(image, timestamp_ms))
        return result

    def _detect_video(self, landmarker, frame: np.ndarray, timestamp_ms: int, previous_centre):
        height, width = frame.shape[:2]
        return self._choose(self._read(landmarker, frame, timestamp_ms), width, height, previous_centre)

    def _detect_region(self, landmarker, frame: np.ndarray, region: tuple[int, int, int], previous_centre,
                       keep_largest: bool = False):
        """Detect inside the square ``region`` ``(x0, y0, side)`` of ``frame``; landmarks in frame pixels."""
        x0, y0, side = region
        window = frame[y0:y0 + side, x0:x0 + side]
        choice = self._choose(self._read(landmarker, window, None), window.shape[1], window.shape[0],
                              None if keep_largest or previous_centre is None else previous_centre - (x0, y0))
        if choice is None:
            return None
        points, scores, matrix, names = choice
        points = points.copy()
        points[:, 0] += x0
        points[:, 1] += y0
        return points, scores, matrix, names

    def _region_around(self, points: np.ndarray, width: int, height: int) -> tuple[int, int, int] | None:
        """A square ``(x0, y0, side)`` around a face whose height is under ``small_face_fraction`` of the
        frame's shorter side; ``None`` for faces large enough to track in the whole frame."""
        face_height = float(np.ptp(points[:, 1]))
        if face_height >= self.small_face_fraction * min(width, height):
            return None
        side = int(min(max(self.roi_scale * face_height, 64), min(width, height)))
        centre_x, centre_y = points[:, 0].mean(), points[:, 1].mean()
        x0 = int(np.clip(round(centre_x - side / 2), 0, width - side))
        y0 = int(np.clip(round(centre_y - side / 2), 0, height - side))
        return x0, y0, side

    def _search_tiles(self, landmarker, frame: np.ndarray):
        """Look for a small face in overlapping square tiles (sides of 1/2 and 1/4 of the shorter
        side, half a tile apart); the first tile size that finds one wins (largest face)."""
        height, width = frame.shape[:2]
        shorter = min(width, height)
        if shorter < 2 * self.detect_min_side:
            return None                             # a face too small here is too small to use
        for side in (shorter // 2, shorter // 4):
            step = side // 2
            found = []
            for y0 in sorted({*range(0, height - side + 1, step), height - side}):
                for x0 in sorted({*range(0, width - side + 1, step), width - side}):
                    choice = self._detect_region(landmarker, frame, (x0, y0, side), None, keep_largest=True)
                    if choice is not None:
                        found.append(choice)
            if found:
                return max(found, key=lambda c: float(np.ptp(c[0][:, 1])))
        return None

    @staticmethod
    def _choose(result, width: int, height: int, previous_centre: np.ndarray | None):
        """Pick one face of a landmarker result: the one continuing the track, else the largest."""
        if not result.face_landmarks:
            return None
        candidates = []
        for face_index, face in enumerate(result.face_landmarks):
            if len(face) < NUM_LANDMARKS:
                continue
            points = np.array([[p.x * width, p.y * height, p.z * width] for p in face[:NUM_LANDMARKS]],
                              np.float32)
            candidates.append((face_index, points))
        if not candidates:
            return None
        if previous_centre is not None:
            face_index, points = min(
                candidates, key=lambda c: float(np.linalg.norm(c[1][:, :2].mean(0) - previous_centre)))
        else:
            face_index, points = max(candidates, key=lambda c: float(np.ptp(c[1][:, 1])))
        scores = np.zeros(NUM_BLENDSHAPES, np.float32)
        names: list[str] = []
        if result.face_blendshapes and face_index < len(result.face_blendshapes):
            categories = result.face_blendshapes[face_index][:NUM_BLENDSHAPES]
            scores[:len(categories)] = [c.score for c in categories]
            names = [c.category_name for c in categories]
        matrix = np.eye(4, dtype=np.float32)
        if result.facial_transformation_matrixes and face_index < len(result.facial_transformation_matrixes):
            matrix = np.asarray(result.facial_transformation_matrixes[face_index], np.float32).reshape(4, 4)
        return points, scores, matrix, names
