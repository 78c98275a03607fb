"""Aligned S×S face crops and their exact inverse with feathered paste-back (docs/DESIGN.md §3).

Each frame gets a 2D similarity ``A`` (2×3, frame pixels → crop pixels) that puts the
speaker's rigid landmarks where the canonical face has them, so mouth patches line up
across frames. The layout: one canonical unit (the outer-eye-corner distance) is
``eye_distance · S`` pixels and the rigid centroid sits at ``(centre_x · S, centre_y · S)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from .geometry import umeyama
from .landmarks import RIGID


@dataclass(frozen=True)
class CropLayout:
    """Where the face goes in the crop. All fractions of the crop size ``size``."""

    size: int = 256
    eye_distance: float = 0.35
    centre_x: float = 0.5
    centre_y: float = 0.36
    # The lower-face box the renderer writes, in canonical units around the rigid centroid
    # (x: left/right, y: top/bottom; y grows downwards).
    mouth_left: float = -0.75
    mouth_right: float = 0.75
    mouth_top: float = 0.40
    mouth_bottom: float = 1.40

    def __post_init__(self):
        if self.size < 32 or self.size % 2:
            raise ValueError(f"crop size must be an even number ≥ 32, got {self.size}")

    def to_crop(self, canonical_xy: np.ndarray) -> np.ndarray:
        """Canonical ``(..., 2)`` → crop pixel coordinates ``(..., 2)``."""
        centre = np.array([self.centre_x, self.centre_y]) * self.size
        return np.asarray(canonical_xy) * (self.eye_distance * self.size) + centre

    def mouth_box(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` pixel bounds of the mouth box, clipped to the crop."""
        (left, top), (right, bottom) = self.to_crop(np.array(
            [[self.mouth_left, self.mouth_top], [self.mouth_right, self.mouth_bottom]]))
        clip = lambda value: int(np.clip(round(value), 0, self.size))  # noqa: E731
        return clip(top), clip(bottom), clip(left), clip(right)


def crop_transforms(landmarks: np.ndarray, canonical: np.ndarray, layout: CropLayout,
                    valid: np.ndarray | None = None, smoothing_frames: float = 1.0) -> np.ndarray:
    """Per-frame 2D similarities frame → crop: ``(T, 2, 3)`` float64.

    landmarks ``(T, 478, 3)`` in pixels; canonical ``(478, 3)``. Fitted on the rigid
    landmarks' x, y; the four similarity parameters are smoothed over time.
    """
    rigid = list(RIGID)
    target = layout.to_crop(np.asarray(canonical)[rigid, :2])
    num_frames = landmarks.shape[0]
    params = np.zeros((num_frames, 4))  # a = s·cos, b = s·sin, tx, ty
    for index in range(num_frames):
        scale, rotation, translation = umeyama(landmarks[index, rigid, :2], target)
        params[index] = [scale * rotation[0, 0], scale * rotation[1, 0], *translation]
    good = np.ones(num_frames, bool) if valid is None else np.asarray(valid, bool)
    if good.any() and not good.all():
        positions = np.flatnonzero(good)
        for column in range(4):
            params[~good, column] = np.interp(np.flatnonzero(~good), positions, params[good, column])
    if smoothing_frames > 0 and num_frames > 1:
        params = gaussian_filter1d(params, smoothing_frames, axis=0, mode="nearest")
    a, b, tx, ty = params.T
    return np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], axis=1)


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Points ``(N, 2)`` through a 2×3 affine → ``(N, 2)``."""
    return np.asarray(points)[..., :2] @ affine[:, :2].T + affine[:, 2]


def warp_to_crop(frame: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """Frame ``(H, W, 3)`` uint8 → aligned crop ``(size, size, 3)`` uint8."""
    return cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def feathered_mask(size: int, box: tuple[int, int, int, int] | None = None, feather: int = 8) -> np.ndarray:
    """``(size, size)`` float32 weights: 1 inside ``box`` (default: the whole crop minus a
    ``feather`` margin), falling smoothly to 0 over ``feather`` pixels."""
    top, bottom, left, right = box if box is not None else (0, size, 0, size)
    mask = np.zeros((size, size), np.float32)
    inner = (max(top + feather, 0), min(bottom - feather, size), max(left + feather, 0), min(right - feather, size))
    mask[inner[0]:inner[1], inner[2]:inner[3]] = 1.0
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=feather / 2.0)
    return mask


def box_in_frame(affine: np.ndarray, box: tuple[int, int, int, int], width: int, height: int,
                 margin: int = 2) -> tuple[int, int, int, int]:
    """Frame bounds ``(x0, y0, x1, y1)`` covering the crop box ``(top, bottom, left, right)``."""
    top, bottom, left, right = box
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]], np.float64)
    inverse = cv2.invertAffineTransform(affine)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(points.min(0)).astype(int) - margin
    x1, y1 = np.ceil(points.max(0)).astype(int) + margin
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def paste_back(frame: np.ndarray, crop: np.ndarray, affine: np.ndarray, mask: np.ndarray | None = None,
               box: tuple[int, int, int, int] | None = None, in_place: bool = False) -> np.ndarray:
    """Blend an aligned crop back into its frame with the exact inverse warp.

    frame ``(H, W, 3)`` uint8, crop ``(S, S, 3)`` uint8, affine frame → crop ``(2, 3)``,
    mask ``(S, S)`` float weights in crop coordinates (default: feathered full crop).
    box ``(top, bottom, left, right)`` in crop pixels: only the frame region covering it is warped
    (the pipeline's mouth box; the mask must be zero outside it). ``in_place`` writes into ``frame``.
    Returns the ``(H, W, 3)`` uint8 frame (a new one unless ``in_place``).
    """
    height, width = frame.shape[:2]
    if mask is None:
        mask = feathered_mask(crop.shape[0])
    x0, y0, x1, y1 = (0, 0, width, height) if box is None else box_in_frame(affine, box, width, height)
    out = frame if in_place else frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    inverse = cv2.invertAffineTransform(affine)
    inverse[:, 2] -= (x0, y0)                                  # frame region → its own origin
    size = (x1 - x0, y1 - y0)
    back = cv2.warpAffine(crop, inverse, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(mask.astype(np.float32, copy=False), inverse, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region + (back.astype(np.float32) - region) * weight + 0.5, 0, 255).astype(np.uint8)
    return out


def transfer_detail(frame: np.ndarray, source: np.ndarray, affine: np.ndarray, source_affine: np.ndarray,
                    mask: np.ndarray, box: tuple[int, int, int, int], sigma: float | None = None,
                    in_place: bool = False) -> np.ndarray:
    """Give a pasted-back crop the fine detail of the output resolution, from a real frame of the speaker.

    The band of spatial frequencies finer than ``sigma`` (frame pixels; default: one crop pixel, the
    finest the crop can hold) of ``frame`` ``(H, W, 3)`` uint8 is replaced, under the crop-space
    ``mask`` ``(S, S)`` inside ``box``, by that band of ``source`` (another frame of the same face,
    e.g. the template frame of the explicit memory's nearest entry), aligned by the two frames'
    frame → crop similarities ``affine`` and ``source_affine`` ``(2, 3)``. Colours and the coarse
    shape stay the frame's; only the texture below the crop's resolution is the source's.
    """
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = box_in_frame(affine, box, width, height)
    out = frame if in_place else frame.copy()
    if x1 - x0 < 4 or y1 - y0 < 4:
        return out
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))                 # crop pixels per frame pixel
    sigma = max(1.0, 1.0 / max(scale, 1e-6)) if sigma is None else float(sigma)
    inverse = cv2.invertAffineTransform(affine)
    # region pixel → source pixel: inv(source_affine) ∘ affine ∘ (shift by the region's origin)
    to_crop = np.vstack([affine, [0, 0, 1]]) @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    to_source = np.vstack([cv2.invertAffineTransform(source_affine), [0, 0, 1]]) @ to_crop
    size = (x1 - x0, y1 - y0)
    aligned = cv2.warpAffine(source, to_source[:2], size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    inverse[:, 2] -= (x0, y0)
    weight = cv2.warpAffine(mask.astype(np.float32, copy=False), inverse, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    detail = (aligned - cv2.GaussianBlur(aligned, (0, 0), sigma)) - (region - cv2.GaussianBlur(region, (0, 0), sigma))
    out[y0:y1, x0:x1] = np.clip(region + detail * weight + 0.5, 0, 255).astype(np.uint8)
    return out
