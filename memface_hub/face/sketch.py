"""The renderer's "projected face image": predicted mouth vertices drawn into the crop.

Canonical mouth vertices are placed with a frame's pose, mapped into its aligned crop, and
drawn as filled lips, the dark mouth opening, lip contours and the jaw line (docs/DESIGN.md §3).
"""

from __future__ import annotations

import cv2
import numpy as np

from .crop import apply_affine
from .geometry import Poses
from .landmarks import INNER_LIPS_LOOP, JAW_LINE, OUTER_LIPS_LOOP, mouth_vertex_position

_OUTER = [mouth_vertex_position(i) for i in OUTER_LIPS_LOOP]
_INNER = [mouth_vertex_position(i) for i in INNER_LIPS_LOOP]
_JAW = [mouth_vertex_position(i) for i in JAW_LINE]

LIP_COLOUR = (220, 70, 70)
OPENING_COLOUR = (25, 0, 40)
OUTER_CONTOUR_COLOUR = (255, 255, 255)
INNER_CONTOUR_COLOUR = (255, 210, 0)
JAW_COLOUR = (60, 220, 60)
_SHIFT = 4  # sub-pixel precision bits for OpenCV drawing
MOUTH_REGION = 0.2  # generation pastes the render this many mouth widths around the lips (lips_mask margin)


def project_mouth(vertices: np.ndarray, poses: Poses, affines: np.ndarray) -> np.ndarray:
    """Canonical mouth vertices ``(T, V, 3)`` (or ``(V, 3)``) → crop pixels ``(T, V, 2)``.

    poses: canonical → frame for the ``T`` template frames; affines ``(T, 2, 3)`` frame → crop.
    """
    frame_points = poses.apply(np.asarray(vertices, np.float64))[..., :2]  # (T, V, 2)
    return np.stack([apply_affine(points, affine) for points, affine in zip(frame_points, affines)])


def lips_mask(points: np.ndarray, size: int, margin: float = 0.15) -> np.ndarray:
    """``(size, size)`` float32 weights: 1 on the outer-lip polygon of mouth points ``(V, 2)`` (crop pixels)
    grown by ``margin`` × the mouth's width, falling smoothly to 0 — the lips and the skin right around them."""
    outer = np.asarray(points, np.float64)[_OUTER]
    width = max(float(np.ptp(outer[:, 0])), 1.0)
    grow = max(1, round(margin * width))
    # worked on the rectangle the grown, blurred lips can reach: a fraction of the pixels, the same weights
    # (away from the crop's edges, where zeros now lie beyond it instead of a reflection)
    reach = grow + int(np.ceil(4 * grow / 2)) + 2
    x0, y0 = np.maximum(np.floor(outer.min(0)).astype(int) - reach, 0)
    x1, y1 = np.minimum(np.ceil(outer.max(0)).astype(int) + reach + 1, size)
    mask = np.zeros((size, size), np.float32)
    if x1 <= x0 or y1 <= y0:
        return mask
    local = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(local, [np.round((outer - (x0, y0)) * (1 << _SHIFT)).astype(np.int32)], 1.0, cv2.LINE_AA, _SHIFT)
    local = cv2.dilate(local, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    mask[y0:y1, x0:x1] = cv2.GaussianBlur(local, (0, 0), grow / 2, borderType=cv2.BORDER_CONSTANT)
    return mask


def draw_mouth_sketch(points: np.ndarray, size: int, canvas: np.ndarray | None = None) -> np.ndarray:
    """Draw mouth points ``(V, 2)`` (crop pixels) on ``canvas`` (default black) → ``(size, size, 3)`` uint8."""
    image = np.zeros((size, size, 3), np.uint8) if canvas is None else canvas.copy()
    fixed = np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32)
    outer, inner, jaw = fixed[_OUTER], fixed[_INNER], fixed[_JAW]
    cv2.fillPoly(image, [outer], LIP_COLOUR, cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(image, [inner], OPENING_COLOUR, cv2.LINE_AA, _SHIFT)
    cv2.polylines(image, [outer], True, OUTER_CONTOUR_COLOUR, 1, cv2.LINE_AA, _SHIFT)
    cv2.polylines(image, [inner], True, INNER_CONTOUR_COLOUR, 1, cv2.LINE_AA, _SHIFT)
    cv2.polylines(image, [jaw], False, JAW_COLOUR, 2, cv2.LINE_AA, _SHIFT)
    return image
