"""Rigid head pose, the canonical face, and canonical mouth vertices (docs/DESIGN.md §3).

Conventions: frame points ``x`` (pixels, MediaPipe z scaled like x) relate to canonical
points ``v`` by the similarity ``x = s · R v + t``. Canonical units: the speaker's canonical
face scaled so that the outer eye corners (landmarks 33 and 263) are 1 apart, centred on
the rigid landmarks, eye line along +x, y pointing down like image rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from .landmarks import (
    LEFT_EYE_OUTER,
    LOWER_INNER_LIP,
    MOUTH_VERTICES,
    RIGHT_EYE_OUTER,
    RIGID,
    UPPER_INNER_LIP,
    mouth_vertex_position,
)

_UPPER = mouth_vertex_position(UPPER_INNER_LIP)
_LOWER = mouth_vertex_position(LOWER_INNER_LIP)


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True
            ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity with ``target ≈ scale · R @ source + t`` (Umeyama 1991).

    source, target: ``(N, D)``. Returns ``(scale, R (D, D), t (D,))`` with ``det(R) = +1``.
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    mean_source, mean_target = source.mean(0), target.mean(0)
    centred_source, centred_target = source - mean_source, target - mean_target
    covariance = centred_target.T @ centred_source / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(source.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1, -1] = -1
    rotation = u @ sign @ vt
    variance = (centred_source ** 2).sum() / len(source)
    scale = float((singular * np.diag(sign)).sum() / variance) if with_scale else 1.0
    translation = mean_target - scale * rotation @ mean_source
    return scale, rotation, translation


@dataclass
class Poses:
    """Per-frame similarity canonical → frame. scale ``(T,)``, rotation ``(T, 3, 3)``, translation ``(T, 3)``."""

    scale: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray

    def __len__(self) -> int:
        return int(self.scale.shape[0])

    def apply(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical points ``(T, N, 3)`` (or ``(N, 3)``, broadcast) → frame points ``(T, N, 3)``."""
        return (self.scale[:, None, None] * np.einsum("tij,tnj->tni", self.rotation,
                np.broadcast_to(canonical, (len(self),) + canonical.shape[-2:]))
                + self.translation[:, None, :])

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Frame points ``(T, N, 3)`` → canonical points ``(T, N, 3)``."""
        centred = points - self.translation[:, None, :]
        return np.einsum("tji,tnj->tni", self.rotation, centred) / self.scale[:, None, None]

    def take(self, indices) -> Poses:
        """The poses of the frames ``indices`` (any numpy index)."""
        return Poses(self.scale[indices], self.rotation[indices], self.translation[indices])

    def as_array(self) -> np.ndarray:
        """``(T, 13)`` float32: scale, 9 rotation entries, 3 translation entries (for shards)."""
        return np.concatenate([self.scale[:, None], self.rotation.reshape(-1, 9), self.translation],
                              axis=1).astype(np.float32)

    @classmethod
    def from_array(cls, array: np.ndarray) -> Poses:
        array = np.asarray(array, np.float64)
        if array.ndim != 2 or array.shape[1] != 13:
            raise ValueError(f"poses must be (T, 13), got {array.shape}")
        return cls(array[:, 0], array[:, 1:10].reshape(-1, 3, 3), array[:, 10:13])


def _normalise_face(face: np.ndarray) -> np.ndarray:
    """Centre on the rigid landmarks, rotate the eye line onto +x (in-plane), eye distance 1."""
    face = face - face[list(RIGID)].mean(0)
    eye_vector = face[LEFT_EYE_OUTER] - face[RIGHT_EYE_OUTER]
    angle = np.arctan2(eye_vector[1], eye_vector[0])
    cos, sin = np.cos(-angle), np.sin(-angle)
    roll = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    face = face @ roll.T
    return face / np.linalg.norm(face[LEFT_EYE_OUTER] - face[RIGHT_EYE_OUTER])


def canonical_face(landmarks: np.ndarray, valid: np.ndarray, iterations: int = 3) -> np.ndarray:
    """The speaker's canonical face ``(478, 3)`` from a track ``(T, 478, 3)``.

    Generalised Procrustes on the rigid landmarks: align every valid frame to the current
    reference, average, normalise, repeat. Non-rigid points are averaged too, so the mouth
    of the canonical face is the speaker's average mouth.
    """
    frames = np.asarray(landmarks, np.float64)[np.asarray(valid, bool)]
    if len(frames) == 0:
        raise ValueError("no valid frames to build a canonical face from")
    rigid = list(RIGID)
    reference = _normalise_face(frames[0])
    for _ in range(iterations):
        aligned = []
        for frame in frames:
            scale, rotation, translation = umeyama(frame[rigid], reference[rigid])
            aligned.append(scale * frame @ rotation.T + translation)
        reference = _normalise_face(np.mean(aligned, axis=0))
    return reference.astype(np.float32)


def fit_poses(landmarks: np.ndarray, canonical: np.ndarray, valid: np.ndarray | None = None,
              smoothing_frames: float = 1.0) -> Poses:
    """Per-frame rigid pose canonical → frame fitted on the rigid landmarks, then smoothed.

    landmarks ``(T, 478, 3)``; canonical ``(478, 3)``. Smoothing is a Gaussian over time of
    log-scale, translation and rotation (as a rotation vector around the mean rotation), with
    standard deviation ``smoothing_frames`` (0 turns it off). Invalid frames take the
    smoothed values of their neighbours.
    """
    landmarks = np.asarray(landmarks, np.float64)
    num_frames = landmarks.shape[0]
    valid = np.ones(num_frames, bool) if valid is None else np.asarray(valid, bool)
    rigid = list(RIGID)
    scale = np.ones(num_frames)
    rotation = np.tile(np.eye(3), (num_frames, 1, 1))
    translation = np.zeros((num_frames, 3))
    for index in range(num_frames):
        scale[index], rotation[index], translation[index] = umeyama(canonical[rigid], landmarks[index, rigid])
    if smoothing_frames > 0 and num_frames > 1:
        good = valid if valid.any() else np.ones(num_frames, bool)
        mean_rotation = Rotation.from_matrix(rotation[good]).mean()
        rotvec = (mean_rotation.inv() * Rotation.from_matrix(rotation)).as_rotvec()
        series = np.concatenate([np.log(scale)[:, None], rotvec, translation], axis=1)
        # Invalid frames must not pull their neighbours: replace them by interpolation first.
        if not good.all():
            positions = np.flatnonzero(good)
            for column in range(series.shape[1]):
                series[~good, column] = np.interp(np.flatnonzero(~good), positions, series[good, column])
        series = gaussian_filter1d(series, smoothing_frames, axis=0, mode="nearest")
        scale = np.exp(series[:, 0])
        rotation = (mean_rotation * Rotation.from_rotvec(series[:, 1:4])).as_matrix()
        translation = series[:, 4:7]
    return Poses(scale, rotation, translation)


def canonical_mouth_vertices(landmarks: np.ndarray, poses: Poses) -> np.ndarray:
    """Mouth-and-jaw landmarks mapped back through the inverse pose: ``(T, V, 3)`` float32, V = 102."""
    points = np.asarray(landmarks, np.float64)[:, list(MOUTH_VERTICES)]
    return poses.invert(points).astype(np.float32)


def mouth_opening(vertices: np.ndarray) -> np.ndarray:
    """Inner-lip gap (landmarks 13–14) of mouth vertices ``(..., V, 3)`` → ``(...)``, in their units."""
    vertices = np.asarray(vertices)
    return np.linalg.norm(vertices[..., _UPPER, :] - vertices[..., _LOWER, :], axis=-1)


def neutral_mouth(vertices: np.ndarray, valid: np.ndarray | None = None, quantile: float = 0.15) -> np.ndarray:
    """The speaker's neutral (rest) mouth ``(V, 3)``: mean of the most closed valid frames.

    vertices ``(T, V, 3)`` canonical; frames whose opening is at most the ``quantile`` of all
    openings are averaged (at least one frame).
    """
    vertices = np.asarray(vertices, np.float64)
    if valid is not None:
        vertices = vertices[np.asarray(valid, bool)]
    if len(vertices) == 0:
        raise ValueError("no valid frames to estimate the neutral mouth from")
    opening = mouth_opening(vertices)
    closed = opening <= np.quantile(opening, quantile)
    return vertices[closed].mean(0).astype(np.float32)
