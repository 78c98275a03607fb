"""Animate a real face photo for the synthetic demo corpus.

Viseme parameters (jaw opening, lip rounding and spread, bilabial closure), blinks and a
small head motion move the photo's MediaPipe landmarks; the lower face and the eyes are
then warped piecewise-affinely along the triangles of those landmarks (a Delaunay
triangulation of the moved points, each triangle mapped back to where it came from), and
the mouth interior (dark cavity, upper and lower teeth) is painted where the lips part.
The rest mouth is closed: lips that are apart in the photo are first brought together.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from ..face.landmarks import (
    CHIN,
    INNER_LIPS_LOOP,
    LEFT_EYE_LOWER,
    LEFT_EYE_OUTER,
    LEFT_EYE_UPPER,
    OUTER_LIPS_LOOP,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_OUTER,
    RIGHT_EYE_UPPER,
)
from .speaking_style import NEUTRAL_STYLE, SpeakingStyle

# Inner lip contour: corners 78 (right) and 308 (left); upper half 78→308, lower half 308→78.
_INNER_UPPER = INNER_LIPS_LOOP[1:10]           # 191 … 415, left to right in the loop
_INNER_LOWER = INNER_LIPS_LOOP[11:][::-1]      # 95 … 324, paired with _INNER_UPPER
_OUTER_UPPER = OUTER_LIPS_LOOP[1:10]           # 185 … 409
_OUTER_LOWER = OUTER_LIPS_LOOP[11:][::-1]      # 146 … 375
_CORNERS = (78, 308, 61, 291)
_NEAR_CORNERS = (57, 287, 43, 273, 106, 335, 186, 410, 92, 322, 212, 432, 214, 434, 76, 306, 62, 292,
                 184, 408, 183, 407, 77, 307, 96, 325, 146, 375, 185, 409, 191, 415, 95, 324)
_JAW_HINGES = (234, 454)
_PHILTRUM = (164, 167, 393, 165, 391, 0, 11, 12, 37, 267, 72, 302)

# Motion amplitudes in units of the eye-corner distance.
JAW_DROP = 0.30        # chin drop at jaw_open = 1
LIP_GAP = 0.42         # inner-lip gap at the lip centre at full opening
ROUND_INWARD = 0.10    # corner movement towards the centre at lip_round = 1
SPREAD_OUTWARD = 0.06  # corner movement outwards at lip_spread = 1
SMILE_OUTWARD = 0.05   # corner movement outwards at a resting smile of 1 (speaking style)
SMILE_UP = 0.03        # corner lift at a resting smile of 1

TEETH_COLOUR = np.array([222, 214, 200], np.float32)
SEAM_COLOUR = (120, 60, 62)
CAVITY_COLOUR = np.array([52, 14, 20], np.float32)


@dataclass(frozen=True)
class HeadMotion:
    """In-plane head motion of one frame: roll (degrees), shift (pixels), scale factor."""

    roll: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 1.0


class FaceAnimator:
    """Renders frames of a talking photo.

    image: ``(H, W, 3)`` uint8 RGB photo (already upscaled so the face is ≥ ~200 px tall);
    landmarks: ``(478, 3)`` of that photo in pixels; frame_size: output frames are
    ``frame_size × frame_size`` around the face.
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, frame_size: int = 352):
        if frame_size % 2:
            raise ValueError(f"frame_size must be even, got {frame_size}")
        self.frame_size = int(frame_size)
        points = np.asarray(landmarks, np.float64)[:, :2]
        self.image = self._remove_mouth_interior(np.ascontiguousarray(image), points)
        self.unit = float(np.linalg.norm(points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]))
        self.down = points[CHIN] - points[168]
        self.down /= np.linalg.norm(self.down)
        self.right = np.array([-self.down[1], self.down[0]])  # image-right when upright
        self.centre = points.mean(0)
        self.rest = self._close_lips(points)
        height, width = image.shape[:2]
        low, high = points.min(0) - 0.5 * self.unit, points.max(0) + 0.5 * self.unit
        self.roi = (int(max(low[1], 0)), int(min(high[1], height)), int(max(low[0], 0)), int(min(high[0], width)))
        top, bottom, left, right = self.roi
        # Fixed control points on the ROI border keep the warp local.
        ring = []
        for fraction in np.linspace(0, 1, 12, endpoint=False):
            ring += [[left + fraction * (right - left), top], [right, top + fraction * (bottom - top)],
                     [right - fraction * (right - left), bottom], [left, bottom - fraction * (bottom - top)]]
        self.ring = np.array(ring)
        self.source = np.concatenate([points, self.ring])
        # Dense half-resolution grid of the ROI (the backward map is piecewise linear: upsampling is exact
        # inside triangles and off by < 1 px on their edges).
        ys, xs = np.mgrid[top:bottom:2, left:right:2].astype(np.float64)
        self.grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        self.grid_shape = xs.shape
        self._groups()

    @staticmethod
    def _remove_mouth_interior(image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Inpaint what the photo shows between its inner lips (teeth, in a smile), so that
        closing the lips squeezes only lip texture together, not a line of teeth."""
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(points[list(INNER_LIPS_LOOP)]).astype(np.int32)], 255)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        if not mask.any():
            return image
        return cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)

    # -- geometry -----------------------------------------------------------------------------
    def _project(self, points: np.ndarray) -> np.ndarray:
        """Coordinates along (right, down) relative to the face centre, in units."""
        relative = (points - self.centre) / self.unit
        return np.stack([relative @ self.right, relative @ self.down], axis=-1)

    def _close_lips(self, points: np.ndarray) -> np.ndarray:
        """Bring the photo's inner lips together (rest = closed mouth); outer lips follow."""
        rest = points.copy()
        for upper, lower in zip(_INNER_UPPER, _INNER_LOWER):
            middle = (points[upper] + points[lower]) / 2
            rest[upper] += (middle - points[upper])
            rest[lower] += (middle - points[lower])
        for outer, inner in zip(_OUTER_UPPER, _INNER_UPPER):
            rest[outer] += 0.8 * (rest[inner] - points[inner])
        for outer, inner in zip(_OUTER_LOWER, _INNER_LOWER):
            rest[outer] += (rest[inner] - points[inner])
        return rest

    def _groups(self) -> None:
        coords = self._project(self.rest)
        mouth_y = coords[[61, 291], 1].mean()
        chin_y = coords[CHIN, 1]
        hinge_y = coords[list(_JAW_HINGES), 1].mean()
        self.mouth_centre_x = coords[[61, 291], 0].mean()
        self.mouth_half_width = abs(coords[291, 0] - coords[61, 0]) / 2
        # Jaw weight: 0 at the hinge height, 1 at the chin; only below the mouth-corner line.
        weight = np.clip((coords[:, 1] - hinge_y) / (chin_y - hinge_y), 0, 1) ** 1.3
        weight[coords[:, 1] < mouth_y] = 0.0
        # Points far to the side of the face (cheeks beside the jaw) move less.
        lateral = np.abs(coords[:, 0] - self.mouth_centre_x) / (2.2 * self.mouth_half_width)
        weight *= np.clip(1.0 - lateral ** 2, 0, 1)
        self.jaw_weight = weight
        self.jaw_weight[list(_INNER_LOWER) + list(_OUTER_LOWER)] = 0.0  # lower lip: handled as lips

    def _lip_profile(self, indices) -> np.ndarray:
        x = self._project(self.rest[list(indices)])[:, 0]
        return np.clip(1.0 - ((x - self.mouth_centre_x) / self.mouth_half_width) ** 2, 0, 1) ** 0.7

    def moved_points(self, viseme: np.ndarray, blink: float = 0.0, style: SpeakingStyle = NEUTRAL_STYLE) -> np.ndarray:
        """Landmark positions ``(478, 2)`` for viseme ``(jaw_open, lip_round, lip_spread, closure)``.

        ``style`` shapes the motion: ``jaw_share`` moves opening between jaw drop and lip parting,
        ``asymmetry`` makes one corner move more, ``smile`` pulls both corners out and up (the neutral
        style is the corpus v2 face exactly).
        """
        jaw_open, lip_round, lip_spread, closure = (float(v) for v in viseme)
        points = self.rest.copy()
        opening = jaw_open * (1.0 - closure)
        down, right = self.down * self.unit, self.right * self.unit
        jaw_gain, lip_gain = 0.5 + style.jaw_share, 1.5 - style.jaw_share     # both 1 at the neutral 0.5
        # 1. jaw: chin and lower face drop
        points += np.outer(self.jaw_weight * JAW_DROP * jaw_open * jaw_gain, down)
        # 2. lips part: lower lip down (with the jaw), upper lip slightly up, largest at the centre
        lower = list(_INNER_LOWER) + list(_OUTER_LOWER)
        upper = list(_INNER_UPPER) + list(_OUTER_UPPER)
        gap_lower = self._lip_profile(lower) * LIP_GAP * opening * lip_gain
        gap_upper = self._lip_profile(upper) * LIP_GAP * opening * lip_gain
        points[lower] += np.outer(0.8 * gap_lower, down)
        points[upper] -= np.outer(0.2 * gap_upper, down)
        # rounding pushes the lip centres outwards (a rounder opening)
        points[lower] += np.outer(0.03 * lip_round * self._lip_profile(lower), down)
        points[upper] -= np.outer(0.03 * lip_round * self._lip_profile(upper), down)
        # 3. corners: in for rounding, out for spreading, down as the mouth opens
        for indices, strength in ((_CORNERS, 1.0), (_NEAR_CORNERS, 0.45)):
            indices = list(indices)
            side = np.sign(self._project(self.rest[indices])[:, 0] - self.mouth_centre_x)
            gain = 1.0 + style.asymmetry * side                                  # (n,) per corner
            horizontal = strength * (SPREAD_OUTWARD * lip_spread - ROUND_INWARD * lip_round
                                     + SMILE_OUTWARD * style.smile)
            points[indices] += np.outer(side * horizontal * gain, right)
            points[indices] += np.outer(0.35 * LIP_GAP * opening * lip_gain * strength * gain, down)
            points[indices] -= np.outer((0.015 * lip_spread + SMILE_UP * style.smile) * strength * gain, down)
        points[list(_PHILTRUM)] -= np.outer(np.full(len(_PHILTRUM), 0.03 * opening), down)
        # 4. blink: upper lids towards the lower lids
        if blink > 0:
            for upper_lid, lower_lid in ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER)):
                upper_lid, lower_lid = list(upper_lid[1:-1]), list(lower_lid[1:-1])
                points[upper_lid] += 0.85 * blink * (points[lower_lid] - points[upper_lid])
        return points

    # -- rendering ----------------------------------------------------------------------------
    def _warp_roi(self, target: np.ndarray) -> np.ndarray:
        """Backward piecewise-affine warp of the ROI so that ``self.source`` lands on ``target``."""
        destination = np.concatenate([target, self.ring])
        triangulation = Delaunay(destination)
        simplex = triangulation.find_simplex(self.grid)
        inside = simplex >= 0
        simplex = np.where(inside, simplex, 0)
        transform = triangulation.transform[simplex]                      # (P, 3, 2)
        bary = np.einsum("pij,pj->pi", transform[:, :2], self.grid - transform[:, 2])
        weights = np.concatenate([bary, 1 - bary.sum(1, keepdims=True)], axis=1)  # (P, 3)
        source = np.einsum("pk,pkd->pd", weights, self.source[triangulation.simplices[simplex]])
        source[~inside] = self.grid[~inside]
        top, bottom, left, right = self.roi
        map_x = cv2.resize(source[:, 0].reshape(self.grid_shape).astype(np.float32), (right - left, bottom - top),
                           interpolation=cv2.INTER_LINEAR)
        map_y = cv2.resize(source[:, 1].reshape(self.grid_shape).astype(np.float32), (right - left, bottom - top),
                           interpolation=cv2.INTER_LINEAR)
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _paint_mouth(self, roi_image: np.ndarray, points: np.ndarray) -> None:
        """Dark cavity with teeth inside the inner-lip contour (in place, ROI coordinates)."""
        top, _, left, _ = self.roi
        inner = points[list(INNER_LIPS_LOOP)] - [left, top]
        gap = float((points[14] - points[13]) @ self.down)  # signed: lower lip below the upper one
        scale = 4  # sub-pixel drawing precision (bits)
        height, width = roi_image.shape[:2]
        if gap < 0.02 * self.unit:
            # Closed: the photo's teeth are squeezed into the seam; draw the lip seam over them.
            seam = points[list((78,) + _INNER_UPPER + (308,))] - [left, top]
            thickness = max(1, int(round(0.012 * self.unit)))
            cv2.polylines(roi_image, [np.round(seam * 16).astype(np.int32)], False, SEAM_COLOUR,
                          thickness, cv2.LINE_AA, scale)
            return
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(inner * 16).astype(np.int32)], 255, cv2.LINE_AA, scale)
        teeth = np.zeros((height, width), np.uint8)
        upper = points[list((78,) + _INNER_UPPER + (308,))] - [left, top]
        tooth_height = min(0.045 * self.unit, 0.45 * gap)
        band = np.concatenate([upper, (upper + self.down * tooth_height)[::-1]])
        cv2.fillPoly(teeth, [np.round(band * 16).astype(np.int32)], 255, cv2.LINE_AA, scale)
        if gap > 0.12 * self.unit:  # lower teeth show only when the mouth is well open
            lower = points[list((308,) + _INNER_LOWER[::-1] + (78,))] - [left, top]
            lower_height = 0.3 * tooth_height
            band = np.concatenate([lower, (lower - self.down * lower_height)[::-1]])
            cv2.fillPoly(teeth, [np.round(band * 16).astype(np.int32)], 200, cv2.LINE_AA, scale)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        tooth_alpha = (np.minimum(teeth, mask).astype(np.float32) / 255.0)[..., None]
        # Shade the interior: darker towards the lower lip, like a real mouth.
        rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        shade = 1.0 - 0.35 * np.clip((rows * height - (inner[:, 1].min())) / max(gap, 1.0), 0, 1)
        painted = (CAVITY_COLOUR * (1 - tooth_alpha) + TEETH_COLOUR * tooth_alpha) * shade
        region = roi_image.astype(np.float32) * (1 - alpha) + painted * alpha
        roi_image[:] = np.clip(region, 0, 255).astype(np.uint8)

    def render(self, viseme: np.ndarray, blink: float = 0.0, head: HeadMotion = HeadMotion(),
               style: SpeakingStyle = NEUTRAL_STYLE) -> np.ndarray:
        """One frame ``(frame_size, frame_size, 3)`` uint8 RGB."""
        points = self.moved_points(viseme, blink, style)
        roi_image = self._warp_roi(points)
        self._paint_mouth(roi_image, points)
        top, bottom, left, right = self.roi
        canvas = self.image.copy()
        canvas[top:bottom, left:right] = roi_image
        # Head motion: a similarity about the face centre, then the output window.
        half = self.frame_size / 2
        matrix = cv2.getRotationMatrix2D((float(self.centre[0]), float(self.centre[1])), head.roll, head.scale)
        matrix[:, 2] += [half - self.centre[0] + head.shift_x, half - self.centre[1] + head.shift_y]
        return cv2.warpAffine(canvas, matrix, (self.frame_size, self.frame_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
