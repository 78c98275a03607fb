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
    """

    def __init__(self, model_path: str | os.PathLike | None = None, max_gap: int = 5,
                 detect_min_side: int = 256, min_confidence: float = 0.4, max_faces: int = 2):
        self.model_path = resolve_landmarker_model(model_path)
        self.max_gap = int(max_gap)
        self.detect_min_side = int(detect_min_side)
        self.min_confidence = float(min_confidence)
        self.max_faces = int(max_faces)

    def _create(self):
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
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
        import mediapipe as mp

        landmarks, blendshapes, transforms, detected = [], [], [], []
        names: list[str] = []
        previous_centre: np.ndarray | None = None
        width = height = 0
        with _quiet_native_stderr():
            landmarker = self._create()
        with landmarker:
            for index, frame in enumerate(tqdm(frames, total=total, disable=not progress,
                                               desc="tracking", unit="frame")):
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                    raise ValueError(f"frame {index} must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
                height, width = frame.shape[:2]
                factor = max(1.0, self.detect_min_side / min(height, width))
                image = frame if factor == 1.0 else cv2.resize(
                    frame, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_CUBIC)
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
                timestamp_ms = int(round(index * 1000.0 / fps))
                if index == 0:
                    with _quiet_native_stderr():
                        result = landmarker.detect_for_video(image, timestamp_ms)
                else:
                    result = landmarker.detect_for_video(image, timestamp_ms)
                choice = self._choose(result, width, height, previous_centre)
                if choice is None:
                    landmarks.append(np.zeros((NUM_LANDMARKS, 3), np.float32))
                    blendshapes.append(np.zeros(NUM_BLENDSHAPES, np.float32))
                    transforms.append(np.eye(4, dtype=np.float32))
                    detected.append(False)
                    continue
                points, scores, matrix, score_names = choice
                previous_centre = points[:, :2].mean(axis=0)
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
